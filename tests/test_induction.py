"""Induction heads: a hand-built induction head scores near 1, a random model near chance,
and the phase-change detector finds abrupt drops and coinciding rises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.measures.induction import (
    hand_built_induction_model,
    induction_score,
    prefix_matching_score,
    previous_token_score,
    transition,
)
from theorylab.models import Transformer, TransformerConfig
from theorylab.tasks.induction import InductionConfig, InductionTask


def distinct_repeats(B=6, P=12, V=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    first = torch.stack([torch.randperm(V, generator=g)[:P] for _ in range(B)])
    return torch.cat([first, first], 1)


def test_hand_built_induction_head_scores_near_one_and_copies():
    x = distinct_repeats()
    model = hand_built_induction_model(vocab=20, n_ctx=24)
    logits, cache = model.run_with_cache(x)
    assert previous_token_score(x, cache["blocks.0.attn.hook_pattern"])[0] > 0.95
    l1 = cache["blocks.1.attn.hook_pattern"]
    assert prefix_matching_score(x, l1)[0] > 0.95
    assert induction_score(x, l1, 12)[0] > 0.95
    # layer 0 is a previous-token head, not an induction head
    assert prefix_matching_score(x, cache["blocks.0.attn.hook_pattern"])[0] < 0.2
    # the circuit predicts every token of the second copy from its predecessor
    assert (logits[:, 12:-1].argmax(-1) == x[:, 13:]).all()


def test_hand_built_head_reaches_high_scores_through_the_task_metrics_and_probe():
    from theorylab.runs.loop import evaluate_model

    task = InductionTask(InductionConfig(vocab=64, period=12, min_period=6, n_test=64), seed=1)
    vals = evaluate_model(task, hand_built_induction_model(vocab=64, n_ctx=24), "cpu", torch.float32, 4096,
                          ["induction_heads"])
    m = {k.split("/", 1)[1]: v for k, v in vals.items()}
    # random blocks may repeat a token within a copy (several matching keys), so not exactly 1
    assert m["prefix_matching_l1"] > 0.9 and m["prev_token_score_l0"] > 0.9
    assert m["accuracy_second_copy"] > 0.9 and m["in_context_gain"] > 2.0


def test_random_model_scores_near_chance():
    torch.manual_seed(0)
    x = distinct_repeats(P=16, V=64)
    model = Transformer(TransformerConfig(d_vocab=64, n_ctx=32, d_model=32, n_layers=2, n_heads=2,
                                          attn_only=True)).eval()
    _, cache = model.run_with_cache(x)
    for layer in (0, 1):
        pat = cache[f"blocks.{layer}.attn.hook_pattern"]
        # uniform causal attention gives about 1/(i + 1) on the single matching key
        assert prefix_matching_score(x, pat).max() < 0.15
        assert induction_score(x, pat, 16).max() < 0.15


def test_transition_finds_an_abrupt_drop_and_a_coinciding_rise():
    steps = np.arange(0, 1001, 20)
    loss = 4.0 - 3.5 / (1 + np.exp(-(steps - 300) / 10))  # sigmoid drop centred on step 300
    score = 0.05 + 0.8 / (1 + np.exp(-(steps - 310) / 10))
    d = transition(steps, loss, direction="down", window_frac=0.1)
    r = transition(steps, score, direction="up", window_frac=0.1)
    assert 280 <= d["step"] <= 320 and 280 <= r["step"] <= 330
    assert d["sharpness"] > 0.9 and d["change"] == pytest.approx(3.5, abs=0.01)
    linear = transition(steps, 4.0 - 3.5 * steps / 1000, direction="down", window_frac=0.1)
    assert linear["sharpness"] == pytest.approx(0.1, abs=0.03)
    # a curve moving the wrong way has no transition step
    assert np.isnan(transition(steps, score, direction="down")["step"])
    # a crossing that reverts does not count: the step is where it stays past halfway
    bump = np.where((steps > 100) & (steps < 200), 0.0, loss)
    assert transition(steps, bump, direction="down")["step"] >= 280


def test_transition_rejects_bad_input():
    with pytest.raises(ConfigError, match="direction"):
        transition([0, 1, 2], [1, 1, 0], direction="sideways")
    with pytest.raises(ConfigError, match="equal length"):
        transition([0, 1, 2], [1, 0])
    with pytest.raises(ConfigError, match="window_frac"):
        transition([0, 1, 2], [1, 1, 0], window_frac=1.5)
