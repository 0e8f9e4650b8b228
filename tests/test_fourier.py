"""Fourier progress measures (theorylab.measures.fourier)."""

from __future__ import annotations

import math

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


def test_key_frequencies_rule():
    p, d = 31, 32
    cfg, model = _model(p, d)
    x = torch.arange(p, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    W = 0.01 * torch.randn(p, d, generator=gen, dtype=torch.float64)
    for j, k in enumerate([3, 11]):
        W[:, 2 * j] += torch.cos(2 * math.pi * k * x / p)
        W[:, 2 * j + 1] += torch.sin(2 * math.pi * k * x / p)
    with torch.no_grad():
        model.embed.W_E[:p] = W.float()
    assert fo.key_frequencies(model, p) == [3, 11]
    norms = fo.frequency_norms(W, p)
    assert int(norms.argmax()) + 1 in (3, 11)
    # a random embedding has no key frequency
    _, fresh = _model(p, d, seed=1)
    assert fo.key_frequencies(fresh, p) == []


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
