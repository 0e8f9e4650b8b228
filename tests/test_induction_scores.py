"""Induction-head scores on hand-made attention patterns with known answers."""

from __future__ import annotations

import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.measures.induction import (
    in_context_gain,
    induction_score,
    prefix_matching_score,
    previous_token_score,
)


def repeated(B=3, P=10, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    # distinct tokens within a copy, so the only match of a token is its earlier occurrence
    first = torch.stack([torch.randperm(V, generator=g)[:P] for _ in range(B)])
    return torch.cat([first, first], 1)


def induction_pattern(tokens, P):
    B, T = tokens.shape
    pat = torch.zeros(B, 2, T, T)
    for i in range(T):
        pat[:, 0, i, max(i - 1, 0)] = 1.0  # head 0: previous-token head
        pat[:, 1, i, i - P + 1 if i >= P else 0] = 1.0  # head 1: induction head
    return pat


def test_scores_identify_the_heads():
    P = 10
    x = repeated(P=P)
    pat = induction_pattern(x, P)
    prev = previous_token_score(x, pat)
    ind = induction_score(x, pat, P)
    pm = prefix_matching_score(x, pat)
    assert prev[0] == pytest.approx(1.0) and prev[1] < 0.1  # head 1 meets i-1 only at i = 1
    assert ind[1] == pytest.approx(1.0) and ind[0] < 0.2
    assert pm[1] == pytest.approx(1.0) and pm[0] < 0.2


def test_uniform_attention_scores_near_chance():
    P = 16
    x = repeated(P=P)
    T = x.shape[1]
    causal = torch.ones(T, T).tril()
    pat = (causal / causal.sum(-1, keepdim=True)).expand(x.shape[0], 1, T, T)
    assert induction_score(x, pat, P)[0] < 0.1
    assert prefix_matching_score(x, pat)[0] < 0.1


def test_gain_and_errors():
    loss = torch.cat([torch.full((2, 8), 3.0), torch.full((2, 8), 0.5)], 1)
    assert in_context_gain(loss, 8) == pytest.approx(2.5)
    with pytest.raises(ConfigError, match="do not match"):
        previous_token_score(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ConfigError, match="period"):
        induction_score(repeated(), torch.zeros(3, 1, 20, 20), 0)
