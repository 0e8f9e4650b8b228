"""The recall task: queries of L Zipf-distributed keys answered by their values; exact match against p^L."""

from __future__ import annotations

import nltk
import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.tasks import build_task_config, make_task
from theorylab.tasks.base import IGNORE
from theorylab.tasks.recall import prefix_lengths, token_edit_distance


def _task(seed=3, **kw):
    return make_task(build_task_config({"name": "recall", **kw}), seed=seed)


def test_queries_interleave_keys_and_their_values():
    t = _task(alphabet=8, answer_length=5, n_values=6, n_test=64)
    b, A = t.test_set, 8
    assert b.tokens.shape == (64, 14) and b.targets.shape == (64, 14)
    keys = b.extras["keys"]
    for i in range(5):
        assert torch.equal(b.tokens[:, 3 * i], keys[:, i] // A) and torch.equal(b.tokens[:, 3 * i + 1], keys[:, i] % A)
        truth = torch.from_numpy(t.world.table)[keys[:, i]]
        assert torch.equal(b.targets[:, 3 * i + 1], truth)  # the value is predicted where the key ends
        if i < 4:  # teacher forcing: the right value is the next input
            assert torch.equal(b.tokens[:, 3 * i + 2], A + truth)
    assert (b.targets[:, 0::3] == IGNORE).all() and (b.targets[:, 2::3] == IGNORE).all()


def test_keys_follow_the_zipf_law():
    t = _task(alphabet=6, zipf=1.0)
    draws = t.train_batch(0, 20000).extras["keys"].numpy().ravel()  # 80,000 keys
    freq = np.bincount(draws, minlength=36) / draws.size
    top = np.argsort(-t.world.probs)
    p = t.world.probs[top]
    assert p[0] / p[9] == pytest.approx(10.0)  # rank 1 ten times as frequent as rank 10
    assert np.abs(freq[top] - p).max() < 0.01
    uniform = _task(alphabet=6, zipf=0.0).world.probs
    assert np.allclose(uniform, 1 / 36)


def test_batches_are_a_function_of_seed_and_step():
    t = _task()
    assert torch.equal(t.train_batch(5, 16).tokens, _task().train_batch(5, 16).tokens)
    assert not torch.equal(t.train_batch(5, 16).tokens, t.train_batch(6, 16).tokens)
    assert t.train_batch(0, None).tokens.shape[0] == 64
    assert not np.array_equal(t.world.table, _task(seed=4).world.table)


class _Oracle(torch.nn.Module):
    """Knows the value of the keys in ``known`` ([A^2] bool) and predicts value 0 for the others."""

    def __init__(self, task, known):
        super().__init__()
        self.A, self.V = task.cfg.alphabet, task.cfg.n_values
        self.table = torch.from_numpy(task.world.table)
        self.known = torch.as_tensor(known)

    def forward(self, tokens):
        n, T = tokens.shape
        logits = torch.zeros(n, T, self.V)
        for j in range(1, T, 3):
            key = tokens[:, j - 1] * self.A + tokens[:, j]
            val = torch.where(self.known[key], self.table[key], torch.zeros_like(key))
            logits[torch.arange(n), j, val] = 5.0
        return logits


def test_an_oracle_is_perfect_and_independent_misses_give_p_to_the_L():
    t = _task(alphabet=16, answer_length=6, n_values=8, zipf=0.0, n_test=4000)
    m = t.metrics(_Oracle(t, np.ones(256, bool)), t.test_set)
    assert m["accuracy"] == 1.0 and m["exact_match"] == 1.0 and m["edit_distance"] == 0.0
    assert all(m[f"exact_match_{n}"] == 1.0 for n in (1, 2, 4))
    # a model that knows a random 80% of the keys: its answer tokens are right independently (an unknown key
    # still gets value 0 right one time in eight), so exact match is p^L within sampling error
    known = np.random.default_rng(0).random(256) < 0.8
    m = t.metrics(_Oracle(t, known), t.test_set)
    assert 0.75 < m["accuracy"] < 0.9
    assert m["exact_match"] == pytest.approx(m["accuracy"] ** 6, abs=0.03)
    assert m["p_to_the_L"] == pytest.approx(m["accuracy"] ** 6)
    assert m["exact_match_2"] == pytest.approx(m["accuracy"] ** 2, abs=0.03)
    # teacher forcing and the greedy answer agree for a model that reads only the key
    assert m["edit_distance"] == pytest.approx(6 * (1 - m["accuracy"]), abs=1e-9)


def test_metrics_of_logits_with_one_position_always_wrong():
    t = _task(alphabet=8, answer_length=4, n_values=5, n_test=128)
    b = t.test_set
    logits = torch.full((*b.tokens.shape, 5), -30.0)
    logits.scatter_(-1, b.targets.clamp_min(0).unsqueeze(-1), 30.0)
    m = t.metrics(None, b, out=logits)
    assert m["accuracy"] == 1.0 and m["exact_match"] == 1.0 and m["answer_log_prob"] == pytest.approx(0, abs=1e-9)
    logits[:, 7] = logits[:, 7].roll(1, dims=-1)  # the third answer token (position 3*2+1) always wrong
    m = t.metrics(None, b, out=logits)
    assert m["accuracy"] == 0.75 and m["exact_match"] == 0.0 and m["position_accuracy_2"] == 0.0
    assert m["exact_match_2"] == 1.0 and m["answer_log_prob"] == pytest.approx(-60.0)
    assert "edit_distance" not in m  # needs the model, to decode


def test_token_edit_distance_is_levenshtein():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 3, (300, 6)), rng.integers(0, 3, (300, 6))
    ours = token_edit_distance(a, b)
    ref = [nltk.edit_distance(list(x), list(y)) for x, y in zip(a.tolist(), b.tolist())]
    assert ours.tolist() == ref
    assert token_edit_distance(np.array([[1, 2, 3]]), np.array([[2, 3, 4]])).tolist() == [2]  # shift: not Hamming 3
    with pytest.raises(ValueError):
        token_edit_distance(np.zeros((2, 3)), np.zeros((3, 3)))


def test_prefix_lengths():
    assert prefix_lengths(8) == [1, 2, 4, 8] and prefix_lengths(6) == [1, 2, 4, 6] and prefix_lengths(1) == [1]


@pytest.mark.parametrize("bad", [{"alphabet": 1}, {"answer_length": 0}, {"n_values": 1}, {"zipf": -1},
                                 {"n_tst": 3}])
def test_bad_config_is_one_error(bad):
    with pytest.raises(ConfigError):
        build_task_config({"name": "recall", **bad})
