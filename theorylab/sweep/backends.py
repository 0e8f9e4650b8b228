"""Backends that execute units of work (lists of run configs) and report what ran.

* ``inprocess``: one unit after the other in this process;
* ``local``: a pool of spawned worker processes on this machine, one torch thread each (the workers fill
  the cores, so more threads would only contend for them), one unit at a time;
* ``ray``: Ray tasks (``RAY_ADDRESS`` when set, else a local Ray), one torch thread each.

``threads`` (``--threads``) sets the torch threads of every worker (default 1), or of this process on
``inprocess`` (default: chosen by the training loop, :mod:`theorylab.runs.threads`).

A unit is one run, or a group of seeds stacked into one training (see :func:`theorylab.sweep.run_sweep`);
each is trained by :func:`theorylab.runs.train_many`, which serves finished runs from the store and
resumes unfinished ones from their last checkpoint.  When a worker dies (killed, out of memory) the
unit it held, and only that unit, is submitted again, on every backend, up to ``max_attempts`` times;
``attempts`` counts the times each run was handed to a worker and ``worker_deaths`` the workers that
died holding a unit; an exception in a run is a failure, not a death, and is not retried
(:class:`theorylab.sweep.SweepResult` defines both counters).
"""

from __future__ import annotations

import os
import signal
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


KILL_ENV = "THEORYLAB_SWEEP_TEST_KILL"  # tests only: a directory of kill orders (see work_unit)


def work_unit(cfg_dicts: list[dict[str, Any]], run_ids: list[str], store_root: str, threads: int = 1,
              kill_dir: str | None = None) -> list[dict[str, Any]]:
    """:func:`train_unit` as a worker runs it (local pool, Ray).

    ``kill_dir`` (tests only; the sweep passes ``$THEORYLAB_SWEEP_TEST_KILL``): a worker about to train
    a run whose file ``<kill_dir>/<run id>`` holds a count n > 0 writes n - 1 there and SIGKILLs itself,
    so that a test kills a worker at a known attempt of a known run on every backend; a file holding
    ``raise`` makes the run raise instead (a failed run, not a worker death).
    """
    if kill_dir:
        for rid in run_ids:
            order = os.path.join(kill_dir, rid)
            if os.path.exists(order):
                with open(order) as f:
                    text = f.read().strip()
                if text == "raise":
                    raise RuntimeError(f"run {rid} failed as ordered by the test")
                n = int(text or 0)
                if n > 0:
                    with open(order, "w") as f:
                        f.write(str(n - 1))
                    os.kill(os.getpid(), signal.SIGKILL)
    return train_unit(cfg_dicts, run_ids, store_root, threads)


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
            ex.fail(ids, _first_line(err))
            continue
        ex.report(out)


