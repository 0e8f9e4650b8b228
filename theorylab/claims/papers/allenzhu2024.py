"""Allen-Zhu & Li (2024), "Physics of Language Models: Part 3.3, Knowledge Capacity Scaling Laws"
(arXiv 2404.05405), on the ``bios`` task.

* ``allenzhu2024.two_bits_per_parameter``: trained on bioS(N) biographies with 1,000 exposures per person,
  a language model stores about 2 bits of knowledge per parameter at most, whatever its size; with 100
  exposures, less (the paper: about 1).

The experiment, per seed: a grid of worlds (N people) and model widths, each trained on single biographies
for ``exposures`` passes over each person (steps = exposures x N / batch); the bits each model stores are
measured by :func:`theorylab.measures.knowledge.bits_stored` over every person (N x (log2 K - CE) summed over the
attributes; the definition is that module's) and divided by all of the model's parameters, embeddings
included.  A seed's capacity ratio is the largest bits/parameter of its grid at that exposure
(:func:`theorylab.measures.knowledge.capacity_ratio`); the engine reports its interval over seeds.

Premise: the point that sets the ratio holds less than 90% of its data's bits, so it is at capacity (a model
that stores everything measures the data's size, not its capacity).
"""

from __future__ import annotations

import math
from typing import Any

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Evidence, Tier, all_of, happened, tiers_of
from theorylab.claims.citations import ALLENZHU2024 as CITATION


class CapacityTier(Tier):
    """The grid: ``people`` (N values), ``widths`` (d_model values of an ``n_layers``-layer decoder with
    ``n_heads`` heads), ``exposures`` (passes per person); names from pools of ``name_pool``, every attribute
    from pools of ``pool`` values (0 = the paper's pools); ``batch_size`` biographies a step at ``lr``."""

    people: tuple[int, ...]
    widths: tuple[int, ...]
    exposures: tuple[int, ...]
    n_layers: int
    n_heads: int
    name_pool: int
    pool: int
    batch_size: int
    lr: float


TIERS: dict[str, Tier] = tiers_of(CapacityTier, {
    "smoke": {"people": [40], "widths": [8], "exposures": [2, 10], "n_layers": 1, "n_heads": 1, "name_pool": 4,
              "pool": 4, "batch_size": 16, "lr": 1e-2},
    # CPU minutes: 1,000 people (12^3 = 1,728 names), attribute pools of 20 (29.0 bits a person, 29,002 in all),
    # 1-layer decoders of width 8, 12 and 16 (6,018, 9,466 and 13,298 parameters: at 2 bits/parameter none can
    # hold the data, so the largest ratio measures capacity, up to 4.8, 3.1 and 2.2 bits/parameter).  A first
    # grid had widths 16 and 24; width 24 (22,114 parameters) could hold all the data at 1.31 bits/parameter
    # and did hold 87% of it, so it was replaced by width 8 and 12 (docs/knowledge.md keeps its numbers).
    "quick": {"people": [1000], "widths": [8, 12, 16], "exposures": [100, 1000], "n_layers": 1, "n_heads": 2,
              "name_pool": 12, "pool": 20, "batch_size": 64, "lr": 1e-2},
    # a GPU's grid at the paper's pools: N from 10,000 to 100,000, 2-layer decoders of width 64 to 256
    "full": {"people": [10000, 30000, 100000], "widths": [64, 128, 256], "exposures": [100, 1000], "n_layers": 2,
             "n_heads": 4, "name_pool": 0, "pool": 0, "batch_size": 256, "lr": 1e-3},
})

TWO_BITS_LO = 1.6  # "about 2 bits per parameter": within 20% below
TWO_BITS_HI = 2.4  # ... and within 20% above (the paper: the ratio does not exceed 2 in any of its models)
LOWER_AT_100 = 0.8  # 100 exposures store at most 80% of the 1,000-exposure ratio (the paper: about 1 against 2)
AT_CAPACITY = 0.9  # the point setting the ratio holds < 90% of its data's bits


