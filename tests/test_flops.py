"""The FLOP counter (theorylab.models.size.flops_per_token, training_flops, non_embedding_params): hand counts
after Hoffmann et al. 2022 Appendix F (Table A4), train = 3 x forward, 6ND against the exact count, and the
matrix-multiply part against torch's own FLOP counter on built models."""

from __future__ import annotations

import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.models import Transformer, TransformerConfig
from theorylab.models.size import (
    FLOP_PARTS,
    flops_per_token,
    non_embedding_params,
    param_count,
    training_flops,
)

# d_model 32, 2 layers, 4 heads of 8, d_mlp 128, vocabulary 30, context 64
SMALL = {"d_vocab": 30, "n_ctx": 64, "d_model": 32, "n_layers": 2, "n_heads": 4, "d_mlp": 128}


def test_hand_count_decoder_without_biases():
    cfg = TransformerConfig(**SMALL, bias=False)  # pre-LN layernorm, learned positions, untied, final norm
    f = flops_per_token(cfg)
    # embedding: the lookup is a gather (0); adding W_pos[t]: 32
    assert f["embedding"] == 32
    # attention projections per layer: QKV 2*3*32*32 = 6144, output 2*32*32 = 2048 -> 8192; 2 layers
    assert f["attention_proj"] == 2 * 8192 == 16384
    # scores per layer, 64 keys per query: QK^T 2*64*32 = 4096, softmax 3*4*64 = 768, AV 2*64*32 = 4096
    assert f["attention_scores"] == 2 * (4096 + 768 + 4096) == 17920
    # MLP per layer 2*2*32*128 = 16384; 2 layers
    assert f["mlp"] == 2 * 16384 == 32768
    # logits 2*32*30
    assert f["unembedding"] == 1920
    # layernorms 7*32 = 224 each: ln1, ln2 per layer + ln_final = 5 -> 1120; residual adds 2 per layer of 32
    # -> 128; the only bias is b_U: 30
    assert f["norms/other"] == 1120 + 128 + 30 == 1278
    assert f["forward"] == 32 + 16384 + 17920 + 32768 + 1920 + 1278 == 70302
    assert f["matmul"] == 16384 + 2 * (4096 + 4096) + 32768 + 1920 == 67456
    assert f["embedding_chinchilla"] == 2 * 30 * 32 == 1920  # Table A4's one-hot lookup, not in forward
    assert f["forward"] == sum(f[k] for k in FLOP_PARTS)
    # causal mean: query t sees t+1 keys, on average 32.5 of 64: per layer 2*32.5*32*2 + 3*4*32.5 = 4550
    c = flops_per_token(cfg, keys="causal")
    assert c["attention_scores"] == 2 * 4550 and c["forward"] == 70302 - 17920 + 9100
    # a shorter context changes only the scores: n = 16 -> per layer 2*16*32*2 + 3*4*16 = 2240
    assert flops_per_token(cfg, 16)["attention_scores"] == 2 * 2240


def test_hand_count_attention_only_with_biases():
    cfg = TransformerConfig(**SMALL, attn_only=True, bias=True, norm="rmsnorm", tied_embeddings=True)
    f = flops_per_token(cfg)
    assert f["embedding"] == 32  # W_pos add
    assert f["attention_proj"] == 2 * 8192 == 16384  # as above: biases are not matmul FLOPs
    assert f["attention_scores"] == 17920
    assert f["mlp"] == 0
    assert f["unembedding"] == 1920  # tying shares the weights, not the work
    # rmsnorms 4*32 = 128 each: ln1 per layer + ln_final = 3 -> 384; one residual add per layer -> 64;
    # attention biases b_Q, b_K, b_V (3*32) and b_O (32) per layer -> 256; b_U -> 30
    assert f["norms/other"] == 384 + 64 + 256 + 30 == 734
    assert f["forward"] == 32 + 16384 + 17920 + 1920 + 734 == 36990
    assert f["backward"] == 2 * 36990 and f["train"] == 3 * 36990


@pytest.mark.parametrize("variant", [{}, {"attn_only": True}, {"architecture": "encoder_decoder"},
                                     {"positional": "rotary", "n_loops": 2}, {"d_vocab": None, "input_dim": 3}])
def test_train_is_three_forwards(variant):
    f = flops_per_token(TransformerConfig(**{**SMALL, **variant}))
    assert f["train"] == 3 * f["forward"] and f["backward"] == 2 * f["forward"]
    assert f["forward"] == pytest.approx(sum(f[k] for k in FLOP_PARTS))
    t = training_flops(TransformerConfig(**{**SMALL, **variant}), 1e6)
    assert t["exact"] == pytest.approx(3 * f["forward"] * 1e6)
    assert t["unembedding"] == pytest.approx(3 * f["unembedding"] * 1e6)


