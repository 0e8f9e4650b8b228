"""Phase boundaries of grokking (memorization, circuit formation, cleanup) from curves.

Nanda et al. (2023) split training into memorization (train loss falls, test loss
rises), circuit formation (restricted loss falls, excluded loss rises, test loss
stays high) and cleanup (test loss collapses, weight norm drops, Gini rises).  We
place the boundaries with three rules on the evaluation curves; each boundary is
returned with the rule that found it.

Let ``L(t)`` be the test loss, ``t_mem`` the end of memorization, ``L_hi`` the largest
test loss at or after ``t_mem`` (its first occurrence is the peak) and ``L_lo`` the final test loss.  The progress of the
collapse is ``f(t) = (log L_hi - log L(t)) / (log L_hi - log L_lo)`` (0 before, 1 at
the end).

* **end of memorization** ``t_mem``: as the paper defines it (section 5.1: memorization ends when
  the excluded loss, which fell with the train loss, turns and starts to rise as the generalizing
  circuit forms), the step of the smallest excluded loss before the end of circuit formation,
  when the excluded-loss series is given (:func:`memorization_end`); otherwise, as a proxy, the
  first step at which train accuracy reaches ``train_acc`` (0.99).  The test-loss peak below is
  searched from the step train accuracy reaches 0.99 on, in both cases.
* **end of circuit formation** ``t_circ``: the first step after the test-loss peak from
  which on ``f >= start_frac`` (0.1) holds at every later evaluation: the test loss has
  begun its collapse for good.
* **end of cleanup** ``t_clean``: the first step from which on ``f >= end_frac`` (0.9).

Evaluations whose test loss is NaN or infinite are skipped (they are no evaluation of the loss, as
in :func:`first_crossing`); a test loss of exactly 0 (a float32 cross-entropy that underflowed) has
collapsed all the way (``f = inf``), and ``L_lo`` is then the last positive test loss.  A negative
test loss is an error.

"From which on" makes the rules robust to loss spikes: runs at these learning rates show
transient spikes and dips of the test loss during circuit formation (seen on the mainline,
p=113), and a first-crossing rule fired on a dip long before the collapse.

A boundary that is never reached is ``None`` (for example, no weight decay: no
collapse).  The rules are scale-free (log losses, fractions), so they apply to any
modulus and budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theorylab.errors import TheoryLabError

__all__ = ["Boundary", "Phases", "detect_phases", "first_crossing", "interpolated_crossing", "memorization_end",
           "tail_change"]


@dataclass
class Boundary:
    """One phase boundary: the evaluated ``step`` where it lies (None if never reached) and the ``rule`` that
    placed it, in words."""

    step: int | None
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "rule": self.rule}


@dataclass
class Phases:
    """The three boundaries of :func:`detect_phases`, and notes on why any is missing."""

    memorization_end: Boundary
    circuit_formation_end: Boundary
    cleanup_end: Boundary
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"memorization_end": self.memorization_end.to_dict(),
                "circuit_formation_end": self.circuit_formation_end.to_dict(),
                "cleanup_end": self.cleanup_end.to_dict(), "notes": list(self.notes)}

    @property
    def steps(self) -> tuple[int | None, int | None, int | None]:
        return (self.memorization_end.step, self.circuit_formation_end.step, self.cleanup_end.step)

    @property
    def in_order(self) -> bool:
        """All three boundaries found and strictly increasing."""
        a, b, c = self.steps
        return a is not None and b is not None and c is not None and a < b < c


def first_crossing(steps, values, threshold: float, above: bool = True, start: int = 0) -> int | None:
    """The first step (at index >= ``start``) whose value is >= (or <=, ``above=False``) ``threshold``; values
    that are not finite are skipped; None if there is none.  ``steps`` and ``values``: equal-length sequences."""
    for i in range(start, len(steps)):
        v = values[i]
        if math.isfinite(v) and ((v >= threshold) if above else (v <= threshold)):
            return int(steps[i])
    return None


def interpolated_crossing(x, y, level: float, log_x: bool = False) -> float:
    """The first ``x`` at which ``y`` reaches ``level`` (``>=``), linearly interpolated between the two points
    around the crossing (in ``log10 x`` with ``log_x``, for a scale axis such as parameters); ``x[0]`` when
    ``y`` starts there, nan when it never does.  ``x``, ``y``: [n] in increasing ``x``."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    above = np.nonzero(ya >= level)[0]
    if above.size == 0:
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(xa[0])
    u = np.log10(xa[i - 1: i + 1]) if log_x else xa[i - 1: i + 1]
    t = float(u[0] + (level - ya[i - 1]) / (ya[i] - ya[i - 1]) * (u[1] - u[0]))
    return 10**t if log_x else t


def memorization_end(steps, excluded_loss, until: int | None = None) -> int | None:
    """The step where the excluded loss is smallest at or before ``until`` (all steps when None): where it
    stops falling with the train loss and starts rising as the Fourier circuit takes over (Nanda et al.
    2023, section 5.1, "memorization ... circuit formation").  ``steps`` and ``excluded_loss`` are the
    checkpoint series of :func:`theorylab.measures.fourier.measure_checkpoints`; None when no finite
    value lies in range."""
    s = np.asarray(steps, dtype=np.int64)
    v = np.asarray(excluded_loss, dtype=np.float64)
    if len(s) != len(v):
        raise TheoryLabError("memorization_end: steps and excluded_loss must have equal length")
    keep = np.isfinite(v) & ((s <= until) if until is not None else True)
    if not keep.any():
        return None
    i = np.flatnonzero(keep)[int(np.argmin(v[keep]))]
    return int(s[i])


