"""How large a model is, how much compute and how much memory training it needs, from its config alone
(nothing is allocated).

:func:`param_count` is exact (it mirrors :class:`~theorylab.models.transformer.Transformer`'s parameters;
``tests/test_model_size.py`` checks it against built models).  :func:`training_memory` is a rough
estimate: parameters, gradients and optimizer state exactly, plus a per-tensor overhead (measured)
and the activations autograd keeps for one batch (an upper bound within a small factor).
:func:`available_memory` says what the machine has, so that callers can refuse a config before
building it (``theorylab.runs.config.check_memory``).  :func:`flops_per_token`, :func:`training_flops` and
:func:`non_embedding_params` count compute the way Hoffmann et al. 2022 (Appendix F) and Kaplan et al. 2020
(section 2.1) do, with the embedding and unembedding shares kept apart (``tests/test_flops.py`` checks them
against hand counts and against ``torch.utils.flop_counter``).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

from theorylab.errors import ConfigError
from theorylab.models.config import TransformerConfig

# train.dtype=bf16 keeps float32 weights, gradients and optimizer state; its bf16 activations are counted at
# float32 size too (autocast keeps reductions and some outputs in float32): an upper bound, as a check should be
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "bf16": 4}
# Bytes each parameter tensor costs beyond its numbers once a step has run (the tensor and its
# gradient, optimizer-state objects, autograd nodes, the module holding it): about 9.4 KB measured with
# AdamW on CPU (a 2000-layer model of 16-number tensors).  It decides for models of very many tiny layers.
TENSOR_OVERHEAD = 10_000
# Below this many keys, or with hard attention, the attention pattern [rows, heads, T, T] is materialized
# (transformer.FUSED_MIN_KEYS); above it, softmax attention runs fused and keeps O(T) per row.
_FUSED_MIN_KEYS = 16


def _norm(cfg: TransformerConfig, kind: str | None = None) -> tuple[int, int]:
    kind = cfg.norm if kind is None else kind
    d = cfg.d_model
    return {"none": (0, 0), "rmsnorm": (d, 1), "layernorm": (2 * d, 2)}[kind]


def _attention(cfg: TransformerConfig) -> tuple[int, int]:
    H, d, dh = cfg.n_heads, cfg.d_model, cfg.head_dim
    n, t = 4 * H * d * dh, 4
    if cfg.bias:
        n, t = n + 3 * H * dh + d, t + 4
    return n, t


def _mlp(cfg: TransformerConfig) -> tuple[int, int]:
    d, m = cfg.d_model, cfg.mlp_dim
    n, t = 2 * d * m, 2
    if cfg.bias:
        n, t = n + m + d, t + 2
    return n, t


def _block(cfg: TransformerConfig, cross: bool) -> tuple[int, int]:
    inner = "none" if cfg.norm_position == "final" else None
    parts = [_norm(cfg, inner), _attention(cfg)]
    if cross:
        parts += [_norm(cfg, inner), _attention(cfg)]
    if not cfg.attn_only:
        parts += [_norm(cfg, inner), _mlp(cfg)]
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def _size(cfg: TransformerConfig) -> tuple[int, int]:
    """(numbers, tensors) of the model's parameters."""
    d = cfg.d_model
    n = t = 0
    if cfg.d_vocab is not None:
        n, t = n + cfg.d_vocab * d, t + 1
    if cfg.input_dim is not None:
        n, t = n + cfg.input_dim * d + d, t + 2
    if cfg.positional == "learned":
        n, t = n + cfg.n_ctx * d, t + 1
    if cfg.position_features:
        n, t = n + len(cfg.position_features) * d, t + 1
    bn, bt = _block(cfg, cross=False)
    n, t = n + cfg.n_layers * bn, t + cfg.n_layers * bt
    if cfg.architecture == "encoder_decoder":
        if cfg.norm_position != "post" and cfg.final_norm:
            en, et = _norm(cfg)
            n, t = n + en, t + et
        dn, dt = _block(cfg, cross=True)
        n, t = n + cfg.decoder_layers * dn, t + cfg.decoder_layers * dt
    if cfg.norm_position != "post" and cfg.final_norm and cfg.norm != "none":
        fn, ft = _norm(cfg)
        n, t = n + fn, t + ft
    if not cfg.tied_embeddings:
        n, t = n + d * cfg.vocab_out, t + 1
    return n + cfg.vocab_out, t + 1


