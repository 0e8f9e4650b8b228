"""Premises, per-criterion statistics and faithful/proxy tiers (theorylab.claims.statistics)."""

from __future__ import annotations

import json
import math

import pytest

from theorylab.claims.statistics import (
    Criterion,
    Premise,
    bootstrap_interval,
    clopper_pearson,
    converged,
    fitted,
    happened,
)
from theorylab.claims.statistics import all_of as rule_of


def seeds(*rows: dict) -> dict[int, dict[str, float]]:
    return dict(enumerate(rows))


# --------------------------------------------------------------------------- premises


def test_a_failed_premise_makes_any_verdict_inconclusive_and_names_it():
    rule = rule_of(Criterion("x", ">=", 0.5), premises=[fitted("train_acc", 0.95, why="fit first")])
    good = seeds({"x": 0.9, "train_acc": 1.0}, {"x": 0.91, "train_acc": 0.99}, {"x": 0.92, "train_acc": 0.97})
    assert rule.decide(good).verdict == "supported"
    one_bad = {**good, 1: {"x": 0.91, "train_acc": 0.62}}
    d = rule.decide(one_bad)
    assert d.verdict == "inconclusive"
    assert d.reasons[0] == ("premise not met: the model fitted its training data (train_acc >= 0.95; "
                            "seed 1: 0.62)")
    assert d.premises[0]["met"] is False and d.premises[0]["failed"] == [1]
    # a result that would refute is inconclusive too when a premise fails
    refuting = {s: {"x": 0.1, "train_acc": 0.5} for s in range(3)}
    assert rule.decide(refuting).verdict == "inconclusive"
    # a premise never measured fails
    assert rule.decide(seeds({"x": 0.9}, {"x": 0.9})).verdict == "inconclusive"


def test_premise_helpers():
    assert converged("tail_change", 0.05, why="w").check(seeds({"tail_change": 0.01}))["met"]
    assert not converged("tail_change", 0.05, why="w").check(seeds({"tail_change": 0.2}))["met"]
    p = happened("head_formed", ">=", 1.0, why="w", name="the head formed")
    assert p.check(seeds({"head_formed": 1.0}, {"head_formed": 1.0}))["met"]
    assert not p.check(seeds({"head_formed": 1.0}, {"head_formed": float("nan")}))["met"]
    assert "the head formed: head_formed >= 1" in p.describe()


# --------------------------------------------------------------------------- statistics


def test_count_is_an_exact_rule_with_a_clopper_pearson_interval():
    c = Criterion("formed", ">=", 1.0, stat="count", at_least=0.8)
    j = c.judge([1, 1, 1, 1, 0])  # 4 of 5 >= ceil(0.8 * 5) = 4
    assert j["verdict"] == "supported" and j["k"] == 4 and j["n"] == 5
    lo, hi = clopper_pearson(4, 5)
    assert (j["lo"], j["hi"]) == (lo, hi) and lo == pytest.approx(0.2836, abs=1e-4) and hi == pytest.approx(0.9949, abs=1e-4)
    assert c.judge([1, 1, 1, 0, 0])["verdict"] == "refuted"
    assert c.judge([1, 1, 1, 1, float("nan")])["verdict"] == "supported"  # NaN is a 'no'
    # two of two is a count, never a zero-width interval that 'supports' from one outcome
    every = Criterion("formed", ">=", 1.0, stat="every")
    assert every.judge([1, 1])["verdict"] == "supported" and every.judge([1] * 9 + [0])["verdict"] == "refuted"
    # a t interval of 0/1 outcomes is what this replaces: 9 of 10 straddles and can never be decided
    assert Criterion("formed", ">=", 1.0).judge([1] * 9 + [0])["verdict"] == "inconclusive"


def test_clopper_pearson_edges():
    assert clopper_pearson(0, 5)[0] == 0.0 and clopper_pearson(5, 5)[1] == 1.0
    lo, hi = clopper_pearson(0, 5)
    assert hi == pytest.approx(1 - 0.025 ** (1 / 5))


def test_max_and_min_judge_the_best_seed_as_the_paper_reports_it():
    assert Criterion("score", "<", 0.9, stat="max").judge([0.5, 0.6, 0.95])["verdict"] == "refuted"
    j = Criterion("score", "<", 0.9, stat="max").judge([0.5, 0.6, 0.7])
    assert j["verdict"] == "supported" and j["estimate"] == 0.7
    assert Criterion("err", "<=", 0.1, stat="min").judge([0.5, 0.05])["verdict"] == "supported"


