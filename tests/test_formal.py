"""Formal-language tasks (Delétang et al. 2023): generators against brute-force references,
the per-length protocol, the registry's Chomsky levels, the CLI and the claims at smoke tier."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_earned

from theorylab.tasks import IGNORE, build_task_config, get_task, make_task, task_names
from theorylab.tasks.formal import FORMAL_TASKS, per_length

SUITE = ["even_pairs", "parity_check", "modular_arithmetic", "cycle_navigation", "reverse_string",
         "stack_manipulation", "duplicate_string", "missing_duplicate", "bucket_sort", "first"]


def _task(name: str, seed: int = 0, **kw):
    return make_task(build_task_config({"name": name, **kw}), seed)


def _split(task, batch):
    """(input symbols, slot targets) per row of a batch."""
    q = task.n_symbols
    rows = []
    for tok, tgt in zip(batch.tokens.tolist(), batch.targets.tolist()):
        x = [t for t in tok if t != q]
        y = [g for t, g in zip(tok, tgt) if t == q]
        rows.append((x, y))
    return rows


def test_every_task_registered_with_its_chomsky_level():
    levels = {n: get_task(n).level for n in SUITE}
    assert set(SUITE) <= set(task_names())
    assert levels == {"even_pairs": "regular", "parity_check": "regular", "modular_arithmetic": "regular",
                      "cycle_navigation": "regular", "first": "regular", "reverse_string": "dcf",
                      "stack_manipulation": "dcf", "duplicate_string": "cs", "missing_duplicate": "cs",
                      "bucket_sort": "cs"}


@pytest.mark.parametrize("name", SUITE)
def test_generator_matches_brute_force_reference(name):
    task = _task(name)
    cls = FORMAL_TASKS[name]
    for length in range(1, 13):
        batch = task.batch(np.random.default_rng([length, 7]), 150, length)
        assert batch.tokens.shape[1] == batch.targets.shape[1]
        for x, y in _split(task, batch):
            assert all(0 <= t < cls.n_symbols for t in x)
            assert y == cls.reference(x), (name, x, y)
            assert all(g == IGNORE or 0 <= g < cls.n_classes for g in y)
        # inputs are never targets: loss only on the output slots
        assert (batch.targets[batch.tokens != cls.n_symbols] == IGNORE).all()


@pytest.mark.parametrize("name", ["even_pairs", "parity_check", "cycle_navigation", "first"])
def test_every_string_of_small_length_gets_the_brute_force_label(name):
    cls = FORMAL_TASKS[name]
    task = _task(name)
    seen = set()
    batch = task.batch(np.random.default_rng(0), 12000, 6)
    for x, y in _split(task, batch):
        seen.add(tuple(x))
        assert y == cls.reference(x)
    assert len(seen) == cls.n_symbols ** 6  # the sampler covers every string of length 6


def test_references_on_worked_examples():
    ma, st, md = FORMAL_TASKS["modular_arithmetic"], FORMAL_TASKS["stack_manipulation"], FORMAL_TASKS["missing_duplicate"]
    P, M, T = 5, 6, 7  # + - *
    assert ma.reference([1, P, 2, T, 3]) == [2]  # 1 + 2 * 3 = 7 = 2 mod 5
    assert ma.reference([1, M, 1, M, 1]) == [4]  # -1 = 4 mod 5
    assert ma.reference([0, T, 1, P, 4, T, 3, M, 2]) == [0]  # 0 + 12 - 2 = 10
    # stack 0 1 1 0 (bottom first), PUSH 1, POP, POP -> 1 1 0 (top first), stop, no target after
    assert st.reference([0, 1, 1, 0, 4, 2, 2]) == [1, 1, 0, 2] + [IGNORE] * 4
    assert st.reference([1, 1, 0, 2, 2, 2]) == [2] + [IGNORE] * 6  # the stack ends empty
    assert md.reference([0, 1, 1, 0, 0, 2, 1, 0]) == [1]
    assert md.reference([1, 0, 1, 1, 2, 1, 3]) == [0]
    assert FORMAL_TASKS["even_pairs"].reference([0, 1, 1, 0]) == [1]  # ab, ba: two pairs
    assert FORMAL_TASKS["even_pairs"].reference([0, 1, 1]) == [0]
    assert FORMAL_TASKS["bucket_sort"].reference([3, 0, 4, 0]) == [0, 0, 3, 4]
    assert FORMAL_TASKS["cycle_navigation"].reference([1, 2, 0, 2, 2]) == [3]


def test_modular_arithmetic_even_length_drops_the_last_symbol():
    task = _task("modular_arithmetic")
    b = task.batch(np.random.default_rng(0), 10, 8)
    assert b.tokens.shape[1] == 7 + 1  # seven symbols and one output slot


def test_stack_manipulation_covers_all_actions_and_empty_stacks():
    task = _task("stack_manipulation")
    b = task.batch(np.random.default_rng(1), 2000, 6)
    x = b.tokens[:, :6]
    assert set(x.unique().tolist()) == {0, 1, 2, 3, 4}
    first_slot = b.targets[:, 6]
    assert (first_slot == 2).any()  # some final stacks are empty


def test_training_draws_one_length_per_step_and_is_deterministic():
    task = _task("reverse_string", train_min_length=2, train_max_length=9)
    lengths = set()
    for step in range(60):
        b = task.train_batch(step, 8)
        L = (b.tokens != task.n_symbols).sum(1)
        assert (L == L[0]).all() and 2 <= int(L[0]) <= 9
        lengths.add(int(L[0]))
        assert torch.equal(b.tokens, _task("reverse_string", train_min_length=2, train_max_length=9)
                           .train_batch(step, 8).tokens)
    assert lengths == set(range(2, 10))


def test_lengths_protocol_and_model_defaults():
    cfg = build_task_config({"name": "duplicate_string", "train_max_length": 40, "test_max_length": 500,
                             "test_stride": 50})
    assert cfg.train_lengths() == list(range(1, 41))
    assert cfg.test_lengths()[0] == 41 and cfg.test_lengths()[-1] == 500
    d = cfg.model_defaults()
    assert d["architecture"] == "encoder" and d["n_ctx"] == 500 * 3 and d["d_vocab"] == 3 and d["d_vocab_out"] == 2


class _Oracle(torch.nn.Module):
    """Logits that put all mass on the reference answer (or on class 0: ``constant=True``)."""

    def __init__(self, task, constant=False):
        super().__init__()
        self.task, self.constant = task, constant

    def forward(self, tokens):
        cls = FORMAL_TASKS[self.task.cfg.name]
        logits = torch.zeros(*tokens.shape, cls.n_classes)
        for r, row in enumerate(tokens.tolist()):
            x = [t for t in row if t != cls.n_symbols]
            y = cls.reference(x)
            for k, g in enumerate(y):
                logits[r, len(x) + k, 0 if self.constant or g == IGNORE else g] = 30.0
        return logits


@pytest.mark.parametrize("name", ["stack_manipulation", "duplicate_string", "parity_check"])
def test_evaluate_reports_per_length_accuracy_and_score(name):
    task = _task(name, train_max_length=5, test_max_length=20, test_stride=5, n_eval=24)
    m = task.evaluate(_Oracle(task), "cpu", None, 64)
    lengths, accs = per_length(m, "test")
    assert lengths == [6, 11, 16, 20]
    assert accs == [1.0] * 4 and m["test/accuracy"] == 1.0 and m["train/accuracy"] == 1.0
    assert per_length(m, "train")[0] == [1, 2, 3, 4, 5]
    const = task.evaluate(_Oracle(task, constant=True), "cpu", None, 64)
    assert const["test/accuracy"] == pytest.approx(np.mean(per_length(const, "test")[1]))
    assert const["test/accuracy"] < 0.9


def test_evaluation_strings_are_fixed_per_seed_and_length():
    a, b = _task("bucket_sort"), _task("bucket_sort")
    assert torch.equal(a.eval_batch("test", 57).tokens, b.eval_batch("test", 57).tokens)
    assert not torch.equal(a.eval_batch("test", 57).tokens, _task("bucket_sort", seed=1).eval_batch("test", 57).tokens)


def test_bad_lengths_are_one_clear_error(cli):
    rc, out, err = cli("train", "parity_check", "task.train_min_length=9", "task.train_max_length=3")
    assert rc == 2 and out == ""
    assert "train_min_length" in err and err.strip().count("\n") == 0


def test_cli_trains_every_formal_task_and_logs_per_length_accuracy(cli):
    for name in ["even_pairs", "missing_duplicate"]:
        rc, out, err = cli("train", name, "train.steps=4", "task.train_max_length=4", "task.test_max_length=9",
                    "task.test_stride=2", "task.n_eval=8", "model.n_layers=1", "model.d_model=16", "--json")
        assert rc == 0, err
        m = json.loads(out)["metrics"]
        assert {"test/acc_len_5", "test/acc_len_7", "test/acc_len_9", "test/accuracy", "train/acc_len_1"} <= set(m)


@pytest.mark.parametrize("pos", ["none", "sinusoidal", "learned", "rotary", "alibi"])
def test_every_positional_encoding_trains_on_longer_test_strings(pos, tmp_path):
    from theorylab.claims.papers.deletang2023 import formal_config
    from theorylab.runs import train
    from theorylab.store import Store

    cfg = formal_config("reverse_string", 0, positional=pos, train_max=4, test_max=10, stride=3, n_eval=8, steps=3,
                        layers=1, d_model=16, heads=2, batch=8)
    res = train(cfg, store=Store(tmp_path))
    lengths, accs = per_length(res.metrics, "test")
    assert lengths == [5, 8, 10] and all(0 <= a <= 1 for a in accs)


def test_suite_claim_at_smoke_tier_has_a_score_table(tmp_path):
    from theorylab.claims.engine import check
    from theorylab.report.markdown import render_markdown
    from theorylab.store import Store

    res = check("deletang2023.no_length_generalization", tier="smoke", backend="inprocess", store=Store(tmp_path))
    # 40 steps fit nothing: the premise says so, and nothing is supported or refuted
    assert res.verdict == "inconclusive" and res.reasons[0].startswith("premise not met: the model fits")
    assert not res.tier_faithful
    for t in ["reverse_string", "stack_manipulation", "duplicate_string", "missing_duplicate"]:
        assert 0 <= res.stat(f"score_{t}").mean <= 1
    assert 0 <= res.stat("score_control").mean <= 1  # the positive control ran with the same sizes
    tab = res.tables["scores"]
    assert len(tab["rows"]) == 4 and tab["columns"][0] == "task" and "positive control first" in tab["note"]
    published = {row[0]: row[6] for row in tab["rows"]}
    assert published["reverse_string"] == "62.3" and published["missing_duplicate"] == ""
    assert {row[0]: row[7] for row in tab["rows"]}["stack_manipulation"].startswith("unverified")
    assert "per_length_accuracy" in res.figures
    md = render_markdown([res], [])
    assert "**scores**" in md and "| reverse_string | dcf | sinusoidal |" in md
    from theorylab.claims.engine import ClaimResult
    from theorylab.report.html import render_html

    again = ClaimResult.from_dict(res.to_dict())  # the table survives the store's JSON
    assert again.tables == res.tables
    html = render_html([again], [])
    assert "Table: scores" in html and "<td>stack_manipulation</td>" in html


@pytest.mark.slow
@pytest.mark.parametrize("claim", ["deletang2023.parity_every_encoding", "chiang2022.first_log_length_training"])
def test_other_formal_claims_at_smoke_tier(claim, tmp_path):
    from theorylab.claims.engine import check
    from theorylab.store import Store

    res = check(claim, tier="smoke", backend="inprocess", store=Store(tmp_path))
    assert_earned(res)
    assert not any("not measured" in r for r in res.reasons)
    assert res.figures
