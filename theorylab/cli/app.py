"""The ``theorylab`` command line: the app, output helpers, the shared grammar, the entry point.

One grammar for every verb:

* ``--json`` prints exactly one JSON object on stdout (strict JSON: a value that is not finite is null);
* ``--seeds`` is a count (``5`` = seeds 0..4), a range (``0-4``) or a list (``0,2,5``);
* exit codes: 0 done (a diverged run is a result), 1 a run or claim failed, 2 bad input or a store
  the program cannot use (one ``theorylab: error: ...`` line on stderr, nothing written to the store),
  130 interrupted by Ctrl-C and 143 by SIGTERM (one ``theorylab: interrupted ...`` line; a run being
  trained is marked stopped and resumes from its last checkpoint);
* every number an option reads is checked before the verb runs (:class:`Command`): floats must be
  finite, ints fit in 64 bits, a ``--seed`` lies in 0..2**63-1; flags take no value (``--force``, not
  ``--force true``).

The verbs live in one module per group (``runs``, ``claims``, ``sweep``, ``measure``, ``construct``),
imported explicitly by :mod:`theorylab.cli`; a module that fails to import is an error.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from theorylab.config import SEED_LIMIT
from theorylab.errors import ConfigError, RunFailedError, TheoryLabError

BOOL_WORDS = ("true", "false", "yes", "no", "on", "off")


def _plain_flags(params: list) -> None:
    """A flag takes no value: show none in --help (typer would show ``<bool>``, inviting ``--force true``)."""
    for p in params:
        if getattr(p, "is_flag", False) and not getattr(p, "count", False):
            p.display_type_rich = lambda ctx: None


def _option_name(p: Any) -> str:
    names = [o for o in (*getattr(p, "opts", ()),) if o.startswith("--")] or list(getattr(p, "opts", ()))
    return names[0] if names else str(p.name)


def _refuse_flag_values(params: list, args: list[str]) -> None:
    """``--force true``: a flag followed by a yes/no word is refused with a clear line (click would take the
    word for the next argument, e.g. an override, and complain about that instead)."""
    flags = {}
    for p in params:
        if getattr(p, "is_flag", False):
            for o in p.opts:
                flags[o] = (p, True)
            for o in p.secondary_opts:
                flags[o] = (p, False)
    for a, nxt in zip(args, args[1:]):
        if a == "--":
            break
        if a in flags and nxt.lower() in BOOL_WORDS:
            p, on = flags[a]
            off = [o for o in (p.opts if not on else p.secondary_opts) if o.startswith("--")]
            how = f"write {a} alone" + (f" (or {off[0]})" if off else " to turn it on, leave it out to turn it off")
            raise ConfigError(f"{a}: is a flag and takes no value (got {a} {nxt}); {how}")


def check_numbers(params: list, values: dict[str, Any]) -> None:
    """Every float an option read is finite; every int fits in 64 bits; every ``--seed`` lies in 0..2**63-1."""
    for p in params:
        v = values.get(p.name)
        if v is None:
            continue
        for x in v if isinstance(v, (list, tuple)) else [v]:
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"{_option_name(p)}: must be a finite number (got {x})")
            if p.name == "seed" and isinstance(x, int) and not 0 <= x < SEED_LIMIT:
                raise ConfigError(f"{_option_name(p)}: a seed must lie in 0..2**63-1 (got {x})")
            if type(x) is int and not -SEED_LIMIT <= x < SEED_LIMIT:
                raise ConfigError(f"{_option_name(p)}: must lie within a signed 64-bit integer (got {x})")


class _Grammar:
    """What every theorylab command shares: plain flags in --help, checked numbers, the raw arguments
    kept in ``ctx.meta['theorylab.args']`` (for help that depends on them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_flags(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        opt = super().get_help_option(ctx)
        if opt is not None:
            _plain_flags([opt])
        return opt

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _refuse_flag_values(self.params, args)
        ctx.meta["theorylab.args"] = list(args)
        rest = super().parse_args(ctx, args)
        check_numbers(self.params, ctx.params)
        return rest


class Command(_Grammar, TyperCommand):
    """The class of every theorylab command (:func:`finish` installs it)."""


class _Interrupted(Exception):
    """A KeyboardInterrupt (Ctrl-C, or SIGTERM while training) carried past typer, which would turn it into a
    silent exit 130 before :func:`main` could say what was interrupted."""

    def __init__(self, err: KeyboardInterrupt):
        super().__init__(str(err))
        self.signal_name = getattr(err, "signal_name", "SIGINT")


class Group(_Grammar, TyperGroup):
    """The class of the theorylab app and its sub-apps (``theorylab measure``); carries an interrupt past
    typer as :class:`_Interrupted`."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as err:
            raise _Interrupted(err) from err


def finish(root: typer.Typer) -> None:
    """Give every command of ``root`` and of its sub-apps the :class:`Command` class (idempotent)."""
    for info in root.registered_commands:
        if info.cls is None or info.cls is TyperCommand:
            info.cls = Command
    for group in root.registered_groups:
        if group.typer_instance is not None:
            finish(group.typer_instance)



app = typer.Typer(
    cls=Group,
    name="theorylab",
    help="theorylab: an executable laboratory for the theory of large language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JSON_OPT = typer.Option(False, "--json", help="print exactly one JSON object on stdout")
MAX_SEEDS = 10_000  # more seeds than this in one command is a typo, not an experiment
DEVICE_HELP = "train on cpu, cuda, cuda:N, mps or auto (cuda when available); sets train.device, not part of a run's identity"
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
    if max(out) >= SEED_LIMIT:
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
    except (KeyboardInterrupt, _Interrupted) as e:
        sig = getattr(e, "signal_name", "SIGINT")
        detail = " ".join(str(e).split())
        print(f"theorylab: interrupted ({sig})" + (f": {detail}" if detail else ""), file=sys.stderr)
        return 143 if sig == "SIGTERM" else 130
    except Exception as e:  # click's (or typer's vendored click's) exceptions, by shape
        name = type(e).__name__
        if name == "Exit":
            return int(getattr(e, "exit_code", 0) or 0)
        if name == "NoArgsIsHelpError":  # `theorylab` (or `theorylab measure`) alone: the help is printed
            return 0
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
