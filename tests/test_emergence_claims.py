"""The emergence claims' measurements, fed runs whose metrics follow known curves (no training): the p^L toy
model, the data's own connectivity ceiling and sigmoid learning curves."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from theorylab.claims import get_claim
from theorylab.claims.papers import erdos1960, lubana2025, schaeffer2023


@dataclass
class FakeRun:
    """What a claim's measure reads from a stored run: status, final metrics, series, config."""

    final: dict[str, float]
    series_: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    config: object = None
    status: str = "finished"

    def series(self, split, name):
        return self.series_.get(name, ([], []))


def test_half_point_interpolates_in_log_n():
    N = np.array([100.0, 1000.0, 10000.0])
    assert schaeffer2023.half_point(N, np.array([0.0, 0.4, 0.6])) == pytest.approx(10 ** 3.5)
    assert schaeffer2023.half_point(N, np.array([0.6, 0.7, 0.9])) == 100.0
    assert math.isnan(schaeffer2023.half_point(N, np.array([0.0, 0.1, 0.2])))


def test_the_mirage_sweep_plans_one_layer_widths_on_the_scaling_machinery():
    tier = schaeffer2023.TIERS["quick"]
    plan = schaeffer2023.plan_for(tier, seed=0)
    assert [r.config.model.d_model for r in plan.runs] == list(tier["widths"])
    assert {r.config.model.n_layers for r in plan.runs} == {1} and len({r.D for r in plan.runs}) == 1
    assert all(r.config.train.steps == tier["steps"] for r in plan.runs)
    assert [r.N for r in plan.runs] == sorted(r.N for r in plan.runs)


