"""Olsson et al. (2022), "In-context Learning and Induction Heads", on the ``induction`` task.

A block of 8-16 random tokens (vocabulary 64) followed by its copy; the model is the
``induction`` preset (two attention-only layers, d_model 64, 2 heads, AdamW lr 1e-3).
Measurements are the run's metrics, logged at every evaluation: the best head's
prefix-matching score per layer and the loss on the second copy (the in-context loss).

* ``olsson2022.induction_head_forms``: an induction head forms (final prefix-matching
  score of the best head >= 0.5), the in-context loss drops abruptly, and the score's
  rise coincides with the loss drop.
* ``olsson2022.one_layer_no_induction``: with a single attention-only layer (otherwise
  the same run) no head prefix-matches.
"""

from __future__ import annotations

from typing import Any

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Tier, all_of, fitted, happened, tiers_of
from theorylab.claims.citations import OLSSON2022 as OLSSON


# Pilots.  Seed 0, 1,000 steps: the second-copy loss of the two-layer model fell from 3.6 to 0.8 nats
# between steps 150 and 250 and the layer-1 prefix-matching score rose from 0.16 to 0.76 over the same
# evaluations.  Seeds 0-4, 2,000 steps (this revision, run before the rules below were set): four seeds
# passed 0.5 by step 400 and stayed at 0.78-0.84; seed 1 reached second-copy accuracy 0.86 by step 1,000
# with prefix-matching scores of only 0.15 (layer 0) and 0.05 (layer 1): it learned the copy another way.
# The quick tier trains 1,500 steps, well past the formation in every seed that formed a head by 2,000.
class InductionTier(Tier):
    """Sizes of the induction runs: vocabulary, block periods, width, steps, evaluation cadence."""

    vocab: int
    period: int
    min_period: int
    d_model: int
    steps: int
    eval_every: int
    n_test: int


_INDUCTION_TIERS: dict[str, Tier] = tiers_of(InductionTier, {
    "smoke": {"vocab": 20, "period": 8, "min_period": 4, "d_model": 32, "steps": 60, "eval_every": 10,
              "n_test": 64},
    "quick": {"vocab": 64, "period": 16, "min_period": 8, "d_model": 64, "steps": 1500, "eval_every": 25,
              "n_test": 256},
    "full": {"vocab": 64, "period": 16, "min_period": 8, "d_model": 64, "steps": 3000, "eval_every": 25,
             "n_test": 512},
})


WINDOW_FRAC = 0.1  # abruptness window: a tenth of the run


def induction_config(seed: int, n_layers: int, vocab: int, period: int, min_period: int, d_model: int, steps: int,
                     eval_every: int, n_test: int):
    from theorylab.runs import build_run_config

    return build_run_config("induction", [
        f"task.vocab={vocab}", f"task.period={period}", f"task.min_period={min_period}", f"task.n_test={n_test}",
        f"model.n_layers={n_layers}", f"model.d_model={d_model}", f"train.steps={steps}",
        f"train.eval_every={eval_every}",
    ], seed=seed)


def induction_curves(view) -> dict[str, list[float]]:
    """Per evaluation: steps, second-copy loss, and the best prefix-matching / previous-token
    score over all heads of all layers (each layer's best head is logged by the task)."""
    steps, loss2 = view.series("test", "loss_second_copy")
    n_layers = view.config.model.n_layers
    pm = [view.series("test", f"prefix_matching_l{i}")[1] for i in range(n_layers)]
    pt = [view.series("test", f"prev_token_score_l{i}")[1] for i in range(n_layers)]
    return {"steps": [int(s) for s in steps], "loss_second_copy": loss2,
            "prefix_matching": [max(v) for v in zip(*pm)], "prev_token": [max(v) for v in zip(*pt)]}


class _InductionClaim(Claim):
    citation = OLSSON
    tiers = _INDUCTION_TIERS
    seeds = {"smoke": 2, "quick": 5, "full": 10}
    deviations = {
        "data": "repeated random tokens (the standard synthetic probe of induction heads), not natural text as in "
                "Olsson et al.'s models; every tier is therefore a proxy and cannot refute",
        "model": "two attention-only layers of width 64 with 2 heads, learned positions, pre-LN",
    }
    decides = "more seeds (the per-seed outcome is judged as an exact count)"

    def _curve_figure(self, evidence, names: tuple[str, ...]):
        from theorylab.figures.icl import induction_formation

        runs = {name: [(s, evidence.series[s][f"curves_{name}"], evidence.series[s].get(f"marks_{name}", {}))
                       for s in evidence.seeds if evidence.series.get(s, {}).get(f"curves_{name}")]
                for name in names}
        return induction_formation(runs)


