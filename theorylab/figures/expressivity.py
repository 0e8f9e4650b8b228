"""Figures of the expressivity claims (Hahn 2020; Chiang & Cholak 2022), from per-length curves.

A curve is ``{"ns": [...], "ce": [...], "acc": [...], "sens": [...], "avg_sens": [...]}`` as
:func:`theorylab.measures.sensitivity.construction_curves` returns it (cross-entropy in bits per string,
per-bit sensitivity in nats, average sensitivity in decisive bits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def cross_entropy_vs_n(curves: dict[str, dict[str, Any]], title: str) -> Figure:
    """Cross-entropy (bits per string) against the input length, one line per labelled curve."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, c in curves.items():
        ax.plot(c["ns"], c["ce"], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("input length n (bits, log scale)")
    ax.set_ylabel("cross-entropy (bits per string)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def sensitivity_vs_n(curves: dict[str, dict[str, Any]], slopes: dict[str, float], title: str) -> Figure:
    """Per-bit sensitivity against n on log-log axes, each label with its fitted slope."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, c in curves.items():
        ax.loglog(c["ns"], c["sens"], marker="o", label=f"{label} (slope {slopes[label]:.2f})")
    ax.set_xlabel("input length n (bits, log scale)")
    ax.set_ylabel("mean |change of logit gap| per bit flip (nats, log scale)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def average_sensitivity_vs_n(curves: dict[str, dict[str, Any]], title: str) -> Figure:
    """Average sensitivity (decisive bits) against n, with PARITY's own (= n) for reference."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ns: Sequence[int] = []
    for label, c in curves.items():
        ax.plot(c["ns"], c["avg_sens"], marker="o", label=label)
        ns = c["ns"]
    ax.plot(ns, ns, linestyle="--", color="gray", label="PARITY itself (= n)")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("input length n (bits, log scale)")
    ax.set_ylabel("average sensitivity (decisive bits)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def accuracy_vs_length(curves: dict[str, Sequence[dict[str, Any]]], title: str, log_x: bool = True,
                       ylim: tuple[float, float] | None = (0, 1.02), ylabel: str = "accuracy") -> Figure:
    """A per-length quantity (mean over seeds; accuracy by default) against the test length, one line per
    label; ``curves[label]`` holds one ``{"lengths", "acc"}`` per seed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    n_seeds = 0
    for label, per_seed in curves.items():
        acc = np.mean([c["acc"] for c in per_seed], axis=0)
        n_seeds = len(per_seed)
        ax.plot(per_seed[0]["lengths"], acc, marker="o", ls="-" if "sinusoidal" in label else "--", label=label)
    if log_x:
        ax.set_xscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("test length n" + (" (log scale)" if log_x else ""))
    ax.set_ylabel(f"{ylabel} (mean over {n_seeds} seeds)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["cross_entropy_vs_n", "sensitivity_vs_n", "average_sensitivity_vs_n", "accuracy_vs_length"]
