"""Typed, validated configuration shared by every part of theorylab.

Every config is a :class:`Config` (pydantic, unknown keys rejected, validated on
assignment).  A run's config (:class:`theorylab.runs.RunConfig`) is made of a task config,
a :class:`theorylab.models.TransformerConfig` and a :class:`theorylab.runs.TrainConfig`.  Configs load from YAML or JSON files and take command-line
overrides written ``key=value`` with dotted keys (``model.d_model=64``).  Every
problem is reported as one :class:`~theorylab.errors.ConfigError` line naming the
field and what is allowed, before anything runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, get_args

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from theorylab.errors import ConfigError

SEED_LIMIT = 2**63  # seeds are stored as SQLite integers (signed 64-bit): 0..2**63-1


def check_seed(v: int) -> int:
    if not 0 <= v < SEED_LIMIT:
        raise ValueError("a seed must lie in 0..2**63-1")
    return v


Seed = Annotated[int, AfterValidator(check_seed)]
"""The type of every seed field (a run's seed, a task's data or chain seed): an integer in 0..2**63-1."""


class Config(BaseModel):
    """Base for every theorylab config: strict keys, validated on assignment, JSON-able.

    Every float field is finite: NaN and infinities (``.nan``, ``.inf`` in YAML, ``NaN`` in JSON) are
    refused unless a field opts in with ``Field(..., allow_inf_nan=True)``; every int field holds a signed
    64-bit integer."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    # Bad values are one ConfigError line naming the field however they arrive: built directly
    # (``TrainConfig(steps=0)``), assigned (``cfg.train.steps = -1``) or copied (``model_copy(update=...)``).
    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, type(self).section_prefix())) from None

    # pydantic calls a model's own __init__ for nested and model_validate input too; this marker (pydantic's
    # own, on BaseModel.__init__) keeps that path on pydantic's validation, whose errors validate() formats.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        missing = object()
        before = self.__dict__.get(name, missing)
        try:
            super().__setattr__(name, value)
        except ValidationError as err:
            if before is not missing:  # a model-level rule fails after pydantic has set the field: undo it
                self.__dict__[name] = before
            raise ConfigError(format_validation_error(err, type(self).section_prefix())) from None

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any:
        """A copy; with ``update`` the result is validated like any other config (pydantic's copy is not)."""
        if not update:
            return super().model_copy(deep=deep)
        data = self.to_dict()
        data.update({k: v.to_dict() if isinstance(v, Config) else v for k, v in update.items()})
        return validate(type(self), data, type(self).section_prefix())

    @classmethod
    def section_prefix(cls) -> str:
        """``"train."`` for the config that sits under ``train`` in a run config (see :func:`register_section`)."""
        for k in cls.__mro__:
            if k in _SECTIONS:
                return _SECTIONS[k] + "."
        return ""

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

    @field_validator("*", mode="after")
    @classmethod
    def _int64(cls, v: Any) -> Any:
        # every integer is a signed 64-bit one: the store keeps them as SQLite integers, torch as int64
        if type(v) is int and not -SEED_LIMIT <= v < SEED_LIMIT:
            raise ValueError("must lie within a signed 64-bit integer (-2**63..2**63-1)")
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


_SECTIONS: dict[type, str] = {}


def register_section(cls: type[Config], name: str) -> None:
    """Name the key a config class (and its subclasses) sits under in a run config, so that errors in it
    read ``train.steps: ...`` wherever it is validated."""
    _SECTIONS[cls] = name


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


# --------------------------------------------------------------------------- files and overrides


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file (UTF-8) into a dict (one clear error if it cannot be read, is not
    UTF-8 or does not parse)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r}: no such file")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {err.strerror or type(err).__name__}") from None
    try:
        text = raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is allowed and dropped
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                          f"{err.start}); save it as UTF-8") from None
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


def override_list(overrides: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Overrides as a list: ``None`` is none, one string is one override (``"train.steps=5"``, never its
    characters), a list or tuple of strings is itself; anything else is one ConfigError line."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not isinstance(overrides, (list, tuple)):
        raise ConfigError(f"overrides: give 'key=value' strings, as a list or one string (got a "
                          f"{type(overrides).__name__}: {overrides!r})")
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError(f"override {item!r}: expected a 'key=value' string, e.g. 'model.d_model=64'")
    return list(overrides)


def apply_overrides(data: dict[str, Any], overrides: str | list[str] | None) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b.c=value`` applied (one string is one override)."""
    out = copy.deepcopy(data)
    for item in override_list(overrides):
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