def test_log_mean_judges_ratios_in_log_space():
    c = Criterion("ratio", ">=", 5.0, stat="log_mean")
    j = c.judge([8.0, 10.0, 12.0])
    assert j["verdict"] == "supported" and j["estimate"] == pytest.approx((8 * 10 * 12) ** (1 / 3))
    assert c.judge([1.0, 1.2, 0.9])["verdict"] == "refuted"
    assert c.judge([8.0, -1.0, 10.0])["verdict"] == "inconclusive"
    with pytest.raises(ValueError):
        Criterion("ratio", ">=", 0.0, stat="log_mean")


def test_bootstrap_interval_is_deterministic_and_brackets_the_mean():
    v = [0.1, 0.4, 0.35, 0.2, 0.5, 0.3]
    lo, hi = bootstrap_interval(v)
    assert (lo, hi) == bootstrap_interval(v) and lo < sum(v) / len(v) < hi
    assert math.isinf(bootstrap_interval([1.0])[0])
    j = Criterion("x", ">=", 0.05, stat="bootstrap").judge(v)
    assert j["verdict"] == "supported" and j["lo"] == lo


def test_criterion_declares_a_known_statistic():
    with pytest.raises(ValueError):
        Criterion("x", ">=", 1.0, stat="median")
    with pytest.raises(ValueError):
        Criterion("x", ">=", 1.0, stat="count")  # needs at_least


# --------------------------------------------------------------------------- faithful and proxy tiers


def test_a_proxy_tier_cannot_refute():
    rule = rule_of(Criterion("x", ">=", 0.5), premises=[Premise("p", "p", ">=", 0.0)])
    bad = seeds({"x": 0.1, "p": 1}, {"x": 0.11, "p": 1}, {"x": 0.12, "p": 1})
    assert rule.decide(bad, faithful=True).verdict == "refuted"
    d = rule.decide(bad, faithful=False)
    assert d.verdict == "inconclusive" and d.reasons[0].startswith("absent at proxy scale")
    good = seeds({"x": 0.9, "p": 1}, {"x": 0.91, "p": 1})
    assert rule.decide(good, faithful=False).verdict == "supported"  # a proxy may support


def test_check_json_has_premises_tier_and_statistics(tmp_path, monkeypatch, capsys):
    """theorylab check ID --json returns premises (name, value, bound, met), tier_faithful and, per criterion,
    the statistic used."""
    from theorylab.claims import CLAIMS, Citation, Claim, Tier, register_claim
    from theorylab.cli import main

    class _Counted(Claim):
        id = "counted2024.every_seed"
        title, statement = "counted", "every seed forms it"
        citation = Citation("Nobody", 2024, "Nothing")
        rule = rule_of(Criterion("formed", ">=", 1.0, stat="every", why="every seed"),
                       premises=[fitted("fit", 0.9, why="fits")])
        tiers = {"smoke": Tier(faithful=False)}
        seeds = {"smoke": 3}

        def measure(self, tier, seed, runs):
            return {"formed": 1.0, "fit": 0.95 + 0.01 * seed}

    register_claim(_Counted)
    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path))
    try:
        assert main(["check", _Counted.id, "--tier", "smoke", "--backend", "inprocess", "--json"]) == 0
        r = json.loads(capsys.readouterr().out)["results"][0]
        assert r["verdict"] == "supported" and r["tier_faithful"] is False
        p = r["premises"][0]
        assert p["name"] == "the model fitted its training data" and p["bound"] == 0.9 and p["met"] is True
        assert p["values"] == {"0": 0.95, "1": 0.96, "2": 0.97}
        c = r["criteria"][0]
        assert c["statistic"] == "every seed" and c["k"] == 3 and c["n"] == 3 and c["verdict"] == "supported"
        # extra seeds after an inconclusive result are flagged
        _Counted.measure = lambda self, tier, seed, runs: {"formed": 1.0, "fit": 0.5}
        assert main(["check", _Counted.id, "--tier", "smoke", "--backend", "inprocess", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["results"][0]["verdict"] == "inconclusive"
        assert main(["check", _Counted.id, "--tier", "smoke", "--seeds", "5", "--backend", "inprocess",
                     "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["results"][0]["seeds_after_inconclusive"] is True
    finally:
        CLAIMS.pop(_Counted.id, None)
