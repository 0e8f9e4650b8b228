"""Pérez, Barceló & Marinković (2021): the Turing-machine reader, the reference simulator, the hard-attention
transformer that simulates it (exact rationals equal the simulator at every step; floats diverge), and the
order-invariance of a transformer without positional encodings."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from theorylab.constructions.turing import (
    construct,
    divergence_sweep,
    first_divergence,
    load_machine,
    nope_invariance,
    parse_machine,
    run,
    show_tape,
    simulate,
)
from theorylab.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "turing"
ALPHABETS = {"binary_increment": "01", "palindrome": "ab", "anbn": "ab"}


def machine(transitions, start="q0", accept=("qa",), reject=("qr",), blank="_"):
    return parse_machine({"start": start, "accept": list(accept), "reject": list(reject), "blank": blank,
                          "transitions": [list(t) for t in transitions]})


@pytest.fixture(scope="module")
def examples():
    return {name: load_machine(EXAMPLES / f"{name}.json") for name in (*ALPHABETS, "counter")}


# --------------------------------------------------------------------------- simulator


def test_simulator_accepts_rejects_and_halts_on_a_missing_transition():
    m = machine([("q0", "a", "q0", "a", "R"), ("q0", "_", "qa", "_", "S"), ("q0", "b", "qr", "b", "S")])
    acc = simulate(m, "aa")
    assert (acc.halted, acc.accepted, acc.steps, acc.states[-1], acc.heads) == (True, True, 3, "qa", [0, 1, 2, 2])
    rej = simulate(m, "ab")
    assert (rej.halted, rej.accepted, rej.steps, rej.states[-1]) == (True, False, 2, "qr")
    m2 = machine([("q0", "a", "q0", "a", "R"), ("q1", "b", "q1", "b", "R")])  # q0 has none on b: reject
    miss = simulate(m2, "ab")
    assert (miss.halted, miss.accepted, miss.steps, miss.states[-1]) == (True, False, 1, "q0")
    budget = simulate(machine([("q0", "_", "q0", "_", "R")]), "", max_steps=5)
    assert (budget.halted, budget.accepted, budget.steps) == (False, False, 5)


def test_a_left_move_at_cell_0_stays_and_the_tape_is_trimmed():
    m = machine([("q0", "a", "q1", "b", "L"), ("q1", "b", "q2", "c", "L"), ("q2", "c", "q3", "c", "R"),
                 ("q3", "_", "qa", "_", "R")])
    tr = simulate(m, "a")
    assert tr.heads == [0, 0, 0, 1, 2] and tr.moves == [0, 0, 1, 1] and tr.accepted
    assert tr.tape == ["c", "_", "_"] and show_tape(tr.tape, "_") == "c"
    assert show_tape(list("__ab_a__"), "_") == "ab_a"


def test_the_example_machines_compute_what_they_say(examples):
    inc, pal, anbn = examples["binary_increment"], examples["palindrome"], examples["anbn"]
    for bits in ("", "0", "1", "111", "1011", "0110"):  # least significant bit first
        tr = simulate(inc, bits)
        value = sum(int(b) << k for k, b in enumerate(bits))
        assert tr.accepted and int(show_tape(tr.tape, "_")[::-1], 2) == value + 1
    for n in range(7):
        for w in map("".join, itertools.product("ab", repeat=n)):
            assert simulate(pal, w).accepted == (w == w[::-1]), w
            assert simulate(anbn, w).accepted == (w == "a" * (n // 2) + "b" * (n // 2) and n % 2 == 0), w
            assert simulate(pal, w).halted and simulate(anbn, w).halted
    assert not simulate(examples["counter"], "", max_steps=300).halted


# --------------------------------------------------------------------------- reader errors

GOOD = {"start": "q0", "accept": ["qa"], "reject": ["qr"], "blank": "_", "transitions": [["q0", "a", "qa", "a", "R"]]}


@pytest.mark.parametrize("change, words", [
    ({"start": None}, "missing key(s) start"),
    ({"transitions": None}, "missing key(s) transitions"),
    ({"alphabet": "ab"}, "unknown key(s) alphabet"),
    ({"transitions": [["q0", "a", "qa", "a", "U"]]}, "unknown move 'U'"),
    ({"transitions": [["q0", "a", "qa", "a"]]}, "transitions[0]: expected [state, read"),
    ({"transitions": [["q0", "a", "qa", "a", "R"], ["q0", "a", "qr", "b", "L"]]}, "duplicate transition"),
    ({"transitions": [["q0", "ab", "qa", "a", "R"]]}, "one-character string"),
    ({"transitions": [["qa", "a", "q0", "a", "R"]]}, "halting (accept/reject) state"),
    ({"reject": ["qa"]}, "both accept and reject"),
    ({"blank": ""}, "blank: a symbol must be"),
    ({"start": 3}, "start: a state must be"),
    ({"transitions": {"q0": 1}}, "transitions: expected a list"),
])
def test_malformed_machines_are_one_config_error(change, words):
    obj = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        parse_machine(obj, "m.json")
    msg = str(err.value)
    assert words in msg and "\n" not in msg and msg.startswith("m.json: ")


def test_files_and_inputs_that_cannot_be_used(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"start": "q0",\n "accept": [}')
    with pytest.raises(ConfigError, match=r"not valid JSON: .* line 2"):
        load_machine(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_machine(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_machine(tmp_path / "list.json")
    m = parse_machine(GOOD)
    with pytest.raises(ConfigError, match=r"symbol 'c' at position 1 is not in the machine's alphabet"):
        simulate(m, "ac")
    with pytest.raises(ConfigError, match="--arithmetic"):
        run(m, "a", "float8")
    with pytest.raises(ConfigError, match="--max-steps"):
        run(m, "a", "exact", -1)


# --------------------------------------------------------------------------- the construction


def test_width_layers_and_rational_weights(examples):
    m = examples["palindrome"]
    net = construct(m)
    assert net.width == 2 * len(m.states) + 6 * len(m.symbols) + 15 == net.residual.d
    assert (net.encoder_layers, net.decoder_layers) == (1, 3)
    allowed = {Fraction(v) for v in (0, 1, -1, 2, -2, -3)} | {Fraction(1, 2), Fraction(-1, 2), Fraction(1, 3)}
    for name, w in net.weights.items():
        assert {Fraction(x) for x in w.flat} <= allowed, name
    # the float weights are the same values, converted
    f32 = net._weights(__import__("theorylab.constructions.turing", fromlist=["_Float"])._Float("float32"))
    assert np.array_equal(f32["attn3_q"], np.array(net.weights["attn3_q"], dtype=np.float64).astype(np.float32))


@pytest.mark.parametrize("name", list(ALPHABETS))
def test_exact_construction_equals_the_simulator_on_every_input_up_to_length_6(examples, name):
    m = examples[name]
    for n in range(7):
        for w in map("".join, itertools.product(ALPHABETS[name], repeat=n)):
            r = run(m, w, "exact", 200)
            sim = simulate(m, w, 200)
            assert r.matches_simulator and r.first_divergence_step is None, (name, w, r.summary())
            assert (r.accepted, r.halted, r.steps, r.tape, r.state) == (
                sim.accepted, sim.halted, sim.steps, show_tape(sim.tape, m.blank), sim.states[-1])
            assert r.heads == sim.heads and r.reads == sim.reads


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ALPHABETS))
def test_exact_construction_equals_the_simulator_on_every_input_of_length_7_and_8(examples, name):
    m = examples[name]
    for n in (7, 8):
        for w in map("".join, itertools.product(ALPHABETS[name], repeat=n)):
            assert run(m, w, "exact", 200).matches_simulator, (name, w)


def test_exact_construction_on_random_machines_with_stay_and_left_moves_at_cell_0():
    g = np.random.default_rng(0)
    states, syms = ["q0", "q1", "q2"], ["_", "a", "b"]
    for trial in range(12):
        rows = []
        for q in states:
            for s in syms:
                if g.random() < 0.85:
                    nxt = str(g.choice(states + ["qa", "qr"], p=[0.3, 0.3, 0.3, 0.05, 0.05]))
                    rows.append((q, s, nxt, str(g.choice(syms)), str(g.choice(["L", "R", "S"]))))
        m = machine(rows)
        for w in ("", "ab", "baab"):
            r = run(m, w, "exact", 60)
            assert r.matches_simulator, (trial, rows, w)
            assert r.heads == simulate(m, w, 60).heads


def test_float32_diverges_on_a_long_run_where_exact_does_not(examples):
    m = examples["counter"]
    f32 = first_divergence(m, "", "float32", 340)
    assert f32 is not None and 100 < f32 <= 340  # predicted order eps^(-1/3) = 203 for float32
    assert first_divergence(m, "", "exact", 340) is None
    assert first_divergence(m, "", "float64", 340) is None
    f16 = run(m, "", "float16", 100)
    assert f16.first_divergence_step is not None and f16.first_divergence_step < f32
    rows = divergence_sweep(m, [""], ("float16",), 100)
    assert rows[0]["first_divergence"] == f16.first_divergence_step and rows[0]["predicted"] == pytest.approx(
        2 ** (10 / 3))


# --------------------------------------------------------------------------- NoPE invariance


def test_without_positions_permuting_or_repeating_the_input_changes_nothing():
    r = nope_invariance([0, 1, 1, 2, 3], ks=(2, 3), n_perms=4, seed=1)
    for key in ("mean_permuted", "readout_permuted", "equivariant_permuted", "mean_repeated", "readout_repeated",
                "equivariant_repeated"):
        assert r[key] < 1e-12, (key, r[key])
    assert r["readout_scale"] > 1e-2  # the read-out is not trivially constant
    ab, aabb, abb = (nope_invariance(w, ks=(2,), n_perms=1, seed=1)["readout"] for w in ([0, 1], [0, 0, 1, 1],
                                                                                      [0, 1, 1]))
    assert np.abs(np.subtract(ab, aabb)).max() < 1e-12  # "ab" and "aabb" cannot be told apart
    assert np.abs(np.subtract(ab, abb)).max() > 1e-3  # other proportions can
    control = nope_invariance([0, 1, 1, 2, 3], ks=(2,), n_perms=2, seed=1, positional="sinusoidal")
    assert control["readout_permuted"] > 1e-3 and control["readout_repeated"] > 1e-3


# --------------------------------------------------------------------------- CLI


def test_cli_construct_turing(cli):
    rc, out, err = cli("construct", "turing", "--machine", EXAMPLES / "anbn.json", "--input", "aabb", "--json")
    assert rc == 0, err
    r = json.loads(out)
    for key in ("accepted", "halted", "steps", "tape", "state", "matches_simulator", "first_divergence_step"):
        assert key in r
    assert (r["accepted"], r["halted"], r["steps"], r["tape"], r["state"]) == (True, True, 13, "XXYY", "yes")
    assert r["matches_simulator"] is True and r["first_divergence_step"] is None
    rc, out, _ = cli("construct", "turing", "--machine", EXAMPLES / "counter.json", "--input", "", "--max-steps",
                     "340", "--arithmetic", "float32", "--json")
    r = json.loads(out)
    assert rc == 0 and r["halted"] is False and r["steps"] == 340 and r["matches_simulator"] is False
    assert isinstance(r["first_divergence_step"], int)
    rc, out, _ = cli("construct", "turing", "--machine", EXAMPLES / "palindrome.json", "--input", "abba")
    assert rc == 0 and out.startswith("accepted after 15 steps")


def test_cli_bad_machine_file_is_one_line_and_exit_2(cli, tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({**GOOD, "transitions": [["q0", "a", "qa", "a", "UP"]]}))
    rc, out, err = cli("construct", "turing", "--machine", bad, "--input", "a")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and "unknown move 'UP'" in err
    rc, _, err = cli("construct", "turing", "--machine", EXAMPLES / "anbn.json", "--input", "abc")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "'c'" in err


def test_exact_values_are_python_integers_and_fractions_never_numpy_ones():
    # a numpy int64 inside a Fraction overflows silently once denominators grow (found near step 600-760)
    from fractions import Fraction

    from theorylab.constructions.turing import _int_or_frac, _norm

    for x in (np.int64(5), Fraction(np.int64(3), np.int64(4)), Fraction(np.int64(8), np.int64(4)), 7,
              Fraction(1, 3)):
        v = _norm(x)
        assert type(v) is int or (type(v) is Fraction and type(v.numerator) is int and type(v.denominator) is int)
    assert type(_int_or_frac(np.int64(2))) is int


@pytest.mark.slow
def test_exact_arithmetic_stays_exact_on_a_long_run(examples):
    # the binary counter for 800 steps: the tie-break denominators reach ~1e23, beyond 64-bit integers
    assert run(examples["counter"], "", "exact", 800).matches_simulator


def test_an_empty_machine_path_and_zero_repeats_are_one_line_errors():
    from theorylab.constructions.turing import load_machine

    with pytest.raises(ConfigError, match="empty path"):
        load_machine("")
    with pytest.raises(ConfigError, match="ks"):
        nope_invariance([0, 1], ks=(0,))
