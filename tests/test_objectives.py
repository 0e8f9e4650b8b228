"""Objectives: MLM corruption rates, loss alignment, nats/bits/perplexity."""

from __future__ import annotations

import math

import pytest
import torch

from theorylab.objectives import (
    IGNORE,
    bits,
    causal_lm_loss,
    classification_loss,
    mask_tokens,
    perplexity,
)


def test_mlm_rates():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(5, 100, (400, 250), generator=g)
    tokens[:, 0] = 1  # a special token, never selected
    inputs, labels = mask_tokens(tokens, mask_token_id=3, vocab_size=100, generator=g, special_ids=(1,))
    sel = labels != IGNORE
    assert not sel[:, 0].any()
    assert sel.float().mean().item() == pytest.approx(0.15 * 249 / 250, abs=0.003)
    assert torch.equal(labels[sel], tokens[sel])
    masked = (inputs == 3) & sel
    unchanged = (inputs == tokens) & sel
    n = sel.sum().item()
    assert masked.sum().item() / n == pytest.approx(0.8, abs=0.01)
    # 10% unchanged on purpose, plus random replacements that drew the same token (1/100 of 10%)
    assert unchanged.sum().item() / n == pytest.approx(0.1 + 0.1 / 100, abs=0.01)
    assert torch.equal(inputs[~sel], tokens[~sel])


def test_uniform_model_perplexity_equals_vocab_size():
    V = 37
    tokens = torch.randint(0, V, (4, 20))
    logits = torch.zeros(4, 20, V)
    loss = causal_lm_loss(logits, tokens)
    assert loss.item() == pytest.approx(math.log(V))
    assert perplexity(loss).item() == pytest.approx(V)
    assert bits(loss).item() == pytest.approx(math.log2(V))


def test_causal_shift():
    V = 5
    tokens = torch.tensor([[0, 1, 2, 3]])
    logits = torch.full((1, 4, V), -1e4)
    for t in range(3):
        logits[0, t, tokens[0, t + 1]] = 1e4  # perfectly predicts the next token
    assert causal_lm_loss(logits, tokens).item() == pytest.approx(0.0, abs=1e-6)


def test_classification_reads_last_position():
    logits = torch.zeros(2, 3, 2)
    logits[:, -1, 1] = 50.0
    assert classification_loss(logits, torch.tensor([1, 1])).item() == pytest.approx(0.0, abs=1e-6)
