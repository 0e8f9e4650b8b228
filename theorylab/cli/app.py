"""The ``theorylab`` command line: the app, output helpers, the shared grammar, the entry point.

One grammar for every verb:

* ``--json`` prints exactly one JSON object on stdout (strict JSON: a value that is not finite is null);
* ``--seeds`` is a count (``5`` = seeds 0..4), a range (``0-4``) or a list (``0,2,5``);
* exit codes: 0 done (a diverged run is a result), 1 a run or claim failed, 2 bad input (one
  ``theorylab: error: ...`` line on stderr, nothing written to the store).

The verbs live in one module per group (``runs``, ``claims``, ``sweep``, ``measure``, ``construct``),
imported explicitly by :mod:`theorylab.cli`; a module that fails to import is an error.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import typer

from theorylab.errors import RunFailedError, TheoryLabError

app = typer.Typer(
    name="theorylab",
    help="theorylab: an executable laboratory for the theory of large language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JSON_OPT = typer.Option(False, "--json", help="print exactly one JSON object on stdout")
MAX_SEEDS = 10_000  # more seeds than this in one command is a typo, not an experiment
SEEDS_HELP = "seeds: a count (5 = seeds 0..4), a range (0-4) or a list (0,2,5)"
THREADS_HELP = ("torch CPU threads, a positive integer (default: OMP_NUM_THREADS when set, else chosen from the work "
                "per step and the cores free now: 1 for small models)")

# help panels: the verb groups of `theorylab --help`
RUNS, CLAIMS, SWEEPS, MEASURES, CONSTRUCT = "Runs", "Claims", "Sweeps", "Measures", "Constructions"


def parse_seeds(text: str | None, option: str = "--seeds") -> list[int] | None:
    """``"5"`` -> [0..4] (a count); ``"0-4"`` -> [0..4] (a range); ``"0,2,5"`` -> a list; None -> None.

    Raises ConfigError (one line, exit 2) for anything else: an empty list, a negative seed, a reversed
    range, a count below 1 or a seed at or above 2**63 (the store's integer range)."""
    from theorylab.errors import ConfigError

    if text is None:
        return None
    t = text.strip()
    bad = ConfigError(f"{option}: expected a count (5), a range (0-4) or a list (0,2,5); got {text!r}")
    try:
        if re.fullmatch(r"\d+", t):
            n = int(t)
            if not 1 <= n <= MAX_SEEDS:
                raise ConfigError(f"{option}: a count must lie in 1..{MAX_SEEDS} (got {n})")
            out = list(range(n))
        else:
            out = []
            for part in t.split(","):
                part = part.strip()
                m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
                if m:
                    a, b = int(m.group(1)), int(m.group(2))
                    if b < a:
                        raise ConfigError(f"{option}: range {part!r} runs backwards")
                    if b - a >= MAX_SEEDS:
                        raise ConfigError(f"{option}: range {part!r} holds more than {MAX_SEEDS} seeds")
                    out.extend(range(a, b + 1))
                elif re.fullmatch(r"\d+", part):
                    out.append(int(part))
                else:
                    raise bad
    except ValueError:
        raise bad from None
    if not out:
        raise bad
    if len(out) > MAX_SEEDS:
        raise ConfigError(f"{option}: more than {MAX_SEEDS} seeds")
    if max(out) >= 2 ** 63:
        raise ConfigError(f"{option}: seeds must be below 2**63 (got {max(out)})")
    return list(dict.fromkeys(out))


def parse_threads(text: str | None, option: str = "--threads") -> int | None:
    """``"2"`` -> 2; None -> None (the loop chooses); anything but a positive integer is a ConfigError (exit 2)."""
    from theorylab.errors import ConfigError

    if text is None:
        return None
    t = text.strip()
    if not t.isdigit() or int(t) < 1:
        raise ConfigError(f"{option}: expected a positive number of threads (1, 2, ...); got {text!r}")
    return int(t)


def emit(obj: Any, as_json: bool, human: Any = None) -> None:
    """Print ``obj`` as one JSON object (``--json``) or call/print ``human``."""
    if as_json:
        sys.stdout.write(json.dumps(_finite(obj), default=_default, sort_keys=True, allow_nan=False) + "\n")
        sys.stdout.flush()
    elif callable(human):
        human()
    elif human is not None:
        print(human)


def _finite(o: Any) -> Any:
    """NaN and infinities become null, so the output is strict JSON any parser reads."""
    import numpy as np

    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float):
        return o if o == o and o not in (float("inf"), float("-inf")) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)


def console():
    from rich.console import Console

    return Console()


def store():
    """The store at ``$THEORYLAB_HOME`` (default ``./theorylab-runs``)."""
    from theorylab.store import Store

    return Store()




def _version(value: bool) -> None:
    if value:
        from theorylab import __version__

        print(f"theorylab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """theorylab: an executable laboratory for the theory of large language models."""


def main(argv: list[str] | None = None) -> int:
    try:
        rv = app(args=argv, standalone_mode=False)
    except TheoryLabError as e:
        print(f"theorylab: error: {e}", file=sys.stderr)
        return 2
    except RunFailedError as e:
        print(f"theorylab: failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("theorylab: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # click's (or typer's vendored click's) exceptions, by shape
        name = type(e).__name__
        if name == "Exit":
            return int(getattr(e, "exit_code", 0) or 0)
        if name == "Abort":
            print("theorylab: aborted", file=sys.stderr)
            return 130
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            msg = " ".join(str(e.format_message()).split())
            print(f"theorylab: error: {msg}", file=sys.stderr)
            return 2
        raise
    return int(rv) if isinstance(rv, int) else 0


def entry() -> None:  # console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
