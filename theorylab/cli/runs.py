"""The runs verbs: ``train``, ``resume``, ``runs``, ``show``, ``tasks``, ``generate``."""

from __future__ import annotations

import json

import torch
import typer

from theorylab.cli.app import (
    JSON_OPT,
    RUNS,
    SEEDS_HELP,
    THREADS_HELP,
    app,
    console,
    emit,
    parse_seeds,
    parse_threads,
    store,
)
from theorylab.errors import ConfigError, RunFailedError, TheoryLabError

STATUSES = ("created", "running", "finished", "diverged", "failed", "stopped")


@app.command(context_settings={"ignore_unknown_options": False}, rich_help_panel=RUNS)
def train(
    task: str = typer.Argument(..., help="task or preset name (see `theorylab tasks`)"),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. model.d_model=64 train.lr=3e-4"),
    config: str | None = typer.Option(None, "--config", "-c", help="YAML or JSON config file"),
    seed: int | None = typer.Option(None, "--seed", help="one random seed (default 0)"),
    seeds: str | None = typer.Option(None, "--seeds", help=SEEDS_HELP + "; each seed is its own run"),
    stack: bool = typer.Option(False, "--stack", help="with --seeds: train the seeds stacked in one pass "
                                                      "(train.stepper=stacked; part of the run's identity)"),
    force: bool = typer.Option(False, "--force", help="retrain even if an identical finished run is stored"),
    stop_after: int | None = typer.Option(None, "--stop-after", help="stop after this many steps (resume later)"),
    threads: str | None = typer.Option(None, "--threads", help=THREADS_HELP + "; not part of the run's identity"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    as_json: bool = JSON_OPT,
) -> None:
    """Train one model on one task (or one per seed) and store the run."""
    from theorylab.runs import build_run_config, train_many

    if seed is not None and seeds is not None:
        raise ConfigError("--seed and --seeds: give one seed or a set of seeds, not both")
    if stack and seeds is None:
        raise ConfigError("--stack: stacks the seeds of --seeds; give --seeds too")
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"--stop-after: must be a positive number of steps (got {stop_after})")
    seed_list = parse_seeds(seeds)
    n_threads = parse_threads(threads)
    extra = ["train.stepper=stacked"] if stack else []
    cfgs = [build_run_config(task, (overrides or []) + extra, config, s)
            for s in (seed_list if seed_list is not None else [seed])]  # validates everything first
    try:
        results = train_many(cfgs, store(), force=force, progress=not quiet and not as_json, stop_after=stop_after,
                             threads=n_threads)
    except (TheoryLabError, KeyboardInterrupt):
        raise
    except Exception as err:  # the run failed (it is stored as failed and resumes from its last checkpoint)
        msg = (str(err).splitlines() or [type(err).__name__])[0]
        raise RunFailedError(f"{', '.join(c.run_id() for c in cfgs)}: {type(err).__name__}: {msg}") from None
    if seed_list is None:
        emit(results[0].to_dict(), as_json, lambda: _print_result(results[0]))
    else:
        emit({"runs": [r.to_dict() for r in results], "seeds": seed_list}, as_json,
             lambda: [_print_result(r, f"seed {s}: ") for s, r in zip(seed_list, results)])


def _print_result(result, prefix: str = "") -> None:
    c = console()
    tag = " (reused from the store)" if result.reused else ""
    if result.early_stopped:
        tag += " (early stop: target metric reached)"
    if result.status == "diverged":
        tag += f" ({result.diverged_on} not finite; metrics are from the last finite evaluation)"
    c.print(f"{prefix}run [bold]{result.run_id}[/bold]: {result.status} at step {result.step}{tag}", soft_wrap=True)
    for k, v in sorted(result.metrics.items()):
        c.print(f"  {k:24s} {v:.6g}")
    if not result.reused:
        threads = "" if result.threads is None else f" on {result.threads} thread{'s' if result.threads > 1 else ''}"
        c.print(f"  wall {result.wall_seconds:.2f}s, {result.steps_per_second:.1f} steps/s{threads}")


@app.command(rich_help_panel=RUNS)
def resume(run: str = typer.Argument(..., help="run id or unique prefix"),
           threads: str | None = typer.Option(None, "--threads", help=THREADS_HELP),
           quiet: bool = typer.Option(False, "--quiet", "-q"), as_json: bool = JSON_OPT) -> None:
    """Continue a killed run from its last checkpoint."""
    from theorylab.runs import resume as run_resume

    n_threads = parse_threads(threads)
    result = run_resume(store(), run, progress=not quiet and not as_json, threads=n_threads)
    emit(result.to_dict(), as_json, lambda: _print_result(result))


