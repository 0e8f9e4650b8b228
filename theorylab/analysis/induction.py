"""Induction-head measurements from raw token tensors and attention patterns
(Olsson et al. 2022, "In-context Learning and Induction Heads").

All functions take ``tokens [B, T]`` and an attention pattern ``[B, H, T, T]`` (query
rows, key columns; e.g. ``cache["blocks.1.attn.hook_pattern"]``) and return one score
per head:

* previous-token score: mean attention from position i to i - 1;
* induction (stripe) score: on a sequence repeated with period P, mean attention from a
  position i of a later copy to i - P + 1 (the token after the earlier occurrence);
* prefix-matching score: attention mass on the keys j whose previous token equals the
  query's token (tokens[j - 1] == tokens[i]), averaged over the query rows that have at
  least one such key (rows that cannot match are left out, not counted as zero).
"""

from __future__ import annotations

import torch

from theorylab.errors import ConfigError


def _check(tokens: torch.Tensor, pattern: torch.Tensor) -> None:
    if tokens.dim() != 2 or pattern.dim() != 4 or pattern.shape[0] != tokens.shape[0] \
            or pattern.shape[-1] != tokens.shape[1] or pattern.shape[-2] != tokens.shape[1]:
        raise ConfigError(f"tokens [B, T] and pattern [B, H, T, T] do not match: {tuple(tokens.shape)} vs "
                          f"{tuple(pattern.shape)}")


def previous_token_score(tokens: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """[H]: mean attention from i to i - 1 over i >= 1."""
    _check(tokens, pattern)
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).double().mean(dim=(0, 2))


def induction_score(tokens: torch.Tensor, pattern: torch.Tensor, period: int) -> torch.Tensor:
    """[H]: mean attention from i to i - period + 1 over positions i >= period."""
    _check(tokens, pattern)
    T = tokens.shape[1]
    if not 1 <= period < T:
        raise ConfigError(f"period must lie in [1, {T}) (got {period})")
    return pattern.diagonal(offset=-(period - 1), dim1=-2, dim2=-1)[..., period - 1:].double().mean(dim=(0, 2))


def prefix_matching_score(tokens: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """[H]: attention on keys whose previous token equals the query's token, over rows that can match."""
    _check(tokens, pattern)
    B, T = tokens.shape
    prev = torch.full_like(tokens, -1)
    prev[:, 1:] = tokens[:, :-1]
    match = prev[:, None, :] == tokens[:, :, None]  # [B, Tq, Tk]: tokens[k-1] == tokens[q]
    match &= torch.ones(T, T, dtype=torch.bool).tril()[None]  # keys a causal query can see
    rows = match.any(-1)  # [B, Tq]
    if not rows.any():
        raise ConfigError("no query row has a matching earlier token: use repeated sequences")
    mass = (pattern.double() * match[:, None].double()).sum(-1)  # [B, H, Tq]
    return (mass * rows[:, None]).sum(dim=(0, 2)) / rows.sum()


def in_context_gain(loss_per_position: torch.Tensor, period: int) -> float:
    """Mean loss on the first copy minus mean loss on the later copies (nats; > 0 = learns in context)."""
    first = loss_per_position[..., 1:period].double().mean()
    later = loss_per_position[..., period:].double().mean()
    return float(first - later)
