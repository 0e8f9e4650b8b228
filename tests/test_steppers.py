"""The training loop's contract, for both steppers (theorylab.runs.loop, theorylab.runs.steppers).

One loop trains every run: a group of seeds goes through the single stepper (each model alone) or
the stacked stepper (the seeds' parameters stacked, the same Transformer run over each slice).
Divergence, failure, interruption, checkpoints and resumption are the loop's and must behave the
same under both.
"""

from __future__ import annotations

import math

import pytest
import torch

from theorylab.runs import build_run_config, resume, train, train_many
from theorylab.runs.loop import latest_checkpoint
from theorylab.store import Store
from theorylab.tasks.modular import ModularTask

SMALL = ["task.p=13", "model.d_model=16", "model.d_head=4", "model.d_mlp=32", "train.steps=12",
         "train.eval_every=4"]
STEPPERS = ["single", "stacked"]


def _cfgs(extra=(), seeds=(0, 1, 2), preset="grokking", stepper="single"):
    return [build_run_config(preset, SMALL + list(extra) + [f"train.stepper={stepper}"], seed=s) for s in seeds]


def _finite_metrics(store, run_id):
    return all(math.isfinite(v) for sp in store.metrics(run_id).values() for rows in sp.values() for _, v in rows)


# --------------------------------------------------------------------------- the stacked stepper computes the same


@pytest.mark.parametrize("extra", [
    [],
    ["model.norm=layernorm", "model.n_layers=2", "model.bias=true"],
    ["model.norm=rmsnorm", "model.tied_embeddings=true", "model.d_vocab_out=14", "model.act=gelu"],
    ["model.attn_only=true", "model.positional=none", "model.n_layers=2"],
    # configurations the stacked path of earlier versions (a second copy of the forward) did not cover
    ["model.positional=rotary", "model.norm_position=post", "model.norm=layernorm"],
    ["train.grad_clip=0.05", "train.optimizer=sgd", "train.momentum=0.9", "train.lr=0.1"],
    ["model.dropout=0.2", "train.batch_size=40"],
])
def test_stacked_equals_single_in_float64(extra, chunk=None):
    """Each seed's stacked run equals its single run to float64 rounding, all seeds at once (vmap; dropout
    goes one seed per pass)."""
    single = train_many(_cfgs(extra + ["train.dtype=float64"], seeds=(0, 1)), None, progress=False)
    stacked = train_many(_cfgs(extra + ["train.dtype=float64"], seeds=(0, 1), stepper="stacked"), None,
                         progress=False, seed_chunk=chunk)
    for a, b in zip(single, stacked):
        assert b.stepper == "stacked" and a.stepper == "single"
        for k in a.metrics:
            assert b.metrics[k] == pytest.approx(a.metrics[k], rel=1e-9, abs=1e-12), (k, extra)
        for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-9, atol=1e-12, msg=name)


def test_stacked_one_seed_per_pass_equals_single_in_float64():
    test_stacked_equals_single_in_float64(["model.norm=layernorm", "model.n_layers=2"], chunk=1)


@pytest.mark.parametrize("preset, extra", [
    ("induction", ["task.vocab=12", "task.period=6", "task.min_period=3", "task.n_test=16", "model.d_model=16",
                   "train.batch_size=8"]),
    ("icl_regression", ["task.d=3", "task.n_points=6", "task.n_test=16", "model.n_layers=1", "model.d_model=16",
                        "train.batch_size=8"]),
    ("concepts", ["task.n_test=16", "model.d_model=16", "model.d_mlp=16", "train.batch_size=8"]),
    ("parity_check", ["task.train_max_length=5", "task.test_max_length=8", "task.n_eval=8", "model.n_layers=1",
                      "model.d_model=16", "train.batch_size=8"]),
])
def test_stacked_stepper_trains_other_task_families(preset, extra):
    """Continuous inputs, encoders, per-step lengths (seeds' batches of different shapes go one at a time)."""
    ex = extra + ["train.steps=6", "train.eval_every=3", "train.dtype=float64"]
    single = train_many([build_run_config(preset, ex, seed=s) for s in (0, 1)], None, progress=False)
    stacked = train_many([build_run_config(preset, ex + ["train.stepper=stacked"], seed=s) for s in (0, 1)], None,
                         progress=False, seed_chunk=None)
    for a, b in zip(single, stacked):
        for k in a.metrics:
            assert b.metrics[k] == pytest.approx(a.metrics[k], rel=1e-8, abs=1e-10), (preset, k)


