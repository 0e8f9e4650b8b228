"""The random-graph view of multi-step reasoning, as an MSRA lecture on the theory of LLMs presents it (the
lecture's speaker and date are not confirmed; SETUPS §4.2), built on Erdős and Rényi (1960).

Concepts are nodes and the one-hop relations a model has learned are edges.  A k-hop question between two
concepts is answerable only when they are connected in the learned graph, and an Erdős–Rényi graph grows a
giant component holding a fraction S of its nodes, S = 1 - exp(-c S), only once its mean degree c passes 1.
So a smooth rise in the fraction of relations learned should show up as a sharp transition in multi-hop
accuracy near the learned graph's percolation point (c = 1), and, since a k-hop chain needs k learned links,
a transition that is sharper the more hops a question needs (per-hop successes compound like p^k).

theorylab trains on the ``knowledge_graph`` task (:mod:`theorylab.tasks.knowledge_graph`): a ground-truth
G(n, 4/(n-1)) graph, a fraction q of its edges revealed as one-hop facts and chains, test pairs at distance
exactly k in the ground truth answered by generating a path.  One claim reads a sweep over q:

* ``erdos1960.msra_lecture_multi_hop``: multi-hop accuracy (k >= 2) is near zero while the learned graph's
  mean degree is below 1 and high once it is well above, and its onset is steeper (a larger log-log slope
  against q) for 4-hop than for 2-hop questions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Evidence, Tier, all_of, fitted, happened, tiers_of
from theorylab.claims.citations import ERDOS1960


class KnowledgeTier(Tier):
    """One seed's q sweep: a ground-truth graph of ``n`` nodes and mean degree ``degree``, revealed fractions
    ``fractions``, test pairs at distances 1..``test_hops`` (``n_test_pairs`` each), a ``n_layers`` x
    ``d_model`` model with ``n_heads`` heads trained ``steps`` steps of ``batch_size`` examples at ``lr``."""

    n: int
    degree: float = 4.0
    fractions: tuple[float, ...]
    test_hops: int = 4
    max_hops: int = 8
    n_test_pairs: int
    n_layers: int = 2
    d_model: int
    n_heads: int = 4
    steps: int
    batch_size: int = 128
    lr: float = 1e-3


# Quick: n = 64 concepts of mean degree 4 (so the revealed graph percolates near q = 1/4), eleven fractions
# from 0.1 to 1, a 2-layer d_model 64 model for 1,500 steps.  Pilots (one seed each) at n = 64: q = 1 fitted
# every hop distance to >= 0.98 by step 1,250; at q = 0.25 the model answered exactly the pairs its data
# connect (hop accuracies equal to the revealed graph's ceiling) and answered 2% of non-edges with a direct
# fact.  The full tier doubles n and the test pairs and adds sizes near the threshold (a GPU's hour).
TIERS: dict[str, Tier] = tiers_of(KnowledgeTier, {
    "smoke": {"n": 16, "degree": 3.0, "fractions": (0.2, 0.4, 0.6, 1.0), "test_hops": 2, "max_hops": 4,
              "n_test_pairs": 16, "d_model": 16, "n_heads": 2, "steps": 30, "batch_size": 16},
    "quick": {"n": 64, "fractions": (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.8, 1.0),
              "n_test_pairs": 512, "d_model": 64, "steps": 1500},
    "full": {"n": 128, "fractions": (0.1, 0.14, 0.18, 0.2, 0.22, 0.24, 0.26, 0.28, 0.3, 0.33, 0.36, 0.4, 0.45, 0.5,
                                     0.6, 0.7, 0.8, 1.0),
             "n_test_pairs": 2048, "d_model": 128, "n_heads": 4, "steps": 6000, "faithful": True},
})

SEEDS = {"smoke": 2, "quick": 3, "full": 5}

SUBCRITICAL = 0.8  # learned mean degree at most this: below the percolation point by a margin
SUPERCRITICAL = 2.4  # at least this: S(2.4) = 0.87, so S^2 (a random pair connected) is about 0.76
ONSET = (0.02, 0.6)  # the onset: accuracies between 2% (above the 1/512 resolution) and 60% of the maximum


def run_config(tier: Tier, seed: int, q: float):
    """One run of the sweep (validated RunConfig); every q of a seed shares its ground-truth graph."""
    from theorylab.config import validate
    from theorylab.runs import RunConfig

    t = tier
    return validate(RunConfig, {
        "task": {"name": "knowledge_graph", "n": t["n"], "degree": t["degree"], "q": q, "test_hops": t["test_hops"],
                 "max_hops": t["max_hops"], "n_test_pairs": t["n_test_pairs"]},
        "model": {"n_layers": t["n_layers"], "d_model": t["d_model"], "n_heads": t["n_heads"], "act": "gelu",
                  "positional": "learned"},
        "train": {"steps": t["steps"], "batch_size": t["batch_size"], "lr": t["lr"],
                  "warmup_steps": max(1, t["steps"] // 20), "eval_every": max(1, t["steps"] // 3),
                  "checkpoint_every": max(1, t["steps"] // 10)},
        "seed": seed,
        "tags": {"claim_setup": "knowledge-graph-percolation"},
    })


def onset_slope(q: np.ndarray, acc: np.ndarray, band: tuple[float, float] = ONSET) -> float:
    """Least-squares slope of log acc against log q over the sweep points whose accuracy lies in
    ``band`` times the sweep's maximum (the onset of the rise); nan with fewer than two such points.  A k-hop
    question answered only when all k links of one path are known rises like q^k at small q."""
    top = float(np.nanmax(acc)) if acc.size else math.nan
    if not top > 0:
        return math.nan
    sel = (acc >= band[0] * top) & (acc <= band[1] * top) & (q > 0)
    if sel.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log10(q[sel]), np.log10(acc[sel]), 1)[0])


def sweep_measures(tier: Tier, seed: int, runs: dict[str, Any]) -> dict[str, Any]:
    """Per-seed quantities of the q sweep: accuracies per k, the learned graph's mean degree and giant
    fraction, the data's ceilings, the bracket around the percolation point and the onset slopes."""
    from theorylab.measures.emergence import er_giant_fraction
    from theorylab.measures.phases import interpolated_crossing

    K = int(tier["test_hops"])
    rows = []
    for q in tier["fractions"]:
        v = runs.get(f"q{q:g}")
        if v is None or v.status != "finished":
            continue
        m = v.final
        rows.append({"q": q, "c": m.get("test/learned_mean_degree", math.nan),
                     "giant": m.get("test/learned_giant", math.nan),
                     "false_edges": m.get("test/false_edge_fraction", 0.0),
                     **{f"acc{k}": m.get(f"test/hop{k}_accuracy", math.nan) for k in range(1, K + 1)},
                     **{f"ceil{k}": m.get(f"test/hop{k}_reachable", math.nan) for k in range(1, K + 1)}})
    out: dict[str, Any] = {"runs_finished": len(rows) / len(tier["fractions"])}
    if not rows:
        return out
    q = np.array([r["q"] for r in rows])
    c = np.array([r["c"] for r in rows])
    multi = np.array([[r[f"acc{k}"] for k in range(2, K + 1)] for r in rows])  # [runs, K - 1]
    sub, sup = c <= SUBCRITICAL, c >= SUPERCRITICAL
    slopes = {k: onset_slope(q, np.array([r[f"acc{k}"] for r in rows])) for k in range(2, K + 1)}
    full = [r for r in rows if r["q"] == max(tier["fractions"])]
    theory = np.array([er_giant_fraction(float(x)) ** 2 if math.isfinite(x) else math.nan for x in c])
    out.update({
        "subcritical_runs": float(sub.sum()), "supercritical_runs": float(sup.sum()),
        "multi_hop_below": float(np.nanmax(multi[sub])) if sub.any() else math.nan,
        "multi_hop_above": float(np.nanmin(multi[sup])) if sup.any() else math.nan,
        "onset_slope_2": slopes.get(2, math.nan), f"onset_slope_{K}": slopes.get(K, math.nan),
        "onset_slope_ratio": (slopes[K] / slopes[2] if K > 2 and slopes[2] > 0 and math.isfinite(slopes[K])
                              else math.nan),
        "false_edge_max": float(max(r["false_edges"] for r in rows)),
        "fitted_at_full": float(min(r[f"acc{k}"] for r in full for k in range(1, K + 1))) if full else math.nan,
        "gap_to_ceiling": float(max(abs(r[f"acc{k}"] - r[f"ceil{k}"]) for r in rows for k in range(2, K + 1))),
        "q_percolation": interpolated_crossing(q, c, 1.0),
        "sweep": {"q": q.tolist(), "c": c.tolist(), "giant": [r["giant"] for r in rows],
                  "S2_theory": theory.tolist(),
                  **{f"acc{k}": [r[f"acc{k}"] for r in rows] for k in range(1, K + 1)},
                  **{f"ceil{k}": [r[f"ceil{k}"] for r in rows] for k in range(1, K + 1)}},
    })
    return out


