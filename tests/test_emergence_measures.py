"""The emergence toolkit (theorylab.measures.emergence): smooth against sharp, metric mirages, giant components."""

from __future__ import annotations

import math

import numpy as np
import pytest

from theorylab.errors import ConfigError
from theorylab.measures.emergence import (
    bipartite_critical_density,
    bipartite_graph,
    compare_fits,
    er_giant_fraction,
    er_graph,
    fit_smooth,
    graph_from_edges,
    largest_component_fraction,
    mirage,
)

X = np.geomspace(1e4, 1e8, 13)  # a sweep over four decades of parameters


@pytest.mark.parametrize("c, S", [(0.5, 0.0), (1.0, 0.0), (1.5, 0.5828), (2.0, 0.7968), (3.0, 0.9405)])
def test_er_giant_fraction_solves_the_fixed_point_and_matches_simulation(c, S):
    s = er_giant_fraction(c)
    assert s == pytest.approx(S, abs=1e-4)
    assert s == pytest.approx(1 - math.exp(-c * s), abs=1e-12)
    g = er_graph(20_000, c, np.random.default_rng(int(10 * c)))
    sim = largest_component_fraction(g)
    # above the threshold S within finite-size noise; at it the largest component has O(n^(2/3)) nodes (about
    # 740 of 20,000 here), below it O(log n)
    if c > 1.2:
        assert sim == pytest.approx(S, abs=0.02)
    else:
        assert sim < (0.15 if c == 1.0 else 0.01)


def test_bipartite_critical_density_against_simulation():
    a, b = 300, 1200
    pc = bipartite_critical_density(a, b)
    assert pc == pytest.approx(1 / 600)
    rng = np.random.default_rng(0)
    below = np.mean([largest_component_fraction(bipartite_graph(a, b, 0.5 * pc, rng)) for _ in range(3)])
    above = np.mean([largest_component_fraction(bipartite_graph(a, b, 2.0 * pc, rng)) for _ in range(3)])
    assert below < 0.05 and above > 0.3  # the giant component appears between half and twice p_c


def test_largest_component_fraction_of_a_learned_graph():
    g = graph_from_edges(6, [(0, 1), (1, 2), (4, 5)])
    assert largest_component_fraction(g) == pytest.approx(0.5)
    import networkx as nx

    assert largest_component_fraction(nx.DiGraph([(0, 1), (2, 1)])) == 1.0  # weakly connected
    with pytest.raises(ConfigError, match="node ids"):
        graph_from_edges(3, [(0, 5)])


def test_a_p_to_the_L_curve_is_flagged_as_made_by_the_metric():
    """Schaeffer et al.'s toy: per-token accuracy rises smoothly (linearly in log N); exact match on 10-token
    answers is p^10 and looks like a jump; the toolkit says the metric made it."""
    p = np.clip(0.55 + 0.1 * np.log10(X / 1e4), 0, 1)
    exact = p ** 10
    r = mirage(X, p, exact, 10, bootstrap=0)
    assert r.exact.sharp_wins and not r.per_token.sharp_wins
    assert r.predicted_error < 1e-12 and r.metric_induced


def test_a_true_step_in_a_continuous_metric_is_not_a_mirage():
    rng = np.random.default_rng(1)
    p = 0.3 + 0.6 / (1 + np.exp(-(np.log10(X) - 6.0) / 0.05)) + rng.normal(0, 0.005, X.size)
    p = np.clip(p, 0, 1)
    r = mirage(X, p, p ** 5, 5, bootstrap=0)
    assert r.per_token.sharp_wins and not r.metric_induced
    f = compare_fits(X, p, bootstrap=40, seed=0)
    assert f.sharp.x0 == pytest.approx(1e6, rel=0.3)
    lo, hi = f.x0_ci
    assert lo <= 1e6 * 1.3 and hi >= 1e6 / 1.3


def test_a_smooth_trend_is_not_called_sharp():
    rng = np.random.default_rng(2)
    y = 0.2 + 0.15 * np.log10(X / 1e4) + rng.normal(0, 0.01, X.size)
    f = compare_fits(X, y, bootstrap=0)
    assert not f.sharp_wins and f.smooth.b == pytest.approx(0.15, abs=0.02)


