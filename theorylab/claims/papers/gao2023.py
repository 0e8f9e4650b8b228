"""Gao, Schulman and Hilton (2023), "Scaling Laws for Reward Model Overoptimization", on a problem small enough to
enumerate.

Their finding (§3, Figure 1): optimising a proxy reward model, trained on labels from a "gold" reward, raises the
gold reward at first and then lowers it as the policy moves away from the initial policy, while the proxy keeps
rising (Goodhart's law).  With ``d = sqrt(KL(pi || pi_init))`` the gold reward follows ``d (alpha - beta d)``
under best-of-n sampling and ``d (alpha - beta log d)`` under RL (their eqs. 1-2).

theorylab builds the same pipeline on the {a, b}-string problem (:mod:`theorylab.tasks.preference`) with the
*peaked* gold reward ``r(y) = k - k^2 / (2 peak L)`` (``k`` = count of a, highest at ``k = peak L``): a proxy
reward model linear in the tokens (``w . phi(y)``, ``phi_i = 1`` when token ``i`` is a) is fitted by maximum
likelihood (:func:`theorylab.measures.alignment.fit_bradley_terry`) to a few hundred pairs drawn from the
reference and labelled by Bradley–Terry on the gold reward.  Most reference strings lie below the peak, so the
proxy learns "more a is better" and cannot represent the turn beyond the peak.  Then, exactly, over all ``2^L``
strings:

* best-of-n under the proxy for ``n`` from 1 to 10^4 (:func:`~theorylab.measures.alignment.best_of_n_policy`,
  its KL exact);
* RL: the KL-regularised optimum of the proxy, ``pi ∝ pi_ref exp(lam r_proxy)``, for a growing ``lam`` (the path
  that KL-penalised policy optimisation converges along as its penalty is lowered).

One claim, ``gao2023.overoptimization``: the gold reward rises then falls along both paths while the proxy keeps
rising, and Gao et al.'s forms fit the gold curves with ``beta > 0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Evidence, Tier, all_of, happened, tiers_of
from theorylab.claims.citations import GAO2023


class OveroptTier(Tier):
    """Strings of ``length`` tokens, gold reward peaked at ``peak``; ``n_pairs`` labelled pairs, a ridge ``l2``
    on the proxy's weights; best-of-n up to ``max_n``; ``lams`` tilts of the RL path from ``lam_lo`` to
    ``lam_hi``; ``bootstrap`` resamples for the fits' intervals."""

    length: int = 12
    peak: float = 0.7
    n_pairs: int = 300
    l2: float = 1.0
    max_n: int = 10_000
    lams: int = 40
    lam_lo: float = 0.01
    lam_hi: float = 30.0
    bootstrap: int = 200


# Quick: in a six-seed pilot (L = 12, 300 pairs) the gold gain along the RL path peaked at 0.30 to 0.37 and ended at
# -0.15 to 0.10, the proxy rose monotonically, and the RL form's beta was 0.29 to 0.38 with intervals well above
# 0; best-of-n's gold gain peaked near 0.45 and ended at -0.22.  A few seconds a seed.  The setting is ours, not
# Gao et al.'s (no language model, a hand-made gold reward), so no tier may refute.
TIERS: dict[str, Tier] = tiers_of(OveroptTier, {
    "smoke": {"length": 8, "n_pairs": 150, "max_n": 1000, "lams": 20, "bootstrap": 50},
    "quick": {},
    "full": {"length": 14, "n_pairs": 1000, "max_n": 100_000, "lams": 80, "bootstrap": 1000},
})

DROP = 0.25  # a quarter of the peak gain lost by the end: the curves are exact, so any fall is real; this one is large
RANK = 0.5  # the proxy ranks strings like the gold reward (Spearman over the reference's support) at least this well


