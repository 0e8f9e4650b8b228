"""Scaling-law fitters (theorylab.measures.scaling) against published and derived numbers.

Data: the public Chinchilla points (Besiroglu et al. 2024, arXiv 2404.10102, ``data/svg_extracted_data.csv``
of epoch-research/analyzing-chinchilla, 245 rows), shipped as ``theorylab/measures/data/`` (``S.CHINCHILLA_CSV``;
``$THEORYLAB_CHINCHILLA_CSV`` overrides it).

1. Approach 3 on the 240 rows left after dropping the 5 highest losses: Epoch's grid fit E 1.8172, A 477.8,
   B 2143, alpha 0.3473, beta 0.3672, objective 1.01827e-3 (our refit of all 4,500 starts reproduced it:
   A 477.8, B 2142.9); D/N about 18 at 5.76e23 FLOP and 21 at 1e21.
2. Approach 2 with the 9 Chinchilla budgets: 123 points, a = 0.4951 (Hoffmann et al. report 0.49).
3. Czech et al. 2026 (arXiv 2603.22339): on a noise-free surface Approach 2's exponent is exact and its
   intercept biased by a constant that grows with the grid width; zero when alpha = beta.
4. Synthetic recovery with known parameters; 5. bad input raises ConfigError with one line.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from theorylab.errors import ConfigError
from theorylab.measures import scaling as S


def _csv() -> Path:
    return Path(os.environ.get("THEORYLAB_CHINCHILLA_CSV") or S.CHINCHILLA_CSV)


@pytest.fixture(scope="module")
def chinchilla_all() -> S.Points:
    return S.read_points(_csv())


@pytest.fixture(scope="module")
def chinchilla_240() -> S.Points:
    return S.read_points(_csv(), drop_highest=5)


@pytest.fixture(scope="module")
def fit3(chinchilla_240) -> S.Approach3Fit:
    return S.fit_approach3(chinchilla_240, bootstrap=40, seed=0)


# ------------------------------------------------------------------------------------------ reading


def test_read_public_file(chinchilla_all, chinchilla_240):
    assert len(chinchilla_all) == 245 and len(chinchilla_240) == 240
    assert len(S.chinchilla_points()) == 240 and len(S.chinchilla_points(0)) == 245
    p = chinchilla_all
    np.testing.assert_allclose(p.D, p.C / (6 * p.N))
    assert p.N.dtype == np.float64 and p.loss.max() == pytest.approx(5.005581996196243)
    assert chinchilla_240.loss.max() < np.sort(p.loss)[-5]


def test_read_own_columns(tmp_path):
    f = tmp_path / "runs.csv"
    f.write_text("n,d,LOSS,other\n1e6,2e7,3.1,x\n2e6,4e7,2.9,y\n")
    p = S.read_points(f)
    np.testing.assert_allclose(p.C, 6 * p.N * p.D)
    f.write_text(" N , C ,loss\n1e6,1.2e14,3.1\n")
    p = S.read_points(f)
    assert p.D[0] == pytest.approx(2e7)


def test_drop_highest_ties_like_epoch():
    p = S.points([1, 2, 3, 4], [1.0, 3.0, 3.0, 2.0], C=[6, 6, 6, 6])
    assert len(S.drop_highest_loss(p, 1)) == 2  # both tied maxima go: loss < sorted(loss)[-1]
    assert len(S.drop_highest_loss(p, 0)) == 4


# ---------------------------------------------------------------------------------------- Approach 3


# Epoch's grid fit (Besiroglu et al. 2024, Table 1 / notebook) and their bootstrap standard errors.
EPOCH_GRID = dict(E=1.8172, A=477.8, B=2143.0, alpha=0.3473, beta=0.3672)
EPOCH_SE = dict(E=0.026, A=124.0, B=1293.0, alpha=0.015, beta=0.021)


def test_approach3_reproduces_epoch(fit3):
    for k, v in EPOCH_GRID.items():
        assert abs(getattr(fit3, k) - v) < EPOCH_SE[k], k
        assert getattr(fit3, k) == pytest.approx(v, rel=1e-3), k  # ~3-4 significant digits
    assert fit3.objective == pytest.approx(1.01827e-3, rel=1e-5)
    assert fit3.n_points == 240 and fit3.delta == 1e-3


def test_approach3_allocation(fit3):
    tpp = fit3.tokens_per_parameter(np.array([5.76e23, 1e21]))
    assert 17.5 <= tpp[0] <= 18.5 and 20.5 <= tpp[1] <= 22  # Epoch: ~18 and ~21
    N_opt, D_opt = fit3.optimal_allocation(5.76e23)
    assert 6.5e10 < N_opt < 8e10  # Epoch: ~72B
    assert 6 * N_opt * D_opt == pytest.approx(5.76e23)
    a, b = fit3.exponents
    assert a + b == pytest.approx(1) and 0.49 < a < 0.54  # Epoch: 0.513 +- 0.020


def test_approach3_bootstrap(fit3, chinchilla_240):
    assert fit3.n_bootstrap == 40 and fit3.samples.shape == (40, 5)  # log A, log B, log E, alpha, beta
    assert np.exp(np.median(fit3.samples[:, 2])) == pytest.approx(fit3.E, rel=0.02)
    for k, se in EPOCH_SE.items():
        lo, hi = fit3.ci[k]
        assert lo < getattr(fit3, k) < hi
        assert se / 2 < fit3.se[k] < se * 2, k  # 40 resamples against Epoch's 4,000
    again = S.fit_approach3(chinchilla_240, bootstrap=20, seed=0)
    again2 = S.fit_approach3(chinchilla_240, bootstrap=20, seed=0)
    assert again.ci == again2.ci and again.se == again2.se
    d = json.loads(json.dumps(fit3.to_dict()))
    assert set(d) >= {"E", "A", "B", "alpha", "beta", "n_points", "objective", "exponents"}
    assert d["E"]["value"] == pytest.approx(fit3.E) and len(d["E"]["ci"]) == 2 and d["alpha"]["se"] > 0


def test_huber_objective_and_gradient(chinchilla_240, fit3):
    p = chinchilla_240
    lN, lD, lL = np.log(p.N), np.log(p.D), np.log(p.loss)
    x = np.array([math.log(fit3.A), math.log(fit3.B), math.log(fit3.E), fit3.alpha, fit3.beta])
    assert S.huber_objective(x, lN, lD, lL, 1e-3) == pytest.approx(fit3.objective, rel=1e-12)
    x0 = np.array([6.0, 7.5, 0.6, 0.35, 0.37])
    _, g = S._objective_grad(x0, lN, lD, lL, 1e-3)
    h = 1e-7
    num = [(S.huber_objective(x0 + e, lN, lD, lL, 1e-3) - S.huber_objective(x0 - e, lN, lD, lL, 1e-3)) / (2 * h)
           for e in np.eye(5) * h]
    np.testing.assert_allclose(g, num, rtol=1e-5)
    grid = S.approach3_grid()
    assert grid.shape == (4500, 5)
    vec = S._grid_objective(grid[::450], lN, lD, lL, 1e-3)
    np.testing.assert_allclose(vec, [S.huber_objective(r, lN, lD, lL, 1e-3) for r in grid[::450]], rtol=1e-12)


@pytest.mark.slow
def test_approach3_best_starts_equal_all_starts(chinchilla_240, fit3):
    """Refining the best 64 grid starts finds the optimum of refining all 4,500 (30-70 s on 2 shared cores)."""
    full = S.fit_approach3(chinchilla_240, refine=None)
    assert full.n_refined == 4500
    assert full.objective == pytest.approx(fit3.objective, rel=1e-9)
    for k in S._PARAMS3:
        assert getattr(full, k) == pytest.approx(getattr(fit3, k), rel=1e-6)


HOFFMANN = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
BUDGETS5 = [1e17, 1e18, 1e19, 1e20, 1e21]


def test_approach3_recovers_noise_free_surface():
    s = S.isoflop_surface([1e18, 1e19, 1e20, 1e21, 1e22], **HOFFMANN)
    f = S.fit_approach3(s)
    for k, v in HOFFMANN.items():
        assert getattr(f, k) == pytest.approx(v, rel=1e-6), k


def test_approach3_recovers_noisy_surface():
    """0.5% multiplicative noise on 75 IsoFLOP points: each estimate within 4 bootstrap SE of the truth (a
    z-score, so the tolerance scales with how well the data pin each parameter down; A and B are the loosest,
    as on the real data), and the exponents within 0.01 absolutely."""
    s = S.isoflop_surface([1e18, 1e19, 1e20, 1e21, 1e22], **HOFFMANN)
    noisy = S.points(s.N, s.loss * np.exp(np.random.default_rng(1).normal(0, 0.005, len(s))), D=s.D)
    f = S.fit_approach3(noisy, bootstrap=30, seed=0)
    for k, v in HOFFMANN.items():
        assert abs(getattr(f, k) - v) < 4 * f.se[k], (k, getattr(f, k), f.se[k])
    assert abs(f.alpha - 0.34) < 0.01 and abs(f.beta - 0.28) < 0.01


def test_optimal_allocation_closed_form():
    N, D = S.optimal_allocation(**HOFFMANN, C=np.array([1e20, 1e22]))
    np.testing.assert_allclose(6 * N * D, [1e20, 1e22])
    # N_opt minimises the loss along C = 6 N D
    Ns = N[0] * np.logspace(-0.01, 0.01, 201)
    L = S.chinchilla_loss(Ns, 1e20 / (6 * Ns), **HOFFMANN)
    assert abs(np.argmin(L) - 100) <= 1
    assert np.log10(D[1] / D[0]) / 2 == pytest.approx(0.34 / 0.62)


# ---------------------------------------------------------------------------------------- Approach 2


def test_approach2_public_points(chinchilla_all):
    f = S.fit_approach2(chinchilla_all, S.CHINCHILLA_BUDGETS, bootstrap=100, seed=0)
    assert f.n_points == 123 and not f.dropped and len(f.budgets) == 9
    assert 0.48 <= f.a <= 0.51 and f.a == pytest.approx(0.4951, abs=1e-4)
    assert f.b == pytest.approx(0.5049, abs=1e-4) and f.a + f.b == pytest.approx(1)
    star = {v["C"]: v["N_star"] for v in f.vertices}
    for c, n in {6e18: 1.69e8, 1e19: 3.34e8, 1e20: 5.01e8, 1e21: 2.91e9, 3e21: 3.84e9}.items():
        assert star[c] == pytest.approx(n, rel=5e-3), c
    assert f.tokens_per_parameter(5.76e23) == pytest.approx(26.5, abs=0.1)  # SETUPS.md 1.3(b)
    lo, hi = f.ci["a"]
    assert lo < f.a < hi and f.se["a"] > 0
    d = json.loads(json.dumps(f.to_dict()))
    assert set(d) >= {"a", "b", "a0", "b0", "n_points", "budgets", "vertices", "grouping"}
    assert "123 of 245" in d["grouping"]


def test_snap_to_budgets(chinchilla_all):
    kept, budget = S.snap_to_budgets(chinchilla_all, S.CHINCHILLA_BUDGETS)
    assert len(kept) == 123 and np.all(np.abs(kept.C / budget - 1) < 0.10)
    assert len({(round(n), b) for n, b in zip(kept.N, budget)}) == 123
    p = S.points([1e8, 1e8, 2e8, 3e8], [3.0, 3.1, 2.9, 2.8], C=[1.05e19, 0.98e19, 1.2e19, 3e19])
    kept, budget = S.snap_to_budgets(p, [1e19, 3e19])
    np.testing.assert_array_equal(kept.loss, [3.1, 2.8])  # the closer duplicate; 1.2e19 is 20% off
    np.testing.assert_array_equal(budget, [1e19, 3e19])


def test_group_by_compute():
    s = S.isoflop_surface(BUDGETS5, **HOFFMANN)
    jitter = S.points(s.N, s.loss, C=s.C * np.exp(np.random.default_rng(0).uniform(-0.05, 0.05, len(s))))
    _, b = S.group_by_compute(jitter)
    assert np.unique(b).size == 5
    np.testing.assert_allclose(np.unique(b), BUDGETS5, rtol=0.03)
    f = S.fit_approach2(jitter)
    assert len(f.budgets) == 5 and "clustered" in f.grouping


@pytest.mark.parametrize("width,b0", [(2, -0.556779), (4, -0.561045), (8, -0.568151), (16, -0.578092)])
def test_czech_intercept_bias(width, b0):
    s = S.isoflop_surface(BUDGETS5, **HOFFMANN, n_per_budget=15, width=width)
    f = S.fit_approach2(s, BUDGETS5)
    assert f.b == pytest.approx(0.548387, abs=1e-6) and f.b == pytest.approx(0.34 / 0.62, abs=1e-9)
    assert f.b0 == pytest.approx(b0, abs=1e-4)
    true_b0 = math.log10(S.optimal_allocation(**HOFFMANN, C=1.0)[1])
    assert true_b0 == pytest.approx(-0.555357, abs=1e-6) and f.b0 < true_b0  # biased low
    assert S.fit_approach2(s).b0 == pytest.approx(f.b0, abs=1e-9)  # same groups without budgets


def test_czech_symmetric_no_bias():
    s = S.isoflop_surface(BUDGETS5, E=1.69, A=400, B=400, alpha=0.31, beta=0.31, width=16)
    f = S.fit_approach2(s, BUDGETS5)
    assert f.b == pytest.approx(0.5, abs=1e-9) and f.b0 == pytest.approx(-0.389076, abs=1e-6)


def test_approach2_drops_bad_budgets():
    s = S.isoflop_surface(BUDGETS5, **HOFFMANN)
    loss = s.loss.copy()
    loss[:15] = 5.0 - (np.log10(s.N[:15]) - np.log10(s.N[7])) ** 2  # first budget opens downward
    p = S.points(np.append(s.N, [1e9, 2e9]), np.append(loss, [3.0, 2.9]), C=np.append(s.C, [1e23, 1e23]))
    f = S.fit_approach2(p, BUDGETS5 + [1e23])
    assert f.budgets == BUDGETS5[1:]
    assert {d["C"]: d["reason"].split()[0] for d in f.dropped} == {1e17: "parabola", 1e23: "2"}


# ------------------------------------------------------------------------------------------- Kaplan


def test_kaplan_n_recovers():
    rng = np.random.default_rng(2)
    N = np.logspace(6, 9, 30)
    L = (8.8e13 / N) ** 0.076 * np.exp(rng.normal(0, 0.01, N.size))
    f = S.fit_kaplan_n(N, L, bootstrap=200, seed=0)
    assert abs(f.alpha_N - 0.076) < 4 * f.se["alpha_N"] and abs(f.alpha_N - 0.076) < 0.003
    assert abs(math.log(f.N_c / 8.8e13)) < 4 * f.se["N_c"] / f.N_c
    exact = S.fit_kaplan_n(N, (8.8e13 / N) ** 0.076)
    assert exact.alpha_N == pytest.approx(0.076, rel=1e-9) and exact.N_c == pytest.approx(8.8e13, rel=1e-6)
    assert exact.predict(1e8) == pytest.approx(2.83, abs=0.01)  # Kaplan's sanity value L(1e8)


def test_kaplan_nd_recovers():
    """Kaplan's constants on an 8 x 8 (N, D) grid where both terms matter; 0.5% noise; within 4 SE."""
    true = dict(N_c=8.8e13, alpha_N=0.076, D_c=5.4e13, alpha_D=0.095)
    NN, DD = (x.ravel() for x in np.meshgrid(np.logspace(6, 9, 8), np.logspace(7, 11, 8)))
    L = ((true["N_c"] / NN) ** (true["alpha_N"] / true["alpha_D"]) + true["D_c"] / DD) ** true["alpha_D"]
    exact = S.fit_kaplan_nd(S.points(NN, L, D=DD))
    for k, v in true.items():
        assert getattr(exact, k) == pytest.approx(v, rel=1e-6), k
    noisy = L * np.exp(np.random.default_rng(3).normal(0, 0.005, L.size))
    f = S.fit_kaplan_nd(S.points(NN, noisy, D=DD), bootstrap=100, seed=0)
    for k, v in true.items():
        assert abs(getattr(f, k) - v) < 4 * f.se[k], k
    assert f.predict(1e8, 1e10) == pytest.approx(exact.predict(1e8, 1e10), rel=0.01)
    assert json.loads(json.dumps(f.to_dict()))["alpha_D"]["ci"][0] < f.alpha_D