def _mirage_runs(tier, p_of_N):
    plan = schaeffer2023.plan_for(tier, seed=0)
    L = tier["answer_length"]
    runs = {}
    for r in plan.runs:
        p = p_of_N(r.N)
        runs[r.name] = FakeRun({"test/accuracy": p, "test/exact_match": p**L, "test/edit_distance": L * (1 - p),
                                "test/answer_log_prob": L * math.log(p), "test/loss": -math.log(p),
                                f"test/exact_match_{L // 4}": p ** (L // 4)})
    return runs


def test_mirage_measures_of_the_p_to_the_L_toy_model_support_both_claims():
    tier = schaeffer2023.TIERS["quick"]
    # per-token error falling as a power of N: 1 - p = 300 / N over the quick ladder (about 5e2 to 6e4)
    m = schaeffer2023.sweep_measures(tier, 0, _mirage_runs(tier, lambda N: 1 - 0.5 * (N / 526.0) ** -1.0))
    assert m["runs_finished"] == 1.0 and m["prediction_error"] == pytest.approx(0, abs=1e-12)
    assert m["exact_sharp"] == 1.0 and m["continuous_sharp"] == 0.0
    assert m["threshold_ratio"] > 1.5
    for cid in ("schaeffer2023.metric_mirage", "schaeffer2023.longer_answers_sharper"):
        d = get_claim(cid).rule.decide({s: m for s in range(3)}, faithful=True)
        assert d.verdict == "supported", (cid, d.reasons)


def test_a_missing_size_is_a_failed_premise_not_a_verdict():
    tier = schaeffer2023.TIERS["quick"]
    runs = _mirage_runs(tier, lambda N: 1 - 0.5 * (N / 526.0) ** -1.0)
    runs.pop(next(iter(runs)))
    m = schaeffer2023.sweep_measures(tier, 0, runs)
    d = get_claim("schaeffer2023.metric_mirage").rule.decide({0: m}, faithful=True)
    assert m["runs_finished"] < 1 and d.verdict == "inconclusive"


def test_transition_step_is_the_midpoint_of_a_smoothed_rise():
    steps = np.arange(0, 2001, 50)
    y = 0.1 + 0.8 / (1 + np.exp(-(steps - 790) / 60))
    assert lubana2025.transition_step(steps, y) == 800  # the first evaluation past the midpoint
    assert math.isnan(lubana2025.transition_step(steps, 0.1 + 0.2 * (steps > 1000)))  # a rise below 0.3
    assert lubana2025.smooth([0, 3, 0, 3])[1] == pytest.approx(1.0)
    assert lubana2025.settled(y) == pytest.approx(1.0, abs=1e-3)  # flat by three quarters of the run
    assert lubana2025.settled(np.linspace(0, 1, 41)) == pytest.approx(0.75, abs=0.03)  # still climbing


def test_lubana_measures_of_synthetic_learning_curves():
    tier = lubana2025.TIERS["smoke"]
    steps = list(range(0, 2001, 10))

    def sig(t0):
        return [float(0.05 + 0.9 / (1 + math.exp(-(s - t0) / 40))) for s in steps]

    from theorylab.tasks.percolation import World

    runs = {}
    for P in tier["properties"]:
        cfg = lubana2025.run_config(tier, 0, P)
        t_desc = 20 * math.sqrt(World.build(cfg.task, 0).n_value_nodes)  # grows like |K|^(1/2)
        series = {"grammar": (steps, sig(150)), "type_desc": (steps, sig(t_desc)), "type_rel": (steps, sig(t_desc + 20))}
        runs[f"K{P}"] = FakeRun({}, series, cfg)
    m = lubana2025.sweep_measures(tier, 0, runs)
    assert m["runs_finished"] == 1.0 and m["types_after_grammar"] >= 1.5 and m["types_apart"] <= 1.5
    assert m["grammar_learned"] > 0.9 and m["types_rose"] > 0.8 and m["types_settled"] > 0.99
    assert m["slope_desc"] == pytest.approx(0.5, abs=0.05) and m["transition_steps_measured"] == 3
    for cid in ("lubana2025.grammar_before_types", "lubana2025.type_constraints_together",
                "lubana2025.emergence_scales_sqrt_k"):
        assert get_claim(cid).rule.decide({s: m for s in range(3)}, faithful=True).verdict == "supported", cid


def test_onset_slope_reads_the_exponent_of_a_power_rise():
    q = np.array([0.1, 0.15, 0.2, 0.3, 0.5, 1.0])
    for k in (2, 4):
        acc = np.minimum(1.0, 0.9 * (q / 0.5) ** k)
        assert erdos1960.onset_slope(q, acc) == pytest.approx(k, rel=1e-6)
    assert math.isnan(erdos1960.onset_slope(q, np.zeros(6)))


def test_multi_hop_measures_of_a_model_that_knows_exactly_the_revealed_graph():
    """Accuracies equal to the data's ceiling (what the trained models reach in pilots): off below the
    percolation point, on above, and a steeper onset for 4 hops than for 2."""
    from theorylab.tasks.knowledge_graph import answerable_fraction, er_graph, reveal

    tier = erdos1960.TIERS["quick"]
    G = er_graph(tier["n"], tier["degree"], 0)
    runs = {}
    for q in tier["fractions"]:
        Gq = reveal(G, q, 0)
        acc = {k: answerable_fraction(G, Gq, k, max_hops=tier["max_hops"]) for k in range(1, 5)}
        runs[f"q{q:g}"] = FakeRun({"test/learned_mean_degree": 2 * Gq.number_of_edges() / tier["n"],
                                   "test/learned_giant": 0.5, "test/false_edge_fraction": 0.0,
                                   **{f"test/hop{k}_accuracy": a for k, a in acc.items()},
                                   **{f"test/hop{k}_reachable": a for k, a in acc.items()}})
    m = erdos1960.sweep_measures(tier, 0, runs)
    assert m["runs_finished"] == 1.0 and m["subcritical_runs"] >= 1 and m["supercritical_runs"] >= 1
    assert m["multi_hop_below"] <= 0.15 and m["multi_hop_above"] >= 0.5 and m["gap_to_ceiling"] == 0
    assert m["onset_slope_4"] > m["onset_slope_2"] > 0
    assert 0.2 < m["q_percolation"] < 0.3  # mean degree 1 of a degree-4 graph: q = 1/4
