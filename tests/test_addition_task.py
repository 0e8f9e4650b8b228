"""The addition task: d-digit operands, an answer of d + 1 tokens, per-token accuracy beside exact match."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.tasks import build_task_config, make_task
from theorylab.tasks.addition import EQUALS, PLUS, digits_of
from theorylab.tasks.base import IGNORE


def _task(**kw):
    return make_task(build_task_config({"name": "addition", **kw}), seed=3)


def _number(digs) -> int:
    return int("".join(str(int(x)) for x in digs))


@pytest.mark.parametrize("reverse", [True, False])
def test_examples_hold_the_sum(reverse):
    t = _task(digits=4, reverse_answer=reverse, n_test=64)
    b = t.test_set
    assert b.tokens.shape == (64, 2 * 4 + 2 + 5 - 1) and b.targets.shape == b.tokens.shape
    assert (b.tokens[:, 4] == PLUS).all() and (b.tokens[:, 9] == EQUALS).all()
    assert (b.targets[:, :-5] == IGNORE).all() and (b.targets[:, -5:] >= 0).all()
    for i in range(64):
        a, c = int(b.extras["a"][i]), int(b.extras["b"][i])
        assert _number(b.tokens[i, :4]) == a and _number(b.tokens[i, 5:9]) == c
        ans = b.targets[i, -5:].tolist()
        assert _number(ans[::-1] if reverse else ans) == a + c
        # teacher forcing: the answer tokens after the first are also inputs, shifted by one
        assert b.tokens[i, -4:].tolist() == ans[:-1]


def test_digits_of_keeps_leading_zeros():
    assert digits_of(np.array([7, 1234]), 4).tolist() == [[0, 0, 0, 7], [1, 2, 3, 4]]


def test_batches_are_a_function_of_seed_and_step():
    t = _task(digits=3)
    assert torch.equal(t.train_batch(5, 16).tokens, _task(digits=3).train_batch(5, 16).tokens)
    assert not torch.equal(t.train_batch(5, 16).tokens, t.train_batch(6, 16).tokens)
    assert t.train_batch(0, None).tokens.shape[0] == 64


def test_metrics_of_a_perfect_and_a_one_digit_wrong_model():
    t = _task(digits=2, n_test=128)
    b = t.test_set
    logits = torch.full((*b.tokens.shape, 10), -30.0)
    tgt = b.targets.clamp_min(0)
    logits.scatter_(-1, tgt.unsqueeze(-1), 30.0)
    m = t.metrics(None, b, out=logits)
    assert m["accuracy"] == 1.0 and m["exact_match"] == 1.0 and m["answer_log_prob"] == pytest.approx(0, abs=1e-9)
    # the first answer digit always wrong: per-token accuracy 2/3, exact match 0
    wrong = logits.clone()
    wrong[:, -3] = torch.roll(wrong[:, -3], 1, dims=-1)
    m = t.metrics(None, b, out=wrong)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["exact_match"] == 0.0 and m["digit_accuracy_0"] == 0.0
    assert m["answer_log_prob"] < -50 and math.isfinite(m["loss"])


def test_bad_config():
    with pytest.raises(ConfigError, match="digits"):
        _task(digits=0)


def test_trains_from_the_cli(cli):
    import json

    rc, out, err = cli("train", "addition", "task.digits=2", "model.n_layers=1", "model.d_model=32",
                       "model.n_heads=2", "train.steps=150", "train.eval_every=150", "--json")
    assert rc == 0, err
    m = json.loads(out)["metrics"]
    assert m["test/accuracy"] > 0.2 and 0 <= m["test/exact_match"] <= m["test/accuracy"]
