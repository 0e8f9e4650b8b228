"""Hahn (2020), "Theoretical Limitations of Self-Attention in Neural Sequence Models", on
hand-set constructions (data-free: each seed draws its own random strings).

* ``hahn2020.soft_attention_sensitivity``: with Lipschitz layers (no layer norm, or layer
  norm with eps > 0) the soft-attention PARITY transformer's per-bit sensitivity falls at
  least like 1/n and its cross-entropy approaches 1 bit (Hahn 2020, Lemma 5).
* ``hahn2020.unique_hard_attention_bounded``: under unique hard attention the same PARITY
  weights depend on a bounded number of bits (average sensitivity stays bounded while
  PARITY's is n), so accuracy at long n is at chance (Hahn 2020, hard attention).

The curves and tiers are shared with :mod:`theorylab.claims.papers.chiang2022`, whose
constructions these claims measure.
"""

from __future__ import annotations

from typing import Any

from theorylab.claims import register_claim
from theorylab.claims.base import Criterion, Evidence, all_of
from theorylab.claims.citations import HAHN2020 as HAHN
from theorylab.claims.papers.chiang2022 import _Construction, _fig_ce, _fig_sens
from theorylab.measures.sensitivity import construction_curves, sensitivity_slope


@register_claim
class SoftAttentionSensitivity(_Construction):
    id = "hahn2020.soft_attention_sensitivity"
    title = "Lipschitz soft attention: per-bit sensitivity O(1/n), PARITY cross-entropy tends to 1 bit"
    citation = HAHN
    statement = ("In a soft-attention transformer whose layers are Lipschitz (no layer norm, or layer norm with "
                 "eps > 0), flipping one input bit moves the output by O(1/n); so even a transformer that decides "
                 "PARITY correctly becomes unconfident, its cross-entropy approaching 1 bit per string. Measured "
                 "on Chiang & Cholak's PARITY construction without layer norm and with the layer-norm trick at "
                 "eps = 1e-5.")
    rule = all_of(
        Criterion("slope_no_ln", "<=", -1.0, why="Hahn's Lemma 5: sensitivity O(1/n) means a log-log slope of at most -1"),
        Criterion("slope_ln_eps", "<=", -1.0, why="the same bound holds once eps > 0 makes layer norm Lipschitz"),
        Criterion("ce_no_ln_at_max_n", ">=", 0.99, why="'approaches 1 bit': within 0.01 bit at the longest length"),
    )
    extra_quantities = ("ce_ln_eps_at_max_n", "accuracy_no_ln_at_max_n")

    def measure(self, tier: str, seed: int, runs) -> dict[str, Any]:
        from theorylab.constructions import parity

        p = self.params(tier)
        a = construction_curves(parity(), "parity", p["ns"], p["samples"], p["positions"], seed)
        b = construction_curves(parity(layernorm_eps=1e-5), "parity", p["ns"], p["samples"], p["positions"], seed)
        return {"slope_no_ln": sensitivity_slope(a), "slope_ln_eps": sensitivity_slope(b), "ce_no_ln_at_max_n": a["ce"][-1],
                "ce_ln_eps_at_max_n": b["ce"][-1], "accuracy_no_ln_at_max_n": a["acc"][-1],
                "no_ln": a, "ln_eps": b}

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        labels = {"no_ln": "no layer norm", "ln_eps": "layer-norm trick, eps = 1e-5"}
        return {"cross_entropy_vs_n": _fig_ce(evidence, labels, "PARITY construction: cross-entropy vs n"),
                "sensitivity_vs_n": _fig_sens(evidence, labels, "Per-bit sensitivity vs n")}


@register_claim
class UniqueHardAttentionBounded(_Construction):
    id = "hahn2020.unique_hard_attention_bounded"
    title = "Unique hard attention depends on a bounded number of bits and fails PARITY at long n"
    citation = HAHN
    statement = ("A transformer with unique hard attention (argmax, leftmost tie-break) computes a function whose "
                 "output depends on a bounded number of input bits, so it cannot decide PARITY, whose every bit "
                 "matters. Measured on Chiang & Cholak's PARITY weights run with unique hard attention; the same "
                 "weights with averaging hard attention (ties averaged) are reported beside them, as they can "
                 "count.")
    rule = all_of(
        Criterion("avg_sensitivity_max", "<=", 5.0,
                  why="bounded: at most 5 decisive bits at every length, while PARITY's average sensitivity is n"),
        Criterion("accuracy_at_max_n", "<=", 0.6, why="chance is 0.5; 0.6 leaves room for sampling noise"),
    )
    extra_quantities = ("averaging_hard_accuracy_at_max_n", "averaging_hard_avg_sensitivity_at_max_n")

    def measure(self, tier: str, seed: int, runs) -> dict[str, Any]:
        from theorylab.constructions import parity

        p = self.params(tier)
        # accuracy near chance needs many strings to pin down: 16x the tier's sample count
        kw = dict(acc_samples=16 * p["samples"], per_bit=False)
        u = construction_curves(parity(attention="hard_unique"), "parity", p["ns"], p["samples"], p["positions"], seed, **kw)
        a = construction_curves(parity(attention="hard_average"), "parity", p["ns"], p["samples"], p["positions"], seed, **kw)
        return {"avg_sensitivity_max": max(u["avg_sens"]), "accuracy_at_max_n": u["acc"][-1],
                "averaging_hard_accuracy_at_max_n": a["acc"][-1],
                "averaging_hard_avg_sensitivity_at_max_n": a["avg_sens"][-1], "unique": u, "average": a}

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        from theorylab.figures.expressivity import average_sensitivity_vs_n

        first = evidence.series[evidence.seeds[0]]
        return {"average_sensitivity_vs_n": average_sensitivity_vs_n(
            {"unique hard attention": first["unique"], "averaging hard attention": first["average"]},
            "Hard attention on the PARITY construction")}
