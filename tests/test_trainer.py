"""Trainer: determinism, schedules, early stop, divergence, reuse, resume."""

from __future__ import annotations

import math

import pytest
import torch

from theorylab.runs import build_run_config, lr_at, resume, train
from theorylab.runs.loop import latest_checkpoint

TINY = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.eval_every=10"]


def cfg(*extra, seed=0):
    return build_run_config("modular", TINY + list(extra), seed=seed)


def test_same_config_and_seed_identical_metrics(store):
    a = train(cfg("train.steps=30", "train.batch_size=16"), None, progress=False)
    b = train(cfg("train.steps=30", "train.batch_size=16"), None, progress=False)
    assert a.metrics == b.metrics  # bit for bit
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = train(cfg("train.steps=30", "train.batch_size=16", seed=1), None, progress=False)
    assert c.metrics != a.metrics


def test_global_rng_untouched():
    state = torch.random.get_rng_state()
    train(cfg("train.steps=3", "model.dropout=0.1"), None, progress=False)
    assert torch.equal(state, torch.random.get_rng_state())


def test_dropout_runs_are_deterministic():
    a = train(cfg("train.steps=10", "model.dropout=0.2"), None, progress=False)
    b = train(cfg("train.steps=10", "model.dropout=0.2"), None, progress=False)
    assert a.metrics == b.metrics


@pytest.mark.parametrize("opt", ["adamw", "adam", "sgd"])
def test_optimizers_reduce_train_loss(opt):
    lr = "0.5" if opt == "sgd" else "0.01"
    r = train(cfg("train.steps=60", f"train.optimizer={opt}", f"train.lr={lr}", "train.weight_decay=0.0",
                  "model.init_std=0.2"), None, progress=False)
    assert r.status == "finished"
    first = r.model  # noqa: F841
    assert r.metrics["train/loss"] < math.log(11)


def test_schedules():
    c = cfg("train.steps=100", "train.lr=1.0", "train.warmup_steps=10", "train.schedule=cosine",
            "train.min_lr_ratio=0.1").train
    assert lr_at(c, 0) == pytest.approx(0.1)
    assert lr_at(c, 9) == pytest.approx(1.0)
    assert lr_at(c, 10) == pytest.approx(1.0)
    assert lr_at(c, 55) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-6)
    assert lr_at(c, 100) == pytest.approx(0.1)
    lin = cfg("train.steps=100", "train.lr=1.0", "train.warmup_steps=0", "train.schedule=linear").train
    assert lr_at(lin, 50) == pytest.approx(0.5)


def test_eval_points_and_store(store):
    r = train(cfg("train.steps=25"), store, progress=False)
    m = store.metrics(r.run_id)
    steps = [s for s, _ in m["test"]["accuracy"]]
    assert steps == [0, 10, 20, 25]
    assert set(m) >= {"train", "test"}
    rec = store.get_run(r.run_id)
    assert rec.status == "finished" and rec.step == 25 and rec.wall_seconds > 0
    assert rec.versions["torch"] == torch.__version__


def test_minibatch_is_a_pure_function_of_seed_and_step():
    from theorylab.tasks import make_task

    c = cfg("train.batch_size=8")
    t1, t2 = make_task(c.task, 0), make_task(c.task, 0)
    assert torch.equal(t1.train_batch(5, 8).tokens, t2.train_batch(5, 8).tokens)
    assert not torch.equal(t1.train_batch(5, 8).tokens, t1.train_batch(6, 8).tokens)
    assert len(t1.train_batch(0, None)) == len(t1.train_set)


def test_early_stop(store):
    r = train(cfg("train.steps=500", "train.early_stop_metric=train/accuracy", "train.early_stop_value=0.0"),
              store, progress=False)
    assert r.early_stopped and r.step == 0 and r.status == "finished"


def test_nan_marks_run_diverged(store):
    r = train(cfg("train.steps=50", "train.optimizer=sgd", "train.lr=1e30"), store, progress=False)
    assert r.status == "diverged"
    assert r.diverged_step is not None and r.diverged_step < 50
    rec = store.get_run(r.run_id)
    assert rec.status == "diverged" and rec.summary["diverged_step"] == r.diverged_step
    # no checkpoint with garbage weights is written
    assert latest_checkpoint(store, r.run_id) is None


