"""The measure verbs: ``theorylab measure NAME RUN`` computes a measurement of a stored run.

    theorylab measure fourier RUN [--every 2]     # Fourier progress measures (Nanda et al. 2023)
    theorylab measure planning RUN [--figures D]  # ALPINE read-outs and path accuracy (Wang et al. 2024)
    theorylab measure bits RUN [--people N]       # knowledge stored in bits (Allen-Zhu & Li 2024, Part 3.3)
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from theorylab.cli.app import JSON_OPT, MEASURES, Group, app, console, emit, store
from theorylab.errors import ConfigError, TheoryLabError

measure_app = typer.Typer(cls=Group, help="Measure a stored run: fourier | planning | bits.", no_args_is_help=True,
                          context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(measure_app, name="measure", rich_help_panel=MEASURES)


@measure_app.command("fourier")
def fourier(
    run: str = typer.Argument(..., help="run id or unique prefix (a modular-arithmetic run)"),
    every: int = typer.Option(1, "--every", help="measure every n-th checkpoint (the last always)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Fourier progress measures over a run's checkpoints, key frequencies and phase boundaries."""
    from theorylab.measures.fourier import measure_checkpoints
    from theorylab.measures.phases import detect_phases

    st = store()
    rec = st.find_run(run)
    if rec.task != "modular":
        raise ConfigError(f"run {rec.id}: task {rec.task!r}; Fourier measures need a modular-arithmetic run")
    if every < 1:
        raise ConfigError("--every: must be >= 1")
    series = measure_checkpoints(st.load_task(rec.id), st.checkpoint_models(rec.id), every=every)
    m = st.metrics(rec.id)
    steps = [s for s, _ in m.get("train", {}).get("accuracy", [])]
    ph = detect_phases(steps, [v for _, v in m["train"]["accuracy"]], [v for _, v in m["test"]["loss"]]) \
        if steps else None
    out = {"run_id": rec.id, "key_frequencies": series["key_frequencies"], "measures": series,
           "phases": None if ph is None else ph.to_dict()}

    def human():
        c = console()
        c.print(f"run [bold]{rec.id}[/bold]: key frequencies {series['key_frequencies']}")
        if ph is not None:
            for name, b in ph.to_dict().items():
                if isinstance(b, dict):
                    c.print(f"  {name:22s} step {b['step']}  ({b['rule']})")
            for n in ph.notes:
                c.print(f"  note: {n}")
        keys = ["train_loss", "test_loss", "restricted_loss", "excluded_loss", "gini_embed", "gini_neuron_logit",
                "weight_norm_sq"]
        c.print("  step  " + "  ".join(f"{k:>17s}" for k in keys))
        for i, s in enumerate(series["steps"]):
            c.print(f"  {s:5d} " + "  ".join(f"{series[k][i]:17.5g}" for k in keys))

    emit(out, as_json, human)


@measure_app.command("planning")
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
    from theorylab.figures import planning as fp
    from theorylab.measures.planning import analyze, mlp_readout, value_readout
    from theorylab.runs import load_run_model
    from theorylab.tasks.graphs import GraphPathTask

    if samples < 1:
        raise TheoryLabError("--samples: must be >= 1")
    if temperature < 0:
        raise TheoryLabError("--temperature: must be >= 0 (0 = greedy)")
    st = store()
    cfg, model = load_run_model(st, run)
    from theorylab.tasks import make_task

    task = make_task(cfg.task, cfg.seed)
    if not isinstance(task, GraphPathTask):
        raise TheoryLabError(f"run: {run!r} is a {cfg.task.name!r} run; planning needs alpine or blocksworld")
    vals = analyze(model, task, temperature=temperature, samples=samples, seed=seed, norms=not no_norms)
    saved = []
    if figures is not None:
        out = Path(figures)
        out.mkdir(parents=True, exist_ok=True)
        n = task.n_nodes
        figs = (("adjacency_readout", fp.adjacency(mlp_readout(model, n, not no_norms).cpu().numpy(), task.adj)),
                ("reachability_readout", fp.reachability(value_readout(model, n, not no_norms).cpu().numpy(), task.obs_reach,
                                                         task.true_reach & ~task.obs_reach)))
        for name, fig in figs:
            path = out / f"{name}.png"
            fig.savefig(path, dpi=100)
            saved.append(str(path))
            import matplotlib.pyplot as plt

            plt.close(fig)
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in vals.items()}  # JSON has no NaN
    result = {"run_id": st.find_run(run).id, "values": clean, "figures": saved}

    def human():
        c = console()
        c.print(f"run [bold]{result['run_id']}[/bold] ({cfg.task.name}, {task.n_nodes} nodes)")
        for k, v in vals.items():
            c.print(f"  {k:28s} {'nan' if isinstance(v, float) and math.isnan(v) else format(v, '.4g')}")
        for p in saved:
            c.print(f"  figure {p}")

    emit(result, as_json, human)


@measure_app.command("bits")
def bits(
    run: str = typer.Argument(..., help="run id or unique prefix of a bios run"),
    people: int | None = typer.Option(None, "--people", help="measure this many people (the first ones) and "
                                                             "estimate for all; default everyone"),
    as_json: bool = JSON_OPT,
) -> None:
    """Bits of the biographies' attributes the model stores, and per parameter (Allen-Zhu & Li 2024, Part 3.3;
    the definition is in theorylab.measures.knowledge)."""
    from theorylab.measures.knowledge import bits_per_parameter, bits_stored

    st = store()
    rec = st.find_run(run)
    if rec.task != "bios":
        raise ConfigError(f"run {rec.id}: task {rec.task!r}; bits stored are measured on a bios run")
    if people is not None and people < 1:
        raise ConfigError("--people: must be >= 1")
    model, task = st.load_model(rec.id), st.load_task(rec.id)
    n = len(task.world) if people is None else min(people, len(task.world))
    vals = bits_stored(model, task, people=range(n))
    vals["parameters"] = float(model.num_params())
    vals["bits_per_parameter"] = bits_per_parameter(vals["bits"], model)
    result = {"run_id": rec.id, "values": vals}

    def human():
        c = console()
        c.print(f"run [bold]{rec.id}[/bold] (bios, {len(task.world)} people; {n} measured)")
        for k, v in vals.items():
            c.print(f"  {k:22s} {v:.6g}")

    emit(result, as_json, human)
