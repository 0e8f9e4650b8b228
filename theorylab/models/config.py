"""TransformerConfig: every architectural switch the theory discusses, validated."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from theorylab.config import Config, format_validation_error, register_section
from theorylab.errors import ConfigError


class TransformerConfig(Config):
    """A transformer, described by its architecture and its variants.

    Sizes left as ``None`` are derived: ``d_head = d_model // n_heads``,
    ``d_mlp = 4 * d_model``, ``d_vocab_out = d_vocab``.  ``d_vocab`` and ``n_ctx`` are
    usually filled in by the task.
    """

    architecture: Literal["decoder", "encoder", "encoder_decoder"] = Field(
        "decoder", description="decoder: causal attention; encoder: every position sees every position")
    d_vocab: int | None = Field(None, gt=0, description="input vocabulary (none with input_dim)")
    d_vocab_out: int | None = Field(None, gt=0, description="output classes; none = d_vocab")
    input_dim: int | None = Field(None, gt=0, description="continuous inputs of this width instead of tokens")
    n_ctx: int = Field(256, gt=0, description="longest sequence learned positions allow")
    d_model: int = Field(128, gt=0, description="width of the residual stream")
    n_layers: int = Field(2, ge=0, description="blocks (of the encoder, for encoder_decoder)")
    n_decoder_layers: int | None = Field(None, ge=1, description="encoder_decoder only; none = n_layers")
    n_heads: int = Field(4, gt=0, description="attention heads per block")
    d_head: int | None = Field(None, gt=0, description="none = d_model // n_heads")
    d_mlp: int | None = Field(None, gt=0, description="none = 4 * d_model")
    attn_only: bool = Field(False, description="blocks without MLPs")
    act: Literal["relu", "gelu", "gelu_tanh"] = Field("gelu", description="MLP activation")
    attention: Literal["softmax", "hard_unique", "hard_average"] = Field(
        "softmax", description="softmax, or hard attention to the leftmost maximum (unique) or all maxima (average)")
    log_length_scale: bool = Field(False, description="multiply attention logits by log n (Chiang & Cholak 2022)")
    positional: Literal["none", "sinusoidal", "learned", "rotary", "alibi"] = Field(
        "learned", description="how positions enter the model")
    position_features: list[str] = Field(
        default_factory=list,
        description="named functions of (position, length) added through pos_feat.W, e.g. ['frac', 'cos_pi']",
    )
    rotary_base: float = Field(10000.0, gt=0, description="base of the rotary frequencies")
    embed_scale: Literal["auto", "sqrt_d_model", "none"] = Field(
        "auto", description="multiply the learned embeddings (W_E or the W_in read-in, W_pos, the pos_feat read-in) by "
        "sqrt(d_model) (Vaswani et al. 2017, section 3.4) so a unit-amplitude sinusoidal table does not drown them; "
        "auto = sqrt_d_model with sinusoidal positions, none (factor 1) otherwise")
    norm: Literal["layernorm", "rmsnorm", "none"] = Field("layernorm", description="normalization layers")
    norm_eps: float = Field(1e-5, ge=0, description="epsilon of the norms (0 = exact)")
    norm_position: Literal["pre", "post", "final"] = Field(
        "pre", description="pre-LN, post-LN, or 'final': no norm inside blocks, one before the unembedding")
    final_norm: bool = Field(True, description="a norm before the unembedding (pre-LN only)")
    tied_embeddings: bool = Field(False, description="the unembedding is the transposed embedding")
    bias: bool = Field(True, description="biases in attention, MLP and input projections")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout (attention patterns, block outputs, embeddings) while training")
    n_loops: int = Field(1, ge=1, description="apply the block stack this many times with shared weights")
    init_std: float = Field(0.02, gt=0, description="standard deviation of the initial weight matrices")
    init: Literal["gpt2", "normal"] = Field(
        "gpt2", description="gpt2: every weight matrix ~ N(0, init_std^2) except the residual outputs attn.W_O and "
        "mlp.W_out, whose std is divided by sqrt(2 * layers) (Radford et al. 2019, section 2.3); normal: every "
        "weight matrix ~ N(0, init_std^2) (Nanda et al. 2023's code, with init_std = 1/sqrt(d_model)); both: "
        "biases 0, norm weights 1")
    pad_token_id: int | None = Field(None, ge=0, description="a padding token id (input only, below d_vocab)")

    def __init__(self, **data: Any) -> None:
        # Built directly from Python (not through a run config): bad values are still one ConfigError line.
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, "model.")) from None

    @model_validator(mode="after")
    def _check(self) -> TransformerConfig:
        if self.d_vocab is None and self.input_dim is None:
            raise ValueError("one of d_vocab (token inputs) or input_dim (continuous inputs) is required")
        if self.d_head is None and self.d_model % self.n_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must divide d_model={self.d_model} (or set d_head explicitly)"
            )
        if self.tied_embeddings:
            if self.d_vocab is None or (self.d_vocab_out not in (None, self.d_vocab)):
                raise ValueError("tied_embeddings needs token inputs and d_vocab_out == d_vocab")
        if self.positional == "rotary" and self.head_dim % 2:
            raise ValueError(f"rotary positions need an even d_head (got {self.head_dim})")
        if self.architecture != "encoder_decoder" and self.n_decoder_layers is not None:
            raise ValueError("n_decoder_layers is for architecture=encoder_decoder only")
        if self.pad_token_id is not None and self.d_vocab is not None and self.pad_token_id >= self.d_vocab:
            raise ValueError(f"pad_token_id must be < d_vocab={self.d_vocab}")
        from theorylab.models.positions import POSITION_FEATURES

        for f in self.position_features:
            if f not in POSITION_FEATURES:
                raise ValueError(f"unknown position feature {f!r}; known: {', '.join(sorted(POSITION_FEATURES))}")
        return self

    # derived sizes
    @property
    def head_dim(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    @property
    def mlp_dim(self) -> int:
        return self.d_mlp if self.d_mlp is not None else 4 * self.d_model

    @property
    def embed_multiplier(self) -> float:
        """The factor on the learned embeddings (see ``embed_scale``): sqrt(d_model) or 1."""
        scaled = self.embed_scale == "sqrt_d_model" or (self.embed_scale == "auto" and self.positional == "sinusoidal")
        return math.sqrt(self.d_model) if scaled else 1.0

    @property
    def residual_layers(self) -> int:
        """Blocks writing to a residual stream (encoder and decoder stacks), at least 1: the ``layers`` of
        ``init = gpt2``."""
        return max(1, self.n_layers + (self.decoder_layers if self.architecture == "encoder_decoder" else 0))

    @property
    def vocab_out(self) -> int:
        return self.d_vocab_out if self.d_vocab_out is not None else int(self.d_vocab or 1)

    @property
    def causal(self) -> bool:
        return self.architecture == "decoder"

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layers if self.n_decoder_layers is not None else self.n_layers


register_section(TransformerConfig, "model")  # errors on assignment read model.<field>: ...
