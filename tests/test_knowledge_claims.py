"""The knowledge claims (Allen-Zhu & Li, Parts 3.1-3.3) end to end at smoke tier, the run family they share, and
the measures they rest on: the know-nobody guesses (retrieval, yes/no verdicts, probes) and the capacity ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from theorylab.claims import engine, get_claim
from theorylab.errors import ConfigError
from theorylab.measures.knowledge import capacity_ratio, guess_accuracy, probe_chance, verdict_guess
from theorylab.tasks import build_task_config, make_task


def _task(**kw):
    cfg = build_task_config({"name": "bios", "n_people": 60, "n_first": 5, "n_middle": 5, "n_last": 5,
                             "n_years": 3, "n_cities": 4, "n_universities": 4, "n_majors": 4, "n_employers": 4,
                             "n_eval": 30, **kw})
    return make_task(cfg, 0)


def test_the_guess_is_the_training_halfs_most_common_answer_scored_on_the_held_out_half():
    task = _task()
    w = task.world
    people = task.eval_people["qa_test"]
    # by hand, per attribute: the mode among p_train, and how often it is right among the evaluated people
    hits = []
    for values in ((w.year * 12 + w.month) * 28 + w.day, w.birth_city, w.university, w.major, w.employer,
                   w.company_city):
        mode = np.bincount(values[w.p_train]).argmax()
        hits.append(np.mean(values[people] == mode))
    assert guess_accuracy(task) == pytest.approx(float(np.mean(hits)))
    # pools of 4: each attribute near 1/4 (a date of 3 x 12 x 28 values near 0), never far above
    assert 0.1 < guess_accuracy(task) < 0.45
    with pytest.raises(ConfigError, match="split"):
        guess_accuracy(task, "bio")


def test_the_capacity_ratio_is_the_largest_bits_per_parameter_and_its_line():
    params = np.array([100.0, 200.0, 400.0, 800.0])
    bits = np.array([200.0, 390.0, 600.0, 600.0])  # the two small models full at 2 bits/param; the large hold all
    r = capacity_ratio(bits, params)
    assert r["ratio"] == pytest.approx(2.0)
    assert r["n_at_capacity"] == 2  # 1.95 is within 20% of 2; 1.5 and 0.75 are not
    assert r["slope"] == pytest.approx((200 * 100 + 390 * 200) / (100 ** 2 + 200 ** 2))
    with pytest.raises(ConfigError, match="positive"):
        capacity_ratio([1.0], [0.0])
    with pytest.raises(ConfigError, match="equal length"):
        capacity_ratio([1.0, 2.0], [1.0])


def test_the_verdict_guess_is_the_trained_questions_most_common_verdict_scored_on_the_held_out_ones():
    task = _task(qa_kinds=["classify", "classify_cot", "compare", "compare_cot"])
    w = task.world
    month = w.month
    trained = month[w.p_train]
    # classification: the share of "yes" (an even calendar month; January = month 1) among the trained people
    share = np.mean([(m + 1) % 2 == 0 for m in trained])
    held = task.eval_people["qa_test"]
    yes = (month[held] + 1) % 2 == 0
    want = 0.5 if share == 0.5 else float(np.mean(yes if share > 0.5 else ~yes))
    assert verdict_guess(task, "classify") == pytest.approx(want)
    assert verdict_guess(task, "classify_cot") == verdict_guess(task, "classify")  # the verdict alone
    # comparison: a trained person A and a trained partner B born in another month, uniformly; "yes" iff A's month
    # is earlier.  By hand, pair by pair
    shares = []
    for a in trained:
        partners = [b for b in trained if b != a]
        shares.append(np.mean([a < b for b in partners]))
    share = float(np.mean(shares))
    yes = month[held] < month[task.eval_partners["qa_test"]]
    want = 0.5 if share == 0.5 else float(np.mean(yes if share > 0.5 else ~yes))
    assert verdict_guess(task, "compare") == pytest.approx(want)
    for kind in ("classify", "compare"):  # about a half: six months of twelve are even, pairs are symmetric
        assert 0.3 < verdict_guess(task, kind) < 0.7
        assert 0.3 < verdict_guess(task, kind, "qa_train") < 0.7
    with pytest.raises(ConfigError, match="kind"):
        verdict_guess(task, "retrieval")
    with pytest.raises(ConfigError, match="qa_kinds"):
        verdict_guess(_task(), "classify")  # a task that does not ask it
    with pytest.raises(ConfigError, match="split"):
        verdict_guess(task, "compare", "bio")


def test_the_probe_chance_is_the_training_halfs_most_common_label_scored_on_the_held_out_half():
    task = _task()
    w = task.world
    arrays = {"birth_date": w.month, "birth_city": w.birth_city, "university": w.university, "major": w.major,
              "employer": w.employer, "company_city": w.company_city}
    chance = probe_chance(task)
    for a, labels in arrays.items():
        mode = np.bincount(labels[w.p_train]).argmax()
        assert chance[a] == pytest.approx(np.mean(labels[w.p_test] == mode)), a
    assert chance["mean"] == pytest.approx(np.mean([chance[a] for a in arrays]))
    assert 0.1 < chance["mean"] < 0.6  # pools of 4 (12 months for the birth date): near 1/4, never near 1


CLAIMS_31 = ("allenzhu2023a.augmentation_makes_knowledge_extractable", "allenzhu2023a.mixed_training_extracts",
             "allenzhu2023a.multiplicity_and_fullname_help_alone",
             "allenzhu2023a.augmentation_stores_knowledge_at_the_name")
CLAIMS_32 = ("allenzhu2023b.inverse_search_fails", "allenzhu2023b.manipulation_needs_cot")


@pytest.mark.parametrize("tier", ["smoke", "quick", "full"])
def test_the_knowledge_claims_share_one_run_family(tier):
    """A run name means one config in every claim that declares it (the store trains it once), and the arms the
    first claims had keep the configs they had: bioS single and multi5 + permute + fullname, the steps of their
    tier, the fine-tuning a child of the pre-training."""
    ids: dict[str, set[str]] = {}
    for cid in CLAIMS_31 + CLAIMS_32:
        for name, cfg in get_claim(cid).experiment(tier, 0).items():
            ids.setdefault(name, set()).add(cfg.run_id())
    assert all(len(v) == 1 for v in ids.values()), ids
    aug = get_claim(CLAIMS_31[0])
    t = aug.params(tier)
    runs = aug.experiment(tier, 0)
    for variant, (multi, shuffled) in {"single": (1, False), "augmented": (5, True)}.items():
        pre, fine = runs[f"pretrain_{variant}"], runs[f"finetune_{variant}"]
        assert (pre.task.multi, pre.task.permute, pre.task.fullname) == (multi, shuffled, shuffled)
        assert pre.train.steps == t["aug_steps" if shuffled else "bio_steps"] and pre.task.stage == "bio"
        assert fine.parent == pre.run_id() and fine.train.steps == t["qa_steps"] and fine.task.qa_kinds == ["retrieval"]
    # the probe claim reads the augmentation claim's pre-trainings; the per-variant claim its fine-tunings
    probe = get_claim(CLAIMS_31[3]).experiment(tier, 0)
    assert {k: v.run_id() for k, v in probe.items()} == {k: runs[k].run_id() for k in probe}
    alone = get_claim(CLAIMS_31[2]).experiment(tier, 0)
    for v, data in {"multi5": (5, False, False), "permute": (1, True, False), "fullname": (1, False, True)}.items():
        c = alone[f"pretrain_{v}"].task
        assert (c.multi, c.permute, c.fullname) == data
        assert alone[f"finetune_{v}"].parent == alone[f"pretrain_{v}"].run_id()
    # the mixed claim's positive control: mixed training on the augmented biographies, as long as single's
    mixed = get_claim(CLAIMS_31[1]).experiment(tier, 0)
    assert mixed["mixed_augmented"].task.multi == 5 and mixed["mixed_augmented"].task.stage == "mixed"
    assert mixed["mixed_augmented"].train.steps == mixed["mixed_single"].train.steps
    # both 3.2 claims read one fine-tuning of the augmented pre-training on all six question kinds
    inv, cot = (get_claim(c).experiment(tier, 0) for c in CLAIMS_32)
    assert inv["manipulation"].run_id() == cot["manipulation"].run_id()
    assert inv["manipulation"].parent == runs["pretrain_augmented"].run_id()
    assert set(inv["manipulation"].task.qa_kinds) == {"retrieval", "inverse", "classify", "classify_cot", "compare",
                                                      "compare_cot"}
    assert inv["manipulation"].train.steps == 3 * t["qa_steps"]  # half the 3.1 fine-tuning's rows per kind


def test_protocol_arms_are_checked():
    from theorylab.claims.papers.allenzhu2023a import protocol_runs

    t = get_claim(CLAIMS_31[0]).params("smoke")
    with pytest.raises(ConfigError, match="arm"):
        protocol_runs(t, 0, ("distill_single",))
    with pytest.raises(ConfigError, match="variant"):
        protocol_runs(t, 0, ("finetune_multi3",))


def test_accuracy_bars_draw_one_bar_per_arm_and_the_chance_lines():
    from theorylab.figures.knowledge import accuracy_bars

    fig = accuracy_bars({"a": [0.2, 0.3], "b": [0.9, float("nan")]}, "held-out accuracy", {"chance": 0.5,
                                                                                        "unknown": float("nan")})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert ax.get_ylabel() == "held-out accuracy"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["chance (0.50)"]
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.25, 0.9])


# claim -> (fine-tuned run, its parent) whose lineage the report must show, or None
LINEAGE = {"allenzhu2023a.augmentation_makes_knowledge_extractable": ("finetune_single", "pretrain_single"),
           "allenzhu2023a.mixed_training_extracts": ("finetune_single", "pretrain_single"),
           "allenzhu2023a.multiplicity_and_fullname_help_alone": ("finetune_permute", "pretrain_permute"),
           "allenzhu2023a.augmentation_stores_knowledge_at_the_name": None,
           "allenzhu2023b.inverse_search_fails": ("manipulation", "pretrain_augmented"),
           "allenzhu2023b.manipulation_needs_cot": ("manipulation", "pretrain_augmented"),
           "allenzhu2024.two_bits_per_parameter": None}


@pytest.mark.parametrize("claim_id", [pytest.param("allenzhu2023a.augmentation_makes_knowledge_extractable",
                                                   marks=pytest.mark.slow),  # four runs, about 10 s
                                      "allenzhu2023a.multiplicity_and_fullname_help_alone",  # ten runs, 4 s
                                      "allenzhu2023a.mixed_training_extracts",
                                      "allenzhu2023a.augmentation_stores_knowledge_at_the_name",
                                      "allenzhu2023b.inverse_search_fails",
                                      "allenzhu2023b.manipulation_needs_cot",
                                      "allenzhu2024.two_bits_per_parameter"])
def test_knowledge_claims_run_end_to_end_at_smoke_tier(store, claim_id):
    res = engine.check(claim_id, tier="smoke", backend="inprocess", store=store)
    # smoke models are far too small to memorise anything: a premise fails and the verdict is inconclusive,
    # never a refutation (no tier here is faithful)
    assert res.verdict == "inconclusive"
    assert any("premise" in r or "cannot refute" in r for r in res.reasons), res.reasons
    for name, stat in res.stats.items():
        assert stat["n"] == 2, name
        # a ratio of ratios is infinite when the 1,000-exposure models store nothing (smoke sizes)
        assert math.isfinite(stat["mean"]) or name == "ratio_100_over_1000", name
    if LINEAGE[claim_id]:
        # a fine-tuned run names its parent, and the report shows the lineage
        from theorylab.report.html import render_html

        runs = res.run_ids[0]
        child, parent = runs[LINEAGE[claim_id][0]], runs[LINEAGE[claim_id][1]]
        assert store.get_run(child).config["parent"] == parent
        assert f"{parent} -&gt; {child}" in render_html([res], [], store)
    if claim_id.startswith("allenzhu2024"):
        assert "capacity" in res.tables and res.figures
    if claim_id.startswith("allenzhu2023b"):
        # every question kind is reported for every seed, with its chance level
        table = res.tables["manipulation"]
        assert {r[1] for r in table["rows"]} == {"retrieval", "inverse", "classify", "classify_cot", "compare",
                                                 "compare_cot"} and len(table["rows"]) == 12
        for q in res.per_seed.values():
            for kind in ("classify", "compare"):
                assert q[f"{kind}_above_chance"] == pytest.approx(q[kind] - q[f"{kind}_guess"])
                assert 0.2 < q[f"{kind}_guess"] < 0.8
    if claim_id == "allenzhu2023a.augmentation_stores_knowledge_at_the_name":
        rows = res.tables["probes"]["rows"]
        assert len(rows) == 2 * 5  # per seed: P and Q for single and augmented, and the chance level
        for q in res.per_seed.values():
            assert 0.0 <= q["chance"] < 0.6 and q["p_min"] == min(q["p_single"], q["p_augmented"])
            assert q["q_single_above_chance"] == pytest.approx(q["q_single"] - q["chance"])
    if claim_id in ("allenzhu2023a.multiplicity_and_fullname_help_alone", "allenzhu2023b.manipulation_needs_cot",
                    "allenzhu2023a.augmentation_stores_knowledge_at_the_name"):
        assert res.figures
