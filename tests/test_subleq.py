"""SUBLEQ (issue 17 part 1): the reference interpreter and program files, and the looped transformer of
Giannou et al. (2023) checked against the interpreter step by step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from theorylab.constructions.subleq import (
    compare_traces,
    decode,
    encode,
    exact_loops,
    loop_once,
    looped_subleq,
    min_exact_sharpness,
    random_programs,
    random_states,
    run_looped,
)
from theorylab.errors import ConfigError
from theorylab.tasks.subleq import SubleqState, load_program, parse_program, run, step, wrap

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "subleq"
# (file, cells, {cell: expected value}, steps)
PROGRAMS = [
    ("add.sq", 32, {10: 42, 9: 25}, 3),
    ("negate.sq", 32, {10: -37, 9: 37}, 3),
    ("countdown.sq", 32, {12: 0, 13: 10}, 30),
    ("multiply.sq", 32, {20: 117, 19: 0, 18: 9}, 65),
    ("bubble_sort.sq", 128, {66: -7, 67: 15, 68: 42}, 17),
]


@pytest.fixture(scope="module")
def model():
    return looped_subleq()


def _state(mem: list[int], pc: int = 0, cells: int = 8) -> SubleqState:
    return SubleqState(tuple(mem + [0] * (cells - len(mem))), pc)


# --------------------------------------------------------------------------- the interpreter


def test_wrap_and_subtraction_wraps():
    assert wrap(128, 8) == -128 and wrap(-129, 8) == 127 and wrap(5, 8) == 5
    s = step(_state([6, 7, 0, 0, 0, 0, 1, -128]), 8)  # M[7] = -128 - 1 wraps to 127 > 0: no branch
    assert s.memory[7] == 127 and s.pc == 3


def test_branch_on_le_zero():
    assert step(_state([6, 7, 5, 0, 0, 0, 3, 3]), 8).pc == 5  # 3 - 3 = 0 <= 0: jump to c
    assert step(_state([6, 7, 5, 0, 0, 0, 3, 2]), 8).pc == 5  # -1: jump
    s = step(_state([6, 7, 5, 0, 0, 0, 2, 3]), 8)  # 1 > 0: pc + 3
    assert s.pc == 3 and s.memory[7] == 1


def test_halting():
    for pc in (-1, -100, 6, 7, 100):  # pc < 0 or pc + 2 >= m (m = 8)
        s = _state([1, 2, 3], pc)
        assert s.halted() and step(s, 8) == s and run(s, 8, 10) == [s]
    assert not _state([1, 2, 3], 5).halted()
    s = step(_state([0, 0, 100]), 8)  # c = 100 is taken as it is: halts
    assert s.pc == 100 and s.halted()
    assert len(run(_state([0, 0, 0]), 8, 7)) == 8  # Z Z 0 forever: stops after max_steps
    with pytest.raises(ConfigError):
        run(_state([0, 0, 0]), 8, -1)


def test_addresses_modulo_m():
    s = step(_state([-1, 10, 0, 0, 0, 0, 0, 5]), 8)  # a = -1 -> cell 7, b = 10 -> cell 2
    assert s.memory[2] == 0 - 5 and s.pc == 0


def test_program_files(tmp_path):
    s = parse_program("# a comment\n 1 2 3 # trailing\n\n-4   5\n", 8, 8)
    assert s == SubleqState((1, 2, 3, -4, 5, 0, 0, 0), 0)
    for text, words in (("1 2 x", "not an integer"), ("1 1.5", "not an integer"), ("128", "outside the 8-bit"),
                        ("-129", "outside the 8-bit"), ("0 " * 9, "do not fit in 8 cells")):
        with pytest.raises(ConfigError, match=words):
            parse_program(text, 8, 8)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_program(tmp_path / "missing.sq", 8, 8)


# --------------------------------------------------------------------------- the looped transformer


def test_shape_and_named_weights(model):
    cfg = model.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.n_loops, cfg.architecture, cfg.act, cfg.norm) == (
        6, 3, 1, "encoder", "relu", "none")
    assert cfg.d_model == model.residual.d and next(model.parameters()).dtype == torch.float64
    R = model.residual
    # the read-out of M[pc] in block 0 is the pointer head: query pc bits, keys pos bits, scaled by lambda
    q = model.blocks[0].attn.W_Q[0, R.i("pc0"), 0] / cfg.head_dim ** 0.5
    assert q.item() == pytest.approx(model.subleq.sharpness)


def test_one_step_matches_interpreter_on_random_states(model):
    states = random_states(2000, seed=1, halted_fraction=0.1)
    x = encode(model, states)
    assert decode(model, x) == states
    y = loop_once(model, x)
    assert decode(model, y) == [step(s, 8) for s in states]
    R = model.residual
    state = [R.i(n) for n in R.names if n.startswith(("pos", "mem", "pc")) and not n.startswith("pc3_")]
    scratch = sorted(set(range(R.d)) - set(state) - {R.i("scratch")})
    assert y[..., scratch].abs().max().item() == 0.0  # every scratch dimension is zeroed after a pass
    bits = y[..., state]
    assert torch.equal(bits.abs()[bits != 0], torch.ones_like(bits[bits != 0]))  # the bits are exactly +-1


@pytest.mark.slow
def test_one_step_matches_interpreter_on_ten_thousand_random_states(model):
    # issue 17's bar: at least 10,000 random single steps, in chunks of 2,000 (float64 memory traffic)
    for chunk in range(5):
        states = random_states(2000, seed=100 + chunk, halted_fraction=0.05)
        assert decode(model, loop_once(model, encode(model, states))) == [step(s, 8) for s in states]


@pytest.mark.parametrize("cells,bits", [(8, 4), (64, 12), (16, 16)])
def test_other_sizes(cells, bits):
    m = looped_subleq(cells, bits)
    states = random_states(150, cells, bits, seed=cells + bits, halted_fraction=0.1)
    assert decode(m, loop_once(m, encode(m, states))) == [step(s, bits) for s in states]


@pytest.mark.parametrize("name,cells,expected,steps", PROGRAMS)
def test_example_programs(name, cells, expected, steps):
    state = load_program(EXAMPLES / name, cells, 8)
    ref = run(state, 8, 1000)
    trace = run_looped(looped_subleq(cells), state, 1000)
    assert compare_traces(trace, ref) is None and trace == ref
    assert trace[-1].halted() and len(trace) - 1 == steps
    assert {i: trace[-1].memory[i] for i in expected} == expected


def test_halted_state_is_a_fixed_point(model):
    states = random_states(100, seed=3, halted_fraction=1.0)
    assert all(s.halted() for s in states)
    x = encode(model, states)
    y = x
    for _ in range(5):
        y = loop_once(model, y)
    assert torch.equal(y, x)


def test_n_loops_is_repeated_passes(model):
    progs = random_programs(3, seed=4)
    x = encode(model, progs)
    three = looped_subleq(n_loops=3)
    assert torch.equal(loop_once(three, x), loop_once(model, loop_once(model, loop_once(model, x))))
    with pytest.raises(ConfigError, match="n_loops=1"):
        run_looped(three, progs[0], 5)


def test_random_programs_run_long_and_exact(model):
    progs = random_programs(3, seed=7)
    assert all(not run(p, 8, 100)[-1].halted() for p in progs)  # they never halt
    assert exact_loops(model, progs, 100) == 100


@pytest.mark.slow
def test_thousand_loops_exact_at_default_sharpness(model):
    assert exact_loops(model, random_programs(4, seed=11), 1000) == 1000


def test_min_exact_sharpness_small():
    r = min_exact_sharpness(loops=20, programs=2, lo=0.5, hi=10.0, tol=0.1)
    lam = r["sharpness"]
    assert r["exact_at_hi"] and 1.0 < lam < 3.0
    progs = random_programs(2)
    assert exact_loops(looped_subleq(sharpness=lam), progs, 20) == 20
    assert exact_loops(looped_subleq(sharpness=lam - 0.1), progs, 20) < 20
    assert exact_loops(looped_subleq(sharpness=0.5), progs, 20) < 20  # too blunt: the reads leak


def test_unsupported_sizes_and_states(model):
    for kw in ({"cells": 48}, {"cells": 4}, {"cells": 512}, {"bits": 3}, {"bits": 17}, {"sharpness": 0.0},
               {"sharpness": float("inf")}, {"n_loops": 0}):
        with pytest.raises(ConfigError):
            looped_subleq(**kw)
    good = random_states(1)[0]
    with pytest.raises(ConfigError, match="cells"):
        encode(model, SubleqState(good.memory[:8], 0))
    with pytest.raises(ConfigError, match="8-bit range"):
        encode(model, SubleqState((200,) + good.memory[1:], 0))
    with pytest.raises(ConfigError, match="pc=500"):
        encode(model, SubleqState(good.memory, 500))


# --------------------------------------------------------------------------- the command line


def test_cli_json(cli, store):
    rc, out, err = cli("construct", "subleq", "--program", EXAMPLES / "multiply.sq", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert {"memory", "pc", "steps", "halted", "matches_interpreter", "first_mismatch_step", "sharpness"} <= set(r)
    assert r["memory"][20] == 117 and len(r["memory"]) == 32 and r["pc"] == -1 and r["steps"] == 65
    assert r["halted"] and r["matches_interpreter"] and r["first_mismatch_step"] is None
    rc, out, _ = cli("construct", "subleq", "--program", EXAMPLES / "countdown.sq", "--sharpness", "1.2", "--json",
                     "--max-steps", "40")
    r = json.loads(out)
    assert rc == 0 and not r["matches_interpreter"] and r["first_mismatch_step"] == 1
    rc, out, _ = cli("construct", "subleq", "--program", EXAMPLES / "bubble_sort.sq", "--cells", "128")
    assert rc == 0 and "matches the interpreter at every step" in out
    assert store.list_runs() == []


@pytest.mark.parametrize("text,words", [("1 2 x\n", "not an integer"), ("1 200\n", "outside the 8-bit"),
                                         ("0 " * 33, "do not fit in 32 cells")])
def test_cli_bad_program(cli, store, tmp_path, text, words):
    p = tmp_path / "bad.sq"
    p.write_text(text)
    rc, out, err = cli("construct", "subleq", "--program", p)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and words in err
    rc, _, err = cli("construct", "subleq", "--program", EXAMPLES / "add.sq", "--cells", "48")
    assert rc == 2 and "power of two" in err and len(err.strip().splitlines()) == 1
    assert store.list_runs() == []  # nothing written to the store


def test_inputs_a_new_user_tried_are_refused_or_read_as_meant(tmp_path):
    from theorylab.constructions.subleq import check_size, min_exact_sharpness, run_looped
    from theorylab.tasks.subleq import SubleqState as S
    from theorylab.tasks.subleq import load_program, parse_program

    with pytest.raises(ConfigError, match="sharpness"):
        check_size(32, 8, 1e308)  # lambda x score overflows to inf, the softmax to nan
    bom = tmp_path / "bom.sq"
    bom.write_bytes("\ufeff9 10 -1\n".encode())
    assert load_program(bom, 8, 8).memory[:3] == (9, 10, -1)
    for tok in ("1_0", "\uff13", "0x10"):  # int() would take the first two
        with pytest.raises(ConfigError, match="is not an integer"):
            parse_program(tok, 8, 8)
    with pytest.raises(ConfigError, match="is a directory"):
        load_program(tmp_path, 8, 8)
    with pytest.raises(ConfigError, match="tol"):
        min_exact_sharpness(8, 4, loops=2, programs=1, tol=0)
    with pytest.raises(ConfigError, match="lo"):
        min_exact_sharpness(8, 4, loops=2, programs=1, lo=5, hi=1)
    with pytest.raises(ConfigError, match="loops and programs"):
        min_exact_sharpness(8, 4, loops=0, programs=1)
    with pytest.raises(ConfigError, match="not a looped SUBLEQ transformer"):
        run_looped(torch.nn.Linear(2, 2), S((0,) * 8, 0), 2)
