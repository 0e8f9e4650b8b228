"""Sweeps: many runs executed by a backend, each landing in the store exactly once.

Backends
    * ``inprocess``: one after the other in this process (debugging, tests).
    * ``local`` (default): a process pool on this machine, one worker per core.
    * ``ray``: Ray tasks; connects to ``RAY_ADDRESS`` when set, else starts a local Ray.
      On a cluster the store directory must be on a filesystem every node sees.

Exactly once.  A run's id is the hash of its config and seed, the store keys runs
and metrics by that id, and a finished run is never retrained.  When a worker dies
mid-run (killed, out of memory), the local backend starts a fresh pool and resubmits
every run that is not finished; the trainer resumes such a run from its last
checkpoint (or starts it over when it had none), truncating metrics logged after that
checkpoint.  Ray retries a task whose worker died the same way.  A run whose worker
dies ``max_attempts`` times is reported as failed.

Progress: one display for the whole sweep (runs done, steps done over all runs, ETA)
on a terminal; quiet otherwise.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from theorylab.errors import ConfigError, TheoryLabError
from theorylab.store import Store

BACKENDS = ("inprocess", "local", "ray")


@dataclass
class SweepResult:
    run_ids: list[str]  # in the order of the configs given (duplicates removed)
    status: dict[str, str]  # run id -> finished | diverged | failed | ...
    metrics: dict[str, dict[str, float]]  # run id -> final metrics
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)  # run id -> times submitted
    worker_deaths: int = 0
    wall_seconds: float = 0.0
    backend: str = "local"
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s in ("finished", "diverged") for s in self.status.values())

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- building sweeps


def grid(base: Any, axes: dict[str, Sequence[Any]] | None = None, seeds: int | Sequence[int] = 1) -> list:
    """The product of ``axes`` (``{"train.weight_decay": [0, 1], "task.p": [59, 97]}``) over
    ``seeds`` applied to ``base`` (a preset or task name, or a RunConfig)."""
    from theorylab.config import apply_overrides, validate
    from theorylab.runs import RunConfig, build_run_config

    axes = dict(axes or {})
    for k, vals in axes.items():
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Iterable):
            raise ConfigError(f"grid axis {k}: give a list of values")
        if len(list(vals)) == 0:
            raise ConfigError(f"grid axis {k}: the list of values is empty")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("seeds: give at least one seed")
    keys = list(axes)
    out = []
    for combo in itertools.product(*(list(axes[k]) for k in keys)):
        ov = [f"{k}={_fmt(v)}" for k, v in zip(keys, combo)]
        for s in seed_list:
            if isinstance(base, RunConfig):
                data = apply_overrides(base.to_dict(), ov)
                data["seed"] = s
                out.append(validate(RunConfig, data))
            else:
                out.append(build_run_config(base, ov, seed=s))
    return out


def _fmt(v: Any) -> str:
    import json

    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)


# --------------------------------------------------------------------------- workers


def _train_one(cfg_dict: dict[str, Any], store_root: str, threads: int = 1) -> dict[str, Any]:
    """Train one run into the store (in a worker process); resumes a started run."""
    import torch

    torch.set_num_threads(max(1, threads))
    from theorylab.runs import RunConfig, train

    cfg = RunConfig.model_validate(cfg_dict)
    res = train(cfg, Store(store_root), progress=False)
    return {"run_id": res.run_id, "status": res.status, "metrics": res.metrics, "reused": res.reused}


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------- progress


class SweepProgress:
    """One bar for a whole sweep: runs done and steps done (read from the store)."""

    def __init__(self, store: Store, configs: list, label: str, enabled: bool):
        self.store, self.label = store, label
        self.total_steps = {c.run_id(): c.train.steps for c in configs}
        self.enabled = enabled and sys.stderr.isatty()
        self._bar = None
        self._last_poll = 0.0
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[runs]}"), TextColumn("{task.fields[info]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), transient=True,
                                 console=Console(stderr=True))
            self._bar.start()
            self._task = self._bar.add_task(label, total=sum(self.total_steps.values()) or 1,
                                            runs="", info="")

    def update(self, done: int, total: int, info: str = "", force: bool = False) -> None:
        if self._bar is None:
            return
        now = time.monotonic()
        if not force and now - self._last_poll < 0.5:
            return
        self._last_poll = now
        steps = 0
        try:
            with self.store.connect() as con:
                marks = ",".join("?" * len(self.total_steps))
                q = f"SELECT run_id, MAX(step) FROM metrics WHERE run_id IN ({marks}) GROUP BY run_id"
                for rid, s in con.execute(q, list(self.total_steps)):
                    steps += min(int(s or 0), self.total_steps.get(rid, 0))
        except Exception:  # a busy store must not break the sweep
            pass
        self._bar.update(self._task, completed=steps, runs=f"runs {done}/{total}", info=info)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------- the sweep


def run_sweep(configs: Sequence[Any], store: Store | None = None, backend: str = "local",
              workers: int | None = None, progress: bool = True, force: bool = False,
              max_attempts: int = 3, label: str = "sweep") -> SweepResult:
    """Execute ``configs`` (RunConfigs) on ``backend``; every run lands in ``store`` once."""
    from theorylab.runs import RunConfig

    if backend not in BACKENDS:
        raise ConfigError(f"backend: {backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers: {workers!r} is not allowed; give a count >= 1")
    if max_attempts < 1:
        raise ConfigError("max_attempts: give a count >= 1")
    cfgs: dict[str, Any] = {}
    for c in configs:
        if not isinstance(c, RunConfig):
            raise ConfigError(f"configs: expected RunConfig objects, got {type(c).__name__}")
        cfgs.setdefault(c.run_id(), c)
    store = store if store is not None else Store()
    t0 = time.perf_counter()
    result = SweepResult(list(cfgs), {}, {}, backend=backend)
    if force:
        for rid in cfgs:
            if store.get_run(rid) is not None:
                store.delete_run(rid)
    todo = []
    for rid, c in cfgs.items():
        rec = store.get_run(rid)
        if rec is not None and rec.status in ("finished", "diverged"):
            result.reused.append(rid)
            result.status[rid] = rec.status
            result.metrics[rid] = rec.summary.get("metrics", {})
        else:
            todo.append(c)
    bar = SweepProgress(store, list(cfgs.values()), label, progress)
    try:
        if todo:
            if backend == "inprocess" or (backend == "local" and min(workers or default_workers(), len(todo)) == 1
                                          and not _force_pool()):
                _run_inprocess(todo, store, result, bar, len(cfgs))
            elif backend == "local":
                _run_pool(todo, store, result, bar, len(cfgs), workers or default_workers(), max_attempts)
            else:
                _run_ray(todo, store, result, bar, len(cfgs), workers, max_attempts)
    finally:
        bar.close()
    result.wall_seconds = time.perf_counter() - t0
    return result


def _force_pool() -> bool:
    # a one-run local sweep normally runs in this process; tests of the pool set this
    return os.environ.get("THEORYLAB_SWEEP_ALWAYS_POOL", "") == "1"


def _record(result: SweepResult, out: dict[str, Any]) -> None:
    rid = out["run_id"]
    result.status[rid] = out["status"]
    result.metrics[rid] = out.get("metrics", {})
    if rid not in result.trained and rid not in result.reused:
        result.trained.append(rid)


def _run_inprocess(todo, store, result, bar, total) -> None:
    from theorylab.runs import train

    for c in todo:
        rid = c.run_id()
        result.attempts[rid] = result.attempts.get(rid, 0) + 1
        res = train(c, store, progress=False)
        _record(result, {"run_id": res.run_id, "status": res.status, "metrics": res.metrics})
        bar.update(len(result.status), total, force=True)


def _run_pool(todo, store, result, bar, total, workers, max_attempts) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")  # fork after torch/threads is unsafe
    remaining = {c.run_id(): c for c in todo}
    threads = 1  # one thread per worker, workers = cores; also keeps results identical to a 1-thread run
    while remaining:
        n = min(workers, len(remaining))
        broken = False
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            futs = {}
            for rid, c in remaining.items():
                result.attempts[rid] = result.attempts.get(rid, 0) + 1
                futs[pool.submit(_train_one, c.to_dict(), str(store.root), threads)] = rid
            pending = set(futs)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in done:
                    rid = futs[f]
                    try:
                        out = f.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    except Exception as err:  # the run itself failed: report it, keep going
                        result.status[rid] = "failed"
                        result.errors[rid] = (str(err).splitlines() or [type(err).__name__])[0]
                        remaining.pop(rid, None)
                        continue
                    _record(result, out)
                    remaining.pop(rid, None)
                bar.update(len(result.status), total, info="worker died; resubmitting" if broken else "")
            if broken:
                pool.shutdown(wait=True, cancel_futures=True)
        if broken:
            result.worker_deaths += 1
            # runs whose worker died: finished ones (died after finishing) are kept,
            # the others resume from their last checkpoint in a fresh pool
            for rid in list(remaining):
                rec = store.get_run(rid)
                if rec is not None and rec.status in ("finished", "diverged"):
                    _record(result, {"run_id": rid, "status": rec.status,
                                     "metrics": rec.summary.get("metrics", {})})
                    remaining.pop(rid)
                elif result.attempts.get(rid, 0) >= max_attempts:
                    result.status[rid] = "failed"
                    result.errors[rid] = f"worker died {result.attempts[rid]} times"
                    remaining.pop(rid)


def ray_init(workers: int | None = None):
    """Connect to ``RAY_ADDRESS`` when set, else start a local Ray (idempotent)."""
    try:
        import ray
    except ImportError:
        raise TheoryLabError("backend: ray is not installed; pip install 'theorylab[ray]' or use "
                             "--backend local") from None
    if not ray.is_initialized():
        addr = os.environ.get("RAY_ADDRESS")
        kw: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False, "include_dashboard": False}
        if addr:
            ray.init(address=addr, **kw)
        else:
            ray.init(num_cpus=workers or default_workers(), **kw)
    return ray


def _run_ray(todo, store, result, bar, total, workers, max_attempts) -> None:
    ray = ray_init(workers)
    remote = ray.remote(num_cpus=1, max_retries=max_attempts - 1, retry_exceptions=False)(_train_one)
    refs = {}
    for c in todo:
        rid = c.run_id()
        result.attempts[rid] = result.attempts.get(rid, 0) + 1
        refs[remote.remote(c.to_dict(), str(store.root), 1)] = rid
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
        for ref in done:
            rid = refs[ref]
            try:
                _record(result, ray.get(ref))
            except Exception as err:  # a task that failed even after retries
                rec = store.get_run(rid)
                if rec is not None and rec.status in ("finished", "diverged"):
                    _record(result, {"run_id": rid, "status": rec.status,
                                     "metrics": rec.summary.get("metrics", {})})
                else:
                    result.status[rid] = "failed"
                    result.errors[rid] = str(err).splitlines()[0] if str(err) else type(err).__name__
        bar.update(len(result.status), total)


__all__ = ["BACKENDS", "SweepResult", "grid", "run_sweep", "ray_init", "default_workers"]