# ---------------------------------------------------------------------------------------- bad input


def _one_line(exc_info, *words):
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.strip(), msg
    for w in words:
        assert w.lower() in msg.lower(), (w, msg)


def test_bad_files(tmp_path):
    f = tmp_path / "p.csv"
    with pytest.raises(ConfigError) as e:
        S.read_points(tmp_path / "missing.csv")
    _one_line(e, "does not exist")
    cases = [("N,D\n1,2\n", "'loss'"), ("loss,D\n1,2\n", "'N'"), ("N,loss\n1,2\n", "neither"),
             ("N,D,loss\n1e6,1e7,abc\n", "not a number"), ("N,D,loss\n1e6,1e7,nan\n", "line 2"),
             ("N,D,loss\n1e6,1e7,3\n-1,1e7,3\n", "> 0"), ("N,C,loss\n1e6,0,3\n", "C must be > 0"),
             ("", "empty"), ("N,D,loss\n", "no data")]
    for text, word in cases:
        f.write_text(text)
        with pytest.raises(ConfigError) as e:
            S.read_points(f)
        _one_line(e, word)
    f.write_text("N,D,loss\n1e6,1e7,3\n2e6,1e7,2\n")
    with pytest.raises(ConfigError) as e:
        S.read_points(f, drop_highest=2)
    _one_line(e, "drop_highest")


