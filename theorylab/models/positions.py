"""Positional information: sinusoidal tables, rotary embeddings, ALiBi biases and
named position features (functions of position ``i`` and length ``n``).

Position features are what hand-built constructions use (Chiang & Cholak 2022 give
each position ``i/n`` and ``cos(i*pi)``).  Register a new one with
:func:`register_position_feature`; a config names features, so it stays JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# f(positions: float tensor [T], n: int) -> tensor [T]
POSITION_FEATURES: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {}
# features whose value at a position changes when the sequence grows (i/n, is_last, log n): a model
# using one cannot reuse cached keys and values, so decoding recomputes the whole prefix instead
LENGTH_DEPENDENT: set[str] = set()


def register_position_feature(name: str, uses_length: bool = True):
    """Register ``fn(positions, n) -> values``.  ``uses_length=False`` promises the value at
    position ``i`` does not depend on ``n`` (then incremental decoding may cache keys and values)."""
    def deco(fn):
        POSITION_FEATURES[name] = fn
        if uses_length:
            LENGTH_DEPENDENT.add(name)
        else:
            LENGTH_DEPENDENT.discard(name)
        return fn

    return deco


@register_position_feature("frac")
def _frac(i: torch.Tensor, n: int) -> torch.Tensor:
    """i / n, where n is the sequence length."""
    return i / n


@register_position_feature("cos_pi", uses_length=False)
def _cos_pi(i: torch.Tensor, n: int) -> torch.Tensor:
    """cos(i * pi) = (-1)^i."""
    return 1.0 - 2.0 * torch.remainder(i, 2)


@register_position_feature("one", uses_length=False)
def _one(i: torch.Tensor, n: int) -> torch.Tensor:
    return torch.ones_like(i)


@register_position_feature("is_first", uses_length=False)
def _is_first(i: torch.Tensor, n: int) -> torch.Tensor:
    """1 at position 0, else 0."""
    return (i == 0).to(i.dtype)


@register_position_feature("is_second", uses_length=False)
def _is_second(i: torch.Tensor, n: int) -> torch.Tensor:
    """1 at position 1, else 0."""
    return (i == 1).to(i.dtype)


@register_position_feature("is_last")
def _is_last(i: torch.Tensor, n: int) -> torch.Tensor:
    """1 at position n - 1, else 0."""
    return (i == n - 1).to(i.dtype)


@register_position_feature("log_n")
def _log_n(i: torch.Tensor, n: int) -> torch.Tensor:
    return torch.full_like(i, math.log(max(n, 1)))


def position_features(names: list[str], positions: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Stack the named features: [T, len(names)]."""
    i = positions.to(dtype)
    return torch.stack([POSITION_FEATURES[name](i, n) for name in names], dim=-1)


def _wide(device: torch.device) -> torch.dtype:
    """float64 for position tables where the device has it (angles of large positions need it)."""
    return torch.float32 if device.type == "mps" else torch.float64


def sinusoidal_table(positions: torch.Tensor, d_model: int, dtype: torch.dtype) -> torch.Tensor:
    """Vaswani et al. (2017): PE[i, 2k] = sin(i / 10000^(2k/d)), PE[i, 2k+1] = cos(...)."""
    dev, wide = positions.device, _wide(positions.device)
    half = torch.arange(0, d_model, 2, dtype=wide, device=dev)
    inv = torch.exp(-math.log(10000.0) * half / d_model)
    ang = positions.to(wide)[:, None] * inv[None, :]
    pe = torch.zeros(len(positions), d_model, dtype=wide, device=dev)
    pe[:, 0::2] = torch.sin(ang)
    pe[:, 1::2] = torch.cos(ang)[:, : d_model // 2]
    return pe.to(dtype)


def rotary_cos_sin(positions: torch.Tensor, d_head: int, base: float, dtype: torch.dtype):
    """cos and sin tables [..., T, d_head] for rotate-half RoPE (Su et al. 2021); positions [..., T]."""
    wide = _wide(positions.device)
    inv = 1.0 / (base ** (torch.arange(0, d_head, 2, dtype=wide, device=positions.device) / d_head))
    ang = positions.to(wide)[..., None] * inv  # [..., T, d_head / 2]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, H, T, d_head]; rotate pairs (x_k, x_{k+d/2}) by position-dependent angles."""
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return x * cos + rot * sin


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Press et al. (2022): geometric slopes 2^(-8/H), 2^(-16/H), ... (exact for powers of two)."""
    def pow2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        s = pow2(n_heads)
    else:
        closest = 2 ** math.floor(math.log2(n_heads))
        s = pow2(closest) + pow2(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(s, dtype=torch.float64)


def alibi_bias(n_heads: int, q_pos: torch.Tensor, k_pos: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[H, Tq, Tk] additive bias -slope * |i - j|."""
    wide = _wide(q_pos.device)
    dist = (q_pos[:, None] - k_pos[None, :]).abs().to(wide)
    return (-alibi_slopes(n_heads).to(q_pos.device, wide)[:, None, None] * dist[None]).to(dtype)