def test_bad_input():
    with pytest.raises(ConfigError, match="mean degree"):
        er_giant_fraction(-1)
    with pytest.raises(ConfigError, match="x"):
        compare_fits([0, 1, 2, 3, 4, 5, 6], [1] * 7)
    with pytest.raises(ConfigError, match="at least"):
        compare_fits([1, 2, 3], [1, 2, 3])
    with pytest.raises(ConfigError, match="\\[0, 1\\]"):
        mirage(X, np.full(X.size, 1.5), np.full(X.size, 0.5), 3)
    with pytest.raises(ConfigError, match="L"):
        mirage(X, np.full(X.size, 0.5), np.full(X.size, 0.5), 0)
    with pytest.raises(ConfigError, match="part sizes"):
        bipartite_critical_density(0, 5)


def test_a_power_law_approach_to_a_ceiling_is_smooth_and_its_power_of_L_is_sharp():
    # Schaeffer et al.'s toy model with the error of each token falling as a power of the scale,
    # 1 - p = 30 / N (so p rises smoothly towards 1): the smooth family recovers it exactly, and exact
    # match p^L with a long answer is the sharp curve.
    x = np.geomspace(1e2, 1e6, 11)
    p = 1 - 30 / x
    s = fit_smooth(x, p)
    assert s.kind == "power_law" and s.b == pytest.approx(1, rel=1e-3) and s.c == pytest.approx(1, abs=1e-6)
    assert s.to_dict()["c"] == pytest.approx(1, abs=1e-6)
    assert not compare_fits(x, p, bootstrap=0).sharp_wins
    r = mirage(x, p, p ** 30, 30, bootstrap=0)
    assert r.exact.sharp_wins and r.metric_induced


def test_a_straight_line_in_log_scale_stays_log_linear():
    x = np.geomspace(10, 1e4, 8)
    s = fit_smooth(x, 0.2 + 0.1 * np.log10(x))
    assert s.kind == "log_linear" and s.b == pytest.approx(0.1) and s.sse < 1e-20


def test_degenerate_metrics_are_never_a_step():
    x = np.geomspace(1e2, 1e6, 13)
    for y in (np.full(13, 0.3), 0.3 + 1e-12 * np.sin(np.arange(13)), np.full(13, 1e6)):
        f = compare_fits(x, y, bootstrap=0)
        assert not f.sharp_wins and "constant" in f.notes[0]
    # a rise of one correct answer in a thousand is a step by shape alone; min_step (the metric's units) says no
    tiny = np.r_[np.zeros(12), 0.001]
    assert compare_fits(x, tiny, bootstrap=0).sharp_wins
    f = compare_fits(x, tiny, bootstrap=0, min_step=0.01)
    assert not f.sharp_wins and "min_step" in f.notes[0]
    # an axis of two distinct x plus the held-out points: no extrapolation test, so no step
    xs = np.array([10.0] * 4 + [100.0] * 4 + [1001.0, 1002.0])
    f = compare_fits(xs, np.r_[np.zeros(4), np.ones(4), 1.0, 1.0], bootstrap=0)
    assert not f.sharp_wins and "held-out comparison not made" in f.notes[0]
    # an axis spanning a hair: a fit, not a scipy traceback
    compare_fits(1.0 + np.arange(9) * 1e-10, np.linspace(0, 1, 9), bootstrap=0)
    with pytest.raises(ConfigError, match="1-D"):
        compare_fits(np.ones((3, 3)), np.ones((3, 3)))
    with pytest.raises(ConfigError, match="aic_margin"):
        compare_fits(x, np.linspace(0, 1, 13), aic_margin=math.nan)


def test_the_bootstrap_interval_needs_enough_resamples():
    x = np.geomspace(1e2, 1e6, 11)
    p = 1 - 30 / x
    f = compare_fits(x, p**30, bootstrap=60, seed=1)
    assert f.x0_ci[0] < f.sharp.x0 < f.x0_ci[1]
    assert f.x0_ci == compare_fits(x, p**30, bootstrap=60, seed=1).x0_ci  # reproducible
    f = compare_fits(x, p**30, bootstrap=5)
    assert math.isnan(f.x0_ci[0]) and "no interval" in f.notes[-1]


def test_giant_fraction_just_above_the_threshold():
    for c in (1 + 1e-5, 1.001, 1.01):
        s = er_giant_fraction(c)
        assert s == pytest.approx(2 * (c - 1), rel=0.03)  # S ~ 2 (c - 1) as c -> 1+
        assert s == pytest.approx(1 - math.exp(-c * s), abs=1e-12)


def test_mirage_names_a_value_outside_zero_one():
    with pytest.raises(ConfigError, match="per_token must be an accuracy"):
        mirage(X, np.full(X.size, 1.5), np.full(X.size, 0.5), 3)
    with pytest.raises(ConfigError, match="tol"):
        mirage(X, np.full(X.size, 0.5), np.full(X.size, 0.5), 3, tol=-1)
