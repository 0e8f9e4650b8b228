"""Probes: measurements of a model's internals that a run logs at every evaluation.

A task's :meth:`~theorylab.tasks.Task.metrics` scores the model's *outputs* against the task's
ground truth; a probe reads what is *inside* the model (attention patterns, weights) with a
function from :mod:`theorylab.measures`.  A run config lists its probes (``probes: [...]``;
presets declare the ones their papers read), and the training loop evaluates each one on every
evaluation split: while the task's metrics run the model on a chunk of the split, the hooks a
probe asks for are recorded, and the probe turns them into ``{name: value}`` logged as
``split/name`` beside the task's metrics (averaged over chunks like them).  A probe without hooks
reads only the weights and is evaluated once per split.

Register your own with :func:`register_probe`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from theorylab.errors import ConfigError
from theorylab.measures.icl import concept_weight_alignment, same_label_attention
from theorylab.measures.induction import (
    memory_recall_probes,
    prefix_matching_score,
    previous_token_after_trigger_score,
    previous_token_score,
    trigger_induction_score,
)

ProbeFn = Callable[..., dict[str, float]]


@dataclass(frozen=True)
class Probe:
    """A named measurement of a model's internals, logged at every evaluation.

    ``fn(model, task, batch, cache) -> {name: value}``; ``cache`` maps each recorded hook name
    (those ending in one of ``hooks``, e.g. ``"attn.hook_pattern"``) to its activation from the
    task's last forward pass on ``batch``.  ``tasks`` restricts the probe to those task names
    (empty: any task); ``splits`` to those evaluation splits (empty: every split).
    """

    name: str
    fn: ProbeFn
    description: str
    hooks: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()


PROBES: dict[str, Probe] = {}


def register_probe(probe: Probe) -> Probe:
    if probe.name in PROBES and PROBES[probe.name] != probe:
        raise ValueError(f"probe {probe.name!r} is registered twice")
    PROBES[probe.name] = probe
    return probe


def check_probes(names: list[str], task: str) -> None:
    """Raise one ConfigError line for an unknown probe or one that does not apply to ``task``."""
    for n in names:
        if n not in PROBES:
            raise ConfigError(f"probes: unknown probe {n!r}; known: {', '.join(sorted(PROBES))}")
        allowed = PROBES[n].tasks
        if allowed and task not in allowed:
            raise ConfigError(f"probes: {n!r} applies to task {', '.join(allowed)}, not {task!r}")


@contextmanager
def record(model: torch.nn.Module, probes: list[Probe]) -> Iterator[dict[str, torch.Tensor]]:
    """``with record(model, probes) as cache:`` records, while the block runs, every hook whose name
    ends in one of the probes' ``hooks`` (the last activation per hook name, detached)."""
    suffixes = tuple(s for p in probes for s in p.hooks)
    cache: dict[str, torch.Tensor] = {}
    if not suffixes:
        yield cache
        return

    def save(x: torch.Tensor, hp: Any) -> None:
        cache[hp.name] = x.detach()

    with model.hooks([(lambda n: n.endswith(suffixes), save)]):
        yield cache


def _patterns(cache: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    """(layer index, pattern) in layer order from a cache of ``blocks.{i}.attn.hook_pattern``."""
    items = [(name.split(".")[1], pat) for name, pat in cache.items() if name.endswith("attn.hook_pattern")
             and name.startswith("blocks.")]
    return sorted(items, key=lambda x: int(x[0]))


# --------------------------------------------------------------------------- built-in probes


def _induction_heads(model, task, batch, cache) -> dict[str, float]:
    """Olsson et al. 2022: per layer, the best head's prefix-matching and previous-token score."""
    out = {}
    for layer, pat in _patterns(cache):
        out[f"prefix_matching_l{layer}"] = float(prefix_matching_score(batch.tokens, pat).max())
        out[f"prev_token_score_l{layer}"] = float(previous_token_score(batch.tokens, pat).max())
    return out


def _trigger_heads(model, task, batch, cache) -> dict[str, float]:
    """Bietti et al. 2023: per layer, the best head's previous-token score (over all positions and
    right after triggers) and trigger induction score."""
    out = {}
    kind = batch.extras["kind"]
    for layer, pat in _patterns(cache):
        out[f"prev_token_score_l{layer}"] = float(previous_token_score(batch.tokens, pat).max())
        out[f"trigger_induction_score_l{layer}"] = float(trigger_induction_score(batch.tokens, pat, kind).max())
        out[f"prev_token_after_trigger_l{layer}"] = float(
            previous_token_after_trigger_score(batch.tokens, pat, task.triggers).max())
    return out


def _memory_recall(model, task, batch, cache) -> dict[str, float]:
    """Bietti et al. 2023's memory-recall probes, read from the weights (two-layer attention-only models)."""
    if not getattr(model.cfg, "attn_only", False):
        return {}
    return memory_recall_probes(model, task.triggers)


def _concept_attention(model, task, batch, cache) -> dict[str, float]:
    pat = cache.get("blocks.0.attn.hook_pattern")
    if pat is None:
        return {}
    return {"attn_same_label": same_label_attention(pat, batch.extras["demo_labels"], batch.targets)}


def _concept_alignment(model, task, batch, cache) -> dict[str, float]:
    return concept_weight_alignment(model, task.directions())


register_probe(Probe("induction_heads", _induction_heads,
                     "per layer: best head's prefix-matching and previous-token score (Olsson et al. 2022)",
                     hooks=("attn.hook_pattern",)))
register_probe(Probe("trigger_heads", _trigger_heads,
                     "per layer: previous-token and trigger induction scores (Bietti et al. 2023)",
                     hooks=("attn.hook_pattern",), tasks=("bigram_triggers",)))
register_probe(Probe("memory_recall", _memory_recall,
                     "memory-recall probes read from the weights (Bietti et al. 2023)", tasks=("bigram_triggers",)))
register_probe(Probe("concept_attention", _concept_attention,
                     "the query's attention on same-label demonstrations (Bu et al. 2024)",
                     hooks=("attn.hook_pattern",), tasks=("concepts",)))
register_probe(Probe("concept_alignment", _concept_alignment,
                     "MLP input weights against the concept dictionary, and the MLP norm (Bu et al. 2024)",
                     tasks=("concepts",)))

__all__ = ["Probe", "PROBES", "register_probe", "check_probes", "record"]