def test_non_embedding_params_are_the_blocks_and_norms():
    for variant in ({}, {"tied_embeddings": True}, {"positional": "rotary", "bias": False},
                    {"architecture": "encoder_decoder"}, {"position_features": ["frac"], "d_vocab_out": 3},
                    {"d_vocab": None, "input_dim": 4}):
        cfg = TransformerConfig(**{**SMALL, **variant})
        inner = sum(p.numel() for name, p in Transformer(cfg).named_parameters()
                    if not name.startswith(("embed.", "pos_embed.", "pos_feat.", "unembed.")))
        assert non_embedding_params(cfg) == inner, variant
    # by hand: per layer attention 4*32*32 = 4096, MLP 2*32*128 = 8192, two layernorms 2*64 = 128;
    # ln_final 64.  All: + W_E 30*32 + W_pos 64*32 + W_U 32*30 + b_U 30
    cfg = TransformerConfig(**SMALL, bias=False)
    assert non_embedding_params(cfg) == 2 * (4096 + 8192 + 128) + 64 == 24896
    assert param_count(cfg) == 24896 + 960 + 2048 + 960 + 30 == 28894


def test_6nd_agrees_where_non_embedding_params_dominate():
    big = TransformerConfig(d_vocab=64, n_ctx=128, d_model=512, n_layers=8, n_heads=8, bias=False)
    t = training_flops(big, 1e9)
    # Kaplan et al. 2020 Table 1: forward ~ 2 N + 2 n_layer n_ctx d_attn (QK^T + AV: 4 n d per layer against
    # 2 * 12 d^2 of weights), so exact / 6ND_ne ~ 1 + n_ctx / (6 d_model) = 1.042, plus the logits, the
    # softmax and the norms (under 1% here)
    ratio = t["exact"] / t["6ND_non_embedding"]
    assert 1 + 128 / (6 * 512) < ratio < 1 + 128 / (6 * 512) + 0.01
    assert t["exact"] / t["6ND"] == pytest.approx(ratio * t["non_embedding_params"] / t["params"])
    assert abs(t["exact"] / t["6ND"] - 1) < 0.05
    assert t["unembedding"] / t["exact"] < 0.002
    # at tiny scale they do not agree: the context and the vocabulary weigh
    tiny = training_flops(TransformerConfig(**SMALL, bias=False), 1e6)
    assert tiny["exact"] / tiny["6ND_non_embedding"] > 1.3
    assert tiny["6ND"] / tiny["6ND_non_embedding"] == pytest.approx(28894 / 24896)


# Variants whose every matmul runs through aten.mm/addmm/bmm at 12 positions (below FUSED_MIN_KEYS = 16, so
# attention is the explicit q @ k^T and pattern @ v) and 2 rows (below 2 * d_vocab, so no layer-0 table).
MEASURED = [{}, {"bias": False, "attn_only": True}, {"norm": "rmsnorm", "tied_embeddings": True, "positional": "rotary"},
            {"architecture": "encoder", "n_loops": 2}, {"architecture": "encoder_decoder", "n_decoder_layers": 3},
            {"d_head": 6, "d_mlp": 20, "d_vocab_out": 4}, {"n_layers": 0}]


@pytest.mark.parametrize("variant", MEASURED)
def test_matmul_flops_match_torch_flop_counter(variant):
    """torch.utils.flop_counter.FlopCounterMode counts 2 FLOPs per multiply-add of mm, addmm, bmm and the
    fused attention kernels it knows (not elementwise work, not the embedding gather): our "matmul" part.
    On a CPU the fused SDPA kernel (used from 16 keys on) is not among those it knows, hence 12 positions."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = TransformerConfig(**{"d_vocab": 30, "n_ctx": 12, "d_model": 16, "n_heads": 2, "n_layers": 2, **variant})
    model = Transformer(cfg)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 30, (2, 12), generator=g)
    kw = {"decoder_tokens": torch.randint(0, 30, (2, 12), generator=g)} if cfg.architecture == "encoder_decoder" else {}
    with FlopCounterMode(display=False) as fwd:
        model(x, **kw)
    with FlopCounterMode(display=False) as both:
        model(x, **kw).square().mean().backward()
    f = flops_per_token(cfg)
    assert fwd.get_total_flops() == f["matmul"] * x.numel()
    assert both.get_total_flops() == 3 * fwd.get_total_flops()  # backward = 2 x forward, for the matmuls exactly
    assert training_flops(cfg, x.numel())["exact"] >= both.get_total_flops()


def test_bad_arguments():
    cfg = TransformerConfig(**SMALL)
    for n in (0, -3, 2.5):
        with pytest.raises(ConfigError, match="n_ctx"):
            flops_per_token(cfg, n)
    with pytest.raises(ConfigError, match="keys"):
        flops_per_token(cfg, keys="half")
    for tokens in (-1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="tokens"):
            training_flops(cfg, tokens)
