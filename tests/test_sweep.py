"""Sweeps: grids, in-process / local pool / Ray backends, a worker killed mid-sweep."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

import pytest
import torch

from theorylab.config import validate
from theorylab.errors import ConfigError
from theorylab.runs import RunConfig, train
from theorylab.store import Store
from theorylab.sweep import grid, run_sweep


def tiny(seed: int = 0, steps: int = 6, **train_kw) -> RunConfig:
    data = {"task": {"name": "modular", "p": 5, "train_fraction": 0.6},
            "model": {"n_layers": 1, "d_model": 8, "n_heads": 2, "d_mlp": 16},
            "train": {"steps": steps, "eval_every": 3, "lr": 1e-2, **train_kw}, "seed": seed}
    return validate(RunConfig, data)


def _assert_exactly_once(store: Store, configs) -> None:
    ids = sorted({c.run_id() for c in configs})
    with store.connect() as con:
        rows = con.execute("SELECT id, status FROM runs ORDER BY id").fetchall()
        dup = con.execute("SELECT run_id, step, split, name, COUNT(*) FROM metrics "
                          "GROUP BY run_id, step, split, name HAVING COUNT(*) > 1").fetchall()
    assert [r[0] for r in rows] == ids
    assert all(r[1] == "finished" for r in rows)
    assert dup == []
    for c in configs:
        steps = [s for s, _ in store.metrics(c.run_id(), "test", "accuracy")["test"]["accuracy"]]
        ev = c.train.eval_every
        assert steps == list(range(0, c.train.steps + 1, ev)), "every evaluation exactly once"


def test_grid_builds_the_product():
    cfgs = grid(tiny(), {"train.weight_decay": [0.0, 1.0], "train.lr": [1e-3, 1e-2]}, seeds=2)
    assert len(cfgs) == 8 and len({c.run_id() for c in cfgs}) == 8
    assert {(c.train.weight_decay, c.train.lr, c.seed) for c in cfgs} == {
        (w, lr, s) for w in (0.0, 1.0) for lr in (1e-3, 1e-2) for s in (0, 1)}
    from_preset = grid("modular", {"task.p": [5, 7]}, seeds=[3])
    assert [(c.task.p, c.seed) for c in from_preset] == [(5, 3), (7, 3)]
    with pytest.raises(ConfigError, match="train.lr"):
        grid(tiny(), {"train.lr": []})
    with pytest.raises(ConfigError):
        grid(tiny(), {"train.lr": [-1.0]})


def test_sweep_rejects_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="backend"):
        run_sweep([tiny()], Store(tmp_path), backend="slurm")
    with pytest.raises(ConfigError, match="workers"):
        run_sweep([tiny()], Store(tmp_path), workers=0)
    with pytest.raises(ConfigError, match="RunConfig"):
        run_sweep([{"task": "modular"}], Store(tmp_path))


def test_inprocess_sweep_dedups_and_reuses(tmp_path):
    store = Store(tmp_path)
    cfgs = [tiny(0), tiny(1), tiny(0)]  # a duplicate lands once
    res = run_sweep(cfgs, store, backend="inprocess", progress=False)
    assert res.ok and len(res.run_ids) == 2 and sorted(res.trained) == sorted(res.run_ids)
    _assert_exactly_once(store, cfgs)
    again = run_sweep(cfgs, store, backend="inprocess", progress=False)
    assert again.trained == [] and sorted(again.reused) == sorted(res.run_ids)
    assert again.metrics == res.metrics


@pytest.mark.slow
def test_local_pool_sweep(tmp_path):
    store = Store(tmp_path)
    cfgs = grid(tiny(), {"train.weight_decay": [0.0, 1.0]}, seeds=2)
    res = run_sweep(cfgs, store, backend="local", workers=2, progress=False)
    assert res.ok, res.errors
    assert sorted(res.trained) == sorted(c.run_id() for c in cfgs)
    _assert_exactly_once(store, cfgs)
    # the pool gives the same numbers as training in this process (determinism)
    torch.set_num_threads(1)
    ref = train(cfgs[1], None, progress=False).metrics
    assert res.metrics[cfgs[1].run_id()]["test/loss"] == pytest.approx(ref["test/loss"], rel=1e-6)


@pytest.mark.slow
def test_ray_sweep(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'theorylab[ray]'); CI installs it")
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # start a local Ray, never join someone's cluster
    store = Store(tmp_path)
    cfgs = [tiny(s) for s in range(3)]
    try:
        res = run_sweep(cfgs, store, backend="ray", workers=2, progress=False)
    finally:
        ray.shutdown()
    assert res.ok, res.errors
    assert res.backend == "ray" and sorted(res.trained) == sorted(c.run_id() for c in cfgs)
    _assert_exactly_once(store, cfgs)


@pytest.mark.slow
def test_worker_killed_mid_sweep_every_run_exactly_once(tmp_path, monkeypatch):
    """SIGKILL the pool's worker while it trains; the sweep resubmits, the run resumes from its
    checkpoint, and every run ends finished once with the metrics of an uninterrupted run."""
    monkeypatch.setenv("THEORYLAB_SWEEP_ALWAYS_POOL", "1")
    store = Store(tmp_path)
    victim = tiny(0, steps=600, checkpoint_every=30)
    other = tiny(1, steps=30)
    cfgs = [victim, other]
    box: dict = {}

    def go():
        try:
            box["res"] = run_sweep(cfgs, store, backend="local", workers=1, progress=False)
        except BaseException as err:  # pragma: no cover - surfaced below
            box["err"] = err

    th = threading.Thread(target=go)
    th.start()
    killed = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and th.is_alive():
        arts = store.artifacts(victim.run_id(), "checkpoint") if store.db_path.exists() else []
        if arts and max(a["step"] for a in arts) >= 60:
            workers = [p for p in mp.active_children() if p.is_alive()]
            if workers:
                killed = max(a["step"] for a in arts)
                for p in workers:
                    os.kill(p.pid, signal.SIGKILL)
                break
        time.sleep(0.02)
    th.join(180)
    assert not th.is_alive()
    assert "err" not in box, box.get("err")
    res = box["res"]
    assert killed is not None and killed < victim.train.steps, "the worker was killed mid-run"
    assert res.worker_deaths >= 1 and res.attempts[victim.run_id()] >= 2
    assert res.ok, res.errors
    _assert_exactly_once(store, cfgs)
    rec = store.get_run(victim.run_id())
    assert rec.step == victim.train.steps
    torch.set_num_threads(1)  # as the pool's workers do: same thread count, same float reductions
    ref = train(victim, None, progress=False).metrics  # the same run, never interrupted
    got = rec.summary["metrics"]
    for k in ("train/loss", "test/loss", "test/accuracy"):
        assert got[k] == pytest.approx(ref[k], rel=1e-5, abs=1e-7), k


def _killing_backend(backend: str, monkeypatch):
    """The environment for a sweep on ``backend`` whose workers obey kill orders; returns the cleanup."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # start a local Ray, never join someone's cluster
    if backend != "ray":
        return lambda: None
    pytest.importorskip("ray", reason="ray is not installed (pip install 'theorylab[ray]'); CI installs it")
    import ray

    return ray.shutdown


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "ray"])
def test_worker_deaths_and_attempts_count_the_same_on_every_backend(tmp_path, monkeypatch, backend):
    """One attempt = one time a run's unit is handed to a worker; a worker death = the worker process
    exiting abnormally (here SIGKILL, ordered through THEORYLAB_SWEEP_TEST_KILL) while holding a unit.
    A death costs one attempt of that unit only; an exception in a run is a failure, never retried."""
    shutdown = _killing_backend(backend, monkeypatch)
    orders = tmp_path / "kill"
    orders.mkdir()
    monkeypatch.setenv("THEORYLAB_SWEEP_TEST_KILL", str(orders))
    store = Store(tmp_path / "store")
    victim, bystander = tiny(0), tiny(1)
    doomed, broken = tiny(2), tiny(3)
    (orders / victim.run_id()).write_text("1")  # its first attempt dies
    (orders / doomed.run_id()).write_text("99")  # every attempt dies
    (orders / broken.run_id()).write_text("raise")  # the run raises: a failure, not a death
    try:
        once = run_sweep([victim, bystander], store, backend=backend, workers=2, progress=False)
        always = run_sweep([doomed, broken], store, backend=backend, workers=2, progress=False, max_attempts=3)
    finally:
        shutdown()
    assert once.backend == backend and always.backend == backend
    assert once.ok, once.errors
    assert once.attempts == {victim.run_id(): 2, bystander.run_id(): 1}
    assert once.worker_deaths == 1
    assert sorted(once.trained) == sorted([victim.run_id(), bystander.run_id()]) and once.errors == {}
    _assert_exactly_once(store, [victim, bystander])
    assert (orders / victim.run_id()).read_text() == "0"

    assert always.status == {doomed.run_id(): "failed", broken.run_id(): "failed"}
    assert always.attempts == {doomed.run_id(): 3, broken.run_id(): 1}
    assert always.worker_deaths == 3
    assert always.errors == {doomed.run_id(): "worker died 3 times",
                             broken.run_id(): f"run {broken.run_id()} failed as ordered by the test"}
    assert (orders / doomed.run_id()).read_text() == "96"


def test_sweep_cli(tmp_path, monkeypatch, capsys):
    import json

    from theorylab.cli import main

    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path))
    argv = ["sweep", "modular", "task.p=5", "model.d_model=8", "model.n_heads=2", "model.d_mlp=16",
            "train.steps=6", "train.eval_every=3", "train.weight_decay=0,1", "--seeds", "2", "--backend",
            "inprocess", "--json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["run_ids"]) == 4 and len(d["trained"]) == 4 and set(d["status"].values()) == {"finished"}
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["trained"] == [] and len(d["reused"]) == 4
    assert len(Store(tmp_path).list_runs()) == 4
    assert main(["sweep", "modular", "task.p=4", "train.steps=6"]) == 2
    assert "task.p" in capsys.readouterr().err
    assert main(["sweep", "modular", "--backend", "mpi"]) == 2
    assert "--backend" in capsys.readouterr().err
