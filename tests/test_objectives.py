"""Objectives: MLM corruption rates, loss alignment, nats/bits/perplexity."""

from __future__ import annotations

import math

import pytest
import torch

from theorylab.models.objectives import (
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


def test_loss_mask_seq2seq_and_errors():
    from theorylab.errors import ConfigError
    from theorylab.models.objectives import cross_entropy, seq2seq_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    tokens = torch.randint(0, 7, (2, 5), generator=g)
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    # the loss counts exactly the positions whose *target* is in the mask
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None])[..., 0]
    keep = mask[:, 1:].bool()
    assert causal_lm_loss(logits, tokens, mask).item() == pytest.approx(-lp[keep].mean().item(), rel=1e-6)
    targets = tokens.clone()
    targets[1, 3:] = IGNORE  # decoder padding
    ref = torch.nn.functional.cross_entropy(logits[targets != IGNORE], targets[targets != IGNORE])
    assert seq2seq_loss(logits, targets).item() == pytest.approx(ref.item(), rel=1e-6)
    assert bits(math.log(8)) == pytest.approx(3.0) and perplexity(math.log(8)) == pytest.approx(8.0)
    with pytest.raises(ConfigError, match="do not line up"):
        cross_entropy(logits, tokens[:, :4])
    with pytest.raises(ConfigError, match="mask_prob"):
        mask_tokens(tokens, 0, 7, g, mask_prob=1.5)
    with pytest.raises(ConfigError, match="mask_token_id"):
        mask_tokens(tokens, 9, 7, g)


def test_mlm_is_reproducible_from_the_generator():
    tokens = torch.randint(0, 50, (8, 40), generator=torch.Generator().manual_seed(1))
    a = mask_tokens(tokens, 3, 50, torch.Generator().manual_seed(7))
    b = mask_tokens(tokens, 3, 50, torch.Generator().manual_seed(7))
    c = mask_tokens(tokens, 3, 50, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
