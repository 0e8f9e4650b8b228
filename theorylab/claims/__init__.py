"""The claims registry.  A claim module defines Claim subclasses decorated with
:func:`register_claim` and is listed in ``_BUILTIN`` below (one line per module)."""

from __future__ import annotations

import importlib
import re

from theorylab.claims.base import (
    TIERS,
    Citation,
    Claim,
    Criterion,
    Evidence,
    Rule,
    Stat,
    Tier,
    all_of,
    summarize,
)
from theorylab.errors import ConfigError

CLAIMS: dict[str, Claim] = {}
_ID = re.compile(r"^[a-z][a-z0-9_]*[0-9]{4}[a-z]?\.[a-z0-9_]+$")


def register_claim(cls: type[Claim]) -> type[Claim]:
    """Class decorator: validate the declaration and add one instance to the registry."""
    for attr in ("id", "title", "citation", "statement", "rule"):
        if not getattr(cls, attr, None):
            raise ValueError(f"claim {cls.__name__} must declare {attr}")
    if not _ID.match(cls.id):
        raise ValueError(f"claim id {cls.id!r} must look like 'author2023.short_name'")
    if cls.id in CLAIMS and type(CLAIMS[cls.id]) is not cls:
        raise ValueError(f"claim id {cls.id!r} is registered twice")
    for tier, sizes in cls.tiers.items():
        if tier not in TIERS:
            raise ValueError(f"claim {cls.id}: unknown tier {tier!r}")
        if not isinstance(sizes, Tier):
            raise ValueError(f"claim {cls.id}: tier {tier!r} must be a Tier (a typed model of the family's sizes), "
                             f"not {type(sizes).__name__}")
    CLAIMS[cls.id] = cls()
    return cls


_BUILTIN: list[str] = [
    # one line per paper module (theorylab/claims/papers/<author><year>.py)
    "theorylab.claims.papers.nanda2023",
    "theorylab.claims.papers.power2022",
    "theorylab.claims.papers.wang2024",
    "theorylab.claims.papers.chiang2022",
    "theorylab.claims.papers.hahn2020",
    "theorylab.claims.papers.deletang2023",
    "theorylab.claims.papers.olsson2022",
    "theorylab.claims.papers.garg2022",
    "theorylab.claims.papers.bu2024",
    "theorylab.claims.papers.bietti2023",
    "theorylab.claims.papers.hoffmann2022",
    "theorylab.claims.papers.besiroglu2024",
    "theorylab.claims.papers.czech2026",
    "theorylab.claims.papers.schaeffer2023",
    "theorylab.claims.papers.lubana2025",
    "theorylab.claims.papers.erdos1960",
    "theorylab.claims.papers.rafailov2023",
    "theorylab.claims.papers.azar2024",
    "theorylab.claims.papers.gao2023",
    "theorylab.claims.papers.allenzhu2023a",
    "theorylab.claims.papers.allenzhu2023b",
    "theorylab.claims.papers.allenzhu2024",
    "theorylab.claims.papers.giannou2023",
    "theorylab.claims.papers.perez2021",
]
_loaded = False


def load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN:
        importlib.import_module(mod)


def get_claim(claim_id: str) -> Claim:
    load_builtin()
    if claim_id not in CLAIMS:
        raise ConfigError(f"claim {claim_id!r}: unknown; known claims: {', '.join(sorted(CLAIMS)) or '(none)'}")
    return CLAIMS[claim_id]


def claim_ids() -> list[str]:
    load_builtin()
    return sorted(CLAIMS)


__all__ = [
    "CLAIMS", "TIERS", "Tier", "Citation", "Claim", "Criterion", "Evidence", "Rule", "Stat", "all_of", "summarize",
    "register_claim", "get_claim", "claim_ids", "load_builtin",
]
