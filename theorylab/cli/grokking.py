"""CLI commands of the grokking area: ``train-seeds`` and ``fourier``.

    theorylab train-seeds grokking --seeds 0-4 train.steps=20000
    theorylab fourier RUN_ID [--every 2] [--json]
"""

from __future__ import annotations

import typer

from theorylab.cli.app import JSON_OPT, _store, app, console, emit
from theorylab.errors import ConfigError


def parse_seeds(text: str) -> list[int]:
    """``"0-4"``, ``"0,2,5"`` or ``"3"`` -> seeds."""
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise ConfigError(f"--seeds: expected e.g. 0-4 or 0,2,5 (got {text!r})") from None
    if not out or any(s < 0 for s in out):
        raise ConfigError(f"--seeds: expected non-negative seeds, e.g. 0-4 or 0,2,5 (got {text!r})")
    return sorted(set(out))


@app.command("train-seeds")
def train_seeds(
    task: str = typer.Argument(..., help="task or preset name, e.g. grokking"),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides"),
    seeds: str = typer.Option("0-2", "--seeds", help="seeds, e.g. 0-4 or 0,2,5"),
    config: str | None = typer.Option(None, "--config", "-c", help="YAML or JSON config file"),
    sequential: bool = typer.Option(False, "--sequential", help="one seed after another instead of vectorised"),
    force: bool = typer.Option(False, "--force", help="retrain runs already in the store"),
    stop_after: int | None = typer.Option(None, "--stop-after", help="stop after this many steps (resumable)"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    as_json: bool = JSON_OPT,
) -> None:
    """Train several seeds of one configuration at once (vectorised); each seed is its own run."""
    from theorylab.runs import build_run_config, train_many

    seed_list = parse_seeds(seeds)
    stepper = ["train.stepper=single" if sequential else "train.stepper=stacked"]
    cfgs = [build_run_config(task, (overrides or []) + stepper, config, s) for s in seed_list]  # validates first
    if stop_after is not None and stop_after <= 0:
        raise ConfigError("--stop-after: must be a positive number of steps")
    results = train_many(cfgs, _store(), force=force, progress=not quiet and not as_json, stop_after=stop_after)

    def human():
        c = console()
        for s, r in zip(seed_list, results):
            tag = " (reused)" if r.reused else ""
            acc = r.metrics.get("test/accuracy")
            c.print(f"seed {s}: run [bold]{r.run_id}[/bold] {r.status} at step {r.step}{tag}"
                    + ("" if acc is None else f", test accuracy {acc:.4f}") + f", wall {r.wall_seconds:.1f}s")

    emit({"runs": [r.to_dict() for r in results], "seeds": seed_list}, as_json, human)


@app.command("fourier")
def fourier(
    run: str = typer.Argument(..., help="run id or unique prefix (a modular-arithmetic run)"),
    every: int = typer.Option(1, "--every", help="measure every n-th checkpoint (the last always)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Fourier progress measures over a run's checkpoints, key frequencies and phase boundaries."""
    from theorylab.measures.fourier import measure_checkpoints
    from theorylab.measures.phases import detect_phases

    store = _store()
    rec = store.find_run(run)
    if rec.task != "modular":
        raise ConfigError(f"run {rec.id}: task {rec.task!r}; Fourier measures need a modular-arithmetic run")
    if every < 1:
        raise ConfigError("--every: must be >= 1")
    series = measure_checkpoints(store.load_task(rec.id), store.checkpoint_models(rec.id), every=every)
    m = store.metrics(rec.id)
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
