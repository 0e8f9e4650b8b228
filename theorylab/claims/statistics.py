"""How a claim's rule turns per-seed measurements into a verdict: premises first, then criteria,
each judged with the statistic that fits its outcome.

**Premises** (:class:`Premise`) are checked seed by seed before any criterion: the model fitted its
training data, it converged, the phenomenon under study happened.  A premise that fails in any seed
makes the verdict ``inconclusive``, naming the premise and the failing values; a failed premise can
never yield ``supported`` or ``refuted``.

**Criteria** (:class:`Criterion`) declare their statistic:

* ``mean``: the mean over seeds with a Student-t 95% interval; supported when the whole interval
  satisfies the threshold, refuted when the whole interval violates it, inconclusive otherwise;
* ``bootstrap``: the same with a percentile-bootstrap 95% interval of the mean (10,000 resamples,
  a fixed generator, so the same values give the same interval);
* ``log_mean``: for ratios, the mean of log10 of the values with a t interval, judged against
  log10 of the threshold (reported as a geometric mean);
* ``count``: a per-seed yes/no outcome (the seed's value satisfies the threshold) judged with an
  exact rule, "at least k of n seeds" with ``k = ceil(at_least * n)``: supported when at least k
  seeds satisfy it, refuted otherwise; the Clopper-Pearson 95% interval of the rate is reported;
* ``every``: ``count`` with ``at_least = 1`` (every seed);
* ``max`` / ``min``: the largest / smallest value over seeds against the threshold, as papers that
  report the best run judge (Delétang et al. 2023 report the maximum over seeds).

**Tiers**: a proxy tier (one that does not meet the paper's stated conditions) cannot refute: where a
proxy tier would refute, the verdict is ``inconclusive`` ("absent at proxy scale; the faithful tier
decides").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Verdict = Literal["supported", "refuted", "inconclusive"]
Op = Literal[">=", "<=", ">", "<"]
Statistic = Literal["mean", "bootstrap", "log_mean", "count", "every", "max", "min"]
STATISTICS: tuple[str, ...] = ("mean", "bootstrap", "log_mean", "count", "every", "max", "min")
BOOTSTRAP_RESAMPLES = 10_000


def satisfies(value: float, op: str, threshold: float) -> bool:
    """``value op threshold``; a value that is not finite satisfies nothing."""
    if not math.isfinite(value):
        return False
    return {">=": value >= threshold, "<=": value <= threshold, ">": value > threshold,
            "<": value < threshold}[op]


# --------------------------------------------------------------------------- summaries


@dataclass
class Stat:
    """A quantity over seeds: values, mean, sd and a 95% interval for the mean."""

    name: str
    values: list[float]
    mean: float
    sd: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def fmt(self, digits: int = 4) -> str:
        if self.n <= 1:
            return f"{self.mean:.{digits}g} (1 seed)"
        return f"{self.mean:.{digits}g} ± {self.sd:.{digits}g} [95% CI {self.lo:.{digits}g}, {self.hi:.{digits}g}]"


def summarize(name: str, values: list[float], level: float = 0.95) -> Stat:
    """Mean, sample sd and Student-t interval for the mean (infinite with one seed unless all seeds
    agree exactly, as data-free constructions do)."""
    from scipy import stats

    v = np.asarray([float(x) for x in values], dtype=np.float64)
    n = len(v)
    if n == 0:
        return Stat(name, [], math.nan, math.nan, -math.inf, math.inf, 0)
    mean = float(v.mean())
    if not np.all(np.isfinite(v)):
        return Stat(name, v.tolist(), mean, math.nan, -math.inf, math.inf, n)
    if np.all(v == v[0]):  # identical seeds: exactly that value, no rounding noise in mean or sd
        mean = float(v[0])
    sd = float(v.std(ddof=1)) if n > 1 and not np.all(v == v[0]) else 0.0
    if n == 1:
        return Stat(name, v.tolist(), mean, math.nan, -math.inf, math.inf, 1)
    if sd == 0.0:
        return Stat(name, v.tolist(), mean, 0.0, mean, mean, n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Stat(name, v.tolist(), mean, sd, mean - half, mean + half, n)


def bootstrap_interval(values: list[float], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES
                       ) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean (a fixed generator: the same values give the same
    interval); (-inf, inf) with fewer than two finite values or any non-finite one."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2 or not np.all(np.isfinite(v)):
        return -math.inf, math.inf
    rng = np.random.default_rng(0xB007)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial rate from k successes in n trials."""
    from scipy.stats import beta

    if n == 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


# --------------------------------------------------------------------------- premises


