"""The single-step versus multi-step gap of a trained SUBLEQ-step model (issue 17 part 3).

A model trained on :class:`theorylab.tasks.subleq.SubleqStepTask` predicts the next machine state from
one state (SUBLEQ, the one-instruction computer of Giannou et al., ICML 2023, "Looped transformers as
programmable computers", arXiv 2301.13196).  Single-step accuracy says how often one step is right; a
program needs every step right.  The public re-implementation ``anadim/subleq-transformer`` (SETUPS.md
section 3.3: a README and code, not a paper; authorship unclear) reports 99.9 %+ single steps and exact
rollouts of unseen programs up to 91 steps, with a 4.9M-parameter encoder on 32 cells x 8 bits after 80k
GPU steps; nothing here reproduces that size.

* :func:`rollout` / :func:`rollout_accuracy` - feed the model its own predicted state step after step
  (greedy: the argmax token at every position) and compare every state with the interpreter's trace.
* :func:`single_step_accuracy` - the task's held-out states (hash split), one step each.
* :func:`fit_step_survival` - fit ``P(trajectory exact | L steps) = a^L`` by maximum likelihood, with a
  profile-likelihood interval: ``a`` is the per-step survival a constant per-step error would give.
* :func:`subleq_gap` - all three for one model: what a claim about the gap reads.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import chi2

from theorylab.errors import ConfigError
from theorylab.tasks.subleq import (
    Program,
    SubleqStepConfig,
    SubleqStepTask,
    encode,
    held_out_programs,
    run,
)


@dataclass(frozen=True)
class RolloutResult:
    """One program's rollout: ``length`` = steps compared (the steps to halt, or ``max_steps`` when the
    interpreter had not halted by then, ``halted`` False); ``first_error`` = the first step (1-based) whose
    predicted state differs from the interpreter's, None when all ``length`` states are right."""

    family: str
    operands: tuple[int, ...]
    length: int
    halted: bool
    first_error: int | None

    @property
    def exact(self) -> bool:
        return self.first_error is None


def _bits_of(model: torch.nn.Module) -> int:
    cfg = getattr(model, "cfg", None)
    v = getattr(cfg, "d_vocab", None)
    if not isinstance(v, int) or v < 2 or v & (v - 1):
        raise ConfigError("model: the word size cannot be read from its vocabulary (model.cfg.d_vocab must be a "
                          "power of two); pass bits=")
    return v.bit_length() - 1


