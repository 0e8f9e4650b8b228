"""Bietti et al. (2023), "Birth of a Transformer: A Memory Viewpoint", on the ``bigram_triggers`` task.

* ``bietti2023.induction_from_triggers``: a two-layer attention-only model predicts the
  outputs of repeated triggers, not of first occurrences, and its second layer's
  value/output path becomes a copying memory (memory-recall probe).
"""

from __future__ import annotations

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Premise, Tier, all_of, tiers_of
from theorylab.claims.citations import BIETTI2023 as BIETTI


# quick: 64 tokens, sequences of 64, 5 triggers, d_model 64 (paper: 65 characters, T = 256, d = 256).
# Pilots (seed 0): without layer norm (d_model 128, lr 1e-3) in-context accuracy sat at 0.52-0.58 from
# step 250 to 3000 - the level of copying the most frequent token of the context, 0.57 on this data -
# with no previous-token head; with pre-LN (d_model 64) it jumped from 0.60 to 1.00 between steps 1000
# and 1500.  The preset and these tiers use pre-LN; the probes ignore the norms (see the task module).
class TriggerTier(Tier):
    """Sizes of the trigger-bigram runs: vocabulary, sequence length, width, steps, evaluation cadence."""

    vocab: int
    seq_len: int
    d_model: int
    steps: int
    eval_every: int
    n_test: int


_TRIGGER_TIERS: dict[str, Tier] = tiers_of(TriggerTier, {
    "smoke": {"vocab": 16, "seq_len": 24, "d_model": 32, "steps": 30, "eval_every": 10, "n_test": 32},
    "quick": {"vocab": 64, "seq_len": 64, "d_model": 64, "steps": 2000, "eval_every": 100, "n_test": 256},
    "full": {"vocab": 65, "seq_len": 256, "d_model": 256, "steps": 10000, "eval_every": 250, "n_test": 512,
             "faithful": True},
})


_TRIGGER_SERIES = ("icl_loss", "first_loss", "bigram_loss", "bigram_optimal_loss", "icl_accuracy",
                   "probe_induction_output", "probe_induction_key", "probe_induction_key_triggers", "probe_prev_token")


def trigger_config(seed: int, n_layers: int, vocab: int, seq_len: int, d_model: int, steps: int, eval_every: int,
                   n_test: int):
    from theorylab.runs import build_run_config

    return build_run_config("bigram_triggers", [
        f"task.vocab={vocab}", f"task.seq_len={seq_len}", f"task.n_test={n_test}", f"model.n_layers={n_layers}",
        f"model.d_model={d_model}", f"train.steps={steps}", f"train.eval_every={eval_every}",
    ], seed=seed)


@register_claim
class InductionFromTriggers(Claim):
    id = "bietti2023.induction_from_triggers"
    title = "Trigger-token bigrams: a two-layer attention-only transformer learns the in-context outputs"
    citation = BIETTI
    statement = ("On bigram sequences in which each trigger token is followed by a sequence-specific output token, "
                 "a two-layer attention-only transformer learns to predict the output at the trigger's second and "
                 "later occurrences (an induction head), while the first occurrences stay unpredictable, and the "
                 "second layer's value/output matrices become an associative memory that copies the attended "
                 "token (the paper's memory-recall probe).")
    deviations = {
        "bigram chain": "drawn from a seeded Dirichlet(0.5) over 64 tokens; the paper estimates it from character-level "
                        "Shakespeare, which cannot be downloaded here",
        "layer norm": "pre-LN in every tier (without it our pilots stalled at copying the most frequent token); the "
                      "paper's analysis model has none, and the probes read the weights without the norms",
        "quick tier": "sequences of 64 (the paper: 256), width 64 (256), 2,000 steps: a proxy that cannot refute",
    }
    rule = all_of(
        Criterion("icl_accuracy", ">=", 0.9,
                  why="the paper's trained model predicts in-context outputs almost perfectly; chance is 1/vocab"),
        Criterion("icl_minus_first_accuracy", ">=", 0.5,
                  why="the gain is in context: the same outputs at first occurrences cannot be predicted"),
        Criterion("probe_induction_output", ">=", 0.5,
                  why="the copying memory exists: over half the vocabulary recalled (the paper's probes approach 1)"),
        premises=[Premise("the model fitted the global bigrams", "bigram_excess_loss", "<=", 0.1,
                          why="on bigram positions the loss is within 0.1 nat of the chain's exact Bayes loss: "
                              "the weights learned the global statistics the induction mechanism works beside")],
    )
    tiers = _TRIGGER_TIERS
    seeds = {"smoke": 2, "quick": 3, "full": 5}
    decides = "more seeds or the full tier (longer sequences, more steps)"
    extra_quantities = ("first_accuracy", "bigram_excess_loss", "probe_induction_key", "probe_induction_key_triggers",
                        "probe_prev_token", "prev_token_after_trigger_l0", "trigger_induction_score_l1",
                        "icl_accuracy_one_layer")

    def experiment(self, tier, seed):
        p = self.params(tier)
        return {"two_layer": trigger_config(seed, 2, **p), "one_layer": trigger_config(seed, 1, **p)}

    def measure(self, tier, seed, runs):
        two, one = runs["two_layer"].final, runs["one_layer"].final
        curves = {"steps": runs["two_layer"].series("test", "icl_loss")[0]}
        for name in _TRIGGER_SERIES:
            curves[name] = runs["two_layer"].series("test", name)[1]
        return {"icl_accuracy": two["test/icl_accuracy"], "first_accuracy": two["test/first_accuracy"],
                "icl_minus_first_accuracy": two["test/icl_accuracy"] - two["test/first_accuracy"],
                "bigram_excess_loss": two["test/bigram_loss"] - two["test/bigram_optimal_loss"],
                "probe_induction_output": two["test/probe_induction_output"],
                "probe_induction_key": two["test/probe_induction_key"],
                "probe_induction_key_triggers": two["test/probe_induction_key_triggers"],
                "prev_token_after_trigger_l0": two["test/prev_token_after_trigger_l0"],
                "probe_prev_token": two["test/probe_prev_token"],
                "trigger_induction_score_l1": two["test/trigger_induction_score_l1"],
                "icl_accuracy_one_layer": one["test/icl_accuracy"], "curves": curves}

    def figures(self, evidence):
        from theorylab.figures.icl import trigger_dynamics

        return {"training_dynamics": trigger_dynamics([evidence.series[s]["curves"] for s in evidence.seeds])}