def capacity_config(t: Tier, seed: int, n: int, width: int, exposures: int):
    """One point of the grid: single biographies of ``n`` people, a width-``width`` decoder, ``exposures`` passes
    over each person (steps = ceil(exposures * n / batch_size))."""
    from theorylab.config import validate
    from theorylab.runs import RunConfig

    names = {k: t["name_pool"] for k in ("n_first", "n_middle", "n_last")} if t["name_pool"] else {}
    pools = ({k: t["pool"] for k in ("n_years", "n_cities", "n_universities", "n_majors", "n_employers")}
             if t["pool"] else {})
    steps = math.ceil(exposures * n / t["batch_size"])
    return validate(RunConfig, {
        "task": {"name": "bios", "n_people": n, **names, **pools, "stage": "bio", "n_eval": min(n, 256)},
        "model": {"n_layers": t["n_layers"], "d_model": width, "n_heads": t["n_heads"], "positional": "learned"},
        "train": {"steps": steps, "batch_size": t["batch_size"], "lr": t["lr"], "warmup_steps": min(100, steps // 10),
                  "schedule": "cosine", "min_lr_ratio": 0.1, "eval_every": steps, "checkpoint_every": steps},
        "seed": seed, "tags": {"claim_setup": f"bios-capacity-{exposures}x"}})


def _key(n: int, width: int, exposures: int) -> str:
    return f"n{n}_d{width}_e{exposures}"


@register_claim
class TwoBitsPerParameter(Claim):
    id = "allenzhu2024.two_bits_per_parameter"
    title = "Language models store about 2 bits of knowledge per parameter at 1,000 exposures, less at 100"
    citation = CITATION
    tiers = TIERS
    seeds = {"smoke": 2, "quick": 2, "full": 3}
    statement = ("Trained on synthetic biographies with 1,000 exposures per person, a language model's stored "
                 "knowledge reaches but does not exceed about 2 bits per parameter; with 100 exposures it stores "
                 "less per parameter.")
    deviations = {
        "models": "1-layer decoders of width 8, 12 and 16 (6k-13k parameters, about 40% of them embeddings) at the quick "
                  "tier vs GPT-2 models of 1M-500M parameters with rotary positions",
        "world": "1,000 people, name pools of 12 and attribute pools of 20 (29.0 bits a person) vs N up to 20M at "
                 "the paper's pools (46.59 bits a person)",
        "bits": "our bits-stored operationalisation (measures/knowledge.py: N x (log2 K - CE) over the attributes, "
                "names not counted) vs the paper's bit-complexity lower bound, which also credits the names",
        "schedule": "AdamW with a cosine schedule at lr 1e-2 chosen for these sizes; the paper tunes per size",
    }
    decides = "the full tier's grid on a GPU, or more widths and worlds at this size"
    rule = all_of(
        Criterion("ratio_1000", ">=", TWO_BITS_LO, why="about 2 bits per parameter at 1,000 exposures (>= 1.6)"),
        Criterion("ratio_1000", "<=", TWO_BITS_HI, why="and not far above 2 (<= 2.4): 2 is the paper's ceiling"),
        Criterion("ratio_100_over_1000", "<=", LOWER_AT_100,
                  why="100 exposures store at least 20% less per parameter (the paper: about half)"),
        premises=[happened("stored_fraction_at_ratio", "<", AT_CAPACITY, name="the ratio is set at capacity",
                           why="the point with the largest bits/parameter holds < 90% of its data's bits")],
    )
    extra_quantities = ("ratio_100", "slope_1000", "stored_fraction_max")

    def experiment(self, tier, seed):
        t = self.params(tier)
        return {_key(n, d, e): capacity_config(t, seed, n, d, e)
                for e in t["exposures"] for n in t["people"] for d in t["widths"]}

    def measure(self, tier, seed, runs) -> dict[str, Any]:
        from theorylab.measures.knowledge import bits_stored, capacity_ratio

        t = self.params(tier)
        points: dict[int, list[dict[str, float]]] = {e: [] for e in t["exposures"]}
        for e in t["exposures"]:
            for n in t["people"]:
                for d in t["widths"]:
                    run = runs[_key(n, d, e)]
                    model = run.model()
                    b = bits_stored(model, run.task(), people=None)
                    points[e].append({"n": n, "width": d, "bits": b["bits"], "bound": b["bound"],
                                      "params": float(model.num_params()), "fraction": b["fraction"]})
        lo_e, hi_e = min(t["exposures"]), max(t["exposures"])
        fit = {e: capacity_ratio([p["bits"] for p in points[e]], [p["params"] for p in points[e]])
               for e in t["exposures"]}
        best = max(points[hi_e], key=lambda p: p["bits"] / p["params"])
        return {"ratio_1000": fit[hi_e]["ratio"], "ratio_100": fit[lo_e]["ratio"],
                "ratio_100_over_1000": fit[lo_e]["ratio"] / fit[hi_e]["ratio"] if fit[hi_e]["ratio"] > 0
                else math.inf,
                "slope_1000": fit[hi_e]["slope"], "stored_fraction_at_ratio": best["fraction"],
                "stored_fraction_max": max(p["fraction"] for e in points for p in points[e]),
                "points": {str(e): points[e] for e in points}}

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        from theorylab.figures.knowledge import bits_vs_params

        series = evidence.series[evidence.seeds[0]]["points"]
        return {"bits_vs_params": bits_vs_params(series, "Bits stored vs parameters (first seed)")}

    def tables(self, evidence: Evidence) -> dict[str, dict[str, Any]]:
        rows = []
        for s in evidence.seeds:
            for e, pts in sorted(evidence.series[s]["points"].items(), key=lambda x: int(x[0])):
                for p in pts:
                    rows.append([s, e, p["n"], p["width"], int(p["params"]), f"{p['bits']:.0f}",
                                 f"{p['bits'] / p['params']:.3f}", f"{p['fraction']:.3f}"])
        return {"capacity": {"columns": ["seed", "exposures", "N", "width", "parameters", "bits stored",
                                         "bits / parameter", "fraction of the data's bits"], "rows": rows,
                             "note": "every point of the grid; bits from measures/knowledge.bits_stored"}}