def _device(model: torch.nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def rollout(model: torch.nn.Module, programs: list[Program], max_steps: int, bits: int | None = None,
            rows: int = 512) -> list[RolloutResult]:
    """Run every program on the model, feeding it its own predictions, for up to ``max_steps`` steps each.

    ``model``: tokens ``[B, m+1]`` -> logits ``[B, m+1, 2^bits]`` (the task's encoding, :func:`encode`);
    ``bits``: the word size (none: log2 of ``model.cfg.d_vocab``).  Each program is compared with the
    interpreter's trace (:func:`theorylab.tasks.subleq.run`) at steps 1..length; a halted interpreter ends
    the comparison (the model is not asked to keep a halted state).  ``rows``: programs per forward pass.
    Raises ConfigError for ``max_steps < 1``, programs of different memory sizes, or a value outside the word.
    """
    if max_steps < 1:
        raise ConfigError(f"max_steps: must be >= 1 (got {max_steps})")
    if not programs:
        return []
    bits = _bits_of(model) if bits is None else bits
    if len({len(p.state.memory) for p in programs}) != 1:
        raise ConfigError("programs: every program must have the same number of cells")
    was_training = model.training
    model.eval()
    device = _device(model)
    out: list[RolloutResult] = []
    try:
        for i in range(0, len(programs), rows):
            chunk = programs[i:i + rows]
            traces = [run(p.state, bits, max_steps) for p in chunk]
            lengths = [len(t) - 1 for t in traces]
            horizon = max(lengths)
            truth = np.zeros((len(chunk), horizon + 1, len(chunk[0].state.memory) + 1), dtype=np.int64)
            for j, t in enumerate(traces):
                enc = [encode(s, bits) for s in t]
                truth[j, :len(enc)] = enc
            truth_t = torch.from_numpy(truth).to(device)
            tokens = truth_t[:, 0]
            first = [None] * len(chunk)
            for s in range(1, horizon + 1):
                tokens = model(tokens).argmax(-1)
                wrong = (tokens != truth_t[:, s]).any(-1).tolist()
                for j, w in enumerate(wrong):
                    if w and first[j] is None and s <= lengths[j]:
                        first[j] = s
            out += [RolloutResult(p.family, p.operands, n, t[-1].halted(), f)
                    for p, t, n, f in zip(chunk, traces, lengths, first, strict=True)]
    finally:
        model.train(was_training)
    return out


def summarize_rollouts(results: list[RolloutResult]) -> dict[str, Any]:
    """``{"exact": fraction exact, "n": programs, "by_family": {family: {"exact", "n", "mean_length",
    "max_exact_length"}}, "by_length": {L: {"exact", "n"}}, "by_family_length": {family: {L: {"exact", "n"}}}}``
    (lengths in steps; ``max_exact_length``: the longest exactly-right program of the family, 0 if none)."""
    def block(rs: list[RolloutResult]) -> dict[str, float]:
        return {"exact": sum(r.exact for r in rs) / len(rs), "n": len(rs)}

    fam: dict[str, list[RolloutResult]] = defaultdict(list)
    by_len: dict[int, list[RolloutResult]] = defaultdict(list)
    fam_len: dict[str, dict[int, list[RolloutResult]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        fam[r.family].append(r)
        by_len[r.length].append(r)
        fam_len[r.family][r.length].append(r)
    return {
        "exact": sum(r.exact for r in results) / len(results) if results else math.nan,
        "n": len(results),
        "by_family": {f: {**block(rs), "mean_length": float(np.mean([r.length for r in rs])),
                          "max_exact_length": max([r.length for r in rs if r.exact], default=0)}
                      for f, rs in fam.items()},
        "by_length": {n: block(rs) for n, rs in sorted(by_len.items())},
        "by_family_length": {f: {n: block(rs) for n, rs in sorted(d.items())} for f, d in fam_len.items()},
    }


def rollout_accuracy(model: torch.nn.Module, programs: list[Program], max_steps: int,
                     bits: int | None = None) -> dict[str, Any]:
    """:func:`rollout` then :func:`summarize_rollouts`, with the per-program ``results`` list added.

    The fraction of programs whose whole trajectory (every state, PC included, up to the halt or
    ``max_steps``) the model reproduced exactly from its own predictions, overall, per family and per
    length.  Same arguments and errors as :func:`rollout`."""
    res = rollout(model, programs, max_steps, bits)
    return {**summarize_rollouts(res), "results": res}


@dataclass(frozen=True)
class SurvivalFit:
    """``P(exact | L) = a^L``: ``a`` the per-step survival (maximum likelihood), ``lo``-``hi`` its profile-
    likelihood interval at ``level``; ``n`` trajectories of which ``n_exact`` exact; ``loglik`` at ``a``."""

    a: float
    lo: float
    hi: float
    level: float
    n: int
    n_exact: int
    loglik: float


def fit_step_survival(lengths, exact, level: float = 0.95) -> SurvivalFit:
    """Fit ``P(exact | L) = a^L`` to per-trajectory outcomes by maximum likelihood.

    ``lengths``: ``[n]`` steps (integers >= 1); ``exact``: ``[n]`` booleans.  The log-likelihood
    ``sum_i y_i L_i log a + (1 - y_i) log(1 - a^L_i)`` is concave in ``log a``, so the maximum is unique; the
    interval is ``{a : 2 (l(a_hat) - l(a)) <= chi2_1(level)}`` (a likelihood-ratio interval: sensible at the
    edges, where a Wald interval is not).  All exact gives ``a = hi = 1``; none exact gives ``a = lo = 0``.
    The model assumes one constant, independent chance of error per step; a rollout's errors are neither
    (a hard step, e.g. a large subtraction, fails every time), so read ``a`` as a summary, not a mechanism.
    Raises ConfigError for mismatched or empty inputs, a length < 1, or ``level`` outside (0, 1).
    """
    L = np.asarray(lengths, dtype=np.float64)
    y = np.asarray(exact, dtype=bool)
    if L.ndim != 1 or L.shape != y.shape or L.size == 0:
        raise ConfigError(f"lengths and exact must be two 1-d sequences of one length >= 1 (got {L.shape}, "
                          f"{y.shape})")
    if (L < 1).any() or (L != np.round(L)).any():
        raise ConfigError("lengths: every length must be an integer >= 1 (steps)")
    if not 0 < level < 1:
        raise ConfigError(f"level: must lie in (0, 1) (got {level})")

    def ll(h: float) -> float:  # h = -log a >= 0, the per-step hazard
        val = -h * (L[y]).sum()
        if (~y).any():
            if h <= 0:
                return -math.inf
            val += np.log(-np.expm1(-h * L[~y])).sum()
        return float(val)

    crit = chi2.ppf(level, 1) / 2
    h_max = 60.0  # a = e^-60: below any survival a finite sample can tell from 0
    if y.all():
        h_hat = 0.0
    elif not y.any():
        h_hat = h_max
    else:
        r = minimize_scalar(lambda h: -ll(h), bounds=(1e-12, h_max), method="bounded",
                            options={"xatol": 1e-12})
        h_hat = float(r.x)
    best = ll(h_hat) if h_hat < h_max else 0.0

    def gap(h: float) -> float:
        return best - ll(h) - crit

    lo_h = 0.0 if h_hat == 0 or gap(1e-15) <= 0 else brentq(gap, 1e-15, h_hat, xtol=1e-14)
    hi_h = h_max if h_hat >= h_max or gap(h_max) <= 0 else brentq(gap, h_hat, h_max, xtol=1e-12)
    return SurvivalFit(a=math.exp(-h_hat) if h_hat < h_max else 0.0, lo=math.exp(-hi_h) if hi_h < h_max else 0.0,
                       hi=math.exp(-lo_h), level=level, n=int(L.size), n_exact=int(y.sum()),
                       loglik=best)


@torch.no_grad()
def single_step_accuracy(model: torch.nn.Module, cfg: SubleqStepConfig, seed: int = 0,
                         rows: int = 512) -> dict[str, float]:
    """One step on the task's held-out test states (the hash split of :func:`theorylab.tasks.subleq.heldout_mask`,
    drawn with ``seed``): ``state_accuracy``, ``accuracy`` (per token), ``pc_accuracy``, ``write_accuracy``,
    ``state_accuracy_random``, ``state_accuracy_trace``, ``loss`` (nats per position)."""
    task = SubleqStepTask(cfg, seed)
    was_training = model.training
    model.eval()
    try:  # the task's own evaluation (what a run logs as test/*), in chunks of ``rows``
        metrics = task.evaluate(model, _device(model), None, rows)
    finally:
        model.train(was_training)
    return {k.removeprefix("test/"): v for k, v in metrics.items()}


def subleq_gap(model: torch.nn.Module, cfg: SubleqStepConfig, programs: list[Program] | None = None,
               max_steps: int = 256, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Everything a claim about the single-step / rollout gap reads, for one trained model.

    ``cfg``: the task config the model was trained on (``cells``, ``bits``); ``programs``: none = the
    standard held-out families (:func:`theorylab.tasks.subleq.held_out_programs`).  Returns
    ``{"single_step": single_step_accuracy(...), "rollout": rollout_accuracy(...) (with "results"),
    "fit": SurvivalFit over the programs that halted within max_steps, "predicted_exact": {L: p^L}}``,
    where ``p`` is the single-step state accuracy on held-out trace states: what independent steps at the
    measured single-step accuracy would give at each length present."""
    if programs is None:
        programs = held_out_programs(cfg.cells, cfg.bits)
    single = single_step_accuracy(model, cfg, seed)
    roll = rollout_accuracy(model, programs, max_steps, cfg.bits)
    halted = [r for r in roll["results"] if r.halted]
    fit = fit_step_survival([r.length for r in halted], [r.exact for r in halted], level) if halted else None
    p = single.get("state_accuracy_trace", single["state_accuracy"])
    return {"single_step": single, "rollout": roll, "fit": fit,
            "predicted_exact": {n: p ** n for n in roll["by_length"]}}


__all__ = ["RolloutResult", "SurvivalFit", "fit_step_survival", "rollout", "rollout_accuracy",
           "single_step_accuracy", "subleq_gap", "summarize_rollouts"]
