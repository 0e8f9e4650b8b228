"""Bigram data with trigger tokens (Bietti et al. 2023): generator statistics, the Bayes loss,
the memory-recall probes on a hand-set induction model, and the task through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_earned

from theorylab.measures.induction import memory_recall_probes
from theorylab.tasks import IGNORE, build_task_config, make_task
from theorylab.tasks.bietti import row_entropy, stationary


def _task(seed=0, **kw):
    return make_task(build_task_config({"name": "bigram_triggers", **kw}), seed)


def test_triggers_are_the_most_likely_tokens_and_always_followed_by_their_output():
    task = _task(vocab=20, seq_len=64, n_triggers=3)
    mu = stationary(task.pi_b)
    assert np.allclose(mu @ task.pi_b, mu) and abs(mu.sum() - 1) < 1e-12
    assert set(task.triggers.tolist()) == set(np.argsort(-mu)[:3].tolist())
    b = task.sample(300, np.random.default_rng(1))
    z, outs = b.tokens.numpy(), b.extras["outputs"].numpy()
    n_checked = 0
    for r in range(len(z)):
        for t in range(z.shape[1] - 1):
            k = np.flatnonzero(task.triggers == z[r, t])
            if len(k):
                assert z[r, t + 1] == outs[r, k[0]]
                n_checked += 1
    assert n_checked > 1000


def test_other_transitions_follow_the_bigram_chain():
    task = _task(vocab=6, seq_len=200, n_triggers=1)
    b = task.sample(400, np.random.default_rng(2))
    z = b.tokens.numpy()
    counts = np.zeros((6, 6))
    for a, c in zip(z[:, :-1].ravel(), z[:, 1:].ravel()):
        counts[a, c] += 1
    for a in range(6):
        if a in task.triggers:
            continue
        emp = counts[a] / counts[a].sum()
        assert np.abs(emp - task.pi_b[a]).max() < 0.03, (a, emp, task.pi_b[a])


def test_kinds_mark_first_and_repeated_trigger_occurrences():
    task = _task(vocab=10, seq_len=40, n_triggers=2)
    b = task.sample(50, np.random.default_rng(3))
    z, kind = b.tokens.numpy(), b.extras["kind"].numpy()
    for r in range(len(z)):
        for t in range(z.shape[1] - 1):
            if z[r, t] in task.triggers:
                expected = 2 if (z[r, :t] == z[r, t]).any() else 1
            else:
                expected = 0
            assert kind[r, t] == expected
        assert kind[r, -1] == -1 and b.targets[r, -1] == IGNORE


def test_bigram_optimal_loss_is_the_entropy_rate_by_brute_force():
    task = _task(vocab=4, seq_len=300, n_triggers=1)
    b = task.sample(400, np.random.default_rng(4))
    z, kind = b.tokens.numpy(), b.extras["kind"].numpy()
    sel = kind[:, :-1] == 0
    nll = -np.log(task.pi_b[z[:, :-1], z[:, 1:]])[sel].mean()  # Monte Carlo cross-entropy of the true chain
    bayes = row_entropy(task.pi_b)[z[:, :-1][sel]].mean()
    assert abs(nll - bayes) < 0.02
    # and the closed form by enumeration: H(row) = -sum p log p
    row = task.pi_b[0]
    assert row_entropy(task.pi_b)[0] == pytest.approx(-sum(p * np.log(p) for p in row if p > 0))


def test_samples_are_deterministic_per_step():
    a, b = _task(seed=3), _task(seed=3)
    assert torch.equal(a.train_batch(7, 8).tokens, b.train_batch(7, 8).tokens)
    assert not torch.equal(a.train_batch(7, 8).tokens, a.train_batch(8, 8).tokens)
    assert np.array_equal(_task(seed=0).pi_b, _task(seed=5).pi_b)  # one chain for every run seed


def test_hand_built_induction_head_scores_one_and_random_model_scores_low():
    from theorylab.measures.induction import hand_built_induction_model
    from theorylab.models import Transformer, TransformerConfig

    task = _task(vocab=16, seq_len=32, n_triggers=3, n_test=64)
    model = hand_built_induction_model(16, 32)
    probes = memory_recall_probes(model)
    assert probes == {"probe_induction_output": 1.0, "probe_induction_key": 1.0, "probe_prev_token": 1.0}
    assert memory_recall_probes(model, task.triggers)["probe_induction_key_triggers"] == 1.0
    from theorylab.runs.loop import evaluate_model

    def measured(mdl):  # the task's metrics and the preset's probes, as the training loop logs them
        vals = evaluate_model(task, mdl, "cpu", torch.float32, 4096, ["trigger_heads", "memory_recall"])
        return {k.split("/", 1)[1]: v for k, v in vals.items()}

    m = measured(model)
    assert m["icl_accuracy"] == 1.0 and m["trigger_induction_score_l1"] > 0.95 and m["prev_token_score_l0"] > 0.95
    assert m["prev_token_after_trigger_l0"] > 0.95 and m["probe_induction_key_triggers"] == 1.0
    assert m["first_accuracy"] < 0.5  # first occurrences cannot be predicted in context
    rand = Transformer(TransformerConfig(d_vocab=16, n_ctx=32, d_model=64, n_layers=2, n_heads=2, attn_only=True,
                                         norm="none"), generator=torch.Generator().manual_seed(0))
    r = memory_recall_probes(rand)
    assert r["probe_induction_output"] < 0.4 and r["probe_induction_key"] < 0.4 and r["probe_prev_token"] < 0.4
    mr = measured(rand)
    assert mr["icl_accuracy"] < 0.3 and mr["prev_token_after_trigger_l0"] < 0.3


def test_previous_token_after_trigger_counts_only_rows_after_a_trigger():
    from theorylab.measures.induction import previous_token_after_trigger_score

    tokens = torch.tensor([[5, 1, 5, 2]])
    pat = torch.zeros(1, 2, 4, 4)
    pat[0, :, 0, 0] = 1.0
    pat[0, 0, 1, 0] = 1.0  # head 0 attends to the trigger from the position after it
    pat[0, 0, 3, 2] = 1.0
    pat[0, 1, 1, 1] = pat[0, 1, 3, 3] = 1.0  # head 1 attends to itself
    pat[0, :, 2, 2] = 1.0  # row 2 (previous token 1, not a trigger) is not counted
    assert previous_token_after_trigger_score(tokens, pat, [5]).tolist() == [1.0, 0.0]


def test_bad_config_is_one_clear_error(store, capsys):
    from theorylab.cli import main

    assert main(["train", "bigram_triggers", "task.n_triggers=70"]) == 2
    err = capsys.readouterr().err
    assert "n_triggers" in err and err.strip().count("\n") == 0


def test_cli_trains_the_task_and_logs_probes(store, capsys):
    from theorylab.cli import main

    rc = main(["train", "bigram_triggers", "task.vocab=16", "task.seq_len=24", "task.n_test=32", "model.d_model=32",
               "train.steps=6", "train.eval_every=3", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    m = json.loads(out)["metrics"]
    assert {"test/icl_accuracy", "test/bigram_optimal_loss", "test/probe_induction_output", "test/probe_prev_token",
            "test/trigger_induction_score_l1"} <= set(m)


@pytest.mark.slow
def test_claim_runs_at_smoke_tier(tmp_path):
    from theorylab.claims.engine import check
    from theorylab.store import Store

    res = check("bietti2023.induction_from_triggers", tier="smoke", backend="inprocess", store=Store(tmp_path))
    assert_earned(res)
    assert {"icl_accuracy", "icl_minus_first_accuracy", "probe_induction_output", "icl_accuracy_one_layer"} <= set(res.stats)
    assert "training_dynamics" in res.figures
