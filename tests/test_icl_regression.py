"""In-context linear regression: prompt layout, baselines (least squares exact on noiseless
data), and training from the run config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.tasks.icl_regression import (
    METHODS,
    IclRegressionConfig,
    IclRegressionTask,
    averaging,
    baseline_errors,
    error_by_k,
    knn,
    least_squares,
    predict,
    ridge,
    sample_prompts,
)


def test_prompts_interleave_x_and_y_and_labels_are_linear():
    task = IclRegressionTask(IclRegressionConfig(d=4, n_points=7, n_test=8), seed=0)
    b = task.train_batch(3, 10)
    xs, ys, w = b.extras["xs"], b.extras["ys"], b.extras["w"]
    assert b.inputs.shape == (10, 14, 5) and b.mask[:, 0::2].all() and not b.mask[:, 1::2].any()
    assert torch.equal(b.inputs[:, 0::2, :4], xs) and (b.inputs[:, 0::2, 4] == 0).all()
    assert torch.equal(b.inputs[:, 1::2, 4], ys) and (b.inputs[:, 1::2, :4] == 0).all()
    assert torch.allclose(ys, torch.einsum("bnd,bd->bn", xs, w), atol=1e-5)  # noiseless by default
    assert torch.equal(task.train_batch(3, 10).inputs, b.inputs)  # pure function of (seed, step)
    assert task.cfg.model_defaults()["input_dim"] == 5 and task.cfg.model_defaults()["d_vocab_out"] == 1


def test_least_squares_is_exact_on_noiseless_data_past_d():
    d, n = 5, 12
    xs, ys, clean, _ = sample_prompts(64, d, n, 0.0, np.random.default_rng(0))
    err = error_by_k(least_squares(xs, ys), clean, d)
    assert err[d:].max() < 1e-10  # d generic examples determine w
    assert err[0] == pytest.approx(float((clean[:, 0] ** 2).mean() / d))  # k = 0 predicts 0
    assert (err[1:d] > 1e-3).all()  # under-determined before d examples
    # the minimum-norm solution shrinks the error as examples come in (about 1 - k/d in expectation)
    assert err[d - 1] < err[1]


def test_baselines_on_noisy_prompts_order_as_expected():
    d, n = 5, 20
    xs, ys, clean, _ = sample_prompts(2000, d, n, 0.5, np.random.default_rng(1))
    e = baseline_errors(xs, ys, clean, lam=0.25)
    assert set(e) == set(METHODS)
    late = slice(2 * d, n)
    # ridge with lam = noise variance is Bayes-optimal: no worse than least squares
    assert e["ridge"][late].mean() <= e["least_squares"][late].mean() + 1e-3
    # least squares beats averaging and nearest neighbours once k >> d
    assert e["least_squares"][late].mean() < e["averaging"][late].mean() < 1.0
    assert e["knn"][late].mean() > e["least_squares"][late].mean()
    # least-squares excess error with k noisy examples: sigma^2 / (k - d - 1) (normalised by d)
    k = 15
    assert e["least_squares"][k] == pytest.approx(0.25 / (k - d - 1), rel=0.25)


def test_each_baseline_uses_only_earlier_examples():
    xs, ys, _, _ = sample_prompts(4, 3, 8, 0.1, np.random.default_rng(2))
    for f in (least_squares, ridge, knn, averaging):
        full = f(xs, ys)
        changed = ys.clone()
        changed[:, 5:] += 100.0  # future labels must not move predictions at k <= 5
        assert torch.allclose(f(xs, changed)[:, :6], full[:, :6])


def test_bad_input():
    with pytest.raises(ConfigError, match="method"):
        predict("oracle", torch.zeros(1, 3, 2), torch.zeros(1, 3))
    with pytest.raises(ConfigError, match=r"\[B, n, d\]"):
        least_squares(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ConfigError, match="lam"):
        ridge(torch.zeros(1, 3, 2), torch.zeros(1, 3), lam=0)


def test_trains_from_run_config_with_continuous_inputs():
    from theorylab.runs import build_run_config, train

    cfg = build_run_config("icl_regression", ["task.d=3", "task.n_points=8", "task.n_test=32", "model.d_model=16",
                                              "model.n_layers=1", "train.steps=5", "train.eval_every=5"])
    assert cfg.model.input_dim == 4 and cfg.model.d_vocab_out == 1
    m = train(cfg, None, progress=False).metrics
    for k in ("test/loss", "test/err_k0", "test/ls_err_k7", "test/err_past_d", "test/ls_err_past_d"):
        assert k in m
    assert m["test/ls_err_k7"] < 1e-8  # noiseless: least squares is exact from k = d on


def test_paired_format_asks_one_query_per_forward_pass():
    from theorylab.tasks.icl_regression import paired_inputs

    task = IclRegressionTask(IclRegressionConfig(d=3, n_points=6, n_test=8, format="paired"), seed=0)
    assert task.cfg.model_defaults() == {"input_dim": 5, "d_vocab_out": 1, "n_ctx": 6, "d_vocab": None}
    b = task.train_batch(0, 4)
    k = b.inputs.shape[1] - 1  # k examples and a query
    assert 0 <= k <= 5 and torch.equal(b.inputs[:, :k, 3], b.extras["ys"][:, :k])
    assert (b.inputs[:, -1, 3] == 0).all() and (b.inputs[:, -1, 4] == 1).all()  # the query hides its y
    xs, ys = task.test_set.extras["xs"], task.test_set.extras["ys"]
    seq = paired_inputs(xs, ys, 2)
    assert seq.shape == (8, 3, 5) and torch.equal(seq[:, 2, :3], xs[:, 2])

    class Oracle(torch.nn.Module):  # reads w from the task's extras: checks the metric plumbing
        def forward(self, x):
            return (x[..., :3] @ task.test_set.extras["w"][:, :, None])

    m = task.metrics(Oracle(), task.test_set)
    assert m["err_k0"] < 1e-10 and m["err_k5"] < 1e-10
