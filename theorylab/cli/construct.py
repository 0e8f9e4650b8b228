"""The construction verbs: ``theorylab construct NAME`` evaluates a transformer with hand-set weights.

    theorylab construct parity --n 1000 --layernorm-eps 0   # Chiang & Cholak (2022): PARITY
    theorylab construct first --n 1000 --log-length         # Chiang & Cholak (2022): FIRST
    theorylab construct subleq --program examples/subleq/multiply.sq   # Giannou et al. (2023): looped SUBLEQ
    theorylab construct turing --machine examples/turing/anbn.json --input aabb   # Perez et al. (2021)

(``subleq`` and ``turing`` live in ``construct_subleq.py`` and ``construct_turing.py``.)
"""

from __future__ import annotations

import typer

from theorylab.cli.app import CONSTRUCT, JSON_OPT, Group, app, emit

construct_app = typer.Typer(cls=Group, help="Evaluate a hand-set construction: parity | first | subleq | turing.",
                            no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(construct_app, name="construct", rich_help_panel=CONSTRUCT)

N_OPT = typer.Option(100, "--n", min=1, help="input length (bits)")
EPS_OPT = typer.Option(None, "--layernorm-eps", help="use the layer-norm trick with this epsilon (0 = exact)")
SAMPLES_OPT = typer.Option(256, "--samples", min=1, help="random strings to evaluate")
SEED_OPT = typer.Option(0, "--seed", help="seed of the random strings")


@construct_app.command("parity")
def parity(
    n: int = N_OPT,
    layernorm_eps: float | None = EPS_OPT,
    attention: str = typer.Option("softmax", "--attention", help="softmax | hard_unique | hard_average"),
    samples: int = SAMPLES_OPT,
    seed: int = SEED_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Accuracy and cross-entropy (bits) of Chiang & Cholak's PARITY transformer on random strings."""
    from theorylab.constructions import parity as build

    model = build(n, layernorm_eps, attention=attention)
    _report(model, "parity", n, layernorm_eps, samples, seed, as_json, False)


@construct_app.command("first")
def first(
    n: int = N_OPT,
    layernorm_eps: float | None = EPS_OPT,
    log_length: bool = typer.Option(False, "--log-length", help="attention logits scaled by log n"),
    samples: int = SAMPLES_OPT,
    seed: int = SEED_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Accuracy and cross-entropy (bits) of Chiang & Cholak's FIRST transformer on random strings."""
    from theorylab.constructions import first as build

    model = build(n, layernorm_eps, log_length=log_length)
    _report(model, "first", n, layernorm_eps, samples, seed, as_json, log_length)


def _report(model, kind: str, n: int, eps: float | None, samples: int, seed: int, as_json: bool,
            log_length: bool) -> None:
    from theorylab.constructions import evaluate

    r = evaluate(model, kind, n, samples, seed)
    r.update({"construction": kind, "layernorm_eps": eps, "log_length": log_length,
              "attention": model.cfg.attention})
    emit(r, as_json, f"{kind} n={n} layernorm_eps={eps}: accuracy {r['accuracy']:.4f}, "
                     f"cross-entropy {r['cross_entropy_bits']:.4f} bits per string")

