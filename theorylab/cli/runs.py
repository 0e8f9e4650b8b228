"""The runs verbs: ``train``, ``resume``, ``runs``, ``show``, ``tasks``, ``generate``."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args, get_origin

import torch
import typer

from theorylab.cli.app import (
    DEVICE_HELP,
    JSON_OPT,
    RUNS,
    SEEDS_HELP,
    THREADS_HELP,
    Command,
    app,
    console,
    emit,
    parse_seeds,
    parse_threads,
    store,
)
from theorylab.errors import ConfigError, RunFailedError, TheoryLabError
from theorylab.store import lineage_text

# interrupted: stored as running, but the process training it is gone (killed, crashed, powered off)
STATUSES = ("created", "running", "interrupted", "finished", "diverged", "failed", "stopped")
INTERRUPTED_NOTE = ("interrupted: the process training it is gone (killed or crashed); `theorylab resume RUN` "
                    "continues it from its last checkpoint")


# --------------------------------------------------------------------------- config fields in help


def _allowed(field: Any) -> str:
    """What a config field allows, in words: its choices, bounds, seed range, finiteness, null."""
    import annotated_types as at

    from theorylab.config import check_seed

    choices: list[str] = []
    bounds: list[str] = []
    kinds: set[Any] = set()

    def walk(t: Any) -> None:
        if get_origin(t) is Literal:
            choices.extend(str(a) for a in get_args(t))
            return
        kinds.add(t)
        for a in get_args(t):
            if callable(getattr(a, "func", None)) and a.func is check_seed:
                bounds.append("0..2**63-1")
            elif not isinstance(a, (str, int, float)):
                walk(a)

    walk(field.annotation)
    for m in field.metadata:
        for cls, sign in ((at.Gt, ">"), (at.Ge, ">="), (at.Lt, "<"), (at.Le, "<=")):
            if isinstance(m, cls):
                bounds.append(f"{sign} {getattr(m, sign and cls.__name__.lower())}")
    parts = [" | ".join(choices)] if choices else []
    parts += bounds
    if float in kinds and not choices:
        parts.append("finite")
    if type(None) in kinds:
        parts.append("or null")
    return ", ".join(parts)


def _show(value: Any) -> str:
    """A value as an override would write it (``adamw``, ``0.001``, ``false``, ``null``, ``[0.9, 0.98]``)."""
    return value if isinstance(value, str) else json.dumps(value)


def config_fields(name: str) -> list[dict[str, Any]]:
    """Every field of ``name``'s run config (task, model, train, objective, lora, then seed, probes and parent):
    key, value (the preset's or the task's default), what it allows, its description."""
    from theorylab.runs import build_run_config

    cfg = build_run_config(name)
    data = cfg.to_dict()
    out = []
    sections = ("task", "model", "train", "objective", "lora")
    for section in ("objective", "lora"):  # to_dict leaves out defaults the run id never saw
        data.setdefault(section, getattr(cfg, section).to_dict())
    for section in (*sections, None):
        obj = cfg if section is None else getattr(cfg, section)
        for k, f in type(obj).model_fields.items():
            if section is None and k in sections:
                continue
            key = k if section is None else f"{section}.{k}"
            value = data.get(k, getattr(cfg, k)) if section is None else \
                data[section].get(k, getattr(obj, k))  # to_dict also drops defaults like train.compile=false
            out.append({"key": key, "value": value, "allowed": _allowed(f), "description": f.description or ""})
    return out


def _task_argument(cmd: Any, args: list[str]) -> str | None:
    """The first positional argument of ``args`` (skipping options and the values they take)."""
    takes_value = {o for p in cmd.params if p.param_type_name == "option" and not getattr(p, "is_flag", False)
                   for o in p.opts}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return args[i + 1] if i + 1 < len(args) else None
        if a.startswith("-"):
            i += 2 if (a in takes_value and "=" not in a) else 1
            continue
        return a
    return None


def fields_epilog(name: str | None) -> str:
    """The end of ``train TASK --help``: TASK's config fields, one per line (rich markup escaped)."""
    from rich.markup import escape

    from theorylab.errors import TheoryLabError

    if name is None:
        return ("Every task, model and train field can be overridden with key=value. `theorylab train TASK --help` "
                "or `theorylab tasks TASK` lists TASK's fields with their values, what each allows and what it "
                "does.")
    try:
        fields = config_fields(name)
    except TheoryLabError as err:
        return escape(f"{err} (see `theorylab tasks`)")
    rows = [(f"{f['key']} = {_show(f['value'])}", " ".join(x for x in (f["description"], f"[{f['allowed']}]"
                                                                       if f["allowed"] else "") if x))
            for f in fields]
    width = min(44, max(len(a) for a, _ in rows))
    lines = [f"Config fields of {name} (override any with key=value; the values are {name}'s):"]
    lines += [f"  {a:<{width}}  {b}".rstrip() for a, b in rows]
    return escape("\n".join(lines))


