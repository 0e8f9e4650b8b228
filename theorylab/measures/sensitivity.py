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
    slope: float
    lo: float
    hi: float
    intercept: float

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def loglog_slope(ns, values, level: float = 0.95) -> Slope:
    """OLS fit of log(values) = a + b log(ns); b with a Student-t interval (exact fit: zero width)."""
    from scipy import stats

    x = np.log(np.asarray(ns, dtype=np.float64))
    y = np.log(np.asarray(values, dtype=np.float64))
    if len(x) < 2 or not np.all(np.isfinite(y)):
        raise ConfigError("loglog_slope needs at least two positive finite values")
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
    """Mean |output(x) - output(x with one bit flipped)| over random x and random positions."""
    bits, flipped, k = _flips(n, samples, positions, seed)
    delta = (output(flipped) - output(bits).repeat_interleave(k, 0)).abs()
    return float(delta.double().mean())


@torch.no_grad()
def average_sensitivity(decide: OutputFn, n: int, samples: int, seed: int, max_positions: int = 256) -> float:
    """Expected number of positions whose flip changes the decision (estimated from
    ``max_positions`` positions per string when n is larger, then scaled to n)."""
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
    (-1 is Hahn's O(1/n))."""
    return loglog_slope(curve["ns"], [max(v, 1e-300) for v in curve["sens"]]).slope


