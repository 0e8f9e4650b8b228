"""The claims on the SUBLEQ and Turing-machine constructions (issue 17) at smoke tier, end to end."""

from __future__ import annotations

import numpy as np
import pytest

from theorylab.claims import engine


@pytest.mark.parametrize("claim_id", ["giannou2023.looped_transformer_executes_subleq",
                                      "giannou2023.error_correction_stops_leakage",
                                      "perez2021.no_positions_no_order"])
def test_exact_construction_claims_are_supported_at_smoke_tier(store, claim_id):
    res = engine.check(claim_id, tier="smoke", backend="inprocess", store=store)
    assert res.verdict == "supported", res.reasons
    assert not res.run_ids or not any(res.run_ids.values())  # data-free


def test_the_turing_claim_names_its_premise_when_float32_has_not_diverged(store):
    # smoke runs 120 steps: float16 diverges (near 27), float32 not yet (near 333): the premise fails
    res = engine.check("perez2021.exact_simulation_needs_precision", tier="smoke", backend="inprocess", store=store)
    assert res.verdict == "inconclusive"
    assert any("premise not met: float32 diverged" in r for r in res.reasons), res.reasons
    assert res.stats["exact_mismatches"]["mean"] == 0 and res.stats["divergence_float16_or_bound"]["mean"] < 120


def test_a_mismatching_construction_refutes_the_looped_claim(monkeypatch):
    from theorylab.claims import get_claim
    from theorylab.constructions import subleq

    claim = get_claim("giannou2023.looped_transformer_executes_subleq")
    real = subleq.decode

    def off_by_one(model, x):  # a construction whose program counter is wrong after every step
        return [type(s)(s.memory, s.pc + 1) for s in real(model, x)]

    monkeypatch.setattr(subleq, "decode", off_by_one)
    assert claim.measure("smoke", 0, {})["mismatched_steps"] > 0


def test_random_machines_are_reproducible_and_valid():
    from theorylab.constructions.turing import random_machine, run, simulate

    a, b = random_machine(np.random.default_rng(3)), random_machine(np.random.default_rng(3))
    assert a.delta == b.delta and a.start == "q0" and a.blank == "_"
    assert run(a, "ab", "exact", 40).heads == simulate(a, "ab", 40).heads


@pytest.mark.slow
def test_the_trained_gap_claim_waits_for_a_model_that_learned_one_step(store):
    # smoke models (30 steps) learn nothing: the premise names it; the construction half is exact regardless
    res = engine.check("giannou2023.learned_execution_decays_with_length", tier="smoke", backend="inprocess",
                       store=store)
    assert res.verdict == "inconclusive"
    assert any("premise not met: the model learned one step" in r for r in res.reasons), res.reasons
    assert res.stats["construction_mismatches"]["mean"] == 0
    assert set(res.run_ids[0]) == {"deep", "wide"}
