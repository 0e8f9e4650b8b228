"""THE training loop: every run theorylab trains goes through :func:`train_many` (and
:func:`train`, :func:`resume`, which call it).

A run is one model on one task with one seed.  Runs whose configs differ only in the seed form a
group that the loop trains in lockstep with a *stepper* (:mod:`theorylab.runs.steppers`: each run
alone, or the seeds stacked into one set of tensors); everything else is the loop's and the same for
every stepper:

* **Determinism.** Parameters are initialised from a generator derived from the seed; the batch
  of step ``t`` is a pure function of (seed, ``t``) (:meth:`theorylab.tasks.Task.train_batch`);
  dropout draws from a generator derived from (seed, ``t``).  So the same config and seed give the
  same metrics bit for bit on a CPU, and a resumed run continues exactly as if it had never stopped.
* **Evaluation.** At step 0, every ``eval_every`` steps and at the end, the task's metrics and the
  run's probes on every evaluation split (:func:`evaluate_model`), logged as ``split/name``.
* **Divergence.** A loss, gradient norm or evaluated metric that is not finite ends that run with
  status ``diverged``, ``diverged_step`` and ``diverged_on`` (``train/batch_loss``,
  ``train/grad_norm`` or the metric's name); the bad update is never applied, nothing non-finite is
  logged, and the other runs of the group go on.  A diverged run is a result, not an error.
* **Failure.** An exception marks the group's unfinished runs ``failed`` (with the error), Ctrl-C
  and SIGTERM mark them ``stopped`` (:class:`Terminated`); all resume from their last checkpoint.  A
  :class:`TheoryLabError` (bad input, a store the program cannot use) is raised before anything is
  written.
* **Liveness.** A run being trained records its owner (host, pid, the process's start time) and a
  heartbeat, written with the run's step at most every :data:`~theorylab.store.HEARTBEAT_SECONDS`
  (checked after every step, evaluation and checkpoint), so the store can tell a run whose process
  died (``interrupted``) from a live one.  A run that a live process on this host is training is not
  trained by a second one.
* **Threads.** Each training sets torch's CPU threads once, before its first step
  (:func:`theorylab.runs.threads.set_threads`: ``threads=`` when given, else ``OMP_NUM_THREADS``, else
  chosen from the work of one step and the cores free now); the count is in the result and the summary.
* **Checkpoints** every ``checkpoint_every`` steps, whenever ``checkpoint_minutes`` of wall time have
  passed since the last one (so a kill loses at most that much work, whatever the hardware), and at
  the end, with the optimizer state and the RNG state (which is (seed, step): see above).  With
  ``keep_checkpoints=all`` the checkpoints written off the ``checkpoint_every`` grid (by wall time, or
  where a run was stopped) are resume points only: each is removed once a later checkpoint exists, so
  a finished run's series does not depend on the machine's speed or on where it was interrupted.  A run
  resumes from its own last checkpoint; runs of one group with checkpoints at different steps resume as
  separate groups.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from theorylab.config import validate
from theorylab.errors import CheckpointError, ConfigError, StoreError, TheoryLabError
from theorylab.models import Transformer
from theorylab.runs.config import RunConfig, TrainConfig
from theorylab.runs.devices import DTYPES, precision, resolve_device
from theorylab.runs.objectives import prepare
from theorylab.runs.progress import Progress
from theorylab.runs.steppers import (
    _UNSET,
    AUTO,
    chunk_key,
    default_seed_chunk,
    env_seed_chunk,
    known_chunk,
    make_optimizer,
    make_stepper,
    remember_chunk,
    valid_chunk,
)
from theorylab.runs.threads import check_threads, set_threads, step_flops
from theorylab.store import HEARTBEAT_SECONDS, STALE_AFTER_SECONDS, Store, owner, this_host
from theorylab.store.checkpoint import load_checkpoint, save_checkpoint
from theorylab.tasks import Task, make_task
from theorylab.tasks.base import chunked_mean, torch_generator

_now = time.monotonic  # the loop's clock for heartbeats and wall-time checkpoints (tests replace it)


class Terminated(KeyboardInterrupt):
    """SIGTERM received while training, taken like Ctrl-C: the runs are marked ``stopped`` and resume from
    their last checkpoint."""

    signal_name = "SIGTERM"


@contextmanager
def _sigterm_stops() -> Iterator[None]:
    """While the loop trains, SIGTERM (``kill``'s and a scheduler's polite stop) raises :class:`Terminated`
    as Ctrl-C raises KeyboardInterrupt.  Only in the main thread and where SIGTERM has its default action
    (end the process at once): a handler the embedding program installed is left alone.  A second SIGTERM
    while the first is handled is ignored, so the runs' records are written."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@dataclass
