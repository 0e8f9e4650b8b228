"""Task registry: every synthetic task family, by name.

Register a family with :func:`register_task`; look it up with :func:`get_task`.
Adding a family = one module here that calls ``register_task`` and one import line below.
"""

from __future__ import annotations

from theorylab.errors import ConfigError
from theorylab.tasks.base import IGNORE, Batch, Task, TaskConfig, step_rng, token_cross_entropy, token_metrics

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: add a Task subclass to the registry under its config's name."""
    name = cls.Config.model_fields["name"].default
    if not name:
        raise ValueError(f"{cls.__name__}.Config needs a default name")
    if name in TASKS and TASKS[name] is not cls:
        raise ValueError(f"task name {name!r} is registered twice")
    TASKS[name] = cls
    return cls


def get_task(name: str) -> type[Task]:
    _load_builtin()
    if name not in TASKS:
        raise ConfigError(f"task: unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_names() -> list[str]:
    _load_builtin()
    return sorted(TASKS)


def build_task_config(data: dict) -> TaskConfig:
    from theorylab.config import validate

    if not isinstance(data, dict) or "name" not in data:
        raise ConfigError(f"task.name: required; known tasks: {', '.join(task_names())}")
    cls = get_task(str(data["name"]))
    return validate(cls.Config, data, prefix="task.")


def make_task(cfg: TaskConfig, seed: int = 0) -> Task:
    return get_task(cfg.name)(cfg, seed)


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for mod in _BUILTIN:
        importlib.import_module(f"theorylab.tasks.{mod}")


# One line per built-in task module (each registers its families when imported).
_BUILTIN = [
    "modular",
    "graphs",
    "lm",
    "markov",
    "addition",
    "recall",
    "induction",
    "icl_regression",
    "concepts",
    "formal",
    "bietti",
    "knowledge_graph",
    "percolation",
    "preference",
    "pcfg_preference",
    "bios",
    "subleq",
]

__all__ = [
    "IGNORE", "Batch", "Task", "TaskConfig", "TASKS", "register_task", "get_task", "task_names",
    "build_task_config", "make_task", "step_rng", "token_cross_entropy", "token_metrics",
]
