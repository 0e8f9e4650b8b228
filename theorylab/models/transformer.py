"""theorylab's Transformer: one model with every variant the theory discusses.

Weights use TransformerLens's layout and names, so constructions can set them from
named subspaces and read-outs can find them:

========================  =====================  ===========================
name                      shape                  role
========================  =====================  ===========================
embed.W_E                 [d_vocab, d_model]     token embedding
embed.W_in, embed.b_in    [input_dim, d_model]   continuous-input read-in
pos_embed.W_pos           [n_ctx, d_model]       learned absolute positions
pos_feat.W                [n_features, d_model]  named position features
blocks.{i}.ln1.w / .b     [d_model]              norm before (pre-LN) / after attention
blocks.{i}.attn.W_Q/K/V   [n_heads, d_model, d_head]
blocks.{i}.attn.b_Q/K/V   [n_heads, d_head]
blocks.{i}.attn.W_O       [n_heads, d_head, d_model]
blocks.{i}.attn.b_O       [d_model]
blocks.{i}.mlp.W_in       [d_model, d_mlp]       (b_in [d_mlp])
blocks.{i}.mlp.W_out      [d_mlp, d_model]       (b_out [d_model])
ln_final.w / .b           [d_model]
unembed.W_U, unembed.b_U  [d_model, d_vocab_out] (absent W_U when tied: W_E.T)
========================  =====================  ===========================

Encoder-decoder models add ``decoder_blocks.{i}`` with a ``cross_attn`` module and
``enc_ln_final``.  Hook points follow TransformerLens names (``hook_embed``,
``blocks.0.attn.hook_pattern``, ``blocks.0.hook_resid_post``, ...).
"""

from __future__ import annotations

import contextvars
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from theorylab.errors import ConfigError
from theorylab.models import positions as P
from theorylab.models.config import TransformerConfig
from theorylab.models.hooks import HookedMixin, HookPoint

# --------------------------------------------------------------------------- helpers

# Inside torch.func.vmap a tensor's values cannot be read in Python, so the token-range check of
# Transformer._embed (one device sync) is skipped while this is True; the caller has checked the
# inputs (the stacked stepper checks every batch before it maps over seeds).
_TRUSTED_INPUTS: contextvars.ContextVar[bool] = contextvars.ContextVar("theorylab_trusted_inputs", default=False)


@contextmanager
def trusted_inputs():
    """Skip the per-call token-range check (for inputs already checked, e.g. under ``torch.func.vmap``)."""
    token = _TRUSTED_INPUTS.set(True)
    try:
        yield
    finally:
        _TRUSTED_INPUTS.reset(token)


# Below this many keys the explicit softmax path is faster than torch's fused kernel on a
# CPU (measured: at 3 keys the fused CPU kernel cost ~30% of a grokking step); the two
# paths agree to float rounding, which tests/test_models.py checks.
FUSED_MIN_KEYS = 16
SMALL_KEYS = 4


@dataclass
class KVCache:
    """Keys and values of earlier positions, per layer, for incremental decoding."""

    layers: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    length: int = 0  # positions already processed

    def reorder(self, index: torch.Tensor) -> None:
        """Select batch rows (beam search)."""
        self.layers = {k: (a.index_select(0, index), b.index_select(0, index)) for k, (a, b) in self.layers.items()}


@dataclass
class _Ctx:
    """What every block needs to know about the current call."""

    q_pos: torch.Tensor  # [Tq] absolute positions of the rows being computed
    k_pos: torch.Tensor  # [Tk] absolute positions of all keys
    n: int  # total sequence length (for log-length scaling and features)
    causal: bool
    key_padding: torch.Tensor | None  # [B, Tk] True = real token
    cache: KVCache | None
    out_idx: torch.Tensor | None = None  # rows (into q_pos) the last block keeps
    memory: torch.Tensor | None = None  # encoder output, for cross-attention
    memory_padding: torch.Tensor | None = None
    loop: int = 0
    aligned: bool = True  # query row t is key t (no cache offset, no row subset): plain causal masking
    row_pos: torch.Tensor | None = None  # [B, Tq] per-row position ids of the query rows (position_ids=)
    new_key_pos: torch.Tensor | None = None  # [B, T] per-row position ids of this call's keys
    # the first block's input as a table over (token, position): rows [V*T, d] and index [B, T] into them
    # (see Transformer._layer0_table); the first block projects the table, not every example
    table: tuple[torch.Tensor, torch.Tensor] | None = None