def test_identical_rerun_is_reused_unless_forced(store):
    c = cfg("train.steps=10")
    a = train(c, store, progress=False)
    b = train(c, store, progress=False)
    assert b.reused and b.metrics == a.metrics and b.run_id == a.run_id
    f = train(c, store, force=True, progress=False)
    assert not f.reused and f.metrics == a.metrics
    assert len(store.list_runs()) == 1


def test_stop_then_resume_equals_uninterrupted(store, tmp_path):
    from theorylab.store import Store

    c = cfg("train.steps=40", "train.checkpoint_every=10", "train.batch_size=16")
    part = train(c, store, progress=False, stop_after=17)
    assert part.status == "stopped"
    ck = latest_checkpoint(store, part.run_id)
    assert ck is not None and ck[1] == 17  # a graceful stop checkpoints where it stopped
    done = resume(store, part.run_id, progress=False)
    ref_store = Store(tmp_path / "ref")
    ref = train(c, ref_store, progress=False)
    assert done.status == "finished" and done.step == 40
    assert done.metrics == ref.metrics
    assert store.metrics(part.run_id) == ref_store.metrics(ref.run_id)


def test_keep_all_checkpoints(store):
    r = train(cfg("train.steps=30", "train.checkpoint_every=10", "train.keep_checkpoints=all"), store,
              progress=False)
    steps = [a["step"] for a in store.artifacts(r.run_id, "checkpoint")]
    assert steps == [10, 20, 30]


