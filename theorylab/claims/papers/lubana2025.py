"""Lubana, Kawaguchi, Dick and Tanaka (ICLR 2025), "A Percolation Model of Emergence", on our own generator of
their formal language (:mod:`theorylab.tasks.percolation`).

A small GPT trained on sentences of a context-sensitive language over entities and their properties learns,
in order, the grammar, then the type constraints (which properties and verbs a subject's class takes), then
entity-specific knowledge; the type constraints are acquired suddenly and together, and a bipartite-graph
percolation model says how the point of emergence moves with the data's structure: with parts of sizes |E|
(entities) and |K| (property values) the giant component appears at edge density 1/sqrt(|E| |K|), so at
fixed |E| the emergence point should scale like |K|^(1/2) (paper §4-5; SETUPS §2.3).

Three claims read one sweep: for each seed, runs at three numbers of descriptive properties (|K| = values
that some entity admits), everything else fixed, evaluated every ``eval_every`` steps (grammaticality of free
generations parsed with NLTK's Viterbi parser, the type-constraint accuracies of those generations, the
entity-property graph the model has learned):

* ``lubana2025.grammar_before_types``: grammar reaches the midpoint of its rise before either type constraint
  does, at every |K|.
* ``lubana2025.type_constraints_together``: the descriptive and the relative type constraints reach the
  midpoints of their rises at about the same step.
* ``lubana2025.emergence_scales_sqrt_k``: the step at which the descriptive type constraint emerges grows
  with |K| with a log-log slope compatible with 1/2.

A transition step is where a metric, smoothed over three evaluations, first reaches halfway between its value
at step 0 and its highest value (:func:`transition_step`).
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Evidence, Tier, all_of, happened, tiers_of
from theorylab.claims.citations import LUBANA2025 as LUBANA


class PercolationTier(Tier):
    """One seed's sweep: runs at ``properties`` descriptive properties (the |K| axis) with ``n_entities`` per
    class, ``n_relative`` relative properties and ``n_classes`` classes; a GPT of ``n_layers`` x ``d_model``
    with ``n_heads`` heads trained ``steps`` steps of ``batch_size`` rows (AdamW at ``lr``, betas (0.9, 0.95),
    weight decay 1e-4, clip 1, as the official config), evaluated every ``eval_every`` steps on
    ``n_generations`` free generations."""

    properties: tuple[int, ...]
    n_entities: int
    n_relative: int
    n_classes: int = 10
    n_layers: int = 2
    n_heads: int = 2
    d_model: int
    steps: int
    batch_size: int
    lr: float
    eval_every: int
    n_generations: int = 128
    bootstrap: int = 1000


# Quick: |E| = 180 entities and |K| = 600, 1,800 and 4,200 values (30, 60 and 120 descriptive properties), a
# 2-layer d_model 64 model, 2,000 steps of 64 rows.  In a one-seed pilot at 30 properties, lr 3e-3, grammar
# rose by step 200 and both type constraints jumped near step 450 (docs/emergence.md).  The full tier is the
# paper's base system (|E| = 900, |K| up to 17,800 at 460 properties, 2L/2H/128, batch 128, lr 1e-3) over the
# four property counts SETUPS §2.4 names, on a GPU: faithful, it may refute.
TIERS: dict[str, Tier] = tiers_of(PercolationTier, {
    "smoke": {"properties": (30, 45, 60), "n_entities": 5, "n_relative": 5, "d_model": 16, "steps": 40,
              "batch_size": 8, "lr": 3e-3, "eval_every": 10, "n_generations": 8, "bootstrap": 50},
    "quick": {"properties": (30, 60, 120), "n_entities": 20, "n_relative": 20, "d_model": 64, "steps": 2000,
              "batch_size": 64, "lr": 3e-3, "eval_every": 50},
    "full": {"properties": (110, 160, 260, 460), "n_entities": 100, "n_relative": 100, "d_model": 128,
             "steps": 100_000, "batch_size": 128, "lr": 1e-3, "eval_every": 500, "faithful": True},
})

SEEDS = {"smoke": 2, "quick": 3, "full": 3}

MIN_RISE = 0.3  # a metric whose smoothed curve rises by less than this never "jumped"
TOGETHER = 1.5  # "together": the two type constraints' transition steps within a factor 1.5 of each other
SLOPE_BAND = (0.25, 0.75)  # "compatible with 1/2": away from 0 (no dependence on |K|) and 1 (linear in |K|)


def run_config(tier: Tier, seed: int, properties: int):
    """One run of the sweep (validated RunConfig)."""
    from theorylab.config import validate
    from theorylab.runs import RunConfig

    t = tier
    return validate(RunConfig, {
        "task": {"name": "percolation", "n_classes": t["n_classes"], "n_descriptive_properties": properties,
                 "n_entities": t["n_entities"], "n_relative_properties": t["n_relative"],
                 "n_generations": t["n_generations"]},
        "model": {"n_layers": t["n_layers"], "d_model": t["d_model"], "n_heads": t["n_heads"], "act": "gelu",
                  "positional": "learned", "bias": False},
        "train": {"steps": t["steps"], "batch_size": t["batch_size"], "lr": t["lr"], "betas": [0.9, 0.95],
                  "weight_decay": 1e-4, "grad_clip": 1.0, "warmup_steps": min(200, max(1, t["steps"] // 20)),
                  "eval_every": t["eval_every"], "checkpoint_every": max(t["eval_every"], t["steps"] // 10)},
        "seed": seed,
        "tags": {"claim_setup": "lubana-percolation"},
    })


def smooth(values, window: int = 3) -> np.ndarray:
    """Centred running mean over ``window`` evaluations (shorter at the ends): [n] -> [n]."""
    v = np.asarray(values, dtype=np.float64)
    half = window // 2
    return np.array([np.nanmean(v[max(0, i - half): i + half + 1]) for i in range(v.size)])


def settled(values, at: float = 0.75) -> float:
    """How much of a metric's smoothed rise (from its first evaluation to its highest) was done at the
    fraction ``at`` of the evaluations: 1 when the curve had reached its top by then, near 0 when it was still
    to rise; nan for a curve that never rose."""
    s = smooth(values)
    if s.size < 2:
        return math.nan
    lo, hi = float(s[0]), float(np.nanmax(s))
    if not hi > lo:
        return math.nan
    return float((s[min(s.size - 1, int(at * (s.size - 1)))] - lo) / (hi - lo))


def transition_step(steps, values, min_rise: float = MIN_RISE) -> float:
    """The first step at which ``values`` (smoothed, :func:`smooth`) reach halfway between their value at the
    first evaluation and their highest value; nan when the rise is below ``min_rise`` (nothing emerged).
    ``steps``, ``values``: [n] over the evaluations."""
    if len(values) < 2:
        return math.nan
    s = smooth(values)
    lo, hi = float(s[0]), float(np.nanmax(s))
    if not hi - lo >= min_rise:
        return math.nan
    above = np.nonzero(s >= lo + 0.5 * (hi - lo))[0]
    return float(steps[int(above[0])]) if above.size else math.nan


METRICS = ("grammar", "type_desc", "type_rel", "learned_giant", "learned_edges", "reach_rank", "unscramble_token",
           "desc_admitted")


def rise(values) -> float:
    """How far a metric's smoothed curve (:func:`smooth`) climbs from its first evaluation to its highest."""
    s = smooth(values)
    return float(np.nanmax(s) - s[0]) if s.size else 0.0