def param_count(cfg: TransformerConfig) -> int:
    """The number of parameters ``Transformer(cfg)`` has, computed without building it."""
    return _size(cfg)[0]


def param_tensors(cfg: TransformerConfig) -> int:
    """The number of parameter tensors ``Transformer(cfg)`` has."""
    return _size(cfg)[1]


def _embedding_params(cfg: TransformerConfig) -> int:
    """Parameters of the input and output layers: W_E, W_in and b_in, W_pos, pos_feat.W, W_U (untied) and b_U."""
    d = cfg.d_model
    n = cfg.d_vocab * d if cfg.d_vocab is not None else 0
    if cfg.input_dim is not None:
        n += cfg.input_dim * d + d
    if cfg.positional == "learned":
        n += cfg.n_ctx * d
    n += len(cfg.position_features) * d
    if not cfg.tied_embeddings:
        n += d * cfg.vocab_out
    return n + cfg.vocab_out


def non_embedding_params(cfg: TransformerConfig) -> int:
    """Kaplan et al.'s N: the parameters of ``Transformer(cfg)`` outside its input and output layers.

    Kaplan et al. 2020 (arXiv 2001.08361, section 2.1 and Table 1) count "non-embedding" parameters,
    leaving out the vocabulary and position embeddings; with tied embeddings (theirs) that also leaves out
    the unembedding.  Here: :func:`param_count` minus the token embedding ``W_E [d_vocab, d_model]`` (or the
    continuous read-in ``W_in [input_dim, d_model]`` and ``b_in``), the learned position table ``W_pos [n_ctx,
    d_model]``, the position-feature read-in ``pos_feat.W``, the unembedding ``W_U [d_model, d_vocab_out]``
    when untied and its bias ``b_U [d_vocab_out]`` (always present).  What is left is the blocks and the
    norms outside them (``ln_final``, ``enc_ln_final``).  Note that ``Transformer.num_params(non_embedding=True)``
    subtracts only ``W_E`` and ``W_pos``.  At tiny scale the two counts differ by a large factor, so record both
    (Pearce & Song 2024, arXiv 2406.12907; Porian et al. 2024, arXiv 2406.19146).  Never raises.
    """
    return param_count(cfg) - _embedding_params(cfg)


# --------------------------------------------------------------------------- FLOPs

# FLOPs per number of one normalization: layernorm = mean (1), centre (1), square and sum (2), normalize (1),
# scale (1), shift (1); rmsnorm = square and sum (2), normalize (1), scale (1).  Per-row scalars are not counted.
NORM_FLOPS = {"none": 0, "layernorm": 7, "rmsnorm": 4}
FLOP_PARTS = ("embedding", "attention_proj", "attention_scores", "mlp", "unembedding", "norms/other")


