"""``theorylab planning RUN``: ALPINE measurements of a stored graph path-finding run."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from theorylab.cli.app import JSON_OPT, _store, app, console, emit
from theorylab.errors import TheoryLabError


@app.command()
def planning(
    run: str = typer.Argument(..., help="run id or unique prefix of an alpine or blocksworld run"),
    temperature: float = typer.Option(1.0, "--temperature", help="sampling temperature (0 = greedy; paper: 1)"),
    samples: int = typer.Option(1, "--samples", help="completions per test pair"),
    seed: int = typer.Option(0, "--seed", help="sampling seed"),
    figures: str | None = typer.Option(None, "--figures", help="folder to save the heatmaps (PNG) in"),
    no_norms: bool = typer.Option(False, "--no-norms", help="read-outs without the layer norms (paper's formulas)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Path accuracy by degree label and the adjacency / reachability read-outs (Wang et al. 2024)."""
    from theorylab.measures.planning import analyze, fig_adjacency, fig_reachability
    from theorylab.runs import load_run_model
    from theorylab.tasks.graphs import GraphPathTask

    if samples < 1:
        raise TheoryLabError("--samples: must be >= 1")
    if temperature < 0:
        raise TheoryLabError("--temperature: must be >= 0 (0 = greedy)")
    store = _store()
    cfg, model = load_run_model(store, run)
    from theorylab.tasks import make_task

    task = make_task(cfg.task, cfg.seed)
    if not isinstance(task, GraphPathTask):
        raise TheoryLabError(f"run: {run!r} is a {cfg.task.name!r} run; planning needs alpine or blocksworld")
    vals = analyze(model, task, temperature=temperature, samples=samples, seed=seed, norms=not no_norms)
    saved = []
    if figures is not None:
        out = Path(figures)
        out.mkdir(parents=True, exist_ok=True)
        for name, fig in (("adjacency_readout", fig_adjacency(model, task, not no_norms)),
                          ("reachability_readout", fig_reachability(model, task, not no_norms))):
            path = out / f"{name}.png"
            fig.savefig(path, dpi=100)
            saved.append(str(path))
            import matplotlib.pyplot as plt

            plt.close(fig)
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in vals.items()}  # JSON has no NaN
    result = {"run_id": store.find_run(run).id, "values": clean, "figures": saved}

    def human():
        c = console()
        c.print(f"run [bold]{result['run_id']}[/bold] ({cfg.task.name}, {task.n_nodes} nodes)")
        for k, v in vals.items():
            c.print(f"  {k:28s} {'nan' if isinstance(v, float) and math.isnan(v) else format(v, '.4g')}")
        for p in saved:
            c.print(f"  figure {p}")

    emit(result, as_json, human)
