"""``theorylab construct parity|first``: evaluate a hand-set construction on random strings."""

from __future__ import annotations

import typer

from theorylab.cli.app import CONSTRUCT, JSON_OPT, app, emit
from theorylab.errors import ConfigError


@app.command(rich_help_panel=CONSTRUCT)
def construct(
    kind: str = typer.Argument(..., help="parity | first"),
    n: int = typer.Option(100, "--n", min=1, help="input length (bits)"),
    layernorm_eps: float | None = typer.Option(None, "--layernorm-eps",
                                                  help="use the layer-norm trick with this epsilon (0 = exact)"),
    log_length: bool = typer.Option(False, "--log-length", help="FIRST only: attention logits scaled by log n"),
    hard: str | None = typer.Option(None, "--attention", help="softmax | hard_unique | hard_average (PARITY)"),
    samples: int = typer.Option(256, "--samples", min=1, help="random strings to evaluate"),
    seed: int = typer.Option(0, "--seed", help="seed of the random strings"),
    as_json: bool = JSON_OPT,
) -> None:
    """Accuracy and cross-entropy (bits) of Chiang & Cholak's PARITY or FIRST transformer."""
    from theorylab.constructions import evaluate, first, parity

    if kind not in ("parity", "first"):
        raise ConfigError(f"kind: {kind!r}; allowed: parity, first")
    if kind == "parity":
        if log_length:
            raise ConfigError("--log-length: only for first")
        model = parity(n, layernorm_eps, attention=hard or "softmax")
    else:
        if hard not in (None, "softmax"):
            raise ConfigError("--attention: only for parity")
        model = first(n, layernorm_eps, log_length=log_length)
    r = evaluate(model, kind, n, samples, seed)
    r.update({"construction": kind, "layernorm_eps": layernorm_eps, "log_length": log_length,
              "attention": model.cfg.attention})
    emit(r, as_json, f"{kind} n={n} layernorm_eps={layernorm_eps}: accuracy {r['accuracy']:.4f}, "
                     f"cross-entropy {r['cross_entropy_bits']:.4f} bits per string")
