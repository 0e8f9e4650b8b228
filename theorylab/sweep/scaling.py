"""Scaling sweeps: model sizes times token budgets, each run trained for exactly its D tokens.

Two designs, as scaling studies use them (Hoffmann et al. 2022, §3):

* **grid** (:func:`grid_plan`, for Approach 3): every model size of a log-spaced ladder trained for
  every token budget D of a log-spaced list;
* **IsoFLOP** (:func:`isoflop_plan`, for Approach 2): for each compute budget C, the sizes of the ladder
  within a factor ``width`` of a guessed optimum N ~ sqrt(C / (6 r)) (``r`` tokens per parameter,
  Chinchilla's 20 by default), each trained for D = C / (6 N) tokens.

Every run sees fresh data each step (the ``lm`` PCFG corpus or the ``markov`` chain: D counts tokens
seen, never repeated), trains with a warmup and a cosine schedule that ends at its own D (Hoffmann et
al. §3, "the cosine cycle length should match the number of training steps"), and is evaluated on the
same held-out windows at the end.  The runs are ordinary stored runs (their ids follow from the
config), trained on any sweep backend; :func:`collect` reads them back as
:class:`~theorylab.measures.scaling.Points` with N (all parameters, Hoffmann's count; the
non-embedding count kept beside it), D (tokens trained, exactly steps x batch x context) and C (6ND,
and the exact forward + backward count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theorylab.errors import ConfigError
from theorylab.runs.config import RunConfig

# Shapes of the ladder, smallest first: (d_model, n_layers, n_heads).  Depth grows slowly with width
# (about d/32 layers, at least 1), as in the model families of Kaplan et al. (2020) and Hoffmann et al.
# (2022, Table A9) at their small end; heads of width 8 or 16.
SHAPES: tuple[tuple[int, int, int], ...] = (
    (8, 1, 1), (12, 1, 2), (16, 1, 2), (16, 2, 2), (24, 2, 2), (32, 2, 4), (48, 2, 4), (64, 2, 4), (64, 3, 4),
    (96, 3, 6), (128, 4, 8), (192, 4, 12), (256, 6, 16), (384, 8, 24), (512, 8, 32), (768, 12, 48),
    (1024, 16, 64),
)

SCALING_TASKS = ("lm", "markov")
MAX_BUDGETS = 100  # token or compute budgets in one plan: more is a typo, not a sweep


@dataclass(frozen=True)
class Training:
    """How every run of a scaling sweep trains (the same for all sizes, so that only N and D vary).

    At most ``batch_size`` windows of the task's ``seq_len`` tokens per step, fewer for a small token budget so
    that every run takes at least ``min_steps`` optimizer steps (down to one window a step): a run of a few
    dozen steps is limited by its steps, not its tokens, and breaks any law in D (pilot: 1.8k parameters on
    59k tokens reach 2.85 nats in 29 steps of 32 windows, 1.86 in 232 steps of 4).  AdamW at ``lr`` with linear
    warmup over ``warmup`` of the steps and a cosine decay to ``min_lr_ratio`` x lr at the last step;
    ``evals`` evaluations spread over the run (the last one at its end)."""

    batch_size: int = 32
    min_steps: int = 200
    lr: float = 3e-3
    warmup: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    evals: int = 4
    device: str = "cpu"

    def batch_for(self, tokens: float, seq_len: int) -> int:
        """Windows per step for a run of ``tokens`` tokens: ``batch_size``, or fewer so that the run takes at
        least ``min_steps`` steps (at least one window)."""
        return int(max(1, min(self.batch_size, tokens // (self.min_steps * seq_len))))

    def steps_for(self, tokens: float, seq_len: int) -> tuple[int, int]:
        """(steps, windows per step) that train on ``tokens`` tokens, rounded to whole steps (at least one)."""
        b = self.batch_for(tokens, seq_len)
        return max(1, round(tokens / (b * seq_len))), b


@dataclass
class PlannedRun:
    """One run of a plan: its config, parameter count N, tokens D and the budget it belongs to."""

    name: str
    config: RunConfig
    N: int
    N_non_embedding: int
    D: int
    C: float  # 6 N D
    C_exact: float  # forward + backward FLOPs of this model over D tokens (theorylab.models.size)
    budget: float | None = None  # the IsoFLOP budget this run belongs to

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "N": self.N, "N_non_embedding": self.N_non_embedding, "D": self.D, "C": self.C,
                "C_exact": self.C_exact, "budget": self.budget, "shape": _shape_of(self.config)}


@dataclass
class Plan:
    design: str  # "grid" or "isoflop"
    runs: list[PlannedRun] = field(default_factory=list)
    budgets: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the plan could not do as asked (shown with --plan)

    def configs(self) -> list[RunConfig]:
        return [r.config for r in self.runs]

    def named(self) -> dict[str, RunConfig]:
        return {r.name: r.config for r in self.runs}


def _shape_of(cfg: RunConfig) -> str:
    m = cfg.model
    return f"d{m.d_model}-L{m.n_layers}-H{m.n_heads}"


def task_config(task: str, seq_len: int | None = None, **fields: Any) -> dict[str, Any]:
    """The task section of a scaling run: ``lm`` (the PCFG corpus) or ``markov`` (an order-2 chain)."""
    if task not in SCALING_TASKS:
        raise ConfigError(f"task: {task!r} is not a scaling source; allowed: {', '.join(SCALING_TASKS)} (a source "
                          "with fresh data every step and a known entropy rate)")
    if "name" in fields:
        raise ConfigError("task.name: the source is chosen by the task argument (--task lm|markov), not a field")
    d = {"name": task, **fields}
    if seq_len is not None:
        d["seq_len"] = seq_len
    return d


def _config(task: dict[str, Any], shape: tuple[int, int, int], steps: int, tr: Training, seed: int,
            batch: int | None = None) -> RunConfig:
    d, L, H = shape
    from theorylab.config import validate

    every = max(1, math.ceil(steps / max(tr.evals, 1)))
    return validate(RunConfig, {
        "task": task,
        "model": {"n_layers": L, "d_model": d, "n_heads": H, "act": "gelu", "positional": "learned"},
        "train": {"steps": steps, "batch_size": batch or tr.batch_size, "optimizer": "adamw", "lr": tr.lr,
                  "weight_decay": tr.weight_decay, "warmup_steps": max(1, round(tr.warmup * steps)),
                  "schedule": "cosine", "min_lr_ratio": tr.min_lr_ratio, "eval_every": every,
                  "device": tr.device},
        "seed": seed,
    })


def sized(task: dict[str, Any], shapes: Sequence[tuple[int, int, int]]) -> list[tuple[tuple[int, int, int], int]]:
    """Every shape with its parameter count N for this task, ``[(shape, N)]`` in the given order."""
    from theorylab.models.size import param_count

    return [(shape, int(param_count(_config(task, shape, 1, Training(), 0).model))) for shape in shapes]


def ladder(task: dict[str, Any], n_min: float, n_max: float, count: int,
           shapes: Sequence[tuple[int, int, int]] = SHAPES) -> list[tuple[tuple[int, int, int], int]]:
    """``count`` shapes of ``shapes`` (default :data:`SHAPES`; ``(d_model, n_layers, n_heads)``) whose parameter
    counts are nearest to log-spaced targets in [n_min, n_max] for this task's vocabulary and context, as
    ``[(shape, N)]`` in increasing N (duplicates dropped, so fewer than ``count`` when the range is narrow).
    Raises ConfigError when no shape lies in the range."""
    if not (n_min > 0 and n_max >= n_min) or count < 1:
        raise ConfigError(f"sizes: need 0 < n_min <= n_max and a count >= 1 (got {n_min:g}, {n_max:g}, {count})")
    sizes = sized(task, shapes)
    inside = [(s, n) for s, n in sizes if n_min / 1.5 <= n <= n_max * 1.5]
    if not inside:
        have = ", ".join(f"{n:,}" for _, n in sizes)
        raise ConfigError(f"sizes: no model of the ladder has {n_min:g}..{n_max:g} parameters for this task "
                          f"(the ladder has {have})")
    targets = np.geomspace(n_min, n_max, count) if count > 1 else np.array([math.sqrt(n_min * n_max)])
    chosen: list[tuple[tuple[int, int, int], int]] = []
    for t in targets:
        best = min(inside, key=lambda sn: abs(math.log(sn[1] / t)))
        if best not in chosen:
            chosen.append(best)
    return sorted(chosen, key=lambda sn: sn[1])


def _triple(name: str, x: Any) -> tuple[float, float, int]:
    """``(lo, hi, count)`` checked: two positive numbers and a whole count (one ConfigError line otherwise)."""
    ok = isinstance(x, (tuple, list)) and len(x) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                               for v in x) and float(x[2]).is_integer()
    if not ok:
        raise ConfigError(f"{name}: expected (lo, hi, count), e.g. (1.5e3, 1.1e5, 5); got {x!r}")
    return float(x[0]), float(x[1]), int(x[2])


def _planned(name: str, cfg: RunConfig, N: int, budget: float | None = None) -> PlannedRun:
    from theorylab.models.size import non_embedding_params, training_flops

    D = cfg.train.steps * int(cfg.train.batch_size or 1) * int(cfg.model.n_ctx)
    C_exact = training_flops(cfg.model, D)["exact"]
    return PlannedRun(name, cfg, N, int(non_embedding_params(cfg.model)), D, 6.0 * N * D, float(C_exact), budget)


def grid_plan(task: dict[str, Any], sizes: tuple[float, float, int] | None, tokens: tuple[float, float, int],
              seed: int = 0, training: Training | None = None,
              shapes: Sequence[tuple[int, int, int]] = SHAPES) -> Plan:
    """Every ladder size in ``sizes = (n_min, n_max, count)`` (chosen from ``shapes``, :func:`ladder`; none:
    every one of ``shapes``) times every token budget of ``tokens = (d_min, d_max, count)`` (log-spaced; each
    rounded to whole steps, at least one)."""
    tr = training or Training()
    shapes = (sorted(sized(task, shapes), key=lambda sn: sn[1]) if sizes is None
              else ladder(task, *_triple("sizes", sizes), shapes=shapes))
    d_min, d_max, k = _triple("tokens", tokens)
    if not (d_min > 0 and d_max >= d_min) or not 1 <= k <= MAX_BUDGETS:
        raise ConfigError(f"tokens: need 0 < d_min <= d_max and a count in 1..{MAX_BUDGETS} (got {d_min:g}, "
                          f"{d_max:g}, {k})")
    seq = int(_config(task, shapes[0][0], 1, tr, seed).model.n_ctx)
    budgets = np.geomspace(d_min, d_max, k) if k > 1 else np.array([d_max])
    plan = Plan("grid")
    seen: set[tuple[int, int]] = set()
    for D in budgets:
        steps, batch = tr.steps_for(D, seq)
        if (steps, batch) in seen:  # two budgets that round to the same whole steps are one
            plan.notes.append(f"token budget {D:.4g} rounds to the same {steps} steps of {batch} windows as a "
                              "smaller one; planned once")
            continue
        seen.add((steps, batch))
        for shape, N in shapes:
            cfg = _config(task, shape, steps, tr, seed, batch)
            plan.runs.append(_planned(f"{_shape_of(cfg)}-D{steps * batch * seq}", cfg, N))
    return plan


def isoflop_plan(task: dict[str, Any], budgets: list[float], per_budget: int = 5, width: float = 4.0,
                 tokens_per_param: float = 20.0, seed: int = 0, training: Training | None = None,
                 n_range: tuple[float, float] | None = None) -> Plan:
    """For each compute budget C (FLOP, as 6ND), ``per_budget`` ladder sizes log-spaced within a factor
    ``width`` of the guessed optimum N0 = sqrt(C / (6 tokens_per_param)), each trained for D = C / (6 N)
    tokens (rounded to whole steps).  ``n_range`` limits the sizes (default: the whole ladder)."""
    tr = training or Training()
    if not budgets or any(not (c > 0) for c in budgets):
        raise ConfigError("budgets: give positive compute budgets in FLOP (e.g. 1e11,3e11,1e12)")
    if len(set(budgets)) != len(budgets) or len(budgets) > MAX_BUDGETS:
        raise ConfigError(f"budgets: give distinct budgets, at most {MAX_BUDGETS} (got {len(budgets)}, "
                          f"{len(set(budgets))} distinct)")
    if not (isinstance(tokens_per_param, (int, float)) and math.isfinite(tokens_per_param) and tokens_per_param > 0):
        raise ConfigError(f"tokens_per_param: the guess of D/N at the optimum must be > 0 (got {tokens_per_param})")
    if per_budget < 3:
        raise ConfigError(f"per_budget: an IsoFLOP parabola needs at least 3 sizes per budget (got {per_budget})")
    if not width > 1:
        raise ConfigError(f"width: the sizes span N0/width..N0*width, so width must exceed 1 (got {width})")
    plan = Plan("isoflop", budgets=[float(c) for c in budgets])
    seen: set[str] = set()
    for C in budgets:
        n0 = math.sqrt(C / (6.0 * tokens_per_param))
        lo, hi = n0 / width, n0 * width
        if n_range is not None:
            lo, hi = max(lo, n_range[0]), min(hi, n_range[1])
            if lo > hi:
                continue
        try:
            sizes = ladder(task, lo, hi, per_budget)
        except ConfigError:
            plan.notes.append(f"budget {C:.3g}: no model of the ladder has {lo:.3g}..{hi:.3g} parameters; skipped")
            continue
        if len(sizes) < 3:
            plan.notes.append(f"budget {C:.3g}: only {len(sizes)} ladder sizes within {lo:.3g}..{hi:.3g} parameters; "
                              "Approach 2 needs 3 (widen --width or move --tokens-per-param)")
        for shape, N in sizes:
            seq = int(_config(task, shape, 1, tr, seed).model.n_ctx)
            steps, batch = tr.steps_for(C / (6.0 * N), seq)
            cfg = _config(task, shape, steps, tr, seed, batch)
            name = f"C{C:.0e}-{_shape_of(cfg)}"
            if name in seen:
                continue
            seen.add(name)
            plan.runs.append(_planned(name, cfg, N, float(C)))
    if not plan.runs:
        raise ConfigError("budgets: no model of the ladder fits any budget within the size range")
    return plan


def run_plan(plan: Plan, store=None, backend: str = "local", workers: int | None = None, progress: bool = True,
             force: bool = False, threads: int | None = None, device: str | None = None):
    """Train every run of ``plan`` on a sweep backend (:func:`theorylab.sweep.run_sweep`); returns its
    SweepResult.  Finished runs already in the store are reused."""
    from theorylab.runs.config import check_memory
    from theorylab.sweep import run_sweep

    cfgs = plan.configs()
    check_memory(cfgs)
    return run_sweep(cfgs, store, backend=backend, workers=workers, progress=progress, force=force,
                     label=f"scaling {plan.design}", threads=threads, device=device)


def collect(plan: Plan, losses: dict[str, float]) -> tuple[Any, list[dict[str, Any]]]:
    """(Points, rows) from the final test losses of the plan's runs (``{run name: loss}``); runs without a
    finite loss are left out of the points (their row says ``kept: False``); the points keep the rows' order.
    Raises ConfigError for arguments of the wrong kind or when no run has a finite loss."""
    if not isinstance(plan, Plan) or not isinstance(losses, dict):
        raise ConfigError("collect: expected a Plan and a dict {run name: final test loss}")
    from theorylab.measures.scaling import points

    rows, keep = [], []
    for r in plan.runs:
        loss = float(losses.get(r.name, math.nan))
        ok = math.isfinite(loss) and loss > 0
        rows.append({**r.row(), "loss": loss, "kept": ok})
        if ok:
            keep.append((r, loss))
    if not keep:
        raise ConfigError("scaling: no run of the plan has a finite test loss")
    p = points(N=[r.N for r, _ in keep], D=[r.D for r, _ in keep], loss=[x for _, x in keep])
    return p, rows


def floor_of(metrics: dict[str, float]) -> tuple[float, float]:
    """(floor, entropy rate) in nats/token from a run's final metrics: the floor is the exact optimal loss of
    the model's windows (``lm``: ``test/window_optimal_loss``, the entropy rate plus an edge term because every
    window starts at a sentence boundary; ``markov``: ``test/optimal_loss``, already the window optimum), the
    rate the asymptotic entropy rate (``lm``: ``test/optimal_loss``; ``markov``: ``test/entropy_rate``)."""
    rate = metrics.get("test/entropy_rate", metrics.get("test/optimal_loss", math.nan))
    floor = metrics.get("test/window_optimal_loss", metrics.get("test/optimal_loss", math.nan))
    return float(floor), float(rate)


def write_csv(rows: list[dict[str, Any]], path) -> None:
    """The plan's rows (name, N, N_non_embedding, D, C, C_exact, budget, shape, loss) as a CSV that
    ``theorylab scaling fit`` reads."""
    import csv

    cols = ["name", "shape", "N", "N_non_embedding", "D", "C", "C_exact", "budget", "loss"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})


__all__ = ["SHAPES", "SCALING_TASKS", "Training", "PlannedRun", "Plan", "task_config", "sized", "ladder", "grid_plan",
           "isoflop_plan", "run_plan", "collect", "floor_of", "write_csv"]
