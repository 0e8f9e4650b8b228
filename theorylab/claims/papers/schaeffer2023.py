"""Schaeffer, Miranda and Koyejo (2023), "Are Emergent Abilities of Large Language Models a Mirage?", on a
task built to meet the premises of their argument.

Their §2 argument: if each of the ``L`` tokens of an answer is right with probability ``p(N)`` that rises
smoothly with the number of parameters ``N``, exact match is about ``p(N)^L``, which stays near zero and then
climbs steeply: an "emergent" ability (Wei et al. 2022) made by the metric.  Re-scored with a linear or
continuous metric (per-token accuracy, token edit distance, the log-probability of the right answer) the same
outputs improve smoothly.  Their third prediction: longer answers look sharper, and the apparent threshold
moves to larger models.

theorylab sweeps model size on the scaling machinery (:func:`theorylab.sweep.scaling.grid_plan`, one token
budget, a ladder of one-layer widths) over the ``recall`` task (:mod:`theorylab.tasks.recall`): queries of
``L`` independent keys, Zipf-distributed, whose answer tokens are their values in a fixed random table, so
per-token errors are independent and a capacity-limited model's per-token accuracy rises smoothly with
``log N``.  Two claims read the same runs:

* ``schaeffer2023.metric_mirage``: exact match looks emergent (a logistic step in ``log N`` beats every smooth
  curve by AIC, and the smooth curve of the smaller models does not extrapolate to the larger ones), ``p^L``
  from per-token accuracy predicts it at every size, and under the continuous re-scorings (per-token accuracy,
  token edit distance, answer log-probability) the step is gone.
* ``schaeffer2023.longer_answers_sharper``: the size at which exact match reaches one half grows with the
  answer length (answers of ``L / 4`` and ``L`` tokens, scored on the same model outputs).

Smooth against sharp is :func:`theorylab.measures.emergence.compare_fits` (AIC margin 10, held-out
extrapolation error above a tenth of the metric's range); see its docstring for the reasons of both numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Evidence, Tier, all_of, happened, tiers_of
from theorylab.claims.citations import SCHAEFFER2023 as SCHAEFFER


class MirageTier(Tier):
    """A size sweep on the recall task: one-layer models of widths ``widths`` (one head, d_mlp = 4 d_model),
    all trained ``steps`` steps of ``batch_size`` queries at learning rate ``lr``; the recall task with an
    ``alphabet`` of key tokens (``alphabet^2`` keys), answers of ``answer_length`` tokens over ``n_values``
    values, Zipf exponent ``zipf`` and ``n_test`` test queries; ``holdout`` largest sizes held out of the
    extrapolation test; ``bootstrap`` resamples for the transition point's interval."""

    widths: tuple[int, ...]
    steps: int
    batch_size: int = 128
    lr: float = 1e-2
    alphabet: int = 64
    answer_length: int = 8
    n_values: int = 16
    zipf: float = 1.0
    n_test: int = 2048
    holdout: int = 2
    bootstrap: int = 200


# Quick: ten widths from 3 to 64 (about 5e2 to 6e4 parameters), 2,000 steps of 128 queries each.  In a one-seed
# pilot (seed 0) per-token accuracy rose from 0.36 to 1.0 almost linearly in log N, exact match on 8 tokens from
# 0.000 to 1.0 with |exact match - p^8| <= 0.011 at every size; about 3.5 CPU minutes a seed on two cores.
# The full tier has twice the sizes over a wider range, 16-token answers and five seeds: the conditions of the
# toy model of §2 (independent answer tokens, a smoothly rising per-token accuracy) with the resolution to
# decide, so it may refute.
TIERS: dict[str, Tier] = tiers_of(MirageTier, {
    "smoke": {"widths": (2, 3, 4, 6, 8, 12, 16), "steps": 60, "batch_size": 32, "alphabet": 8, "answer_length": 4,
              "n_test": 128, "bootstrap": 0},
    "quick": {"widths": (3, 4, 6, 8, 12, 16, 24, 32, 48, 64), "steps": 2000},
    "full": {"widths": (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128, 192), "steps": 6000,
             "alphabet": 128, "answer_length": 16, "n_test": 8192, "holdout": 3, "bootstrap": 400,
             "faithful": True},
})