def test_a_failing_run_is_marked_failed_and_can_resume(store, monkeypatch):
    from theorylab.tasks.modular import ModularTask

    c = cfg("train.steps=30", "train.checkpoint_every=10")
    real = ModularTask.train_batch

    def flaky(self, step, bs):
        if step == 15:
            raise RuntimeError("disk on fire")
        return real(self, step, bs)

    monkeypatch.setattr(ModularTask, "train_batch", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(c, store, progress=False)
    rec = store.get_run(c.run_id())
    assert rec.status == "failed" and "disk on fire" in rec.summary["error"]
    monkeypatch.setattr(ModularTask, "train_batch", real)
    done = train(c, store, progress=False)
    assert done.status == "finished" and done.step == 30
    assert done.metrics == train(c, None, progress=False).metrics


# --------------------------------------------------------------------------- divergence, validation, reuse


def _patch_loss(monkeypatch, at_step, make_bad):
    """Make the training loss of optimizer step ``at_step`` bad in the way ``make_bad`` says."""
    from theorylab.tasks.modular import ModularTask

    real_loss, real_batch = ModularTask.loss, ModularTask.train_batch
    seen = {}

    def train_batch(self, step, bs):
        seen["step"] = step
        return real_batch(self, step, bs)

    def loss(self, model, batch):
        value, out = real_loss(self, model, batch)
        if model.training and seen.get("step") == at_step:
            value = make_bad(value, model)
        return value, out

    monkeypatch.setattr(ModularTask, "train_batch", train_batch)
    monkeypatch.setattr(ModularTask, "loss", loss)


def _all_finite(store, run_id):
    return all(math.isfinite(v) for sp in store.metrics(run_id).values() for rows in sp.values() for _, v in rows)


def test_nan_loss_marks_diverged_at_that_step(store, monkeypatch):
    _patch_loss(monkeypatch, 13, lambda v, m: v * float("nan"))
    c = cfg("train.steps=40", "train.checkpoint_every=5", "train.keep_checkpoints=all")
    r = train(c, store, progress=False)
    assert r.status == "diverged" and r.diverged_step == 13 and r.step == 13 and r.diverged_on == "train/batch_loss"
    rec = store.get_run(r.run_id)
    assert rec.status == "diverged" and rec.step == 13
    assert [a["step"] for a in store.artifacts(r.run_id, "checkpoint")] == [5, 10]  # none from the bad step
    assert max(s for s, _ in store.metrics(r.run_id)["test"]["loss"]) == 10
    assert _all_finite(store, r.run_id)
    assert all(math.isfinite(v) for v in r.metrics.values())
    again = train(c, store, progress=False)  # a diverged run is a result: served from the store
    assert again.reused and again.status == "diverged" and again.diverged_step == 13


def test_infinite_gradient_with_finite_loss_is_caught(store, monkeypatch):
    # sqrt(0 * w) is 0 but its gradient is 0 * inf = nan: the loss stays finite, the update would not
    _patch_loss(monkeypatch, 7, lambda v, m: v + torch.sqrt(0 * next(m.parameters()).sum()))
    r = train(cfg("train.steps=40", "train.checkpoint_every=5"), store, progress=False)
    assert r.status == "diverged" and r.diverged_step == 7 and r.diverged_on == "train/grad_norm"
    assert all(torch.isfinite(p).all() for p in r.model.parameters())  # the bad update was never applied
    assert latest_checkpoint(store, r.run_id)[1] == 5


def test_unknown_early_stop_metric_writes_nothing(store):
    from theorylab.errors import ConfigError

    with pytest.raises(ConfigError, match="train.early_stop_metric: 'test/acc' is not a metric"):
        train(cfg("train.steps=5", "train.early_stop_metric=test/acc", "train.early_stop_value=0.5"), store,
              progress=False)
    assert not store.db_path.exists()


def test_unavailable_device_writes_nothing(store):
    from theorylab.errors import TheoryLabError

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(TheoryLabError, match="train.device"):
        train(cfg("train.steps=5", "train.device=cuda"), store, progress=False)
    assert not store.db_path.exists()


def test_force_replaces_checkpoints(store):
    c = cfg("train.steps=20", "train.checkpoint_every=5", "train.keep_checkpoints=all")
    a = train(c, store, progress=False)
    stray = store.run_dir(a.run_id) / "ckpt-99999999.safetensors"
    stray.write_bytes(b"old")
    f = train(c, store, force=True, progress=False)
    assert f.metrics == a.metrics and not stray.exists()
    assert [a["step"] for a in store.artifacts(f.run_id, "checkpoint")] == [5, 10, 15, 20]


def test_checkpoint_records_run_and_rng(store):
    from theorylab.store.checkpoint import read_checkpoint

    r = train(cfg("train.steps=10", seed=4), store, progress=False)
    _, meta = read_checkpoint(latest_checkpoint(store, r.run_id)[0])
    import json

    extra = json.loads(meta["extra"])
    assert extra["run_id"] == r.run_id and extra["rng"]["seed"] == 4 and extra["rng"]["next_step"] == 10
    assert meta["step"] == "10" and meta["optim_class"] == "AdamW"


def test_minibatch_and_full_batch_differ_and_both_are_deterministic():
    full = train(cfg("train.steps=20"), None, progress=False)
    mini = train(cfg("train.steps=20", "train.batch_size=8"), None, progress=False)
    assert mini.metrics != full.metrics
    assert train(cfg("train.steps=20", "train.batch_size=8"), None, progress=False).metrics == mini.metrics
    big = train(cfg("train.steps=20", "train.batch_size=100000"), None, progress=False)  # >= split: full batch
    assert big.metrics == full.metrics


def test_gradient_clipping_bounds_the_norm_as_torch_does():
    from theorylab.runs import build
    from theorylab.runs.steppers import clip_grads_

    task, model = build(cfg("train.steps=1"))
    loss, _ = task.loss(model, task.train_batch(0, None))
    (loss * 1e6).backward()
    grads = [p.grad for p in model.parameters()]
    ref = [g.clone() for g in grads]
    before = clip_grads_(grads, None)
    assert before > 1.0 and all(torch.equal(g, r) for g, r in zip(grads, ref))  # no clip: untouched
    returned = clip_grads_(grads, 0.5)
    assert returned == before
    assert clip_grads_(grads, None) == pytest.approx(0.5, rel=1e-4)
    for p, r in zip(model.parameters(), ref):
        p.grad = r.clone()
    torch_norm = torch.nn.utils.clip_grad_norm_(list(model.parameters()), 0.5)
    assert float(torch_norm) == pytest.approx(before, rel=1e-6)
    assert all(torch.allclose(g, p.grad) for g, p in zip(grads, model.parameters()))


def test_weight_decay_shrinks_weights():
    plain = train(cfg("train.steps=30", "train.weight_decay=0"), None, progress=False)
    decayed = train(cfg("train.steps=30", "train.weight_decay=5.0"), None, progress=False)

    def norm(m):
        return sum(float(p.detach().double().pow(2).sum()) for p in m.parameters())

    assert norm(decayed.model) < norm(plain.model)


def test_warmup_then_constant_and_lr_is_logged(store):
    c = cfg("train.steps=20", "train.lr=0.01", "train.warmup_steps=4")
    assert [lr_at(c.train, s) for s in range(6)] == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
    r = train(c, store, progress=False)
    lrs = dict(store.metrics(r.run_id)["train"]["lr"])
    assert lrs[10] == pytest.approx(0.01) and lrs[0] == pytest.approx(0.0025)


def test_stored_metrics_equal_the_result(store):
    r = train(cfg("train.steps=20", "train.batch_size=16"), store, progress=False)
    m = store.metrics(r.run_id)
    for key, value in r.metrics.items():
        split, name = key.split("/", 1)
        assert m[split][name][-1] == (20, value)


def test_runs_made_by_other_code_are_stale_and_never_reused(store, monkeypatch, cli):
    """The run id hashes the code that decides a run's numbers: with another fingerprint the same config is
    another run, trained again; the old one is listed as stale and cannot be resumed as current."""
    import json

    from theorylab.runs import config as run_config
    from theorylab.runs.config import is_stale

    c = cfg("train.steps=6")
    old = train(c, store, progress=False)
    assert not is_stale(store.get_run(old.run_id).config, old.run_id)
    assert train(c, store, progress=False).reused
    monkeypatch.setattr(run_config, "_FINGERPRINTS", {})
    monkeypatch.setattr(run_config, "_normalized_source", lambda path: "edited " + path.name)
    new = train(c, store, progress=False)
    assert new.run_id != old.run_id and not new.reused and new.status == "finished"
    assert is_stale(store.get_run(old.run_id).config, old.run_id)
    rc, out, _ = cli("runs", "--json")
    stale = {r["id"]: r["stale"] for r in json.loads(out)["runs"]}
    assert rc == 0 and stale == {old.run_id: True, new.run_id: False}
    store.update_run(old.run_id, status="stopped")
    rc, _, err = cli("resume", old.run_id)
    assert rc == 2 and "other model, task or loop code" in err


def test_code_fingerprint_ignores_comments_and_docstrings_but_not_code(tmp_path):
    from theorylab.runs.config import _normalized_source

    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Doc."""\n\ndef f(x):\n    """Twice."""\n    return 2 * x  # double\n')
    b.write_text('"""Other words."""\n\n\ndef f(x):\n    # a comment\n    return 2 * x\n')
    c.write_text('"""Doc."""\n\ndef f(x):\n    return 3 * x\n')
    assert _normalized_source(a) == _normalized_source(b) != _normalized_source(c)


def test_a_run_served_from_the_store_has_its_model(store):
    """result.model is the trained Transformer whether the run trained now or came from the store (loaded from
    its last checkpoint, equal to the model that finished training)."""
    from theorylab.models import Transformer

    c = cfg("train.steps=12", "train.eval_every=6")
    fresh = train(c, store, progress=False)
    again = train(c, store, progress=False)
    assert again.reused and not fresh.reused
    assert isinstance(again.model, Transformer) and again.model is again.model  # loaded once
    for (n, a), b in zip(fresh.model.named_parameters(), again.model.parameters()):
        assert torch.equal(a.detach(), b.detach()), n
    x = torch.tensor([[1, 2, 11]])
    assert torch.equal(fresh.model.eval()(x), again.model(x))
    assert "model" not in again.to_dict() and "_model" not in again.to_dict()
    from theorylab.runs import resume

    assert isinstance(resume(store, fresh.run_id, progress=False).model, Transformer)
