"""The order-k Markov source: closed-form entropy rate and window optimum against Monte Carlo and brute
force, the sampler, the Bayes-optimal predictor, bad configs, and a short training run."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.tasks import build_task_config
from theorylab.tasks.markov import (
    MarkovConfig,
    MarkovTask,
    conditional_entropies,
    expected_row_entropy,
    markov_table,
    sample_windows,
    stationary_contexts,
    window_optimum,
)


def _nll_of_stream(task: MarkovTask, w: np.ndarray) -> np.ndarray:
    """-log P[context, next] of every token of the windows ``w`` that has a full context."""
    V, k = task.cfg.vocab, task.cfg.order
    c = sum(w[:, i: w.shape[1] - k + i] * V ** (k - 1 - i) for i in range(k))
    return -np.log(task.table[c, w[:, k:]])


def test_entropy_rate_matches_monte_carlo():
    task = MarkovTask(MarkovConfig(n_test=1), seed=0)
    w = sample_windows(task._cum, task._pi_cum, 2, 64, 4000, np.random.default_rng(1))
    nll = _nll_of_stream(task, w)
    se = nll.std() / math.sqrt(nll.size)  # ~0.002 nats
    assert nll.mean() == pytest.approx(task.entropy_rate, abs=5 * se)
    # the first target has one token of context: -log P(x_1 | x_0) from the stationary pair distribution
    w = sample_windows(task._cum, task._pi_cum, 2, 40_000, 2, np.random.default_rng(2))
    first = -np.log(task._short[0][w[:, 0], w[:, 1]])
    assert first.mean() == pytest.approx(task.cond[1], abs=5 * first.std() / math.sqrt(first.size))
    # the default has something to learn: the rate is well below log V (the module docstring's numbers)
    assert task.entropy_rate == pytest.approx(2.110, abs=1e-3) and math.log(16) - task.entropy_rate > 0.6
    assert task.cond[1] == pytest.approx(2.709, abs=1e-3)
    assert abs(task.entropy_rate - expected_row_entropy(16, 0.5)) < 0.05


@pytest.mark.parametrize("order", [1, 2, 3])
def test_closed_forms_match_brute_force(order):
    """Every sequence of T + 1 tokens from a 3-token chain: the joint law from pi and the table, and by the
    chain rule sum_t H(X_t | X_<t) = H(X_0..X_T) - H(X_0) = T * window_optimum."""
    V, T = 3, 4
    P = markov_table(V, order, 0.7, seed=5)
    pi = stationary_contexts(P, order)
    # pi is stationary: one step of the context chain leaves it unchanged
    step = np.zeros_like(pi)
    for c in range(V**order):
        for x in range(V):
            step[(c % V ** (order - 1)) * V + x] += pi[c] * P[c, x]
    assert np.abs(step - pi).sum() < 1e-12 and pi.sum() == pytest.approx(1.0)
    joint, first = 0.0, np.zeros(V)
    total = 0.0
    for seq in itertools.product(range(V), repeat=T + 1):
        c = sum(s * V ** (order - 1 - i) for i, s in enumerate(seq[:order]))
        p = pi[c]
        for t in range(order, T + 1):
            p *= P[c, seq[t]]
            c = (c % V ** (order - 1)) * V + seq[t]
        total += p
        joint -= p * math.log(p)
        first[seq[0]] += p
    assert total == pytest.approx(1.0)
    cond = conditional_entropies(P, pi, order)
    h0 = -(first * np.log(first)).sum()
    assert cond[0] == pytest.approx(h0, abs=1e-12)
    assert T * window_optimum(cond, T) == pytest.approx(joint - h0, abs=1e-10)
    if order == 1:  # the stationary distribution is the left eigenvector of eigenvalue 1
        w, v = np.linalg.eig(P.T)
        ev = np.real(v[:, np.argmin(np.abs(w - 1))])
        assert np.allclose(pi, ev / ev.sum(), atol=1e-12)


def test_window_optimum_formula():
    cond = np.array([2.7, 2.5, 2.0])  # order 2: H(X_0), H(X_1 | X_0), H
    assert window_optimum(cond, 64) == pytest.approx((2.5 + 63 * 2.0) / 64)
    assert window_optimum(cond, 1) == pytest.approx(2.5)
    cond3 = np.array([3.0, 2.9, 2.6, 2.2])  # order 3: the first two targets see 1 and 2 tokens
    assert window_optimum(cond3, 10) == pytest.approx((2.9 + 2.6 + 8 * 2.2) / 10)
    assert window_optimum(cond3, 1) == pytest.approx(2.9)
    assert window_optimum(np.array([1.0, 0.5]), 7) == pytest.approx(0.5)  # order 1: every target has its context
    with pytest.raises(ConfigError, match="at least one target"):
        window_optimum(cond, 0)
    task = MarkovTask(MarkovConfig(n_test=1), seed=0)
    assert task.optimal_loss() == pytest.approx((task.cond[1] + 63 * task.entropy_rate) / 64)


def test_batches_are_pure_functions_of_seed_and_step():
    task = MarkovTask(MarkovConfig(seq_len=16, n_test=4), seed=3)
    b = task.train_batch(7, 32)
    assert b.tokens.shape == b.targets.shape == (32, 16) and b.tokens.dtype == torch.int64
    assert (b.tokens[:, 1:] == b.targets[:, :-1]).all() and int(b.tokens.max()) < 16 and int(b.tokens.min()) >= 0
    assert torch.equal(task.train_batch(7, 32).tokens, b.tokens)
    assert torch.equal(MarkovTask(MarkovConfig(seq_len=16, n_test=4), seed=3).train_batch(7, 32).targets, b.targets)
    assert not torch.equal(task.train_batch(8, 32).tokens, b.tokens)
    other = MarkovTask(MarkovConfig(seq_len=16, n_test=4), seed=4)
    assert not torch.equal(other.train_batch(7, 32).tokens, b.tokens)
    assert np.array_equal(other.table, task.table)  # the source is the chain seed's, not the run's
    assert not np.array_equal(MarkovTask(MarkovConfig(chain_seed=1, n_test=1)).table, task.table)
    assert task.train_batch(0, None).tokens.shape == (32, 16)
    assert task.eval_sets()["test"].tokens.shape == (4, 16)


def test_bayes_predictor_attains_the_optimum():
    task = MarkovTask(MarkovConfig(n_test=1024), seed=0)
    test = task.eval_sets()["test"]
    m = task.metrics(task.optimal_logits, test)
    nll = -task.optimal_logits(test.tokens).gather(-1, test.targets[..., None]).squeeze(-1)
    assert m["loss"] == pytest.approx(float(nll.mean()), abs=1e-9)
    se = float(nll.std()) / math.sqrt(nll.numel())  # ~0.007 nats
    assert m["optimal_loss"] == pytest.approx(task.optimal_loss())
    assert abs(m["excess_loss"]) < 4 * se
    assert m["entropy_rate"] == task.entropy_rate
    assert m["loss_bits"] == pytest.approx(m["loss"] / math.log(2)) and m["perplexity"] == pytest.approx(
        math.exp(m["loss"]))
    assert set(m) == {"loss", "accuracy", "loss_bits", "perplexity", "entropy_rate", "optimal_loss",
                      "optimal_loss_bits", "excess_loss"}
    # a uniform guess loses log V
    assert task.metrics(lambda t: torch.zeros(*t.shape, 16), test)["loss"] == pytest.approx(math.log(16))


def test_order_three_targets_see_shorter_contexts_first():
    """Position by position, the Bayes predictor's mean loss is cond[1], cond[2], then the rate."""
    task = MarkovTask(MarkovConfig(vocab=4, order=3, concentration=0.4, seq_len=5, n_test=1), seed=0)
    b = task._windows(40_000, np.random.default_rng(9))
    nll = -task.optimal_logits(b.tokens).gather(-1, b.targets[..., None]).squeeze(-1)
    for t, want in enumerate([task.cond[1], task.cond[2], task.cond[3], task.cond[3], task.cond[3]]):
        col = nll[:, t]
        assert float(col.mean()) == pytest.approx(want, abs=5 * float(col.std()) / math.sqrt(len(col))), t
    assert task.optimal_loss() == pytest.approx((task.cond[1] + task.cond[2] + 3 * task.cond[3]) / 5)
    with pytest.raises(ConfigError, match="token ids"):
        task.optimal_logits(torch.tensor([[0, 4]]))