class TaskHelpCommand(Command):
    """``train TASK --help`` and ``sweep TASK --help`` end with TASK's config fields."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        saved = self.epilog
        self.epilog = fields_epilog(_task_argument(self, ctx.meta.get("theorylab.args", [])))
        try:
            super().format_help(ctx, formatter)
        finally:
            self.epilog = saved


@app.command(cls=TaskHelpCommand, context_settings={"ignore_unknown_options": False}, rich_help_panel=RUNS)
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
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    threads: str | None = typer.Option(None, "--threads", help=THREADS_HELP + "; not part of the run's identity"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    from_run: str | None = typer.Option(None, "--from", help="fine-tune a stored run (id or unique prefix): start "
                                                           "from its final weights, keep its model, and use it as "
                                                           "the frozen reference of a preference objective"),
    from_step: int | None = typer.Option(None, "--from-step", help="with --from: start from the parent's "
                                                                  "checkpoint at this step instead of its final "
                                                                  "weights"),
    objective: str | None = typer.Option(None, "--objective", help="what the steps minimise: task (its own loss), "
                                                                 "dpo, ipo, rlhf or reward_model (same as "
                                                                 "objective.name=...)"),
    reward_model: str | None = typer.Option(None, "--reward-model", help="rlhf: optimise the value of this stored "
                                                                       "reward_model run (id or unique prefix) "
                                                                       "instead of the task's true reward"),
    as_json: bool = JSON_OPT,
) -> None:
    """Train one model on one task (or one per seed) and store the run."""
    from theorylab.runs import build_run_config, train_many
    from theorylab.runs.config import check_memory

    if seed is not None and seeds is not None:
        raise ConfigError("--seed and --seeds: give one seed or a set of seeds, not both")
    if stack and seeds is None:
        raise ConfigError("--stack: stacks the seeds of --seeds; give --seeds too")
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"--stop-after: must be a positive number of steps (got {stop_after})")
    seed_list = parse_seeds(seeds)
    n_threads = parse_threads(threads)
    extra = ["train.stepper=stacked"] if stack else []
    if objective is not None:
        extra.append(f"objective.name={objective}")
    if reward_model is not None:
        extra.append(f"objective.reward_model={store().find_run(reward_model).id}")
    parent = None
    if from_step is not None:
        if from_run is None:
            raise ConfigError("--from-step: picks a checkpoint of the --from run; give --from too")
        extra.append(f"parent_step={from_step}")
    if from_run is not None:
        rec = store().find_run(from_run)
        parent = (rec.id, rec.config)
        if from_step is not None and from_step == rec.step and rec.status == "finished":
            extra.remove(f"parent_step={from_step}")  # the final weights: the same run as plain --from
    cfgs = [build_run_config(task, (overrides or []) + extra, config, s, parent=parent)
            for s in (seed_list if seed_list is not None else [seed])]  # validates everything first
    if device is not None:
        from theorylab.sweep import on_device

        cfgs = on_device(cfgs, device)
    check_memory(cfgs)  # the seeds train together: their models, optimizers and batches must fit at once
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
           quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
           as_json: bool = JSON_OPT) -> None:
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
    """List stored runs, newest first; runs made by other code are marked stale, running runs whose process
    is gone interrupted."""
    from theorylab.runs.config import is_stale

    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status: {status!r} is not a run status; allowed: {', '.join(STATUSES)}")
    if limit < 1:
        raise ConfigError(f"--limit: must be >= 1 (got {limit})")

    recs = store().list_runs(task=task, status=status, limit=limit)
    stale = {r.id: is_stale(r.config, r.id) for r in recs}

    def human():
        from rich import box
        from rich.table import Column, Table

        def whole(name: str, values) -> Column:  # a column rich may not cut short (ids are what verbs take)
            return Column(name, no_wrap=True, min_width=max([len(name), *(len(v) for v in values)]))

        code = any(stale.values())  # the code column only when some run is stale
        # no vertical rules, so that a run's whole row fits 80 columns (a pipe, a narrow terminal)
        t = Table(whole("id", [r.id for r in recs]), whole("task", [r.task for r in recs]), "seed",
                  whole("status", [r.status for r in recs]), "step", "test acc", "wall s",
                  *([whole("code", ["stale"])] if code else []), box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False)
        for r in recs:
            m = r.summary.get("metrics", {})
            acc = m.get("test/accuracy")
            t.add_row(r.id, r.task, str(r.seed), r.status, str(r.step), "" if acc is None else f"{acc:.4f}",
                      "" if r.wall_seconds is None else f"{r.wall_seconds:.1f}",
                      *(["stale" if stale[r.id] else ""] if code else []))
        console().print(t)
        if any(r.status == "interrupted" for r in recs):
            console().print(INTERRUPTED_NOTE, markup=False, highlight=False, soft_wrap=True)
        if any(stale.values()):
            console().print("stale: made by other model, task or loop code than this one; never reused as evidence")

    emit({"runs": [{**r.to_dict(), "stale": stale[r.id]} for r in recs]}, as_json, human)


@app.command(rich_help_panel=RUNS)
def show(run: str = typer.Argument(..., help="run id or unique prefix"), as_json: bool = JSON_OPT) -> None:
    """Show one run: config, status, final metrics, checkpoints, and its lineage when it was fine-tuned."""
    st = store()
    rec = st.find_run(run)
    arts = st.artifacts(rec.id)
    chain = st.lineage(rec.id)
    d = {**rec.to_dict(), "artifacts": arts, "lineage": chain}

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
        for line in _liveness_lines(rec, arts):
            c.print(line, soft_wrap=True, markup=False, highlight=False)
        for k, v in sorted(sm.get("metrics", {}).items()):
            c.print(f"  {k:24s} {v:.6g}")
        for a in arts:
            c.print(f"  {a['kind']:10s} step {a['step']}: {a['path']}", soft_wrap=True, markup=False)
        if len(chain) > 1:
            c.print("  lineage: " + lineage_text(chain), soft_wrap=True, markup=False,
                    highlight=False)
        for section in ("task", "model", "train", "objective", "lora"):
            if section in rec.config:
                c.print(f"  {section}: {json.dumps(rec.config.get(section), sort_keys=True)}", soft_wrap=True,
                        markup=False, highlight=False)
        c.print(f"  versions: {json.dumps(rec.versions, sort_keys=True)}  commit: {rec.git_commit}", soft_wrap=True,
                markup=False, highlight=False)

    emit(d, as_json, human)


def _task_of(name: str) -> str:
    from theorylab.runs.presets import PRESETS

    return str(PRESETS[name]["config"]["task"]["name"]) if name in PRESETS else name


def _liveness_lines(rec, arts) -> list[str]:
    """Who trains (or trained) an unfinished run, its last sign of life and where it resumes."""
    import time

    if rec.status not in ("running", "interrupted", "stopped", "failed", "created"):
        return []
    lines = []
    if rec.pid is not None:
        seen = "" if rec.heartbeat is None else f"; last heartbeat {max(0.0, time.time() - rec.heartbeat):.0f} s ago"
        if rec.status == "running":
            lines.append(f"  running: process {rec.pid} on {rec.host}{seen}")
        elif rec.status == "interrupted":
            lines.append(f"  interrupted: stored as running, but process {rec.pid} on {rec.host} is gone (killed or "
                         f"crashed){seen}")
    if rec.status != "running":
        steps = [a["step"] for a in arts if a["kind"] == "checkpoint"]
        since = f"its checkpoint at step {max(steps)}" if steps else "step 0 (no checkpoint)"
        lines.append(f"  resumes from {since}: theorylab resume {rec.id}")
    return lines


@app.command(rich_help_panel=RUNS)
def tasks(name: str | None = typer.Argument(None, help="a task or preset: list its config fields, their values, "
                                                      "what each allows and what it does"),
          as_json: bool = JSON_OPT) -> None:
    """List task families and presets with their Chomsky level, or one task's config fields."""
    from theorylab.runs.config import preset_names
    from theorylab.runs.presets import PRESETS
    from theorylab.tasks import get_task

    if name is not None:
        fields = config_fields(name)
        cls = get_task(_task_of(name))
        one = {"name": name, "kind": "preset" if name in PRESETS else "task", "task": _task_of(name),
               "level": cls.level, "fields": fields}

        def human_one():
            from rich.markup import escape
            from rich.table import Table

            lvl = f", level {cls.level}" if cls.level else ""
            t = Table(title=escape(f"{name} (task {one['task']}{lvl}): override any field with key=value"))
            t.add_column("field", no_wrap=True)
            t.add_column("value", overflow="fold")
            t.add_column("allowed")
            t.add_column("description")
            for f in fields:
                t.add_row(*(escape(x) for x in (f["key"], _show(f["value"]), f["allowed"], f["description"])))
            console().print(t)

        emit(one, as_json, human_one)
        return

    rows = []
    for n in preset_names():
        cls = get_task(_task_of(n))
        if n in PRESETS:
            desc = PRESETS[n]["description"]
        else:
            desc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        rows.append({"name": n, "kind": "preset" if n in PRESETS else "task", "task": _task_of(n),
                     "level": cls.level, "description": desc})

    def human():
        from rich.markup import escape
        from rich.table import Table

        t = Table("name", "kind", "level", "description")
        for r in rows:
            t.add_row(*(escape(x) for x in (r["name"], r["kind"], r["level"] or "", r["description"])))
        console().print(t)
        console().print("level: the Chomsky hierarchy level of a formal-language task (regular, dcf = deterministic "
                        "context-free, cs = context-sensitive); `theorylab tasks NAME` lists a task's fields")

    emit({"tasks": rows}, as_json, human)


