"""Hugging Face interop: to_hf / from_hf logits parity on random GPT-2-shaped configs."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers", reason="the 'hf' extra (transformers) is not installed")

from theorylab.errors import ConfigError  # noqa: E402
from theorylab.interop.hf import from_hf, to_hf  # noqa: E402
from theorylab.models import TransformerConfig, build_model  # noqa: E402


def gpt2_cfg(rng: torch.Generator) -> TransformerConfig:
    heads = int(torch.randint(1, 4, (1,), generator=rng))
    d_head = int(torch.randint(2, 9, (1,), generator=rng))
    return TransformerConfig(
        architecture="decoder", d_vocab=int(torch.randint(5, 60, (1,), generator=rng)), n_ctx=32,
        d_model=heads * d_head, n_heads=heads, n_layers=int(torch.randint(1, 4, (1,), generator=rng)),
        d_mlp=int(torch.randint(4, 40, (1,), generator=rng)), act="gelu_tanh", positional="learned",
        norm="layernorm", norm_position="pre", tied_embeddings=True, bias=True, init_std=0.3)


def randomize(model, rng):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "unembed.b_U":
                p.copy_(torch.randn(p.shape, generator=rng) * 0.3 + (1.0 if name.endswith(".w") else 0.0))


@pytest.mark.parametrize("seed", range(5))
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
    cfg = TransformerConfig(d_vocab=10, d_model=8, n_heads=2, positional="rotary", tied_embeddings=True,
                            act="gelu_tanh")
    with pytest.raises(ConfigError, match="model.positional"):
        to_hf(build_model(cfg, seed=0))
    cfg = TransformerConfig(d_vocab=10, d_model=8, n_heads=2, act="gelu_tanh")
    with pytest.raises(ConfigError, match="model.tied_embeddings"):
        to_hf(build_model(cfg, seed=0))