def _linear(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``x @ W + b`` for ``x [..., n]``, ``W [n, m]``: one fused multiply-add, no weight copy."""
    if b is None:
        return x @ W
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), W).view(*x.shape[:-1], W.shape[-1])


def _act(name: str):
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    return lambda x: F.gelu(x, approximate="tanh")


class Norm(nn.Module):
    def __init__(self, cfg: TransformerConfig, hooks: HookedMixin, name: str, kind: str | None = None):
        super().__init__()
        self.kind, self.eps = (cfg.norm if kind is None else kind), cfg.norm_eps
        d = cfg.d_model
        if self.kind != "none":
            self.w = nn.Parameter(torch.ones(d))
        if self.kind == "layernorm":
            self.b = nn.Parameter(torch.zeros(d))
        self.hook_normalized = hooks._register_hook_point(f"{name}.hook_normalized")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        if self.kind == "layernorm":
            if self.eps > 0:
                return self.hook_normalized(F.layer_norm(x, x.shape[-1:], self.w, self.b, self.eps))
            # eps = 0 exactly (Chiang & Cholak's trick needs it): written out, no epsilon.
            xc = x - x.mean(-1, keepdim=True)
            y = xc / xc.pow(2).mean(-1, keepdim=True).sqrt()
            return self.hook_normalized(y * self.w + self.b)
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) if self.eps > 0 else x / x.pow(2).mean(
            -1, keepdim=True).sqrt()
        return self.hook_normalized(y * self.w)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig, hooks: HookedMixin, name: str, cross: bool = False):
        super().__init__()
        self.cfg, self.name, self.cross = cfg, name, cross
        H, d, dh = cfg.n_heads, cfg.d_model, cfg.head_dim
        self.W_Q = nn.Parameter(torch.empty(H, d, dh))
        self.W_K = nn.Parameter(torch.empty(H, d, dh))
        self.W_V = nn.Parameter(torch.empty(H, d, dh))
        self.W_O = nn.Parameter(torch.empty(H, dh, d))
        if cfg.bias:
            self.b_Q = nn.Parameter(torch.zeros(H, dh))
            self.b_K = nn.Parameter(torch.zeros(H, dh))
            self.b_V = nn.Parameter(torch.zeros(H, dh))
            self.b_O = nn.Parameter(torch.zeros(d))
        hp = hooks._register_hook_point
        self.hook_q, self.hook_k, self.hook_v = hp(f"{name}.hook_q"), hp(f"{name}.hook_k"), hp(f"{name}.hook_v")
        self.hook_attn_scores = hp(f"{name}.hook_attn_scores")
        self.hook_pattern = hp(f"{name}.hook_pattern")
        self.hook_z = hp(f"{name}.hook_z")

    def _proj(self, x: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        # x [B, T, d], W [H, d, dh] -> [B, H, T, dh]
        H, d, dh = W.shape
        y = _linear(x, W.permute(1, 0, 2).reshape(d, H * dh), None if b is None else b.reshape(H * dh))
        return y.view(x.shape[0], x.shape[1], H, dh).transpose(1, 2)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Self-attention's q, k, v [B, H, T, dh] from one matmul (one weight copy, not three)."""
        H, d, dh = self.W_Q.shape
        W = torch.stack([self.W_Q.permute(1, 0, 2), self.W_K.permute(1, 0, 2), self.W_V.permute(1, 0, 2)], dim=1)
        b = torch.stack([self.b_Q, self.b_K, self.b_V]).view(3 * H * dh) if self.cfg.bias else None
        y = _linear(x, W.view(d, 3 * H * dh), b).view(x.shape[0], x.shape[1], 3, H, dh)
        return y[:, :, 0].transpose(1, 2), y[:, :, 1].transpose(1, 2), y[:, :, 2].transpose(1, 2)

    def _qkv_from_table(self, rows: torch.Tensor, idx: torch.Tensor, keep: torch.Tensor | None):
        """q, k, v [B, H, T, dh] (q for the ``keep`` rows) from the projections of the table rows
        ``[R, d]``, gathered by ``idx [B, T]``: one matmul over R rows instead of B * T."""
        H, d, dh = self.W_Q.shape
        W = torch.stack([self.W_Q.permute(1, 0, 2), self.W_K.permute(1, 0, 2), self.W_V.permute(1, 0, 2)], dim=1)
        b = torch.stack([self.b_Q, self.b_K, self.b_V]).view(3 * H * dh) if self.cfg.bias else None
        y = _linear(rows, W.view(d, 3 * H * dh), b).view(-1, 3, H * dh)  # [R, 3, H*dh]
        B, T = idx.shape

        def gather(which: int, at: torch.Tensor) -> torch.Tensor:  # [B, T', H*dh] -> [B, H, T', dh]
            return F.embedding(at, y[:, which]).view(B, at.shape[1], H, dh).transpose(1, 2)

        return gather(0, idx if keep is None else idx[:, keep]), gather(1, idx), gather(2, idx)

    def forward(self, xq: torch.Tensor, xkv: torch.Tensor, ctx: _Ctx,
                table: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None) -> torch.Tensor:
        """``table``: (normalized table rows, index, kept rows): project the table instead of ``xkv``."""
        cfg = self.cfg
        bias = cfg.bias
        cache_key = f"{self.name}#{ctx.loop}"
        if table is not None:
            q, k, v = self._qkv_from_table(*table)
        elif self.cross:
            if ctx.cache is not None and cache_key in ctx.cache.layers:
                k, v = ctx.cache.layers[cache_key]
            else:
                k = self._proj(xkv, self.W_K, self.b_K if bias else None)
                v = self._proj(xkv, self.W_V, self.b_V if bias else None)
                if ctx.cache is not None:
                    ctx.cache.layers[cache_key] = (k, v)
            q = self._proj(xq, self.W_Q, self.b_Q if bias else None)
        elif xq is xkv:
            q, k, v = self._qkv(xkv)
        else:
            k = self._proj(xkv, self.W_K, self.b_K if bias else None)
            v = self._proj(xkv, self.W_V, self.b_V if bias else None)
            q = self._proj(xq, self.W_Q, self.b_Q if bias else None)
        # [B, H, T, dh]; hooks see TransformerLens's [B, T, H, dh]
        if self.hook_q.active:
            q = self.hook_q(q.transpose(1, 2)).transpose(1, 2)
        if self.hook_k.active:
            k = self.hook_k(k.transpose(1, 2)).transpose(1, 2)
        if self.hook_v.active:
            v = self.hook_v(v.transpose(1, 2)).transpose(1, 2)

        if self.cross:
            q_pos = ctx.q_pos
            k_pos = torch.arange(k.shape[2], device=k.device)
            key_padding = ctx.memory_padding
            causal = False
        else:
            q_pos, k_pos, key_padding, causal = ctx.q_pos, ctx.k_pos, ctx.key_padding, ctx.causal
            if cfg.positional == "rotary":
                qp = q_pos if ctx.row_pos is None else ctx.row_pos[:, None]  # [Tq] or [B, 1, Tq]
                kp = k_pos[-k.shape[2]:] if ctx.new_key_pos is None else ctx.new_key_pos[:, None]
                cq, sq = P.rotary_cos_sin(qp, cfg.head_dim, cfg.rotary_base, q.dtype)
                q = P.apply_rotary(q, cq, sq)
                ck, sk = P.rotary_cos_sin(kp, cfg.head_dim, cfg.rotary_base, k.dtype)
                k = P.apply_rotary(k, ck, sk)
            if ctx.cache is not None:
                if cache_key in ctx.cache.layers:
                    pk, pv = ctx.cache.layers[cache_key]
                    k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
                ctx.cache.layers[cache_key] = (k, v)

        z = self._attend(q, k, v, q_pos, k_pos, causal, key_padding, ctx)
        if self.hook_z.active:
            z = self.hook_z(z.transpose(1, 2)).transpose(1, 2)
        B, H, Tq, dh = z.shape
        return _linear(z.transpose(1, 2).reshape(B, Tq, H * dh), self.W_O.reshape(H * dh, cfg.d_model),
                       self.b_O if bias else None)

    def _attend(self, q, k, v, q_pos, k_pos, causal, key_padding, ctx: _Ctx) -> torch.Tensor:
        cfg = self.cfg
        Tq, Tk = q.shape[2], k.shape[2]
        scale = 1.0 / math.sqrt(cfg.head_dim)
        # Boolean "may attend" mask [Tq, Tk] (or [B, 1, Tq, Tk] with padding); None = all.
        allowed = None
        if causal:
            allowed = k_pos[None, :] <= q_pos[:, None]
        if key_padding is not None:
            kp = key_padding[:, None, None, :]
            allowed = kp if allowed is None else (allowed[None, None] & kp)
        extra = None  # additive float bias [H, Tq, Tk] or per-query scale
        if cfg.positional == "alibi" and not self.cross:
            extra = P.alibi_bias(cfg.n_heads, q_pos, k_pos, q.dtype)
        qscale = None
        if cfg.log_length_scale:
            if causal:
                visible = (q_pos + 1).clamp_min(1).to(q.dtype)
            else:
                visible = torch.full((Tq,), float(Tk), dtype=q.dtype, device=q.device)
            qscale = torch.log(visible)  # [Tq]

        need_pattern = (cfg.attention != "softmax" or self.hook_pattern.active or self.hook_attn_scores.active
                        or Tk < FUSED_MIN_KEYS)
        if not need_pattern:
            # fused kernel: fold the log-length factor into q and everything else into one mask
            qq = q if qscale is None else q * qscale[:, None]
            drop = cfg.dropout if self.training else 0.0
            plain_causal = causal and key_padding is None and Tq == Tk and ctx.aligned
            if extra is None and (allowed is None or plain_causal):
                return F.scaled_dot_product_attention(qq, k, v, is_causal=plain_causal and Tq > 1,
                                                      dropout_p=drop, scale=scale)
            mask = torch.zeros((), dtype=q.dtype, device=q.device) if extra is None else extra
            if allowed is not None:
                mask = torch.where(allowed, mask, torch.tensor(float("-inf"), dtype=q.dtype, device=q.device))
            return F.scaled_dot_product_attention(qq, k, v, attn_mask=mask, dropout_p=drop, scale=scale)

        small = Tk <= SMALL_KEYS  # tiny sequences: broadcast-multiply beats batched matmul on a CPU
        if small:
            scores = (q.unsqueeze(-2) * k.unsqueeze(-3)).sum(-1) * scale  # [B, H, Tq, Tk]
        else:
            scores = (q @ k.transpose(-1, -2)) * scale  # [B, H, Tq, Tk]
        if qscale is not None:
            scores = scores * qscale[:, None]
        if extra is not None:
            scores = scores + extra
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        scores = self.hook_attn_scores(scores)
        if cfg.attention == "softmax":
            pattern = torch.softmax(scores, dim=-1)
        elif cfg.attention == "hard_unique":
            # argmax with the leftmost position winning ties
            pattern = F.one_hot(scores.argmax(dim=-1), Tk).to(q.dtype)
        else:
            top = scores.amax(dim=-1, keepdim=True)
            ties = (scores == top).to(q.dtype)
            pattern = ties / ties.sum(-1, keepdim=True)
        pattern = torch.nan_to_num(pattern)  # rows with nothing to attend to
        pattern = self.hook_pattern(pattern)
        if self.training and cfg.dropout > 0:
            pattern = F.dropout(pattern, cfg.dropout)
        if small:
            return (pattern.unsqueeze(-1) * v.unsqueeze(-3)).sum(-2)
        return pattern @ v


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig, hooks: HookedMixin, name: str):
        super().__init__()
        d, m = cfg.d_model, cfg.mlp_dim
        self.W_in = nn.Parameter(torch.empty(d, m))
        self.W_out = nn.Parameter(torch.empty(m, d))
        if cfg.bias:
            self.b_in = nn.Parameter(torch.zeros(m))
            self.b_out = nn.Parameter(torch.zeros(d))
        self.bias = cfg.bias
        self.act = _act(cfg.act)
        self.hook_pre = hooks._register_hook_point(f"{name}.hook_pre")
        self.hook_post = hooks._register_hook_point(f"{name}.hook_post")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _linear(x, self.W_in, self.b_in if self.bias else None)
        h = self.hook_post(self.act(self.hook_pre(h)))
        return _linear(h, self.W_out, self.b_out if self.bias else None)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, hooks: HookedMixin, name: str, cross: bool = False):
        super().__init__()
        self.cfg = cfg
        self.index = int(name.rsplit(".", 1)[-1])
        hp = hooks._register_hook_point
        self.hook_resid_pre = hp(f"{name}.hook_resid_pre")
        inner = "none" if cfg.norm_position == "final" else None  # 'final': only ln_final normalizes
        self.ln1 = Norm(cfg, hooks, f"{name}.ln1", inner)
        self.attn = Attention(cfg, hooks, f"{name}.attn")
        self.hook_attn_out = hp(f"{name}.hook_attn_out")
        self.hook_resid_mid = hp(f"{name}.hook_resid_mid")
        if cross:
            self.ln_cross = Norm(cfg, hooks, f"{name}.ln_cross", inner)
            self.cross_attn = Attention(cfg, hooks, f"{name}.cross_attn", cross=True)
            self.hook_cross_out = hp(f"{name}.hook_cross_out")
            self.hook_resid_cross = hp(f"{name}.hook_resid_cross")
        self.cross = cross
        if not cfg.attn_only:
            self.ln2 = Norm(cfg, hooks, f"{name}.ln2", inner)
            self.mlp = MLP(cfg, hooks, f"{name}.mlp")
            self.hook_mlp_out = hp(f"{name}.hook_mlp_out")
        self.hook_resid_post = hp(f"{name}.hook_resid_post")
        self._points = [h for h in vars(self).values() if isinstance(h, HookPoint)]

    def set_loop(self, loop: int) -> None:
        for h in self._points:
            h.loop = loop
        for m in self.modules():
            for h in vars(m).values():
                if isinstance(h, HookPoint):
                    h.loop = loop

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.cfg.dropout, self.training) if self.cfg.dropout > 0 else x

    def forward(self, x: torch.Tensor, ctx: _Ctx, keep: torch.Tensor | None = None) -> torch.Tensor:
        """``keep``: rows of ``x`` whose outputs are wanted (the rest only serve as keys)."""
        x = self.hook_resid_pre(x)
        pre = self.cfg.norm_position != "post"
        table = None
        if ctx.table is not None and self.index == 0 and ctx.loop == 0:
            rows, idx = ctx.table
            table = (self.ln1(rows) if pre else rows, idx, keep)
            xn = xq = None  # the projections come from the table
        else:
            xn = self.ln1(x) if pre else x
            xq = xn if keep is None else xn[:, keep]
        if keep is not None:
            sub = _Ctx(**{**ctx.__dict__, "q_pos": ctx.q_pos[keep], "aligned": False,
                          "row_pos": None if ctx.row_pos is None else ctx.row_pos[:, keep]})
        else:
            sub = ctx
        resid = x if keep is None else x[:, keep]
        a = self.hook_attn_out(self._drop(self.attn(xq, xn, sub, table)))
        x = self.hook_resid_mid(resid + a if pre else self.ln1(resid + a))
        if self.cross:
            xn = self.ln_cross(x) if pre else x
            c = self.hook_cross_out(self._drop(self.cross_attn(xn, ctx.memory, sub)))
            x = self.hook_resid_cross(x + c if pre else self.ln_cross(x + c))
        if not self.cfg.attn_only:
            m = self.hook_mlp_out(self._drop(self.mlp(self.ln2(x) if pre else x)))
            x = x + m if pre else self.ln2(x + m)
        return self.hook_resid_post(x)


