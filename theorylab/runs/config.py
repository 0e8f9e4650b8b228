"""RunConfig (task + model + train + seed), presets, and building one from CLI input."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from theorylab.config import (
    Config,
    ConfigError,
    Seed,
    apply_overrides,
    deep_merge,
    load_file,
    override_list,
    register_section,
    validate,
)
from theorylab.models.config import TransformerConfig
from theorylab.models.lora import LoraConfig
from theorylab.models.size import MemoryEstimate, available_memory, fmt_bytes, training_memory
from theorylab.runs.objectives import ObjectiveConfig, check_objective
from theorylab.runs.presets import PRESETS
from theorylab.tasks import TaskConfig, build_task_config, task_names


class TrainConfig(Config):
    """How a run trains: optimizer, schedule, batching, evaluation and checkpoints."""

    steps: int = Field(1000, gt=0, description="optimizer steps")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="adamw (decoupled weight decay), adam "
                                                                "or sgd (with momentum)")
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, description="weight decay (decoupled for adamw)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas, each in [0, 1)")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon")
    warmup_steps: int = Field(0, ge=0, description="steps of linear warmup from lr / warmup_steps")
    schedule: Literal["constant", "cosine", "linear"] = Field("constant", description="learning-rate decay after "
                                                                                    "warmup, to min_lr_ratio * lr")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr / lr for cosine and linear decay")
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm; none = no clipping")
    batch_size: int | None = Field(
        None, gt=0, description="examples per step; none = full batch over the train split"
    )
    eval_every: int = Field(100, gt=0, description="evaluate every this many steps (and at the end)")
    eval_batch_size: int = Field(4096, gt=0, description="examples per evaluation chunk")
    checkpoint_every: int | None = Field(None, gt=0, description="checkpoint every this many steps (and at the "
                                                                "end); none = by checkpoint_minutes and at the end")
    checkpoint_minutes: float | None = Field(
        5.0, gt=0, description="also checkpoint once this many minutes of training have passed since the last "
                               "checkpoint, so a kill loses at most about this much work on any hardware; "
                               "none = by steps only")
    keep_checkpoints: Literal["last", "all"] = Field("last", description="keep only the last checkpoint or all")
    early_stop_metric: str | None = Field(None, description="e.g. 'test/accuracy'")
    early_stop_value: float | None = Field(None, description="stop once early_stop_metric reaches this value")
    early_stop_mode: Literal["max", "min"] = Field("max", description="max: stop at or above the value; min: at "
                                                                      "or below")
    dtype: Literal["float32", "float64", "bf16"] = Field(
        "float32", description="float32 | float64 | bf16 (bfloat16 autocast of the forward pass and loss over "
                               "float32 weights, optimizer state and gradients: mixed precision as "
                               "torch.autocast does it); part of the run's identity")
    compile: bool = Field(
        False, description="compile the training step with torch.compile (forward, loss and backward through "
                           "AOTAutograd; on a GPU as CUDA graphs) and use torch's fused optimizer kernels; "
                           "compiled kernels round differently, so it is part of the run's identity when true")
    device: str = Field("cpu", description="cpu, cuda, cuda:N, mps or auto (cuda when available)")
    stepper: Literal["single", "stacked"] = Field(
        "single", description="how a step is computed: single = each run alone; stacked = the seeds of a group "
                              "stacked into one set of tensors (theorylab.runs.steppers); part of the run's identity")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        import re

        if not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", v):
            raise ValueError("must be cpu, cuda, cuda:N, mps or auto")
        return v

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if (self.early_stop_metric is None) != (self.early_stop_value is None):
            raise ValueError("early_stop_metric and early_stop_value go together")
        if self.early_stop_metric is not None and "/" not in self.early_stop_metric:
            raise ValueError("early_stop_metric is 'split/name', e.g. 'test/accuracy'")
        for b in self.betas:
            if not 0 <= b < 1:
                raise ValueError("betas must lie in [0, 1)")
        return self



# the model fields that follow the vocabulary: vocabulary=task takes them from the task, not from the parent
VOCABULARY_FIELDS = ("d_vocab", "d_vocab_out", "pad_token_id")


class RunConfig(Config):
    """Everything that determines one run.  Its hash (with the code version) is the run id."""

    task: TaskConfig
    model: TransformerConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    seed: Seed = Field(0, description="the run's seed, 0..2**63-1")
    probes: list[str] = Field(default_factory=list,
                              description="measurements of the model's internals logged at every evaluation "
                                          "(theorylab.runs.probes)")
    tags: dict[str, str] = Field(default_factory=dict, description="free labels; not part of the run id")
    parent: str | None = Field(None, description="a finished run whose final weights this run starts from (and, "
                                                 "for preference objectives, its frozen reference); part of the "
                                                 "run's identity")
    parent_step: int | None = Field(None, ge=0, description="with parent: start from the parent's checkpoint at "
                                                           "this step (kept with train.keep_checkpoints=all); none "
                                                           "= its final weights; part of the run's identity")
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig,
                                       description="what the steps minimise (theorylab.runs.objectives)")
    lora: LoraConfig = Field(default_factory=LoraConfig,
                             description="low-rank adapters of a fine-tuned run (theorylab.models.lora); off by "
                                         "default (full fine-tuning)")
    vocabulary: Literal["parent", "task"] = Field(
        "parent", description="with parent: keep the parent model's vocabulary (its embedding and unembedding), or "
                              "take the task's: both are resized to the task's tokens, the parent's rows kept for "
                              "the ids they share and new ones initialised as in a fresh model")

    @field_validator("task", mode="before")
    @classmethod
    def _task(cls, v: Any) -> TaskConfig:
        if isinstance(v, TaskConfig):
            return v
        return build_task_config(v)

    @model_validator(mode="before")
    @classmethod
    def _fill_model(cls, data: Any) -> Any:
        """Fill the model fields the task decides (vocabulary, context) unless given."""
        if not isinstance(data, dict):
            return data
        task = data.get("task")
        if isinstance(task, dict):
            task = build_task_config(task)
            data = {**data, "task": task}
        model = data.get("model", {})
        if isinstance(task, TaskConfig) and isinstance(model, dict):
            objective = data.get("objective")
            name = objective.get("name") if isinstance(objective, dict) else getattr(objective, "name", None)
            defaults = task.model_defaults()
            if name == "reward_model" and hasattr(task, "reward_model_defaults"):  # a value head (objectives)
                defaults = {**defaults, **task.reward_model_defaults()}
            model = {**defaults, **model}
            if data.get("vocabulary") == "task":  # the task's tokens (and padding id), whatever the parent's model read
                model = {**model, **{k: defaults.get(k) for k in VOCABULARY_FIELDS}}
            data = {**data, "model": validate(TransformerConfig, model, prefix="model.")}
        return data

    @model_validator(mode="after")
    def _check_probes(self) -> RunConfig:
        from theorylab.runs.probes import check_probes

        check_probes(self.probes, self.task.name)
        return self

    @model_validator(mode="after")
    def _check_objective(self) -> RunConfig:
        from theorylab.tasks import get_task

        check_objective(self.objective, get_task(self.task.name), self.task, self.parent, self.train.stepper,
                        self.model)
        self._check_vocabulary()
        if self.parent_step is not None and self.parent is None:
            raise ConfigError("parent_step: needs a parent run (parent=RUN, or --from RUN)")
        if self.vocabulary == "task":
            if self.parent is None:
                raise ConfigError("vocabulary: 'task' resizes a parent run's vocabulary; give parent=RUN (or --from "
                                  "RUN)")
            if self.objective.name != "task" or self.lora.enabled:
                raise ConfigError("vocabulary: 'task' is for plain fine-tuning (objective task, no LoRA): a "
                                  "preference objective compares with the parent's distribution, over its vocabulary")
        if self.lora.enabled:
            if self.parent is None:
                raise ConfigError("lora.rank: low-rank adapters fine-tune a parent run; give parent=RUN (or --from RUN)")
            if self.train.stepper != "single":
                raise ConfigError("train.stepper: a run with low-rank adapters trains with the single stepper")
        return self

    def _check_vocabulary(self) -> None:
        """Refuse a model that cannot read the task's tokens, or whose outputs are not the task's where that
        matters: a model copied from a parent run (another task's, or a reward model's value head), a task whose
        evaluation reads the output distribution as a distribution over its responses
        (``exact_outputs``), a reward model."""
        from theorylab.tasks import get_task

        defaults = self.task.model_defaults()
        if self.objective.name == "reward_model" and hasattr(self.task, "reward_model_defaults"):
            defaults = {**defaults, **self.task.reward_model_defaults()}
        whose = f" (the model of parent run {self.parent})" if self.parent is not None else ""
        need = defaults.get("d_vocab")
        if need is not None and self.model.d_vocab is not None and self.model.d_vocab < need:
            raise ConfigError(f"model.d_vocab: task {self.task.name!r} has {need} input tokens; the model{whose} "
                              f"reads {self.model.d_vocab}")
        out = defaults.get("d_vocab_out", need)
        exact = self.parent is not None or getattr(get_task(self.task.name), "exact_outputs", False)
        if out is not None and exact and self.model.vocab_out != out:
            raise ConfigError(f"model.d_vocab_out: task {self.task.name!r} writes {out} output tokens; the "
                              f"model{whose} writes {self.model.vocab_out}")

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["task"] = self.task.to_dict()
        for key in ("parent", "parent_step"):  # a run trained from scratch keeps the shorter dict
            if d.get(key) is None:
                d.pop(key, None)
        if d.get("vocabulary") == "parent":  # the default: runs made before the field keep their ids
            d.pop("vocabulary")
        if self.objective == ObjectiveConfig():
            d.pop("objective", None)
        if self.lora == LoraConfig():
            d.pop("lora", None)
        if not d["train"].get("compile", False):  # the default (eager): runs made before the field keep their dicts
            d["train"].pop("compile", None)
        return d

    def run_id(self) -> str:
        """``<task>-<sha>`` of (the config without tags and device, the seed, and the fingerprint of the code
        that decides the run's numbers, :func:`code_fingerprint`): identical reruns by the same code share
        an id; a run made by other model, task or loop code has another id and is never served as this one."""
        d = self.to_dict()
        d.pop("tags", None)
        d["train"].pop("device", None)
        code = code_fingerprint(self.task.name, bool(self.probes), self.lora.enabled, self.objective.name != "task")
        blob = json.dumps({"config": d, "code": code}, sort_keys=True, separators=(",", ":"))
        name = self.task.name
        return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


register_section(TrainConfig, "train")  # errors in it read train.steps: ... (model and task register theirs)


# --------------------------------------------------------------------------- code identity

_PACKAGE = Path(__file__).resolve().parents[1]
# The modules whose code decides a run's numbers (relative to the package); the task's own family
# module and, for runs with probes, the measures are added per run.
_RUN_CODE = ("models/transformer.py", "models/positions.py", "models/hooks.py", "models/config.py",
             "models/objectives.py", "tasks/__init__.py", "tasks/base.py", "runs/loop.py", "runs/steppers.py",
             "runs/probes.py", "runs/objectives.py", "models/preference.py", "models/decoding.py")
_FINGERPRINTS: dict[tuple[str, bool, bool, bool], str] = {}


def _normalized_source(path: Path) -> str:
    """A module's code without comments, docstrings or formatting (its AST with docstrings removed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _task_modules(path: Path) -> set[Path]:
    """``path`` and every module of ``theorylab.tasks`` it imports, directly or through another such module
    (a task built on another task's grammar or sampler: ``pcfg_preference`` on ``percolation``)."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        f = todo.pop()
        if f in seen or not f.exists():
            continue
        seen.add(f)
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("theorylab.tasks."):
                    todo.append(_PACKAGE / "tasks" / f"{name.split('.')[2]}.py")
    return seen


def code_files(task: str, probes: bool, lora: bool = False, objective: bool = False) -> list[Path]:
    """The source files whose code decides the numbers of a run of ``task`` (with or without probes, with or
    without low-rank adapters, with or without an alignment objective, whose evaluation reads the Monte Carlo
    estimators of :mod:`theorylab.measures.alignment`)."""
    import importlib

    from theorylab.tasks import get_task

    files = {_PACKAGE / f for f in _RUN_CODE}
    module = importlib.import_module(get_task(task).__module__)
    if getattr(module, "__file__", None):
        files |= _task_modules(Path(module.__file__).resolve())
    if probes:
        files |= set((_PACKAGE / "measures").glob("*.py"))
    if lora:
        files.add(_PACKAGE / "models" / "lora.py")
    if objective:
        files.add(_PACKAGE / "measures" / "alignment.py")
    return sorted(files)


def code_fingerprint(task: str, probes: bool = False, lora: bool = False, objective: bool = False) -> str:
    """A hash of the code that decides a run's numbers: the model, the loop and steppers, the task's
    family module with the task modules it imports, and the task base (and the measures behind probes), each read as its AST without
    comments and docstrings, so that editing prose changes nothing and editing code changes the run id.
    Computed once per process and task."""
    key = (task, probes, lora, objective)
    if key not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in code_files(task, probes, lora, objective):
            h.update(f.relative_to(_PACKAGE).as_posix().encode() if f.is_relative_to(_PACKAGE) else f.name.encode())
            h.update(_normalized_source(f).encode())
        _FINGERPRINTS[key] = h.hexdigest()[:16]
    return _FINGERPRINTS[key]


def is_stale(config: dict[str, Any], run_id: str) -> bool:
    """Whether a stored run (its config dict and id) was made by other code than this: its config now gives
    another id (or no longer validates).  Claims never use such a run as evidence; ``theorylab runs`` marks it."""
    try:
        return RunConfig.model_validate(config).run_id() != run_id
    except Exception:  # a config the current code cannot read was certainly made by other code
        return True


# --------------------------------------------------------------------------- presets


# --------------------------------------------------------------------------- memory

DEFAULT_ROWS = 64  # the batch most online tasks draw when train.batch_size is none
DATA_BYTES = 8  # per number a task holds (int64 tokens, float64 tables)
_OPTIMIZER_STATES = {"adamw": 2, "adam": 2}  # numbers of state per parameter; SGD: 1 with momentum, else 0


def memory_estimate(cfg: RunConfig) -> MemoryEstimate:
    """A rough estimate of the memory training ``cfg`` needs: the model's
    (:func:`theorylab.models.size.training_memory`; the batch is ``train.batch_size`` rows, or what the task's
    ``rows_per_step()`` says, else :data:`DEFAULT_ROWS`; positions are ``model.n_ctx``) plus the task's data
    (``data_numbers()``)."""
    tc = cfg.train
    rows = tc.batch_size or cfg.task.rows_per_step() or DEFAULT_ROWS
    states = _OPTIMIZER_STATES.get(tc.optimizer, 1 if tc.momentum > 0 else 0)
    est = training_memory(cfg.model, rows=rows, dtype=tc.dtype, optimizer_states=states)
    return dataclasses.replace(est, data=DATA_BYTES * cfg.task.data_numbers())


def check_memory(cfgs: RunConfig | list[RunConfig], available: int | None = None) -> None:
    """Refuse (one ConfigError line) configs that cannot fit: the runs trained together (configs that differ
    only in seed) need more than ``available`` bytes (default: what ``train.device`` has free, see
    :func:`theorylab.models.size.available_memory`).  Only arithmetic on the configs; nothing is allocated."""
    cfgs = [cfgs] if isinstance(cfgs, RunConfig) else list(cfgs)
    groups: dict[str, list[RunConfig]] = {}
    for c in cfgs:
        d = c.to_dict()
        d.pop("seed", None)
        d.pop("tags", None)
        groups.setdefault(json.dumps(d, sort_keys=True), []).append(c)
    for group in groups.values():
        c = group[0]
        est = memory_estimate(c)
        need = est.total * len(group)
        limit, where = (available, "the given limit") if available is not None else available_memory(c.train.device)
        if limit is None or need <= limit:
            continue
        runs = f"{len(group)} runs trained together need" if len(group) > 1 else "this run needs"
        where_most = "task" if est.data > est.total - est.data else "model"  # the section to make smaller
        raise ConfigError(
            f"{where_most}: {runs} about {fmt_bytes(need)} of memory ({est.describe(c.train.optimizer)}"
            f"{' each' if len(group) > 1 else ''}) but {fmt_bytes(limit)} is available ({where}); make "
            f"model.d_model, model.n_layers, model.d_mlp, the task's sizes or train.batch_size smaller")


def preset_names() -> list[str]:
    """Every preset and every bare task name, sorted."""
    return sorted(set(PRESETS) | set(task_names()))


def build_run_config(name: str | None = None, overrides: str | list[str] | None = None,
                     config_file: str | Path | None = None, seed: int | None = None,
                     parent: tuple[str, dict[str, Any]] | None = None) -> RunConfig:
    """Preset (or bare task name) <- config file <- parent <- key=value overrides <- seed.

    ``overrides`` is a list of ``"key=value"`` strings or one such string (one override).  ``parent``: a stored
    run's ``(run id, config dict)`` to fine-tune: the new run starts from it and keeps its model section, and
    its task section when the task is the parent's (a preset's or config file's task fields go on top; a task
    field ``*_seed`` left at none, meaning "the run seed" (``bios.world_seed``, ``knowledge_graph.graph_seed``),
    becomes the parent's seed, so the child sees the parent's world whatever its own seed).  A
    config whose training would not fit in the memory ``train.device`` has free is refused
    (:func:`check_memory`)."""
    data: dict[str, Any] = {}
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"task: give a task or preset name (a string) or None (got a {type(name).__name__}); "
                          f"known: {', '.join(preset_names())}")
    overrides = override_list(overrides)
    if name is not None:
        if name in PRESETS:
            data = PRESETS[name]["config"]
        elif name in task_names():
            data = {"task": {"name": name}, "model": {}}
        else:
            raise ConfigError(f"task: unknown task or preset {name!r}; known: {', '.join(preset_names())}")
    if config_file is not None:
        data = deep_merge(data, load_file(config_file))
    if parent is not None:  # the parent's model, and its task when the task is the parent's
        data = {**data, "model": dict(parent[1].get("model", {})), "parent": parent[0]}
        ptask = dict(parent[1].get("task", {}))
        if isinstance(data.get("task"), dict) and data["task"].get("name") == ptask.get("name"):
            for key in [k for k, v in ptask.items() if k.endswith("_seed") and v is None]:
                ptask[key] = parent[1].get("seed", 0)  # the parent's world (none = the run seed), whatever the child's
            data["task"] = deep_merge(ptask, data["task"])  # a preset's or file's task fields go on top
    data = apply_overrides(data, overrides)
    if seed is not None:
        data["seed"] = seed
    if "task" not in data:
        raise ConfigError("task: required (give a task or preset name, or a config file with a task section)")
    data.setdefault("model", {})
    cfg = validate(RunConfig, data)
    check_memory(cfg)  # before anything is built: an absurd size is refused, not allocated
    return cfg