class RunResult:
    run_id: str
    status: str  # finished | diverged | stopped
    step: int
    metrics: dict[str, float]  # "split/name" -> value at the last evaluation
    wall_seconds: float
    steps_per_second: float
    reused: bool = False
    diverged_step: int | None = None
    early_stopped: bool = False
    diverged_on: str | None = None  # what was not finite: an eval metric, train/batch_loss or train/grad_norm
    stepper: str = "single"
    threads: int | None = None  # torch's CPU threads during the training (None: served from the store)
    _model: Transformer | None = field(default=None, repr=False)
    _store_root: str | None = field(default=None, repr=False)

    @property
    def model(self) -> Transformer | None:
        """The trained :class:`~theorylab.models.Transformer`: the one in memory after training; for a run served
        from the store, loaded (once, in eval mode) from its last checkpoint; None when there is none (a run
        that diverged before its first checkpoint).  Raises CheckpointError for a corrupt checkpoint file."""
        if self._model is None and self._store_root is not None:
            from theorylab.errors import StoreError

            try:
                self._model = Store(self._store_root).load_model(self.run_id)
            except StoreError:  # no checkpoint
                return None
        return self._model

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def _chunk_of(stepper: Any, used: bool = False) -> int | str | None:
    """The seeds per pass of a stacked stepper (None for the single stepper): the group's chunk (``"all"`` for one
    pass over every seed), recorded with each checkpoint so that a resume takes it again; with ``used``, the seeds
    per pass its last step actually took (at most the seeds left, 1 when they cannot share a pass), recorded in
    the run's summary."""
    if stepper.name != "stacked":
        return None
    if used and stepper.used is not None:
        return stepper.used
    return "all" if stepper.chunk is None else stepper.chunk


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then the schedule."""
    base = cfg.lr
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return base * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return base
    span = max(1, cfg.steps - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    floor = base * cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * frac))
    return floor + (base - floor) * (1 - frac)


def evaluate_model(task: Task, model: torch.nn.Module, device, dtype, eval_bs: int,
                   probes: list[str] | tuple[str, ...] = ()) -> dict[str, float]:
    """Every evaluation split's metrics and probes, ``{"split/name": value}``, in eval mode.

    The task's :meth:`~theorylab.tasks.Task.metrics` run on each of its evaluation splits in chunks of
    ``eval_bs`` examples (or the task evaluates itself, :meth:`~theorylab.tasks.Task.evaluate`); each
    probe (:mod:`theorylab.runs.probes`) reads the hooks it asks for during those same forward passes.
    """
    from theorylab.runs.probes import PROBES, record

    ps = [PROBES[n] for n in probes]
    out: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        custom = task.evaluate(model, device, dtype, eval_bs)
        if custom is not None:  # the task evaluates itself (e.g. per-length accuracy)
            out.update(custom)
            if not ps:
                return out
        for split, batch in task.eval_sets().items():
            here = [p for p in ps if not p.splits or split in p.splits]
            hooked = [p for p in here if p.hooks]

            def chunk(part, here=here, hooked=hooked):
                with record(model, hooked) as cache:
                    vals = task.metrics(model, part) if custom is None else {}
                for p in hooked:
                    vals.update(p.fn(model, task, part, cache))
                return vals

            vals = chunked_mean(chunk, batch, eval_bs, device, dtype) if (custom is None or hooked) else {}
            for p in here:
                if not p.hooks:
                    vals.update(p.fn(model, task, None, {}))
            for k, v in vals.items():
                out[f"{split}/{k}"] = v
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------- building and loading


def build(cfg: RunConfig, device: torch.device | None = None) -> tuple[Task, Transformer]:
    """The task and the freshly initialised model of a run config."""
    task = make_task(cfg.task, cfg.seed)
    model = build_model_for(cfg)
    if device is not None:
        model.to(device)
    return task, model


def build_model_for(cfg: RunConfig) -> Transformer:
    model = Transformer(cfg.model, generator=torch_generator(cfg.seed, 1))
    return model.to(DTYPES[cfg.train.dtype])


def _ckpt_path(store: Store, run_id: str, step: int) -> Path:
    return store.run_dir(run_id) / f"ckpt-{step:08d}.safetensors"


def latest_checkpoint(store: Store, run_id: str) -> tuple[Path, int] | None:
    arts = [a for a in store.artifacts(run_id, "checkpoint") if Path(a["path"]).exists()]
    if not arts:
        return None
    a = max(arts, key=lambda a: a["step"])
    return Path(a["path"]), int(a["step"])


def load_run_model(store: Store, run_ref: str, step: int | None = None) -> tuple[RunConfig, Transformer]:
    """A stored run's config and its model from its checkpoint (the last, or the one at ``step``)."""
    rec = store.find_run(run_ref)
    return validate(RunConfig, rec.config), store.load_model(rec.id, step)


