"""Pérez, Barceló & Marinković (2021), "Attention is Turing Complete" (JMLR 22(75)), on the hard-attention
encoder-decoder of :mod:`theorylab.constructions.turing` (data-free: each seed draws its own random machines
and inputs).

* ``perez2021.exact_simulation_needs_precision``: in exact rational arithmetic the construction reproduces a
  Turing machine's run step for step (every configuration: state, head, symbol read, tape, halting), on every
  input up to a length on the example machines and on random machines; the same weights in floating point
  diverge from the simulator after a number of steps that grows with the precision (float16 before float32
  before float64), as the paper's reliance on unbounded precision implies.
* ``perez2021.no_positions_no_order``: without positional encodings a transformer's read-out of its input (the
  mean of the encoder's outputs, or a decoder query attending to them) is unchanged by permuting the input or
  repeating it k times, so it depends only on the proportions of the symbols: "ab" and "aabb" cannot be told
  apart.  With positional encodings (the control) the same read-out changes.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Tier, all_of, happened, tiers_of
from theorylab.claims.citations import PEREZ2021 as CITATION

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "turing"
ALPHABETS = {"binary_increment.json": "01", "palindrome.json": "ab", "anbn.json": "ab"}


class TuringTier(Tier):
    """Every input up to ``max_len`` on the example machines and ``random_machines`` random machines on
    ``random_inputs`` inputs, each for up to ``max_steps`` steps in exact arithmetic; the float runs: ``a^L b^L``
    on the a^n b^n machine for ``lengths`` values of L drawn in [``min_l``, ``max_l``], and the binary counter,
    for up to ``float_steps`` steps; the counter also runs ``exact_long`` steps in exact arithmetic (where the
    denominators grow like t^4)."""

    max_len: int
    max_steps: int
    random_machines: int
    random_inputs: int
    lengths: int
    min_l: int
    max_l: int
    float_steps: int
    exact_long: int


class NoPETier(Tier):
    """A random word of ``length`` symbols (of 4) and ``perms`` random permutations of it, on a random model per
    seed (2 layers, width 32, float64)."""

    length: int
    perms: int


TIERS: dict[str, Tier] = tiers_of(TuringTier, {
    "smoke": {"max_len": 3, "max_steps": 60, "random_machines": 2, "random_inputs": 2, "lengths": 1, "min_l": 4,
              "max_l": 6, "float_steps": 120, "exact_long": 60},
    # exact arithmetic needs no scale to be faithful: any mismatch would refute
    "quick": {"max_len": 6, "max_steps": 200, "random_machines": 12, "random_inputs": 3, "lengths": 2, "min_l": 20,
              "max_l": 40, "float_steps": 2000, "exact_long": 800,
              "faithful": True},
    "full": {"max_len": 8, "max_steps": 400, "random_machines": 48, "random_inputs": 4, "lengths": 4, "min_l": 20,
             "max_l": 60, "float_steps": 20000, "exact_long": 3000,
             "faithful": True},
})
SEEDS = {"smoke": 2, "quick": 3, "full": 5}
GROWS = 2.0  # each more precise format runs at least twice as long before diverging (eps^(-1/3) predicts 20x, 2^(29/3))


@register_claim
class ExactSimulationNeedsPrecision(Claim):
    id = "perez2021.exact_simulation_needs_precision"
    title = "The hard-attention transformer simulates a Turing machine exactly in rationals, and for a while in floats"
    citation = CITATION
    tiers = TIERS
    seeds = SEEDS
    statement = ("With hard attention and rational arithmetic, one encoder and three decoder layers reproduce a "
                 "Turing machine's configurations step for step; in floating point the same weights diverge after a "
                 "number of steps that grows with the precision (the construction's tie-breaking gaps shrink like "
                 "1/i^3 and fall below the rounding error near i ~ eps^(-1/3)).")
    deviations = {
        "construction": "our reading of the paper's construction (moves L/R/S, a start token, the input read in "
                        "layer 3, ReLU for the piecewise-linear sigmoid): constructions/turing.py lists each",
        "prediction": "the eps^(-1/3) divergence step is our derivation, not the paper's statement",
    }
    rule = all_of(
        Criterion("exact_mismatches", "<=", 0, stat="every",
                  why="rational arithmetic is exact: no configuration of any run may differ"),
        Criterion("growth_16_to_32", ">=", GROWS, stat="every",
                  why="float32 diverges at least twice as late as float16 (the prediction: 20 times)"),
        Criterion("growth_32_to_64", ">=", GROWS, stat="every",
                  why="float64 diverges at least twice as late as float32, or not within the step budget "
                      "(a lower bound)"),
        premises=[happened("float32_diverged", ">=", 1.0, name="float32 diverged within the step budget",
                           why="the growth is measured between observed divergences")],
    )
    extra_quantities = ("divergence_float16_or_bound", "divergence_float32_or_bound", "divergence_float64_or_bound",
                        "inputs_checked")
    decides = "the quick tier (float32 first diverges after about 300 steps, beyond the smoke tier's budget)"

    def measure(self, tier, seed, runs) -> dict[str, Any]:
        from theorylab.constructions.turing import load_machine, random_machine, run

        t = self.params(tier)
        bad = checked = 0
        for name, alphabet in ALPHABETS.items():
            machine = load_machine(EXAMPLES / name)
            for n in range(t["max_len"] + 1):
                for w in map("".join, itertools.product(alphabet, repeat=n)):
                    bad += not run(machine, w, "exact", t["max_steps"]).matches_simulator
                    checked += 1
        rng = np.random.default_rng([seed, 0x7A9])
        for _ in range(t["random_machines"]):
            machine = random_machine(rng)
            for _ in range(t["random_inputs"]):
                letters = list(machine.symbols[1:]) or [machine.blank]  # those its transitions name
                w = "".join(rng.choice(letters, size=int(rng.integers(0, 6))))
                bad += not run(machine, w, "exact", t["max_steps"]).matches_simulator
                checked += 1
        anbn, counter = load_machine(EXAMPLES / "anbn.json"), load_machine(EXAMPLES / "counter.json")
        bad += not run(counter, "", "exact", t["exact_long"]).matches_simulator  # a long exact run
        checked += 1
        words = [(anbn, "a" * L + "b" * L) for L in rng.integers(t["min_l"], t["max_l"] + 1, size=t["lengths"])]
        words.append((counter, ""))
        first: dict[str, float] = {}
        diverged: dict[str, bool] = {}
        for a in ("float16", "float32", "float64"):
            seen = [run(machine, w, a, t["float_steps"]).first_divergence_step for machine, w in words]
            hit = [float(x) for x in seen if x is not None]
            # the earliest divergence over the runs; none at all: the budget is a lower bound (a run that halted
            # correctly never diverged)
            first[a], diverged[a] = (min(hit), True) if hit else (float(t["float_steps"]), False)
        return {"exact_mismatches": float(bad), "inputs_checked": float(checked),
                "divergence_float16_or_bound": first["float16"], "divergence_float32_or_bound": first["float32"],
                "divergence_float64_or_bound": first["float64"],
                "float32_diverged": float(diverged["float32"]),
                "growth_16_to_32": first["float32"] / max(first["float16"], 1.0),
                "growth_32_to_64": first["float64"] / max(first["float32"], 1.0)}


@register_claim
class NoPositionsNoOrder(Claim):
    id = "perez2021.no_positions_no_order"
    title = "Without positional encodings a transformer sees only the proportions of its input's symbols"
    citation = CITATION
    tiers = tiers_of(NoPETier, {"smoke": {"length": 4, "perms": 2}, "quick": {"length": 6, "perms": 5, "faithful": True},
                                "full": {"length": 12, "perms": 20, "faithful": True}})
    seeds = SEEDS
    statement = ("A transformer without positional encodings gives the same pooled output for a word, any "
                 "permutation of it and the word repeated k times, so its output depends only on the symbols' "
                 "proportions: 'ab' and 'aabb' cannot be told apart.  With positional encodings it can.")
    rule = all_of(
        Criterion("largest_change", "<=", 1e-12, stat="every",
                  why="an identity of exact arithmetic: float64 rounding (about 1e-15) is all that may differ"),
        premises=[happened("control_change", ">=", 1e-3, name="with positions the same read-out sees order",
                           why="the control: a model with sinusoidal positions changes by more than 1e-3, so the "
                               "read-out is not trivially constant")],
    )
    extra_quantities = ("ab_vs_aabb", "ab_vs_abb")

    def measure(self, tier, seed, runs) -> dict[str, Any]:
        from theorylab.constructions.turing import nope_invariance

        t = self.params(tier)
        rng = np.random.default_rng([seed, 0x0DE])
        word = [int(x) for x in rng.integers(0, 4, size=t["length"])]
        r = nope_invariance(word, ks=(2, 3), n_perms=t["perms"], seed=seed)
        c = nope_invariance(word, ks=(2,), n_perms=3, seed=seed, positional="sinusoidal")
        ab, aabb, abb = (np.asarray(nope_invariance(w, ks=(2,), n_perms=1, seed=seed)["readout"])
                         for w in ([0, 1], [0, 0, 1, 1], [0, 1, 1]))
        keys = ("mean_permuted", "readout_permuted", "mean_repeated", "readout_repeated")
        return {"largest_change": max(float(r[k]) for k in keys),
                "control_change": min(float(c["readout_permuted"]), float(c["readout_repeated"])),
                "ab_vs_aabb": float(np.abs(ab - aabb).max()), "ab_vs_abb": float(np.abs(ab - abb).max())}
