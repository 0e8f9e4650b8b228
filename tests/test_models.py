"""The transformer family, second part: each variant checked against its formula, encoder and
encoder-decoder use, padding, ``positions=``, and the KV cache's limits.

(tests/test_transformer.py has shapes, causal masking, RoPE, sinusoidal values, hard-attention
ties, eps=0, looping and hook caching/patching.)
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from theorylab.errors import ConfigError
from theorylab.models import KVCache, TransformerConfig, build_model
from theorylab.models import Transformer as T_Transformer
from theorylab.models.objectives import IGNORE, classification_loss, mask_tokens, masked_lm_loss, seq2seq_loss
from theorylab.models.positions import alibi_slopes

V = 13


def cfg(**kw):
    base = dict(d_vocab=V, n_ctx=32, d_model=24, n_heads=3, n_layers=2)
    base.update(kw)
    return TransformerConfig(**base)


def toks(b=2, t=9, seed=0, vocab=V):
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


def scores_of(model, x):
    _, cache = model.run_with_cache(x, names_filter=lambda n: n.endswith("hook_attn_scores"))
    return cache["blocks.0.attn.hook_attn_scores"]


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize("kw,match", [
    ({"d_model": 25, "n_heads": 3}, "n_heads=3 must divide d_model=25"),
    ({"n_heads": 0}, "model.n_heads"),
    ({"positional": "spiral"}, "model.positional"),
    ({"dropout": 1.0}, "model.dropout"),
    ({"norm_eps": -1e-5}, "model.norm_eps"),
    ({"position_features": ["nope"]}, "unknown position feature"),
    ({"tied_embeddings": True, "d_vocab_out": 4}, "tied_embeddings"),
    ({"n_decoder_layers": 2}, "encoder_decoder only"),
])
def test_impossible_configs_are_one_line_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match) as err:
        cfg(**kw)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- formulas


def test_log_length_scaling_multiplies_scores_by_log_visible_length():
    x = toks(1, 10)
    for arch, visible in [("decoder", torch.arange(1, 11).float()), ("encoder", torch.full((10,), 10.0))]:
        plain = build_model(cfg(architecture=arch), seed=0)
        scaled = build_model(cfg(architecture=arch, log_length_scale=True), seed=0)
        a, b = scores_of(plain, x), scores_of(scaled, x)
        finite = torch.isfinite(a)
        expect = a * torch.log(visible)[:, None]
        assert torch.allclose(b[finite], expect[finite], atol=1e-5)
        assert torch.equal(torch.isfinite(b), finite)


def test_alibi_adds_minus_slope_times_distance():
    x = toks(1, 7)
    plain = build_model(cfg(positional="none", n_heads=4, d_model=32), seed=0)
    alibi = build_model(cfg(positional="alibi", n_heads=4, d_model=32), seed=0)
    a, b = scores_of(plain, x), scores_of(alibi, x)
    i = torch.arange(7)
    expect = -alibi_slopes(4).float()[:, None, None] * (i[:, None] - i[None, :]).abs().float()
    finite = torch.isfinite(a[0])
    assert torch.allclose((b - a)[0][finite], expect[finite], atol=1e-5)
    assert float(alibi_slopes(4)[0]) == pytest.approx(0.25) and float(alibi_slopes(4)[3]) == pytest.approx(2 ** -8)


def test_position_features_values():
    m = build_model(cfg(positional="none", position_features=["frac", "cos_pi", "is_first", "is_last"]), seed=0)
    T = 6
    _, cache = m.run_with_cache(toks(1, T), names_filter="hook_pos_embed")
    i = torch.arange(T).float()
    feats = torch.stack([i / T, torch.cos(i * math.pi), (i == 0).float(), (i == T - 1).float()], -1)
    assert torch.allclose(cache["hook_pos_embed"], feats @ m.pos_feat.W, atol=1e-6)


@pytest.mark.parametrize("kw,scaled", [
    ({"positional": "sinusoidal"}, True),  # auto: a fixed unit-amplitude table is added
    ({"positional": "sinusoidal", "embed_scale": "none"}, False),
    ({"positional": "learned"}, False),
    ({"positional": "rotary"}, False),
    ({"positional": "alibi", "position_features": ["frac", "cos_pi"]}, False),
    ({"positional": "learned", "position_features": ["frac"], "embed_scale": "sqrt_d_model"}, True),
    ({"positional": "sinusoidal", "position_features": ["cos_pi"]}, True),
])
def test_embed_scale_multiplies_the_learned_embeddings_not_the_fixed_table(kw, scaled):
    """Vaswani et al. (2017), section 3.4: token embeddings times sqrt(d_model) beside the sinusoidal table.
    Without it, at init_std 0.02 and width 64 the table is ~35x the token embedding in norm and drowns it."""
    from theorylab.models.positions import position_features, sinusoidal_table

    m = build_model(cfg(architecture="encoder", d_model=64, n_heads=4, **kw), seed=0)
    s = math.sqrt(64) if scaled else 1.0
    assert m.cfg.embed_multiplier == s
    T = 7
    x = toks(2, T)
    _, cache = m.run_with_cache(x, names_filter=lambda n: n in ("hook_embed", "hook_pos_embed"))
    assert torch.allclose(cache["hook_embed"], s * m.embed.W_E[x], atol=1e-6)
    pos = torch.arange(T)
    pe = torch.zeros(T, 64)
    if m.cfg.positional == "sinusoidal":
        pe = pe + sinusoidal_table(pos, 64, torch.float32)  # never scaled
    if m.cfg.positional == "learned":
        pe = pe + s * m.pos_embed.W_pos[:T]
    if m.cfg.position_features:
        pe = pe + s * position_features(m.cfg.position_features, pos, T, torch.float32) @ m.pos_feat.W
    if "hook_pos_embed" in cache:
        assert torch.allclose(cache["hook_pos_embed"], pe, atol=1e-5)
    else:
        assert m.cfg.positional in ("rotary", "alibi") and not m.cfg.position_features
    if m.cfg.positional == "sinusoidal" and scaled:  # the token signal is no longer a few percent of the input
        ratio = cache["hook_embed"].norm(dim=-1).mean() / cache["hook_pos_embed"].norm(dim=-1).mean()
        assert 0.15 < float(ratio) < 0.3  # 0.02 * sqrt(64) * sqrt(64) / sqrt(32) = 0.23 (0.028 unscaled)


@pytest.mark.parametrize("kw", [
    {"init": "gpt2"},
    {"init": "normal"},
    {"init": "gpt2", "architecture": "encoder_decoder", "n_decoder_layers": 2},
    {"init": "normal", "position_features": ["frac"], "input_dim": 200},
])
def test_init_variances(kw):
    """Each weight matrix's empirical variance is within 4% of the stated one (every matrix has >= 32k entries:
    the estimate's relative sd is <= sqrt(2 / 32768) = 0.8%, so 4% is 5 sd); biases 0, norm weights 1.
    gpt2: init_std^2, and init_std^2 / (2 * layers) for attn.W_O and mlp.W_out; normal: init_std^2 everywhere.
    (pos_feat.W, one row per feature, is checked loosely.)"""
    c = TransformerConfig(**{"d_vocab": 300, "n_ctx": 128, "d_model": 256, "n_heads": 4, "n_layers": 3, "init_std": 0.05,
                             **kw})
    m = build_model(c, seed=0)
    layers = c.n_layers + (c.decoder_layers if c.architecture == "encoder_decoder" else 0)
    assert c.residual_layers == layers
    seen = set()
    for name, param in m.named_parameters():
        leaf, p = name.rsplit(".", 1)[-1], param.detach().double()
        if leaf == "w":
            assert torch.equal(p, torch.ones_like(p)), name
        elif leaf.startswith("b"):
            assert not p.any(), name
        elif name == "pos_feat.W":  # one row per feature: too few entries for a tight variance
            assert abs(float(p.std()) / c.init_std - 1) < 0.3, name
        else:
            assert p.numel() >= 2 ** 15, name
            want = c.init_std ** 2
            if leaf in ("W_O", "W_out") and c.init == "gpt2":
                want /= 2 * layers
            got = float(p.var())
            assert abs(got / want - 1) < 0.04, (name, got, want)
            assert abs(float(p.mean())) < 4 * math.sqrt(want / p.numel()), name
            seen.add(leaf)
    assert {"W_E", "W_pos", "W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_U"} <= seen


def test_rmsnorm_formula():
    m = build_model(cfg(norm="rmsnorm", norm_eps=1e-6, n_layers=0), seed=0).double()
    with torch.no_grad():
        m.ln_final.w.copy_(torch.linspace(0.5, 2, 24))
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * m.ln_final.w
    assert torch.allclose(m.ln_final(x), ref, atol=1e-12)
    assert not hasattr(m.ln_final, "b")


def _manual_block(blk, x, post, act):
    """One block written out from its named weights (softmax, causal, no positions)."""
    def ln(mod, h):
        return F.layer_norm(h, h.shape[-1:], mod.w, mod.b, 1e-5)

    def attn(h):
        q = torch.einsum("btd,hde->bhte", h, blk.attn.W_Q) + blk.attn.b_Q[None, :, None]
        k = torch.einsum("btd,hde->bhte", h, blk.attn.W_K) + blk.attn.b_K[None, :, None]
        v = torch.einsum("btd,hde->bhte", h, blk.attn.W_V) + blk.attn.b_V[None, :, None]
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        T = h.shape[1]
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        z = s.softmax(-1) @ v
        return torch.einsum("bhte,hed->btd", z, blk.attn.W_O) + blk.attn.b_O

    def mlp(h):
        return act(h @ blk.mlp.W_in + blk.mlp.b_in) @ blk.mlp.W_out + blk.mlp.b_out

    if post:
        x = ln(blk.ln1, x + attn(x))
        return ln(blk.ln2, x + mlp(x))
    x = x + attn(ln(blk.ln1, x))
    return x + mlp(ln(blk.ln2, x))


@pytest.mark.parametrize("norm_position,act,fn", [
    ("pre", "relu", F.relu), ("post", "relu", F.relu), ("pre", "gelu", F.gelu),
    ("post", "gelu_tanh", lambda h: 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))),
])
def test_block_equals_its_formula(norm_position, act, fn):
    m = build_model(cfg(positional="none", norm_position=norm_position, act=act, n_layers=1, init_std=0.3), seed=1)
    x = toks(2, 7)
    _, cache = m.run_with_cache(x, names_filter=lambda n: n.startswith("blocks.0.hook_resid_"))
    with torch.no_grad():
        ref = _manual_block(m.blocks[0], cache["blocks.0.hook_resid_pre"], norm_position == "post", fn)
    assert torch.allclose(cache["blocks.0.hook_resid_post"], ref, atol=1e-5)


def test_tied_embeddings_share_one_matrix():
    m = build_model(cfg(tied_embeddings=True), seed=0)
    assert "unembed.W_U" not in dict(m.named_parameters())
    assert m.W_U.data_ptr() == m.embed.W_E.data_ptr()
    x = toks()
    m(x).logsumexp(-1).sum().backward()
    # the unembedding's gradient reaches every row of W_E, including tokens absent from x
    absent = sorted(set(range(V)) - set(x.flatten().tolist()))
    assert absent and m.embed.W_E.grad[absent].abs().sum() > 0


def test_dropout_is_active_in_training_only():
    m = build_model(cfg(dropout=0.3), seed=0)
    x = toks()
    assert not torch.equal(m.train()(x), m(x))
    assert torch.equal(m.eval()(x), m(x))


def test_hard_attention_with_causal_mask():
    m = build_model(cfg(attention="hard_unique", positional="none", n_layers=1, n_heads=1, d_model=8), seed=0)
    with torch.no_grad():
        m.blocks[0].attn.W_Q.zero_()  # all scores equal: the leftmost visible key (position 0) wins
        m.blocks[0].attn.b_Q.zero_()
    _, cache = m.run_with_cache(toks(1, 6))
    pat = cache["blocks.0.attn.hook_pattern"][0, 0]
    assert torch.equal(pat, F.one_hot(torch.zeros(6, dtype=torch.long), 6).float())
    avg = build_model(cfg(attention="hard_average", positional="none", n_layers=1, n_heads=1, d_model=8), seed=0)
    with torch.no_grad():
        avg.blocks[0].attn.W_Q.zero_()
        avg.blocks[0].attn.b_Q.zero_()
    _, cache = avg.run_with_cache(toks(1, 6))
    pat = cache["blocks.0.attn.hook_pattern"][0, 0]
    assert torch.allclose(pat, torch.tril(torch.ones(6, 6)) / torch.arange(1, 7)[:, None])


def test_patching_queries_changes_the_pattern():
    m = build_model(cfg(), seed=0)
    x = toks(1, 5)
    zero_q = [("blocks.0.attn.hook_q", lambda t, h: torch.zeros_like(t))]
    out = m.run_with_hooks(x, fwd_hooks=zero_q)
    with m.hooks(zero_q):
        _, cache = m.run_with_cache(x, names_filter="blocks.0.attn.hook_pattern")
    pat = cache["blocks.0.attn.hook_pattern"][0]  # zero queries: uniform over the visible keys
    assert torch.allclose(pat, (torch.tril(torch.ones(5, 5)) / torch.arange(1, 6)[:, None]).expand(3, 5, 5))
    assert not torch.allclose(out, m(x))


# ----------------------------------------------------------------------------- positions= and padding


@pytest.mark.parametrize("kw", [{}, {"positional": "rotary"}, {"positional": "alibi"}, {"positional": "sinusoidal"},
                                {"attention": "hard_unique"}, {"log_length_scale": True}, {"n_loops": 2},
                                {"norm_position": "post"}, {"position_features": ["frac"]},
                                {"architecture": "encoder"}, {"n_layers": 1}])
def test_positions_argument_equals_slicing_for_every_variant(kw):
    m = build_model(cfg(**kw), seed=0).eval()
    x = toks(2, 20)  # long enough for the fused attention kernel
    full = m(x)
    for pos in (slice(-1, None), torch.tensor([0, 7, 19]), slice(3, 6)):
        assert torch.allclose(m(x, positions=pos), full[:, pos], atol=1e-5)


@pytest.mark.parametrize("arch", ["decoder", "encoder"])
def test_padding_is_invisible(arch):
    m = build_model(cfg(architecture=arch), seed=0).eval()
    x = toks(2, 20)
    mask = torch.ones(2, 20, dtype=torch.long)
    # a decoder never sees later tokens anyway, so pad it on the left; the encoder on the right
    pad = (slice(0, 5), slice(0, 8)) if arch == "decoder" else (slice(15, None), slice(12, None))
    mask[0, pad[0]] = 0
    mask[1, pad[1]] = 0
    y = x.clone()
    y[0, pad[0]] = (y[0, pad[0]] + 3) % V
    y[1, pad[1]] = (y[1, pad[1]] + 5) % V
    a, b = m(x, attention_mask=mask), m(y, attention_mask=mask)
    real = mask.bool()
    assert torch.isfinite(a).all()
    assert torch.allclose(a[real], b[real], atol=1e-5)
    assert not torch.allclose(m(x)[real], m(y)[real], atol=1e-5)  # without the mask the padding is seen
    with pytest.raises(ConfigError, match="attention_mask covers"):
        m(x, attention_mask=mask[:, :5])


# ----------------------------------------------------------------------------- encoder use


def _train(model, batch_fn, loss_fn, steps, lr=3e-3):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        loss = loss_fn(model, *batch_fn(g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_encoder_masked_lm_uses_both_sides():
    """Every row repeats one token; a masked position is recoverable from either neighbour.
    The first position has only right context, which a bidirectional encoder uses."""
    V2, T, MASK = 10, 8, 9
    m = build_model(TransformerConfig(architecture="encoder", d_vocab=V2, n_ctx=T, d_model=32, n_heads=2,
                                      n_layers=1), seed=0)

    def batch(g):
        rows = torch.randint(0, MASK, (64, 1), generator=g).expand(64, T).clone()
        return mask_tokens(rows, MASK, V2, g, mask_prob=0.3, special_ids=())

    def loss(model, inp, labels):
        return masked_lm_loss(model(inp), labels)

    _train(m, batch, loss, 150)
    g = torch.Generator().manual_seed(99)
    rows = torch.randint(0, MASK, (200, 1), generator=g).expand(200, T).clone()
    inp = rows.clone()
    inp[:, 0] = MASK  # the first position masked: only the right-hand context tells
    with torch.no_grad():
        pred = m(inp)[:, 0].argmax(-1)
    assert (pred == rows[:, 0]).float().mean() > 0.95


def test_encoder_classification_at_a_position():
    """Is token 1 anywhere in the sequence?  Read from position 0 (a [CLS]-style read-out)."""
    T = 8
    m = build_model(TransformerConfig(architecture="encoder", d_vocab=6, d_vocab_out=2, n_ctx=T, d_model=32,
                                      n_heads=2, n_layers=1), seed=0)

    def batch(g):
        x = torch.randint(2, 6, (64, T), generator=g)
        y = torch.randint(0, 2, (64,), generator=g)
        pos = torch.randint(1, T, (64,), generator=g)
        x[y == 1, pos[y == 1]] = 1
        x[:, 0] = 0  # the [CLS] token
        return x, y

    def loss(model, x, y):
        return classification_loss(model(x, positions=slice(0, 1)), y, position=0)

    _train(m, batch, loss, 200)
    x, y = batch(torch.Generator().manual_seed(5))
    with torch.no_grad():
        acc = (m(x)[:, 0].argmax(-1) == y).float().mean()
    assert acc > 0.95


# ----------------------------------------------------------------------------- encoder-decoder


def ed_model(**kw):
    return build_model(cfg(architecture="encoder_decoder", n_layers=1, n_decoder_layers=2, **kw), seed=0).eval()


def test_encoder_decoder_cross_attention_and_causal_decoder():
    m = ed_model()
    src, tgt = toks(1, 7), toks(1, 6, seed=1)
    base = m(src, decoder_tokens=tgt)
    src2 = src.clone()
    src2[0, 6] = (src2[0, 6] + 1) % V
    moved = m(src2, decoder_tokens=tgt)
    assert not torch.allclose(base[0, 0], moved[0, 0], atol=1e-6)  # every decoder row sees all of the source
    tgt2 = tgt.clone()
    tgt2[0, 4:] = (tgt2[0, 4:] + 1) % V
    later = m(src, decoder_tokens=tgt2)
    assert torch.allclose(base[0, :4], later[0, :4], atol=1e-6) and not torch.allclose(base[0, 4:], later[0, 4:])
    names = m.hook_names()
    assert "decoder_blocks.0.cross_attn.hook_pattern" in names and "decoder_blocks.1.hook_resid_cross" in names
    _, cache = m.run_with_cache(src, decoder_tokens=tgt, names_filter=lambda n: "cross_attn.hook_pattern" in n)
    assert cache["decoder_blocks.0.cross_attn.hook_pattern"].shape == (1, 3, 6, 7)


def test_encoder_decoder_source_padding_and_cache():
    m = ed_model()
    src, tgt = toks(2, 7), toks(2, 6, seed=1)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    src2 = src.clone()
    src2[1, 4:] = (src2[1, 4:] + 2) % V
    assert torch.allclose(m(src, decoder_tokens=tgt, attention_mask=mask),
                          m(src2, decoder_tokens=tgt, attention_mask=mask), atol=1e-5)
    full = m(src, decoder_tokens=tgt, attention_mask=mask)
    cache = KVCache()
    parts = [m(src, decoder_tokens=tgt[:, :2], attention_mask=mask, cache=cache)]
    parts += [m(src, decoder_tokens=tgt[:, i:i + 1], attention_mask=mask, cache=cache) for i in range(2, 6)]
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_encoder_decoder_learns_to_reverse():
    T = 5
    m = build_model(TransformerConfig(architecture="encoder_decoder", d_vocab=8, n_ctx=T + 1, d_model=48,
                                      n_heads=4, n_layers=1, n_decoder_layers=1), seed=0)
    BOS = 7

    def batch(g):
        src = torch.randint(0, 7, (64, T), generator=g)
        tgt = src.flip(1)
        dec_in = torch.cat([torch.full((64, 1), BOS), tgt[:, :-1]], 1)
        return src, dec_in, tgt

    def loss(model, src, dec_in, tgt):
        return seq2seq_loss(model(src, decoder_tokens=dec_in), tgt)

    _train(m, batch, loss, 250, lr=5e-3)
    src, dec_in, tgt = batch(torch.Generator().manual_seed(7))
    with torch.no_grad():
        acc = (m(src, decoder_tokens=dec_in).argmax(-1) == tgt).float().mean()
    assert acc > 0.9
    assert seq2seq_loss(torch.zeros(1, 2, 8), torch.tensor([[3, IGNORE]])).item() == pytest.approx(math.log(8))


# ----------------------------------------------------------------------------- KV cache limits


def test_length_dependent_features_refuse_the_cache():
    m = build_model(cfg(position_features=["frac"]), seed=0).eval()
    assert not m.supports_kv_cache
    cache = KVCache()
    m(toks(1, 4), cache=cache)
    with pytest.raises(ConfigError, match="depend on the sequence length"):
        m(toks(1, 1), cache=cache)
    assert build_model(cfg(position_features=["cos_pi", "is_first"]), seed=0).supports_kv_cache


def test_kv_cache_with_loops_and_log_length():
    m = build_model(cfg(n_loops=2, log_length_scale=True, positional="rotary"), seed=3).eval()
    x = toks(2, 12)
    cache = KVCache()
    parts = [m(x[:, :4], cache=cache)] + [m(x[:, i:i + 1], cache=cache) for i in range(4, 12)]
    assert torch.allclose(torch.cat(parts, 1), m(x), atol=1e-5)


# ----------------------------------------------------------------------------- devices and user features


@pytest.mark.parametrize("kw", [{}, {"positional": "sinusoidal"}, {"positional": "rotary"}, {"positional": "alibi"},
                                {"position_features": ["frac", "cos_pi"]}, {"attention": "hard_average"},
                                {"log_length_scale": True}, {"n_loops": 2}, {"architecture": "encoder"},
                                {"architecture": "encoder", "log_length_scale": True, "positional": "alibi"}])
def test_every_tensor_follows_the_model_device(kw):
    """On the meta device any table built on the CPU (positions, masks, slopes) raises at once,
    standing in for a GPU this test machine lacks."""
    c = TransformerConfig(input_dim=5, d_vocab_out=7, n_ctx=32, d_model=24, n_heads=3, n_layers=2, **kw)
    with torch.device("meta"):
        m = T_Transformer(c)
    for T in (3, 20):  # the explicit and the fused attention paths
        x = torch.randn(2, T, 5, device="meta")
        assert m(x).device.type == "meta"
        assert m(x, positions=slice(-1, None), attention_mask=torch.ones(2, T, device="meta")).shape == (2, 1, 7)


def test_user_position_feature():
    from theorylab.models.positions import LENGTH_DEPENDENT, POSITION_FEATURES, register_position_feature

    @register_position_feature("test_half_n", uses_length=True)
    def _half_n(i, n):
        return torch.full_like(i, n / 2)

    try:
        m = build_model(cfg(positional="none", position_features=["test_half_n"]), seed=0)
        _, cache = m.run_with_cache(toks(1, 6), names_filter="hook_pos_embed")
        assert torch.allclose(cache["hook_pos_embed"], 3.0 * m.pos_feat.W.expand(6, -1))
        assert not m.supports_kv_cache
    finally:
        POSITION_FEATURES.pop("test_half_n")
        LENGTH_DEPENDENT.discard("test_half_n")


# ----------------------------------------------------------------------------- more causal variants, RoPE, eps=0


@pytest.mark.parametrize("kw", [{"attention": "hard_average"}, {"positional": "sinusoidal"}, {"norm_position": "post"},
                                {"norm": "rmsnorm"}, {"attn_only": True}, {"position_features": ["cos_pi", "frac"]},
                                {"n_loops": 3, "positional": "rotary"}])
def test_no_future_leakage_more_variants(kw):
    m = build_model(cfg(**kw), seed=1).eval()
    for T in (20, 6):  # the fused attention kernel, then the explicit path
        x = toks(2, T)
        y = x.clone()
        y[:, T // 2:] = (y[:, T // 2:] + 1) % V
        a, b = m(x), m(y)
        assert torch.allclose(a[:, :T // 2], b[:, :T // 2], atol=1e-6)
        assert not torch.allclose(a[:, T // 2:], b[:, T // 2:], atol=1e-6)


def test_rope_model_scores_depend_on_offset_only():
    """Equal tokens give every position the same query and key before rotation, so the first
    layer's scores form a Toeplitz matrix: score(i, j) depends on i - j alone."""
    m = build_model(cfg(positional="rotary", architecture="encoder", n_layers=1), seed=0)
    s = scores_of(m, torch.full((1, 12), 4))[0]  # [H, T, T]
    for d in range(-11, 12):
        diag = torch.diagonal(s, offset=d, dim1=-2, dim2=-1)
        assert torch.allclose(diag, diag[:, :1].expand_as(diag), atol=1e-5)
    assert not torch.allclose(torch.diagonal(s, 1, -2, -1)[:, 0], torch.diagonal(s, 3, -2, -1)[:, 0])


