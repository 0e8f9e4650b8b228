"""Chiang & Cholak (2022), "Overcoming a Theoretical Limitation of Self-Attention" (ACL,
arXiv 2202.12172): hand-set transformers for PARITY and FIRST, on theorylab's Transformer.

Every weight is written through :class:`Residual`, which names the residual-stream
dimensions; nothing indexes raw rows.

PARITY (encoder, bits at positions 0..n-1, CLS at position n, N = n + 1 positions).
Layer 1 attends uniformly (zero queries and keys) and copies the token one-hots, so every
position holds k/N (k = number of ones) and 1/N.  Its FFN adds ReLUs of (k-i-1)/N, (k-i)/N
and (k-i+1)/N with weights (1, -2, 1): a bump equal to 1/N exactly at position i = k.
Layer 2, from CLS, has one head preferring even positions (key +cos(i*pi)) and one
preferring odd ones (key -cos(i*pi)); their difference, written to ``out``, is about
+-2 tanh(1/sqrt 5) / N^2 and its sign is the parity of k.

FIRST (encoder, CLS at position 0, bits at 1..n).  Layer 1's FFN writes +-1/2 to ``flag``
at position 1 (by the bit there); layer 2's head attends from CLS to position 1 with score
s (1/sqrt 6 by default) and copies the flag: the output is +-(1/2) e^s / (e^s + n).

The layer-norm trick: every write to a dimension also writes its negation to a mirror
dimension, so each position's mean is exactly 0; layer 2's FFN cancels every coordinate
but ``out`` at CLS; one layer norm before the unembedding then maps ``out`` to
+-sqrt(d/2) whatever n is, but only with epsilon 0.  The output logit gap is the value
of ``out`` (PARITY: class 0 = even; FIRST: class 1 = the first bit is 1).
"""

from __future__ import annotations

import math

import torch

from theorylab.errors import ConfigError
from theorylab.models import Transformer, TransformerConfig
from theorylab.models.size import fmt_bytes, ram_available

CLS = 2  # token ids: 0, 1, CLS


class Residual:
    """Named residual dimensions; with ``mirror`` each has a negated twin."""

    def __init__(self, names: list[str], mirror: bool):
        self.names = list(names)
        self.mirror = mirror
        self.d = len(self.names) * (2 if mirror else 1)

    def i(self, name: str) -> int:
        if name not in self.names:
            raise KeyError(f"no residual dimension {name!r}; dimensions: {self.names}")
        return self.names.index(name)

    def write(self, W: torch.Tensor, row: int | tuple, name: str, value: float) -> None:
        """Set W[row..., name] = value (and its mirror to -value): a write into the residual."""
        W[(*((row,) if isinstance(row, int) else row), self.i(name))] = value
        if self.mirror:
            W[(*((row,) if isinstance(row, int) else row), self.i(name) + len(self.names))] = -value


def _check(n: int, eps: float | None) -> None:
    if n < 1:
        raise ConfigError(f"n: the number of bits must be >= 1 (got {n})")
    if eps is not None and eps < 0:
        raise ConfigError(f"layernorm_eps must be >= 0 or None (no layer norm) (got {eps})")


def _cancel_units(R: Residual, keep: str, signed: set[str]) -> list[tuple[str, int]]:
    """(dimension, sign) of each ReLU unit the final FFN uses to cancel every dimension but ``keep``."""
    units = []
    for name in R.names:
        if name == keep:
            continue
        units.append((name, 1))
        if name in signed:
            units.append((name, -1))
    return units


def _write_cancel(R: Residual, W_in: torch.Tensor, W_out: torch.Tensor, units, offset: int = 0) -> None:
    for j, (name, sign) in enumerate(units, start=offset):
        W_in[R.i(name), j] = float(sign)  # ReLU(sign * x)
        R.write(W_out, j, name, -float(sign))  # adds -x (or +x for the negative part): x cancels


