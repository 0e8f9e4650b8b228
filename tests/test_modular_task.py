"""Modular arithmetic: token layout, exact answers for every op, the split, minibatches."""

from __future__ import annotations

import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.tasks import IGNORE, build_task_config, make_task
from theorylab.tasks.modular import is_prime


def task(seed=0, **kw):
    return make_task(build_task_config({"name": "modular", **kw}), seed)


def test_primes():
    assert [n for n in range(30) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_every_example_has_the_right_answer(op):
    p = 13
    t = task(p=p, op=op)
    full = t.all_pairs
    a, b, eq = full.tokens.unbind(1)
    assert torch.all(eq == p)  # '=' is its own token, id p
    assert torch.all(full.targets[:, :2] == IGNORE)  # loss only at '='
    c = full.targets[:, 2]
    for x, y, z in zip(a.tolist(), b.tolist(), c.tolist()):
        if op == "+":
            assert z == (x + y) % p
        elif op == "-":
            assert z == (x - y) % p
        elif op == "*":
            assert z == (x * y) % p
        else:
            assert y != 0 and (z * y) % p == x
    assert len(full) == (p * (p - 1) if op == "/" else p * p)


def test_split_sizes_disjoint_and_seeded():
    t = task(p=11, train_fraction=0.3)
    n = 121
    assert len(t.train_set) == round(0.3 * n) and len(t.train_set) + len(t.test_set) == n
    assert not set(t.train_idx.tolist()) & set(t.test_idx.tolist())
    assert torch.equal(task(p=11, train_fraction=0.3).train_idx, t.train_idx)
    assert not torch.equal(task(seed=1, p=11, train_fraction=0.3).train_idx, t.train_idx)
    # data_seed pins the split whatever the run seed
    assert torch.equal(task(seed=1, p=11, data_seed=5).train_idx, task(seed=2, p=11, data_seed=5).train_idx)
    assert set(t.eval_sets()) == {"train", "test"}


def test_minibatches_come_from_the_train_split():
    t = task(p=11)
    train_rows = {tuple(r) for r in t.train_set.tokens.tolist()}
    b = t.train_batch(3, 5)
    assert len(b) == 5 and {tuple(r) for r in b.tokens.tolist()} <= train_rows
    assert len({tuple(r) for r in b.tokens.tolist()}) == 5  # without replacement
    assert t.train_batch(3, None) is t.train_set


def test_model_defaults():
    c = build_task_config({"name": "modular", "p": 17})
    assert c.model_defaults() == {"d_vocab": 18, "d_vocab_out": 17, "n_ctx": 3}


def test_metrics_of_a_perfect_and_a_uniform_model():
    t = task(p=11)
    batch = t.test_set
    answers = batch.targets[:, -1]

    class Oracle(torch.nn.Module):
        def forward(self, tokens, positions=None):
            logits = torch.full((len(tokens), 1, 11), -1e4)
            logits[torch.arange(len(tokens)), 0, answers[: len(tokens)]] = 1e4
            return logits

    class Uniform(torch.nn.Module):
        def forward(self, tokens, positions=None):
            return torch.zeros(len(tokens), 1, 11)

    assert t.metrics(Oracle(), batch) == {"loss": 0.0, "accuracy": 1.0}
    m = t.metrics(Uniform(), batch)
    assert m["loss"] == pytest.approx(torch.log(torch.tensor(11.0, dtype=torch.float64)).item(), rel=1e-12)


@pytest.mark.parametrize("bad,match", [({"p": 12}, "prime"), ({"p": 4099}, "less than or equal"),
                                       ({"op": "%"}, "op"), ({"train_fraction": 0}, "train_fraction")])
def test_bad_task_configs(bad, match):
    with pytest.raises(ConfigError, match=match):
        build_task_config({"name": "modular", **bad})


def test_modular_preset_learns_addition_mod_small_p():
    from theorylab.runs import build_run_config, train

    torch.set_num_threads(1)
    r = train(build_run_config("modular", ["task.p=11", "task.train_fraction=0.8", "train.steps=300",
                                           "train.eval_every=50", "train.early_stop_value=1.0"]), None,
              progress=False)
    assert r.metrics["train/accuracy"] == 1.0
    assert r.metrics["test/accuracy"] > 1 / 11  # well above chance