def test_stacked_float32_matches_within_tolerance():
    single = train_many(_cfgs(), None, progress=False)
    stacked = train_many(_cfgs(stepper="stacked"), None, progress=False, seed_chunk=None)
    for a, b in zip(single, stacked):
        assert b.metrics["test/loss"] == pytest.approx(a.metrics["test/loss"], rel=1e-4)


def test_stacked_stepper_maps_seeds_with_vmap_when_asked():
    from theorylab.runs import build
    from theorylab.runs.steppers import StackedStepper, make_optimizer

    cfgs = _cfgs(stepper="stacked")
    tasks, models = zip(*(build(c) for c in cfgs))
    st = StackedStepper(cfgs[0], [c.seed for c in cfgs], list(tasks), list(models),
                        [make_optimizer(cfgs[0].train, m.parameters()) for m in models], chunk=None)
    losses, norms = st.forward_backward([t.train_batch(0, None) for t in tasks], 0)
    assert st.vmapped and len(losses) == 3 and all(math.isfinite(x) for x in losses + norms)
    ref = [float(t.loss(m, t.train_batch(0, None))[0].detach()) for t, m in zip(tasks, models)]
    assert losses == pytest.approx(ref, rel=1e-6)


def test_run_identity_includes_the_stepper():
    a, b = _cfgs(seeds=(0,))[0], _cfgs(seeds=(0,), stepper="stacked")[0]
    assert a.run_id() != b.run_id()


def test_bad_seed_chunk():
    from theorylab.errors import ConfigError

    with pytest.raises(ConfigError, match="seed_chunk"):
        train_many(_cfgs(seeds=(0,)), None, progress=False, seed_chunk=-1)


# --------------------------------------------------------------------------- the contract, for both steppers


def _poison(monkeypatch, seed, at_step, make_bad):
    """Make the training loss of ``seed`` at optimizer step ``at_step`` bad in the way ``make_bad`` says."""
    real_loss, real_batch = ModularTask.loss, ModularTask.train_batch
    seen = {}

    def train_batch(self, step, bs):
        seen[self.seed] = step
        return real_batch(self, step, bs)

    def loss(self, model, batch):
        value, out = real_loss(self, model, batch)
        if torch.is_grad_enabled() and self.seed == seed and seen.get(self.seed) == at_step:
            value = make_bad(value, model)
        return value, out

    monkeypatch.setattr(ModularTask, "train_batch", train_batch)
    monkeypatch.setattr(ModularTask, "loss", loss)


@pytest.mark.parametrize("stepper", STEPPERS)
def test_nan_loss_diverges_that_seed_only(store, monkeypatch, stepper):
    cfgs = _cfgs(["train.steps=20", "train.checkpoint_every=5", "train.keep_checkpoints=all"], seeds=(0, 1),
                 stepper=stepper)
    _poison(monkeypatch, 1, 13, lambda v, m: v * float("nan"))
    a, b = train_many(cfgs, store, progress=False)
    assert a.status == "finished" and a.step == 20
    assert b.status == "diverged" and b.diverged_step == 13 and b.step == 13 and b.diverged_on == "train/batch_loss"
    rec = store.get_run(b.run_id)
    assert rec.status == "diverged" and rec.step == 13 and rec.summary["diverged_on"] == "train/batch_loss"
    assert [x["step"] for x in store.artifacts(b.run_id, "checkpoint")] == [5, 10]  # none from the bad step
    assert max(s for s, _ in store.metrics(b.run_id)["test"]["loss"]) == 12
    assert _finite_metrics(store, b.run_id) and all(math.isfinite(v) for v in b.metrics.values())
    again = train_many(cfgs, store, progress=False)  # a diverged run is a result: served from the store
    assert again[1].reused and again[1].status == "diverged" and again[1].diverged_step == 13


@pytest.mark.parametrize("stepper", STEPPERS)
def test_non_finite_gradient_with_finite_loss_diverges(store, monkeypatch, stepper):
    # sqrt(0 * w) is 0 but its gradient is 0 * inf = nan: the loss stays finite, the update would not
    cfgs = _cfgs(["train.steps=20", "train.checkpoint_every=5"], seeds=(0, 1), stepper=stepper)
    _poison(monkeypatch, 0, 7, lambda v, m: v + torch.sqrt(0 * next(m.parameters()).sum()))
    a, b = train_many(cfgs, store, progress=False)
    assert a.status == "diverged" and a.diverged_step == 7 and a.diverged_on == "train/grad_norm"
    assert all(torch.isfinite(p).all() for p in a.model.parameters())  # the bad update was never applied
    assert latest_checkpoint(store, a.run_id)[1] == 5
    assert b.status == "finished"


