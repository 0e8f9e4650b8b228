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
from theorylab.claims.base import Claim, Criterion, Evidence, Tier, all_of, fitted, happened, tiers_of
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
        premises=[fitted("accuracy_no_ln_min", 1.0, name="the construction decides PARITY",
                         why="the claim is about a transformer that is right but unconfident: accuracy 1 at every "
                             "length")],
    )
    extra_quantities = ("ce_ln_eps_at_max_n",)

    def measure(self, tier: str, seed: int, runs) -> dict[str, Any]:
        from theorylab.constructions import parity

        p = self.params(tier)
        a = construction_curves(parity(), "parity", p["ns"], p["samples"], p["positions"], seed)
        b = construction_curves(parity(layernorm_eps=1e-5), "parity", p["ns"], p["samples"], p["positions"], seed)
        return {"slope_no_ln": sensitivity_slope(a), "slope_ln_eps": sensitivity_slope(b),
                "ce_no_ln_at_max_n": a["ce"][-1], "ce_ln_eps_at_max_n": b["ce"][-1], "accuracy_no_ln_min": min(a["acc"]),
                "no_ln": a, "ln_eps": b}

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        labels = {"no_ln": "no layer norm", "ln_eps": "layer-norm trick, eps = 1e-5"}
        return {"cross_entropy_vs_n": _fig_ce(evidence, labels, "PARITY construction: cross-entropy vs n"),
                "sensitivity_vs_n": _fig_sens(evidence, labels, "Per-bit sensitivity vs n")}


_STRINGS = 1024  # strings scored at the longest length: chance accuracy has sd 0.016 over them


class HardTier(Tier):
    """Sizes of the hard-attention claim: lengths, strings per length (every position flipped in each),
    and the random unique-hard-attention transformers searched."""

    ns: tuple[int, ...]
    samples: int
    models: int
    width: int


def random_uhat(seed: int, width: int, scale: float, attention: str = "hard_unique"):
    """A random two-layer encoder with hard attention that reads bits then a CLS (the PARITY construction's
    input convention, with its (i/N, (-1)^i) position features), weights N(0, scale)."""
    import torch

    from theorylab.models import Transformer, TransformerConfig

    cfg = TransformerConfig(architecture="encoder", d_vocab=3, d_vocab_out=2, n_ctx=1, d_model=width, n_layers=2,
                            n_heads=2, attention=attention, positional="none", position_features=["frac", "cos_pi"],
                            norm="none", init_std=scale)
    return Transformer(cfg, generator=torch.Generator().manual_seed(seed)).eval()


