"""Runs that died look dead: a run records who trains it and a heartbeat; a ``running`` run whose process
is gone is shown as ``interrupted`` (store, RunView, CLI) while its stored status stays as it was.

Time is faked where it matters (the loop's clock, the ``now`` liveness is judged at); processes are
real: a child that is started and reaped gives a pid that is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from theorylab.errors import StoreError
from theorylab.runs import build_run_config, train
from theorylab.runs.view import RunView
from theorylab.store import STALE_AFTER_SECONDS, Store, owner, process_start, run_is_alive, this_host

TINY = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.eval_every=2"]


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture()
def sleeper():
    """A live process of this host that is not this one."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield p
    p.kill()
    p.wait()


def as_running(store: Store, run_id: str, **who) -> None:
    store.create_run(run_id, "modular", {}, 0)
    store.update_run(run_id, status="running", started=time.time(), **who)


def test_a_live_process_of_this_host_is_alive_and_a_gone_one_is_not(sleeper):
    me = owner()
    assert me["host"] == this_host() and me["pid"] == os.getpid()
    assert run_is_alive(this_host(), os.getpid(), me["pid_start"], None)
    assert run_is_alive(this_host(), sleeper.pid, process_start(sleeper.pid), None)
    assert not run_is_alive(this_host(), dead_pid(), None, time.time())  # a fresh heartbeat does not revive it


def test_a_recycled_pid_is_not_the_run_s_process(sleeper):
    if process_start(sleeper.pid) is None:
        pytest.skip("no /proc here: a pid's start time is unknown")
    assert not run_is_alive(this_host(), sleeper.pid, "another-boot:12345", None)


def test_another_host_is_judged_by_its_heartbeat():
    now = 1_000_000.0
    assert run_is_alive("elsewhere", 1, None, now - 10, now=now)
    assert run_is_alive("elsewhere", 1, None, now - STALE_AFTER_SECONDS, now=now)
    assert not run_is_alive("elsewhere", 1, None, now - STALE_AFTER_SECONDS - 1, now=now)
    assert not run_is_alive("elsewhere", 1, None, None, now=now)


def test_store_shows_dead_running_runs_as_interrupted_without_rewriting_them(store, sleeper):
    as_running(store, "modular-dead", host=this_host(), pid=dead_pid(), heartbeat=time.time())
    as_running(store, "modular-live", host=this_host(), pid=sleeper.pid, pid_start=process_start(sleeper.pid),
               heartbeat=time.time())
    as_running(store, "modular-far", host="elsewhere", pid=1, heartbeat=time.time() - STALE_AFTER_SECONDS - 60)
    as_running(store, "modular-near", host="elsewhere", pid=1, heartbeat=time.time())
    shown = {r.id: r.status for r in store.list_runs()}
    assert shown == {"modular-dead": "interrupted", "modular-live": "running", "modular-far": "interrupted",
                     "modular-near": "running"}
    assert store.get_run("modular-dead").status == "interrupted"
    assert store.find_run("modular-de").status == "interrupted"
    assert RunView("modular-dead", store).status == "interrupted"
    assert {r.stored_status for r in store.list_runs()} == {"running"}  # the store keeps what it was told
    with store.connect() as con:
        assert {s for (s,) in con.execute("SELECT status FROM runs")} == {"running"}
    assert sorted(r.id for r in store.list_runs(status="interrupted")) == ["modular-dead", "modular-far"]
    assert sorted(r.id for r in store.list_runs(status="running")) == ["modular-live", "modular-near"]
    assert len(store.list_runs(status="interrupted", limit=1)) == 1
    later = time.time() + STALE_AFTER_SECONDS + 120  # judged later, the other host's run is gone too
    assert {r.id for r in store.list_runs(status="interrupted", now=later)} == {"modular-dead", "modular-far",
                                                                                "modular-near"}


