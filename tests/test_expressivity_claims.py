"""Expressivity claims through the claims engine at smoke tier (data-free, seconds)."""

from __future__ import annotations

import pytest
from conftest import assert_earned

from theorylab.claims import get_claim
from theorylab.claims.engine import check

IDS = ["hahn2020.soft_attention_sensitivity", "chiang2022.layernorm_escapes", "chiang2022.log_length_first",
       "hahn2020.unique_hard_attention_bounded"]


@pytest.mark.parametrize("cid", IDS)
def test_claims_run_through_the_engine(store, cid):
    res = check(cid, tier="smoke", store=store, backend="inprocess")
    claim = get_claim(cid)
    assert set(claim.rule.quantities()) <= set(res.stats)
    assert_earned(res)
    assert res.figures and all(p.endswith(".png") for p in res.figures.values())


def test_measured_values_at_smoke_tier(store):
    r = check("chiang2022.layernorm_escapes", tier="smoke", store=store, backend="inprocess")
    assert r.verdict == "supported"
    assert r.stat("ce_at_max_n").mean == pytest.approx(0.0598, abs=1e-3)
    s = check("hahn2020.soft_attention_sensitivity", tier="smoke", store=store, backend="inprocess")
    assert s.stat("slope_no_ln").mean < -1.5
    h = check("hahn2020.unique_hard_attention_bounded", tier="smoke", store=store, backend="inprocess")
    # unique hard attention: the PARITY weights and random models sit at chance, the averaging control decides it
    assert h.verdict == "supported"
    assert abs(h.stat("construction_accuracy_at_max_n").mean - 0.5) < 0.1
    assert h.stat("search_best_accuracy_at_max_n").mean < 0.6
    assert h.stat("control_accuracy_at_max_n").mean == 1.0
    assert h.stat("control_sensitivity_slope").mean == pytest.approx(1.0, abs=0.05)