@register_claim
class InductionHeadForms(_InductionClaim):
    id = "olsson2022.induction_head_forms"
    title = "A two-layer attention-only transformer forms an induction head, at the same time as its loss drops"
    statement = ("Trained on repeated random tokens, a two-layer attention-only transformer develops a head that "
                 "attends to the token after the earlier occurrence of the current token (prefix matching); the "
                 "loss on the repeated half drops abruptly, and the prefix-matching score rises at the same time.")
    # Each part is a per-seed yes/no outcome judged as an exact count: in at least 80% of seeds (4 of 5 at
    # the quick tier; 'forms' read as 'forms in most runs within the budget').
    rule = all_of(
        Criterion("prefix_matching_final", ">=", 0.5, stat="count", at_least=0.8,
                  why="most of the head's attention on the token after the earlier occurrence; uniform causal "
                      "attention scores about 0.07 on these sequences and a hand-built induction head 0.99"),
        Criterion("loss_drop_sharpness", ">=", 0.4, stat="count", at_least=0.8,
                  why=f"at least 40% of the total fall of the second-copy loss within {WINDOW_FRAC:.0%} of training, "
                      "four times what a steady decrease would give"),
        Criterion("onset_gap_frac", "<=", 0.1, stat="count", at_least=0.8,
                  why="the step where the score rises past halfway and the step where the loss falls past halfway "
                      "lie within a tenth of the run of each other"),
        premises=[fitted("accuracy_second_copy", 0.5, name="the model learned to copy in context",
                         why="a head's role in in-context copying is only asked of a model that copies: at least "
                             "half of the second copy predicted (chance is 1/64)")],
    )
    extra_quantities = ("loss_drop_step", "score_rise_step", "in_context_gain", "accuracy_second_copy",
                        "loss_second_copy_final", "prev_token_final")

    def experiment(self, tier, seed):
        return {"two_layer": induction_config(seed, 2, **self.params(tier))}

    def measure(self, tier, seed, runs):
        from theorylab.measures.induction import transition

        v = runs["two_layer"]
        c = induction_curves(v)
        drop = transition(c["steps"], c["loss_second_copy"], direction="down", window_frac=WINDOW_FRAC)
        rise = transition(c["steps"], c["prefix_matching"], direction="up", window_frac=WINDOW_FRAC)
        steps = self.params(tier)["steps"]
        f = v.final
        return {
            "prefix_matching_final": c["prefix_matching"][-1],
            "prev_token_final": c["prev_token"][-1],
            "loss_drop_sharpness": drop["sharpness"],
            "loss_drop_step": drop["step"],
            "score_rise_step": rise["step"],
            "onset_gap_frac": abs(drop["step"] - rise["step"]) / steps,
            "in_context_gain": f["test/in_context_gain"],
            "accuracy_second_copy": f["test/accuracy_second_copy"],
            "loss_second_copy_final": f["test/loss_second_copy"],
            "curves_two_layer": c,
            "marks_two_layer": {"drop_step": drop["step"], "rise_step": rise["step"]},
        }

    def figures(self, evidence):
        return {"induction_formation": self._curve_figure(evidence, ("two_layer",))}


@register_claim
class OneLayerNoInduction(_InductionClaim):
    id = "olsson2022.one_layer_no_induction"
    title = "A one-layer attention-only transformer forms no induction head"
    statement = ("With a single attention-only layer (and otherwise the same run), no head prefix-matches: a key "
                 "cannot know its previous token without an earlier layer, so induction needs two composed layers.")
    rule = all_of(
        Criterion("prefix_matching_one_layer", "<=", 0.3, stat="every",
                  why="well under the 0.5 that counts as an induction head for the two-layer claim, in every seed"),
        premises=[happened("prefix_matching_two_layer", ">=", 0.5,
                           name="the two-layer run of the same setup formed an induction head",
                           why="the one-layer vs two-layer contrast needs the two-layer head (the 0.5 of the "
                               "two-layer claim)")],
    )
    extra_quantities = ("prefix_matching_gap", "in_context_gain_one_layer", "in_context_gain_two_layer",
                        "accuracy_second_copy_one_layer", "accuracy_second_copy_two_layer")

    def experiment(self, tier, seed):
        p = self.params(tier)
        return {"one_layer": induction_config(seed, 1, **p), "two_layer": induction_config(seed, 2, **p)}

    def measure(self, tier, seed, runs):
        out: dict[str, Any] = {}
        for name in ("one_layer", "two_layer"):
            c = induction_curves(runs[name])
            f = runs[name].final
            out[f"prefix_matching_{name}"] = c["prefix_matching"][-1]
            out[f"in_context_gain_{name}"] = f["test/in_context_gain"]
            out[f"accuracy_second_copy_{name}"] = f["test/accuracy_second_copy"]
            out[f"curves_{name}"] = c
        out["prefix_matching_gap"] = out["prefix_matching_two_layer"] - out["prefix_matching_one_layer"]
        return out

    def figures(self, evidence):
        return {"one_vs_two_layers": self._curve_figure(evidence, ("one_layer", "two_layer"))}
