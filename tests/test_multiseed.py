"""Vectorised multi-seed training (theorylab.runs.stacked)."""

from __future__ import annotations

import pytest
import torch

from theorylab.runs import build_run_config, resume, train
from theorylab.runs.stacked import (
    StackedParams,
    stacked_forward,
    supports_stacking,
    train_many,
)
from theorylab.store import Store

SMALL = ["task.p=13", "model.d_model=16", "model.d_head=4", "model.d_mlp=32", "train.steps=12",
         "train.eval_every=4"]


def _cfgs(extra=(), seeds=(0, 1, 2), preset="grokking"):
    return [build_run_config(preset, SMALL + list(extra), seed=s) for s in seeds]


@pytest.mark.parametrize("extra", [
    [],
    ["model.norm=layernorm", "model.n_layers=2", "model.bias=true"],
    ["model.norm=rmsnorm", "model.tied_embeddings=true", "model.d_vocab_out=14", "model.act=gelu"],
    ["model.attn_only=true", "model.positional=none", "model.n_layers=2"],
])
def test_stacked_forward_equals_model(extra):
    from theorylab.runs import build_model_for

    cfgs = _cfgs(extra + ["train.dtype=float64"], seeds=(0, 1))
    models = [build_model_for(c).double() for c in cfgs]
    sp = StackedParams.from_models(models)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 13, (2, 7, 3), generator=gen)
    for cols in (None, torch.tensor([2]), torch.tensor([0, 2])):
        out = stacked_forward(cfgs[0].model, sp.as_dict(), tokens, cols)
        for s, m in enumerate(models):
            ref = m(tokens[s], positions=cols) if cols is not None else m(tokens[s])
            assert torch.allclose(out[s], ref, atol=1e-12), (extra, cols)


def test_multiseed_equals_single_seed_training():
    # float64: per-seed stacked training equals train() to rounding (AdamW is elementwise)
    cfgs = _cfgs(["train.dtype=float64", "model.norm=layernorm", "model.bias=true", "model.n_layers=2"])
    single = [train(c, None, progress=False) for c in cfgs]
    multi = train_many(cfgs, None, progress=False)
    for a, b in zip(single, multi):
        assert a.run_id == b.run_id and b.status == "finished" and b.step == 12
        for k in a.metrics:
            assert b.metrics[k] == pytest.approx(a.metrics[k], rel=1e-9, abs=1e-12), k
        for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
            # b_K gets a zero gradient (softmax ignores a per-query constant), so Adam amplifies rounding
            tol = 1e-8 if name.endswith("attn.b_K") else 1e-11
            assert torch.allclose(p, q, atol=tol), name


def test_multiseed_float32_matches_within_tolerance():
    cfgs = _cfgs(seeds=(3, 4))
    single = [train(c, None, progress=False) for c in cfgs]
    multi = train_many(cfgs, None, progress=False)
    for a, b in zip(single, multi):
        assert b.metrics["test/loss"] == pytest.approx(a.metrics["test/loss"], rel=1e-4)
        assert b.metrics["train/accuracy"] == pytest.approx(a.metrics["train/accuracy"], abs=1e-3)


def test_each_seed_is_its_own_stored_run(tmp_path):
    store = Store(tmp_path)
    cfgs = _cfgs(["train.checkpoint_every=4", "train.keep_checkpoints=all"])
    res = train_many(cfgs, store, progress=False)
    ids = {c.run_id() for c in cfgs}
    assert {r.run_id for r in res} == ids and len(ids) == 3
    for c in cfgs:
        rec = store.get_run(c.run_id())
        assert rec.status == "finished" and rec.step == 12 and rec.seed == c.seed
        steps = [s for s, _ in store.metrics(c.run_id(), "test", "loss")["test"]["loss"]]
        assert steps == [0, 4, 8, 12]
        assert sorted(a["step"] for a in store.artifacts(c.run_id(), "checkpoint")) == [4, 8, 12]
    # seeds differ (own init and own split)
    assert res[0].metrics["test/loss"] != res[1].metrics["test/loss"]
    # a rerun is served from the store
    again = train_many(cfgs, store, progress=False)
    assert all(r.reused for r in again)
    # the single-seed trainer serves the same run id too
    assert train(cfgs[1], store, progress=False).reused


def test_stop_and_resume_equals_straight_run(tmp_path):
    cfgs = _cfgs(["train.checkpoint_every=4"], seeds=(0, 1))
    straight = train_many(cfgs, None, progress=False)
    store = Store(tmp_path)
    part = train_many(cfgs, store, progress=False, stop_after=5)
    assert [r.status for r in part] == ["stopped", "stopped"]
    done = train_many(cfgs, store, progress=False)
    for a, b in zip(straight, done):
        assert b.status == "finished" and b.metrics["test/loss"] == a.metrics["test/loss"]
    # a stacked checkpoint resumes in the single-seed trainer as well
    store2 = Store(tmp_path / "b")
    train_many(cfgs[:1], store2, progress=False, stop_after=6)
    r = resume(store2, cfgs[0].run_id(), progress=False)
    assert r.status == "finished" and r.metrics["test/loss"] == pytest.approx(straight[0].metrics["test/loss"],
                                                                              rel=1e-4)


def test_unsupported_configs_fall_back_to_sequential():
    cfgs = _cfgs(["model.positional=rotary"], seeds=(0, 1))
    assert not supports_stacking(cfgs[0])
    res = train_many(cfgs, None, progress=False)
    ref = train(cfgs[1], None, progress=False)
    assert res[1].metrics == ref.metrics


def test_mixed_configs_are_grouped():
    a = _cfgs(seeds=(0,))
    b = _cfgs(["train.weight_decay=0.0"], seeds=(0, 1))
    res = train_many(a + b, None, progress=False)
    assert [r.run_id for r in res] == [c.run_id() for c in a + b]
    assert res[0].metrics["test/loss"] != res[1].metrics["test/loss"]


def test_early_stop_per_configuration():
    cfgs = _cfgs(["train.early_stop_metric=train/loss", "train.early_stop_value=100.0",
                  "train.early_stop_mode=min"], seeds=(0,)) + _cfgs(seeds=(1,))
    res = train_many(cfgs, None, progress=False)
    assert res[0].early_stopped and res[0].step == 0
    assert not res[1].early_stopped and res[1].step == 12


@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_seed_chunks_do_not_change_training(chunk):
    cfgs = _cfgs(["train.dtype=float64"])
    ref = train_many(cfgs, None, progress=False, seed_chunk=None)
    res = train_many(cfgs, None, progress=False, seed_chunk=chunk)
    for a, b in zip(ref, res):
        for k in a.metrics:
            assert b.metrics[k] == pytest.approx(a.metrics[k], rel=1e-10, abs=1e-13)


def test_bad_seed_chunk():
    from theorylab.errors import ConfigError

    with pytest.raises(ConfigError, match="seed_chunk"):
        train_many(_cfgs(seeds=(0,)), None, progress=False, seed_chunk=-1)


def test_repeated_config_trained_once():
    cfgs = _cfgs(seeds=(0, 1))
    res = train_many([cfgs[0], cfgs[1], cfgs[0]], None, progress=False)
    assert res[2] is res[0] and res[1].run_id != res[0].run_id