SEEDS = {"smoke": 2, "quick": 3, "full": 5}

# The continuous re-scorings, as the task logs them (test split): Schaeffer et al.'s linear metric (token edit
# distance) and continuous one (here the log-probability of the right answer), and per-token accuracy itself.
CONTINUOUS = {"per-token accuracy": "accuracy", "token edit distance": "edit_distance",
              "answer log-probability": "answer_log_prob"}

# Exact match within 0.05 of p^L at every size.  On 2,048 test queries an exact match has a standard error of
# at most 0.011, so 0.05 is more than four of them: a miss that large is a failure of the prediction, not noise.
PREDICTION_TOL = 0.05


def plan_for(tier: Tier, seed: int):
    """The tier's size sweep for one seed: :func:`theorylab.sweep.scaling.grid_plan` over one-layer shapes of
    the tier's widths and one token budget (``steps`` steps of ``batch_size`` queries)."""
    from theorylab.sweep.scaling import Training, grid_plan

    task = {"name": "recall", "alphabet": tier["alphabet"], "answer_length": tier["answer_length"],
            "n_values": tier["n_values"], "zipf": tier["zipf"], "n_test": tier["n_test"]}
    seq = 3 * tier["answer_length"] - 1
    tokens = float(tier["steps"] * tier["batch_size"] * seq)
    shapes = [(int(d), 1, 1) for d in tier["widths"]]
    training = Training(batch_size=tier["batch_size"], min_steps=1, lr=tier["lr"], warmup=0.025, evals=2)
    return grid_plan(task, None, (tokens, tokens, 1), seed=seed, training=training,
                     shapes=shapes)


def half_point(N: np.ndarray, y: np.ndarray, level: float = 0.5) -> float:
    """The first N (parameters) at which ``y`` reaches ``level``, interpolated linearly in log10 N
    (:func:`theorylab.measures.phases.interpolated_crossing`); nan if it never does.  ``N``, ``y``: [n] sorted
    by N."""
    from theorylab.measures.phases import interpolated_crossing

    return interpolated_crossing(N, y, level, log_x=True)


def sweep_measures(tier: Tier, seed: int, runs: dict[str, Any]) -> dict[str, Any]:
    """Per-seed quantities of the sweep: the metric curves over N, the fits of exact match and of every
    continuous re-scoring (:func:`theorylab.measures.emergence.compare_fits`) and the threshold sizes."""
    from theorylab.measures.emergence import compare_fits
    from theorylab.tasks.recall import prefix_lengths

    plan = plan_for(tier, seed)
    L = int(tier["answer_length"])
    short = prefix_lengths(L)[-3] if len(prefix_lengths(L)) >= 3 else 1  # L / 4 for a power of two
    rows = []
    for r in plan.runs:
        v = runs.get(r.name)
        if v is None or v.status != "finished":
            continue
        m = v.final
        rows.append((r.N, {k: float(m.get(f"test/{k}", math.nan)) for k in
                           ("accuracy", "exact_match", "edit_distance", "answer_log_prob", "loss",
                            f"exact_match_{short}")}))
    rows.sort(key=lambda t: t[0])
    out: dict[str, Any] = {"runs_finished": len(rows) / max(len(plan.runs), 1), "answer_length": float(L),
                           "short_length": float(short)}
    if len(rows) < 5 + int(tier["holdout"]):
        return out
    N = np.array([n for n, _ in rows], dtype=np.float64)
    col = {k: np.array([m[k] for _, m in rows]) for k in rows[0][1]}
    p, em = col["accuracy"], col["exact_match"]
    kw = {"holdout": int(tier["holdout"]), "bootstrap": int(tier["bootstrap"]), "seed": seed}
    fe = compare_fits(N, em, **kw)
    fits = {name: compare_fits(N, col[key], holdout=int(tier["holdout"]), bootstrap=0)
            for name, key in CONTINUOUS.items()}
    em_short = col[f"exact_match_{short}"]
    h_long, h_short = half_point(N, em), half_point(N, em_short)
    out.update({
        "exact_sharp": float(fe.sharp_wins),
        "exact_delta_aic": fe.delta_aic,
        "exact_holdout_error": fe.holdout_error_smooth,
        "exact_x0": fe.sharp.x0, "exact_x0_lo": fe.x0_ci[0], "exact_x0_hi": fe.x0_ci[1],
        "exact_width_decades": fe.sharp.width,
        "prediction_error": float(np.max(np.abs(em - p**L))),
        "continuous_sharp": float(sum(f.sharp_wins for f in fits.values())),
        **{f"{key}_delta_aic": fits[name].delta_aic for name, key in CONTINUOUS.items()},
        "exact_min": float(em.min()), "exact_max": float(em.max()),
        "per_token_min": float(p.min()), "per_token_max": float(p.max()),
        "half_N_long": h_long, "half_N_short": h_short,
        "threshold_ratio": h_long / h_short if h_short > 0 else math.nan,
        "curves": {"N": N.tolist(), **{k: v.tolist() for k, v in col.items()}, "p_to_the_L": (p**L).tolist(),
                   "exact_fit": {"lo": fe.sharp.lo, "hi": fe.sharp.hi, "x0": fe.sharp.x0, "width": fe.sharp.width},
                   "sharp": {CONTINUOUS[name]: bool(f.sharp_wins) for name, f in fits.items()}
                   | {"exact_match": fe.sharp_wins}},
    })
    return out