@pytest.mark.parametrize("stepper", STEPPERS)
def test_non_finite_metric_diverges_and_is_not_logged(store, monkeypatch, stepper):
    cfgs = _cfgs(["train.steps=20"], seeds=(0, 1), stepper=stepper)
    real = ModularTask.metrics
    calls = {"n": 0}

    def metrics(self, model, batch, out=None):
        m = real(self, model, batch, out)
        if self.seed == 1 and not model.training:
            calls["n"] += 1
            if calls["n"] > 4:  # from the third evaluation on (two splits per evaluation)
                m["loss"] = float("inf")
        return m

    monkeypatch.setattr(ModularTask, "metrics", metrics)
    a, b = train_many(cfgs, store, progress=False)
    assert a.status == "finished"
    assert b.status == "diverged" and b.diverged_step == 8 and b.diverged_on == "test/loss"
    assert _finite_metrics(store, b.run_id) and max(s for s, _ in store.metrics(b.run_id)["test"]["loss"]) == 4
    assert store.get_run(b.run_id).summary["diverged_on"] == "test/loss"


@pytest.mark.parametrize("stepper", STEPPERS)
def test_failure_marks_failed_and_resumes_to_the_straight_result(store, monkeypatch, stepper):
    cfgs = _cfgs(["train.steps=30", "train.checkpoint_every=10"], seeds=(0, 1), stepper=stepper)
    straight = train_many(cfgs, None, progress=False)
    real = ModularTask.train_batch

    def flaky(self, step, bs):
        if step == 15:
            raise RuntimeError("disk on fire")
        return real(self, step, bs)

    monkeypatch.setattr(ModularTask, "train_batch", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train_many(cfgs, store, progress=False)
    for c in cfgs:
        rec = store.get_run(c.run_id())
        assert rec.status == "failed" and "disk on fire" in rec.summary["error"]
        assert latest_checkpoint(store, c.run_id())[1] == 10
    monkeypatch.setattr(ModularTask, "train_batch", real)
    done = train_many(cfgs, store, progress=False)
    for a, b in zip(straight, done):
        assert b.status == "finished" and b.step == 30 and b.metrics == a.metrics


@pytest.mark.parametrize("stepper", STEPPERS)
def test_interrupt_marks_stopped_and_resumes_to_the_straight_result(store, monkeypatch, stepper):
    cfgs = _cfgs(["train.steps=30", "train.checkpoint_every=10"], seeds=(0, 1), stepper=stepper)
    straight = train_many(cfgs, None, progress=False)
    real = ModularTask.train_batch

    def interrupted(self, step, bs):
        if step == 22:
            raise KeyboardInterrupt
        return real(self, step, bs)

    monkeypatch.setattr(ModularTask, "train_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_many(cfgs, store, progress=False)
    assert [store.get_run(c.run_id()).status for c in cfgs] == ["stopped", "stopped"]
    monkeypatch.setattr(ModularTask, "train_batch", real)
    done = [resume(store, c.run_id(), progress=False) for c in cfgs]
    for a, b in zip(straight, done):
        assert b.status == "finished" and b.metrics == a.metrics


@pytest.mark.parametrize("stepper", STEPPERS)
def test_uneven_checkpoints_resume_each_seed_from_its_own(store, stepper):
    """Seeds of one group killed at different steps: each resumes from its own last checkpoint (not from 0)."""
    cfgs = _cfgs(["train.steps=24", "train.checkpoint_every=4", "train.keep_checkpoints=all"], seeds=(0, 1),
                 stepper=stepper)
    straight = train_many(cfgs, None, progress=False)
    train_many(cfgs[:1], store, progress=False, stop_after=9)   # seed 0: checkpoint at 8, stopped at 9
    train_many(cfgs[1:], store, progress=False, stop_after=17)  # seed 1: checkpoint at 16, stopped at 17
    assert [latest_checkpoint(store, c.run_id())[1] for c in cfgs] == [9, 17]
    for c in cfgs:  # drop the stop checkpoints: a kill leaves only the periodic ones
        path, _ = latest_checkpoint(store, c.run_id())
        store.remove_artifact(c.run_id(), "checkpoint", path)
        path.unlink()
    assert [latest_checkpoint(store, c.run_id())[1] for c in cfgs] == [8, 16]
    seen: dict[int, list[int]] = {0: [], 1: []}
    done = train_many(cfgs, store, progress=False, on_eval=lambda i, step, vals: seen[i].append(step))
    assert seen[0][0] == 12 and seen[1][0] == 20  # neither restarted from step 0
    for a, b in zip(straight, done):
        assert b.status == "finished" and b.metrics == a.metrics
        assert [s for s, _ in store.metrics(b.run_id)["test"]["loss"]] == [0, 4, 8, 12, 16, 20, 24]


@pytest.mark.parametrize("stepper", STEPPERS)
def test_checkpoints_carry_run_rng_and_stepper(store, stepper):
    from theorylab.store.checkpoint import read_checkpoint

    r = train_many(_cfgs(seeds=(4,), stepper=stepper), store, progress=False)[0]
    path, step = latest_checkpoint(store, r.run_id)
    import json

    extra = json.loads(read_checkpoint(path)[1]["extra"])
    assert extra["run_id"] == r.run_id and extra["rng"]["seed"] == 4 and extra["rng"]["next_step"] == step
    assert extra["stepper"] == stepper


@pytest.mark.parametrize("stepper", STEPPERS)
def test_stop_and_resume_equals_straight_run(tmp_path, stepper):
    cfgs = _cfgs(["train.checkpoint_every=4"], seeds=(0, 1), stepper=stepper)
    straight = train_many(cfgs, None, progress=False)
    store = Store(tmp_path)
    part = train_many(cfgs, store, progress=False, stop_after=5)
    assert [r.status for r in part] == ["stopped", "stopped"]
    done = train_many(cfgs, store, progress=False)
    for a, b in zip(straight, done):
        assert b.status == "finished" and b.metrics == a.metrics


def test_a_stacked_checkpoint_resumes_alone(tmp_path):
    cfgs = _cfgs(["train.checkpoint_every=4"], seeds=(0, 1), stepper="stacked")
    straight = train_many(cfgs, None, progress=False)
    store = Store(tmp_path)
    train_many(cfgs, store, progress=False, stop_after=6)
    r = resume(store, cfgs[1].run_id(), progress=False)
    assert r.status == "finished" and r.metrics == straight[1].metrics


def test_each_seed_is_its_own_stored_run(tmp_path):
    store = Store(tmp_path)
    cfgs = _cfgs(stepper="stacked")
    res = train_many(cfgs, store, progress=False)
    assert len({r.run_id for r in res}) == 3
    for c, r in zip(cfgs, res):
        rec = store.get_run(c.run_id())
        assert rec.status == "finished" and rec.seed == c.seed and rec.summary["stepper"] == "stacked"
        assert store.metrics(r.run_id)["test"]["loss"][-1][0] == 12
    again = train_many(cfgs, store, progress=False)
    assert all(r.reused for r in again)
    assert train(cfgs[1], store, progress=False).reused


def test_mixed_configs_are_grouped():
    a = _cfgs(seeds=(0,))
    b = _cfgs(["train.weight_decay=0.0"], seeds=(0, 1))
    res = train_many(a + b, None, progress=False)
    assert [r.run_id for r in res] == [c.run_id() for c in a + b]
    assert res[0].metrics["test/loss"] != res[1].metrics["test/loss"]


@pytest.mark.parametrize("stepper", STEPPERS)
def test_early_stop_per_configuration(stepper):
    cfgs = _cfgs(["train.early_stop_metric=train/loss", "train.early_stop_value=100.0",
                  "train.early_stop_mode=min"], seeds=(0,), stepper=stepper) + _cfgs(seeds=(1,), stepper=stepper)
    res = train_many(cfgs, None, progress=False)
    assert res[0].early_stopped and res[0].step == 0
    assert not res[1].early_stopped and res[1].step == 12


def test_repeated_config_trained_once():
    cfgs = _cfgs(seeds=(0, 1))
    res = train_many([cfgs[0], cfgs[1], cfgs[0]], None, progress=False)
    assert res[2] is res[0] and res[1].run_id != res[0].run_id
