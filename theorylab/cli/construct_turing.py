"""``theorylab construct turing``: Pérez, Barceló & Marinković's (JMLR 2021) hard-attention transformer
simulating a Turing machine from a JSON machine file.

    theorylab construct turing --machine examples/turing/anbn.json --input aabb
    theorylab construct turing --machine examples/turing/counter.json --input "" --max-steps 500 \\
        --arithmetic float32 --json
"""

from __future__ import annotations

import typer

from theorylab.cli.app import JSON_OPT, emit
from theorylab.cli.construct import construct_app


@construct_app.command("turing")
def turing(
    machine: str = typer.Option(..., "--machine", help="machine file (JSON: start, accept, reject, blank, "
                                "transitions [[state, read, next, write, L|R|S], ...])"),
    word: str = typer.Option(..., "--input", help="the input string, one character per symbol (may be empty)"),
    max_steps: int = typer.Option(1000, "--max-steps", min=0, help="stop after this many transitions"),
    arithmetic: str = typer.Option("exact", "--arithmetic",
                                   help="exact (rationals) | float64 | float32 | float16: the same weights"),
    as_json: bool = JSON_OPT,
) -> None:
    """Run the transformer autoregressively on the input, decode its configurations and compare each step
    with a plain Turing-machine simulator (first_divergence_step: null when they agree throughout)."""
    from theorylab.constructions.turing import ARITHMETICS, construct, load_machine
    from theorylab.errors import ConfigError

    if arithmetic not in ARITHMETICS:
        raise ConfigError(f"--arithmetic: {arithmetic!r}; allowed: {', '.join(ARITHMETICS)}")
    m = load_machine(machine)
    net = construct(m)
    r = net.run(word, arithmetic, max_steps).summary()
    r.update({"machine": machine, "input": word, "width": net.width, "encoder_layers": net.encoder_layers,
              "decoder_layers": net.decoder_layers})
    verdict = "accepted" if r["accepted"] else ("rejected" if r["halted"] else "did not halt")
    div = r["first_divergence_step"]
    steps = f"{r['steps']} step{'' if r['steps'] == 1 else 's'}"
    state = r["state"] if r["state"] is not None else "(none decodable: the state read-out is not one-hot)"
    emit(r, as_json, f"{verdict} after {steps} in state {state}, tape {r['tape']!r} "
                     f"({arithmetic}); matches the simulator: {'yes' if div is None else f'no, from step {div}'}")
