"""RunConfig (task + model + train + seed), presets, and building one from CLI input."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from theorylab.config import Config, ConfigError, apply_overrides, deep_merge, load_file, validate
from theorylab.models.config import TransformerConfig
from theorylab.runs.presets import PRESETS
from theorylab.tasks import TaskConfig, build_task_config, task_names


class TrainConfig(Config):
    """How a run trains: optimizer, schedule, batching, evaluation and checkpoints."""

    steps: int = Field(1000, gt=0, description="optimizer steps")
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum")
    eps: float = Field(1e-8, gt=0)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr / lr for cosine and linear decay")
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm; none = no clipping")
    batch_size: int | None = Field(
        None, gt=0, description="examples per step; none = full batch over the train split"
    )
    eval_every: int = Field(100, gt=0)
    eval_batch_size: int = Field(4096, gt=0)
    checkpoint_every: int | None = Field(None, gt=0, description="checkpoint every this many steps (and at the "
                                                                "end); none = by checkpoint_minutes and at the end")
    checkpoint_minutes: float | None = Field(
        5.0, gt=0, description="also checkpoint once this many minutes of training have passed since the last "
                               "checkpoint, so a kill loses at most about this much work on any hardware; "
                               "none = by steps only")
    keep_checkpoints: Literal["last", "all"] = "last"
    early_stop_metric: str | None = Field(None, description="e.g. 'test/accuracy'")
    early_stop_value: float | None = None
    early_stop_mode: Literal["max", "min"] = "max"
    dtype: Literal["float32", "float64"] = "float32"
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



class RunConfig(Config):
    """Everything that determines one run.  Its hash (with the code version) is the run id."""

    task: TaskConfig
    model: TransformerConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    seed: int = Field(0, ge=0)
    probes: list[str] = Field(default_factory=list,
                              description="measurements of the model's internals logged at every evaluation "
                                          "(theorylab.runs.probes)")
    tags: dict[str, str] = Field(default_factory=dict, description="free labels; not part of the run id")

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
            model = {**task.model_defaults(), **model}
            data = {**data, "model": validate(TransformerConfig, model, prefix="model.")}
        return data

    @model_validator(mode="after")
    def _check_probes(self) -> RunConfig:
        from theorylab.runs.probes import check_probes

        check_probes(self.probes, self.task.name)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["task"] = self.task.to_dict()
        return d

    def run_id(self) -> str:
        """``<task>-<sha>`` of (the config without tags and device, the seed, and the fingerprint of the code
        that decides the run's numbers, :func:`code_fingerprint`): identical reruns by the same code share
        an id; a run made by other model, task or loop code has another id and is never served as this one."""
        d = self.to_dict()
        d.pop("tags", None)
        d["train"].pop("device", None)
        code = code_fingerprint(self.task.name, bool(self.probes))
        blob = json.dumps({"config": d, "code": code}, sort_keys=True, separators=(",", ":"))
        name = self.task.name
        return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


# --------------------------------------------------------------------------- code identity

_PACKAGE = Path(__file__).resolve().parents[1]
# The modules whose code decides a run's numbers (relative to the package); the task's own family
# module and, for runs with probes, the measures are added per run.
_RUN_CODE = ("models/transformer.py", "models/positions.py", "models/hooks.py", "models/config.py",
             "models/objectives.py", "tasks/__init__.py", "tasks/base.py", "runs/loop.py", "runs/steppers.py",
             "runs/probes.py")
_FINGERPRINTS: dict[tuple[str, bool], str] = {}


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


def code_files(task: str, probes: bool) -> list[Path]:
    """The source files whose code decides the numbers of a run of ``task`` (with or without probes)."""
    import importlib

    from theorylab.tasks import get_task

    files = {_PACKAGE / f for f in _RUN_CODE}
    module = importlib.import_module(get_task(task).__module__)
    if getattr(module, "__file__", None):
        files.add(Path(module.__file__).resolve())
    if probes:
        files |= set((_PACKAGE / "measures").glob("*.py"))
    return sorted(files)


def code_fingerprint(task: str, probes: bool = False) -> str:
    """A hash of the code that decides a run's numbers: the model, the loop and steppers, the task's
    family module and the task base (and the measures behind probes), each read as its AST without
    comments and docstrings, so that editing prose changes nothing and editing code changes the run id.
    Computed once per process and task."""
    key = (task, probes)
    if key not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in code_files(task, probes):
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


def preset_names() -> list[str]:
    """Every preset and every bare task name, sorted."""
    return sorted(set(PRESETS) | set(task_names()))


def build_run_config(name: str | None = None, overrides: list[str] | None = None,
                     config_file: str | None = None, seed: int | None = None) -> RunConfig:
    """Preset (or bare task name) <- config file <- key=value overrides <- seed."""
    data: dict[str, Any] = {}
    if name is not None:
        if name in PRESETS:
            data = PRESETS[name]["config"]
        elif name in task_names():
            data = {"task": {"name": name}, "model": {}}
        else:
            raise ConfigError(f"task: unknown task or preset {name!r}; known: {', '.join(preset_names())}")
    if config_file is not None:
        data = deep_merge(data, load_file(config_file))
    data = apply_overrides(data, overrides or [])
    if seed is not None:
        data["seed"] = seed
    if "task" not in data:
        raise ConfigError("task: required (give a task or preset name, or a config file with a task section)")
    data.setdefault("model", {})
    return validate(RunConfig, data)