def loglog_slope(x, y) -> float:
    """Least-squares slope of log10 y against log10 x over the points where y is a positive number; nan with
    fewer than two."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(ya) & (ya > 0)
    return float(np.polyfit(np.log10(xa[ok]), np.log10(ya[ok]), 1)[0]) if ok.sum() >= 2 else math.nan


@functools.lru_cache(maxsize=64)
def revealed_graph(task_json: str, seed: int, steps: int, batch_size: int, every: int) -> dict[str, Any]:
    """The data's own order parameter for one run (its task config as JSON, its seed and schedule): |K|, |E|,
    the revealed graph's giant fraction every ``every`` steps and the first step at which it reaches 1/2
    (:func:`~theorylab.tasks.percolation.revealed_graph_curve`).  Cached: the three claims read the same runs,
    and the replay of every training sentence is the measure's costly part."""
    from theorylab.tasks import build_task_config
    from theorylab.tasks.percolation import World, revealed_graph_curve

    cfg = build_task_config(json.loads(task_json))
    world = World.build(cfg, seed if cfg.data_seed is None else cfg.data_seed)
    rev = revealed_graph_curve(cfg, seed, steps, batch_size, every=every, world=world)
    crossed = np.nonzero(rev.giant >= 0.5)[0]
    return {"K": world.n_value_nodes, "E": world.n_entities,
            "t_revealed": float(rev.steps[crossed[0]]) if crossed.size else math.nan,
            "revealed": {"steps": rev.steps.tolist(), "giant": rev.giant.tolist()}}


