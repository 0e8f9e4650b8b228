"""The transformer family: every variant's shapes and the properties the theory relies on."""

from __future__ import annotations

import math

import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.models import KVCache, TransformerConfig, build_model
from theorylab.models import transformer as T
from theorylab.models.positions import alibi_slopes, apply_rotary, rotary_cos_sin, sinusoidal_table

V = 13


def cfg(**kw):
    base = dict(d_vocab=V, n_ctx=32, d_model=24, n_heads=3, n_layers=2)
    base.update(kw)
    return TransformerConfig(**base)


def toks(b=2, t=9, seed=0):
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


VARIANTS = [
    {},
    {"positional": "none"}, {"positional": "sinusoidal"}, {"positional": "rotary"}, {"positional": "alibi"},
    {"position_features": ["frac", "cos_pi"]},
    {"norm": "rmsnorm"}, {"norm": "none"}, {"norm_position": "post"}, {"norm_position": "final"}, {"norm_eps": 0.0},
    {"act": "relu"}, {"act": "gelu_tanh"}, {"attn_only": True}, {"tied_embeddings": True},
    {"attention": "hard_unique"}, {"attention": "hard_average"}, {"log_length_scale": True},
    {"n_loops": 3}, {"bias": False}, {"d_head": 5}, {"d_vocab_out": 4}, {"architecture": "encoder"},
]


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_variant_shapes_and_finite(kw):
    m = build_model(cfg(**kw), seed=0)
    out = m(toks())
    assert out.shape == (2, 9, kw.get("d_vocab_out", V))
    assert torch.isfinite(out).all()
    out.sum().backward()


def test_continuous_inputs_and_encoder_decoder():
    m = build_model(TransformerConfig(input_dim=5, d_vocab_out=1, d_model=16, n_heads=2, n_layers=1), seed=0)
    assert m(torch.randn(3, 7, 5)).shape == (3, 7, 1)
    ed = build_model(cfg(architecture="encoder_decoder", n_decoder_layers=1), seed=0)
    out = ed(toks(2, 6), decoder_tokens=toks(2, 4, seed=1))
    assert out.shape == (2, 4, V)
    with pytest.raises(ConfigError, match="decoder_tokens"):
        ed(toks())


@pytest.mark.parametrize("kw", [{}, {"positional": "rotary"}, {"positional": "alibi"}, {"attention": "hard_unique"},
                                {"n_loops": 2}, {"log_length_scale": True}])
def test_causal_no_future_leakage(kw):
    m = build_model(cfg(**kw), seed=1).eval()
    x = toks(1, 10)
    y = x.clone()
    y[0, 6:] = (y[0, 6:] + 1) % V
    a, b = m(x), m(y)
    assert torch.allclose(a[0, :6], b[0, :6], atol=1e-6)
    assert not torch.allclose(a[0, 6:], b[0, 6:], atol=1e-6)


def test_encoder_sees_the_future():
    m = build_model(cfg(architecture="encoder"), seed=1).eval()
    x = toks(1, 10)
    y = x.clone()
    y[0, 9] = (y[0, 9] + 1) % V
    assert not torch.allclose(m(x)[0, 0], m(y)[0, 0], atol=1e-6)


def test_rope_scores_depend_only_on_offset():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)

    def score(i, j):
        cq, sq = rotary_cos_sin(torch.tensor([i]), 8, 10000.0, torch.float64)
        ck, sk = rotary_cos_sin(torch.tensor([j]), 8, 10000.0, torch.float64)
        return float((apply_rotary(q.double(), cq, sq) * apply_rotary(k.double(), ck, sk)).sum())

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-9)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-6)
    # rotation preserves norms
    cq, sq = rotary_cos_sin(torch.tensor([7]), 8, 10000.0, torch.float64)
    assert float(apply_rotary(q.double(), cq, sq).norm()) == pytest.approx(float(q.double().norm()), abs=1e-9)


def test_sinusoidal_values():
    pe = sinusoidal_table(torch.arange(50), 16, torch.float64)
    for pos, i in [(0, 0), (3, 2), (17, 5), (49, 7)]:
        ang = pos / 10000 ** (2 * i / 16)
        assert float(pe[pos, 2 * i]) == pytest.approx(math.sin(ang))
        assert float(pe[pos, 2 * i + 1]) == pytest.approx(math.cos(ang))