@dataclass(frozen=True)
class Premise:
    """A condition every seed must meet before a criterion may be judged: ``quantity op bound`` per seed.

    ``name`` says what it means ("the model fitted its training data"), ``why`` the reason for the bound.
    """

    name: str
    quantity: str
    op: Op
    bound: float
    why: str = ""
    over: Literal["every", "best"] = "every"

    def describe(self) -> str:
        s = f"{self.name}: {self.quantity} {self.op} {self.bound:g}" + (" (best seed)" if self.over == "best" else "")
        return f"{s} ({self.why})" if self.why else s

    def check(self, per_seed: dict[int, dict[str, float]]) -> dict[str, Any]:
        """``{"name", "quantity", "op", "bound", "why", "over", "values" {seed: value}, "failed" [seeds], "met"}``.

        ``over="every"``: every seed must meet it (``failed`` lists those that do not); ``over="best"``: one seed
        suffices, for a positive control the paper judges by its best seed (Delétang et al. 2023 report the
        maximum over seeds); ``failed`` then lists every seed when none meets it."""
        values = {s: float(v.get(self.quantity, math.nan)) for s, v in per_seed.items()}
        failed = [s for s, x in values.items() if not satisfies(x, self.op, self.bound)]
        if self.over == "best" and len(failed) < len(values):
            failed = []
        return {"name": self.name, "quantity": self.quantity, "op": self.op, "bound": self.bound, "why": self.why,
                "over": self.over, "values": values, "failed": failed, "met": not failed and bool(values)}


def fitted(quantity: str, bound: float, why: str, name: str = "the model fitted its training data") -> Premise:
    """Premise: a training-set fit quantity (accuracy at the training lengths, ...) reaches ``bound``."""
    return Premise(name, quantity, ">=", bound, why)


def converged(quantity: str, bound: float, why: str, name: str = "training converged") -> Premise:
    """Premise: the change of a loss over the last stretch of training (see
    :func:`theorylab.measures.phases.tail_change`) stays at or below ``bound``."""
    return Premise(name, quantity, "<=", bound, why)


def happened(quantity: str, op: Op, bound: float, why: str, name: str,
             over: Literal["every", "best"] = "every") -> Premise:
    """Premise: the phenomenon under study happened (e.g. a two-layer model formed its induction head);
    ``over="best"`` for a positive control judged by its best seed."""
    return Premise(name, quantity, op, bound, why, over)


# --------------------------------------------------------------------------- criteria


@dataclass(frozen=True)
class Criterion:
    """``quantity op threshold``, judged over seeds with the statistic ``stat`` (see the module docstring).

    ``at_least`` is the fraction of seeds that must satisfy it for ``stat="count"`` (``k = ceil(at_least
    * n)``).  ``why`` gives the reason for the threshold, shown in the report.
    """

    quantity: str
    op: Op
    threshold: float
    why: str = ""
    stat: Statistic = "mean"
    at_least: float | None = None

    def __post_init__(self) -> None:
        if self.stat not in STATISTICS:
            raise ValueError(f"criterion {self.quantity}: stat must be one of {', '.join(STATISTICS)}")
        if self.stat == "count" and not (self.at_least is not None and 0 < self.at_least <= 1):
            raise ValueError(f"criterion {self.quantity}: stat='count' needs at_least in (0, 1]")
        if self.stat == "log_mean" and not self.threshold > 0:
            raise ValueError(f"criterion {self.quantity}: stat='log_mean' needs a positive threshold")

    def statistic(self) -> str:
        """The statistic in words, as the report shows it."""
        return {"mean": "mean over seeds, Student-t 95% interval",
                "bootstrap": f"mean over seeds, percentile-bootstrap 95% interval ({BOOTSTRAP_RESAMPLES} resamples)",
                "log_mean": "geometric mean over seeds (t interval of log10)",
                "count": f"at least {self.at_least:.0%} of seeds (exact count; Clopper-Pearson 95% interval)"
                if self.at_least is not None else "count",
                "every": "every seed",
                "max": "maximum over seeds", "min": "minimum over seeds"}[self.stat]

    def describe(self) -> str:
        s = f"{self.quantity} {self.op} {self.threshold:g} [{self.statistic()}]"
        return f"{s} ({self.why})" if self.why else s

    def judge(self, values: list[float]) -> dict[str, Any]:
        """``{"verdict", "reason", "statistic", "estimate", "lo", "hi", "k", "n"}`` for these per-seed values."""
        v = [float(x) for x in values]
        n = len(v)
        out: dict[str, Any] = {"quantity": self.quantity, "op": self.op, "threshold": self.threshold,
                               "why": self.why, "stat": self.stat, "statistic": self.statistic(), "n": n,
                               "estimate": math.nan, "lo": -math.inf, "hi": math.inf, "k": None}
        if n == 0:
            return {**out, "verdict": "inconclusive", "reason": f"{self.quantity}: not measured"}
        if not any(math.isfinite(x) for x in v):
            return {**out, "verdict": "inconclusive", "reason": f"{self.quantity}: no finite measurement"}
        if self.stat in ("count", "every"):
            frac = 1.0 if self.stat == "every" else float(self.at_least)
            need = math.ceil(frac * n - 1e-9)
            k = sum(satisfies(x, self.op, self.threshold) for x in v)
            lo, hi = clopper_pearson(k, n)
            verdict: Verdict = "supported" if k >= need else "refuted"
            return {**out, "estimate": k / n, "lo": lo, "hi": hi, "k": k, "verdict": verdict,
                    "reason": f"{self.quantity} {self.op} {self.threshold:g} in {k} of {n} seeds (needs {need}; "
                              f"rate 95% CI [{lo:.2f}, {hi:.2f}])"}
        if self.stat in ("max", "min"):
            finite = [x for x in v if math.isfinite(x)]
            ext = max(finite) if self.stat == "max" else min(finite)
            ok = satisfies(ext, self.op, self.threshold)
            return {**out, "estimate": ext, "lo": ext, "hi": ext, "verdict": "supported" if ok else "refuted",
                    "reason": f"{self.quantity}: {self.stat} over {n} seeds {ext:.4g} "
                              f"{'satisfies' if ok else 'violates'} {self.op} {self.threshold:g}"}
        threshold = self.threshold
        if self.stat == "log_mean":
            if any(not (x > 0) for x in v):
                return {**out, "verdict": "inconclusive",
                        "reason": f"{self.quantity}: a non-positive or missing ratio in some seed"}
            st = summarize(self.quantity, [math.log10(x) for x in v])
            threshold = math.log10(self.threshold)
            est, lo, hi = 10 ** st.mean, st.lo, st.hi
            shown = (10 ** lo if math.isfinite(lo) else 0.0, 10 ** hi if math.isfinite(hi) else math.inf)
        else:
            st = summarize(self.quantity, v)
            lo, hi = (st.lo, st.hi) if self.stat == "mean" else bootstrap_interval(v)
            est, shown = st.mean, (lo, hi)
        out.update(estimate=est, lo=shown[0], hi=shown[1])
        lo_ok, hi_ok = satisfies(lo, self.op, threshold), satisfies(hi, self.op, threshold)
        interval = f"[{shown[0]:.4g}, {shown[1]:.4g}]"
        if lo_ok and hi_ok:
            return {**out, "verdict": "supported",
                    "reason": f"{self.quantity}: 95% interval {interval} satisfies {self.op} {self.threshold:g}"}
        if not lo_ok and not hi_ok and math.isfinite(lo) and math.isfinite(hi):
            return {**out, "verdict": "refuted",
                    "reason": f"{self.quantity}: 95% interval {interval} violates {self.op} {self.threshold:g}"}
        return {**out, "verdict": "inconclusive",
                "reason": f"{self.quantity}: 95% interval {interval} straddles {self.threshold:g}; more seeds or a "
                          "larger tier would decide it"}


