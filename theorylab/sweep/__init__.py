"""Sweeps (layer 4): many runs executed by a backend, each landing in the store exactly once.

Backends (:mod:`theorylab.sweep.backends`)
    * ``inprocess``: one after the other in this process (debugging, tests).
    * ``local`` (default): a process pool on this machine, one worker per core.
    * ``ray``: Ray tasks; connects to ``RAY_ADDRESS`` when set, else starts a local Ray.
      On a cluster the store directory must be on a filesystem every node sees.

Stacking seeds is an execution option: with ``stack=True`` (or ``"auto"`` on a CUDA device) the
configs that differ only in their seed are trained as one unit by the stacked stepper
(:mod:`theorylab.runs.steppers`), which rewrites their ``train.stepper`` (part of a run's identity);
otherwise every run is its own unit and units run in parallel.

Exactly once.  A run's id is the hash of its config, seed and code fingerprint, the store keys runs
and metrics by that id, and a finished run is never retrained.  When a worker dies mid-run (killed,
out of memory), its unit alone is submitted again (on every backend, counted the same way in
``attempts`` and ``worker_deaths``: see :class:`SweepResult`); the loop resumes each run from its last
checkpoint (or starts it over when it had none), truncating metrics logged after that checkpoint.  A
run whose worker dies ``max_attempts`` times is reported as failed; a run that raises fails at once.

Progress: one display for the whole sweep (runs done, steps done over all runs, ETA) on a
terminal; quiet otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from theorylab.errors import ConfigError, TheoryLabError
from theorylab.runs import RunConfig
from theorylab.runs.loop import group_configs
from theorylab.runs.progress import Progress
from theorylab.runs.threads import check_threads
from theorylab.store import Store
from theorylab.sweep.backends import Execution, default_workers, ray_init, run_inprocess, run_pool, run_ray
from theorylab.sweep.grid import grid

BACKENDS = ("inprocess", "local", "ray")


@dataclass
class SweepResult:
    """What a sweep did.  ``attempts`` and ``worker_deaths`` mean the same on every backend:

    * ``attempts[run id]``: how many times the run's unit was handed to a worker (a pool process, a Ray
      task, this process for ``inprocess``): 1 for a run that trained once, one more for each time a
      worker died holding it, at most ``max_attempts``.  A run served from the store has no entry.
    * ``worker_deaths``: how many times a worker process died holding a unit (killed, e.g. SIGKILL or
      ``os._exit``, out of memory, its node gone).  A death costs an attempt of that unit only; the unit is
      submitted again, and a run whose worker died ``max_attempts`` times is ``failed`` with the error
      ``"worker died N times"``.  An exception raised by a run is not a death: the run is ``failed`` at
      once with the exception's first line in ``errors`` and is not retried.  Ray's own retries are off
      (``max_retries=0``), so no attempt goes uncounted.
    """

    run_ids: list[str]  # in the order of the configs given (duplicates removed)
    status: dict[str, str]  # run id -> finished | diverged | failed | ...
    metrics: dict[str, dict[str, float]]  # run id -> final metrics
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)  # run id -> times handed to a worker (see above)
    worker_deaths: int = 0  # workers that died holding a unit (see above)
    wall_seconds: float = 0.0
    backend: str = "local"  # what ran: a local sweep with one unit runs in-process
    workers: int = 1  # processes that trained at once
    steppers: dict[str, str] = field(default_factory=dict)  # run id -> the stepper that trained it
    config_run_ids: list[str] = field(default_factory=list)  # one per config given, in order (after stacking)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s in ("finished", "diverged") for s in self.status.values())

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SweepProgress:
    """One bar for a whole sweep (:class:`theorylab.runs.progress.Progress`): steps done over all runs
    (read from the store) and runs done; quiet when stdout is not a terminal."""

    def __init__(self, store: Store, configs: list, label: str, enabled: bool):
        self.store = store
        self.total_steps = {c.run_id(): c.train.steps for c in configs}
        self._bar = Progress(sum(self.total_steps.values()) or 1, label, enabled=enabled, plain=False)
        self._last_poll = 0.0

    def update(self, done: int, total: int, info: str = "", force: bool = False) -> None:
        if not self._bar.tty:
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
        self._bar.update(steps, f"runs {done}/{total} {info}".strip())

    def close(self) -> None:
        self._bar.close()


# --------------------------------------------------------------------------- the sweep


def _stacked(cfgs: list[RunConfig], stack: bool | str) -> list[RunConfig]:
    """The configs with ``train.stepper=stacked`` where ``stack`` asks for it: for every group of two or
    more seeds, always with ``True``, on a CUDA device with ``"auto"``."""
    if stack is False:
        return cfgs
    out = list(cfgs)
    for group in group_configs(cfgs):
        if len(group) < 2:
            continue
        dev = cfgs[group[0]].train.device
        if stack == "auto" and not (dev.startswith("cuda") or (dev == "auto" and _cuda())):
            continue
        for i in group:
            c = cfgs[i]
            out[i] = c.model_copy(update={"train": c.train.model_copy(update={"stepper": "stacked"})})
    return out


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def on_device(configs: Sequence[Any], device: str) -> list[Any]:
    """``configs`` with ``train.device = device``, checked: a malformed name or a device this machine lacks
    raises ConfigError (one line naming the device)."""
    from theorylab.runs.config import TrainConfig
    from theorylab.runs.devices import resolve_device

    if not isinstance(device, str):
        raise ConfigError(f"device: expected a name such as cpu, cuda or auto (got {device!r})")
    try:
        TrainConfig(device=device)
        resolve_device(device)
    except TheoryLabError as err:
        raise ConfigError(str(err).replace("train.device", "device", 1)) from None
    return [c.model_copy(update={"train": c.train.model_copy(update={"device": device})}) for c in configs]


def run_sweep(configs: Sequence[Any], store: Store | None = None, backend: str = "local",
              workers: int | None = None, progress: bool = True, force: bool = False,
              max_attempts: int = 3, label: str = "sweep", stack: bool | str = False,
              device: str | None = None, threads: int | None = None) -> SweepResult:
    """Execute ``configs`` (RunConfigs) on ``backend``; every run lands in ``store`` once.

    ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``auto``) replaces every config's ``train.device``
    (not part of a run's identity); a device this machine lacks is one ConfigError line before anything runs.

    ``stack``: False (every run alone), True (seeds of one config stacked into one training) or
    ``"auto"`` (stacked on a CUDA device).  The result maps each config to the run id that holds it
    (``config_run_ids``) and says what ran: the backend, the number of workers, each run's stepper.
    ``threads``: torch's CPU threads of each pool or Ray worker (default 1: the workers fill the cores), or
    of this process on ``inprocess`` (default: chosen by the loop, :mod:`theorylab.runs.threads`).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend: {backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers: {workers!r} is not allowed; give a count >= 1")
    if max_attempts < 1:
        raise ConfigError("max_attempts: give a count >= 1")
    check_threads(threads)
    if stack not in (True, False, "auto"):
        raise ConfigError(f"stack: {stack!r} is not allowed; allowed: true, false, auto")
    for c in configs:
        if not isinstance(c, RunConfig):
            raise ConfigError(f"configs: expected RunConfig objects, got {type(c).__name__}")
    if device is not None:
        configs = on_device(configs, device)
    if backend == "local":
        from theorylab.sweep.guard import unguarded_main_call

        where = unguarded_main_call()
        if where is not None:
            raise ConfigError(
                f"backend 'local': {where[0]}:{where[1]} calls this at the top level of the script; the pool's "
                f"workers import the script again, so put the call under  if __name__ == \"__main__\":  (or use "
                f"backend=\"inprocess\", the default of check())")
    given = _stacked(list(configs), stack)
    ids = [c.run_id() for c in given]
    cfgs: dict[str, RunConfig] = {}
    for rid, c in zip(ids, given):
        cfgs.setdefault(rid, c)
    store = store if store is not None else Store()
    t0 = time.perf_counter()
    result = SweepResult(list(cfgs), {}, {}, backend=backend, config_run_ids=ids)
    if force:
        for rid in cfgs:
            if store.get_run(rid) is not None:
                store.delete_run(rid)
    todo: list[str] = []
    for rid, c in cfgs.items():
        rec = store.get_run(rid)
        if rec is not None and rec.status in ("finished", "diverged"):
            result.reused.append(rid)
            result.status[rid] = rec.status
            result.metrics[rid] = rec.summary.get("metrics", {})
            result.steppers[rid] = rec.summary.get("stepper", c.train.stepper)
        else:
            todo.append(rid)
    # units of work: a stacked group trains as one unit, every other run alone
    units: list[tuple[list[RunConfig], list[str]]] = []
    pending = [cfgs[r] for r in todo]
    for group in group_configs(pending):
        members = [pending[i] for i in group]
        if members[0].train.stepper == "stacked":
            units.append((members, [m.run_id() for m in members]))
        else:
            units += [([m], [m.run_id()]) for m in members]
    bar = SweepProgress(store, list(cfgs.values()), label, progress)

    def report(outs: list[dict[str, Any]]) -> None:
        for out in outs:
            rid = out["run_id"]
            result.status[rid] = out["status"]
            result.metrics[rid] = out.get("metrics", {})
            result.steppers[rid] = out.get("stepper", "single")
            if rid not in result.trained and rid not in result.reused:
                result.trained.append(rid)
        bar.update(len(result.status), len(cfgs), force=True)

    ex = Execution(store, max_attempts, report)
    try:
        for wave in waves(units):  # a fine-tuned run trains after the parent it starts from
            n = min(workers or default_workers(), len(wave))
            if backend == "inprocess" or (backend == "local" and n == 1 and not _force_pool()):
                if result.workers <= 1:  # a wave on a pool says what ran the sweep's widest wave
                    result.backend, result.workers = "inprocess", 1
                run_inprocess(wave, ex, threads)
            elif backend == "local":
                result.backend, result.workers = backend, max(result.workers, n)
                run_pool(wave, ex, n, lambda: bar.update(len(result.status), len(cfgs)), threads or 1)
            else:
                result.backend, result.workers = backend, max(result.workers, n)
                run_ray(wave, ex, workers, lambda: bar.update(len(result.status), len(cfgs)), threads or 1)
    finally:
        bar.close()
    for rid in ex.failed:
        result.status[rid] = "failed"
    result.attempts, result.worker_deaths, result.errors = ex.attempts, ex.worker_deaths, ex.errors
    result.wall_seconds = time.perf_counter() - t0
    return result


def waves(units: list[tuple[list[RunConfig], list[str]]]) -> list[list[tuple[list[RunConfig], list[str]]]]:
    """``units`` in waves: a unit whose runs start from a parent (``RunConfig.parent``) or read a reward model
    (``objective.reward_model``) trained by another unit goes in a later wave than that unit, so that every
    such run has finished before the runs that need it start (a
    topological order by :class:`graphlib.TopologicalSorter`, one wave per batch of ready units).  A run id hashes
    its parent's id, so the parent graph has no cycles."""
    from graphlib import TopologicalSorter

    where = {rid: k for k, (_, rids) in enumerate(units) for rid in rids}
    order = TopologicalSorter({k: {where[d] for c in cfgs for d in (c.parent, c.objective.reward_model)
                                   if d in where} - {k}
                               for k, (cfgs, _) in enumerate(units)})
    order.prepare()
    out = []
    while order.is_active():
        ready = sorted(order.get_ready())
        out.append([units[k] for k in ready])
        order.done(*ready)
    return out


def _force_pool() -> bool:
    # a one-unit local sweep normally runs in this process; tests of the pool set this
    return os.environ.get("THEORYLAB_SWEEP_ALWAYS_POOL", "") == "1"


__all__ = ["BACKENDS", "SweepResult", "grid", "run_sweep", "ray_init", "default_workers"]