def sweep_measures(tier: Tier, seed: int, runs: dict[str, Any]) -> dict[str, Any]:
    """Per-seed quantities of the sweep (see the module docstring), the curves of every run and the revealed
    graph's percolation step (the data's own order parameter, :func:`revealed_graph`)."""
    rows = []
    for P in tier["properties"]:
        v = runs.get(f"K{P}")
        if v is None or v.status != "finished":
            continue
        cfg = v.config
        steps = v.series("test", METRICS[0])[0]
        curves: dict[str, Any] = {"steps": [int(x) for x in steps], **{m: v.series("test", m)[1] for m in METRICS}}
        g = revealed_graph(cfg.task.model_dump_json(), seed, tier["steps"], tier["batch_size"], tier["eval_every"])
        st = curves["steps"]
        rows.append({
            "P": P, "K": g["K"], "E": g["E"], "curves": curves,
            "t_grammar": transition_step(st, curves["grammar"]),
            "t_desc": transition_step(st, curves["type_desc"]),
            "t_rel": transition_step(st, curves["type_rel"]),
            "grammar_max": float(np.nanmax(smooth(curves["grammar"]))) if st else math.nan,
            "desc_rise": rise(curves["type_desc"]),
            "rel_rise": rise(curves["type_rel"]),
            "settled": min(settled(curves["type_desc"]), settled(curves["type_rel"])) if st else math.nan,
            "t_revealed": g["t_revealed"], "revealed": g["revealed"],
        })
    out: dict[str, Any] = {"runs_finished": len(rows) / len(tier["properties"])}
    if not rows:
        return out
    order_ratio = [min(r["t_desc"], r["t_rel"]) / r["t_grammar"] for r in rows]
    together = [max(r["t_desc"] / r["t_rel"], r["t_rel"] / r["t_desc"]) for r in rows]
    K = [r["K"] for r in rows]
    t_desc = np.array([r["t_desc"] for r in rows])
    slope, slope_rel = loglog_slope(K, t_desc), loglog_slope(K, [r["t_rel"] for r in rows])
    out.update({
        "grammar_learned": float(min(r["grammar_max"] for r in rows)),
        "types_rose": float(min(min(r["desc_rise"], r["rel_rise"]) for r in rows)),
        "types_settled": float(min(r["settled"] for r in rows)),
        "types_after_grammar": float(np.min(order_ratio)),
        "types_apart": float(np.max(together)),
        "slope_desc": slope, "slope_rel": slope_rel,
        "transition_steps_measured": float(np.sum(np.isfinite(t_desc) & (t_desc > 0))),
        **{f"t_desc_P{r['P']}": r["t_desc"] for r in rows},
        **{f"t_grammar_P{r['P']}": r["t_grammar"] for r in rows},
        "t_revealed_max": float(max(r["t_revealed"] for r in rows)),
        "sweep": [{k: r[k] for k in ("P", "K", "E", "t_grammar", "t_desc", "t_rel", "t_revealed", "curves",
                                     "revealed")} for r in rows],
    })
    return out