# --------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Rule:
    """Premises first (any failure: inconclusive), then every criterion: refuted if any criterion is refuted,
    supported if all are supported, inconclusive otherwise; a proxy tier cannot refute."""

    criteria: tuple[Criterion, ...]
    premises: tuple[Premise, ...] = ()
    note: str = ""

    def describe(self) -> str:
        s = " AND ".join(c.describe() for c in self.criteria)
        if self.premises:
            s = "premises: " + "; ".join(p.describe() for p in self.premises) + ". Criteria: " + s
        return f"{s}. {self.note}" if self.note else s

    def quantities(self) -> list[str]:
        return [c.quantity for c in self.criteria]

    def decide(self, per_seed: dict[int, dict[str, float]], faithful: bool = True) -> Decision:
        """The verdict for these per-seed measurements (``{seed: {quantity: value}}``)."""
        premises = [p.check(per_seed) for p in self.premises]
        judged = [c.judge([per_seed[s][c.quantity] for s in per_seed if c.quantity in per_seed[s]])
                  for c in self.criteria]
        reasons = [j["reason"] for j in judged]
        failed = [p for p in premises if not p["met"]]
        if failed:
            why = []
            for p in failed:
                vals = ", ".join(f"seed {s}: {p['values'][s]:.4g}" for s in p["failed"]) or "no seed measured"
                best = " in the best seed" if p.get("over") == "best" else ""
                why.append(f"premise not met: {p['name']} ({p['quantity']} {p['op']} {p['bound']:g}{best}; {vals})")
            return Decision("inconclusive", why + reasons, premises, judged)
        verdicts = [j["verdict"] for j in judged]
        if "refuted" in verdicts:
            if not faithful:
                return Decision("inconclusive", ["absent at proxy scale: this tier does not meet the paper's "
                                                 "conditions, so it cannot refute; the faithful tier decides"]
                                + reasons, premises, judged)
            return Decision("refuted", reasons, premises, judged)
        if verdicts and all(v == "supported" for v in verdicts):
            return Decision("supported", reasons, premises, judged)
        return Decision("inconclusive", reasons, premises, judged)


@dataclass
class Decision:
    verdict: Verdict
    reasons: list[str]
    premises: list[dict[str, Any]] = field(default_factory=list)
    criteria: list[dict[str, Any]] = field(default_factory=list)


def all_of(*criteria: Criterion, premises: tuple[Premise, ...] | list[Premise] = (), note: str = "") -> Rule:
    """A rule: every criterion must hold, after every premise."""
    return Rule(tuple(criteria), tuple(premises), note)


__all__ = ["Verdict", "Statistic", "STATISTICS", "Stat", "summarize", "bootstrap_interval", "clopper_pearson",
           "Premise", "fitted", "converged", "happened", "Criterion", "Rule", "Decision", "all_of", "satisfies"]