def parity(n: int | None = None, layernorm_eps: float | None = None, attention: str = "softmax",
           dtype: torch.dtype = torch.float64) -> Transformer:
    """Chiang & Cholak's PARITY transformer.  ``layernorm_eps=None``: no layer norm;
    a number: the layer-norm trick with that epsilon (0 = exact).  ``attention`` may be
    ``hard_unique``/``hard_average`` to study hard attention on the same weights.  ``n`` is
    only validated: the construction works for every length."""
    if n is not None:
        _check(n, layernorm_eps)
    _check(1, layernorm_eps)
    names = ["tok0", "tok1", "cls", "pos_frac", "pos_cos", "avg_ones", "avg_cls", "avg_zeros", "bump", "out"]
    ln = layernorm_eps is not None
    R = Residual(names, mirror=ln)
    units = _cancel_units(R, "out", signed={"pos_cos"}) if ln else []
    d_mlp = max(3, len(units))
    cfg = TransformerConfig(
        architecture="encoder", d_vocab=3, d_vocab_out=2, n_ctx=1, d_model=R.d, n_layers=2, n_heads=2, d_head=5,
        d_mlp=d_mlp, act="relu", attention=attention, positional="none", position_features=["frac", "cos_pi"],
        norm="layernorm" if ln else "none", norm_eps=layernorm_eps or 0.0, norm_position="final", bias=True)
    m = Transformer(cfg).to(dtype)
    w = {k: torch.zeros_like(v) for k, v in m.state_dict().items()}
    for tok, name in ((0, "tok0"), (1, "tok1"), (CLS, "cls")):
        R.write(w["embed.W_E"], tok, name, 1.0)
    R.write(w["pos_feat.W"], 0, "pos_frac", 1.0)
    R.write(w["pos_feat.W"], 1, "pos_cos", 1.0)
    # layer 1: uniform attention (W_Q = W_K = 0); head 0 averages the token one-hots
    for j, (src, dst) in enumerate((("tok1", "avg_ones"), ("cls", "avg_cls"), ("tok0", "avg_zeros"))):
        w["blocks.0.attn.W_V"][0, R.i(src), j] = 1.0
        R.write(w["blocks.0.attn.W_O"], (0, j), dst, 1.0)
    # layer 1 FFN: bump = ReLU((k-i-1)/N) - 2 ReLU((k-i)/N) + ReLU((k-i+1)/N) = [i = k] / N
    for j, (c_cls, c_out) in enumerate(((-1.0, 1.0), (0.0, -2.0), (1.0, 1.0))):
        w["blocks.0.mlp.W_in"][R.i("avg_ones"), j] = 1.0
        w["blocks.0.mlp.W_in"][R.i("pos_frac"), j] = -1.0
        w["blocks.0.mlp.W_in"][R.i("avg_cls"), j] = c_cls
        R.write(w["blocks.0.mlp.W_out"], j, "bump", c_out)
    # layer 2: from CLS, head 0 prefers even positions, head 1 odd ones; out = head 0 - head 1
    for h, key_sign, out_sign in ((0, 1.0, 1.0), (1, -1.0, -1.0)):
        w["blocks.1.attn.W_Q"][h, R.i("cls"), 0] = 1.0
        w["blocks.1.attn.W_K"][h, R.i("pos_cos"), 0] = key_sign
        w["blocks.1.attn.W_V"][h, R.i("bump"), 0] = 1.0
        R.write(w["blocks.1.attn.W_O"], (h, 0), "out", out_sign)
    if ln:
        _write_cancel(R, w["blocks.1.mlp.W_in"], w["blocks.1.mlp.W_out"], units)
        w["ln_final.w"] = torch.ones_like(w["ln_final.w"])
    w["unembed.W_U"][R.i("out"), 0] = 0.5  # class 0 (even) - class 1 (odd) = out
    w["unembed.W_U"][R.i("out"), 1] = -0.5
    m.load_state_dict(w)
    m.residual = R  # the named subspaces, for inspection
    return m.eval()


def first(n: int | None = None, layernorm_eps: float | None = None, log_length: bool = False,
          scale: float | None = None, dtype: torch.dtype = torch.float64) -> Transformer:
    """Chiang & Cholak's FIRST transformer (is the first bit 1?).  ``log_length``: attention
    logits multiplied by log N; ``scale``: the attention score on position 1 before that
    factor (default 1/sqrt 6 as in the paper, 1 with ``log_length``)."""
    if n is not None:
        _check(n, layernorm_eps)
    _check(1, layernorm_eps)
    if scale is None:
        scale = 1.0 if log_length else 1 / math.sqrt(6)
    names = ["tok0", "tok1", "cls", "is_pos1", "flag", "out"]
    ln = layernorm_eps is not None
    R = Residual(names, mirror=ln)
    units = _cancel_units(R, "out", signed={"flag"}) if ln else []
    cfg = TransformerConfig(
        architecture="encoder", d_vocab=3, d_vocab_out=2, n_ctx=1, d_model=R.d, n_layers=2, n_heads=1, d_head=6,
        d_mlp=max(2, len(units)), act="relu", positional="none", position_features=["is_second"],
        log_length_scale=log_length, norm="layernorm" if ln else "none", norm_eps=layernorm_eps or 0.0,
        norm_position="final", bias=True)
    m = Transformer(cfg).to(dtype)
    w = {k: torch.zeros_like(v) for k, v in m.state_dict().items()}
    for tok, name in ((0, "tok0"), (1, "tok1"), (CLS, "cls")):
        R.write(w["embed.W_E"], tok, name, 1.0)
    R.write(w["pos_feat.W"], 0, "is_pos1", 1.0)
    # layer 1 FFN: flag = +1/2 [i = 1, bit 1] - 1/2 [i = 1, bit 0]
    for j, (tok, value) in enumerate((("tok1", 0.5), ("tok0", -0.5))):
        w["blocks.0.mlp.W_in"][R.i("is_pos1"), j] = 1.0
        w["blocks.0.mlp.W_in"][R.i(tok), j] = 1.0
        w["blocks.0.mlp.b_in"][j] = -1.0
        R.write(w["blocks.0.mlp.W_out"], j, "flag", value)
    # layer 2: CLS attends to position 1 with score `scale` (q.k / sqrt(d_head))
    w["blocks.1.attn.W_Q"][0, R.i("cls"), 0] = scale * math.sqrt(6)
    w["blocks.1.attn.W_K"][0, R.i("is_pos1"), 0] = 1.0
    w["blocks.1.attn.W_V"][0, R.i("flag"), 0] = 1.0
    R.write(w["blocks.1.attn.W_O"], (0, 0), "out", 1.0)
    if ln:
        _write_cancel(R, w["blocks.1.mlp.W_in"], w["blocks.1.mlp.W_out"], units)
        w["ln_final.w"] = torch.ones_like(w["ln_final.w"])
    w["unembed.W_U"][R.i("out"), 1] = 0.5  # class 1 (first bit is 1) - class 0 = out
    w["unembed.W_U"][R.i("out"), 0] = -0.5
    m.load_state_dict(w)
    m.residual = R
    return m.eval()


