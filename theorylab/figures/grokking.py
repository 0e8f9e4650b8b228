"""Figures of grokking on modular addition (Nanda et al. 2023, Figs. 2, 5, 7), from plain series.

``curves`` are per-seed dicts ``{"steps", "train_loss", "test_loss", ...}`` (one evaluation per step),
``fourier`` per-seed dicts of :func:`theorylab.measures.fourier.measure_checkpoints`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from theorylab.measures.fourier import basis_labels  # noqa: E402

PHASE_COLORS = (("memorization_end", "tab:purple"), ("circuit_formation_end", "tab:orange"),
                ("cleanup_end", "tab:green"))


def losses(curves: Sequence[dict[str, Any]], no_weight_decay: Sequence[dict[str, Any]] = ()) -> Figure:
    """Train and test loss over log-scaled steps (one line per seed); the test loss of runs without
    weight decay dashed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, c in enumerate(curves):
        st = np.maximum(np.asarray(c["steps"]), 1)
        ax.plot(st, c["train_loss"], color="tab:blue", alpha=0.7, label="train" if i == 0 else None)
        ax.plot(st, c["test_loss"], color="tab:red", alpha=0.7, label="test" if i == 0 else None)
    for i, c in enumerate(no_weight_decay):
        st = np.maximum(np.asarray(c["steps"]), 1)
        ax.plot(st, c["test_loss"], color="tab:gray", ls="--", alpha=0.7,
                label="test, no weight decay" if i == 0 else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step (full-batch epochs)")
    ax.set_ylabel("cross-entropy loss (nats)")
    ax.set_title("Train and test loss")
    ax.legend()
    fig.tight_layout()
    return fig


def _phase_lines(ax, phases: dict[str, Any]) -> None:
    for key, color in PHASE_COLORS:
        st = phases.get(key, {}).get("step")
        if st is not None:
            ax.axvline(st, color=color, ls=":", lw=1, label=key.replace("_", " "))


def restricted_excluded(fourier: Sequence[dict[str, Any]], phases: dict[str, Any] | None = None) -> Figure:
    """Restricted and excluded loss with train and test loss per seed; the phase boundaries of the first."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, fm in enumerate(fourier):
        lab = (lambda x: x) if i == 0 else (lambda x: None)
        ax.plot(fm["steps"], fm["train_loss"], color="tab:blue", alpha=0.6, label=lab("train"))
        ax.plot(fm["steps"], fm["test_loss"], color="tab:red", alpha=0.6, label=lab("test"))
        ax.plot(fm["steps"], fm["restricted_loss"], color="tab:green", alpha=0.8, label=lab("restricted"))
        ax.plot(fm["steps"], fm["excluded_loss"], color="tab:orange", alpha=0.8, label=lab("excluded (train)"))
    if phases:
        _phase_lines(ax, phases)
    ax.set_yscale("log")
    ax.set_xlabel("step (full-batch epochs)")
    ax.set_ylabel("cross-entropy loss (nats)")
    ax.set_title("Restricted and excluded loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def gini_weight_norm(fourier: Sequence[dict[str, Any]]) -> Figure:
    """Gini of the Fourier norms (W_E, W_L) and the sum of squared weights, per seed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax2 = ax.twinx()
    for i, fm in enumerate(fourier):
        first = i == 0
        ax.plot(fm["steps"], fm["gini_embed"], color="tab:blue", alpha=0.7, label="Gini W_E" if first else None)
        ax.plot(fm["steps"], fm["gini_neuron_logit"], color="tab:cyan", alpha=0.7,
                label="Gini W_L" if first else None)
        ax2.plot(fm["steps"], fm["weight_norm_sq"], color="tab:red", alpha=0.7,
                 label="sum of squared weights" if first else None)
    ax.set_xlabel("step (full-batch epochs)")
    ax.set_ylabel("Gini coefficient of Fourier norms (0-1)")
    ax2.set_ylabel("sum of squared weights")
    ax.set_title("Sparsity in the Fourier basis and weight norm")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7)
    fig.tight_layout()
    return fig


def spectrum(norms: Sequence[float], key_frequencies: Sequence[int], label: str = "") -> Figure:
    """Norm of each Fourier component of an embedding (const, cos k, sin k), key frequencies in red."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    p = len(norms)
    keys = set(key_frequencies)
    colors = ["tab:red" if j > 0 and (j + 1) // 2 in keys else "tab:blue" for j in range(p)]
    ax.bar(range(p), norms, color=colors)
    labels = basis_labels(p)
    ticks = [j for j in range(p) if j == 0 or (j + 1) // 2 in keys]
    ax.set_xticks(ticks)
    ax.set_xticklabels([labels[j] for j in ticks], rotation=90, fontsize=7)
    ax.set_title(f"Fourier norms of W_E at the end ({label}); key frequencies {sorted(keys)} in red")
    ax.set_xlabel("Fourier component (const, cos k, sin k)")
    ax.set_ylabel("norm of the component")
    fig.tight_layout()
    return fig


__all__ = ["losses", "restricted_excluded", "gini_weight_norm", "spectrum"]