_SPANS = (
    happened("runs_finished", ">=", 1.0, name="every size trained its whole budget",
             why="a missing size leaves a hole in the curve that the fits would read as a jump"),
    happened("exact_min", "<=", 0.1, name="the smallest models lack the ability",
             why="exact match at most 0.1 at the small end of the sweep: Wei et al.'s 'not present in smaller "
                 "models'"),
    happened("exact_max", ">=", 0.9, name="the largest models have it",
             why="exact match at least 0.9 at the large end: the sweep spans the whole transition"),
)


class _Sweep(Claim):
    tiers = TIERS
    seeds = SEEDS
    citation = SCHAEFFER
    decides = "more seeds, or the full tier (more sizes, 16-token answers, 8,192 test queries)"
    deviations = {
        "models and task": "one-layer transformers of about 5e2 to 6e4 parameters memorising a random table of "
                           "4,096 keys (quick tier) instead of GPT-3 / InstructGPT on 2-digit multiplication and "
                           "4-digit addition; the task is built so that the premises of the §2 toy model hold "
                           "(independent answer tokens, per-token accuracy rising smoothly with log N)",
        "scale axis": "all parameters, embeddings included; one token budget for every size",
        "smooth model": "a line in log N or a power-law approach to a limit, the better by AIC; Schaeffer et al. "
                        "show the smooth curves as plots and fit no model",
        "continuous metric": "the log-probability of the whole right answer stands for their Brier score",
    }

    def experiment(self, tier, seed):
        return plan_for(self.params(tier), seed).named()

    def measure(self, tier, seed, runs):
        return sweep_measures(self.params(tier), seed, runs)

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        from theorylab.figures.emergence import metrics_vs_scale

        seeds = [s for s in evidence.seeds if s in evidence.series and "curves" in evidence.series[s]]
        if not seeds:
            return {}
        curves = {s: evidence.series[s]["curves"] for s in seeds}
        L = int(evidence.per_seed[seeds[0]]["answer_length"])
        short = int(evidence.per_seed[seeds[0]]["short_length"])
        return {"metrics_vs_params": metrics_vs_scale(
            curves, {f"exact match ({L} tokens)": "exact_match", f"p^{L} from per-token accuracy": "p_to_the_L",
                     f"exact match ({short} token{'s' if short > 1 else ''})": f"exact_match_{short}", "per-token accuracy": "accuracy",
                     "token edit distance / L": ("edit_distance", 1.0 / L),
                     "answer log-probability / L (nats)": ("answer_log_prob", 1.0 / L)},
            xlabel="N (parameters)", title=f"recall, {evidence.tier} tier: each metric against model size")}

    def tables(self, evidence: Evidence) -> dict[str, dict[str, Any]]:
        rows = []
        for s in evidence.seeds:
            v = evidence.per_seed.get(s, {})
            if "exact_x0" in v:
                rows.append([s, f"{v['exact_x0']:.4g} [{v['exact_x0_lo']:.4g}, {v['exact_x0_hi']:.4g}]",
                             f"{v['exact_delta_aic']:.1f}", f"{v['accuracy_delta_aic']:.1f}",
                             f"{v['edit_distance_delta_aic']:.1f}", f"{v['answer_log_prob_delta_aic']:.1f}",
                             f"{v['prediction_error']:.4f}"])
        return {"fits": {"columns": ["seed", "exact-match step x0 (params) [95% bootstrap]", "ΔAIC exact match",
                                     "ΔAIC per-token acc.", "ΔAIC edit distance", "ΔAIC answer log-prob",
                                     "max |EM - p^L|"], "rows": rows,
                         "note": "ΔAIC = AIC(smooth) - AIC(logistic step in log N); above 10 favours the step"}}


