"""Alignment closed forms and preference losses (issue 19, first part): every number checked against its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.measures.alignment import (
    ab_closed_form,
    best_of_n_kl,
    best_of_n_policy,
    deterministic_pair_trajectory,
    ipo_fixed_point,
    kl_divergence,
    kl_optimal_policy,
    population_preference_fit,
    regularized_objective,
    total_variation,
)
from theorylab.models.preference import bradley_terry_loss, dpo_loss, ipo_loss


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_losses_against_their_formulas_on_hand_set_log_probabilities():
    lw, ll = torch.tensor([-1.0, -3.0], dtype=torch.float64), torch.tensor([-2.0, -1.0], dtype=torch.float64)
    rw, rl = torch.tensor([-1.5, -2.0], dtype=torch.float64), torch.tensor([-1.5, -1.5], dtype=torch.float64)
    h = [(-1.0 + 1.5) - (-2.0 + 1.5), (-3.0 + 2.0) - (-1.0 + 1.5)]  # 1.0, -1.5
    beta = 0.5
    d = dpo_loss(lw, ll, rw, rl, beta)
    assert d.tolist() == pytest.approx([-math.log(_sig(beta * x)) for x in h])
    eps = 0.2
    d = dpo_loss(lw, ll, rw, rl, beta, label_smoothing=eps)
    assert d.tolist() == pytest.approx([-(1 - eps) * math.log(_sig(beta * x)) - eps * math.log(_sig(-beta * x))
                                        for x in h])
    assert ipo_loss(lw, ll, rw, rl, beta).tolist() == pytest.approx([(x - 1 / (2 * beta)) ** 2 for x in h])
    free = dpo_loss(lw, ll, None, None, beta)  # reference-free
    assert free.tolist() == pytest.approx([-math.log(_sig(beta * x)) for x in (1.0, -2.0)])
    assert bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.5])).item() == pytest.approx(-math.log(_sig(1.5)))
    with pytest.raises(ConfigError, match="beta"):
        dpo_loss(lw, ll, rw, rl, 0.0)
    with pytest.raises(ConfigError, match="label_smoothing"):
        dpo_loss(lw, ll, rw, rl, 0.5, label_smoothing=0.5)
    with pytest.raises(ConfigError, match="one shape"):
        ipo_loss(lw, ll[:1], rw, rl, 0.5)


def test_the_kl_regularised_optimum_beats_every_other_policy():
    rng = np.random.default_rng(3)
    ref = rng.dirichlet(np.ones(6))
    r = rng.normal(size=6)
    star = kl_optimal_policy(ref, r, 0.5)
    best = regularized_objective(star, ref, r, 0.5)
    for _ in range(200):
        other = rng.dirichlet(np.ones(6))
        assert regularized_objective(other, ref, r, 0.5) <= best + 1e-12
    # the value of the optimum is beta log Z
    assert best == pytest.approx(0.5 * math.log(np.sum(ref * np.exp(r / 0.5))))


def test_population_dpo_recovers_pi_star_to_1e_8():
    rng = np.random.default_rng(0)
    for beta in (0.1, 0.5, 2.0):
        ref = np.exp(rng.normal(size=6))
        ref /= ref.sum()
        r = rng.normal(size=6)
        fit = population_preference_fit(ref, r, beta)
        assert total_variation(fit, kl_optimal_policy(ref, r, beta)) < 1e-8


def test_a_disconnected_pair_graph_pins_only_the_ratios_within_each_block():
    rng = np.random.default_rng(1)
    ref = np.full(6, 1 / 6)
    r = rng.normal(size=6)
    star = kl_optimal_policy(ref, r, 0.5)
    W = np.outer(ref, ref)
    W[:3, 3:] = W[3:, :3] = 0  # no pair between {0, 1, 2} and {3, 4, 5}
    fit = population_preference_fit(ref, r, 0.5, weights=W)
    for block in (slice(0, 3), slice(3, 6)):  # within a block the loss pins pi* ...
        assert fit[block] / fit[block].sum() == pytest.approx(star[block] / star[block].sum(), abs=1e-6)
    assert total_variation(fit, star) > 0.01  # ... but not how the mass splits between the blocks


def test_deterministic_preferences_dpo_has_no_finite_optimum_and_ipo_stops():
    """With P(y_w > y_l) = 1 DPO's margin grows without bound: its loss, about exp(-beta h), falls like 1/t for
    every beta, so pi(y_l) = exp(-h) (uniform reference) falls like t^(-1/beta).  (SETUPS §6.2 says "pi(y_l)
    ~ 1/t for every beta"; its own numbers at beta 0.5 fall a hundredfold a decade, t^-2: it is the loss, and
    pi(y_l)^beta, that go like 1/t.)"""
    steps = [10, 100, 1_000, 10_000, 100_000]
    for beta in (0.25, 0.5, 1.0):
        p = deterministic_pair_trajectory(beta, steps)
        slope = math.log10(p[-1] / p[-2])  # per decade of t, at large t
        assert slope == pytest.approx(-1 / beta, rel=0.02)
        loss = -np.log(1 / (1 + ((p / (1 - p)) ** beta)))  # -log sigmoid(beta h) with h = log(pi_w / pi_l)
        assert loss[-1] * steps[-1] == pytest.approx(loss[-2] * steps[-2], rel=0.02)  # loss ~ 1/t
    # the trajectory at beta 0.5 as SETUPS §6.2 derives it: 4.3e-2, 4.3e-4, 4.1e-6, 4.0e-8, 4.0e-10
    assert deterministic_pair_trajectory(0.5, steps) == pytest.approx([4.3e-2, 4.35e-4, 4.06e-6, 4.0e-8, 4.0e-10],
                                                                      rel=0.02)
    for beta, want in ((0.1, 0.99331), (0.5, 0.73106), (1.0, 0.62246)):
        assert ipo_fixed_point(beta) == pytest.approx(want, abs=5e-6)
        assert 1 - deterministic_pair_trajectory(beta, [2_000], loss="ipo")[0] == pytest.approx(ipo_fixed_point(beta),
                                                                                               abs=1e-9)
        P = np.array([[0.0, 1.0], [0.0, 0.0]])
        fit = population_preference_fit([0.5, 0.5], [0.0, 0.0], beta, loss="ipo", preference=P)
        assert fit[0] == pytest.approx(ipo_fixed_point(beta), abs=1e-8)


def test_ab_strings_closed_form_against_monte_carlo():
    L, beta = 8, 0.5
    c = ab_closed_form(L, beta)
    assert c["p_a"] == pytest.approx(_sig(1 / beta))
    # enumerate all 2^8 strings under pi* = pi_ref exp(r / beta) / Z with r = count of a
    counts = np.array([bin(i).count("1") for i in range(2**L)], dtype=float)
    ref = np.full(2**L, 2.0**-L)
    star = kl_optimal_policy(ref, counts, beta)
    assert star @ counts == pytest.approx(c["reward"], rel=1e-12)
    assert kl_divergence(star, ref) == pytest.approx(c["kl"], rel=1e-12)
    # and Monte Carlo from the i.i.d. form: 200,000 strings
    rng = np.random.default_rng(0)
    x = rng.random((200_000, L)) < c["p_a"]
    n_a = x.sum(1)
    log_ratio = n_a * math.log(c["p_a"] / 0.5) + (L - n_a) * math.log((1 - c["p_a"]) / 0.5)
    assert n_a.mean() == pytest.approx(c["reward"], abs=4 * n_a.std() / math.sqrt(x.shape[0]))
    assert log_ratio.mean() == pytest.approx(c["kl"], abs=4 * log_ratio.std() / math.sqrt(x.shape[0]))


def test_best_of_n_kl_against_enumeration():
    K = 100_000
    ref = np.full(K, 1 / K)
    r = np.random.default_rng(0).permutation(K).astype(float)  # no ties
    for n in (1, 2, 4, 16, 64):
        pol = best_of_n_policy(ref, r, n)
        assert pol.sum() == pytest.approx(1.0)
        assert kl_divergence(pol, ref) == pytest.approx(best_of_n_kl(n), abs=2e-3)
    # with ties the formula is only an upper bound
    tied = np.repeat([0.0, 1.0], K // 2)
    assert kl_divergence(best_of_n_policy(ref, tied, 4), ref) < best_of_n_kl(4)


def test_bad_input():
    with pytest.raises(ConfigError):
        kl_optimal_policy([0.5, 0.6], [0, 1], 1.0)
    with pytest.raises(ConfigError):
        kl_optimal_policy([0.5, 0.5], [0, 1], -1.0)
    with pytest.raises(ConfigError):
        ab_closed_form(0, 1.0)
    with pytest.raises(ConfigError):
        best_of_n_kl(0)
    with pytest.raises(ConfigError):
        population_preference_fit([0.5, 0.5], [0, 1], 1.0, loss="kto")


def test_a_reward_model_recovers_a_known_linear_reward():
    from theorylab.measures.alignment import fit_bradley_terry

    rng = np.random.default_rng(0)
    w_true = np.array([1.5, -0.7, 0.3])
    a, b = rng.normal(size=(20_000, 3)), rng.normal(size=(20_000, 3))
    p = 1 / (1 + np.exp(-(a - b) @ w_true))
    a_wins = rng.random(20_000) < p
    phi_w = np.where(a_wins[:, None], a, b)
    phi_l = np.where(a_wins[:, None], b, a)
    w = fit_bradley_terry(phi_w, phi_l)
    assert w == pytest.approx(w_true, abs=0.05)
    with pytest.raises(ConfigError):
        fit_bradley_terry(phi_w, phi_l[:, :2])


@pytest.mark.parametrize("form", ["bon", "rl"])
def test_overoptimization_forms_are_recovered(form):
    from theorylab.measures.alignment import fit_overoptimization

    kl = np.linspace(0.1, 30, 25)
    d = np.sqrt(kl)
    alpha, beta = 1.2, 0.15
    gold = d * (alpha - beta * (d if form == "bon" else np.log(d)))
    noisy = gold + np.random.default_rng(0).normal(scale=0.01, size=gold.size)
    f = fit_overoptimization(kl, noisy, form=form, bootstrap=200)
    assert f.alpha == pytest.approx(alpha, abs=0.02) and f.beta == pytest.approx(beta, abs=0.01)
    assert f.ci["alpha"][0] < alpha < f.ci["alpha"][1] and f.ci["beta"][0] < beta < f.ci["beta"][1]
    assert f.predict(d) == pytest.approx(gold, abs=0.05)
    # the gold reward peaks at d_star: rises before it, falls after
    assert f.predict(f.d_star * 0.9) < f.predict(f.d_star) > f.predict(f.d_star * 1.1)
    # the reference's own point (KL 0, no gain) is left out rather than refused
    g = fit_overoptimization(np.r_[0.0, kl], np.r_[0.0, noisy], form=form, bootstrap=0)
    assert (g.alpha, g.beta) == pytest.approx((f.alpha, f.beta), rel=1e-12)
    with pytest.raises(ConfigError, match="3 or more points with KL > 0"):
        fit_overoptimization([1.0, 0.0, 2.0], [0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match="different lengths"):
        fit_overoptimization([1.0, 2.0, 3.0], [0.1, 0.2])
    with pytest.raises(ConfigError, match="KL >= 0"):
        fit_overoptimization([1.0, -2.0, 3.0, 4.0], [0.1, 0.2, 0.3, 0.4])
