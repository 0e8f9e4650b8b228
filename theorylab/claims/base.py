"""Claims: statements from the literature with a pre-declared verdict rule.

A claim declares, in code and before it runs:

* ``id`` (``author2023.short_name``), ``citation``, ``statement`` (our own words);
* ``experiment(tier, seed)`` - the named runs (RunConfigs) one seed needs; data-free
  claims (constructions) return ``{}``;
* ``measure(tier, seed, runs)`` - per-seed quantities, a pure function of the stored
  runs (``RunView``) and, for data-free claims, of the seed alone;
* ``rule`` - a :class:`Rule` over those quantities with visible thresholds;
* ``figures(evidence)`` - matplotlib figures (Agg), returned, saved by the engine;
* ``tiers`` - the sizes per tier (``smoke`` for tests, ``quick`` for a CPU, ``full``
  for the paper's scale) and ``seeds`` - how many seeds each tier runs by default.

The engine (:mod:`theorylab.claims.engine`) executes the runs through a sweep backend,
measures every seed, summarises each quantity as mean, sd and a 95% interval, and
applies the rule to the intervals, never to one seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import ConfigDict

from theorylab.claims.citations import Citation
from theorylab.config import Config

if TYPE_CHECKING:  # pragma: no cover
    from theorylab.runs.config import RunConfig
    from theorylab.runs.view import RunView

Verdict = Literal["supported", "refuted", "inconclusive"]
TIERS = ("smoke", "quick", "full")


# --------------------------------------------------------------------------- statistics


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
    """Mean, sample sd and Student-t interval for the mean (infinite with one seed
    unless all seeds agree exactly, as data-free constructions do)."""
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


# --------------------------------------------------------------------------- verdict rules


@dataclass(frozen=True)
class Criterion:
    """``quantity op threshold`` judged on the 95% interval of the quantity's mean.

    supported: the whole interval satisfies it; refuted: the whole interval violates
    it; inconclusive: the interval straddles the threshold.
    """

    quantity: str
    op: Literal[">=", "<=", ">", "<"]
    threshold: float
    why: str = ""  # the reason for this threshold, shown in the report

    def describe(self) -> str:
        s = f"{self.quantity} {self.op} {self.threshold:g}"
        return f"{s} ({self.why})" if self.why else s

    def judge(self, st: Stat) -> tuple[Verdict, str]:
        above = self.op in (">=", ">")
        strict = self.op in (">", "<")

        def ok(x: float) -> bool:
            if above:
                return x > self.threshold if strict else x >= self.threshold
            return x < self.threshold if strict else x <= self.threshold

        if st.n == 0 or math.isnan(st.mean):
            return "inconclusive", f"{self.quantity}: no finite measurement"
        lo_ok, hi_ok = ok(st.lo), ok(st.hi)
        if lo_ok and hi_ok:
            return "supported", f"{self.quantity}: interval [{st.lo:.4g}, {st.hi:.4g}] satisfies {self.op} {self.threshold:g}"
        if not lo_ok and not hi_ok and math.isfinite(st.lo) and math.isfinite(st.hi):
            return "refuted", f"{self.quantity}: interval [{st.lo:.4g}, {st.hi:.4g}] violates {self.op} {self.threshold:g}"
        return "inconclusive", (f"{self.quantity}: interval [{st.lo:.4g}, {st.hi:.4g}] straddles {self.threshold:g}; "
                                "more seeds or a larger tier would decide it")


@dataclass(frozen=True)
class Rule:
    """All criteria must hold.  Refuted if any criterion is refuted; supported if all
    are supported; inconclusive otherwise."""

    criteria: tuple[Criterion, ...]
    note: str = ""

    def describe(self) -> str:
        s = " AND ".join(c.describe() for c in self.criteria)
        return f"{s}. {self.note}" if self.note else s

    def quantities(self) -> list[str]:
        return [c.quantity for c in self.criteria]

    def decide(self, stats: dict[str, Stat]) -> tuple[Verdict, list[str]]:
        verdicts, reasons = [], []
        for c in self.criteria:
            st = stats.get(c.quantity)
            if st is None:
                verdicts.append("inconclusive")
                reasons.append(f"{c.quantity}: not measured")
                continue
            v, why = c.judge(st)
            verdicts.append(v)
            reasons.append(why)
        if "refuted" in verdicts:
            return "refuted", reasons
        if all(v == "supported" for v in verdicts):
            return "supported", reasons
        return "inconclusive", reasons


def all_of(*criteria: Criterion, note: str = "") -> Rule:
    return Rule(tuple(criteria), note)


# --------------------------------------------------------------------------- tiers


class Tier(Config):
    """The sizes of one tier of a claim.  Each claim family subclasses it with its own fields, so a
    misspelt or unknown key is an error when the claim module is imported.

    A tier reads like a mapping of its family's own fields (``p["steps"]``, ``**p`` into a config
    builder), so that the sizes pass straight to the functions that build a claim's runs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def keys(self) -> list[str]:
        """The family's own fields (those the subclass declares)."""
        return [k for k in type(self).model_fields if k not in Tier.model_fields]

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def items(self) -> list[tuple[str, Any]]:
        return [(k, self[k]) for k in self.keys()]


