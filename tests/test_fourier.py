"""Fourier progress measures (theorylab.measures.fourier)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theorylab.errors import TheoryLabError
from theorylab.measures import fourier as fo


@pytest.mark.parametrize("p", [3, 5, 13, 113])
def test_basis_is_orthonormal(p):
    B = fo.fourier_basis(p)
    assert B.shape == (p, p) and B.dtype == torch.float64
    assert torch.allclose(B @ B.T, torch.eye(p, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(B[0], torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64))
    x = torch.arange(p, dtype=torch.float64)
    # rows 2k-1, 2k are cos / sin of frequency k
    k = (p - 1) // 2
    assert torch.allclose(B[2 * k - 1] * B[2 * k - 1].norm().reciprocal(), B[2 * k - 1])
    cos = torch.cos(2 * math.pi * k * x / p)
    assert torch.allclose(B[2 * k - 1], cos / cos.norm(), atol=1e-12)
    assert len(fo.basis_labels(p)) == p


def test_even_modulus_rejected():
    with pytest.raises(TheoryLabError, match="odd"):
        fo.fourier_basis(8)


def _key_logits(p, freqs, coef, gen):
    """Logits that use only frequencies ``freqs`` of a+b-c, plus a per-answer constant."""
    x = torch.arange(p, dtype=torch.float64)
    a, b, c = torch.meshgrid(x, x, x, indexing="ij")
    L = torch.zeros(p, p, p, dtype=torch.float64)
    for k, s in zip(freqs, coef):
        w = 2 * math.pi * k / p
        L += s * torch.cos(w * (a + b - c)) + 0.3 * s * torch.sin(w * (a + b - c))
    return L + torch.randn(p, generator=gen, dtype=torch.float64)[None, None, :]


def test_restricted_loss_of_key_frequency_logits_equals_full_loss():
    p, keys = 13, [2, 5]
    gen = torch.Generator().manual_seed(0)
    L = _key_logits(p, keys, [4.0, 3.0], gen)
    R = fo.restricted_logits(L, keys)
    assert torch.allclose(R, L, atol=1e-10)
    assert fo.cross_entropy(R, "+", p) == pytest.approx(fo.cross_entropy(L, "+", p), abs=1e-10)
    # and excluding those frequencies leaves only the constant term
    E = fo.excluded_logits(L, keys)
    assert torch.allclose(E, L.mean(dim=(0, 1), keepdim=True).expand_as(L), atol=1e-10)
    # restricting to a different frequency loses the signal
    assert fo.cross_entropy(fo.restricted_logits(L, [1]), "+", p) > fo.cross_entropy(L, "+", p) + 0.5


def test_excluded_loss_removes_exactly_those_directions():
    p, keys = 11, [1, 4]
    gen = torch.Generator().manual_seed(1)
    L = torch.randn(p, p, p, generator=gen, dtype=torch.float64)
    E = fo.excluded_logits(L, keys)
    removed = L - E
    for k in range(1, (p - 1) // 2 + 1):
        D = fo.sum_directions(p, k)
        coef_E = torch.einsum("abc,dab->dc", E, D)
        coef_L = torch.einsum("abc,dab->dc", L, D)
        if k in keys:
            assert torch.allclose(coef_E, torch.zeros_like(coef_E), atol=1e-10)  # gone
        else:
            assert torch.allclose(coef_E, coef_L, atol=1e-10)  # untouched
    # what was removed lies in the span of the key directions
    span = sum(torch.einsum("dc,dab->abc", torch.einsum("abc,dab->dc", removed, fo.sum_directions(p, k)),
                            fo.sum_directions(p, k)) for k in keys)
    assert torch.allclose(span, removed, atol=1e-10)
    # restricted + excluded = all + constant term
    R = fo.restricted_logits(L, keys)
    assert torch.allclose(R + E, L + L.mean(dim=(0, 1), keepdim=True), atol=1e-10)


def test_directions_orthonormal():
    p = 7
    ds = torch.cat([fo.sum_directions(p, k) for k in range(1, 4)]).flatten(1)
    assert torch.allclose(ds @ ds.T, torch.eye(6, dtype=torch.float64), atol=1e-12)
    with pytest.raises(TheoryLabError, match="op"):
        fo.sum_directions(p, 1, "*")


def test_gini_definition():
    assert fo.gini(torch.ones(10)) == pytest.approx(0.0, abs=1e-12)
    for n in (2, 5, 57):
        v = torch.zeros(n)
        v[n // 2] = 3.0
        assert fo.gini(v) == pytest.approx((n - 1) / n, abs=1e-12)
    v = torch.tensor([0.1, 0.5, 2.0, 0.0])
    assert fo.gini(v) == pytest.approx(fo.gini(7 * v))  # scale-invariant
    assert fo.gini(v) == pytest.approx(fo.gini(v.flip(0)))  # order-invariant
    assert 0 < fo.gini(v) < 0.75
    with pytest.raises(TheoryLabError, match="non-negative"):
        fo.gini([1.0, -1.0])


def _model(p=13, d=32, seed=0):
    from theorylab.runs import build_model_for, build_run_config

    cfg = build_run_config("grokking", [f"task.p={p}", f"model.d_model={d}", "model.d_head=8", "model.d_mlp=64"],
                           seed=seed)
    return cfg, build_model_for(cfg)


def _embedding(p, d, amps, noise=0.0, seed=0):
    """``[p, d]`` float64: frequency k with squared norm ``amps[k]`` (cos and sin in their own columns, so
    every other frequency is exactly zero), plus ``noise`` x standard normal entries."""
    x = torch.arange(p, dtype=torch.float64)
    W = torch.zeros(p, d, dtype=torch.float64)
    for j, (k, a) in enumerate(amps.items()):
        c, s = torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)
        W[:, 2 * j] = c / c.norm() * math.sqrt(a / 2)
        W[:, 2 * j + 1] = s / s.norm() * math.sqrt(a / 2)
    if noise:
        W += noise * torch.randn(p, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return W


def _keys_of(W, p):
    return fo.select_key_frequencies(fo.frequency_norms(W, p) ** 2)


def _set_embedding(model, W):
    p = W.shape[0]
    with torch.no_grad():
        model.embed.W_E[:p] = W.to(model.embed.W_E.dtype)
    return model


def test_key_frequencies_rule():
    p, d = 31, 32
    cfg, model = _model(p, d)
    x = torch.arange(p, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    W = 0.01 * torch.randn(p, d, generator=gen, dtype=torch.float64)
    for j, k in enumerate([3, 11]):
        W[:, 2 * j] += torch.cos(2 * math.pi * k * x / p)
        W[:, 2 * j + 1] += torch.sin(2 * math.pi * k * x / p)
    assert fo.key_frequencies(_set_embedding(model, W), p) == [3, 11]
    norms = fo.frequency_norms(W, p)
    assert int(norms.argmax()) + 1 in (3, 11)
    # a random embedding has no key frequency
    _, fresh = _model(p, d, seed=1)
    assert fo.key_frequencies(fresh, p) == []


def test_key_frequencies_two_equal_keys_at_p13():
    # the issue: keys [2, 5] sharing the norm are 3x the mean of 6 frequencies each; the 4x-mean rule found []
    p = 13
    _, model = _model(p, 32)
    assert fo.key_frequencies(_set_embedding(model, _embedding(p, 32, {2: 1.0, 5: 1.0})), p) == [2, 5]
    assert _keys_of(_embedding(p, 8, {2: 1.0, 5: 1.0}), p) == [2, 5]


def test_key_frequencies_six_spread_keys_at_p47():
    # the issue: an embedding built from exactly six frequencies; the 4x-mean rule (>= 17.4% of the squared
    # norm over 23 frequencies) returned the two largest, [3, 15]
    p = 47
    amps = {3: 0.25, 7: 0.12, 11: 0.12, 15: 0.25, 19: 0.14, 22: 0.12}
    _, model = _model(p, 32)
    assert fo.key_frequencies(_set_embedding(model, _embedding(p, 32, amps)), p) == [3, 7, 11, 15, 19, 22]
    # six equal keys (3.8x the mean each: the old rule found none) and a spread over a factor 20
    assert _keys_of(_embedding(p, 12, dict.fromkeys(amps, 1.0)), p) == [3, 7, 11, 15, 19, 22]
    assert _keys_of(_embedding(p, 12, {3: 1.0, 7: 0.5, 11: 0.3, 15: 0.2, 19: 0.1, 22: 0.05}), p) == [
        3, 7, 11, 15, 19, 22]


def test_key_frequencies_few_keys_and_noise_at_p113():
    p, d = 113, 128
    amps = {14: 30.0, 35: 20.0, 41: 25.0, 42: 12.0, 52: 18.0}  # Nanda et al.'s mainline keys
    for seed in range(3):
        # noise: each frequency ~ 2 d (0.02)^2 ~ 0.1 squared norm, the keys 120x to 300x that
        W = _embedding(p, d, amps, noise=0.02, seed=seed)
        assert _keys_of(W, p) == [14, 35, 41, 42, 52]
    _, model = _model(p, d)
    assert fo.key_frequencies(_set_embedding(model, W), p) == [14, 35, 41, 42, 52]
    # one dominant key over noise
    assert _keys_of(_embedding(p, d, {17: 5.0}, noise=0.02), p) == [17]
    assert _keys_of(_embedding(p, 4, {17: 5.0}), p) == [17]


def test_select_key_frequencies_reference():
    """Against a loop over every cut: the keys are the frequencies above the deepest largest drop, when >= 4x."""

    def ref(sq, gap=fo.KEY_GAP):
        order = sorted(range(len(sq)), key=lambda i: -sq[i])
        best, cut = 0.0, None
        for m in range(len(sq) - 1):
            hi, lo = sq[order[m]], sq[order[m + 1]]
            r = hi / lo if lo > 0 else (math.inf if hi > 0 else 1.0)
            if r >= best:
                best, cut = r, hi
        if cut is None or best < gap:
            return []
        return sorted(k + 1 for k in range(len(sq)) if sq[k] >= cut)

    gen = np.random.default_rng(0)
    for trial in range(300):
        n = int(gen.integers(1, 40))
        kind = trial % 4
        if kind == 0:  # spread spectrum: log-uniform over 4 decades
            sq = list(10 ** gen.uniform(-4, 0, n))
        elif kind == 1:  # keys over a noise floor, with ties
            sq = list(gen.uniform(0.01, 0.02, n))
            for k in gen.choice(n, size=min(n, int(gen.integers(1, 6))), replace=False):
                sq[k] = float(gen.choice([1.0, 1.0, 0.5]))
        elif kind == 2:  # exact zeros
            sq = [float(v) if gen.random() < 0.3 else 0.0 for v in gen.uniform(0.1, 1, n)]
        else:  # integer values: many ties
            sq = [float(v) for v in gen.integers(0, 5, n) ** 2]
        assert fo.select_key_frequencies(sq) == ref(sq), sq
    assert fo.select_key_frequencies([0.0] * 5) == [] and fo.select_key_frequencies([1.0]) == []
    assert fo.select_key_frequencies([3.0, 3.0, 3.0]) == []  # no frequency stands out
    with pytest.raises(TheoryLabError, match="finite"):
        fo.select_key_frequencies([1.0, float("nan"), 0.1])
    with pytest.raises(TheoryLabError, match="gap"):
        fo.select_key_frequencies([1.0, 0.1], gap=1.0)


def test_measures_on_a_model():
    from theorylab.tasks import make_task

    cfg, model = _model()
    p = cfg.task.p
    L = fo.all_logits(model, p)
    tokens = torch.tensor([[2, 5, p]])
    assert torch.allclose(L[2, 5].float(), model(tokens)[0, -1], atol=1e-5)
    task = make_task(cfg.task, cfg.seed)
    m = fo.progress_measures(model, task, [1, 2])
    for k in ("train_loss", "test_loss", "restricted_loss", "excluded_loss", "gini_embed", "gini_neuron_logit",
              "weight_norm_sq"):
        assert math.isfinite(m[k])
    assert set(m["excluded_loss_per_freq"]) == {1, 2}
    assert m["train_loss"] == pytest.approx(task.metrics(model.double(), task.train_set.to("cpu", torch.float64))
                                            ["loss"], rel=1e-9)
    assert m["weight_norm_sq"] == pytest.approx(sum(float((q.detach().double() ** 2).sum()) for q in model.parameters()))
