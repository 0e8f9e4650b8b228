"""Hugging Face interop: GPT-2-shaped theorylab models <-> ``transformers.GPT2LMHeadModel``.

Needs the ``hf`` extra (``pip install 'theorylab[hf]'``).  Everything is built locally from
configs; nothing is downloaded.  The mapping (GPT-2's ``Conv1D`` stores weights as
``[in, out]``, so ``x @ W + b``):

=============================  ==========================================================
GPT-2                          theorylab
=============================  ==========================================================
transformer.wte.weight         embed.W_E (and, tied, the unembedding)
lm_head.weight (untied)        unembed.W_U transposed
transformer.wpe.weight         pos_embed.W_pos
h.{i}.ln_1 / ln_2              blocks.{i}.ln1 / ln2 (.w, .b)
h.{i}.attn.c_attn [d, 3d]      [W_Q | W_K | W_V], each W [H, d, dh] as [d, H*dh]
h.{i}.attn.c_proj [d, d]       W_O [H, dh, d] as [H*dh, d], b_O
h.{i}.mlp.c_fc / c_proj        blocks.{i}.mlp.W_in, b_in / W_out, b_out
transformer.ln_f               ln_final
=============================  ==========================================================
"""

from __future__ import annotations

import torch

from theorylab.errors import ConfigError
from theorylab.models import Transformer, TransformerConfig

_ACT_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
_ACT_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def _transformers():
    try:
        import transformers
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("Hugging Face interop needs the 'hf' extra: pip install 'theorylab[hf]'") from None
    return transformers


def check_gpt2_shaped(cfg: TransformerConfig) -> None:
    """Raise ConfigError naming the first field that GPT-2 cannot represent."""
    need = {
        "architecture": "decoder", "positional": "learned", "norm": "layernorm", "norm_position": "pre",
        "final_norm": True, "bias": True, "attention": "softmax",
        "log_length_scale": False, "attn_only": False, "n_loops": 1, "position_features": [], "input_dim": None,
    }
    for field, value in need.items():
        if getattr(cfg, field) != value:
            raise ConfigError(f"model.{field}: GPT-2 needs {value!r} (got {getattr(cfg, field)!r})")
    if cfg.embed_multiplier != 1.0:
        raise ConfigError(f"model.embed_scale: GPT-2 adds its embeddings unscaled (got {cfg.embed_scale!r}, a factor "
                          f"of {cfg.embed_multiplier:g})")
    if cfg.act not in _ACT_TO_HF:
        raise ConfigError(f"model.act: {cfg.act!r} has no GPT-2 equivalent")
    if cfg.head_dim * cfg.n_heads != cfg.d_model:
        raise ConfigError("model.d_head: GPT-2 needs d_head = d_model / n_heads")
    if cfg.vocab_out != cfg.d_vocab:
        raise ConfigError("model.d_vocab_out: GPT-2 needs d_vocab_out == d_vocab")