def tail_change(steps, values, frac: float = 0.2, relative: bool = True) -> float:
    """Change of a loss over the last ``frac`` of training: ``|L(end) - L(t0)| / L(t0)`` (or the absolute
    ``|L(end) - L(t0)|`` with ``relative=False``), t0 the last evaluation at or before ``(1 - frac)`` of the
    final step (a convergence premise: "the loss change over the last 20% of steps below a declared bound").
    nan with fewer than two finite points."""
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    s, v = s[ok], v[ok]
    if len(s) < 2 or not 0 < frac < 1:
        return math.nan
    cut = s[-1] - frac * (s[-1] - s[0])
    i0 = int(np.flatnonzero(s <= cut)[-1])
    if i0 == len(s) - 1 or (relative and v[i0] == 0):
        return math.nan
    return float(abs(v[-1] - v[i0]) / (abs(v[i0]) if relative else 1.0))


def detect_phases(steps, train_acc, test_loss, *, train_acc_threshold: float = 0.99, start_frac: float = 0.1,
                  end_frac: float = 0.9, excluded: tuple[Any, Any] | None = None) -> Phases:
    """Phase boundaries of grokking (Nanda et al. 2023, section 5.2: memorization, circuit formation,
    cleanup) from the evaluation curves ``steps``, ``train_acc`` (fractions) and ``test_loss`` (nats), 1-D
    and of equal length, steps ascending; ``excluded = (checkpoint steps, excluded loss)`` places the end of
    memorization as the paper does (:func:`memorization_end`).  The rules, and how NaN and zero losses count,
    are in the module docstring.  Raises TheoryLabError for empty or unequal curves, steps that do not
    increase, a negative test loss or ``not 0 < start_frac < end_frac < 1``."""
    s = np.asarray(steps, dtype=np.int64)
    acc = np.asarray(train_acc, dtype=np.float64)
    tl = np.asarray(test_loss, dtype=np.float64)
    if not (len(s) == len(acc) == len(tl)) or len(s) == 0:
        raise TheoryLabError("detect_phases: steps, train_acc and test_loss must be non-empty and of equal length")
    if not 0 < start_frac < end_frac < 1:
        raise TheoryLabError("detect_phases: need 0 < start_frac < end_frac < 1")
    if np.any(np.diff(s) <= 0):
        raise TheoryLabError("detect_phases: steps must be strictly increasing")
    if bool((tl < 0).any()):
        raise TheoryLabError("detect_phases: a test loss is negative (cross-entropy is >= 0)")
    r_mem = f"first step with train accuracy >= {train_acc_threshold:g}"
    r_circ = (f"first step after the test-loss peak (at or after memorization) from which on log test loss stays "
              f"{start_frac:.0%} or more of the way down from the peak to its final value")
    r_clean = (f"first step from which on log test loss stays {end_frac:.0%} or more of the way down from the peak "
               "to its final value")
    notes: list[str] = []
    t_mem = first_crossing(s, acc, train_acc_threshold, above=True)
    if t_mem is None:
        notes.append("train accuracy never reached the threshold: no memorization boundary")
        return Phases(Boundary(None, r_mem), Boundary(None, r_circ), Boundary(None, r_clean), notes)
    i_mem = int(np.searchsorted(s, t_mem))
    defined = np.isfinite(tl[i_mem:])  # NaN / infinite: no evaluation of the loss, skipped
    tail, st = tl[i_mem:][defined], s[i_mem:][defined]
    positive = tail > 0
    if not positive.any():
        notes.append("no finite positive test loss after memorization")
        return Phases(Boundary(t_mem, r_mem), Boundary(None, r_circ), Boundary(None, r_clean), notes)
    logs = np.log(np.where(positive, tail, 1.0))
    i_peak = int(np.argmax(np.where(positive, logs, -np.inf)))
    hi, lo = logs[i_peak], logs[np.flatnonzero(positive)[-1]]
    if not hi - lo > math.log(10.0):
        notes.append(f"test loss fell by less than 10x after its peak ({math.exp(hi - lo):.3g}x): no collapse")
        return Phases(Boundary(t_mem, r_mem), Boundary(None, r_circ), Boundary(None, r_clean), notes)
    # a loss of exactly 0 (a float32 cross-entropy that underflowed) has collapsed all the way
    frac = np.where(positive, (hi - logs) / (hi - lo), np.inf)
    stays = np.minimum.accumulate(frac[::-1])[::-1]  # stays[i] = min(frac[i:]), inf only after the last positive

    def from_which_on(level: float) -> int | None:
        hit = np.flatnonzero(stays[i_peak:] >= level)
        return int(st[i_peak + hit[0]]) if len(hit) else None

    t_circ, t_clean = from_which_on(start_frac), from_which_on(end_frac)
    if excluded is not None:
        t_mem = memorization_end(excluded[0], excluded[1], until=t_circ)
        r_mem = "the step of the smallest excluded loss before the end of circuit formation (Nanda et al. 2023, §5.1)"
    return Phases(Boundary(t_mem, r_mem), Boundary(t_circ, r_circ), Boundary(t_clean, r_clean), notes)
