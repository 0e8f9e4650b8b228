"""Giannou et al. (2023), "Looped Transformers as Programmable Computers" (ICML, arXiv 2301.13196), on the
hand-set looped SUBLEQ transformer of :mod:`theorylab.constructions.subleq` (data-free: each seed draws its own
random states and programs).

* ``giannou2023.looped_transformer_executes_subleq``: one pass of the fixed-weight block stack is one SUBLEQ
  instruction: on random machine states, and on random programs looped a thousand times, every step's memory and
  program counter equal the reference interpreter's (:mod:`theorylab.tasks.subleq`), as do the example programs'
  (``examples/subleq``) from start to halt.
* ``giannou2023.error_correction_stops_leakage``: the softmax reads leak weight onto other cells; the
  construction's error-correction layer re-binarises every bit after each pass, so the smallest sharpness
  lambda at which the loop stays exact is the same for 10 loops as for 1,000 (leakage never accumulates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Tier, all_of, tiers_of
from theorylab.claims.citations import GIANNOU2023 as CITATION

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "subleq"
# the example programs that run at the default sizes (bubble_sort.sq needs --cells 128)
EXAMPLE_PROGRAMS = ("add.sq", "negate.sq", "countdown.sq", "multiply.sq")


class LoopTier(Tier):
    """``states`` random machine states stepped once, ``programs`` random non-halting programs looped ``loops``
    times, at ``cells`` cells of ``bits`` bits; the sharpness search bisects to ``tol`` over ``search_programs``
    programs at ``short_loops`` and ``loops`` loops."""

    cells: int
    bits: int
    states: int
    programs: int
    loops: int
    search_programs: int
    short_loops: int
    tol: float


TIERS: dict[str, Tier] = tiers_of(LoopTier, {
    "smoke": {"cells": 8, "bits": 4, "states": 64, "programs": 2, "loops": 20, "search_programs": 2,
              "short_loops": 5, "tol": 0.05},
    # the sizes (m = 32 cells of w = 8 bits, 1,000 loops); the construction is exact, so a mismatch in
    # any seed refutes
    "quick": {"cells": 32, "bits": 8, "states": 2000, "programs": 8, "loops": 1000, "search_programs": 4,
              "short_loops": 10, "tol": 0.01, "faithful": True},
    "full": {"cells": 64, "bits": 12, "states": 10000, "programs": 16, "loops": 1000, "search_programs": 8,
             "short_loops": 10, "tol": 0.005, "faithful": True},
})
SEEDS = {"smoke": 2, "quick": 3, "full": 5}


@register_claim
class LoopedExecutesSubleq(Claim):
    id = "giannou2023.looped_transformer_executes_subleq"
    title = "A fixed-weight looped transformer executes SUBLEQ exactly, one instruction per pass"
    citation = CITATION
    tiers = TIERS
    seeds = SEEDS
    statement = ("A transformer with hand-set weights, applied in a loop to its own output (a punch card of memory "
                 "cells with binary positional codes and a scratchpad), executes SUBLEQ: each pass is one "
                 "instruction, with every memory cell and the program counter equal to the interpreter's, for "
                 "random states, random programs over 1,000 loops and the example programs.")
    deviations = {
        "punch card": "program and data share the memory cells (the interpreter's von Neumann SUBLEQ, three heads "
                      "read an instruction) vs the paper's separate instruction columns",
        "layers": "6 blocks per step vs the official code's 10 (subtraction in one ReLU layer, write and branch in "
                  "one); the sizes and variant are in constructions/subleq.py",
    }
    rule = all_of(Criterion("mismatched_steps", "<=", 0, stat="every",
                            why="an exact construction: no step of any run may differ in any field"))
    extra_quantities = ("steps_checked", "d_model", "parameters")

    def measure(self, tier, seed, runs) -> dict[str, Any]:
        from theorylab.constructions.subleq import (
            decode,
            encode,
            exact_loops,
            loop_once,
            looped_subleq,
            random_programs,
            random_states,
            run_looped,
        )
        from theorylab.tasks.subleq import load_program, run, step

        t = self.params(tier)
        m, w = t["cells"], t["bits"]
        model = looped_subleq(m, w)
        states = random_states(t["states"], m, w, seed=seed, halted_fraction=0.05)
        got = decode(model, loop_once(model, encode(model, states)))
        bad = sum(g != step(s, w) for g, s in zip(got, states))
        programs = random_programs(t["programs"], m, w, seed=seed)
        exact = exact_loops(model, programs, t["loops"])
        bad += (t["loops"] - exact) * len(programs) if exact < t["loops"] else 0
        checked = len(states) + t["loops"] * len(programs)
        if (m, w) == (32, 8):
            for name in EXAMPLE_PROGRAMS:
                start = load_program(EXAMPLES / name, m, w)
                ref, mine = run(start, w, 1000), run_looped(model, start, 1000)
                bad += sum(a != b for a, b in zip(ref, mine)) + abs(len(ref) - len(mine))
                checked += len(ref)
        return {"mismatched_steps": float(bad), "steps_checked": float(checked), "d_model": float(model.cfg.d_model),
                "parameters": float(model.num_params())}


@register_claim
class ErrorCorrectionStopsLeakage(Claim):
    id = "giannou2023.error_correction_stops_leakage"
    title = "With error correction, the sharpness a looped SUBLEQ transformer needs does not grow with the loops"
    citation = CITATION
    tiers = TIERS
    seeds = SEEDS
    statement = ("Softmax pointer reads leak weight onto the other cells; re-binarising every bit after each pass "
                 "(the construction's error-correction layer) keeps the leak from accumulating, so the smallest "
                 "softmax sharpness at which the loop stays exact is the same for 10 loops as for 1,000.")
    rule = all_of(
        Criterion("sharpness_growth", "<=", 0.0, stat="every",
                  why="the 1,000-loop threshold exceeds the 10-loop one by no more than the bisection's tolerance "
                      "(growth is measured in units of that tolerance, minus one)"),
    )
    extra_quantities = ("sharpness_short", "sharpness_long")

    def measure(self, tier, seed, runs) -> dict[str, Any]:
        from theorylab.constructions.subleq import min_exact_sharpness

        t = self.params(tier)
        kw = {"cells": t["cells"], "bits": t["bits"], "programs": t["search_programs"], "seed": seed, "tol": t["tol"]}
        short = min_exact_sharpness(loops=t["short_loops"], **kw)["sharpness"]
        long = min_exact_sharpness(loops=t["loops"], **kw)["sharpness"]
        if short is None or long is None:  # not exact even at lambda = 10: the construction failed
            return {"sharpness_short": float("nan"), "sharpness_long": float("nan"), "sharpness_growth": float("inf")}
        return {"sharpness_short": short, "sharpness_long": long,
                "sharpness_growth": (long - short) / t["tol"] - 1.0}
