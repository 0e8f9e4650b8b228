"""Concept-based sparse-coding prompts (Bu et al. 2024): dictionary geometry, labels,
Bayes error, OOD sets, training from the run config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.tasks.concepts import ConceptsConfig, ConceptsTask, bayes_error


def small(**kw):
    return ConceptsTask(ConceptsConfig(**{"d": 24, "K": 4, "L": 6, "n_test": 64, **kw}), seed=0)


def test_dictionary_inner_products():
    t = small()
    c = t.cfg
    w = t.word.reshape(-1, c.d)  # [K * 2, d]
    g = w @ w.T
    for k in range(c.K):
        # the two word features of a concept: positive inner product alpha^2 - beta^2
        assert g[2 * k, 2 * k + 1] == pytest.approx(c.alpha**2 - c.beta**2)
        assert g[2 * k, 2 * k] == pytest.approx(c.alpha**2 + c.beta**2)
    cross = g.copy()
    for k in range(c.K):
        cross[2 * k:2 * k + 2, 2 * k:2 * k + 2] = 0
    assert np.abs(cross).max() < 1e-12  # different concepts: orthogonal
    lab = t.label.reshape(-1, c.d)
    assert np.abs(lab @ w.T).max() < 1e-12  # label features orthogonal to word features


def test_labels_follow_the_concepts_splitting_feature():
    t = small(sigma=0.0)
    b = t.train_batch(0, 200)
    d = t.cfg.d
    x_q = b.inputs[:, -1, :d].double().numpy()
    k = b.extras["concept"].numpy()
    proj = np.einsum("nd,nd->n", x_q, t.b[k])
    # noiseless: <x_q, b_k> = +/- beta exactly (polysemous features are orthogonal to b_k)
    assert np.allclose(np.abs(proj), t.cfg.beta)
    assert np.array_equal(proj > 0, b.targets.numpy() == 1)
    # demonstrations carry their own label features; the query position carries none
    lab = b.inputs[:, :-1, d:].double().numpy()
    r = np.einsum("nld,nd->nl", lab, t.r[k])
    assert np.array_equal(r > 0, b.extras["demo_labels"].numpy() == 1)
    assert (b.inputs[:, -1, d:] == 0).all()


def test_bayes_error_matches_the_oracle_classifier():
    t = small(sigma=0.5, beta=0.6)
    b = t.sample(20000, np.random.default_rng(3))
    x_q = b.inputs[:, -1, :t.cfg.d].double().numpy()
    k = b.extras["concept"].numpy()
    oracle = np.einsum("nd,nd->n", x_q, t.b[k]) > 0
    err = float((oracle != (b.targets.numpy() == 1)).mean())
    expect = bayes_error(t.cfg)
    assert expect == pytest.approx(0.5 * math.erfc(1.2 / math.sqrt(2)))
    assert err == pytest.approx(expect, abs=0.01)
    assert bayes_error(ConceptsConfig(sigma=0.0)) == 0.0


def test_ood_sets():
    t = small()
    s = t.eval_sets()
    assert s["ood_short"].inputs.shape[1] == 3 + 1 and s["ood_long"].inputs.shape[1] == 12 + 1
    share0 = float((s["ood_skewed"].extras["concept"] == 0).double().mean())
    assert share0 > 0.55  # skew = 0.7 of 64 prompts
    # switched: demonstrations carry the next concept's label features
    sw = s["ood_switched"]
    k = sw.extras["concept"].numpy()
    lab = sw.inputs[:, :-1, t.cfg.d:].double().numpy()
    on_next = np.abs(np.einsum("nld,nd->nl", lab, t.q[(k + 1) % t.cfg.K])).mean()
    on_own = np.abs(np.einsum("nld,nd->nl", lab, t.q[k])).mean()
    assert on_next > 0.9 and on_own < 0.2


def test_bad_config():
    from theorylab.errors import ConfigError

    # built directly, a bad config is one ConfigError line like anywhere else
    with pytest.raises(ConfigError, match="^task: d must be >= 4 K"):
        ConceptsConfig(d=8, K=4)
    with pytest.raises(ConfigError, match="beta"):
        ConceptsConfig(beta=1.5)


def test_trains_from_the_preset(store):
    from theorylab.runs import build_run_config, train

    cfg = build_run_config("concepts", ["task.n_test=32", "train.steps=5", "train.eval_every=5"])
    assert cfg.model.input_dim == 64 and cfg.model.d_vocab_out == 2 and cfg.train.optimizer == "sgd"
    m = train(cfg, store, progress=False).metrics
    for split in ("test", "ood_short", "ood_long", "ood_skewed", "ood_switched"):
        assert 0 <= m[f"{split}/error01"] <= 1
    assert 0 <= m["test/attn_same_label"] <= 1
    assert torch.isfinite(torch.tensor(m["test/loss"]))


def test_config_errors_surface_as_config_errors():
    from theorylab.runs import build_run_config

    with pytest.raises(ConfigError, match="task"):
        build_run_config("concepts", ["task.d=4"])
