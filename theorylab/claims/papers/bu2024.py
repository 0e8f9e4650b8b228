"""Bu et al. (2024), multi-concept in-context learning, on the ``concepts`` task:
``bu2024.exponential_convergence`` and ``bu2024.ood_generalization``.
"""

from __future__ import annotations

from typing import Any

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Premise, Tier, all_of, happened, tiers_of
from theorylab.claims.citations import BU2024 as BU


# The task's defaults (d 32, K 4, L 8, sigma 0.1; see theorylab.tasks.concepts) and the
# "concepts" preset: one softmax-attention + ReLU-MLP block, batch 64.  Pilots (seed 0): SGD (the
# paper's optimizer) at lr 0.1 (600 steps), lr 0.5 (400 steps) and lr 0.1 with momentum 0.9 and
# d_mlp 256 (1,000 steps) all stalled at a 0-1 error of about 0.25, the error of a context-free
# shortcut and worse than the best predictor that reads the query alone (0.154 on the seed-0 test
# set, ConceptsTask.context_free_error): the models never learned in context.  AdamW lr 3e-3 with
# d_mlp 256 reached 0 test error in 1,500 steps, with OOD short/long/skewed errors at most 0.002
# but 0.47 on switched label features.  The paper's numeric settings are not available to us, so
# every tier is a proxy, and the tiers train with AdamW (a listed deviation).
class ConceptTier(Tier):
    """Sizes of the concept-ICL runs: optimizer, learning rate, MLP width, steps, evaluation cadence,
    test prompts per evaluation set."""

    optimizer: str
    lr: float
    d_mlp: int
    steps: int
    eval_every: int
    n_test: int


_CONCEPT_TIERS: dict[str, Tier] = tiers_of(ConceptTier, {
    "smoke": {"optimizer": "adamw", "lr": 3e-3, "d_mlp": 64, "steps": 40, "eval_every": 10, "n_test": 128},
    "quick": {"optimizer": "adamw", "lr": 3e-3, "d_mlp": 256, "steps": 1500, "eval_every": 25, "n_test": 512},
    "full": {"optimizer": "adamw", "lr": 3e-3, "d_mlp": 256, "steps": 3000, "eval_every": 25, "n_test": 2048},
})
_DEVIATIONS = {
    "optimizer": "AdamW lr 3e-3 (the paper: SGD, settings not available); SGD pilots never learned in context "
                 "(0-1 error 0.25, above the best context-free predictor's 0.15)",
    "data model": "our reconstruction from the paper's description (d 32, K 4, L 8, sigma 0.1; see "
                  "theorylab.tasks.concepts); every tier is a proxy and cannot refute",
}
_IN_CONTEXT = happened("below_context_free", ">=", 0.05, name="the model learned in context",
                       why="its in-distribution 0-1 error is at least 5 points below the best predictor that reads "
                           "the query alone (ConceptsTask.context_free_error)")


OOD_SETS = ("ood_short", "ood_long", "ood_skewed", "ood_switched")


def concepts_config(seed: int, optimizer: str, lr: float, d_mlp: int, steps: int, eval_every: int, n_test: int):
    from theorylab.runs import build_run_config

    return build_run_config("concepts", [f"train.optimizer={optimizer}", f"train.lr={lr}", f"model.d_mlp={d_mlp}",
                                         f"train.steps={steps}", f"train.eval_every={eval_every}",
                                         f"task.n_test={n_test}"], seed=seed)


def _context_free(view) -> float:
    task = view.task()
    return task.context_free_error(task.eval_sets()["test"])


class _ConceptClaim(Claim):
    citation = BU
    deviations = _DEVIATIONS
    tiers = _CONCEPT_TIERS
    seeds = {"smoke": 2, "quick": 3, "full": 5}

    def experiment(self, tier, seed):
        return {"main": concepts_config(seed, **self.params(tier))}

    @staticmethod
    def curves(view) -> dict[str, list[float]]:
        steps, err = view.series("test", "error01")
        out = {"steps": [int(s) for s in steps], "test_error01": err}
        for name in ("loss", "attn_same_label", "w_concept", "w_complement", "w_noise", "mlp_norm"):
            out[name] = view.series("test", name)[1]
        for split in OOD_SETS:
            out[f"{split}_error01"] = view.series(split, "error01")[1]
        return out

    def _figure(self, evidence, keys: tuple[tuple[str, ...], ...], titles: tuple[str, ...], log: tuple[bool, ...]):
        from theorylab.figures.icl import panels

        curves = [c for c in (evidence.series.get(s, {}).get("curves") for s in evidence.seeds) if c]
        return panels(curves, keys, titles, log)