def test_the_loop_records_its_owner_and_a_heartbeat_with_the_step(store, monkeypatch):
    """The loop's clock is faked: each reading is 1 s later, so a heartbeat is due every 5 readings."""
    import theorylab.runs.loop as loop

    ticks = iter(range(10 ** 6))
    monkeypatch.setattr(loop, "_now", lambda: float(next(ticks)))
    beats: list[tuple[list[str], int, str]] = []
    real = Store.heartbeat

    def spy(self, run_ids, step=None, now=None):
        beats.append((list(run_ids), step, self.get_run(run_ids[0]).stored_status))
        return real(self, run_ids, step, now)

    monkeypatch.setattr(Store, "heartbeat", spy)
    cfg = build_run_config("modular", TINY + ["train.steps=40", "train.checkpoint_every=10"])
    seen = []
    res = train(cfg, store, progress=False, on_eval=lambda step, vals: seen.append(
        (step, store.get_run(cfg.run_id()).status, store.get_run(cfg.run_id()).pid)))
    assert res.status == "finished"
    # while training, the run was running and owned by this process
    assert all(st == "running" and pid == os.getpid() for _, st, pid in seen[1:])
    steps = [s for _, s, _ in beats]
    assert steps == sorted(steps) and len(beats) >= 4 and all(st == "running" for _, _, st in beats)
    assert {10, 20, 30} <= set(steps)  # every checkpoint comes with a heartbeat, so the step is never behind it
    rec = store.get_run(cfg.run_id())
    assert rec.status == "finished" and rec.host == this_host() and rec.pid == os.getpid()
    assert rec.heartbeat is not None and rec.heartbeat <= time.time()


def test_heartbeats_are_rate_limited(store, monkeypatch):
    """With a clock that stands still, the loop writes no heartbeat but the checkpoints' (cheap)."""
    import theorylab.runs.loop as loop

    monkeypatch.setattr(loop, "_now", lambda: 0.0)
    calls = []
    real = Store.heartbeat
    monkeypatch.setattr(Store, "heartbeat", lambda self, ids, step=None, now=None: (calls.append(step),
                                                                                     real(self, ids, step, now)))
    train(build_run_config("modular", TINY + ["train.steps=30", "train.checkpoint_every=10"]), store, progress=False)
    assert calls == [10, 20, 30]  # only those that come with the checkpoints (30: the last one)


def test_a_run_a_live_process_trains_is_not_trained_twice(store, sleeper):
    cfg = build_run_config("modular", TINY + ["train.steps=4"])
    rid = cfg.run_id()
    as_running(store, rid, host=this_host(), pid=sleeper.pid, pid_start=process_start(sleeper.pid),
               heartbeat=time.time())
    with pytest.raises(StoreError, match=f"run {rid} is being trained by process {sleeper.pid} on this host"):
        train(cfg, store, progress=False)
    rec = store.get_run(rid)
    assert rec.status == "running" and rec.pid == sleeper.pid and store.metrics(rid) == {}  # untouched
    store.update_run(rid, heartbeat=time.time() - STALE_AFTER_SECONDS - 60)  # alive, but silent for long:

    def stop(step, vals):  # (stopped at its first evaluation)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # it does not hold the run
        train(cfg, store, progress=False, on_eval=stop)
    assert store.get_run(rid).pid == os.getpid()
    store.update_run(rid, status="running", pid=sleeper.pid, pid_start=process_start(sleeper.pid),
                     heartbeat=time.time())
    sleeper.kill()
    sleeper.wait()
    assert store.get_run(rid).status == "interrupted"
    res = train(cfg, store, progress=False)  # its process gone, the run is trained (resumed) here
    assert res.status == "finished" and store.get_run(rid).pid == os.getpid()


def test_cli_runs_and_show_say_interrupted(cli, store):
    as_running(store, "modular-dead", host=this_host(), pid=dead_pid(), heartbeat=time.time())
    rc, out, _ = cli("runs")
    assert rc == 0 and "modular-dead" in out and "interrupted" in out and "theorylab resume" in out
    rc, out, _ = cli("runs", "--status", "interrupted", "--json")
    import json

    [r] = json.loads(out)["runs"]
    assert r["id"] == "modular-dead" and r["status"] == "interrupted" and r["stored_status"] == "running"
    rc, out, _ = cli("show", "modular-dead")
    assert rc == 0 and "status=interrupted" in out and "is gone" in out and "resumes from step 0" in out
