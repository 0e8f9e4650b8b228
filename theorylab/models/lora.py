"""Low-rank adapters (LoRA; Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv
2106.09685) on theorylab's :class:`~theorylab.models.Transformer`.

A targeted weight ``W`` of every block is frozen and replaced, in every forward pass, by ``W + (alpha / r) A B``
(Hu et al., §4.1, eq. 3): ``A [d_in, r]`` starts Gaussian (standard deviation ``1 / sqrt(d_in)``), ``B [r,
d_out]`` starts at zero, so an adapted model computes exactly its base model's function before its first
step.  Only ``A`` and ``B`` train.  ``d_in``/``d_out`` are the weight's input and output sizes in the usual
matrix view: ``W_Q``, ``W_K``, ``W_V [H, d_model, d_head]`` map ``d_model -> H d_head`` (one adapter across the
heads, as LoRA on a fused q/k/v projection); ``W_O [H, d_head, d_model]`` maps ``H d_head -> d_model``;
``W_in [d_model, d_mlp]``, ``W_out [d_mlp, d_model]``, the token embedding ``W_E [d_vocab, d_model]`` and the
unembedding ``W_U [d_model, d_vocab_out]`` (not with tied embeddings) are matrices already.  Hu et al. adapt
``W_q`` and ``W_v`` (their §7.1 finds that pair best for a fixed budget), the default targets here.  With a
frozen unembedding the logits can move only as far as ``W_U`` lets the normalised residual reach: a small
model whose ``W_U`` is still near its initial scale (standard deviation 0.02) cannot shift its output
distribution far through its blocks alone; add ``W_U`` to the targets there.

The update is a :mod:`torch.nn.utils.parametrize` parametrization, so the model's code reads its weights as
before; :func:`merge_lora` folds each update into its weight and leaves a plain Transformer computing the same
function (the stored model of a LoRA run is the merged one: :meth:`theorylab.store.Store.load_model`).

**Why not peft.**  Hugging Face's ``peft`` adapts ``nn.Linear``/``nn.Embedding``/``nn.Conv`` modules.  Our
weights are plain parameters in TransformerLens's layout (``W_Q [H, d_model, d_head]``), read by the model's
own matmuls, so ``peft`` has no module to wrap; a parametrization over the existing parameters is a few lines
and keeps every hook and weight name as it is.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils import parametrize

from theorylab.config import Config, register_section
from theorylab.errors import ConfigError

Target = Literal["W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_E", "W_U"]
_ATTN = ("W_Q", "W_K", "W_V", "W_O")


class LoraConfig(Config):
    """Low-rank adapters of a fine-tuned run (module doc); ``rank`` none = full fine-tuning."""

    rank: int | None = Field(None, gt=0, description="r, the adapters' rank; none = full fine-tuning (every "
                                                     "weight trains)")
    alpha: float | None = Field(None, gt=0, description="the update is scaled by alpha / r (Hu et al. 2021, "
                                                        "§4.1); none = r (scale 1)")
    targets: list[Target] = Field(default_factory=lambda: ["W_Q", "W_V"],
                                  description="the weights adapted: W_Q, W_K, W_V, W_O (attention), W_in, W_out "
                                              "(MLP) in every block; W_E (token embedding), W_U (unembedding)")

    @model_validator(mode="after")
    def _check(self) -> LoraConfig:
        if self.rank is None and (self.alpha is not None or self.targets != ["W_Q", "W_V"]):
            raise ValueError("alpha and targets need a rank (lora.rank=R); without one the run fine-tunes every "
                             "weight")
        return self

    @property
    def enabled(self) -> bool:
        return self.rank is not None

    @property
    def scale(self) -> float:
        return (self.alpha if self.alpha is not None else float(self.rank or 1)) / float(self.rank or 1)


register_section(LoraConfig, "lora")


def _dims(name: str, shape: torch.Size) -> tuple[int, int]:
    if name in ("W_Q", "W_K", "W_V"):
        H, d, dh = shape
        return d, H * dh
    if name == "W_O":
        H, dh, d = shape
        return H * dh, d
    return int(shape[0]), int(shape[1])


class LowRankUpdate(nn.Module):
    """The parametrization ``W -> W + scale * A B`` of one weight, with ``A B`` laid out as ``W`` (module doc).
    ``shape``: the weight's shape; ``name``: its leaf name (which decides the layout)."""

    def __init__(self, name: str, shape: torch.Size, rank: int, scale: float, dtype: torch.dtype,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.name, self.shape, self.scale = name, tuple(shape), scale
        d_in, d_out = _dims(name, shape)
        a = torch.randn(d_in, rank, generator=generator, dtype=torch.float64) / math.sqrt(d_in)
        self.A = nn.Parameter(a.to(dtype))
        self.B = nn.Parameter(torch.zeros(rank, d_out, dtype=dtype))

    def delta(self) -> torch.Tensor:
        """``scale * A B`` in the weight's layout."""
        d = (self.A @ self.B) * self.scale
        if self.name in ("W_Q", "W_K", "W_V"):
            H, dm, dh = self.shape
            return d.view(dm, H, dh).permute(1, 0, 2)
        return d.view(self.shape)

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        return W + self.delta().to(W.dtype)


def _targets(model: nn.Module, names: list[str]):
    for sub, name in (("embed", "W_E"), ("unembed", "W_U")):
        module = getattr(model, sub, None)
        if name in names and module is not None and isinstance(getattr(module, name, None), nn.Parameter):
            yield module, name
    for block_list in ("blocks", "decoder_blocks"):
        for block in getattr(model, block_list, []):
            for sub, keys in (("attn", _ATTN), ("cross_attn", _ATTN), ("mlp", ("W_in", "W_out"))):
                module = getattr(block, sub, None)
                if module is None:
                    continue
                for name in keys:
                    if name in names and isinstance(getattr(module, name, None), torch.Tensor):
                        yield module, name


def apply_lora(model: nn.Module, cfg: LoraConfig, generator: torch.Generator | None = None) -> list[nn.Parameter]:
    """Freeze every weight of ``model`` and adapt ``cfg.targets`` of every block by rank-``cfg.rank`` updates
    (module doc), in place; returns the adapters' parameters (the ones that train).  Raises ConfigError when the
    rank is not set or exceeds a target's smaller side, or when no target exists in the model (e.g. ``W_in`` of
    an attention-only model)."""
    if not cfg.enabled:
        raise ConfigError("lora.rank: set a rank to apply adapters")
    for p in model.parameters():
        p.requires_grad_(False)
    if "W_U" in cfg.targets and getattr(getattr(model, "cfg", None), "tied_embeddings", False):
        raise ConfigError("lora.targets: W_U is the token embedding's transpose in a model with tied embeddings; "
                          "adapt W_E instead")
    found = list(_targets(model, list(cfg.targets)))
    if not found:
        raise ConfigError(f"lora.targets: none of {', '.join(cfg.targets)} is a weight of this model")
    out: list[nn.Parameter] = []
    for module, name in found:
        W = getattr(module, name)
        d_in, d_out = _dims(name, W.shape)
        if cfg.rank > min(d_in, d_out):
            raise ConfigError(f"lora.rank: {cfg.rank} exceeds {name}'s smaller side ({min(d_in, d_out)}); a "
                              "low-rank update's rank is at most its weight's smaller side")
        upd = LowRankUpdate(name, W.shape, cfg.rank, cfg.scale, W.dtype, generator).to(W.device)
        parametrize.register_parametrization(module, name, upd)
        out += [upd.A, upd.B]
    return out


def is_adapted(model: nn.Module) -> bool:
    """Whether any weight of ``model`` carries a LoRA update."""
    return any(parametrize.is_parametrized(m) for m in model.modules())


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its weight (``W <- W + scale A B``) and remove the parametrizations, in place:
    the result is a plain Transformer computing the same function (to rounding), every weight trainable again.
    Returns ``model``."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def adapter_parameter_count(model: nn.Module) -> int:
    """The number of trainable adapter numbers: ``r (d_in + d_out)`` per adapted weight."""
    return sum(p.numel() for m in model.modules() if isinstance(m, LowRankUpdate) for p in (m.A, m.B))


__all__ = ["LoraConfig", "LowRankUpdate", "apply_lora", "merge_lora", "is_adapted", "adapter_parameter_count"]
