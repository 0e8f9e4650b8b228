"""Backends that execute units of work (lists of run configs) and report what ran.

* ``inprocess``: one unit after the other in this process;
* ``local``: a process pool on this machine (spawned workers, one torch thread each: the workers fill
  the cores, so more threads would only contend for them);
* ``ray``: Ray tasks (``RAY_ADDRESS`` when set, else a local Ray), one torch thread each.

``threads`` (``--threads``) sets the torch threads of every worker (default 1), or of this process on
``inprocess`` (default: chosen by the training loop, :mod:`theorylab.runs.threads`).

A unit is one run, or a group of seeds stacked into one training (see :func:`theorylab.sweep.run_sweep`);
each is trained by :func:`theorylab.runs.train_many`, which serves finished runs from the store and
resumes unfinished ones from their last checkpoint.  When a worker dies (killed, out of memory) the
unit is submitted again, on every backend, up to ``max_attempts`` times; ``attempts`` counts the
submissions of each run and ``worker_deaths`` the deaths seen.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from theorylab.errors import TheoryLabError
from theorylab.store import Store

Unit = list[Any]  # RunConfigs trained together by one train_many call
Report = Callable[[list[dict[str, Any]]], None]  # called with each unit's outcomes as they finish


def train_unit(cfg_dicts: list[dict[str, Any]], run_ids: list[str], store_root: str, threads: int | None = 1
               ) -> list[dict[str, Any]]:
    """Train one unit into the store (in a worker process, or here); resumes started runs.  ``threads``:
    torch's threads for the process (None: the training loop chooses)."""
    from theorylab.runs import RunConfig, train_many

    cfgs = [RunConfig.model_validate(d) for d in cfg_dicts]
    res = train_many(cfgs, Store(store_root), progress=False, run_ids=run_ids, threads=threads)
    return [{"run_id": r.run_id, "status": r.status, "metrics": r.metrics, "reused": r.reused, "stepper": r.stepper,
             "threads": r.threads} for r in res]


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _finished(store: Store, rid: str) -> dict[str, Any] | None:
    rec = store.get_run(rid)
    if rec is not None and rec.status in ("finished", "diverged"):
        return {"run_id": rid, "status": rec.status, "metrics": rec.summary.get("metrics", {}), "reused": False,
                "stepper": rec.summary.get("stepper", "single")}
    return None


class Execution:
    """Book-keeping shared by the backends: attempts per run, worker deaths, errors."""

    def __init__(self, store: Store, max_attempts: int, report: Report):
        self.store, self.max_attempts, self.report = store, max_attempts, report
        self.attempts: dict[str, int] = {}
        self.worker_deaths = 0
        self.errors: dict[str, str] = {}
        self.failed: set[str] = set()

    def submitted(self, unit_ids: list[str]) -> None:
        for rid in unit_ids:
            self.attempts[rid] = self.attempts.get(rid, 0) + 1

    def fail(self, unit_ids: list[str], message: str) -> None:
        for rid in unit_ids:
            self.failed.add(rid)
            self.errors[rid] = message

    def after_death(self, unit_ids: list[str]) -> list[str]:
        """A worker died while it held this unit: report what finished anyway, fail what ran out of
        attempts; return the run ids to submit again."""
        again = []
        for rid in unit_ids:
            done = _finished(self.store, rid)
            if done is not None:
                self.report([done])
            elif self.attempts.get(rid, 0) >= self.max_attempts:
                self.fail([rid], f"worker died {self.attempts[rid]} times")
            else:
                again.append(rid)
        return again


def run_inprocess(units: list[tuple[Unit, list[str]]], ex: Execution, threads: int | None = None) -> None:
    for cfgs, ids in units:
        ex.submitted(ids)
        try:
            out = train_unit([c.to_dict() for c in cfgs], ids, str(ex.store.root), threads=threads)
        except TheoryLabError:
            raise
        except Exception as err:  # the run itself failed: report it, keep going (as the pool does)
            ex.fail(ids, (str(err).splitlines() or [type(err).__name__])[0])
            continue
        ex.report(out)


def run_pool(units: list[tuple[Unit, list[str]]], ex: Execution, workers: int, on_tick: Callable[[], None],
             threads: int = 1) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")  # fork after torch/threads is unsafe
    remaining = {tuple(ids): (cfgs, ids) for cfgs, ids in units}
    while remaining:
        n = min(workers, len(remaining))
        died: list[list[str]] = []
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            futs = {}
            for key, (cfgs, ids) in remaining.items():
                ex.submitted(ids)
                # one thread per worker, workers = cores; also keeps results identical to a 1-thread run
                futs[pool.submit(train_unit, [c.to_dict() for c in cfgs], ids, str(ex.store.root), threads)] = key
            pending = set(futs)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in done:
                    key = futs[f]
                    try:
                        out = f.result()
                    except BrokenProcessPool:
                        died.append(list(key))
                        continue
                    except Exception as err:  # the run itself failed: report it, keep going
                        ex.fail(list(key), (str(err).splitlines() or [type(err).__name__])[0])
                        remaining.pop(key, None)
                        continue
                    ex.report(out)
                    remaining.pop(key, None)
                on_tick()
            if died:
                pool.shutdown(wait=True, cancel_futures=True)
        if died:
            ex.worker_deaths += 1
            for key in list(remaining):
                again = ex.after_death(list(key))
                cfgs, ids = remaining.pop(key)
                if again:
                    keep = [c for c, rid in zip(cfgs, ids) if rid in again]
                    remaining[tuple(again)] = (keep, again)


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


def run_ray(units: list[tuple[Unit, list[str]]], ex: Execution, workers: int | None,
            on_tick: Callable[[], None], threads: int = 1) -> None:
    """Ray tasks, resubmitted by us (not by Ray's own retries) when their worker dies, so that attempts and
    worker deaths are counted as on the local pool."""
    ray = ray_init(workers)
    from ray.exceptions import WorkerCrashedError

    try:
        from ray.exceptions import NodeDiedError
    except ImportError:  # pragma: no cover - older Ray
        NodeDiedError = WorkerCrashedError  # noqa: N806
    remote = ray.remote(num_cpus=threads, max_retries=0, retry_exceptions=False)(train_unit)
    refs: dict[Any, tuple[Unit, list[str]]] = {}

    def submit(cfgs: Unit, ids: list[str]) -> None:
        ex.submitted(ids)
        refs[remote.remote([c.to_dict() for c in cfgs], ids, str(ex.store.root), threads)] = (cfgs, ids)

    for cfgs, ids in units:
        submit(cfgs, ids)
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
        for ref in done:
            cfgs, ids = refs.pop(ref)
            try:
                ex.report(ray.get(ref))
            except (WorkerCrashedError, NodeDiedError):
                ex.worker_deaths += 1
                again = ex.after_death(ids)
                if again:
                    submit([c for c, rid in zip(cfgs, ids) if rid in again], again)
            except Exception as err:  # the run itself failed
                ex.fail(ids, str(err).splitlines()[0] if str(err) else type(err).__name__)
        on_tick()


__all__ = ["train_unit", "default_workers", "ray_init", "run_inprocess", "run_pool", "run_ray", "Execution"]