@register_claim
class MultiHopPercolation(Claim):
    id = "erdos1960.msra_lecture_multi_hop"
    title = "Multi-hop accuracy turns on where the learned knowledge graph percolates, more sharply for more hops"
    citation = ERDOS1960
    statement = ("Trained on a fraction q of a random knowledge graph's relations, a transformer answers k-hop "
                 "questions (k >= 2) almost never while the graph of relations it has learned has mean degree "
                 "below 1, and mostly once that degree is well above 1, as the giant component of an Erdős–Rényi "
                 "graph predicts; the onset is steeper for 4-hop than for 2-hop questions (the random-graph view "
                 "of multi-step reasoning of an MSRA lecture on the theory of LLMs; Erdős and Rényi 1960).")
    rule = all_of(
        Criterion("multi_hop_below", "<=", 0.15, stat="every",
                  why="below the percolation point (learned mean degree <= 0.8) every multi-hop accuracy is at "
                      "most 0.15: the finite graph's small components connect a few close pairs (the revealed "
                      "graph's own ceiling there is about 0.06 for 2 hops at n = 64)"),
        Criterion("multi_hop_above", ">=", 0.5, stat="every",
                  why="well above it (learned mean degree >= 2.4, where S^2 = 0.76 of random pairs are connected) "
                      "every multi-hop accuracy is at least one half"),
        Criterion("onset_slope_ratio", ">=", 1.3, stat="log_mean",
                  why="the log-log slope of the onset (accuracies between 2% and 60% of the maximum) is at least "
                      "1.3 times larger for 4 hops than for 2: per-link compounding predicts a ratio near 2 far "
                      "below the threshold, less near it; 1.3 asks for a clear increase"),
        premises=[
            happened("runs_finished", ">=", 1.0, name="every q of the sweep trained its whole budget",
                     why="a missing fraction leaves a hole in the transition"),
            fitted("fitted_at_full", 0.9, name="the model fitted the whole graph",
                   why="with every relation revealed it answers at least 90% of the questions at every distance: "
                       "a model that cannot fit the full graph says nothing about partial ones"),
            happened("subcritical_runs", ">=", 1, name="the sweep reaches below the percolation point",
                     why="at least one q whose learned graph has mean degree <= 0.8"),
            happened("supercritical_runs", ">=", 1, name="the sweep reaches well above the percolation point",
                     why="at least one q whose learned graph has mean degree >= 2.4"),
            happened("false_edge_max", "<=", 0.05, name="the model does not invent relations",
                     why="at most 5% of non-adjacent pairs are answered with a direct fact (the copy shortcut); "
                         "otherwise the learned graph counts edges the model merely copies from the prompt"),
        ],
    )
    tiers = TIERS
    seeds = SEEDS
    decides = "more seeds, or the full tier (n = 128, 18 fractions, 2,048 test pairs per distance, on a GPU)"
    extra_quantities = ("onset_slope_2", "onset_slope_4", "q_percolation", "gap_to_ceiling")
    deviations = {
        "source": "the lecture's argument is qualitative (SETUPS §4.2); the thresholds are ours, each with its reason",
        "data": "a G(64, 4/63) graph (quick tier) whose revealed edges are the one-hop facts and whose G_q-shortest "
                "paths are the chains; test pairs are not held out of training (the question is whether connected "
                "pairs are answered, and the data's ceiling is connectivity in G_q)",
        "learned graph": "an edge is learned when both directions are answered with the direct fact; the model "
                         "learns the revealed edges almost exactly, so the learned graph's transition follows q",
    }

    def experiment(self, tier, seed):
        t = self.params(tier)
        return {f"q{q:g}": run_config(t, seed, q) for q in t["fractions"]}

    def measure(self, tier, seed, runs):
        return sweep_measures(self.params(tier), seed, runs)

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        from theorylab.figures.emergence import accuracy_vs_fraction

        seeds = [s for s in evidence.seeds if s in evidence.series and "sweep" in evidence.series[s]]
        if not seeds:
            return {}
        sw = evidence.series[seeds[0]]["sweep"]
        K = max(int(k[3:]) for k in sw if k.startswith("acc"))
        return {"accuracy_vs_q": accuracy_vs_fraction(
            sw["q"], {k: sw[f"acc{k}"] for k in range(1, K + 1)}, ceiling={k: sw[f"ceil{k}"] for k in range(1, K + 1)},
            q_c=evidence.per_seed[seeds[0]].get("q_percolation"), learned_giant=sw["giant"],
            title=f"seed {seeds[0]} ({evidence.tier} tier): k-hop accuracy (dashed: the data's ceiling)")}


__all__ = ["MultiHopPercolation", "onset_slope", "sweep_measures", "run_config", "TIERS"]
