"""The deterministic trainer: one run = one model on one task with one seed.

Determinism: parameters are initialised from a generator derived from the seed;
the batch for step ``t`` is a pure function of (seed, t) (see
:meth:`theorylab.tasks.Task.train_batch`); dropout draws from a generator seeded
by (seed, t) inside a forked RNG scope.  So the same config and seed give the same
metrics bit for bit on CPU, and a run resumed from a checkpoint continues exactly
as if it had never stopped.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from theorylab.config import validate
from theorylab.errors import CheckpointError, ConfigError, TheoryLabError
from theorylab.models import Transformer
from theorylab.runs.config import RunConfig, TrainConfig
from theorylab.store import Store
from theorylab.store.checkpoint import load_checkpoint, save_checkpoint
from theorylab.tasks import Task, make_task
from theorylab.tasks.base import chunked_mean, torch_generator

DTYPES = {"float32": torch.float32, "float64": torch.float64}


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
    model: Transformer | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "model"}
        return d


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TheoryLabError(f"train.device: {name!r} requested but CUDA is not available (use cpu or auto)")
    return torch.device(name)


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


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


class Progress:
    """A rich progress bar (step, loss, ETA) when stdout is a terminal; otherwise plain
    ``[label] step t/T ... eta Ns`` lines on stderr, at most one per ``min_interval``
    seconds (the first and the last always)."""

    def __init__(self, total: int, label: str, enabled: bool = True, start: int = 0,
                 min_interval: float = 1.0):
        self.total, self.label, self.enabled = total, label, enabled
        self.tty = enabled and sys.stdout.isatty()
        self.t0 = time.perf_counter()
        self.start = start
        self.min_interval = min_interval
        self._last_line: float | None = None
        self._bar = None
        if self.tty:
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RP

            self._bar = RP(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                           TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, completed=start, info="")

    def update(self, step: int, info: str = "", force_line: bool = False) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
            return
        if not force_line:
            return
        now = time.perf_counter()
        if self._last_line is not None and step < self.total and now - self._last_line < self.min_interval:
            return
        self._last_line = now
        done = max(1, step - self.start)
        eta = (now - self.t0) / done * (self.total - step)
        print(f"[{self.label}] step {step}/{self.total} {info} eta {eta:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


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


def _ckpt_path(store: Store, run_id: str, step: int) -> Path:
    return store.run_dir(run_id) / f"ckpt-{step:08d}.safetensors"


def latest_checkpoint(store: Store, run_id: str) -> tuple[Path, int] | None:
    arts = [a for a in store.artifacts(run_id, "checkpoint") if Path(a["path"]).exists()]
    if not arts:
        return None
    a = max(arts, key=lambda a: a["step"])
    return Path(a["path"]), int(a["step"])


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


def _reused(rec) -> RunResult:
    s = rec.summary
    return RunResult(rec.id, rec.status, rec.step, s.get("metrics", {}), rec.wall_seconds or 0.0,
                     s.get("steps_per_second", 0.0), reused=True, diverged_step=s.get("diverged_step"),
                     early_stopped=s.get("early_stopped", False), diverged_on=s.get("diverged_on"))


def train(cfg: RunConfig, store: Store | None = None, *, force: bool = False, progress: bool = True,
          stop_after: int | None = None, on_eval: Callable[[int, dict[str, float]], None] | None = None
          ) -> RunResult:
    """Train (or reuse, or resume) the run ``cfg`` and return its result.

    ``store=None`` trains in memory (no checkpoints, nothing written).  With a store,
    an identical finished (or diverged) run is served from it unless ``force``; an
    unfinished one (killed, stopped, failed) resumes from its last checkpoint.
    Everything that can be checked (device, task, model, the early-stop metric) is
    checked before the store is written.  ``stop_after`` stops after that many steps
    (for tests of resumption).
    """
    run_id = cfg.run_id()
    rec = store.get_run(run_id) if store is not None and store.db_path.exists() else None
    if rec is not None and not force and rec.status in ("finished", "diverged") and stop_after is None:
        return _reused(rec)
    fresh = rec is None or force
    return _train_loop(cfg, run_id, store, fresh=fresh, replace=rec is not None and force, progress=progress,
                       stop_after=stop_after, on_eval=on_eval)


def resume(store: Store, run_ref: str, *, progress: bool = True) -> RunResult:
    """Continue a killed or stopped run from its last checkpoint (a finished one is returned as is)."""
    rec = store.find_run(run_ref)
    if rec.status in ("finished", "diverged"):
        return _reused(rec)
    cfg = validate(RunConfig, rec.config)
    return _train_loop(cfg, rec.id, store, fresh=False, progress=progress)


def _train_loop(cfg: RunConfig, run_id: str, store: Store | None, *, fresh: bool, progress: bool,
                replace: bool = False, stop_after: int | None = None, on_eval=None) -> RunResult:
    """Train, recording in the store why a run ended if it did not end normally:
    ``failed`` (an exception, with its message) or ``stopped`` (interrupted).  Either
    way the next ``train``/``resume`` continues from the last checkpoint.  A
    :class:`TheoryLabError` (bad input, a corrupt checkpoint) leaves the record as it was."""
    try:
        return _train_steps(cfg, run_id, store, fresh=fresh, replace=replace, progress=progress,
                            stop_after=stop_after, on_eval=on_eval)
    except TheoryLabError:
        raise
    except BaseException as err:
        if store is not None:
            status = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
            msg = (str(err).splitlines() or [type(err).__name__])[0]
            try:
                if store.get_run(run_id) is not None:
                    store.update_run(run_id, status=status, summary={"error": f"{type(err).__name__}: {msg}"})
            except Exception:  # the store itself may be what failed
                pass
        raise


def _check_early_stop_metric(tc: TrainConfig, vals: dict[str, float]) -> None:
    if tc.early_stop_metric is not None and tc.early_stop_metric not in vals:
        raise ConfigError(f"train.early_stop_metric: {tc.early_stop_metric!r} is not a metric of this task; "
                          f"known: {', '.join(sorted(vals))}")


def _grad_norm(model: torch.nn.Module, clip: float | None) -> torch.Tensor:
    """Global gradient norm (clipping to ``clip`` when given)."""
    params = [p for p in model.parameters() if p.grad is not None]
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    if not params:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.detach()) for p in params]))


def _train_steps(cfg: RunConfig, run_id: str, store: Store | None, *, fresh: bool, progress: bool,
                 replace: bool = False, stop_after: int | None = None, on_eval=None) -> RunResult:
    tc = cfg.train
    device = resolve_device(tc.device)
    dtype = DTYPES[tc.dtype]
    task, model = build(cfg, device)
    opt = make_optimizer(tc, model.parameters())
    start = 0
    prior_wall = 0.0
    found = None if (store is None or fresh) else latest_checkpoint(store, run_id)
    if found is not None:
        info = load_checkpoint(found[0], model, opt)
        owner = info["extra"].get("run_id")
        if owner is not None and owner != run_id:
            raise CheckpointError(f"checkpoint {str(found[0])!r} belongs to run {owner}, not {run_id}")
        start = info["step"]
        prior_wall = float(info["extra"].get("wall_seconds", 0.0))
    first: dict[str, float] | None = None
    if start == 0:  # evaluated before anything is written, so a bad early-stop metric writes nothing
        first = evaluate_model(task, model, device, dtype, tc.eval_batch_size, cfg.probes)
        first["train/lr"] = lr_at(tc, 0)
        _check_early_stop_metric(tc, first)
    if store is not None:
        if replace:
            store.delete_run(run_id)
        for tmp in store.run_dir(run_id).glob("*.safetensors.tmp*"):  # left by a kill mid-write
            tmp.unlink(missing_ok=True)
        if fresh:
            store.create_run(run_id, cfg.task.name, cfg.to_dict(), cfg.seed, cfg.tags)
        store.truncate_metrics(run_id, start if found is not None else -1)
        store.update_run(run_id, status="running", started=time.time())
    model.train()
    bar = Progress(tc.steps, run_id, enabled=progress, start=start)
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    status, diverged_step, diverged_on, early = "finished", None, None, False
    step = start

    def checkpoint(at: int) -> None:
        if store is None:
            return
        path = _ckpt_path(store, run_id, at)
        # Every random draw of step t comes from generators derived from (seed, t) (step_rng,
        # torch_generator), so the seed and the step are the complete RNG state of the run.
        rng = {"scheme": "derived from (seed, step)", "seed": cfg.seed, "next_step": at}
        save_checkpoint(path, model, opt, at, extra={"wall_seconds": prior_wall + time.perf_counter() - t0,
                                                    "run_id": run_id, "rng": rng})
        store.add_artifact(run_id, "checkpoint", path, at)
        if tc.keep_checkpoints == "last":
            for a in store.artifacts(run_id, "checkpoint"):
                if a["path"] != str(path):
                    Path(a["path"]).unlink(missing_ok=True)
                    store.remove_artifact(run_id, "checkpoint", a["path"])

    def evaluate(at: int, vals: dict[str, float] | None = None) -> bool:
        """Log eval metrics at step ``at``; True if the run must stop (diverged or early stop).
        Non-finite values are never logged: the run is marked diverged at ``at`` instead."""
        nonlocal last, status, diverged_step, diverged_on, early
        if vals is None:
            vals = evaluate_model(task, model, device, dtype, tc.eval_batch_size, cfg.probes)
            vals["train/lr"] = lr_at(tc, max(at - 1, 0))
        bad = sorted(k for k, v in vals.items() if not math.isfinite(v))
        if bad:
            status, diverged_step, diverged_on = "diverged", at, bad[0]
            bar.update(at, f"diverged: {bad[0]} is not finite", force_line=True)
            return True
        if store is not None:
            store.log_metric_rows(run_id, [(at, *k.split("/", 1), v) for k, v in vals.items()])
        if on_eval is not None:
            on_eval(at, vals)
        last = vals
        info = " ".join(f"{k}={v:.4g}" for k, v in vals.items() if k.endswith(("loss", "accuracy")))
        bar.update(at, info, force_line=True)
        if tc.early_stop_metric is not None and tc.early_stop_metric in vals:
            v = vals[tc.early_stop_metric]
            hit = v >= tc.early_stop_value if tc.early_stop_mode == "max" else v <= tc.early_stop_value
            if hit:
                early = True
                return True
        return False

    stop = False
    if start == 0:
        stop = evaluate(0, first)
    end = tc.steps if stop_after is None else min(tc.steps, start + stop_after)
    try:
        while not stop and step < end:
            lr = lr_at(tc, step)
            for g in opt.param_groups:
                g["lr"] = lr
            batch = task.train_batch(step, tc.batch_size).to(device, dtype)
            if cfg.model.dropout > 0:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(int(torch_generator(cfg.seed, 2, step).initial_seed()))
                    loss, _ = task.loss(model, batch)
            else:
                loss, _ = task.loss(model, batch)
            if not torch.isfinite(loss):
                status, diverged_step, diverged_on = "diverged", step, "train/batch_loss"
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if not torch.isfinite(_grad_norm(model, tc.grad_clip)):
                status, diverged_step, diverged_on = "diverged", step, "train/grad_norm"
                break
            opt.step()
            step += 1
            if step % tc.eval_every == 0 or step == tc.steps:
                stop = evaluate(step)
            elif bar.tty:
                bar.update(step, f"loss={loss.item():.4g}")
            if status == "diverged":
                break
            if tc.checkpoint_every and step % tc.checkpoint_every == 0 and step < tc.steps:
                checkpoint(step)
    finally:
        bar.close()
    wall = prior_wall + time.perf_counter() - t0
    done_steps = step - start
    sps = done_steps / max(time.perf_counter() - t0, 1e-9)
    if status != "diverged" and stop_after is not None and step < tc.steps and not early:
        status = "stopped"
    if status == "diverged":
        step = diverged_step
    else:
        checkpoint(step)
    summary = {"metrics": last, "steps_per_second": sps, "diverged_step": diverged_step,
               "diverged_on": diverged_on, "early_stopped": early}
    if store is not None:
        store.update_run(run_id, status=status, step=step, finished=time.time(), wall_seconds=wall, summary=summary)
    return RunResult(run_id, status, step, last, wall, sps, diverged_step=diverged_step, early_stopped=early,
                     diverged_on=diverged_on, model=model)


def load_run_model(store: Store, run_ref: str, step: int | None = None) -> tuple[RunConfig, Transformer]:
    """A stored run's config and its model from its checkpoint (the last, or the one at ``step``)."""
    rec = store.find_run(run_ref)
    return validate(RunConfig, rec.config), store.load_model(rec.id, step)


def checkpoint_steps(store: Store, run_ref: str) -> list[tuple[int, str]]:
    """``[(step, path)]`` of a stored run's checkpoints."""
    return store.checkpoints(run_ref)