@register_claim
class MetricMirage(_Sweep):
    id = "schaeffer2023.metric_mirage"
    title = "An emergent jump in exact match is p^L of a smooth per-token accuracy, and vanishes when re-scored"
    statement = ("Over a sweep of model sizes, exact match on L-token answers rises like an emergent ability "
                 "while per-token accuracy p rises smoothly; p^L predicts the exact match at every size, and the "
                 "continuous re-scorings of the same outputs (per-token accuracy, token edit distance, the "
                 "log-probability of the right answer) show no jump (Schaeffer et al. 2023, §2 and §3).")
    rule = all_of(
        Criterion("prediction_error", "<=", PREDICTION_TOL, stat="every",
                  why="p^L predicts exact match within 0.05 at every size: more than four standard errors of an "
                      "exact match on 2,048 queries; every seed is a whole sweep, so the prediction must hold in each"),
        Criterion("continuous_sharp", "<=", 0.0, stat="every",
                  why="none of the three continuous re-scorings is judged a step (compare_fits: AIC margin 10 and "
                      "a failed extrapolation) in any seed"),
        premises=(*_SPANS,
                  happened("exact_sharp", ">=", 1.0, name="exact match looks emergent",
                           why="the jump to be explained must be there: a logistic step in log N beats the smooth "
                               "curves by more than 10 in AIC and the smooth curve of the smaller sizes misses a "
                               "larger one by more than a tenth of the range (1 = judged a step)")),
    )
    extra_quantities = ("exact_x0", "exact_x0_lo", "exact_x0_hi", "exact_width_decades", "exact_delta_aic",
                        "accuracy_delta_aic", "edit_distance_delta_aic", "answer_log_prob_delta_aic")


@register_claim
class LongerAnswersSharper(_Sweep):
    id = "schaeffer2023.longer_answers_sharper"
    title = "Longer answers move the apparent threshold to larger models"
    statement = ("Scored by exact match, the same models' answers of L tokens reach a given accuracy only at "
                 "larger sizes than their answers of L/4 tokens: the apparent threshold of an emergent ability "
                 "moves with the length of the answer, as p^L predicts (Schaeffer et al. 2023, §2, third "
                 "prediction).")
    rule = all_of(
        Criterion("threshold_ratio", ">=", 1.5, stat="log_mean",
                  why="the size at which exact match reaches one half is at least 1.5 times larger for L-token "
                      "answers than for L/4-token answers (geometric mean over seeds): p^L and p^(L/4) reach 1/2 "
                      "at p = 0.917 and 0.707 for L = 8, several times apart in N for a p that grows like log N, "
                      "and 1.5 is above the spacing of neighbouring sizes on the quick ladder (about 1.4x)"),
        premises=_SPANS,
    )
    extra_quantities = ("half_N_long", "half_N_short")


__all__ = ["MetricMirage", "LongerAnswersSharper", "plan_for", "half_point", "sweep_measures", "TIERS"]
