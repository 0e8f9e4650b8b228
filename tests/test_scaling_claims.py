"""The scaling-law claims through the engine: Besiroglu et al.'s refit and Czech et al.'s Approach-2 bias
(closed-form checks, faithful at every tier) and the Hoffmann et al. sweep claims (their smoke tier trains)."""

from __future__ import annotations

import math

import pytest

from tests.conftest import assert_earned
from theorylab.claims.engine import check


def test_czech_intercept_bias_reproduces_the_article(store):
    res = check("czech2026.approach2_intercept_bias", tier="quick", store=store, backend="inprocess")
    assert_earned(res)
    assert res.verdict == "supported", res.reasons
    v = res.per_seed[0]
    assert v["intercept_16x"] == pytest.approx(-0.578092, abs=1e-5)
    assert v["intercept_2x"] == pytest.approx(-0.556779, abs=1e-5)
    assert v["true_intercept"] == pytest.approx(-0.555357, abs=1e-6)
    assert res.tier_faithful


def test_besiroglu_refit_reproduces_and_rejects_hoffmann(store):
    res = check("besiroglu2024.chinchilla_refit", tier="smoke", store=store, backend="inprocess")
    assert_earned(res)
    assert res.verdict == "supported", res.reasons
    for v in res.per_seed.values():
        assert v["E"] == pytest.approx(1.8172, abs=2e-3) and v["alpha"] == pytest.approx(0.3473, abs=2e-3)
        assert v["beta"] == pytest.approx(0.3672, abs=2e-3) and v["points_match"] == 1.0
        assert 17 < v["tokens_per_param_chinchilla"] < 19  # Epoch: about 18 at 5.76e23 FLOP
        assert v["chi2_hoffmann"] > 20.5
    # the bootstrap seeds differ, so the chi-squared statistics do too, while the point fit is one
    assert len({round(v["chi2_hoffmann"], 6) for v in res.per_seed.values()}) == len(res.per_seed)


@pytest.mark.slow
def test_hoffmann_sweep_claims_train_fit_and_stay_honest(store):
    """The smoke grid (3 sizes x 3 budgets, 40 steps a run) trains once for both claims; at a proxy tier
    neither can be refuted, and the numbers come from the stored runs."""
    a = check("hoffmann2022.additive_power_law", tier="smoke", store=store, backend="inprocess")
    b = check("hoffmann2022.irreducible_loss_is_entropy", tier="smoke", store=store, backend="inprocess")
    for res in (a, b):
        assert_earned(res)
        assert not res.tier_faithful and res.verdict != "refuted"
    assert b.runs_trained == 0  # the same runs: served from the store
    for v in a.per_seed.values():
        assert v["n_runs"] == 9 and v["runs_finished"] == 1.0
        assert v["floor"] == pytest.approx(1.6372, abs=2e-3) and v["entropy_rate"] == pytest.approx(1.6337, abs=1e-4)
        assert math.isfinite(v["rms_residual"]) and v["loss_span"] > 0.1
