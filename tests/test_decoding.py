"""Decoding: greedy and beam search equal Hugging Face generate; sampling filters equal HF's warpers."""

from __future__ import annotations

import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.models import TransformerConfig, build_model
from theorylab.models.decoding import filter_logits, generate


def gpt2_model(seed, vocab=11, layers=2):
    cfg = TransformerConfig(d_vocab=vocab, n_ctx=48, d_model=16, n_heads=2, n_layers=layers, act="gelu_tanh",
                            tied_embeddings=True, init_std=0.5)
    m = build_model(cfg, seed=seed).eval()
    return m


def prompts(seed, vocab=11, b=3, t=4):
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


def test_greedy_is_argmax_chain():
    m = gpt2_model(0)
    x = prompts(0)
    out = generate(m, x, 6)
    seq = x
    for _ in range(6):
        seq = torch.cat([seq, m(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, seq)


def test_sampling_reproducible_with_generator():
    m = gpt2_model(1)
    x = prompts(1)
    a = generate(m, x, 8, strategy="sample", top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(3))
    b = generate(m, x, 8, strategy="sample", top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(3))
    c = generate(m, x, 8, strategy="sample", top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_eos_then_padding():
    m = gpt2_model(2)
    x = prompts(2)
    plain = generate(m, x, 10)
    eos = int(plain[0, 5])  # a token greedy decoding emits
    out = generate(m, x, 10, eos_token_id=eos, pad_token_id=0)
    row = out[0, 4:].tolist()
    i = row.index(eos)
    assert all(t == 0 for t in row[i + 1:])


@pytest.mark.parametrize("kw,match", [
    ({"num_beams": 0}, "num_beams"), ({"temperature": 0.0, "strategy": "sample"}, "temperature"),
    ({"top_p": 1.5}, "top_p"), ({"top_p": 0.0}, "top_p"), ({"top_k": -1}, "top_k"),
    ({"eos_token_id": 99}, "outside the vocabulary"), ({"early_stopping": "sometimes"}, "early_stopping"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ConfigError, match=match):
        generate(gpt2_model(0), prompts(0), 3, **kw)


def test_longer_than_learned_positions():
    m = gpt2_model(0)  # n_ctx 48
    assert generate(m, prompts(0, t=4), 45).shape == (3, 49)  # 48 positions fed, the last token is not
    with pytest.raises(ConfigError, match="needs 49 positions; the model learned 48"):
        generate(m, prompts(0, t=4), 46)


def test_mismatched_vocabularies():
    cfg = TransformerConfig(d_vocab=11, d_vocab_out=17, d_model=8, n_heads=2, n_layers=1)
    with pytest.raises(ConfigError, match="vocabularies do not match"):
        generate(build_model(cfg, seed=0), prompts(0), 3)
    # writing a subset of the input vocabulary (e.g. no pad token) is fine
    small = TransformerConfig(d_vocab=11, d_vocab_out=7, d_model=8, n_heads=2, n_layers=1)
    assert generate(build_model(small, seed=0), prompts(0), 3)[:, 4:].max() < 7


def test_top_k_one_sampling_is_greedy():
    m = gpt2_model(3)
    x = prompts(3)
    assert torch.equal(generate(m, x, 8, strategy="sample", top_k=1, generator=torch.Generator().manual_seed(0)),
                       generate(m, x, 8))


def test_sampling_frequencies_follow_the_filtered_distribution():
    m = gpt2_model(4)
    x = prompts(4, b=1).expand(6000, -1)
    kw = dict(temperature=0.8, top_k=6, top_p=0.9)
    out = generate(m, x, 1, strategy="sample", generator=torch.Generator().manual_seed(1), **kw)[:, -1]
    with torch.no_grad():
        p = filter_logits(m(x[:1])[:, -1], **kw).softmax(-1)[0]
    freq = torch.bincount(out, minlength=p.shape[0]).float() / out.shape[0]
    assert torch.all(freq[p == 0] == 0)
    # binomial standard error at 6000 draws is at most 0.0065: allow 4 of them
    assert (freq - p).abs().max() < 0.026


def test_length_dependent_features_decode_by_recomputing():
    cfg = TransformerConfig(d_vocab=11, n_ctx=48, d_model=16, n_heads=2, n_layers=2, positional="none",
                            position_features=["frac", "cos_pi"], init_std=0.5)
    m = build_model(cfg, seed=0).eval()
    x = prompts(0)
    seq = x
    for _ in range(6):
        seq = torch.cat([seq, m(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(generate(m, x, 6), seq)
    beams = generate(m, x, 6, num_beams=3)
    assert beams.shape == (3, 10)


def left_pad(rows, pad=0):
    T = max(len(r) for r in rows)
    x = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, T - len(r):] = torch.tensor(r)
        mask[i, T - len(r):] = 1
    return x, mask


@pytest.mark.parametrize("positional", ["learned", "sinusoidal", "rotary", "alibi", "none"])
def test_left_padded_rows_decode_as_if_alone(positional):
    cfg = TransformerConfig(d_vocab=11, n_ctx=48, d_model=16, n_heads=2, n_layers=2, positional=positional,
                            init_std=0.5)
    m = build_model(cfg, seed=1).eval()
    rows = [[3, 4, 5, 6, 7], [2, 9], [8, 1, 1, 5]]
    x, mask = left_pad(rows)
    for kw in ({}, {"num_beams": 3}):
        batch = generate(m, x, 6, attention_mask=mask, **kw)
        for i, r in enumerate(rows):
            alone = generate(m, torch.tensor([r]), 6, **kw)
            assert batch[i, x.shape[1]:].tolist() == alone[0, len(r):].tolist()


def test_position_ids_shift_learned_positions():
    m = build_model(TransformerConfig(d_vocab=11, n_ctx=16, d_model=16, n_heads=2, n_layers=2), seed=0).eval()
    x, mask = left_pad([[3, 4, 5], [6, 7, 8, 9, 10]])
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    out = m(x, attention_mask=mask, position_ids=pos)
    assert torch.allclose(out[0, 2:], m(torch.tensor([[3, 4, 5]]))[0], atol=1e-5)
    with pytest.raises(ConfigError, match="position_ids must lie"):
        m(x, position_ids=pos + 14)
    with pytest.raises(ConfigError, match="position_ids: supported"):
        alibi = build_model(TransformerConfig(d_vocab=11, d_model=16, n_heads=2, positional="alibi"), seed=0)
        alibi(x, position_ids=pos)


def test_bad_attention_masks():
    m = gpt2_model(0)
    x = prompts(0)
    right = torch.ones_like(x)
    right[0, -1] = 0
    with pytest.raises(ConfigError, match="left padding"):
        generate(m, x, 3, attention_mask=right)
    with pytest.raises(ConfigError, match="prompts' shape"):
        generate(m, x, 3, attention_mask=torch.ones(3, 2))
    feat = build_model(TransformerConfig(d_vocab=11, d_model=16, n_heads=2, position_features=["cos_pi"]), seed=0)
    left = torch.ones_like(x)
    left[0, 0] = 0
    with pytest.raises(ConfigError, match="position_features"):
        generate(feat, x, 3, attention_mask=left)


# ----------------------------------------------------------------------------- against Hugging Face

transformers = pytest.importorskip("transformers", reason="the 'hf' extra (transformers) is not installed")


def hf_generate(hf, x, attention_mask=None, **kw):
    with torch.no_grad():
        mask = torch.ones_like(x) if attention_mask is None else attention_mask
        return hf.generate(x, attention_mask=mask, do_sample=False, **kw)


@pytest.mark.parametrize("seed", range(3))
def test_greedy_equals_hf(seed):
    from theorylab.models.hf import to_hf

    m = gpt2_model(seed)
    hf = to_hf(m)
    x = prompts(seed)
    eos = int(generate(m, x, 6)[1, 6])
    ours = generate(m, x, 12, eos_token_id=eos, pad_token_id=0)
    theirs = hf_generate(hf, x, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("seed,num_beams,length_penalty,early_stopping", [
    (0, 2, 1.0, False), (1, 3, 1.0, True), (2, 4, 0.5, "never"), (3, 3, 2.0, False), (4, 2, -1.0, True),
    (5, 5, 1.0, "never"),
])
def test_beam_equals_hf(seed, num_beams, length_penalty, early_stopping):
    from theorylab.models.hf import to_hf

    m = gpt2_model(seed)
    hf = to_hf(m)
    x = prompts(seed)
    eos = int(generate(m, x, 4)[0, 5])
    kw = dict(num_beams=num_beams, length_penalty=length_penalty, early_stopping=early_stopping,
              eos_token_id=eos, pad_token_id=0)
    ours = generate(m, x, 10, **kw)
    theirs = hf_generate(hf, x, max_new_tokens=10, **kw)
    assert torch.equal(ours, theirs), (ours, theirs)
    # and without eos: runs to the length limit
    ours = generate(m, x, 6, num_beams=num_beams, length_penalty=length_penalty)
    theirs = hf_generate(hf, x, max_new_tokens=6, num_beams=num_beams, length_penalty=length_penalty,
                         pad_token_id=0)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("temperature,top_k,top_p,keep", [
    (1.0, 5, 1.0, 1), (0.7, 0, 0.8, 1), (1.3, 10, 0.5, 3), (0.5, 3, 0.95, 5), (1.0, 0, 0.1, 1),
])
def test_filters_equal_hf_warpers(temperature, top_k, top_p, keep):
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 40, generator=g)
    scores[0, :8] = scores[0, 0]  # ties at the top
    scores[1, 3] = scores[1, 7] = scores[1].max() + 1
    ids = torch.zeros(6, 1, dtype=torch.long)
    ref = TemperatureLogitsWarper(temperature)(ids, scores.clone())
    if top_k:
        ref = TopKLogitsWarper(top_k, min_tokens_to_keep=keep)(ids, ref)
    if top_p < 1.0:
        ref = TopPLogitsWarper(top_p, min_tokens_to_keep=keep)(ids, ref)
    ours = filter_logits(scores.clone(), temperature, top_k, top_p, keep)
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    assert torch.allclose(ours[~torch.isinf(ours)], ref[~torch.isinf(ref)])


@pytest.mark.parametrize("seed,kw", [(0, {}), (1, {"top_k": 5}), (2, {"top_p": 0.8, "temperature": 0.7}),
                                     (3, {"top_k": 4, "top_p": 0.6, "temperature": 1.4})])
def test_sampling_equals_hf_generate_under_the_same_seed(seed, kw):
    """HF draws with torch.multinomial from the global generator; ours from a torch.Generator seeded
    alike: the same filtered distribution gives the same tokens."""
    from theorylab.models.hf import to_hf

    m = gpt2_model(seed)
    hf = to_hf(m)
    x = prompts(seed)
    eos = int(generate(m, x, 3)[0, 5])
    ours = generate(m, x, 10, strategy="sample", eos_token_id=eos, pad_token_id=0,
                    generator=torch.Generator().manual_seed(seed), **kw)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        theirs = hf.generate(x, attention_mask=torch.ones_like(x), do_sample=True, max_new_tokens=10,
                             eos_token_id=eos, pad_token_id=0, top_k=kw.get("top_k", 0),
                             top_p=kw.get("top_p", 1.0), temperature=kw.get("temperature", 1.0))
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_several_eos_ids_equal_hf(num_beams):
    from theorylab.models.hf import to_hf

    m = gpt2_model(6)
    hf = to_hf(m)
    x = prompts(6)
    plain = generate(m, x, 8)
    eos = [int(plain[0, 6]), int(plain[2, 5])]
    ours = generate(m, x, 10, num_beams=num_beams, eos_token_id=eos, pad_token_id=0)
    theirs = hf_generate(hf, x, max_new_tokens=10, num_beams=num_beams, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(ours, theirs)


def test_beam_and_greedy_equal_hf_on_random_settings():
    """30 random draws of vocabulary, depth, batch, prompt length, beams, length penalty,
    early stopping, eos (none, one, two) and pad; all must match token for token."""
    import random

    from theorylab.models.hf import to_hf

    rnd = random.Random(0)
    for seed in range(30):
        V = rnd.choice([5, 11, 23])
        cfg = TransformerConfig(d_vocab=V, n_ctx=40, d_model=16, n_heads=2, n_layers=rnd.choice([1, 2]),
                                act="gelu_tanh", tied_embeddings=True, init_std=rnd.choice([0.3, 0.6, 1.0]))
        m = build_model(cfg, seed=seed).eval()
        hf = to_hf(m)
        x = torch.randint(0, V, (rnd.choice([1, 2, 4]), rnd.choice([1, 3, 5])),
                          generator=torch.Generator().manual_seed(seed))
        eos = rnd.choice([None, rnd.randrange(V), [rnd.randrange(V), rnd.randrange(V)]])
        kw = dict(num_beams=rnd.choice([1, 2, 3, 4, 6]), length_penalty=rnd.choice([-1.0, 0.0, 0.5, 1.0, 2.0]),
                  early_stopping=rnd.choice([True, False, "never"]), eos_token_id=eos, pad_token_id=rnd.choice([0, 1]))
        new = rnd.choice([1, 2, 7, 15])
        ours = generate(m, x, new, **kw)
        theirs = hf_generate(hf, x, max_new_tokens=new, **kw)
        assert torch.equal(ours, theirs), (seed, kw, new)


@pytest.mark.parametrize("seed", range(3))
def test_left_padded_batches_equal_hf(seed):
    from theorylab.models.hf import to_hf

    m = gpt2_model(seed)
    hf = to_hf(m)
    x, mask = left_pad([[3, 4, 5, 6, 7, 8], [2, 9, 1], [8, 1, 1, 5, 10]])
    for kw in ({}, {"num_beams": 3}, {"num_beams": 2, "eos_token_id": 3, "early_stopping": True}):
        ours = generate(m, x, 8, attention_mask=mask, pad_token_id=0, **kw)
        theirs = hf_generate(hf, x, attention_mask=mask, max_new_tokens=8, pad_token_id=0, **kw)
        assert torch.equal(ours, theirs), kw
    ours = generate(m, x, 8, attention_mask=mask, strategy="sample", top_k=4,
                    generator=torch.Generator().manual_seed(seed))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        theirs = hf.generate(x, attention_mask=mask, do_sample=True, top_k=4, max_new_tokens=8, pad_token_id=0)
    assert torch.equal(ours, theirs)
