"""Figures of the knowledge claims (Allen-Zhu & Li, Parts 3.1-3.3): bits stored against parameters (3.3), and
accuracies per arm against their chance level (held-out extraction per augmentation, probes, manipulations).

Plain data in (per exposure count, the grid's points with their parameters and bits), a matplotlib Figure out
(Agg); the caller saves it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402


def bits_vs_params(points: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "bits stored vs parameters"):
    """Bits stored (log axis) against parameters (log axis), one marker series per exposure count (the keys of
    ``points``; each point a mapping with ``params``, ``bits`` and ``bound``, the data's bits), with the lines
    bits = 1 and 2 x parameters (the paper's ratios at 100 and 1,000 exposures) and each point's data bound as a
    faint tick."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    allp = []
    for e, pts in sorted(points.items(), key=lambda x: float(x[0])):
        p = np.array([float(x["params"]) for x in pts])
        b = np.array([max(float(x["bits"]), 1e-9) for x in pts])
        allp += list(p)
        ax.scatter(p, b, s=30, zorder=3, label=f"{e} exposures")
        ax.scatter(p, [float(x["bound"]) for x in pts], marker="_", s=120, color="0.6", zorder=2)
    if allp:
        xs = np.geomspace(min(allp) / 1.5, max(allp) * 1.5, 20)
        for r, style in ((2.0, "--"), (1.0, ":")):
            ax.plot(xs, r * xs, style, color="k", lw=1, label=f"{r:g} bits / parameter")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters (all, embeddings included)")
    ax.set_ylabel("knowledge stored (bits)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_bars(values: Mapping[str, Sequence[float]], ylabel: str, lines: Mapping[str, float] | None = None,
                  title: str = ""):
    """One bar per group (the mean over seeds; ``values`` maps a label to its per-seed accuracies, NaNs
    skipped) with each seed as a dot, on a 0-1 axis, and a dashed horizontal line per entry of ``lines`` (label ->
    accuracy: a chance level, a threshold; NaN skipped)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(values) + 2.0), 4.0))
    for i, vals in enumerate(values.values()):
        v = np.asarray([float(x) for x in vals if x == x], dtype=float)
        if len(v):
            ax.bar(i, v.mean(), color=f"C{i % 10}", alpha=0.4, width=0.6)
            ax.scatter(np.full(len(v), i), v, color=f"C{i % 10}", s=18, zorder=3)
    for j, (label, y) in enumerate((lines or {}).items()):
        if y == y:
            ax.axhline(float(y), color="k", ls=("--", ":", "-.")[j % 3], lw=1, label=f"{label} ({float(y):.2f})")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(list(values), fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    if lines:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.25)
    fig.tight_layout()
    return fig
