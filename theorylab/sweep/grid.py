"""Grids of run configs: every combination of the axes, for every seed."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from theorylab.config import apply_overrides, validate
from theorylab.errors import ConfigError
from theorylab.runs import RunConfig, build_run_config


def grid(base: Any, axes: dict[str, Sequence[Any]] | None = None, seeds: int | Sequence[int] = 1) -> list:
    """The product of ``axes`` (``{"train.weight_decay": [0, 1], "task.p": [59, 97]}``) over
    ``seeds`` applied to ``base`` (a preset or task name, or a RunConfig)."""
    axes = dict(axes or {})
    for k, vals in axes.items():
        if isinstance(vals, (str, bytes)) or not isinstance(vals, Iterable):
            raise ConfigError(f"grid axis {k}: give a list of values")
        if len(list(vals)) == 0:
            raise ConfigError(f"grid axis {k}: the list of values is empty")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigError("seeds: give at least one seed")
    keys = list(axes)
    out = []
    for combo in itertools.product(*(list(axes[k]) for k in keys)):
        ov = [f"{k}={_fmt(v)}" for k, v in zip(keys, combo)]
        for s in seed_list:
            if isinstance(base, RunConfig):
                data = apply_overrides(base.to_dict(), ov)
                data["seed"] = s
                out.append(validate(RunConfig, data))
            else:
                out.append(build_run_config(base, ov, seed=s))
    return out


def _fmt(v: Any) -> str:
    import json

    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)
