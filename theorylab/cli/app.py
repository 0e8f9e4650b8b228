"""The ``theorylab`` command line.

Every command takes ``--json`` and then prints exactly one JSON object on stdout.
Bad input prints one ``theorylab: error: ...`` line on stderr and exits with 2;
nothing is written to the store before the input has been validated.

Areas add their commands in their own modules (listed in ``_COMMAND_MODULES``),
each doing ``from theorylab.cli import app`` and ``@app.command()``.
"""

from __future__ import annotations

import importlib
import json
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


def _store():
    from theorylab.store import Store

    return Store()


# --------------------------------------------------------------------------- train / runs / show / resume


@app.command(context_settings={"ignore_unknown_options": False})
def train(
    task: str = typer.Argument(..., help="task or preset name (see `theorylab tasks`)"),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. model.d_model=64 train.lr=3e-4"),
    config: str | None = typer.Option(None, "--config", "-c", help="YAML or JSON config file"),
    seed: int | None = typer.Option(None, "--seed", help="random seed (default 0)"),
    force: bool = typer.Option(False, "--force", help="retrain even if an identical finished run is stored"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    as_json: bool = JSON_OPT,
) -> None:
    """Train one model on one task with one seed and store the run."""
    from theorylab.runs import build_run_config
    from theorylab.runs import train as run_train

    cfg = build_run_config(task, overrides or [], config, seed)  # validates everything first
    result = run_train(cfg, _store(), force=force, progress=not quiet and not as_json)
    d = result.to_dict()

    emit(d, as_json, lambda: _print_result(result))


def _print_result(result) -> None:
    c = console()
    tag = " (reused from the store)" if result.reused else ""
    if result.early_stopped:
        tag += " (early stop: target metric reached)"
    if result.status == "diverged":
        tag += f" ({result.diverged_on} not finite; metrics are from the last finite evaluation)"
    c.print(f"run [bold]{result.run_id}[/bold]: {result.status} at step {result.step}{tag}", soft_wrap=True)
    for k, v in sorted(result.metrics.items()):
        c.print(f"  {k:24s} {v:.6g}")
    if not result.reused:
        c.print(f"  wall {result.wall_seconds:.2f}s, {result.steps_per_second:.1f} steps/s")


@app.command()
def resume(run: str = typer.Argument(..., help="run id or unique prefix"),
           quiet: bool = typer.Option(False, "--quiet", "-q"), as_json: bool = JSON_OPT) -> None:
    """Continue a killed run from its last checkpoint."""
    from theorylab.runs import resume as run_resume

    result = run_resume(_store(), run, progress=not quiet and not as_json)
    emit(result.to_dict(), as_json, lambda: _print_result(result))


@app.command()
def runs(task: str | None = typer.Option(None, "--task"), status: str | None = typer.Option(None, "--status"),
         limit: int = typer.Option(50, "--limit"), as_json: bool = JSON_OPT) -> None:
    """List stored runs, newest first."""
    from theorylab.runs.config import is_stale

    recs = _store().list_runs(task=task, status=status, limit=limit)
    stale = {r.id: is_stale(r.config, r.id) for r in recs}

    def human():
        from rich.table import Table

        t = Table("id", "task", "seed", "status", "step", "test acc", "wall s", "code")
        for r in recs:
            m = r.summary.get("metrics", {})
            acc = m.get("test/accuracy")
            t.add_row(r.id, r.task, str(r.seed), r.status, str(r.step), "" if acc is None else f"{acc:.4f}",
                      "" if r.wall_seconds is None else f"{r.wall_seconds:.1f}", "stale" if stale[r.id] else "")
        console().print(t)
        if any(stale.values()):
            console().print("stale: made by other model, task or loop code than this one; never reused as evidence")

    emit({"runs": [{**r.to_dict(), "stale": stale[r.id]} for r in recs]}, as_json, human)


@app.command()
def show(run: str = typer.Argument(..., help="run id or unique prefix"), as_json: bool = JSON_OPT) -> None:
    """Show one run: config, status, final metrics, checkpoints."""
    store = _store()
    rec = store.find_run(run)
    arts = store.artifacts(rec.id)
    d = {**rec.to_dict(), "artifacts": arts}

    def human():
        import datetime

        c = console()
        c.print(f"[bold]{rec.id}[/bold]  task={rec.task} seed={rec.seed} status={rec.status} step={rec.step}",
                soft_wrap=True)
        when = datetime.datetime.fromtimestamp(rec.created).isoformat(timespec="seconds")
        sm = rec.summary
        line = f"  created {when}"
        if rec.wall_seconds is not None:
            line += f", wall {rec.wall_seconds:.2f}s"
        if sm.get("steps_per_second"):
            line += f", {sm['steps_per_second']:.1f} steps/s"
        c.print(line, soft_wrap=True)
        if sm.get("diverged_step") is not None:
            c.print(f"  diverged at step {sm['diverged_step']}: {sm.get('diverged_on')} not finite", soft_wrap=True)
        if sm.get("error"):
            c.print(f"  error: {sm['error']}", soft_wrap=True, markup=False)
        for k, v in sorted(sm.get("metrics", {}).items()):
            c.print(f"  {k:24s} {v:.6g}")
        for a in arts:
            c.print(f"  {a['kind']:10s} step {a['step']}: {a['path']}", soft_wrap=True, markup=False)
        for section in ("task", "model", "train"):
            c.print(f"  {section}: {json.dumps(rec.config.get(section), sort_keys=True)}", soft_wrap=True,
                    markup=False, highlight=False)
        c.print(f"  versions: {json.dumps(rec.versions, sort_keys=True)}  commit: {rec.git_commit}", soft_wrap=True,
                markup=False, highlight=False)

    emit(d, as_json, human)


@app.command()
def tasks(as_json: bool = JSON_OPT) -> None:
    """List task families and presets."""
    from theorylab.runs.config import preset_names
    from theorylab.runs.presets import PRESETS
    from theorylab.tasks import get_task, task_names

    rows = []
    for name in preset_names():
        if name in PRESETS:
            rows.append({"name": name, "kind": "preset", "description": PRESETS[name]["description"]})
        else:
            cls = get_task(name)
            rows.append({"name": name, "kind": "task", "level": cls.level,
                         "description": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""})
    _ = task_names

    def human():
        from rich.table import Table

        t = Table("name", "kind", "description")
        for r in rows:
            t.add_row(r["name"], r["kind"], r["description"])
        console().print(t)

    emit({"tasks": rows}, as_json, human)


# --------------------------------------------------------------------------- other areas' commands

_COMMAND_MODULES = [
    "theorylab.cli.claims",
    "theorylab.cli.construct",
    "theorylab.cli.generate",
    "theorylab.cli.grokking",
    "theorylab.cli.planning",
]


def _load_command_modules() -> None:
    for mod in _COMMAND_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod and not mod.startswith(str(err.name)):
                raise


def main(argv: list[str] | None = None) -> int:
    _load_command_modules()
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