@register_claim
class UniqueHardAttentionBounded(Claim):
    id = "hahn2020.unique_hard_attention_bounded"
    title = "Unique hard attention cannot decide PARITY at long lengths"
    citation = HAHN
    statement = ("A transformer with unique hard attention (argmax, leftmost tie-break) and a fixed number of layers "
                 "and heads cannot decide PARITY at long lengths (Hahn 2020, Theorem 1: after fixing a fraction of "
                 "the input bits its output depends on a bounded number of the others, while PARITY's depends on "
                 "all of them).  Tested on Chiang & Cholak's PARITY weights, which decide PARITY under averaging hard "
                 "attention (ties averaged), run with unique hard attention, and on random two-layer "
                 "unique-hard-attention transformers: none decides PARITY at the longest length.  Their average "
                 "sensitivity (every position flipped) is reported beside PARITY's n.")
    rule = all_of(
        Criterion("construction_accuracy_at_max_n", "<=", 0.6, stat="max",
                  why="the PARITY weights under unique hard attention are at chance (0.5) at the longest length; "
                      "over 1,024 strings chance has sd 0.016, so 0.6 is 6 sd above it"),
        Criterion("search_best_accuracy_at_max_n", "<=", 0.6, stat="max",
                  why="no random unique-hard-attention model decides PARITY: the best of the models searched stays "
                      "near chance (the best of 128 fair coins over 1,024 strings is about 0.54; 0.6 is 6 sd "
                      "above chance)"),
        premises=[fitted("control_accuracy_at_max_n", 1.0,
                         name="positive control: the same weights decide PARITY with averaging hard attention",
                         why="the test can only fail where the attention rule, not the weights, is what changed"),
                  happened("control_sensitivity_slope", ">=", 0.9,
                           name="positive control: the measurement sees PARITY's growing sensitivity",
                           why="average sensitivity of a model that decides PARITY is n: log-log slope 1")],
    )
    tiers = tiers_of(HardTier, {
        "smoke": {"ns": [8, 16, 32], "samples": 2, "models": 4, "width": 8},
        "quick": {"ns": [16, 32, 64, 128], "samples": 4, "models": 12, "width": 12, "faithful": True},
        "full": {"ns": [16, 32, 64, 128, 256, 512], "samples": 8, "models": 128, "width": 16, "faithful": True},
    })
    seeds = {"smoke": 2, "quick": 3, "full": 5}
    decides = "more random models or longer lengths (the full tier)"
    deviations = {"search": "random weights (three scales) stand in for every unique-hard-attention transformer: a "
                            "search can find a model that decides PARITY if one is common, it cannot prove that none "
                            "exists; the theorem is tested on its instances"}
    extra_quantities = ("search_max_sensitivity_at_max_n", "construction_sensitivity_at_max_n")

    def measure(self, tier: str, seed: int, runs) -> dict[str, Any]:
        import torch

        from theorylab.constructions import parity
        from theorylab.constructions.chiang import decision, evaluate, labels
        from theorylab.measures.sensitivity import average_sensitivity, loglog_slope

        p = self.params(tier)
        ns = list(p["ns"])
        n_max = ns[-1]

        def sens(model, n: int, salt: int) -> float:  # every position flipped: exact per string
            return average_sensitivity(lambda b: decision(model, "parity", b), n, p["samples"],
                                       seed * 1009 + salt * 97 + n, max_positions=n)

        scales = (0.5, 1.0, 2.0)
        models = [random_uhat(seed * 100_003 + m, p["width"], scales[m % 3]) for m in range(p["models"])]
        g = torch.Generator().manual_seed(seed * 7 + 1)
        bits = torch.randint(0, 2, (_STRINGS, n_max), generator=g)
        y = labels("parity", bits)
        best = max(float((decision(m, "parity", bits) == y).double().mean()) for m in models)
        search = [max(sens(m, n, k) for k, m in enumerate(models)) for n in ns]
        uhat, ahat = parity(attention="hard_unique"), parity(attention="hard_average")
        cons = [sens(uhat, n, 1) for n in ns]
        ctrl = [sens(ahat, n, 2) for n in ns]
        return {"construction_accuracy_at_max_n": evaluate(uhat, "parity", n_max, _STRINGS, seed)["accuracy"],
                "search_best_accuracy_at_max_n": best,
                "control_accuracy_at_max_n": evaluate(ahat, "parity", n_max, _STRINGS, seed)["accuracy"],
                "control_sensitivity_slope": loglog_slope(ns, [max(x, 1e-3) for x in ctrl]).slope,
                "search_max_sensitivity_at_max_n": search[-1], "construction_sensitivity_at_max_n": cons[-1],
                "search": {"ns": ns, "avg_sens": search}, "unique": {"ns": ns, "avg_sens": cons},
                "average": {"ns": ns, "avg_sens": ctrl}}

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        from theorylab.figures.expressivity import average_sensitivity_vs_n

        first = evidence.series[evidence.seeds[0]]
        return {"average_sensitivity_vs_n": average_sensitivity_vs_n(
            {"random unique-hard-attention models (largest)": first["search"],
             "PARITY weights, unique hard attention": first["unique"],
             "PARITY weights, averaging hard attention": first["average"]},
            "Average sensitivity (every position flipped)")}
