"""``theorylab construct subleq``: run a SUBLEQ program on the looped transformer of Giannou et al. (2023)
and on the reference interpreter, step by step.

    theorylab construct subleq --program examples/subleq/multiply.sq --json
"""

from __future__ import annotations

from pathlib import Path

import typer

from theorylab.cli.app import JSON_OPT, THREADS_HELP, emit, parse_threads
from theorylab.cli.construct import construct_app


@construct_app.command("subleq")
def subleq(
    program: Path = typer.Option(..., "--program", help="program file: whitespace-separated integers, # comments"),
    cells: int = typer.Option(32, "--cells", help="memory cells m (a power of two in [8, 256])"),
    bits: int = typer.Option(8, "--bits", help="word size w in bits (4..16)"),
    max_steps: int = typer.Option(1000, "--max-steps", min=0, help="stop after this many steps"),
    sharpness: float = typer.Option(10.0, "--sharpness", help="softmax sharpness lambda of every attention (at most "
                                                              "1e6)"),
    threads: str | None = typer.Option(None, "--threads", help=THREADS_HELP),
    as_json: bool = JSON_OPT,
) -> None:
    """Run a SUBLEQ program on the looped transformer (one pass per step) and on the interpreter; report the
    final state and whether every step's full state matched."""
    from theorylab.constructions.subleq import check_size, compare_traces, looped_subleq, run_looped
    from theorylab.runs.threads import set_threads
    from theorylab.tasks.subleq import load_program, run

    check_size(cells, bits, sharpness)
    n_threads = parse_threads(threads)
    state = load_program(program, cells, bits)
    model = looped_subleq(cells, bits, sharpness)
    # one pass is about 2 x parameters x (cells + 1) FLOPs: far below a second thread's worth, so 1 by default
    set_threads(2.0 * model.num_params() * (cells + 1), n_threads)
    trace = run_looped(model, state, max_steps)
    ref = run(state, bits, max_steps)
    mismatch = compare_traces(trace, ref)
    last = trace[-1]
    r = {"program": str(program), "cells": cells, "bits": bits, "sharpness": sharpness, "max_steps": max_steps,
         "memory": list(last.memory), "pc": last.pc, "steps": len(trace) - 1, "halted": last.halted(),
         "matches_interpreter": mismatch is None, "first_mismatch_step": mismatch,
         "interpreter_steps": len(ref) - 1, "layers": model.cfg.n_layers, "d_model": model.cfg.d_model,
         "heads": model.cfg.n_heads}
    status = "halted" if last.halted() else "still running"
    agree = "matches the interpreter at every step" if mismatch is None else f"first differs at step {mismatch}"
    steps = f"{r['steps']} step{'' if r['steps'] == 1 else 's'}"
    emit(r, as_json, f"subleq {program}: {status} after {steps}, pc={last.pc}; {agree}\n"
                     f"memory: {' '.join(map(str, last.memory))}")