def test_bad_arrays_and_arguments():
    good = S.isoflop_surface(BUDGETS5, **HOFFMANN)
    calls = [
        (lambda: S.points([1, 2], [3.0], D=[1, 2]), "differ in length"),
        (lambda: S.points([1, 2], [3.0, 2.0]), "neither"),
        (lambda: S.points([1, np.nan], [3.0, 2.0], D=[1, 2]), "N is nan"),
        (lambda: S.points([1, 2], [3.0, 0.0], D=[1, 2]), "loss must be > 0"),
        (lambda: S.points([1, 2], [3.0, 2.0], D=[1, -2]), "D must be > 0"),
        (lambda: S.fit_approach3(good.take(slice(0, 4))), "at least 5 points"),
        (lambda: S.fit_approach3(good, delta=0), "delta"),
        (lambda: S.fit_approach3(good, refine=0), "refine"),
        (lambda: S.fit_approach3(good, bootstrap=-1), "bootstrap"),
        (lambda: S.fit_approach2(good, [1e17, -1.0]), "budgets must be > 0"),
        (lambda: S.fit_approach2(good, BUDGETS5, tol=1.5), "tol"),
        (lambda: S.fit_approach2(good, [1e17]), "at least 2 compute budgets"),
        (lambda: S.fit_approach2(good, gap=0), "gap"),
        (lambda: S.isoflop_surface(BUDGETS5, **HOFFMANN, width=1.0), "width"),
        (lambda: S.fit_kaplan_n([1e6], [3.0]), "at least 2 points"),
        (lambda: S.fit_kaplan_n([1e6, 1e6], [3.0, 2.0]), "distinct"),
        (lambda: S.fit_kaplan_nd(good.take(slice(0, 3))), "at least 4 points"),
        (lambda: S.fit_scaling_law(good, "approach4"), "unknown scaling-law approach"),
        (lambda: S.optimal_allocation(**HOFFMANN, C=0.0), "compute"),
    ]
    for call, word in calls:
        with pytest.raises(ConfigError) as e:
            call()
        _one_line(e, word)


def test_dispatch():
    s = S.isoflop_surface(BUDGETS5, **HOFFMANN)
    assert isinstance(S.fit_scaling_law(s, "2", budgets=BUDGETS5), S.Approach2Fit)
    assert isinstance(S.fit_scaling_law(s, "kaplan"), S.KaplanFit)
    assert S.fit_scaling_law(s, "Approach3", refine=8).alpha == pytest.approx(0.34, rel=1e-5)
