"""How large a model is and how much memory training it needs, from its config alone (nothing is allocated).

:func:`param_count` is exact (it mirrors :class:`~theorylab.models.transformer.Transformer`'s parameters;
``tests/test_model_size.py`` checks it against built models).  :func:`training_memory` is a rough
estimate: parameters, gradients and optimizer state exactly, plus a per-tensor overhead (measured)
and the activations autograd keeps for one batch (an upper bound within a small factor).
:func:`available_memory` says what the machine has, so that callers can refuse a config before
building it (``theorylab.runs.config.check_memory``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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