def curves(tier: Tier, seed: int) -> dict[str, Any]:
    """The proxy and the exact best-of-n and RL paths for one seed: per path ``kl`` [m] (nats), ``gold`` and
    ``proxy`` [m] (gains over the reference), plus the proxy's Spearman correlation with gold."""
    from scipy.stats import spearmanr

    from theorylab.measures.alignment import best_of_n_policy, fit_bradley_terry, kl_divergence, tilted_policy
    from theorylab.tasks.preference import ABStringsConfig, ab_tabular, sample_pairs, strings

    t = tier
    problem = ab_tabular(ABStringsConfig(length=t["length"], reward="peaked", peak=t["peak"]))
    pi_ref, gold = problem.pi_ref[0], problem.r[0]
    phi = (strings(t["length"]).numpy() == 0).astype(np.float64)  # the proxy's features: token i is a
    rng = np.random.default_rng([seed, 0x6A0])
    _, w_i, l_i = sample_pairs(problem, t["n_pairs"], rng, "bt")
    w = fit_bradley_terry(phi[w_i], phi[l_i], l2=t["l2"])
    proxy = phi @ w
    g0, p0 = float(pi_ref @ gold), float(pi_ref @ proxy)
    out: dict[str, Any] = {"w": w.tolist(), "rank": float(spearmanr(proxy, gold).statistic)}
    ns = np.unique(np.round(np.geomspace(1, t["max_n"], 30)).astype(int))
    paths = {"bon": [best_of_n_policy(pi_ref, proxy, int(n)) for n in ns],
             "rl": [tilted_policy(pi_ref, proxy, float(lam)) for lam in np.geomspace(t["lam_lo"], t["lam_hi"], t["lams"])]}
    for name, pols in paths.items():
        out[name] = {"kl": [kl_divergence(p, pi_ref) for p in pols], "gold": [float(p @ gold) - g0 for p in pols],
                     "proxy": [float(p @ proxy) - p0 for p in pols]}
    out["bon"]["n"] = ns.tolist()
    return out


def overopt_measures(tier: Tier, seed: int) -> dict[str, Any]:
    """Per-seed quantities: the fraction of the peak gold gain lost by the end of each path, whether the proxy
    rose monotonically along both, the fitted coefficients with their bootstrap intervals, and the premises."""
    from theorylab.measures.alignment import best_of_n_kl, fit_overoptimization

    c = curves(tier, seed)
    out: dict[str, Any] = {"proxy_rank": c["rank"], "curves": c}
    mono, rise = [], []
    for name in ("bon", "rl"):
        kl, gold, proxy = (np.asarray(c[name][k]) for k in ("kl", "gold", "proxy"))
        peak = float(gold.max())
        out[f"{name}_gold_peak"], out[f"{name}_gold_end"] = peak, float(gold[-1])
        out[f"{name}_drop"] = (peak - float(gold[-1])) / peak if peak > 0 else float("nan")
        mono.append(float(np.all(np.diff(proxy) >= -1e-12)))
        rise.append(peak)
        keep = kl > 1e-9
        fit = fit_overoptimization(kl[keep], gold[keep], name, bootstrap=tier["bootstrap"], seed=seed)
        out[f"{name}_alpha"], out[f"{name}_beta"], out[f"{name}_d_star"] = fit.alpha, fit.beta, fit.d_star
        lo, hi = fit.ci.get("beta", (float("nan"), float("nan")))
        out[f"{name}_beta_lo"], out[f"{name}_beta_hi"] = lo, hi
        a_lo, a_hi = fit.ci.get("alpha", (float("nan"), float("nan")))
        out[f"{name}_alpha_lo"], out[f"{name}_alpha_hi"] = a_lo, a_hi
        c[name]["fit"] = fit.to_dict()
    out["proxy_monotone"] = min(mono)
    out["gold_rise_min"] = min(rise)
    n = np.asarray(c["bon"]["n"])
    formula = np.array([best_of_n_kl(int(k)) for k in n])
    # log n - (n - 1)/n is the KL when no two outcomes tie and n is small against the support; on a finite set it is
    # an upper bound (Beirami et al. 2024), reached only for small n
    out["bon_kl_formula_excess"] = float(np.max(np.asarray(c["bon"]["kl"]) - formula))
    return out


