"""Sensitivity measurements (Hahn 2020, "Theoretical Limitations of Self-Attention in Neural
Sequence Models", TACL).

For a model computing a Boolean function of n input bits:

* per-bit sensitivity: the mean absolute change of the output (the logit gap) when one
  input bit is flipped, over random strings and positions.  Hahn's Lemma 5: with Lipschitz
  layers it is O(1/n) for soft attention, so its log-log slope against n is <= -1;
* average sensitivity: the mean number of single-bit flips that change the decision
  (PARITY's is n; a function of a bounded number of bits has a bounded one);
* :func:`loglog_slope`: least-squares slope of log y on log n with a 95% interval.

All measurements are pure functions of the model and a seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from theorylab.errors import ConfigError

OutputFn = Callable[[torch.Tensor], torch.Tensor]  # bits [B, n] -> real output [B]


@dataclass
class Slope:
    """A fitted log-log slope with its interval ``[lo, hi]`` and the intercept (natural logs)."""

    slope: float
    lo: float
    hi: float
    intercept: float

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def loglog_slope(ns, values, level: float = 0.95) -> Slope:
    """Ordinary least-squares fit of ``log(values) = a + b log(ns)`` (natural logs): the slope ``b`` with its
    Student-t interval at ``level`` (``n - 2`` degrees of freedom; zero width for an exact fit, infinite for
    two points) and the intercept ``a``.  ``ns`` and ``values``: 1-D, equal length, positive and finite.
    Hahn (2020), Lemma 5: a per-bit sensitivity in O(1/n) has ``b <= -1``.

    Raises ConfigError for fewer than two points, unequal lengths, a value or length that is not positive
    and finite, or lengths that are all equal (no slope).
    """
    from scipy import stats

    n_arr = np.asarray(ns, dtype=np.float64)
    v_arr = np.asarray(values, dtype=np.float64)
    if n_arr.ndim != 1 or n_arr.shape != v_arr.shape or len(n_arr) < 2:
        raise ConfigError(f"loglog_slope needs two or more (n, value) pairs of equal length (got {n_arr.shape}, "
                          f"{v_arr.shape})")
    if not (np.all(np.isfinite(n_arr)) and np.all(n_arr > 0) and np.all(np.isfinite(v_arr)) and np.all(v_arr > 0)):
        raise ConfigError("loglog_slope needs positive finite lengths and values (log of 0 is undefined)")
    if np.all(n_arr == n_arr[0]):
        raise ConfigError("loglog_slope needs at least two different lengths")
    x, y = np.log(n_arr), np.log(v_arr)
    X = np.stack([np.ones_like(x), x], 1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    b = float(coef[1])
    if len(x) < 3:
        return Slope(b, -math.inf, math.inf, float(coef[0]))
    resid = y - X @ coef
    s2 = float(resid @ resid) / (len(x) - 2)
    se = math.sqrt(s2 / float(((x - x.mean()) ** 2).sum()))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 2)) * se
    return Slope(b, b - half, b + half, float(coef[0]))


def _flips(n: int, samples: int, positions: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Random strings and, for each, copies with one of ``positions`` random bits flipped."""
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (samples, n), generator=g)
    k = min(positions, n)
    pos = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(samples)])  # [samples, k]
    flipped = bits.repeat_interleave(k, 0)
    rows, cols = torch.arange(samples * k), pos.reshape(-1)
    flipped[rows, cols] = 1 - flipped[rows, cols]
    return bits, flipped, k


@torch.no_grad()
def per_bit_sensitivity(output: OutputFn, n: int, samples: int, positions: int, seed: int) -> float:
    """Per-bit sensitivity (Hahn 2020, section 5 and Lemma 5): the mean ``|output(x) - output(x with bit i
    flipped)|`` (the output's unit, e.g. nats of logit gap) over ``samples`` uniformly random strings ``x`` of
    ``n`` bits and, for each, ``positions`` distinct random bits ``i`` (all ``n`` when ``positions >= n``),
    drawn from ``seed``.  ``output``: bits ``[B, n]`` (int64 0/1) -> ``[B]``."""
    bits, flipped, k = _flips(n, samples, positions, seed)
    delta = (output(flipped) - output(bits).repeat_interleave(k, 0)).abs()
    return float(delta.double().mean())


@torch.no_grad()
def average_sensitivity(decide: OutputFn, n: int, samples: int, seed: int, max_positions: int = 256) -> float:
    """Average sensitivity (Hahn 2020, section 5): the expected number of positions whose flip changes the
    decision, over ``samples`` uniformly random strings of ``n`` bits drawn from ``seed`` (decisive bits, in
    [0, n]; PARITY's is n).  With ``n > max_positions`` it is estimated from ``max_positions`` distinct random
    positions per string and scaled to n.  ``decide``: bits ``[B, n]`` (int64 0/1) -> decisions ``[B]``."""
    bits, flipped, k = _flips(n, samples, max_positions, seed)
    changed = (decide(flipped) != decide(bits).repeat_interleave(k, 0)).double().view(samples, k)
    return float(changed.mean(1).mean() * n)
def construction_curves(model, kind: str, ns: list[int], samples: int, positions: int, seed: int, *,
                        acc_samples: int | None = None, per_bit: bool = True, average: bool = True
                        ) -> dict[str, list[float]]:
    """A hand-set construction (:mod:`theorylab.constructions.chiang`, ``kind`` ``parity`` or ``first``)
    measured at each input length ``n`` in ``ns`` on random strings drawn from ``seed``:
    ``{"ns", "ce" (cross-entropy, bits per string), "acc" (fraction), "sens" (per-bit sensitivity of the
    logit gap, nats; ``samples`` strings x ``positions`` flips), "avg_sens" (average sensitivity of the
    decision, decisive bits)}``; ``acc_samples`` strings for accuracy and cross-entropy (default
    ``samples``).  Hahn (2020), Lemma 5 and section 5."""
    from theorylab.constructions.chiang import decision, evaluate, logit_gap

    out: dict[str, list] = {"ns": list(ns), "ce": [], "acc": [], "sens": [], "avg_sens": []}
    for n in ns:
        r = evaluate(model, kind, n, acc_samples or samples, seed=seed * 7919 + n)
        out["ce"].append(r["cross_entropy_bits"])
        out["acc"].append(r["accuracy"])
        if per_bit:
            out["sens"].append(per_bit_sensitivity(lambda b: logit_gap(model, kind, b), n, samples, positions,
                                                   seed * 104729 + n))
        if average:
            out["avg_sens"].append(average_sensitivity(lambda b: decision(model, kind, b), n, max(2, samples // 4),
                                                       seed * 31 + n, max_positions=positions * 4))
    return out


def sensitivity_slope(curve: dict[str, list[float]]) -> float:
    """The log-log slope of per-bit sensitivity against n of a :func:`construction_curves` result
    (dimensionless; -1 is Hahn's O(1/n), Hahn 2020, Lemma 5).  NaN when a sensitivity is zero or not
    finite: its log is undefined, so the curve has no log-log slope.  Raises ConfigError as
    :func:`loglog_slope` for bad lengths."""
    sens = np.asarray(curve["sens"], dtype=np.float64)
    if not (np.all(np.isfinite(sens)) and np.all(sens > 0)):
        return float("nan")
    return loglog_slope(curve["ns"], sens).slope