_RAN = happened("runs_finished", ">=", 1.0, name="every |K| of the sweep trained its whole budget",
                why="a missing run leaves the comparison without one of its points")
_GRAMMAR = happened("grammar_learned", ">=", 0.5, name="the grammar was learned",
                    why="at least half of the free generations parse (smoothed maximum, at every |K|): a model "
                        "that never writes sentences has no type constraints to show")
_SETTLED = happened("types_settled", ">=", 0.8, name="the type constraints' rise finished within the budget",
                    why="at three quarters of the run both type-constraint accuracies had made at least 80% of their "
                        "rise, at every |K|: a curve still climbing at the end has a midpoint that depends on where "
                        "the budget cuts it")
_TYPES = happened("types_rose", ">=", MIN_RISE, name="the type constraints emerged",
                  why="both type-constraint accuracies rose by at least 0.3 (smoothed) at every |K|: without the "
                      "jump there is no transition step to compare")


class _Sweep(Claim):
    tiers = TIERS
    seeds = SEEDS
    citation = LUBANA
    decides = "more seeds, or the full tier (the paper's base system and four |K| values, on a GPU)"
    deviations = {
        "generator": "our own re-implementation of the official data-generating process (single-phrase sentences; "
                     "PII subjects uniform; see theorylab.tasks.percolation for the full list)",
        "scale (quick)": "|E| = 180 entities and |K| = 600..4,200 property values with a 2-layer d_model 64 model "
                         "for 2,000 steps of 64 rows, instead of |E| = 900, |K| = 17,800, d_model 128, 1e5 steps "
                         "of 128 rows",
        "evaluation": "128 free generations per evaluation (as the official evals); transition steps are the "
                      "first evaluation past the midpoint of a smoothed rise, at a resolution of eval_every steps",
    }

    def experiment(self, tier, seed):
        t = self.params(tier)
        return {f"K{P}": run_config(t, seed, P) for P in t["properties"]}

    def measure(self, tier, seed, runs):
        return sweep_measures(self.params(tier), seed, runs)

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        from theorylab.figures.emergence import accuracies_vs_steps, transition_vs_size

        seeds = [s for s in evidence.seeds if s in evidence.series and evidence.series[s].get("sweep")]
        if not seeds:
            return {}
        figs = {}
        sweep = evidence.series[seeds[0]]["sweep"]
        for r in (sweep[0], sweep[-1]):
            c = r["curves"]
            lines = {m.replace("_", " "): (c["steps"], c[m]) for m in
                     ("grammar", "type_desc", "type_rel", "learned_giant", "unscramble_token") if m in c}
            lines["revealed graph: giant fraction"] = (r["revealed"]["steps"], r["revealed"]["giant"])
            figs[f"accuracies_K{r['K']}"] = accuracies_vs_steps(
                lines, markers={"grammar midpoint": r["t_grammar"], "type_desc midpoint": r["t_desc"],
                                "revealed graph percolates": r["t_revealed"]},
                title=f"|E| = {r['E']}, |K| = {r['K']}, seed {seeds[0]} ({evidence.tier} tier)")
        points = {s: ([r["K"] for r in evidence.series[s]["sweep"]], [r["t_desc"] for r in evidence.series[s]["sweep"]])
                  for s in seeds}
        figs["emergence_step_vs_K"] = transition_vs_size(points, reference_slope=0.5, xlabel="|K| (property values)",
                                                         ylabel="type_desc transition step",
                                                         title="emergence of the descriptive type constraint")
        return figs

    def tables(self, evidence: Evidence) -> dict[str, dict[str, Any]]:
        rows = []
        for s in evidence.seeds:
            for r in evidence.series.get(s, {}).get("sweep", []) or []:
                rows.append([s, r["K"], r["E"], r["t_grammar"], r["t_desc"], r["t_rel"], r["t_revealed"]])
        return {"transitions": {"columns": ["seed", "|K|", "|E|", "grammar step", "type_desc step", "type_rel step",
                                            "revealed graph percolates (step)"], "rows": rows,
                                "note": "midpoint of each smoothed rise; nan: rose by less than 0.3"}}