@register_claim
class Overoptimization(Claim):
    id = "gao2023.overoptimization"
    title = "Optimising a proxy reward model raises the gold reward, then lowers it, while the proxy keeps rising"
    citation = GAO2023
    statement = ("Optimising a reward model trained on a few hundred preference labels, by best-of-n sampling or by "
                 "KL-regularised RL, first raises and then lowers the gold reward as KL(pi || pi_ref) grows, while the "
                 "proxy reward keeps rising; the gold reward against d = sqrt(KL) follows d (alpha - beta d) for "
                 "best-of-n and d (alpha - beta log d) for RL with beta > 0 (Gao et al. 2023, §3, eqs. 1-2).")
    tiers = TIERS
    seeds = {"smoke": 2, "quick": 5, "full": 10}
    decides = "a faithful setting (a learned gold reward and language-model policies, Gao et al.'s §2), which this "\
              "lab does not have; more seeds only narrow the coefficients"
    rule = all_of(
        Criterion("bon_drop", ">=", DROP, stat="every",
                  why="best-of-n: at the largest n the gold gain has lost at least a quarter of its peak (exact "
                      "curves: the fall is no sampling noise)"),
        Criterion("rl_drop", ">=", DROP, stat="every", why="RL path: the same"),
        Criterion("proxy_monotone", ">=", 1.0, stat="every",
                  why="the proxy reward never falls along either path (1 = monotone): it is the gold reward, not "
                      "the optimised one, that turns"),
        Criterion("bon_beta_lo", ">", 0.0, stat="every",
                  why="the best-of-n form bends down: the 95% bootstrap interval of its beta lies above 0"),
        Criterion("rl_beta_lo", ">", 0.0, stat="every", why="the RL form bends down likewise"),
        premises=(happened("proxy_rank", ">=", RANK, name="the proxy is a reward model worth optimising",
                           why="Spearman correlation with the gold reward over all strings at least 0.5: optimising it "
                               "starts by helping"),
                  happened("gold_rise_min", ">", 0.05, name="the gold reward rises first",
                           why="on both paths the gold gain peaks above 0.05 (rewards count tokens)")),
    )
    extra_quantities = ("bon_alpha", "bon_beta", "bon_d_star", "rl_alpha", "rl_beta", "rl_d_star", "bon_gold_peak",
                        "rl_gold_peak", "bon_kl_formula_excess")
    deviations = {
        "gold reward": "a hand-made peaked reward on {a, b} strings (count of a, best at 70% a) instead of a 6B "
                       "reward model trained on human labels; the proxy is linear in the tokens (it cannot represent "
                       "the turn) instead of a smaller transformer reward model",
        "policies": "exact distributions over all 2^12 strings instead of sampled language-model policies",
        "RL": "the path of KL-regularised optima pi ∝ pi_ref exp(lam r_proxy) for a growing lam, not PPO training; "
              "Gao et al. observe that their KL penalty acts like early stopping along the same path",
        "tier": "no tier is faithful to their setting, so this claim can be supported or inconclusive, never refuted",
    }

    def measure(self, tier, seed, runs):
        return overopt_measures(self.params(tier), seed)

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        from theorylab.figures.alignment import overoptimization
        from theorylab.measures.alignment import OveroptimizationFit

        seeds = [s for s in evidence.seeds if "curves" in evidence.series.get(s, {})]
        if not seeds:
            return {}
        c = evidence.series[seeds[0]]["curves"]
        data, fits = {}, {}
        for name, label in (("bon", "best-of-n"), ("rl", "RL (KL-regularised optima)")):
            d = np.sqrt(np.clip(np.asarray(c[name]["kl"]), 0.0, None))
            data[label] = (d, c[name]["gold"], c[name]["proxy"])
            f = c[name]["fit"]
            fit = OveroptimizationFit(name, f["alpha"], f["beta"], {})
            grid = np.linspace(max(d[d > 0].min(), 1e-3), d.max(), 100)
            fits[label] = (grid, fit.predict(grid))
        return {"overoptimization": overoptimization(
            data, fits, title=f"seed {seeds[0]} ({evidence.tier} tier): gold and proxy reward against sqrt(KL)")}

    def tables(self, evidence: Evidence) -> dict[str, dict[str, Any]]:
        rows = []
        for s in evidence.seeds:
            v = evidence.per_seed.get(s, {})
            if "bon_alpha" not in v:
                continue
            for m in ("bon", "rl"):
                rows.append([s, m, f"{v[f'{m}_alpha']:.3f} [{v[f'{m}_alpha_lo']:.3f}, {v[f'{m}_alpha_hi']:.3f}]",
                             f"{v[f'{m}_beta']:.3f} [{v[f'{m}_beta_lo']:.3f}, {v[f'{m}_beta_hi']:.3f}]",
                             f"{v[f'{m}_d_star']:.3f}", f"{v[f'{m}_gold_peak']:.3f}", f"{v[f'{m}_drop']:.2f}"])
        return {"fits": {"columns": ["seed", "path", "alpha [95% bootstrap]", "beta [95% bootstrap]",
                                     "d* (peak)", "peak gold gain", "fraction of the peak lost"], "rows": rows,
                         "note": "bon: gold = d (alpha - beta d); rl: gold = d (alpha - beta log d); d = sqrt(KL)"}}


__all__ = ["Overoptimization", "curves", "overopt_measures", "TIERS"]
