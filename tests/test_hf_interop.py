"""Hugging Face interop: to_hf / from_hf logits parity on random GPT-2-shaped configs."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers", reason="the 'hf' extra (transformers) is not installed")

from theorylab.errors import ConfigError  # noqa: E402
from theorylab.models import TransformerConfig, build_model  # noqa: E402
from theorylab.models.hf import from_hf, to_hf  # noqa: E402


def gpt2_cfg(rng: torch.Generator) -> TransformerConfig:
    heads = int(torch.randint(1, 4, (1,), generator=rng))
    d_head = int(torch.randint(2, 9, (1,), generator=rng))
    return TransformerConfig(
        architecture="decoder", d_vocab=int(torch.randint(5, 60, (1,), generator=rng)), n_ctx=32,
        d_model=heads * d_head, n_heads=heads, n_layers=int(torch.randint(1, 4, (1,), generator=rng)),
        d_mlp=int(torch.randint(4, 40, (1,), generator=rng)),
        act=["gelu_tanh", "gelu", "relu"][int(torch.randint(0, 3, (1,), generator=rng))], positional="learned",
        norm="layernorm", norm_position="pre", tied_embeddings=bool(torch.randint(0, 4, (1,), generator=rng) > 0),
        bias=True, init_std=0.3)


def randomize(model, rng):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "unembed.b_U":
                p.copy_(torch.randn(p.shape, generator=rng) * 0.3 + (1.0 if name.endswith(".w") else 0.0))


@pytest.mark.parametrize("seed", range(8))
def test_to_hf_and_back_logits_agree(seed):
    rng = torch.Generator().manual_seed(seed)
    cfg = gpt2_cfg(rng)
    ours = build_model(cfg, seed=seed).eval()
    randomize(ours, rng)
    hf = to_hf(ours)
    x = torch.randint(0, cfg.d_vocab, (3, int(torch.randint(2, 32, (1,), generator=rng))), generator=rng)
    with torch.no_grad():
        a = ours(x)
        b = hf(x).logits
        back = from_hf(hf)
        c = back(x)
    assert (a - b).abs().max() < 1e-5
    assert (a - c).abs().max() < 1e-5
    for k, v in ours.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


def test_non_gpt2_shapes_are_refused():
    base = dict(d_vocab=10, d_model=8, n_heads=2, act="gelu_tanh", tied_embeddings=True)
    for field, value in [("positional", "rotary"), ("norm", "rmsnorm"), ("norm_position", "post"),
                         ("attention", "hard_unique"), ("n_loops", 2), ("attn_only", True), ("bias", False),
                         ("architecture", "encoder"), ("log_length_scale", True), ("embed_scale", "sqrt_d_model")]:
        with pytest.raises(ConfigError, match=f"model.{field}"):
            to_hf(build_model(TransformerConfig(**{**base, field: value}), seed=0))
    m = build_model(TransformerConfig(**base), seed=0)
    with torch.no_grad():
        m.unembed.b_U.fill_(0.1)
    with pytest.raises(ConfigError, match="unembed.b_U"):
        to_hf(m)


@pytest.mark.parametrize("act", ["gelu_new", "gelu_pytorch_tanh", "gelu", "relu"])
@pytest.mark.parametrize("tied", [True, False])
def test_from_hf_on_a_native_gpt2(act, tied):
    import transformers

    c = transformers.GPT2Config(vocab_size=23, n_positions=16, n_embd=12, n_layer=2, n_head=3,
                                activation_function=act, tie_word_embeddings=tied, bos_token_id=None,
                                eos_token_id=None, initializer_range=0.3)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # HF initialises from the global generator
        hf = transformers.GPT2LMHeadModel(c).eval()
    ours = from_hf(hf)
    assert ours.cfg.tied_embeddings == tied and ours.cfg.mlp_dim == 48
    x = torch.randint(0, 23, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (ours(x) - hf(x).logits).abs().max() < 1e-5
    with pytest.raises(ConfigError, match="learned positions"):
        ours(torch.zeros(1, 17, dtype=torch.long))


def test_padding_mask_agrees_with_hf():
    rng = torch.Generator().manual_seed(3)
    cfg = gpt2_cfg(rng)
    ours = build_model(cfg, seed=3).eval()
    randomize(ours, rng)
    hf = to_hf(ours)
    x = torch.randint(0, cfg.d_vocab, (3, 12), generator=rng)
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[0, 9:] = 0
    mask[2, 5:] = 0
    with torch.no_grad():
        a, b = ours(x, attention_mask=mask), hf(x, attention_mask=mask).logits
    real = mask.bool()
    assert (a[real] - b[real]).abs().max() < 1e-5


def test_hf_settings_that_change_the_math_are_refused():
    import transformers

    for kw, match in [({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
                      ({"scale_attn_weights": False}, "scale_attn_weights"),
                      ({"activation_function": "silu"}, "activation_function")]:
        c = transformers.GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2,
                                    bos_token_id=None, eos_token_id=None, **kw)
        with pytest.raises(ConfigError, match=match):
            from_hf(transformers.GPT2LMHeadModel(c))