def flops_per_token(cfg: TransformerConfig, n_ctx: int | None = None, *, keys: str = "full") -> dict[str, float]:
    """Forward FLOPs per token of ``Transformer(cfg)`` on sequences of ``n_ctx`` tokens (default ``cfg.n_ctx``),
    split into parts, after Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models", arXiv
    2203.15556, Appendix F, Table A4).

    One multiply-add is 2 FLOPs.  With ``d = d_model``, ``a = n_heads * d_head``, ``m = d_mlp``, ``n = n_ctx``,
    ``V = d_vocab``, ``V_out = d_vocab_out``, per token and per block (times ``n_loops``):

    * ``"embedding"``: the token lookup is a gather and costs 0 FLOPs here (Table A4 counts it as a one-hot
      matmul, ``2 V d``: that number is returned apart as ``"embedding_chinchilla"`` and is NOT in the
      forward total); adding a position table (learned, sinusoidal or position features) costs ``d``, scaling
      by ``sqrt(d_model)`` (``embed_scale``) ``d``; continuous inputs cost ``2 input_dim d + d`` (read-in and
      ``b_in``).  Work that depends on the position alone (the table itself, its scaling, the features'
      read-in) is shared by the batch and not counted.
    * ``"attention_proj"``: queries, keys, values ``2 * 3 d a`` and the output projection ``2 a d`` (Table A4).
    * ``"attention_scores"``: ``Q K^T`` ``2 k a``, softmax ``3 H k`` and ``pattern @ V`` ``2 k a`` for ``k``
      keys per query.  ``keys="full"`` (the default): ``k = n`` for every query, as Table A4 counts and as the
      kernels compute (the causal mask is applied to a full ``n x n`` score matrix); ``keys="causal"``: a
      causal query sees ``(n + 1) / 2`` keys on average (encoder stacks and cross-attention keep ``n``).  The
      score scale, the mask, ALiBi and log-length factors are not counted (Table A4 neither); hard attention
      is counted as a softmax.
    * ``"mlp"``: ``2 * 2 d m`` (Table A4's feed-forward); the activation function is not counted.
    * ``"unembedding"``: the logits ``2 d V_out`` (Table A4's final logits); the loss's log-softmax is not.
    * ``"norms/other"``: what Table A4 leaves out: every norm (``NORM_FLOPS`` per number: layernorm 7,
      rmsnorm 4), every residual addition (``d``), every bias addition (one FLOP per number: ``3 a + d``
      per attention, ``m + d`` per MLP, ``V_out`` for ``b_U``), rotary positions (3 FLOPs per number of q
      and k).

    ``architecture="encoder_decoder"``: per target token with a source of the same length ``n``: one
    source token's encoder work plus one target token's decoder work (self-attention, cross-attention
    whose key and value projections run once per source token, MLP).  Continuous inputs are counted when
    ``d_vocab`` is none.  The first block may do less than counted where the model projects a
    (token, position) table instead of the batch (``Transformer._layer0_table``): the count is nominal.

    Returns FLOPs per token (floats): the six parts, ``"forward"`` (their sum), ``"backward"`` =
    ``2 * forward`` and ``"train"`` = ``3 * forward`` (Hoffmann et al.'s and Kaplan et al.'s convention:
    the backward pass costs twice the forward), ``"matmul"`` (the matrix-multiply FLOPs of the forward
    pass: what ``torch.utils.flop_counter.FlopCounterMode`` counts) and ``"embedding_chinchilla"``.
    Raises :class:`ConfigError` for a ``cfg`` that is not a TransformerConfig, ``n_ctx < 1`` or an unknown
    ``keys``.
    """
    if not isinstance(cfg, TransformerConfig):
        raise ConfigError(f"expected a TransformerConfig (a run config's .model), got {type(cfg).__name__}")
    n = cfg.n_ctx if n_ctx is None else n_ctx
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ConfigError(f"n_ctx must be a positive integer (got {n_ctx!r})")
    if keys not in ("full", "causal"):
        raise ConfigError(f"keys must be 'full' or 'causal' (got {keys!r})")
    d, H, m, V_out = cfg.d_model, cfg.n_heads, cfg.mlp_dim, cfg.vocab_out
    a = H * cfg.head_dim
    part = dict.fromkeys(FLOP_PARTS, 0.0)
    mm = 0.0  # matmul FLOPs of the forward

    inner = 0 if cfg.norm_position == "final" else NORM_FLOPS[cfg.norm] * d  # a norm inside a block
    has_final = cfg.norm_position != "post" and cfg.final_norm

    def embed() -> None:
        nonlocal mm
        if cfg.d_vocab is None:  # continuous inputs: x @ W_in + b_in
            part["embedding"] += 2 * cfg.input_dim * d + d
            mm += 2 * cfg.input_dim * d
        if cfg.embed_multiplier != 1.0:
            part["embedding"] += d
        if cfg.positional in ("learned", "sinusoidal") or cfg.position_features:
            part["embedding"] += d

    def attention(k: float, rotary: bool, times: int) -> None:
        nonlocal mm
        proj, scores = 2 * 3 * d * a + 2 * a * d, 2 * k * a + 2 * k * a
        part["attention_proj"] += times * proj
        part["attention_scores"] += times * (scores + 3 * H * k)
        part["norms/other"] += times * (inner + d + (3 * a + d if cfg.bias else 0) + (3 * 2 * a if rotary else 0))
        mm += times * (proj + scores)

    def mlp(times: int) -> None:
        nonlocal mm
        if cfg.attn_only:
            return
        part["mlp"] += times * 2 * 2 * d * m
        part["norms/other"] += times * (inner + d + (m + d if cfg.bias else 0))
        mm += times * 2 * 2 * d * m

    rotary = cfg.positional == "rotary"
    causal_keys = (n + 1) / 2 if keys == "causal" else n
    blocks = cfg.n_loops * cfg.n_layers
    embed()
    attention(causal_keys if cfg.causal else n, rotary, blocks)
    mlp(blocks)
    if cfg.architecture == "encoder_decoder":
        if has_final:  # enc_ln_final
            part["norms/other"] += NORM_FLOPS[cfg.norm] * d
        embed()  # the target token
        dec = cfg.n_loops * cfg.decoder_layers
        attention(causal_keys, rotary, dec)
        attention(n, False, dec)  # cross-attention: no rotary, every source position
        mlp(dec)
    if has_final:  # ln_final
        part["norms/other"] += NORM_FLOPS[cfg.norm] * d
    part["unembedding"] = 2 * d * V_out
    part["norms/other"] += V_out  # b_U
    mm += 2 * d * V_out
    forward = sum(part.values())
    tokens_in = 2 if cfg.architecture == "encoder_decoder" else 1
    chinchilla = tokens_in * 2 * cfg.d_vocab * d if cfg.d_vocab is not None else 0
    return {**{k: float(v) for k, v in part.items()}, "forward": float(forward), "backward": 2.0 * forward,
            "train": 3.0 * forward, "matmul": float(mm), "embedding_chinchilla": float(chinchilla)}