def checkpoint_steps(store: Store, run_ref: str) -> list[tuple[int, str]]:
    """``[(step, path)]`` of a stored run's checkpoints."""
    return store.checkpoints(run_ref)


def _reused(rec, store: Store) -> RunResult:
    s = rec.summary
    return RunResult(rec.id, rec.status, rec.step, s.get("metrics", {}), rec.wall_seconds or 0.0,
                     s.get("steps_per_second", 0.0), reused=True, diverged_step=s.get("diverged_step"),
                     early_stopped=s.get("early_stopped", False), diverged_on=s.get("diverged_on"),
                     stepper=s.get("stepper", "single"), threads=s.get("threads"), _store_root=str(store.root))


# --------------------------------------------------------------------------- the entry points


def train(cfg: RunConfig, store: Store | None = None, *, force: bool = False, progress: bool = True,
          stop_after: int | None = None, on_eval: Callable[[int, dict[str, float]], None] | None = None,
          threads: int | None = None) -> RunResult:
    """Train (or reuse, or resume) the run ``cfg`` and return its result.

    ``store=None`` trains in memory (no checkpoints, nothing written).  With a store, an identical
    finished (or diverged) run is served from it unless ``force``; an unfinished one (killed,
    stopped, failed) resumes from its last checkpoint.  Everything that can be checked (device,
    task, model, the early-stop metric) is checked before the store is written.  ``stop_after``
    stops after that many steps (status ``stopped``; train again to go on).  ``threads``: torch's CPU
    threads for this process (default: chosen, see :mod:`theorylab.runs.threads`).
    """
    cb = None if on_eval is None else (lambda _i, step, vals: on_eval(step, vals))
    return train_many([cfg], store, force=force, progress=progress, stop_after=stop_after, on_eval=cb,
                      threads=threads)[0]


def resume(store: Store, run_ref: str, *, progress: bool = True, threads: int | None = None) -> RunResult:
    """Continue a killed or stopped run from its last checkpoint (a finished one is returned as is)."""
    from theorylab.errors import StoreError
    from theorylab.runs.config import is_stale

    rec = store.find_run(run_ref)
    if rec.status in ("finished", "diverged"):
        return _reused(rec, store)
    if is_stale(rec.config, rec.id):
        raise StoreError(f"run {rec.id} was started by other model, task or loop code than this; resuming it would "
                         "mix two versions of the code: train its config again (theorylab train ... --force)")
    cfg = validate(RunConfig, rec.config)
    return train_many([cfg], store, progress=progress, run_ids=[rec.id], threads=threads)[0]