def test_alibi_slopes_geometric():
    s = alibi_slopes(8)
    assert float(s[0]) == pytest.approx(2 ** -1) and float(s[-1]) == pytest.approx(2 ** -8)


def _single_head(attention):
    c = TransformerConfig(d_vocab=4, n_ctx=8, d_model=4, n_heads=1, n_layers=1, attn_only=True, norm="none",
                          positional="none", architecture="encoder", attention=attention, bias=False)
    m = build_model(c, seed=0)
    # scores = (e_tok0 . query) * key(token): set W_Q/W_K so token 2 and 3 score 1, others 0
    W_Q = torch.zeros(1, 4, 4)
    W_K = torch.zeros(1, 4, 4)
    W_Q[0, :, 0] = 1.0  # every query has component 1 on dim 0
    W_K[0, 2, 0] = W_K[0, 3, 0] = 1.0
    m.set_weights({"embed.W_E": torch.eye(4), "blocks.0.attn.W_Q": W_Q * 2.0, "blocks.0.attn.W_K": W_K,
                   "blocks.0.attn.W_V": torch.eye(4)[None], "blocks.0.attn.W_O": torch.eye(4)[None]})
    return m


def test_hard_attention_argmax_and_tie_rules():
    x = torch.tensor([[0, 2, 1, 2, 3]])  # tokens 2, 2 and 3 tie for the maximum
    _, cache = _single_head("hard_unique").run_with_cache(x)
    pat = cache["blocks.0.attn.hook_pattern"][0, 0]
    assert torch.equal(pat, torch.nn.functional.one_hot(torch.full((5,), 1), 5).float())  # leftmost wins
    _, cache = _single_head("hard_average").run_with_cache(x)
    pat = cache["blocks.0.attn.hook_pattern"][0, 0]
    assert torch.allclose(pat, torch.tensor([0, 1 / 3, 0, 1 / 3, 1 / 3]).expand(5, 5))


def test_layernorm_eps0_is_exact_formula():
    m = build_model(cfg(norm_eps=0.0, n_layers=0), seed=0).double()
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    y = m.ln_final(x)
    ref = (x - x.mean(-1, keepdim=True)) / x.var(-1, unbiased=False, keepdim=True).sqrt()
    assert torch.allclose(y, ref, atol=1e-12)


def test_loop_equals_unrolled_weight_shared_stack():
    looped = build_model(cfg(n_layers=2, n_loops=3), seed=4)
    unrolled = build_model(cfg(n_layers=6), seed=0)
    w = looped.state_dict()
    sd = {}
    for k, _v in unrolled.state_dict().items():
        if k.startswith("blocks."):
            i = int(k.split(".")[1])
            sd[k] = w[k.replace(f"blocks.{i}.", f"blocks.{i % 2}.", 1)]
        else:
            sd[k] = w[k]
    unrolled.load_state_dict(sd)
    x = toks()
    assert torch.allclose(looped(x), unrolled(x), atol=1e-5)
    _, cache = looped.run_with_cache(x, names_filter=lambda n: n.endswith("hook_resid_post"))
    assert {"blocks.1.hook_resid_post#0", "blocks.1.hook_resid_post#2"} <= set(cache)