def training_flops(cfg: TransformerConfig, tokens: float, n_ctx: int | None = None, *,
                   keys: str = "full") -> dict[str, float]:
    """FLOPs of training ``Transformer(cfg)`` on ``tokens`` tokens (forward and backward), counted three ways.

    * ``"exact"``: ``flops_per_token(cfg, n_ctx, keys=keys)["train"] * tokens`` (3 x forward, Hoffmann et al.
      2022, Appendix F);
    * ``"6ND"``: ``6 N D`` with ``N`` = :func:`param_count` (every parameter), Hoffmann et al.'s ``C = 6ND``;
    * ``"6ND_non_embedding"``: ``6 N D`` with ``N`` = :func:`non_embedding_params` (Kaplan et al. 2020,
      section 2.1, ``C ~ 6 N`` per token);
    * ``"embedding"``, ``"unembedding"``: those parts' share of ``"exact"`` (each part's forward FLOPs x 3 x
      tokens); ``"embedding_chinchilla"``: the same for Table A4's one-hot lookup ``2 V d`` (not in ``"exact"``);
    * ``"params"``, ``"non_embedding_params"``: the two ``N``.

    The SETUPS checklist (after Porian et al. 2024, arXiv 2406.19146, and Pearce & Song 2024, arXiv
    2406.12907): at tiny scale the embedding and unembedding shares are large and ``6ND`` with either ``N``
    misses the exact count by a visible factor, so keep them all.  ``tokens``: a count (float for large
    budgets).  Raises :class:`ConfigError` for a negative or non-finite ``tokens``, and as
    :func:`flops_per_token` does.
    """
    if isinstance(tokens, bool) or not isinstance(tokens, numbers.Real) or not math.isfinite(tokens) or tokens < 0:
        raise ConfigError(f"tokens must be a finite number >= 0 (got {tokens!r})")
    f = flops_per_token(cfg, n_ctx, keys=keys)
    N, N_ne = param_count(cfg), non_embedding_params(cfg)
    D = float(tokens)
    return {"exact": f["train"] * D, "6ND": 6.0 * N * D, "6ND_non_embedding": 6.0 * N_ne * D,
            "embedding": 3.0 * f["embedding"] * D, "unembedding": 3.0 * f["unembedding"] * D,
            "embedding_chinchilla": 3.0 * f["embedding_chinchilla"] * D,
            "params": float(N), "non_embedding_params": float(N_ne)}