def tiers_of(cls: type[Tier], sizes: dict[str, dict[str, Any]]) -> dict[str, Tier]:
    """``{tier: cls(**sizes[tier])}``: every tier's sizes checked by the family's :class:`Tier` model (one
    ConfigError line naming the tier and the field when one is wrong)."""
    from theorylab.config import validate

    return {name: validate(cls, d, prefix=f"tier {name}: ") for name, d in sizes.items()}


# --------------------------------------------------------------------------- the claim


class Claim:
    """Subclass, set the class attributes, implement ``experiment`` and ``measure``,
    and decorate with :func:`theorylab.claims.register_claim`."""

    id: ClassVar[str]
    title: ClassVar[str]
    citation: ClassVar[Citation]
    statement: ClassVar[str]
    rule: ClassVar[Rule]
    tiers: ClassVar[dict[str, Tier]] = {}
    seeds: ClassVar[dict[str, int]] = {"smoke": 2, "quick": 3, "full": 5}
    # what would settle an inconclusive verdict, in words (shown in the report)
    decides: ClassVar[str] = "more seeds, or the full tier"
    # quantities shown in the report beyond those the rule uses
    extra_quantities: ClassVar[tuple[str, ...]] = ()

    def params(self, tier: str) -> Tier:
        if tier not in self.tiers:
            from theorylab.errors import ConfigError

            raise ConfigError(f"tier: {tier!r} is not a tier of {self.id}; allowed: {', '.join(self.tiers)}")
        return self.tiers[tier]

    def experiment(self, tier: str, seed: int) -> dict[str, RunConfig]:
        """Named runs one seed needs ({} for data-free claims)."""
        return {}

    def measure(self, tier: str, seed: int, runs: dict[str, RunView]) -> dict[str, Any]:
        """Per-seed quantities.  Numbers become statistics over seeds; any other value
        (a list, a dict of curves) is kept in ``Evidence.series[seed]`` for figures."""
        raise NotImplementedError

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        """name -> matplotlib Figure (the engine saves and closes them)."""
        return {}

    def tables(self, evidence: Evidence) -> dict[str, dict[str, Any]]:
        """name -> ``{"columns": [...], "rows": [[...], ...], "note": "..."}``: tables shown in the
        report beside the figures (e.g. measured scores beside published ones)."""
        return {}


@dataclass
class Evidence:
    """What a check measured: per-seed values and runs, and their summaries."""

    claim_id: str
    tier: str
    seeds: list[int]
    per_seed: dict[int, dict[str, float]]
    runs: dict[int, dict[str, RunView]] = field(default_factory=dict)
    stats: dict[str, Stat] = field(default_factory=dict)
    # non-numeric values a claim's measure() returned (curves, tables), per seed, for figures
    series: dict[int, dict[str, Any]] = field(default_factory=dict)

    def values(self, name: str) -> list[float]:
        return [self.per_seed[s][name] for s in self.seeds if name in self.per_seed[s]]


MeasureFn = Callable[..., dict[str, float]]
