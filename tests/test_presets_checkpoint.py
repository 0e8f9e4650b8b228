"""Resume that keeps the work: every preset (and every bare task) checkpoints often enough that a kill loses
at most a tenth of the run or ``train.checkpoint_minutes`` of wall time, whichever is less.

The wall-time cadence is checked with the loop's clock faked (no timing assertions); one slow test
kills ``theorylab train modular`` with its preset's defaults and resumes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from theorylab.runs import build_run_config, resume, train
from theorylab.runs.config import TrainConfig, preset_names
from theorylab.runs.loop import latest_checkpoint
from theorylab.runs.presets import PRESETS
from theorylab.store import Store
from theorylab.tasks.modular import ModularTask

MAX_MINUTES = 5.0  # at most this much wall time lost to a kill, on any hardware
MAX_FRACTION = 10  # and at most a tenth of a preset's run


def lost_work_bound(name: str) -> tuple[int, float]:
    """(steps, minutes): the most work a kill of a run with this preset's defaults can lose (the
    minutes plus the one step, evaluation or checkpoint under way when they run out)."""
    tc = build_run_config(name).train
    return (tc.checkpoint_every or tc.steps), (tc.checkpoint_minutes if tc.checkpoint_minutes is not None
                                               else float("inf"))


def test_the_default_train_config_checkpoints_by_wall_time():
    assert TrainConfig().checkpoint_minutes == MAX_MINUTES


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_and_task_bounds_the_work_a_kill_loses(name):
    steps, minutes = lost_work_bound(name)
    tc = build_run_config(name).train
    assert minutes <= MAX_MINUTES, name
    if name in PRESETS:  # a preset also bounds it by steps: a tenth of its run at most
        assert tc.checkpoint_every is not None and steps <= tc.steps // MAX_FRACTION, (name, steps, tc.steps)
        if tc.checkpoint_every % tc.eval_every and tc.eval_every <= tc.steps // MAX_FRACTION:
            pytest.fail(f"{name}: checkpoint_every {tc.checkpoint_every} is off the evaluation grid "
                        f"({tc.eval_every}) although one fits")


def fake_clock(monkeypatch, seconds_per_reading: float = 1.0):
    """The loop's clock, advanced by ``seconds_per_reading`` at every reading."""
    import theorylab.runs.loop as loop

    t = [0.0]

    def now():
        t[0] += seconds_per_reading
        return t[0]

    monkeypatch.setattr(loop, "_now", now)


SMALL = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.eval_every=5",
         "train.batch_size=16", "train.steps=40"]


def test_wall_time_checkpoints_bound_what_an_interrupt_loses(store, monkeypatch):
    """No step cadence at all, only checkpoint_minutes: an interrupt at step 33 resumes from a checkpoint
    a few (fake) seconds earlier, not from step 0, and ends where an uninterrupted run ends."""
    cfg = build_run_config("modular", SMALL + ["train.checkpoint_every=null", "train.checkpoint_minutes=0.1"])  # 6 s
    assert cfg.train.checkpoint_every is None
    straight = train(cfg, None, progress=False)
    fake_clock(monkeypatch)
    real = ModularTask.train_batch

    def interrupted(self, step, bs):
        if step == 33:
            raise KeyboardInterrupt
        return real(self, step, bs)

    monkeypatch.setattr(ModularTask, "train_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, store, progress=False)
    _, at = latest_checkpoint(store, cfg.run_id())
    assert 33 - 6 <= at <= 33  # at least one reading per step: at most 6 steps lost
    monkeypatch.setattr(ModularTask, "train_batch", real)
    done = resume(store, cfg.run_id(), progress=False)
    assert done.status == "finished" and done.metrics == straight.metrics


def test_wall_time_checkpoints_never_join_the_kept_series(store, monkeypatch):
    """With keep_checkpoints=all, a finished run's series is the checkpoint_every grid and the end, however
    many checkpoints the wall time (or a stop) wrote on the way: it cannot depend on the machine's speed."""
    cfg = build_run_config("modular", SMALL + ["train.checkpoint_every=10", "train.keep_checkpoints=all",
                                               "train.checkpoint_minutes=0.05"])
    fake_clock(monkeypatch)
    seen: list[list[int]] = []
    real_add = Store.add_artifact

    def spy(self, run_id, kind, path, step=None):
        real_add(self, run_id, kind, path, step)
        seen.append([a["step"] for a in self.artifacts(run_id, "checkpoint")])

    monkeypatch.setattr(Store, "add_artifact", spy)
    part = train(cfg, store, progress=False, stop_after=17)
    assert part.status == "stopped"
    assert len([s for s in seen if s[-1] % 10]) > 2, "the fake clock wrote checkpoints off the grid"
    # the grid, and one resume point: where it stopped
    assert [a["step"] for a in store.artifacts(cfg.run_id(), "checkpoint")] == [10, 17]
    done = resume(store, cfg.run_id(), progress=False)
    assert done.status == "finished"
    assert [a["step"] for a in store.artifacts(cfg.run_id(), "checkpoint")] == [10, 20, 30, 40]
    assert sorted(p.name for p in store.run_dir(cfg.run_id()).iterdir()) == [
        f"ckpt-{s:08d}.safetensors" for s in (10, 20, 30, 40)]


@pytest.mark.slow
def test_kill_9_of_the_modular_preset_resumes_from_its_checkpoint(cli_env, tmp_path):
    """``theorylab train modular`` with the preset's own cadence, killed after its first checkpoint: the
    resume starts there (not from step 0) and ends as the uninterrupted run does."""
    cfg = build_run_config("modular")
    every = cfg.train.checkpoint_every
    proc = subprocess.Popen([sys.executable, "-m", "theorylab", "train", "modular", "--quiet"], env=cli_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    s = Store(cli_env["THEORYLAB_HOME"])
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if s.db_path.exists() and s.artifacts(cfg.run_id(), "checkpoint"):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert s.get_run(cfg.run_id()).status == "interrupted"
    _, at = latest_checkpoint(s, cfg.run_id())
    assert at == every  # the preset's first checkpoint: a kill no longer sends the run back to step 0
    starts: list[int] = []
    import theorylab.runs.loop as loop

    resumed = loop.train_many([cfg], s, progress=False, run_ids=[cfg.run_id()],
                              on_eval=lambda i, step, vals: starts.append(step))[0]
    assert starts[0] == every + cfg.train.eval_every  # its first evaluation is the first after the checkpoint
    ref_store = Store(tmp_path / "ref")
    ref = train(cfg, ref_store, progress=False)
    assert resumed.status == ref.status == "finished" and resumed.step == ref.step
    assert resumed.metrics == ref.metrics
    assert s.metrics(cfg.run_id()) == ref_store.metrics(ref.run_id)