def test_hooks_cache_names_and_patching():
    m = build_model(cfg(), seed=0)
    x = toks()
    logits, cache = m.run_with_cache(x)
    for name in ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.0.attn.hook_q",
                 "blocks.0.attn.hook_k", "blocks.0.attn.hook_v", "blocks.0.attn.hook_pattern", "blocks.0.attn.hook_z",
                 "blocks.0.hook_resid_mid", "blocks.0.mlp.hook_post", "blocks.1.hook_resid_post"]:
        assert name in cache, name
    assert cache["blocks.0.attn.hook_q"].shape == (2, 9, 3, 8)
    assert cache["blocks.0.attn.hook_pattern"].shape == (2, 3, 9, 9)
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(2, 3, 9))
    assert torch.allclose(logits, m(x), atol=1e-5)  # caching (explicit path) == fused path
    # ablate the MLP of block 1: equals running with its output zeroed by hand
    ablated = m.run_with_hooks(x, fwd_hooks=[("blocks.1.hook_mlp_out", lambda t, h: torch.zeros_like(t))])
    resid_mid = cache["blocks.1.hook_resid_mid"]
    manual = m.ln_final(resid_mid) @ m.W_U + m.unembed.b_U
    assert torch.allclose(ablated, manual, atol=1e-5)
    # patch an activation from another input
    x2 = toks(seed=5)
    _, c2 = m.run_with_cache(x2)
    patched = m.run_with_hooks(x, fwd_hooks=[("blocks.1.hook_resid_post",
                                              lambda t, h: c2["blocks.1.hook_resid_post"])])
    assert torch.allclose(patched, m(x2), atol=1e-5)
    assert all(not hp.active for hp in m.hook_points.values())  # hooks removed afterwards


@pytest.mark.parametrize("kw", [{}, {"positional": "alibi"}, {"log_length_scale": True},
                                {"architecture": "encoder"}])
def test_fused_path_equals_explicit_path(kw, monkeypatch):
    m = build_model(cfg(**kw), seed=2).eval()
    x = toks(2, 20)
    monkeypatch.setattr(T, "FUSED_MIN_KEYS", 0)
    fused = m(x)
    monkeypatch.setattr(T, "FUSED_MIN_KEYS", 10**9)
    explicit = m(x)
    monkeypatch.setattr(T, "SMALL_KEYS", 10**9)
    broadcast = m(x)
    assert torch.allclose(fused, explicit, atol=1e-5) and torch.allclose(fused, broadcast, atol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"positional": "rotary"}, {"positional": "alibi"}, {"positional": "sinusoidal"}])
def test_kv_cache_incremental_equals_full(kw):
    m = build_model(cfg(**kw), seed=3).eval()
    x = toks(2, 12)
    full = m(x)
    cache = KVCache()
    parts = [m(x[:, :5], cache=cache)] + [m(x[:, i:i + 1], cache=cache) for i in range(5, 12)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_positions_argument_equals_slicing():
    m = build_model(cfg(), seed=0).eval()
    x = toks()
    assert torch.allclose(m(x, positions=slice(-1, None)), m(x)[:, -1:], atol=1e-5)
    idx = torch.tensor([0, 4])
    assert torch.allclose(m(x, positions=idx), m(x)[:, idx], atol=1e-5)


def test_dropout_off_in_eval():
    m = build_model(cfg(dropout=0.5), seed=0).eval()
    x = toks()
    assert torch.equal(m(x), m(x))


def test_set_weights_by_name_checks_shapes():
    m = build_model(cfg(), seed=0)
    m.set_weights({"blocks.0.attn.W_Q": torch.zeros(3, 24, 8)})
    assert m.weights()["blocks.0.attn.W_Q"].abs().sum() == 0
    with pytest.raises(ConfigError, match="shape"):
        m.set_weights({"blocks.0.attn.W_Q": torch.zeros(3, 24, 9)})
    with pytest.raises(ConfigError, match="no such parameter"):
        m.set_weights({"blocks.0.attn.W_X": torch.zeros(1)})


def test_clear_errors():
    with pytest.raises(Exception, match="must divide"):
        cfg(d_model=25, n_heads=3)
    m = build_model(cfg(n_ctx=8), seed=0)
    with pytest.raises(ConfigError, match="exceeds n_ctx=8"):
        m(toks(1, 9))
    with pytest.raises(ConfigError, match="token ids must lie"):
        m(torch.tensor([[V]]))
    with pytest.raises(Exception, match="rotary"):
        cfg(positional="rotary", d_head=5)


def test_final_norm_only_normalizes_before_the_unembedding():
    m = build_model(cfg(norm_position="final"), seed=0)
    assert not [n for n in m.state_dict() if ".ln1." in n or ".ln2." in n]
    x = toks()
    _, cache = m.run_with_cache(x)
    resid = cache["blocks.1.hook_resid_post"]
    assert torch.allclose(m(x), m.ln_final(resid) @ m.W_U + m.unembed.b_U, atol=1e-5)