@register_claim
class ExponentialConvergence(_ConceptClaim):
    id = "bu2024.exponential_convergence"
    title = "0-1 error of in-context concept classification falls exponentially to near the Bayes error"
    statement = ("One softmax-attention + ReLU-MLP block trained with SGD and cross-entropy on concept-based "
                 "sparse-coding prompts reaches a test 0-1 error near the Bayes error, and on the way the log 0-1 "
                 "error falls linearly in the number of iterations (exponential convergence).")
    rule = all_of(
        Criterion("rate_per_1k", ">", 0.0, why="a positive fitted rate: the error decreases exponentially"),
        Criterion("fit_r2", ">=", 0.8,
                  why="log error is close to a straight line in the iteration count on the decreasing stretch"),
        Criterion("excess_error", "<=", 0.05,
                  why="final test 0-1 error within 5 points of the Bayes error (about 1e-9 here)"),
        premises=[_IN_CONTEXT],
    )
    extra_quantities = ("final_error01", "bayes_error", "context_free_error", "fit_points", "attn_same_label_final")

    def measure(self, tier, seed, runs):
        from theorylab.measures.icl import exponential_rate
        from theorylab.tasks.concepts import bayes_error

        v = runs["main"]
        c = self.curves(v)
        n_test = self.params(tier)["n_test"]
        fit = exponential_rate(c["steps"], c["test_error01"], floor=1.0 / n_test)
        bayes = bayes_error(v.config.task)
        cf = _context_free(v)
        return {"rate_per_1k": 1000 * fit["rate"], "fit_r2": fit["r2"], "fit_points": fit["n"],
                "final_error01": c["test_error01"][-1], "bayes_error": bayes, "context_free_error": cf,
                "below_context_free": cf - c["test_error01"][-1],
                "excess_error": c["test_error01"][-1] - bayes,
                "attn_same_label_final": c["attn_same_label"][-1], "curves": c}

    def figures(self, evidence):
        return {"training_dynamics": self._figure(
            evidence, (("test_error01", "loss"), ("attn_same_label",), ("w_concept", "w_complement", "w_noise"),
                       ("mlp_norm",)),
            ("test 0-1 error and loss", "attention on same-label demos", "max |<direction, MLP weights>|",
             "MLP weight norm"), (True, False, False, False))}


@register_claim
class OodGeneralization(_ConceptClaim):
    id = "bu2024.ood_generalization"
    title = "Out of distribution, the in-context concept classifier's error stays low"
    statement = ("Trained on prompts of L demonstrations with uniform concepts, the model keeps a low 0-1 error on "
                 "prompts of L/2 and 2L demonstrations, under a skewed concept distribution, and when every "
                 "concept's label features are switched to another concept's.")
    rule = all_of(
        *[Criterion(f"{s}_error01", "<=", 0.1,
                    why="'stays low': at most 10% errors (chance is 50%)") for s in OOD_SETS],
        premises=[_IN_CONTEXT,
                  Premise("in distribution the error is near the Bayes error", "excess_error", "<=", 0.02,
                          why="out-of-distribution errors are judged only once the in-distribution error is within 2 "
                              "points of the Bayes error (about 1e-9 here)")],
    )
    extra_quantities = ("test_error01", "context_free_error")

    def measure(self, tier, seed, runs):
        from theorylab.tasks.concepts import bayes_error

        c = self.curves(runs["main"])
        cf = _context_free(runs["main"])
        out: dict[str, Any] = {"test_error01": c["test_error01"][-1], "curves": c, "context_free_error": cf,
                               "below_context_free": cf - c["test_error01"][-1],
                               "excess_error": c["test_error01"][-1] - bayes_error(runs["main"].config.task)}
        for s in OOD_SETS:
            out[f"{s}_error01"] = c[f"{s}_error01"][-1]
        return out

    def figures(self, evidence):
        keys = tuple(("test_error01", f"{s}_error01") for s in OOD_SETS)
        return {"ood_error": self._figure(evidence, keys, tuple(s.replace("ood_", "OOD: ") for s in OOD_SETS),
                                          (True,) * len(OOD_SETS))}
