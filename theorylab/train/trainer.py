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

from theorylab.errors import TheoryLabError
from theorylab.models import Transformer
from theorylab.store import Store
from theorylab.tasks import Task, make_task
from theorylab.tasks.base import torch_generator
from theorylab.train.checkpoint import load_checkpoint, save_checkpoint
from theorylab.train.config import RunConfig, TrainConfig

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
    """A rich progress bar on a terminal; plain periodic lines on stderr otherwise."""

    def __init__(self, total: int, label: str, enabled: bool = True, start: int = 0):
        self.total, self.label, self.enabled = total, label, enabled
        self.tty = enabled and sys.stdout.isatty()
        self.t0 = time.perf_counter()
        self.start = start
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
        if force_line:
            el = time.perf_counter() - self.t0
            done = max(1, step - self.start)
            eta = el / done * (self.total - step)
            print(f"[{self.label}] step {step}/{self.total} {info} eta {eta:.0f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _evaluate(task: Task, model: torch.nn.Module, device, dtype, eval_bs: int) -> dict[str, float]:
    out: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        for split, batch in task.eval_sets().items():
            n = len(batch)
            if n <= eval_bs:
                vals = task.metrics(model, batch.to(device, dtype))
            else:  # average over chunks, weighted by size
                acc: dict[str, float] = {}
                for i in range(0, n, eval_bs):
                    part = batch.index(slice(i, i + eval_bs)).to(device, dtype)
                    for k, v in task.metrics(model, part).items():
                        acc[k] = acc.get(k, 0.0) + v * len(part)
                vals = {k: v / n for k, v in acc.items()}
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


def train(cfg: RunConfig, store: Store | None = None, *, force: bool = False, progress: bool = True,
          stop_after: int | None = None, on_eval: Callable[[int, dict[str, float]], None] | None = None
          ) -> RunResult:
    """Train (or reuse, or resume) the run ``cfg`` and return its result.

    ``store=None`` trains in memory (no checkpoints, nothing written).  With a store,
    an identical finished run is served from it unless ``force``; an unfinished one
    (killed, stopped) resumes from its last checkpoint.  ``stop_after`` stops after
    that many steps (for tests of resumption).
    """
    run_id = cfg.run_id()
    if store is not None:
        rec = store.get_run(run_id)
        if rec is not None and force:
            store.delete_run(run_id)
            rec = None
        if rec is not None and rec.status in ("finished", "diverged") and stop_after is None:
            return RunResult(run_id, rec.status, rec.step, rec.summary.get("metrics", {}),
                             rec.wall_seconds or 0.0, rec.summary.get("steps_per_second", 0.0), reused=True,
                             diverged_step=rec.summary.get("diverged_step"),
                             early_stopped=rec.summary.get("early_stopped", False))
        if rec is None:
            store.create_run(run_id, cfg.task.name, cfg.to_dict(), cfg.seed, cfg.tags)
    return _train_loop(cfg, run_id, store, progress=progress, stop_after=stop_after, on_eval=on_eval)


def resume(store: Store, run_ref: str, *, progress: bool = True) -> RunResult:
    """Continue a killed or stopped run from its last checkpoint."""
    rec = store.find_run(run_ref)
    cfg = RunConfig.model_validate(rec.config)
    if rec.status in ("finished", "diverged"):
        return RunResult(rec.id, rec.status, rec.step, rec.summary.get("metrics", {}), rec.wall_seconds or 0.0,
                         rec.summary.get("steps_per_second", 0.0), reused=True,
                         diverged_step=rec.summary.get("diverged_step"))
    return _train_loop(cfg, rec.id, store, progress=progress)


def _train_loop(cfg: RunConfig, run_id: str, store: Store | None, *, progress: bool,
                stop_after: int | None = None, on_eval=None) -> RunResult:
    """Train, recording in the store why a run ended if it did not end normally:
    ``failed`` (an exception, with its message) or ``stopped`` (interrupted).  Either
    way the next ``train``/``resume`` continues from the last checkpoint."""
    try:
        return _train_steps(cfg, run_id, store, progress=progress, stop_after=stop_after, on_eval=on_eval)
    except BaseException as err:
        if store is not None:
            status = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
            msg = (str(err).splitlines() or [type(err).__name__])[0]
            try:
                store.update_run(run_id, status=status, summary={"error": f"{type(err).__name__}: {msg}"})
            except Exception:  # the store itself may be what failed
                pass
        raise


def _train_steps(cfg: RunConfig, run_id: str, store: Store | None, *, progress: bool,
                 stop_after: int | None = None, on_eval=None) -> RunResult:
    tc = cfg.train
    device = resolve_device(tc.device)
    dtype = DTYPES[tc.dtype]
    task, model = build(cfg, device)
    opt = make_optimizer(tc, model.parameters())
    start = 0
    prior_wall = 0.0
    if store is not None:
        found = latest_checkpoint(store, run_id)
        if found is not None:
            info = load_checkpoint(found[0], model, opt)
            start = info["step"]
            prior_wall = float(info["extra"].get("wall_seconds", 0.0))
        store.truncate_metrics(run_id, start if found is not None else -1)
        store.update_run(run_id, status="running", started=time.time())
    model.train()
    bar = Progress(tc.steps, run_id, enabled=progress, start=start)
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    status, diverged_step, early = "finished", None, False
    step = start

    def checkpoint(at: int) -> None:
        if store is None:
            return
        path = _ckpt_path(store, run_id, at)
        save_checkpoint(path, model, opt, at, extra={"wall_seconds": prior_wall + time.perf_counter() - t0,
                                                    "run_id": run_id})
        store.add_artifact(run_id, "checkpoint", path, at)
        if tc.keep_checkpoints == "last":
            for a in store.artifacts(run_id, "checkpoint"):
                if a["path"] != str(path):
                    Path(a["path"]).unlink(missing_ok=True)
                    store.remove_artifact(run_id, "checkpoint", a["path"])

    def evaluate(at: int) -> bool:
        """Log eval metrics at step ``at``; True if the run must stop (diverged or early stop)."""
        nonlocal last, status, diverged_step, early
        vals = _evaluate(task, model, device, dtype, tc.eval_batch_size)
        vals["train/lr"] = lr_at(tc, max(at - 1, 0))
        if store is not None:
            store.log_metric_rows(run_id, [(at, *k.split("/", 1), v) for k, v in vals.items()])
        if on_eval is not None:
            on_eval(at, vals)
        bad = [k for k, v in vals.items() if not math.isfinite(v)]
        last = vals
        info = " ".join(f"{k}={v:.4g}" for k, v in vals.items() if k.endswith(("loss", "accuracy")))
        bar.update(at, info, force_line=True)
        if bad:
            status, diverged_step = "diverged", at
            return True
        if tc.early_stop_metric is not None and tc.early_stop_metric in vals:
            v = vals[tc.early_stop_metric]
            hit = v >= tc.early_stop_value if tc.early_stop_mode == "max" else v <= tc.early_stop_value
            if hit:
                early = True
                return True
        return False

    stop = False
    if start == 0:
        stop = evaluate(0)
    end = tc.steps if stop_after is None else min(tc.steps, start + stop_after)
    step = start
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
                status, diverged_step = "diverged", step
                last = {**last, "train/loss": float("nan")}
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
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
    if status != "diverged":
        checkpoint(step)
    summary = {"metrics": last, "steps_per_second": sps, "diverged_step": diverged_step, "early_stopped": early}
    if store is not None:
        store.update_run(run_id, status=status, step=step, finished=time.time(), wall_seconds=wall, summary=summary)
    return RunResult(run_id, status, step, last, wall, sps, diverged_step=diverged_step, early_stopped=early,
                     model=model)


def load_run_model(store: Store, run_ref: str, step: int | None = None) -> tuple[RunConfig, Transformer]:
    """Rebuild a stored run's model from its checkpoint (the last, or the one at ``step``)."""
    rec = store.find_run(run_ref)
    cfg = RunConfig.model_validate(rec.config)
    model = build_model_for(cfg)
    arts = store.artifacts(rec.id, "checkpoint")
    if step is not None:
        arts = [a for a in arts if a["step"] == step]
    if not arts:
        raise TheoryLabError(f"run {rec.id}: no checkpoint" + (f" at step {step}" if step is not None else ""))
    load_checkpoint(max(arts, key=lambda a: a["step"])["path"], model)
    model.eval()
    return cfg, model


def checkpoint_steps(store: Store, run_ref: str) -> list[tuple[int, str]]:
    rec = store.find_run(run_ref)
    return sorted((int(a["step"]), a["path"]) for a in store.artifacts(rec.id, "checkpoint"))