@app.command(rich_help_panel=RUNS)
def runs(task: str | None = typer.Option(None, "--task", help="only runs of this task"),
         status: str | None = typer.Option(None, "--status", help="only runs with this status: " + ", ".join(STATUSES)),
         limit: int = typer.Option(50, "--limit", help="at most this many runs (newest first)"),
         as_json: bool = JSON_OPT) -> None:
    """List stored runs, newest first; runs made by other code are marked stale."""
    from theorylab.runs.config import is_stale

    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status: {status!r} is not a run status; allowed: {', '.join(STATUSES)}")
    if limit < 1:
        raise ConfigError(f"--limit: must be >= 1 (got {limit})")

    recs = store().list_runs(task=task, status=status, limit=limit)
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


@app.command(rich_help_panel=RUNS)
def show(run: str = typer.Argument(..., help="run id or unique prefix"), as_json: bool = JSON_OPT) -> None:
    """Show one run: config, status, final metrics, checkpoints."""
    st = store()
    rec = st.find_run(run)
    arts = st.artifacts(rec.id)
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
        if sm.get("threads"):
            line += f" on {sm['threads']} thread{'s' if sm['threads'] > 1 else ''}"
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


@app.command(rich_help_panel=RUNS)
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


@app.command(rich_help_panel=RUNS)
def generate(
    run: str = typer.Argument(..., help="run id or unique prefix"),
    prompt: list[str] = typer.Option(..., "--prompt", "-p",
                                     help="words for tasks with a vocabulary (e.g. lm), else space-separated token "
                                          "ids; repeat for a batch (left-padded)"),
    strategy: str = typer.Option("greedy", "--strategy", help="greedy | beam | sample"),
    max_new_tokens: int = typer.Option(20, "--max-new-tokens", "-n"),
    num_beams: int = typer.Option(4, "--num-beams", help="beam search only"),
    length_penalty: float = typer.Option(1.0, "--length-penalty"),
    early_stopping: str = typer.Option("false", "--early-stopping", help="true | false | never"),
    temperature: float = typer.Option(1.0, "--temperature"),
    top_k: int = typer.Option(0, "--top-k", help="0 = off"),
    top_p: float = typer.Option(1.0, "--top-p", help="1 = off"),
    num_samples: int = typer.Option(1, "--num-samples", help="sampling only: how many continuations"),
    seed: int = typer.Option(0, "--seed", help="sampling generator seed"),
    stop_at_eos: bool = typer.Option(True, "--stop-at-eos/--no-stop-at-eos",
                                     help="stop at the task's end token (token 0 for lm)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Generate from a trained run with greedy, beam or sampling decoding."""
    from theorylab.models.decoding import generate as gen
    from theorylab.runs import load_run_model

    if strategy not in ("greedy", "beam", "sample"):
        raise ConfigError(f"--strategy: {strategy!r} is not allowed; allowed: greedy, beam, sample")
    es = {"true": True, "false": False, "never": "never"}.get(early_stopping.lower())
    if es is None:
        raise ConfigError(f"--early-stopping: {early_stopping!r}; allowed: true, false, never")
    if num_samples < 1:
        raise ConfigError(f"--num-samples: {num_samples}; give a count >= 1")
    cfg, model = load_run_model(store(), run)
    from theorylab.tasks import make_task

    task = make_task(cfg.task, cfg.seed)
    encode = getattr(task, "encode", None)
    decode = getattr(task, "decode", None)
    batch = []
    for text in prompt:
        if encode is not None:
            ids = encode(text)
        else:
            try:
                ids = [int(t) for t in text.split()]
            except ValueError:
                raise ConfigError("--prompt: this task has no vocabulary; give space-separated token ids") from None
        if not text.split():
            raise ConfigError("--prompt: empty")
        batch += [(text, ids)] * (num_samples if strategy == "sample" else 1)
    eos = 0 if (stop_at_eos and encode is not None) else None
    width = max(len(ids) for _, ids in batch)
    x = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for i, (_, ids) in enumerate(batch):  # left padding: every row's last column is its last token
        x[i, width - len(ids):] = torch.tensor(ids)
        mask[i, width - len(ids):] = 1
    out = gen(model, x, max_new_tokens, strategy=strategy, num_beams=num_beams if strategy == "beam" else 1,
              length_penalty=length_penalty, early_stopping=es, temperature=temperature, top_k=top_k, top_p=top_p,
              eos_token_id=eos, generator=torch.Generator().manual_seed(seed), attention_mask=mask)
    rows = [r[width:].tolist() for r in out]
    if eos is not None:
        rows = [r[: r.index(eos) + 1] if eos in r else r for r in rows]
    texts = [decode(r) if decode is not None else " ".join(map(str, r)) for r in rows]
    prompts = [text for text, _ in batch]
    emit({"run_id": cfg.run_id(), "prompt": prompt[0] if len(prompt) == 1 else prompt, "prompts": prompts,
          "strategy": strategy, "tokens": rows, "texts": texts},
         as_json, lambda: [print(f"{p} | {t}") for p, t in zip(prompts, texts, strict=True)])