# --------------------------------------------------------------------------- evaluation


def inputs(kind: str, bits: torch.Tensor) -> torch.Tensor:
    """Token layout of each construction: PARITY bits then CLS; FIRST CLS then bits."""
    cls = torch.full((bits.shape[0], 1), CLS, dtype=torch.long)
    return torch.cat([bits, cls], 1) if kind == "parity" else torch.cat([cls, bits], 1)


def labels(kind: str, bits: torch.Tensor) -> torch.Tensor:
    return bits.sum(1) % 2 if kind == "parity" else bits[:, 0]


@torch.no_grad()
def class_logits(model: Transformer, kind: str, bits: torch.Tensor) -> torch.Tensor:
    """The two class logits read at CLS: ``[B, 2]`` (PARITY: 0 = even; FIRST: 1 = first bit is 1)."""
    if kind not in ("parity", "first"):
        raise ConfigError(f"construction: {kind!r}; allowed: parity, first")
    pos = torch.tensor([bits.shape[1] if kind == "parity" else 0])
    # chunks bound the memory of the explicit attention path (hard attention: [rows, heads, n, n])
    rows = max(1, 2**22 // max(1, bits.shape[1] ** 2))
    x = inputs(kind, bits)
    return torch.cat([model(x[i:i + rows], positions=pos)[:, 0] for i in range(0, len(x), rows)]).double()


@torch.no_grad()
def decision(model: Transformer, kind: str, bits: torch.Tensor) -> torch.Tensor:
    """The predicted class (argmax; ties go to class 0)."""
    return class_logits(model, kind, bits).argmax(-1)


@torch.no_grad()
def logit_gap(model: Transformer, kind: str, bits: torch.Tensor) -> torch.Tensor:
    """Logit of the class the construction writes as positive (PARITY even, FIRST 1) minus the other."""
    z = class_logits(model, kind, bits)
    return (z[:, 0] - z[:, 1]) if kind == "parity" else (z[:, 1] - z[:, 0])


def evaluation_memory(model: Transformer, n: int, samples: int) -> int:
    """Bytes :func:`evaluate` needs for ``samples`` strings of ``n`` bits (a rough upper bound): the bits
    and token ids (int64), and per chunk of :func:`class_logits` the residual stream and MLP in float64,
    plus for hard attention the ``[rows, heads, N, N]`` scores and patterns it materializes."""
    cfg = model.cfg
    N = n + 1
    rows = min(samples, max(1, 2**22 // max(1, n**2)))
    per_row = N * (12 * cfg.d_model + 2 * cfg.mlp_dim) * 8
    if cfg.attention != "softmax":
        per_row += 4 * cfg.n_heads * N * N * 8
    return 3 * samples * N * 8 + rows * per_row


def _check_size(model: Transformer, n: int, samples: int) -> None:
    need, have = evaluation_memory(model, n, samples), ram_available()
    if have is not None and need > have:
        raise ConfigError(f"n={n}, samples={samples}: evaluating {samples} strings of {n} bits needs about "
                          f"{fmt_bytes(need)} of memory ({model.cfg.attention} attention) but {fmt_bytes(have)} "
                          "is available (this machine's RAM); lower n (--n) or samples (--samples)")


@torch.no_grad()
def evaluate(model: Transformer, kind: str, n: int, samples: int = 256, seed: int = 0) -> dict[str, float]:
    """Accuracy (argmax, ties to class 0) and cross-entropy (bits per string) on uniformly random
    strings of length n.  Sizes that would not fit in memory are refused before anything is allocated."""
    if kind not in ("parity", "first"):
        raise ConfigError(f"construction: {kind!r}; allowed: parity, first")
    if n < 1 or samples < 1:
        raise ConfigError(f"n and samples must be >= 1 (got n={n}, samples={samples})")
    _check_size(model, n, samples)
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (samples, n), generator=g)
    z = class_logits(model, kind, bits)
    y = labels(kind, bits)
    nll = -torch.log_softmax(z, -1).gather(1, y[:, None]).squeeze(1)
    gap = (z[:, 0] - z[:, 1]).abs()
    return {"n": n, "samples": samples, "accuracy": float((z.argmax(-1) == y).double().mean()),
            "cross_entropy_bits": float(nll.mean() / math.log(2)), "mean_abs_logit_gap": float(gap.mean())}
