"""The trained SUBLEQ-step task (issue 17 part 3): program families, batches, the held-out split, the rollout
measure against an oracle and a model that errs, and the per-step survival fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.measures.subleq import fit_step_survival, rollout, rollout_accuracy, subleq_gap
from theorylab.tasks import build_task_config, make_task
from theorylab.tasks.subleq import (
    SubleqState,
    SubleqStepConfig,
    add_program,
    countdown_program,
    decode,
    encode,
    fibonacci,
    fibonacci_program,
    held_out_programs,
    heldout_mask,
    multiply_program,
    negate_program,
    run,
    step,
    step_array,
)

BITS = 7


def final(prog, bits=BITS, max_steps=1000):
    trace = run(prog.state, bits, max_steps)
    assert trace[-1].halted()
    return trace


@pytest.mark.parametrize("x", [-63, -5, 0, 1, 37, 63])
def test_negate(x):
    p = negate_program(x)
    assert final(p)[-1].memory[p.result_cell] == -x


@pytest.mark.parametrize("x,y", [(0, 0), (3, 4), (-10, 7), (30, 33), (-64, 0)])
def test_add(x, y):
    p = add_program(x, y)
    t = final(p)
    assert t[-1].memory[p.result_cell] == x + y and len(t) - 1 == 3


@pytest.mark.parametrize("x,y", [(0, 5), (3, 1), (7, 9), (-4, 6), (1, 15)])
def test_multiply(x, y):
    p = multiply_program(x, y)
    t = final(p)
    assert t[-1].memory[p.result_cell] == x * y and len(t) - 1 == 3 * y


@pytest.mark.parametrize("n", [1, 2, 10, 63])
def test_countdown(n):
    p = countdown_program(n)
    t = final(p)
    assert t[-1].memory[p.result_cell] == 0 and len(t) - 1 == 2 * n - 1


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_fibonacci(n):
    p = fibonacci_program(n)
    t = final(p)
    assert [fibonacci(k) for k in range(8)] == [0, 1, 1, 2, 3, 5, 8, 13]
    assert t[-1].memory[p.result_cell] == fibonacci(2 * n) and t[-1].memory[13] == -fibonacci(2 * n + 1)
    assert len(t) - 1 == 4 * n - 1


def test_families_in_larger_memories_and_refusals():
    for p in [negate_program(5, 32, 8), add_program(50, 60, 32, 8), multiply_program(9, 13, 32, 8),
              countdown_program(100, 32, 8), fibonacci_program(5, 32, 8)]:
        assert final(p, 8)[-1].memory[p.result_cell] == p.expected
    with pytest.raises(ConfigError, match="needs 16 cells"):
        multiply_program(2, 3, cells=12)
    with pytest.raises(ConfigError, match="y must be >= 1"):
        multiply_program(2, 0)
    with pytest.raises(ConfigError, match="outside the 7-bit range"):
        countdown_program(64)
    progs = held_out_programs()
    assert {p.family for p in progs} == {"negate", "add", "multiply", "countdown", "fibonacci"}
    assert all(final(p)[-1].memory[p.result_cell] == p.expected for p in progs)
    assert {p.family for p in held_out_programs(cells=8, bits=5)} == {"countdown"}


def test_step_array_matches_the_interpreter():
    rng = np.random.default_rng(0)
    mem = rng.integers(-64, 64, (300, 16))
    pc = rng.integers(-3, 17, 300)  # halted PCs too
    nm, npc = step_array(mem, pc, BITS)
    for i in range(300):
        s = step(SubleqState(tuple(mem[i].tolist()), int(pc[i])), BITS)
        assert nm[i].tolist() == list(s.memory) and npc[i] == s.pc


def small_cfg(**kw):
    return build_task_config({"name": "subleq_step", "n_test": 64, **kw})


def test_batches_shapes_and_targets():
    cfg = small_cfg(curriculum=[[0, 1], [10, 3]])
    task = make_task(cfg, seed=3)
    assert cfg.model_defaults() == {"architecture": "encoder", "d_vocab": 128, "d_vocab_out": 128, "n_ctx": 17}
    assert cfg.instructions_at(0) == 1 and cfg.instructions_at(9) == 1 and cfg.instructions_at(10) == 3
    b = task.train_batch(5, 40)
    assert b.tokens.shape == b.targets.shape == (40, 17) and b.tokens.dtype == torch.int64
    assert b.extras["weight"].shape == (40, 17) and b.extras["kind"].tolist() == [0] * 24 + [1] * 16
    for i in range(40):
        s = decode(b.tokens[i], BITS)
        assert not s.halted()
        assert encode(step(s, BITS), BITS) == b.targets[i].tolist()
        assert b.extras["written"][i] == 1 + s.memory[s.pc + 1] % 16
    assert torch.equal(task.train_batch(5, 40).tokens, b.tokens)  # a pure function of (seed, step)
    assert not torch.equal(task.train_batch(6, 40).tokens, b.tokens)


def test_heldout_states_are_disjoint_from_training():
    cfg = small_cfg(n_test=400)
    task = make_task(cfg, seed=0)
    test_rows = {tuple(r) for r in task.test_set.tokens.tolist()}
    assert heldout_mask(task.test_set.tokens.numpy(), cfg.heldout_fraction).all()
    train_rows = {tuple(r) for s in range(20) for r in task.train_batch(s, 128).tokens.tolist()}
    assert not test_rows & train_rows
    assert not heldout_mask(np.array(sorted(train_rows)), cfg.heldout_fraction).any()
    # the mask keeps about the asked share of arbitrary states
    tok = np.random.default_rng(1).integers(0, 128, (20000, 17))
    assert abs(heldout_mask(tok, 0.0625).mean() - 0.0625) < 0.01


def test_config_refusals():
    with pytest.raises(ConfigError, match="cells"):
        small_cfg(cells=40, bits=6)
    with pytest.raises(ConfigError, match="leave a data cell"):
        small_cfg(max_instructions=6)
    with pytest.raises(ConfigError, match="curriculum"):
        small_cfg(curriculum=[[10, 2], [5, 3]])


class Oracle(torch.nn.Module):
    """The interpreter as a model: one-hot logits of the next state; ``err_at`` = (PC value, position, token
    offset) makes it wrong at one position whenever the input PC has that value."""

    def __init__(self, bits, err_at=None):
        super().__init__()
        self.bits, self.err_at = bits, err_at
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, tokens):
        half, V = 1 << (self.bits - 1), 1 << self.bits
        mem = tokens[:, 1:].numpy() - half
        pc = tokens[:, 0].numpy() - half
        nm, npc = step_array(mem, pc, self.bits)
        nxt = torch.from_numpy(np.concatenate([npc[:, None], nm], 1) + half)
        if self.err_at is not None:
            pcv, pos, off = self.err_at
            rows = torch.from_numpy(pc == pcv)
            nxt[rows, pos] = (nxt[rows, pos] + off) % V
        return torch.nn.functional.one_hot(nxt, V).float()


def test_rollout_is_exact_for_the_oracle_and_not_for_a_model_that_errs():
    progs = [countdown_program(n) for n in range(1, 9)] + [add_program(2, 3), negate_program(4)]
    r = rollout_accuracy(Oracle(BITS), progs, max_steps=200, bits=BITS)
    assert r["exact"] == 1.0 and r["n"] == 10
    assert r["by_family"]["countdown"]["max_exact_length"] == 15
    assert r["by_length"][15] == {"exact": 1.0, "n": 1}
    # wrong whenever the PC is 3 (countdown's jump back): every countdown but n = 1 (one step, PC 0) fails
    bad = rollout(Oracle(BITS, err_at=(3, 7, 1)), progs, max_steps=200, bits=BITS)
    by = {(x.family, x.operands): x for x in bad}
    assert by[("countdown", (1,))].exact and by[("countdown", (1,))].length == 1
    assert all(by[("countdown", (n,))].first_error == 2 for n in range(2, 9))
    assert by[("add", (2, 3))].first_error == 2  # its second instruction sits at 3 too
    assert by[("negate", (4,))].exact  # one step, from PC 0
    s = rollout_accuracy(Oracle(BITS, err_at=(3, 7, 1)), progs, 200, BITS)
    assert 0 < s["exact"] < 1
    # a run cut at max_steps is compared up to there and marked not halted
    cut = rollout(Oracle(BITS), [countdown_program(20)], max_steps=10, bits=BITS)[0]
    assert cut.exact and cut.length == 10 and not cut.halted
    with pytest.raises(ConfigError, match="max_steps"):
        rollout(Oracle(BITS), progs, 0, BITS)


def test_survival_fit_recovers_a_known_per_step_survival():
    rng = np.random.default_rng(0)
    a = 0.93
    L = rng.integers(1, 40, 3000)
    y = rng.random(3000) < a ** L
    fit = fit_step_survival(L, y)
    assert fit.lo < a < fit.hi and fit.hi - fit.lo < 0.02 and abs(fit.a - a) < 0.01
    allright = fit_step_survival([1, 5, 10], [True] * 3)
    assert allright.a == 1.0 and allright.hi == 1.0 and 0 < allright.lo < 1
    nothing = fit_step_survival([1, 5, 10], [False] * 3)
    assert nothing.a == 0.0 and nothing.lo == 0.0 and 0 < nothing.hi < 1
    with pytest.raises(ConfigError, match="integer >= 1"):
        fit_step_survival([0, 2], [True, False])


def test_subleq_gap_of_the_oracle():
    cfg = SubleqStepConfig(n_test=64)
    progs = [countdown_program(n) for n in (1, 5)] + [negate_program(4)]
    g = subleq_gap(Oracle(BITS), cfg, programs=progs, max_steps=50)
    assert g["single_step"]["state_accuracy"] == 1.0 and g["rollout"]["exact"] == 1.0
    assert g["fit"].a == 1.0 and g["predicted_exact"][9] == 1.0
