"""Trainer: determinism, schedules, early stop, divergence, reuse, resume."""

from __future__ import annotations

import math

import pytest
import torch

from theorylab.train import build_run_config, lr_at, resume, train
from theorylab.train.trainer import latest_checkpoint

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
