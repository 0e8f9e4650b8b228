"""The sweep verb: ``theorylab sweep TASK key=v1,v2 ... --seeds 0-4``."""

from __future__ import annotations

import typer

from theorylab.cli.app import (
    DEVICE_HELP,
    JSON_OPT,
    SEEDS_HELP,
    SWEEPS,
    app,
    console,
    emit,
    parse_seeds,
    parse_threads,
    store,
)
from theorylab.cli.runs import TaskHelpCommand
from theorylab.errors import ConfigError, RunFailedError


@app.command("sweep", cls=TaskHelpCommand, rich_help_panel=SWEEPS)
def sweep_cmd(
    task: str = typer.Argument(..., help="task or preset name (see `theorylab tasks`)"),
    overrides: list[str] | None = typer.Argument(
        None, help="key=value for every run, key=v1,v2,... for an axis of the grid (e.g. train.weight_decay=0,1)"),
    seeds: str = typer.Option("1", "--seeds", help=SEEDS_HELP + ", for every grid point"),
    stack: bool = typer.Option(False, "--stack", help="train each grid point's seeds stacked in one pass "
                                                      "(train.stepper=stacked; part of the run's identity)"),
    backend: str = typer.Option("local", "--backend", help="inprocess | local | ray"),
    workers: int | None = typer.Option(None, "--workers", help="pool size (default: cores)"),
    threads: str | None = typer.Option(None, "--threads", help="torch CPU threads of each pool or Ray worker (default "
                                       "1), or of this process with inprocess (default: chosen); a positive integer"),
    force: bool = typer.Option(False, "--force", help="retrain runs even if finished ones are stored"),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    as_json: bool = JSON_OPT,
) -> None:
    """Train a grid of runs (every combination of the axes, every seed) on a backend."""
    from theorylab.runs import build_run_config
    from theorylab.runs.config import check_memory
    from theorylab.sweep import BACKENDS, grid, run_sweep

    if backend not in BACKENDS:
        raise ConfigError(f"--backend: {backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    seed_list = parse_seeds(seeds)
    n_threads = parse_threads(threads)
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: {workers} is not allowed; give a count >= 1")
    fixed, axes = [], {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value or key=v1,v2")
        if "," in raw and not raw.lstrip().startswith(("[", "{")):
            axes[key.strip()] = [v.strip() for v in raw.split(",")]
        else:
            fixed.append(item)
    base = build_run_config(task, fixed)
    cfgs = grid(base, axes, seeds=seed_list)  # validates every grid point before anything runs
    if device is not None:
        from theorylab.sweep import on_device

        cfgs = on_device(cfgs, device)
    check_memory(cfgs)  # and refuses a grid point too large to train, before any other runs
    res = run_sweep(cfgs, store(), backend=backend, workers=workers, force=force, progress=not quiet and not as_json,
                    label=f"sweep {task}", stack=stack, threads=n_threads)

    def human():
        from rich.table import Table

        t = Table("run", *axes, "seed", "status", "test acc", "test loss")
        for c, rid in zip(cfgs, res.config_run_ids):
            m = res.metrics.get(rid, {})
            vals = [str(c.to_dict()[k.split(".")[0]].get(k.split(".", 1)[1]) if "." in k else "") for k in axes]
            t.add_row(rid, *vals, str(c.seed), res.status.get(rid, "?"),
                      f"{m['test/accuracy']:.4f}" if "test/accuracy" in m else "",
                      f"{m['test/loss']:.4g}" if "test/loss" in m else "")
        console().print(t)
        console().print(f"{len(res.run_ids)} runs ({len(res.trained)} trained, {len(res.reused)} reused) on "
                        f"{backend} in {res.wall_seconds:.1f}s")

    emit(res.to_dict(), as_json, human)
    if not res.ok:
        raise RunFailedError("runs failed: " + "; ".join(f"{k}: {v}" for k, v in res.errors.items()))
