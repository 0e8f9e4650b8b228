"""Typed, validated configuration shared by every part of theorylab.

A run is described by a :class:`RunConfig` made of three parts:

* ``task``  - a task config; its ``name`` selects the task family from the registry,
* ``model`` - a :class:`theorylab.models.TransformerConfig`,
* ``train`` - a :class:`TrainConfig`,

plus the ``seed``.  Configs load from YAML or JSON files and take command-line
overrides written ``key=value`` with dotted keys (``model.d_model=64``).  Every
problem is reported as one :class:`~theorylab.errors.ConfigError` line naming the
field and what is allowed, before anything runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from theorylab.errors import ConfigError


class Config(BaseModel):
    """Base for every theorylab config: strict keys, validated on assignment, JSON-able."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads true/false as 1/0; a boolean where a number belongs is a mistake.
        if isinstance(v, bool) and info.field_name in cls.model_fields:
            ann = cls.model_fields[info.field_name].annotation
            kinds = set(get_args(ann)) or {ann}
            if bool not in kinds and kinds & {int, float}:
                raise ValueError("must be a number, not true/false")
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem; the first names the field and the rule it broke."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith("function-"))
        loc = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "config"
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        got = e.get("input")
        if e["type"] not in ("extra_forbidden", "missing") and not isinstance(got, dict):
            msg = f"{msg} (got {got!r})"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def validate(cls: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """Build ``cls`` from ``data`` and turn any validation problem into a ConfigError."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, prefix)) from None


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
    checkpoint_every: int | None = Field(None, gt=0, description="none = only at the end")
    keep_checkpoints: Literal["last", "all"] = "last"
    early_stop_metric: str | None = Field(None, description="e.g. 'test/accuracy'")
    early_stop_value: float | None = None
    early_stop_mode: Literal["max", "min"] = "max"
    dtype: Literal["float32", "float64"] = "float32"
    device: str = Field("cpu", description="cpu, cuda, cuda:N, mps or auto (cuda when available)")

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


# --------------------------------------------------------------------------- files and overrides


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict (one clear error if it does not parse)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r}: no such file")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"config file {str(p)!r} does not parse: {first}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r}: top level must be a mapping of sections")
    return data


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``key=value`` as YAML (numbers, bools, lists, null)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b.c=value`` applied."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. model.d_model=64")
        key, _, raw = item.partition("=")
        keys = [k for k in key.strip().split(".") if k]
        if not keys:
            raise ConfigError(f"override {item!r}: empty key")
        node = out
        for k in keys[:-1]:
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a section")
            node = nxt
        node[keys[-1]] = parse_value(raw)
    return out


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