@register_claim
class GrammarBeforeTypes(_Sweep):
    id = "lubana2025.grammar_before_types"
    title = "Grammar is learned before the type constraints"
    statement = ("A transformer trained on the formal language learns its grammar (free generations parse) "
                 "before it learns the type constraints (which properties and verbs a subject's class takes): the "
                 "grammar's rise reaches its midpoint earlier than either type constraint's, at every |K| (Lubana "
                 "et al. 2025, §4).")
    rule = all_of(
        Criterion("types_after_grammar", ">=", 1.5, stat="every",
                  why="the earlier type constraint reaches its midpoint at least 1.5 times as late as the grammar "
                      "does, at every |K| of the seed's sweep: 'before' by more than the evaluation spacing "
                      "(consecutive evaluations are at most 1.5 times apart after step 100 on the quick grid)"),
        premises=[_RAN, _GRAMMAR, _TYPES, _SETTLED],
    )
    extra_quantities = ("grammar_learned", "types_rose")


@register_claim
class TypeConstraintsTogether(_Sweep):
    id = "lubana2025.type_constraints_together"
    title = "The descriptive and relative type constraints emerge together"
    statement = ("The accuracies of the two type constraints (a descriptive value's property belongs to its "
                 "subject's class; a relative verb links the classes it is shared by) jump at about the same "
                 "step: Lubana et al.'s second criterion of emergence, simultaneous gains on several tasks (§3).")
    rule = all_of(
        Criterion("types_apart", "<=", TOGETHER, stat="every",
                  why="the later of the two midpoints at most 1.5 times the earlier one, at every |K|: the grammar "
                      "precedes them by a larger factor, and 1.5 is a few evaluations at the quick tier's spacing"),
        premises=[_RAN, _GRAMMAR, _TYPES, _SETTLED],
    )
    extra_quantities = ("types_after_grammar",)


@register_claim
class EmergenceScalesSqrtK(_Sweep):
    id = "lubana2025.emergence_scales_sqrt_k"
    title = "The emergence step of the type constraint grows like |K|^(1/2)"
    statement = ("At a fixed number of entities |E|, the training step at which the descriptive type constraint "
                 "emerges grows with the number of property values |K| as a power with exponent about 1/2, the "
                 "scaling of the bipartite percolation threshold 1/sqrt(|E| |K|) (Lubana et al. 2025, §5).")
    rule = all_of(
        Criterion("slope_desc", ">=", SLOPE_BAND[0], stat="bootstrap",
                  why="the log-log slope of the transition step against |K| (one fit per seed over the sweep's "
                      "|K| values; mean over seeds, bootstrap interval) is above 0.25: closer to 1/2 than to no "
                      "dependence on |K|"),
        Criterion("slope_desc", "<=", SLOPE_BAND[1], stat="bootstrap",
                  why="and below 0.75: closer to 1/2 than to a step linear in |K| (what learning every property "
                      "separately would give)"),
        premises=[_RAN, _TYPES, _SETTLED,
                  happened("transition_steps_measured", ">=", 3, name="a transition step at three |K| at least",
                           why="a slope from fewer than three points is not a fit")],
    )
    extra_quantities = ("slope_rel", "t_revealed_max")


__all__ = ["GrammarBeforeTypes", "TypeConstraintsTogether", "EmergenceScalesSqrtK", "transition_step", "smooth", "settled",
           "sweep_measures", "run_config", "TIERS"]
