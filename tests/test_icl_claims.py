"""olsson2022.* and garg2022.* claims: declarations, shared runs, smoke-tier measurements."""

from __future__ import annotations

import math

import pytest
from conftest import assert_earned

from theorylab.claims import claim_ids, get_claim
from theorylab.runs import train
from theorylab.runs.view import RunView

INDUCTION = ("olsson2022.induction_head_forms", "olsson2022.one_layer_no_induction")
REGRESSION = "garg2022.tracks_least_squares"


def test_claims_are_registered_with_reasons_and_tiers():
    for cid in (*INDUCTION, REGRESSION):
        assert cid in claim_ids()
        c = get_claim(cid)
        assert set(c.tiers) == {"smoke", "quick", "full"}
        assert all(cr.why for cr in c.rule.criteria)


@pytest.mark.parametrize("tier", ["smoke", "quick", "full"])
def test_induction_claims_share_the_two_layer_run_and_differ_only_in_depth(tier):
    a = get_claim(INDUCTION[0]).experiment(tier, 2)
    b = get_claim(INDUCTION[1]).experiment(tier, 2)
    assert a["two_layer"].run_id() == b["two_layer"].run_id()
    one, two = b["one_layer"], b["two_layer"]
    assert (one.model.n_layers, two.model.n_layers) == (1, 2) and one.model.attn_only and two.model.attn_only
    assert one.model.model_copy(update={"n_layers": 2}) == two.model and one.task == two.task


def test_regression_tiers_follow_garg_et_al():
    # noiseless prompts in Garg et al.'s interleaved format with a curriculum over dimensions and points
    cfg = get_claim(REGRESSION).experiment("quick", 0)["main"]
    assert cfg.task.d == 5 and cfg.task.noise_std == 0 and cfg.task.format == "interleaved" and cfg.task.curriculum
    assert cfg.model.d_vocab_out == 1
    full = get_claim(REGRESSION).experiment("full", 0)["main"]
    assert full.task.d == 20 and full.task.n_points == 41 and full.task.noise_std == 0


def test_induction_smoke_measurements(store):
    c = get_claim(INDUCTION[0])
    cfg = c.experiment("smoke", 0)["two_layer"]
    runs = {"two_layer": RunView(train(cfg, store, progress=False).run_id, store)}
    m = c.measure("smoke", 0, runs)
    assert 0 <= m["prefix_matching_final"] <= 1 and 0 <= m["loss_drop_sharpness"] <= 1
    curves = m["curves_two_layer"]
    assert curves["steps"][-1] == cfg.train.steps and len(curves["prefix_matching"]) == len(curves["steps"])
    if math.isfinite(m["loss_drop_step"]) and math.isfinite(m["score_rise_step"]):
        assert m["onset_gap_frac"] == pytest.approx(abs(m["loss_drop_step"] - m["score_rise_step"]) / cfg.train.steps)


def test_regression_smoke_measurements(store):
    c = get_claim(REGRESSION)
    cfg = c.experiment("smoke", 0)["main"]
    runs = {"main": RunView(train(cfg, store, progress=False).run_id, store)}
    m = c.measure("smoke", 0, runs)
    assert m["ratio_to_averaging"] == pytest.approx(m["err_transformer"] / m["err_averaging"])
    # on noiseless prompts with more than d examples least squares is exact, averaging is not
    assert m["err_least_squares"] < 1e-3 < m["err_averaging"] < 1.5
    assert math.isfinite(m["loss_tail_change"]) and m["loss_tail_change"] >= 0
    assert len(m["curves"]["transformer"]) == cfg.task.n_points


@pytest.mark.slow
def test_smoke_tier_runs_through_the_engine(store):
    from theorylab.claims.engine import check

    for cid in (*INDUCTION, REGRESSION, "bu2024.exponential_convergence", "bu2024.ood_generalization"):
        r = check(cid, "smoke", backend="inprocess", store=store)
        assert_earned(r)


CONCEPTS = ("bu2024.exponential_convergence", "bu2024.ood_generalization")


def test_exponential_rate_recovers_a_known_rate():
    import numpy as np

    from theorylab.measures.icl import exponential_rate

    steps = np.arange(0, 500, 25)
    err = np.minimum(0.5, 0.8 * np.exp(-0.01 * steps))
    fit = exponential_rate(steps, err, floor=1e-3)
    assert fit["rate"] == pytest.approx(0.01, rel=1e-6) and fit["r2"] == pytest.approx(1.0)
    # the stretch stops at the first zero; too few points give NaN
    err[8] = 0.0  # the error is first below 0.45 at index 3
    assert exponential_rate(steps, err)["n"] == 5
    assert math.isnan(exponential_rate(steps[:4], err[:4])["rate"])


def test_concept_claims_smoke_measurements(store):
    a, b = (get_claim(cid) for cid in CONCEPTS)
    cfg = a.experiment("smoke", 0)["main"]
    assert cfg.run_id() == b.experiment("smoke", 0)["main"].run_id()  # one shared run per seed
    runs = {"main": RunView(train(cfg, store, progress=False).run_id, store)}
    m = a.measure("smoke", 0, runs)
    assert m["excess_error"] == pytest.approx(m["final_error01"] - m["bayes_error"])
    assert set(m["curves"]) >= {"w_concept", "w_complement", "w_noise", "mlp_norm", "attn_same_label"}
    o = b.measure("smoke", 0, runs)
    for s in ("ood_short", "ood_long", "ood_skewed", "ood_switched"):
        assert 0 <= o[f"{s}_error01"] <= 1
