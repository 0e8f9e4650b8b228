"""The repeated-random-token task: layout, variable periods, metrics from attention patterns."""

from __future__ import annotations

import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.tasks.induction import InductionConfig, InductionTask


def test_sequences_repeat_a_block_of_variable_length():
    task = InductionTask(InductionConfig(vocab=30, period=12, min_period=5, n_test=8), seed=0)
    b = task.train_batch(4, 50)
    assert b.tokens.shape == (50, 24)
    periods = b.extras["period"]
    assert periods.min() >= 5 and periods.max() <= 12 and len(set(periods.tolist())) > 3
    for r, p in enumerate(periods.tolist()):
        assert torch.equal(b.tokens[r, :p], b.tokens[r, p:2 * p])
        assert b.extras["second"][r].sum() == p
    assert torch.equal(b.targets[:, :-1], b.tokens[:, 1:])
    assert torch.equal(task.train_batch(4, 50).tokens, b.tokens)  # pure function of (seed, step)
    with pytest.raises(ConfigError, match="min_period"):
        InductionTask(InductionConfig(period=4, min_period=6), seed=0)


def test_training_reports_in_context_gain_and_scores():
    from theorylab.runs import build_run_config, train

    cfg = build_run_config("induction", ["task.vocab=20", "task.period=8", "task.min_period=4", "task.n_test=32",
                                         "model.d_model=32", "train.steps=20", "train.eval_every=10"])
    r = train(cfg, None, progress=False)
    m = r.metrics
    for k in ("test/in_context_gain", "test/prefix_matching_l0", "test/prefix_matching_l1",
              "test/prev_token_score_l0", "test/loss_second_copy"):
        assert k in m
    assert 0 <= m["test/prefix_matching_l1"] <= 1