def _first_line(err: BaseException) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def _pool_worker(conn) -> None:
    """A local-pool worker: trains each unit it receives on ``conn`` and sends back ``("ok", outcomes)``, or
    ``("error", message)`` when the run raised, until it receives None or its parent goes away.  The worker
    started with SIGINT ignored (so that a Ctrl-C while it imported printed no traceback); from here on Ctrl-C
    stops its run as it stops a run in the parent (a checkpoint, status stopped)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if job is None:
            return
        try:
            reply = ("ok", work_unit(*job))
        except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent stops the sweep
            return
        except Exception as err:  # the run itself failed: a failure, not a death
            reply = ("error", _first_line(err))
        conn.send(reply)


class _Worker:
    """One spawned process of the local pool and the unit it holds (None when idle)."""

    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_pool_worker, args=(child,), name="theorylab-sweep-worker")
        try:  # the worker starts with SIGINT ignored (Python keeps an inherited SIG_IGN) until _pool_worker runs:
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C while it imports torch prints nothing
        except ValueError:  # not the main thread: start as is
            old = None
        try:
            self.proc.start()
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
        child.close()
        self.unit: tuple[Unit, list[str]] | None = None

    def give(self, unit: tuple[Unit, list[str]], store_root: str, threads: int = 1) -> None:
        cfgs, ids = unit
        self.unit = unit
        try:  # one thread per worker by default, workers = cores
            self.conn.send(([c.to_dict() for c in cfgs], ids, store_root, threads, os.environ.get(KILL_ENV)))
        except OSError:  # the worker is gone already (died on start-up): make sure, reply() sees a death
            self.proc.kill()
            self.proc.join()

    def reply(self) -> tuple[str, Any] | None:
        """The unit's outcome if the worker sent it; None if the worker died holding the unit."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            return None
        return None if not self.proc.is_alive() else ("busy", None)

    def close(self, timeout: float) -> None:
        if self.proc.is_alive() and self.unit is None:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def run_pool(units: list[tuple[Unit, list[str]]], ex: Execution, workers: int, on_tick: Callable[[], None],
             threads: int = 1) -> None:
    """A pool of ``workers`` spawned processes, each holding one unit at a time.  A worker that dies takes
    only its own unit with it: that unit alone is submitted again (on a fresh worker), as Ray does."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # fork after torch/threads is unsafe
    queue = list(units)
    pool: list[_Worker] = []
    store_root = str(ex.store.root)
    clean = False
    try:
        while queue or any(w.unit is not None for w in pool):
            pool = [w for w in pool if w.proc.is_alive() or w.unit is not None]
            idle = [w for w in pool if w.unit is None]
            while queue and (idle or len(pool) < workers):
                w = idle.pop() if idle else _Worker(ctx)
                if w not in pool:
                    pool.append(w)
                unit = queue.pop(0)
                ex.submitted(unit[1])
                w.give(unit, store_root, threads)
            busy = [w for w in pool if w.unit is not None]
            wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=0.5)
            for w in busy:
                got = w.reply()
                if got is not None and got[0] == "busy":
                    continue
                cfgs, ids = w.unit
                w.unit = None
                if got is None:  # the worker died holding this unit
                    ex.worker_deaths += 1
                    w.close(0)
                    again = ex.after_death(ids)
                    if again:
                        queue.insert(0, ([c for c, rid in zip(cfgs, ids) if rid in again], again))
                elif got[0] == "ok":
                    ex.report(got[1])
                else:  # the run itself failed: report it, keep going
                    ex.fail(ids, got[1])
            on_tick()
        clean = True
    finally:
        for w in pool:  # idle workers exit when told; after Ctrl-C or an error give them a moment, then kill
            w.close(30 if clean else 5)


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
    """Ray tasks, resubmitted by us (``max_retries=0``: Ray's own retries would be invisible here) when
    their worker dies, so that attempts and worker deaths are counted as on the local pool."""
    ray = ray_init(workers)
    import ray.exceptions as rex

    # the worker process died holding the task: killed, out of memory (Ray's memory monitor), node gone
    deaths = tuple(getattr(rex, n) for n in ("WorkerCrashedError", "OutOfMemoryError", "NodeDiedError")
                   if hasattr(rex, n))
    remote = ray.remote(num_cpus=threads, max_retries=0, retry_exceptions=False)(work_unit)
    refs: dict[Any, tuple[Unit, list[str]]] = {}

    def submit(cfgs: Unit, ids: list[str]) -> None:
        ex.submitted(ids)
        ref = remote.remote([c.to_dict() for c in cfgs], ids, str(ex.store.root), threads, os.environ.get(KILL_ENV))
        refs[ref] = (cfgs, ids)

    for cfgs, ids in units:
        submit(cfgs, ids)
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
        for ref in done:
            cfgs, ids = refs.pop(ref)
            try:
                ex.report(ray.get(ref))
            except deaths:
                ex.worker_deaths += 1
                again = ex.after_death(ids)
                if again:
                    submit([c for c, rid in zip(cfgs, ids) if rid in again], again)
            except Exception as err:  # the run itself failed: its own message, not Ray's task header
                cause = getattr(err, "cause", None)
                ex.fail(ids, _first_line(cause if isinstance(cause, BaseException) else err))
        on_tick()

__all__ = ["train_unit", "default_workers", "ray_init", "run_inprocess", "run_pool", "run_ray", "Execution"]