def _check_generation_size(cfg: Any, rows: int) -> None:
    """Refuse (before any batch is built) a decoding batch that cannot fit in RAM: prompts x samples x beams."""
    from theorylab.models.size import fmt_bytes, generation_memory, param_count, ram_available

    need = generation_memory(cfg.model, rows) + 4 * param_count(cfg.model)
    have = ram_available()
    if have is not None and need > have:
        raise ConfigError(f"--num-samples/--num-beams: decoding {rows} sequences of up to {cfg.model.n_ctx} tokens "
                          f"needs about {fmt_bytes(need)} of memory but {fmt_bytes(have)} is available (this "
                          "machine's RAM); give fewer prompts, samples or beams")


@app.command(rich_help_panel=RUNS)
def generate(
    run: str = typer.Argument(..., help="run id or unique prefix"),
    prompt: list[str] = typer.Option(..., "--prompt", "-p",
                                     help="words for tasks with a vocabulary (e.g. lm), else space-separated token "
                                          "ids; repeat for a batch (left-padded)"),
    strategy: str = typer.Option("greedy", "--strategy", help="greedy | beam | sample"),
    max_new_tokens: int = typer.Option(20, "--max-new-tokens", "-n", min=1, help="tokens to generate per prompt"),
    num_beams: int = typer.Option(4, "--num-beams", min=1, help="beam search only: beams kept"),
    length_penalty: float = typer.Option(1.0, "--length-penalty",
                                         help="beam search only: a beam's score is its log-probability / "
                                              "length**penalty (> 0 favours longer beams)"),
    early_stopping: str = typer.Option("false", "--early-stopping", help="true | false | never"),
    temperature: float = typer.Option(1.0, "--temperature", help="sampling only: divide the logits by this (> 0)"),
    top_k: int = typer.Option(0, "--top-k", min=0, help="sampling only: keep the k likeliest tokens; 0 = off"),
    top_p: float = typer.Option(1.0, "--top-p", help="sampling only: keep the likeliest tokens up to this "
                                                     "probability mass, in (0, 1]; 1 = off"),
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
    if cfg.objective.name == "reward_model":
        raise ConfigError(f"run: {store().find_run(run).id} is a reward model (a value head scoring whole "
                          "responses); it does not generate text")
    _check_generation_size(cfg, len(prompt) * (num_samples if strategy == "sample" else 1)
                           * (num_beams if strategy == "beam" else 1))
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
