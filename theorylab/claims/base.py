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
measures every seed, checks the rule's premises seed by seed and judges each criterion with
its declared statistic (:mod:`theorylab.claims.statistics`), never on one seed alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ConfigDict, Field

from theorylab.claims.citations import Citation
from theorylab.claims.statistics import (  # noqa: F401  (the claim API in one import)
    Criterion,
    Premise,
    Rule,
    Stat,
    Verdict,
    all_of,
    converged,
    fitted,
    happened,
    summarize,
)
from theorylab.config import Config

if TYPE_CHECKING:  # pragma: no cover
    from theorylab.runs.config import RunConfig
    from theorylab.runs.view import RunView

TIERS = ("smoke", "quick", "full")


# --------------------------------------------------------------------------- tiers


class Tier(Config):
    """The sizes of one tier of a claim.  Each claim family subclasses it with its own fields, so a
    misspelt or unknown key is an error when the claim module is imported.

    Every tier also says whether it is ``faithful``: whether it meets the conditions the paper states
    (model, data, budget); a proxy tier (``faithful=False``) can support a claim but never refute it.
    When a proxy tier changes a quantity the claim's statement names (a train fraction, a length),
    ``statement`` gives the statement as that tier tests it.

    A tier reads like a mapping of its family's own fields (``p["steps"]``, ``**p`` into a config
    builder), so that the sizes pass straight to the functions that build a claim's runs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    faithful: bool = Field(False, description="meets the paper's stated conditions (may refute)")
    statement: str | None = Field(None, description="the statement as this tier tests it, when it differs")

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
    # how the lab's setup departs from the paper's, {aspect: "ours vs theirs, and why"} (shown in the report)
    deviations: ClassVar[dict[str, str]] = {}

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
    decision: Any = None  # the rule's Decision (premises, criteria with their statistics, verdict)

    def values(self, name: str) -> list[float]:
        return [self.per_seed[s][name] for s in self.seeds if name in self.per_seed[s]]


MeasureFn = Callable[..., dict[str, float]]