def test_expected_row_entropy_matches_samples():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(16, 0.5), size=20_000)
    h = -(p * np.log(np.maximum(p, 1e-300))).sum(1)
    assert h.mean() == pytest.approx(expected_row_entropy(16, 0.5), abs=5 * h.std() / math.sqrt(len(h)))
    with pytest.raises(ConfigError):
        expected_row_entropy(16, 0.0)


@pytest.mark.parametrize("field,value,needle", [
    ("vocab", 1, "task.vocab"), ("concentration", 0, "task.concentration"), ("concentration", -0.5,
                                                                               "task.concentration"),
    ("concentration", float("nan"), "task.concentration"), ("order", 0, "task.order"), ("order", 4, "task.order"),
    ("seq_len", 0, "task.seq_len"), ("n_test", 0, "task.n_test"), ("chain_seed", -1, "task.chain_seed"),
    ("vocab", 2048, "vocab\\*\\*\\(order\\+1\\)"),
])
def test_bad_configs_are_config_errors(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        build_task_config({"name": "markov", field: value})


def test_defaults_and_size_estimates():
    cfg = MarkovConfig()
    assert (cfg.vocab, cfg.order, cfg.concentration, cfg.chain_seed, cfg.seq_len, cfg.n_test) == (16, 2, 0.5, 0, 64, 256)
    assert cfg.model_defaults() == {"d_vocab": 16, "n_ctx": 64}
    task = MarkovTask(cfg, 0)
    held = sum(int(x.numel()) for x in (task.test_set.tokens, task.test_set.targets))
    assert held + task.table.size <= cfg.data_numbers() and cfg.rows_per_step() == 32


def test_training_learns_more_than_bigrams():
    """A one-layer model, a few seconds: its loss falls below the best order-1 predictor's (cond[1]), so it
    reads both context tokens, and stays above the exact optimum."""
    from theorylab.runs import build_run_config, train

    cfg = build_run_config("markov", ["task.vocab=8", "task.concentration=0.3", "task.seq_len=32", "task.n_test=64",
                                      "model.d_model=32", "model.n_layers=1", "train.steps=200", "train.eval_every=200",
                                      "train.batch_size=32", "train.lr=1e-2"])
    assert cfg.model.d_vocab == 8 and cfg.model.n_ctx == 32
    task = MarkovTask(cfg.task, cfg.seed)
    m = train(cfg, None, progress=False).metrics
    assert m["test/optimal_loss"] == pytest.approx(task.optimal_loss())
    start = math.log(8) - task.optimal_loss()  # the excess of a uniform guess, where training starts
    assert m["test/excess_loss"] < start - 0.4
    assert m["test/loss"] < task.cond[1] - 0.2
    assert m["test/excess_loss"] > -0.05


def test_cli_lists_and_trains_markov(cli):
    import json

    rc, out, _ = cli("tasks", "markov")
    assert rc == 0 and "task.concentration" in out and "task.chain_seed" in out
    rc, out, err = cli("train", "markov", "task.seq_len=8", "task.n_test=4", "model.d_model=16", "model.n_layers=1",
                       "train.steps=3", "train.eval_every=3", "train.batch_size=4", "--json")
    assert rc == 0, err
    assert json.loads(out)["run_id"].startswith("markov-")