def to_hf(model: Transformer, attn_implementation: str = "eager"):
    """A ``transformers.GPT2LMHeadModel`` computing the same logits as ``model``."""
    tf = _transformers()
    cfg = model.cfg
    check_gpt2_shaped(cfg)
    if model.unembed.b_U.detach().abs().max() > 0:
        raise ConfigError("unembed.b_U: GPT-2 has no output bias; it must be zero to export")
    hf_cfg = tf.GPT2Config(
        vocab_size=cfg.d_vocab, n_positions=cfg.n_ctx, n_embd=cfg.d_model, n_layer=cfg.n_layers,
        n_head=cfg.n_heads, n_inner=cfg.mlp_dim, activation_function=_ACT_TO_HF[cfg.act],
        layer_norm_epsilon=cfg.norm_eps, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout, tie_word_embeddings=cfg.tied_embeddings, bos_token_id=None, eos_token_id=None,
        pad_token_id=cfg.pad_token_id, attn_implementation=attn_implementation,
    )
    hf = tf.GPT2LMHeadModel(hf_cfg)
    d, H, dh = cfg.d_model, cfg.n_heads, cfg.head_dim
    w = {k: v.detach() for k, v in model.state_dict().items()}
    sd = {"transformer.wte.weight": w["embed.W_E"], "transformer.wpe.weight": w["pos_embed.W_pos"],
          "transformer.ln_f.weight": w["ln_final.w"], "transformer.ln_f.bias": w["ln_final.b"]}
    for i in range(cfg.n_layers):
        p, h = f"blocks.{i}.", f"transformer.h.{i}."
        sd[h + "ln_1.weight"], sd[h + "ln_1.bias"] = w[p + "ln1.w"], w[p + "ln1.b"]
        sd[h + "ln_2.weight"], sd[h + "ln_2.bias"] = w[p + "ln2.w"], w[p + "ln2.b"]
        sd[h + "attn.c_attn.weight"] = torch.cat(
            [w[p + f"attn.W_{x}"].permute(1, 0, 2).reshape(d, H * dh) for x in "QKV"], dim=1)
        sd[h + "attn.c_attn.bias"] = torch.cat([w[p + f"attn.b_{x}"].reshape(H * dh) for x in "QKV"])
        sd[h + "attn.c_proj.weight"] = w[p + "attn.W_O"].reshape(H * dh, d)
        sd[h + "attn.c_proj.bias"] = w[p + "attn.b_O"]
        sd[h + "mlp.c_fc.weight"], sd[h + "mlp.c_fc.bias"] = w[p + "mlp.W_in"], w[p + "mlp.b_in"]
        sd[h + "mlp.c_proj.weight"], sd[h + "mlp.c_proj.bias"] = w[p + "mlp.W_out"], w[p + "mlp.b_out"]
    sd["lm_head.weight"] = w["embed.W_E"] if cfg.tied_embeddings else w["unembed.W_U"].T
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith(("attn.bias", "attn.masked_bias"))]
    if missing or unexpected:  # pragma: no cover - guards against a transformers layout change
        raise ConfigError(f"GPT-2 layout mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if cfg.tied_embeddings:
        hf.tie_weights()
    return hf.to(next(model.parameters()).dtype).eval()


def from_hf(hf_model) -> Transformer:
    """A theorylab Transformer with the weights of a ``GPT2LMHeadModel``."""
    c = hf_model.config
    act = _ACT_FROM_HF.get(c.activation_function)
    if act is None:
        raise ConfigError(f"activation_function {c.activation_function!r} has no theorylab equivalent; "
                          f"allowed: {', '.join(_ACT_FROM_HF)}")
    for field, value in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                         ("add_cross_attention", False)):
        if bool(getattr(c, field, value)) != value:
            raise ConfigError(f"GPT2Config.{field}={getattr(c, field)!r}: theorylab needs {value}")
    tied = bool(getattr(c, "tie_word_embeddings", True))
    cfg = TransformerConfig(
        architecture="decoder", d_vocab=c.vocab_size, n_ctx=c.n_positions, d_model=c.n_embd, n_layers=c.n_layer,
        n_heads=c.n_head, d_mlp=c.n_inner or 4 * c.n_embd, act=act, positional="learned", norm="layernorm",
        norm_eps=c.layer_norm_epsilon, norm_position="pre", tied_embeddings=tied, bias=True,
        dropout=float(c.resid_pdrop or 0.0), pad_token_id=c.pad_token_id,
    )
    d, H, dh = cfg.d_model, cfg.n_heads, cfg.head_dim
    s = {k: v.detach() for k, v in hf_model.state_dict().items()}
    w = {"embed.W_E": s["transformer.wte.weight"], "pos_embed.W_pos": s["transformer.wpe.weight"],
         "ln_final.w": s["transformer.ln_f.weight"], "ln_final.b": s["transformer.ln_f.bias"],
         "unembed.b_U": torch.zeros(cfg.d_vocab)}
    if not tied:
        w["unembed.W_U"] = s["lm_head.weight"].T
    for i in range(cfg.n_layers):
        p, h = f"blocks.{i}.", f"transformer.h.{i}."
        w[p + "ln1.w"], w[p + "ln1.b"] = s[h + "ln_1.weight"], s[h + "ln_1.bias"]
        w[p + "ln2.w"], w[p + "ln2.b"] = s[h + "ln_2.weight"], s[h + "ln_2.bias"]
        qkv, qkv_b = s[h + "attn.c_attn.weight"], s[h + "attn.c_attn.bias"]
        for j, x in enumerate("QKV"):
            w[p + f"attn.W_{x}"] = qkv[:, j * d:(j + 1) * d].reshape(d, H, dh).permute(1, 0, 2)
            w[p + f"attn.b_{x}"] = qkv_b[j * d:(j + 1) * d].reshape(H, dh)
        w[p + "attn.W_O"] = s[h + "attn.c_proj.weight"].reshape(H, dh, d)
        w[p + "attn.b_O"] = s[h + "attn.c_proj.bias"]
        w[p + "mlp.W_in"], w[p + "mlp.b_in"] = s[h + "mlp.c_fc.weight"], s[h + "mlp.c_fc.bias"]
        w[p + "mlp.W_out"], w[p + "mlp.b_out"] = s[h + "mlp.c_proj.weight"], s[h + "mlp.c_proj.bias"]
    model = Transformer(cfg).to(s["transformer.wte.weight"].dtype)
    model.set_weights(w)
    return model.eval()