# --------------------------------------------------------------------------- the model


class Transformer(HookedMixin, nn.Module):
    """A transformer built from a :class:`TransformerConfig`.

    ``forward(x, *, positions=None, decoder_tokens=None, attention_mask=None, cache=None)``

    * ``x``: tokens ``[B, T]`` (int64) or continuous inputs ``[B, T, input_dim]``;
    * ``positions``: a slice or index tensor of the positions whose outputs are wanted;
      the last block then computes queries, MLP and unembedding for those rows only
      (the result is ``[B, len(positions), d_vocab_out]``);
    * ``decoder_tokens``: decoder input for encoder-decoder models (logits are over them);
    * ``attention_mask``: ``[B, T]`` with 1 for real tokens, 0 for padding;
    * ``cache``: a :class:`KVCache` to read and extend (decoder-only incremental decoding);
    * ``position_ids``: ``[B, T]`` positions per row instead of ``offset + arange(T)`` (left-padded
      batches, as Hugging Face does); decoder models with learned, sinusoidal, rotary or no positions.
    """

    def __init__(self, cfg: TransformerConfig, generator: torch.Generator | None = None):
        nn.Module.__init__(self)
        self.cfg = cfg
        self.hook_points = {}
        d = cfg.d_model
        hp = self._register_hook_point
        self.embed = nn.Module()
        if cfg.d_vocab is not None:
            self.embed.W_E = nn.Parameter(torch.empty(cfg.d_vocab, d))
        if cfg.input_dim is not None:
            self.embed.W_in = nn.Parameter(torch.empty(cfg.input_dim, d))
            self.embed.b_in = nn.Parameter(torch.zeros(d))
        self.hook_embed = hp("hook_embed")
        if cfg.positional == "learned":
            self.pos_embed = nn.Module()
            self.pos_embed.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, d))
        if cfg.position_features:
            self.pos_feat = nn.Module()
            self.pos_feat.W = nn.Parameter(torch.empty(len(cfg.position_features), d))
        self.hook_pos_embed = hp("hook_pos_embed")
        self.blocks = nn.ModuleList([Block(cfg, self, f"blocks.{i}") for i in range(cfg.n_layers)])
        if cfg.architecture == "encoder_decoder":
            if cfg.norm_position != "post" and cfg.final_norm:
                self.enc_ln_final = Norm(cfg, self, "enc_ln_final")
            self.decoder_blocks = nn.ModuleList(
                [Block(cfg, self, f"decoder_blocks.{i}", cross=True) for i in range(cfg.decoder_layers)])
        if cfg.norm_position != "post" and cfg.final_norm and cfg.norm != "none":
            self.ln_final = Norm(cfg, self, "ln_final")
        self.unembed = nn.Module()
        if not cfg.tied_embeddings:
            self.unembed.W_U = nn.Parameter(torch.empty(d, cfg.vocab_out))
        self.unembed.b_U = nn.Parameter(torch.zeros(cfg.vocab_out))
        self.hook_logits = hp("hook_logits")
        self.reset_parameters(generator)

    # ----------------------------------------------------------------- weights
    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw every weight afresh from ``generator`` (None: torch's global generator), as ``cfg.init`` says.

        * ``gpt2`` (Radford et al. 2019, section 2.3, and the GPT-2 code): weight matrices ~ N(0, init_std^2);
          the residual-output matrices ``attn.W_O`` and ``mlp.W_out`` ~ N(0, init_std^2 / (2 * layers)), with
          layers = ``cfg.residual_layers`` (encoder plus decoder blocks), so the residual stream's variance
          does not grow with depth.
        * ``normal``: every weight matrix ~ N(0, init_std^2), residual outputs included (Nanda et al. 2023's
          code, with init_std = 1/sqrt(d_model)).

        Both: biases (``b_*``, norm ``b``) 0, norm weights (``w``) 1.
        """
        std = self.cfg.init_std
        out_std = std / math.sqrt(2 * self.cfg.residual_layers) if self.cfg.init == "gpt2" else std
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith("b_") or leaf == "b":  # biases and norm biases (ln1, ln_final, enc_ln_final, ...)
                p.zero_()
            elif leaf == "w":
                p.fill_(1.0)
            elif leaf in ("W_O", "W_out"):
                p.normal_(0.0, out_std, generator=generator)
            else:
                p.normal_(0.0, std, generator=generator)

    @property
    def W_U(self) -> torch.Tensor:
        return self.embed.W_E.T if self.cfg.tied_embeddings else self.unembed.W_U

    def weights(self) -> dict[str, torch.Tensor]:
        """All parameters by name (views: editing them edits the model)."""
        return dict(self.named_parameters())

    @torch.no_grad()
    def set_weights(self, values: dict[str, Any], strict: bool = False) -> None:
        """Set parameters by name; every shape is checked.  ``strict``: all others are zeroed."""
        params = dict(self.named_parameters())
        if strict:
            for p in params.values():
                p.zero_()
        for name, value in values.items():
            if name not in params:
                raise ConfigError(f"weight {name!r}: no such parameter; e.g. {', '.join(list(params)[:5])}, ...")
            t = torch.as_tensor(value, dtype=params[name].dtype)
            if t.shape != params[name].shape:
                raise ConfigError(f"weight {name!r}: shape {tuple(t.shape)} but the model has "
                                  f"{tuple(params[name].shape)}")
            params[name].copy_(t)

    @property
    def supports_kv_cache(self) -> bool:
        """False when a position feature depends on the sequence length (cached keys would go stale)."""
        return not (set(self.cfg.position_features) & P.LENGTH_DEPENDENT)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            for mod, attr in ((self.embed, "W_E"), (getattr(self, "pos_embed", None), "W_pos")):
                if mod is not None and hasattr(mod, attr):
                    n -= getattr(mod, attr).numel()
        return n

    # ----------------------------------------------------------------- forward
    def _embed(self, x: torch.Tensor, pos: torch.Tensor, n: int, checked: bool = False) -> torch.Tensor:
        """The residual stream's input ``[B, T, d_model]`` for tokens ``[B, T]`` (or inputs ``[B, T, input_dim]``)
        at positions ``pos`` (``[T]``, or ``[B, T]`` position ids) of a sequence of length ``n``.

        ``hook_embed`` sees ``s * W_E[x]`` and ``hook_pos_embed`` sees ``s * (W_pos[pos] + features @ pos_feat.W)
        + sinusoidal table``, with ``s = cfg.embed_multiplier`` (sqrt(d_model) under ``embed_scale``, else 1): the
        learned parts are scaled, the fixed unit-amplitude table is not (Vaswani et al. 2017, section 3.4).
        ``checked``: the caller has checked that the ids lie in ``[0, d_vocab)``; otherwise an id outside raises
        :class:`~theorylab.errors.ConfigError` (eager calls outside ``trusted_inputs()``).
        """
        cfg = self.cfg
        scale = cfg.embed_multiplier
        if x.is_floating_point():
            if cfg.input_dim is None:
                raise ConfigError("model has no input_dim: it takes token ids, not float inputs")
            h = x @ self.embed.W_in + self.embed.b_in
        else:
            if cfg.d_vocab is None:
                raise ConfigError("model has input_dim: it takes float inputs, not token ids")
            # the range check reads values (a device sync): skipped for inputs checked already, under vmap and
            # while torch.compile traces (the compiled steppers check every batch before the call)
            if x.numel() and not checked and not torch.compiler.is_compiling() and not _TRUSTED_INPUTS.get():
                self.check_token_ids(x)
            h = F.embedding(x, self.embed.W_E)
        if scale != 1.0:
            h = h * scale
        h = self.hook_embed(h)
        pe = None
        if cfg.positional == "learned":
            if pos.dim() == 1 and n > cfg.n_ctx:  # n = last position + 1 (position_ids are checked apart)
                raise ConfigError(f"sequence length {n} exceeds n_ctx={cfg.n_ctx} "
                                  "(learned positions); raise model.n_ctx")
            pe = self.pos_embed.W_pos[pos]
            if scale != 1.0:
                pe = pe * scale
        elif cfg.positional == "sinusoidal":  # fixed, unit amplitude: never scaled
            pe = P.sinusoidal_table(pos.reshape(-1), cfg.d_model, h.dtype).view(*pos.shape, cfg.d_model)
        if cfg.position_features:
            f = P.position_features(cfg.position_features, pos, n, h.dtype) @ self.pos_feat.W
            if scale != 1.0:
                f = f * scale
            pe = f if pe is None else pe + f
        if pe is not None:
            pe = self.hook_pos_embed(pe)
            h = h + (pe if pe.dim() == 3 else pe[None])  # [B, T, d] with position_ids, else [T, d]
        if cfg.dropout > 0:
            h = F.dropout(h, cfg.dropout, self.training)
        return h

    def check_token_ids(self, x: torch.Tensor) -> None:
        """Raise :class:`~theorylab.errors.ConfigError` when a token id of ``x`` (any shape, non-empty, int) lies
        outside ``[0, d_vocab)``; one device sync (both bounds read at once)."""
        lo, hi = torch.stack(torch.aminmax(x)).tolist()
        if lo < 0 or hi >= self.cfg.d_vocab:
            raise ConfigError(f"token ids must lie in [0, {self.cfg.d_vocab}) (got {lo}..{hi})")

    def _layer0_table(self, x: torch.Tensor, pos: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The first block's input for every (token, position) pair, ``[V * T, d]``, and the index
        ``[B, T]`` of each example's rows, when that saves work; None otherwise.

        The first block's input is ``W_E[token] + (position embedding)(position)``: a function of the
        (token, position) pair alone.  When the batch has more rows than the table (a small vocabulary,
        e.g. modular arithmetic's full batch, or the formal languages), the first block's norm and
        Q/K/V projections are computed once per table row and gathered, instead of once per example.
        Skipped with float inputs, dropout in training, per-row ``position_ids`` or any hook attached
        (hooks see exactly the usual activations).  The result equals the plain path to float rounding.
        """
        cfg = self.cfg
        if x.is_floating_point() or not len(self.blocks) or (cfg.dropout > 0 and self.training):
            return None
        B, T = x.shape
        V = cfg.d_vocab
        if 2 * V > B or any(hp.fns for hp in self.hook_points.values()):
            return None
        every = torch.arange(V, device=x.device)[:, None].expand(V, T)
        rows = self._embed(every, pos, n, checked=True).reshape(V * T, -1)  # every id of the vocabulary
        return rows, x * T + torch.arange(T, device=x.device)

    def _stack(self, blocks: nn.ModuleList, h: torch.Tensor, ctx: _Ctx, keep: torch.Tensor | None) -> torch.Tensor:
        n = len(blocks)
        loops = self.cfg.n_loops
        for loop in range(loops):
            ctx.loop = loop
            for i, block in enumerate(blocks):
                if loops > 1:
                    block.set_loop(loop)
                last = loop == loops - 1 and i == n - 1
                h = block(h, ctx, keep if last else None)
        if n == 0 and keep is not None:
            h = h[:, keep]
        return h

    def encode(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Run the encoder stack (encoder and encoder_decoder models): [B, T, d_model]."""
        T = x.shape[1]
        pos = torch.arange(T, device=x.device)
        h = self._embed(x, pos, T)
        ctx = _Ctx(q_pos=pos, k_pos=pos, n=T, causal=False,
                   key_padding=None if attention_mask is None else attention_mask.bool(), cache=None,
                   table=self._layer0_table(x, pos, T))
        h = self._stack(self.blocks, h, ctx, None)
        if hasattr(self, "enc_ln_final"):
            h = self.enc_ln_final(h)
        return h

    def forward(self, x: torch.Tensor, *, positions: slice | torch.Tensor | None = None,
                decoder_tokens: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, return_residual: bool = False,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        if x.dim() not in (2, 3):
            raise ConfigError(f"input must be [batch, seq] tokens or [batch, seq, input_dim]; got shape "
                              f"{tuple(x.shape)}")
        if cache is not None and cache.length and not self.supports_kv_cache:
            raise ConfigError(f"position_features {sorted(set(cfg.position_features) & P.LENGTH_DEPENDENT)} "
                              "depend on the sequence length: cached keys would be stale; recompute without a cache")
        if cfg.architecture == "encoder_decoder":
            if decoder_tokens is None:
                raise ConfigError("encoder_decoder models need decoder_tokens")
            memory = self.encode(x, attention_mask) if not (cache is not None and cache.layers) else None
            return self._decode(decoder_tokens, memory, attention_mask, positions, cache, return_residual)
        T = x.shape[1]
        offset = cache.length if cache is not None else 0
        pos = torch.arange(offset, offset + T, device=x.device)
        n = offset + T
        if position_ids is not None:
            self._check_position_ids(position_ids, x)
        h = self._embed(x, pos if position_ids is None else position_ids, n)
        keep = None
        if positions is not None:
            keep = torch.arange(T, device=x.device)[positions]
        k_pos = torch.arange(0, offset + T, device=x.device)
        key_padding = None
        if attention_mask is not None:
            key_padding = attention_mask.bool()
            if key_padding.shape[1] != k_pos.shape[0]:
                raise ConfigError(f"attention_mask covers {key_padding.shape[1]} positions, expected {n}")
        ctx = _Ctx(q_pos=pos, k_pos=k_pos, n=n, causal=cfg.causal, key_padding=key_padding, cache=cache,
                   aligned=offset == 0, row_pos=position_ids, new_key_pos=position_ids,
                   table=self._layer0_table(x, pos, n) if cache is None and position_ids is None else None)
        h = self._stack(self.blocks, h, ctx, keep)
        if cache is not None:
            cache.length = n
        return self._unembed(h, return_residual)

    def _check_position_ids(self, position_ids: torch.Tensor, x: torch.Tensor) -> None:
        cfg = self.cfg
        if cfg.architecture != "decoder" or cfg.positional == "alibi" or cfg.log_length_scale or cfg.position_features:
            raise ConfigError("position_ids: supported for decoder models with learned, sinusoidal, rotary or no "
                              "positions (not alibi, log_length_scale or position_features)")
        if position_ids.shape != x.shape[:2] or position_ids.is_floating_point():
            raise ConfigError(f"position_ids must be [batch, seq] integers like the input {tuple(x.shape[:2])} "
                              f"(got {tuple(position_ids.shape)})")
        if position_ids.numel() and cfg.positional == "learned":
            lo, hi = torch.stack(torch.aminmax(position_ids)).tolist()
            if lo < 0 or hi >= cfg.n_ctx:
                raise ConfigError(f"position_ids must lie in [0, n_ctx={cfg.n_ctx}) (got {lo}..{hi})")

    def _decode(self, tokens, memory, memory_padding, positions, cache, return_residual):
        T = tokens.shape[1]
        offset = cache.length if cache is not None else 0
        pos = torch.arange(offset, offset + T, device=tokens.device)
        h = self._embed(tokens, pos, offset + T)
        keep = None if positions is None else torch.arange(T, device=tokens.device)[positions]
        ctx = _Ctx(q_pos=pos, k_pos=torch.arange(offset + T, device=tokens.device), n=offset + T, causal=True,
                   key_padding=None, cache=cache, memory=memory,
                   memory_padding=None if memory_padding is None else memory_padding.bool(), aligned=offset == 0)
        h = self._stack(self.decoder_blocks, h, ctx, keep)
        if cache is not None:
            cache.length = offset + T
        return self._unembed(h, return_residual)

    def _unembed(self, h: torch.Tensor, return_residual: bool) -> torch.Tensor:
        if hasattr(self, "ln_final"):
            h = self.ln_final(h)
        if return_residual:
            return h
        return self.hook_logits(_linear(h, self.W_U, self.unembed.b_U))


def build_model(cfg: TransformerConfig, seed: int | None = None) -> Transformer:
    """A model initialised from ``seed`` (its own generator; global RNG untouched)."""
    g = None
    if seed is not None:
        g = torch.Generator().manual_seed(int(seed))
    return Transformer(cfg, generator=g)