def test_eps0_layernorm_normalizes_tiny_residuals():
    """eps = 0 keeps the normalization exact even when the residual's variance is far below eps
    (the behaviour Chiang & Cholak's constructions rely on); eps = 1e-5 shrinks it."""
    x = 1e-4 * torch.randn(1, 3, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = build_model(cfg(norm_eps=0.0, n_layers=0), seed=0).double().ln_final(x)
    damped = build_model(cfg(norm_eps=1e-5, n_layers=0), seed=0).double().ln_final(x)
    assert torch.allclose(exact.pow(2).mean(-1), torch.ones(1, 3, dtype=torch.float64), atol=1e-10)
    assert damped.pow(2).mean(-1).max() < 0.01


@pytest.mark.parametrize("kw", [
    {},
    {"positional": "none", "norm": "none", "bias": False, "attn_only": True},
    {"positional": "sinusoidal", "n_layers": 2},
    {"positional": "rotary", "norm": "rmsnorm"},
    {"positional": "alibi", "norm_position": "post"},
    {"architecture": "encoder", "positional": "sinusoidal"},
    {"n_loops": 2, "log_length_scale": True},
    {"position_features": ["frac", "is_first"]},
    {"attention": "hard_average"},
])
@pytest.mark.parametrize("positions", [None, slice(-1, None)])
def test_first_block_table_equals_the_plain_path(kw, positions):
    """A small vocabulary and a large batch take the (token, position) table path in the first block;
    outputs and every gradient equal the plain path (forced by attaching a hook) to float64 rounding."""
    if positions is not None and kw.get("architecture") == "encoder":
        pytest.skip("positions= selects decoder rows")
    cfg = TransformerConfig(d_vocab=5, n_ctx=12, d_model=16, n_heads=2, n_layers=kw.pop("n_layers", 1), **kw)
    model = build_model(cfg, seed=3).double()
    x = torch.randint(0, 5, (40, 7), generator=torch.Generator().manual_seed(1))
    assert model._layer0_table(x, torch.arange(7), 7) is not None
    out = model(x, positions=positions)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()), allow_unused=True)
    with model.hooks([("hook_embed", lambda t, hook: None)]):  # any hook turns the table off
        assert model._layer0_table(x, torch.arange(7), 7) is None
        ref = model(x, positions=positions)
        ref_grads = torch.autograd.grad(ref.square().sum(), list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        if r is None:
            assert g is None or not g.abs().any(), name
        else:
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-11, msg=name)


def test_first_block_table_is_skipped_when_it_would_not_save_work():
    model = build_model(TransformerConfig(d_vocab=50, n_ctx=8, d_model=16, n_heads=2), seed=0)
    assert model._layer0_table(torch.zeros(20, 4, dtype=torch.long), torch.arange(4), 4) is None  # 2V > B
    x = torch.zeros(2, 4, 3)
    cont = build_model(TransformerConfig(input_dim=3, n_ctx=8, d_model=16, n_heads=2), seed=0)
    assert cont._layer0_table(x, torch.arange(4), 4) is None
