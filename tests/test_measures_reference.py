"""Every measure in theorylab.measures against a slow, obviously-correct loop written here, on
non-ideal inputs (random attention patterns, spread spectra, ties, NaNs).

Each reference follows the measure's docstring word for word; a measure that disagrees with its
own definition fails here.
"""

from __future__ import annotations

import pytest
import torch


def random_pattern(B, H, T, gen, causal=True):
    """Softmax rows of random logits (causal: zero above the diagonal)."""
    logits = 3 * torch.randn(B, H, T, T, generator=gen)
    if causal:
        logits = logits.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return logits.softmax(-1)


# --------------------------------------------------------------------------- induction.py


def ref_induction_score(tokens, pattern, P):
    B, H, T, _ = pattern.shape
    out = []
    for h in range(H):
        vals = [float(pattern[b, h, i, i - P + 1]) for b in range(B) for i in range(P, T)]
        out.append(sum(vals) / len(vals))
    return out


def test_induction_score_counts_every_row_of_the_later_copies():
    # the example: two copies of arange(8); weight 1 on i - P + 1 only in the last two rows
    P = 8
    x = torch.arange(P).repeat(1, 2)
    pat = torch.zeros(1, 1, 2 * P, 2 * P)
    for i in (14, 15):
        pat[0, 0, i, i - P + 1] = 1.0
    from theorylab.measures.induction import induction_score

    assert induction_score(x, pat, P).tolist() == [pytest.approx(0.25)]  # 2 of the 8 rows i >= P (was 1.0)
    # row i = P (the second copy's first token) looks at key 1
    pat = torch.zeros(1, 1, 2 * P, 2 * P)
    pat[0, 0, P, 1] = 1.0
    assert induction_score(x, pat, P).tolist() == [pytest.approx(1 / 8)]


@pytest.mark.parametrize("B,H,P,copies", [(2, 3, 5, 2), (1, 2, 4, 3), (3, 1, 1, 6), (2, 2, 7, 2)])
def test_induction_score_matches_loop_on_random_patterns(B, H, P, copies):
    from theorylab.measures.induction import induction_score

    g = torch.Generator().manual_seed(B * 100 + P)
    first = torch.randint(0, 20, (B, P), generator=g)
    x = first.repeat(1, copies)
    pat = random_pattern(B, H, P * copies, g)
    got = induction_score(x, pat, P)
    assert got.dtype == torch.float64 and got.shape == (H,)
    assert got.tolist() == pytest.approx(ref_induction_score(x, pat, P), abs=1e-12)
