"""Sensitivity measurements and the log-log slope estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from theorylab.constructions import parity
from theorylab.constructions.chiang import logit_gap
from theorylab.measures.sensitivity import average_sensitivity, loglog_slope, per_bit_sensitivity


def test_slope_estimator_on_synthetic_power_laws():
    ns = np.array([8, 16, 32, 64, 128, 256])
    exact = loglog_slope(ns, 3.0 * ns**-1.5)
    assert exact.slope == pytest.approx(-1.5) and exact.hi - exact.lo < 1e-9
    rng = np.random.default_rng(0)
    noisy = loglog_slope(ns, 2.0 * ns**-0.7 * np.exp(rng.normal(0, 0.05, len(ns))))
    assert noisy.lo < -0.7 < noisy.hi and noisy.hi - noisy.lo < 0.3


def test_average_sensitivity_of_known_functions():
    par = lambda b: b.sum(1) % 2  # noqa: E731
    first = lambda b: b[:, 0]  # noqa: E731
    maj = lambda b: (b.sum(1) * 2 > b.shape[1]).long()  # noqa: E731
    assert average_sensitivity(par, 50, 16, 0, max_positions=50) == pytest.approx(50)
    assert average_sensitivity(first, 50, 16, 0, max_positions=50) == pytest.approx(1.0)
    assert 0 < average_sensitivity(maj, 51, 64, 0, max_positions=51) < 51


def test_soft_parity_construction_is_O_1_over_n2():
    m = parity()
    out = lambda b: logit_gap(m, "parity", b)  # noqa: E731
    ns = [15, 31, 63, 127]
    vals = [per_bit_sensitivity(out, n, 4, 8, 0) for n in ns]
    fit = loglog_slope([n + 1 for n in ns], vals)
    assert fit.hi <= -1.9  # the logit gap itself is 2 tanh(1/sqrt 5)/N^2: flips move it by ~2x that


def test_eps0_layernorm_parity_is_fully_sensitive():
    m = parity(layernorm_eps=0.0)
    decide = lambda b: (logit_gap(m, "parity", b) < 0).long()  # noqa: E731
    assert average_sensitivity(decide, 40, 8, 0, max_positions=40) == pytest.approx(40)
    out = lambda b: logit_gap(m, "parity", b)  # noqa: E731
    assert per_bit_sensitivity(out, 40, 4, 8, 0) == pytest.approx(2 * 10**0.5, rel=1e-6)
    _ = torch