def group_configs(cfgs: list[RunConfig]) -> list[list[int]]:
    """Indices of ``cfgs`` grouped so that each group differs only in seed (and tags)."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cfgs):
        d = c.to_dict()
        d.pop("seed", None)
        d.pop("tags", None)
        groups.setdefault(json.dumps(d, sort_keys=True), []).append(i)
    return list(groups.values())


def train_many(cfgs: list[RunConfig], store: Store | None = None, *, force: bool = False, progress: bool = True,
               on_eval: Callable[[int, int, dict[str, float]], None] | None = None, stop_after: int | None = None,
               seed_chunk: int | str | None = 0, run_ids: list[str] | None = None, threads: int | None = None
               ) -> list[RunResult]:
    """Train every config; results in input order.  THE loop: :func:`train` and :func:`resume` call it.

    Configs that differ only in the seed are trained together as one group by the stepper their
    ``train.stepper`` names.  Runs already finished (or diverged) in ``store`` are served from it
    unless ``force``; unfinished ones resume from their own last checkpoint.  A config repeated in
    ``cfgs`` is trained once.  ``on_eval(index, step, metrics)`` is called at every evaluation,
    ``index`` into ``cfgs``.  ``seed_chunk``: seeds per forward pass of the stacked stepper (``None`` or
    ``"all"``: all at once; ``"auto"``: measured on the first step; 0: ``THEORYLAB_SEED_CHUNK`` when set, else
    the chunk a resumed group was trained with, else :func:`~theorylab.runs.steppers.default_seed_chunk` for the
    device).  Raises ConfigError for any other value.
    ``run_ids`` overrides the run ids (resuming a stored run under the id it was stored with).

    ``threads``: torch's CPU threads, set for this process before each group trains (None: ``OMP_NUM_THREADS``
    or chosen from the work per step and the free cores, :func:`theorylab.runs.threads.set_threads`).

    Raises :class:`~theorylab.errors.StoreError` before anything is written when ``store`` cannot be
    used or a live process on this host is training one of the runs.  SIGTERM stops the runs as Ctrl-C
    does (:class:`Terminated`).
    """
    check_threads(threads)
    if seed_chunk == "all":
        seed_chunk = None
    if not (seed_chunk == AUTO or valid_chunk(seed_chunk) or (seed_chunk == 0 and type(seed_chunk) is int)):
        raise ConfigError(f"seed_chunk: must be None or 'all' (all at once), 0 (the device's default), 'auto' "
                          f"(measured) or >= 1 (got {seed_chunk!r})")
    ids = list(run_ids) if run_ids is not None else [c.run_id() for c in cfgs]
    if len(ids) != len(cfgs):
        raise ConfigError("run_ids: give one id per config")
    with _sigterm_stops():
        return _train_many(cfgs, ids, store, force=force, progress=progress, on_eval=on_eval, stop_after=stop_after,
                           seed_chunk=seed_chunk, threads=threads)


def _refuse_live_owner(rec) -> None:
    """A run that a live process of this host (not this one) is training is not trained a second time: its
    record says ``running``, that process is there and its heartbeat is fresh (a live process that left a
    run ``running`` and does not train it any more, a notebook's kernel say, does not hold the run)."""
    if rec is None or rec.status != "running" or rec.host != this_host() or rec.pid in (None, os.getpid()):
        return
    if rec.heartbeat is not None and time.time() - rec.heartbeat > STALE_AFTER_SECONDS:
        return
    seen = "" if rec.heartbeat is None else f", last heartbeat {max(0.0, time.time() - rec.heartbeat):.0f} s ago"
    raise StoreError(f"run {rec.id} is being trained by process {rec.pid} on this host{seen}; wait for it, or stop it "
                     f"(kill -TERM {rec.pid}: the run is marked stopped) and train or resume it again")


def _train_many(cfgs: list[RunConfig], ids: list[str], store: Store | None, *, force: bool, progress: bool,
                on_eval, stop_after: int | None, seed_chunk: int | str | None, threads: int | None = None
                ) -> list[RunResult]:
    results: list[RunResult | None] = [None] * len(cfgs)
    first: dict[str, int] = {}
    for i, rid in enumerate(ids):
        first.setdefault(rid, i)
    keep = [i for i, rid in enumerate(ids) if first[rid] == i]
    if store is not None:
        store.check()  # a store the program cannot use is refused before any training
        if store.db_path.exists():
            for i in keep:
                _refuse_live_owner(store.get_run(ids[i]))
    for sub in group_configs([cfgs[i] for i in keep]):
        group = [keep[g] for g in sub]
        by_start: dict[int, list[tuple[int, tuple[Path, int] | None, bool]]] = {}
        for i in group:
            rec = store.get_run(ids[i]) if store is not None and store.db_path.exists() else None
            _refuse_live_owner(rec)
            if rec is not None and not force and rec.status in ("finished", "diverged"):
                results[i] = _reused(rec, store)
                continue
            replace = rec is not None and force
            found = None if (rec is None or replace) else latest_checkpoint(store, ids[i])
            by_start.setdefault(0 if found is None else found[1], []).append((i, found, replace))
        for start, members in sorted(by_start.items()):
            out = _Group([cfgs[i] for i, _, _ in members], [ids[i] for i, _, _ in members],
                         [i for i, _, _ in members], store).run(
                start, [f for _, f, _ in members], [r for _, _, r in members], progress=progress,
                on_eval=on_eval, stop_after=stop_after, seed_chunk=seed_chunk, threads=threads)
            for (i, _, _), r in zip(members, out):
                results[i] = r
    for i, rid in enumerate(ids):
        if results[i] is None:
            results[i] = results[first[rid]]
    return results  # type: ignore[return-value]


# --------------------------------------------------------------------------- one group


@dataclass
class _Member:
    cfg: RunConfig
    run_id: str
    index: int  # into the caller's configs (on_eval)
    task: Task
    model: Transformer
    opt: torch.optim.Optimizer
    prior_wall: float = 0.0
    status: str = "finished"
    step: int = 0
    last: dict[str, float] = field(default_factory=dict)
    diverged_step: int | None = None
    diverged_on: str | None = None
    early: bool = False
    wall: float = 0.0
    sps: float = 0.0


class _Group:
    """Runs that differ only in seed, trained in lockstep from one start step."""

    def __init__(self, cfgs: list[RunConfig], run_ids: list[str], indices: list[int], store: Store | None):
        self.cfgs, self.run_ids, self.indices, self.store = cfgs, run_ids, indices, store
        self.tc = cfgs[0].train

    def _mark(self, active: list[_Member], status: str, err: BaseException, step: int) -> None:
        """Record how the unfinished runs ended (stopped or failed) and the step they reached; they resume
        from their last checkpoint."""
        if isinstance(err, KeyboardInterrupt):
            why = f"interrupted by {getattr(err, 'signal_name', 'Ctrl-C (SIGINT)')}"
        else:
            why = f"{type(err).__name__}: {(str(err).splitlines() or [type(err).__name__])[0]}"
        for m in active:
            try:
                if self.store.get_run(m.run_id) is not None:
                    self.store.update_run(m.run_id, status=status, step=step, summary={"error": why})
            except Exception:  # the store itself may be what failed
                pass

    def _stopped_message(self, active: list[_Member], step: int) -> str:
        """One line for an interrupted group: where it stopped and how to go on."""
        ids = [m.run_id for m in active] or list(self.run_ids)
        what = f"run {ids[0]}" if len(ids) == 1 else f"{len(ids)} runs ({ids[0]}, ...)"
        if self.store is None:
            return f"{what} stopped at step {step} (trained in memory: nothing to resume)"
        try:
            found = latest_checkpoint(self.store, ids[0]) if len(ids) == 1 else None
        except Exception:  # the store itself may be what failed
            found = None
        if len(ids) > 1:
            return f"{what} stopped at step {step}; they resume from their last checkpoints: the same command again"
        since = "from step 0 (no checkpoint yet)" if found is None else f"from its checkpoint at step {found[1]}"
        return f"{what} stopped at step {step}; it resumes {since}: theorylab resume {ids[0]}"

    def _check_early_stop_metric(self, vals: dict[str, float]) -> None:
        tc = self.tc
        if tc.early_stop_metric is not None and tc.early_stop_metric not in vals:
            raise ConfigError(f"train.early_stop_metric: {tc.early_stop_metric!r} is not a metric of this task; "
                              f"known: {', '.join(sorted(vals))}")

    def run(self, start: int, found: list, replace: list[bool], *, progress: bool, on_eval, stop_after: int | None,
            seed_chunk: int | str | None, threads: int | None = None) -> list[RunResult]:
        tc, store = self.tc, self.store
        device = resolve_device(tc.device)
        dtype = DTYPES[tc.dtype]
        members: list[_Member] = []
        resumed_chunks = set()  # the seed chunks the checkpoints were trained with (a resume keeps it)
        for cfg, rid, idx, f in zip(self.cfgs, self.run_ids, self.indices, found):
            task, model = build(cfg, device)
            task = prepare(cfg, task, model, store, device, fresh=f is None)  # the parent's weights, the objective
            opt = make_optimizer(tc, [p for p in model.parameters() if p.requires_grad])  # LoRA: adapters only
            m = _Member(cfg, rid, idx, task, model, opt)
            if f is not None:
                info = load_checkpoint(f[0], model, opt)
                belongs_to = info["extra"].get("run_id")
                if belongs_to is not None and belongs_to != rid:
                    raise CheckpointError(f"checkpoint {str(f[0])!r} belongs to run {belongs_to}, not {rid}")
                m.prior_wall = float(info["extra"].get("wall_seconds", 0.0))
                resumed_chunks.add(info["extra"].get("seed_chunk", AUTO))
            members.append(m)
        # once per training, never during one (a changed count may change float sums mid-run)
        n_threads = set_threads(step_flops(members[0].model, members[0].task.train_batch(start, tc.batch_size)),
                                threads)
        first: dict[str, dict[str, float]] = {}
        if start == 0:  # evaluated before anything is written, so a bad early-stop metric writes nothing
            for m in members:
                with precision(tc.dtype, device):
                    vals = evaluate_model(m.task, m.model, device, dtype, tc.eval_batch_size, m.cfg.probes)
                vals["train/lr"] = lr_at(tc, 0)
                self._check_early_stop_metric(vals)
                first[m.run_id] = vals
        chunk, measured_at = 1, None  # measured_at: where a chunk measured now is remembered (process, store)
        if tc.stepper == "stacked":
            pinned = seed_chunk != 0 or env_seed_chunk() is not _UNSET  # the caller's or THEORYLAB_SEED_CHUNK
            chunk = default_seed_chunk(device) if seed_chunk == 0 else seed_chunk
            recorded = next(iter(resumed_chunks)) if len(resumed_chunks) == 1 else AUTO
            if not pinned and (recorded == "all" or (recorded is not None and valid_chunk(recorded))):
                chunk = None if recorded == "all" else recorded  # measured when the group started: same rounding
        if chunk == AUTO and len(members) > 1:
            measured_at = (chunk_key(self.cfgs[0], len(members), device),
                           None if store is None else store.root / "seed_chunks.json")
            chunk = known_chunk(*measured_at)
        stepper = make_stepper(tc.stepper, self.cfgs[0], [m.cfg.seed for m in members], [m.task for m in members],
                               [m.model for m in members], [m.opt for m in members], chunk=chunk)
        written = False  # whether this attempt has written to the store
        if store is not None:
            me = owner()
            for m, rep in zip(members, replace):
                written = True
                if rep:
                    store.delete_run(m.run_id)
                for tmp in store.run_dir(m.run_id).glob("*.safetensors.tmp*"):  # left by a kill mid-write
                    tmp.unlink(missing_ok=True)
                if store.get_run(m.run_id) is None:
                    store.create_run(m.run_id, m.cfg.task.name, m.cfg.to_dict(), m.cfg.seed, m.cfg.tags)
                if start == 0:  # an earlier attempt that left no usable checkpoint starts over
                    for a in store.artifacts(m.run_id, "checkpoint"):
                        Path(a["path"]).unlink(missing_ok=True)
                        store.remove_artifact(m.run_id, "checkpoint", a["path"])
                store.truncate_metrics(m.run_id, start if start > 0 else -1)
                store.update_run(m.run_id, status="running", started=time.time(), step=start, heartbeat=time.time(),
                                 **me)
        label = members[0].run_id if len(members) == 1 else f"{len(members)} seeds"
        bar = Progress(tc.steps, label, enabled=progress, start=start)
        t0 = time.perf_counter()
        active = list(members)  # in the stepper's order
        step = start
        last_beat = last_ckpt = _now()

        def beat(at: int) -> None:
            """The runs' sign of life and step: at most every HEARTBEAT_SECONDS (a clock read otherwise); every
            checkpoint writes one too."""
            nonlocal last_beat
            if store is not None and active and _now() - last_beat >= HEARTBEAT_SECONDS:
                store.heartbeat([m.run_id for m in active], at)
                last_beat = _now()

        def on_grid(at: int) -> bool:
            return bool(tc.checkpoint_every) and at % tc.checkpoint_every == 0

        def checkpoint(m: _Member, at: int) -> None:
            nonlocal last_beat
            if store is None:
                return
            k = active.index(m)
            path = _ckpt_path(store, m.run_id, at)
            # Every random draw of step t comes from generators derived from (seed, t) (step_rng,
            # torch_generator), so the seed and the step are the complete RNG state of the run.
            rng = {"scheme": "derived from (seed, step)", "seed": m.cfg.seed, "next_step": at}
            save_checkpoint(path, stepper.model(k), stepper.optimizer(k), at,
                            extra={"wall_seconds": m.prior_wall + time.perf_counter() - t0, "run_id": m.run_id,
                                   "rng": rng, "stepper": stepper.name, "seed_chunk": _chunk_of(stepper)})
            # a heartbeat before the checkpoint is registered, so the stored step is never behind it
            store.heartbeat([m.run_id], at)
            last_beat = _now()
            store.add_artifact(m.run_id, "checkpoint", path, at)
            for a in store.artifacts(m.run_id, "checkpoint"):
                # "last" keeps this one; "all" keeps the checkpoint_every grid and this one (a checkpoint
                # written by wall time or where the run stopped only serves to resume from)
                if a["path"] != str(path) and (tc.keep_checkpoints == "last" or
                                               (a["step"] < at and not on_grid(int(a["step"])))):
                    Path(a["path"]).unlink(missing_ok=True)
                    store.remove_artifact(m.run_id, "checkpoint", a["path"])

        def log_eval(m: _Member, at: int, vals: dict[str, float]) -> bool:
            """Log one evaluation; True if the run must stop (diverged or early stop).
            Non-finite values are never logged: the run is marked diverged at ``at`` instead."""
            bad = sorted(k for k, v in vals.items() if not math.isfinite(v))
            if bad:
                m.status, m.diverged_step, m.diverged_on = "diverged", at, bad[0]
                return True
            if store is not None:
                store.log_metric_rows(m.run_id, [(at, *k.split("/", 1), v) for k, v in vals.items()])
            if on_eval is not None:
                on_eval(m.index, at, vals)
            m.last = vals
            if tc.early_stop_metric is not None and tc.early_stop_metric in vals:
                v = vals[tc.early_stop_metric]
                if v >= tc.early_stop_value if tc.early_stop_mode == "max" else v <= tc.early_stop_value:
                    m.early = True
                    return True
            return False

        def evaluate(at: int, given: dict[str, dict[str, float]] | None = None) -> list[_Member]:
            stops, infos = [], []
            for k, m in enumerate(active):
                if given is not None:
                    vals = given[m.run_id]
                else:
                    with precision(tc.dtype, device):
                        vals = evaluate_model(m.task, stepper.model(k), device, dtype, tc.eval_batch_size,
                                              m.cfg.probes)
                    vals["train/lr"] = lr_at(tc, max(at - 1, 0))
                    beat(at)
                if log_eval(m, at, vals):
                    stops.append(m)
                infos.append(" ".join(f"{key}={v:.4g}" for key, v in vals.items()
                                      if key.endswith(("loss", "accuracy"))) if len(active) == 1 else
                             f"{vals.get('test/accuracy', vals.get('train/loss', float('nan'))):.3g}")
            bad = next((m for m in stops if m.status == "diverged"), None)
            info = f"diverged: {bad.diverged_on} is not finite" if bad is not None and len(active) == 1 else \
                (infos[0] if len(active) == 1 else "acc " + " ".join(infos))
            bar.update(at, info, force_line=True)
            return stops

        def finish(m: _Member, at: int) -> None:
            k = active.index(m)
            m.model = stepper.model(k)
            if m.status == "diverged":
                m.step = m.diverged_step
            else:
                m.step = at
                checkpoint(m, at)
            if m.status == "finished" and at < tc.steps and not m.early:
                m.status = "stopped"
            elapsed = time.perf_counter() - t0
            m.wall = m.prior_wall + elapsed
            m.sps = (at - start) / max(elapsed, 1e-9)
            if store is not None:
                store.update_run(m.run_id, status=m.status, step=m.step, finished=time.time(), wall_seconds=m.wall,
                                 summary={"metrics": m.last, "steps_per_second": m.sps,
                                          "diverged_step": m.diverged_step, "diverged_on": m.diverged_on,
                                          "early_stopped": m.early, "stepper": stepper.name,
                                          "threads": n_threads, "seed_chunk": _chunk_of(stepper, used=True)})

        def drop(gone: list[_Member], at: int) -> None:
            for m in gone:
                finish(m, at)
            stepper.drop([active.index(m) for m in gone])
            for m in gone:
                active.remove(m)

        try:
            if start == 0:
                stops = evaluate(0, first)
                if stops:
                    drop(stops, 0)
            end = tc.steps if stop_after is None else min(tc.steps, start + stop_after)
            while active and step < end:
                lr = lr_at(tc, step)
                batches = [m.task.train_batch(step, tc.batch_size).to(device, dtype) for m in active]
                losses, norms = stepper.forward_backward(batches, step)
                if measured_at is not None and stepper.chunk != AUTO:
                    remember_chunk(measured_at[0], stepper.chunk, measured_at[1])
                    measured_at = None
                bad = []
                for m, loss, norm in zip(active, losses, norms):
                    if not math.isfinite(loss):
                        m.status, m.diverged_step, m.diverged_on = "diverged", step, "train/batch_loss"
                    elif not math.isfinite(norm):
                        m.status, m.diverged_step, m.diverged_on = "diverged", step, "train/grad_norm"
                    else:
                        continue
                    bad.append(m)
                if bad:
                    if len(active) == 1:
                        bar.update(step, f"diverged: {bad[0].diverged_on} is not finite", force_line=True)
                    drop(bad, step)
                    if not active:
                        break
                stepper.apply(lr)
                step += 1
                if step % tc.eval_every == 0 or step == tc.steps:
                    stops = evaluate(step)
                    if stops:
                        drop(stops, step)
                elif bar.tty:
                    fin = [x for x in losses if math.isfinite(x)]
                    bar.update(step, f"loss={sum(fin) / max(len(fin), 1):.4g}")
                by_time = tc.checkpoint_minutes is not None and _now() - last_ckpt >= 60 * tc.checkpoint_minutes
                if (on_grid(step) or by_time) and step < tc.steps and active:
                    for m in active:
                        checkpoint(m, step)
                    last_ckpt = _now()
                beat(step)
            for m in list(active):
                finish(m, step)
        except TheoryLabError as err:
            if written:  # e.g. the disk filled up mid-run: the record says so instead of "running"
                self._mark(active, "failed", err, step)
            raise
        except BaseException as err:
            if store is not None:
                self._mark(active, "stopped" if isinstance(err, KeyboardInterrupt) else "failed", err, step)
            if isinstance(err, KeyboardInterrupt):
                err.args = (self._stopped_message(active, step),)
            raise
        finally:
            bar.close()
        return [RunResult(m.run_id, m.status, m.step, m.last, m.wall, m.sps, diverged_step=m.diverged_step,
                          early_stopped=m.early, diverged_on=m.diverged_on, stepper=stepper.name, threads=n_threads,
                          _model=m.model)
                for m in members]


__all__ = ["RunResult", "train", "train_many", "resume", "evaluate_model", "build", "build_model_for",
           "load_run_model", "checkpoint_steps", "latest_checkpoint", "lr_at", "resolve_device", "group_configs",
           "Progress", "DTYPES"]