def activation_numbers(cfg: TransformerConfig, rows: int, seq_len: int | None = None) -> int:
    """Numbers autograd keeps for one training step of ``rows`` sequences of ``seq_len`` positions
    (default ``n_ctx``): per layer and position the residual stream, norms, q/k/v/z and MLP pre/post
    activations (plus the attention pattern where it is materialized), and the logits."""
    T = cfg.n_ctx if seq_len is None else seq_len
    d, hd, m = cfg.d_model, cfg.n_heads * cfg.head_dim, 0 if cfg.attn_only else cfg.mlp_dim
    pattern = 2 * cfg.n_heads * T if (cfg.attention != "softmax" or T < _FUSED_MIN_KEYS) else 0
    layer = 6 * d + 4 * hd + 2 * m + pattern
    per_position = cfg.n_loops * cfg.n_layers * layer
    if cfg.architecture == "encoder_decoder":
        per_position += cfg.n_loops * cfg.decoder_layers * (layer + 2 * d + 4 * hd + pattern)
    per_position += 3 * d + 3 * cfg.vocab_out  # embeddings in; logits, log-softmax and its gradient out
    return rows * T * per_position


def generation_memory(cfg: TransformerConfig, rows: int, seq_len: int | None = None, dtype: str = "float32") -> int:
    """Bytes decoding ``rows`` sequences of up to ``seq_len`` positions (default ``n_ctx``) needs beyond the
    model (a rough upper bound): the token ids, the key/value cache of every layer, one layer's activations
    and the logits."""
    T = cfg.n_ctx if seq_len is None else seq_len
    layers = cfg.n_loops * (cfg.n_layers + (cfg.decoder_layers if cfg.architecture == "encoder_decoder" else 0))
    hd = cfg.n_heads * cfg.head_dim
    per_position = 2 * layers * hd + 6 * cfg.d_model + 2 * cfg.mlp_dim + 2 * cfg.vocab_out
    return rows * T * (per_position * DTYPE_BYTES[dtype] + 16)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a training run needs, by part."""

    params: int
    grads: int
    optimizer: int
    overhead: int
    activations: int
    rows: int
    seq_len: int
    data: int = 0  # the task's data, where the caller adds it

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.overhead + self.activations + self.data

    def describe(self, optimizer: str = "optimizer") -> str:
        data = f", task data {fmt_bytes(self.data)}" if self.data else ""
        return (f"parameters {fmt_bytes(self.params)}, gradients and {optimizer} state "
                f"{fmt_bytes(self.grads + self.optimizer)}, activations for {self.rows} rows of {self.seq_len} "
                f"positions {fmt_bytes(self.activations)}{data}")


def training_memory(cfg: TransformerConfig, *, rows: int, dtype: str = "float32", optimizer_states: int = 2,
                    seq_len: int | None = None) -> MemoryEstimate:
    """A rough estimate of the memory one training step of ``Transformer(cfg)`` needs: ``rows`` sequences
    per step, ``optimizer_states`` numbers of optimizer state per parameter (AdamW 2, SGD with momentum 1)."""
    b = DTYPE_BYTES[dtype]
    n, t = _size(cfg)
    T = cfg.n_ctx if seq_len is None else seq_len
    return MemoryEstimate(params=n * b, grads=n * b, optimizer=optimizer_states * n * b,
                          overhead=t * TENSOR_OVERHEAD, activations=activation_numbers(cfg, rows, T) * b,
                          rows=rows, seq_len=T)


def fmt_bytes(n: float) -> str:
    """``1.5 GB`` (decimal units); beyond zettabytes in scientific notation."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n * 1000:.1e} ZB"


def available_memory(device: str = "cpu") -> tuple[int | None, str]:
    """(bytes free for a new run, where) on ``device`` ("cpu", "cuda", "cuda:N", "mps", "auto"): the free
    memory of the CUDA device, else the RAM the kernel reports available (MemAvailable); ``None`` when it
    cannot be told (then nothing is refused)."""
    if device == "auto" or device.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
                return int(torch.cuda.mem_get_info(index)[0]), f"cuda:{index}"
        except Exception:  # no such device, or no driver: the loop reports that itself
            return None, device
        if device != "auto":
            return None, device  # cuda asked for but absent: the loop refuses it with its own message
    return ram_available(), "this machine's RAM"


def ram_available() -> int | None:
    """Bytes of RAM available to a new process: MemAvailable from /proc/meminfo, else the free physical
    pages (``os.sysconf``), else ``None``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None
