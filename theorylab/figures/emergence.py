"""Figures of emergence studies: each metric against the scale axis (Schaeffer et al.'s comparison of metrics
on the same outputs), accuracies along training with the percolation point marked and transition steps
against |K| (Lubana et al.), and accuracy against the revealed fraction of a knowledge graph, one curve per
number of hops.

Plain data in, a matplotlib Figure out (Agg); the caller saves it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402


def metrics_vs_scale(curves: Mapping[Any, Mapping[str, Sequence[float]]],
                     metrics: Mapping[str, str | tuple[str, float]], *, xkey: str = "N",
                     xlabel: str = "N (parameters)", title: str = ""):
    """One panel per metric against the scale axis (log x), one line per seed.

    ``curves``: ``{seed: {xkey: [n], metric_key: [n], ...}}``; ``metrics``: ``{label: key}`` or
    ``{label: (key, scale)}`` (values multiplied by ``scale``, e.g. ``1 / L`` to put a per-answer quantity per
    token).  Where a seed's curves carry ``"sharp": {key: bool}``, the panel title says whether that metric
    was judged a step (in every seed, in none, or in some)."""
    items = list(metrics.items())
    cols = min(3, len(items))
    rows = -(-len(items) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (label, spec) in zip(axes.ravel(), items):
        key, scale = (spec, 1.0) if isinstance(spec, str) else spec
        judged = []
        for i, (seed, c) in enumerate(curves.items()):
            if key not in c or xkey not in c:
                continue
            x = np.asarray(c[xkey], dtype=np.float64)
            y = np.asarray(c[key], dtype=np.float64) * scale
            ax.plot(x, y, "o-", ms=3, color=f"C{i % 10}", label=f"seed {seed}")
            if key in c.get("sharp", {}):
                judged.append(bool(c["sharp"][key]))
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        verdict = ""
        if judged:
            verdict = " — step" if all(judged) else (" — smooth" if not any(judged) else " — mixed")
        ax.set_title(label + verdict, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(items):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def accuracies_vs_steps(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
                        markers: Mapping[str, float] | None = None, ylabel: str = "accuracy",
                        title: str = "", log_x: bool = True):
    """Several metrics along training: ``curves = {label: (steps, values)}``; ``markers = {label: step}`` draws
    vertical lines (e.g. the step at which the observed entity-property graph percolates)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, (steps, vals)) in enumerate(curves.items()):
        s = np.asarray(steps, dtype=np.float64)
        v = np.asarray(vals, dtype=np.float64)
        keep = s > 0 if log_x else np.ones_like(s, dtype=bool)
        ax.plot(s[keep], v[keep], "-", color=f"C{i % 10}", label=label)
    for j, (label, step) in enumerate((markers or {}).items()):
        if step is not None and np.isfinite(step) and step > 0:
            ax.axvline(step, color="k", ls=("--", ":", "-.")[j % 3], lw=1, label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def accuracy_vs_fraction(q: Sequence[float], by_k: Mapping[int, Sequence[float]], *,
                         ceiling: Mapping[int, Sequence[float]] | None = None, q_c: float | None = None,
                         learned_giant: Sequence[float] | None = None, xlabel: str = "q (fraction of edges revealed)",
                         title: str = ""):
    """k-hop accuracy against the revealed fraction ``q``: one line per k (``by_k = {k: [len(q)]}``), the data's
    ceiling dashed (``ceiling = {k: [len(q)]}``, the fraction of test pairs connected in the revealed graph),
    the learned graph's giant-component fraction in grey and the percolation point ``q_c`` as a vertical line."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    qa = np.asarray(q, dtype=np.float64)
    order = np.argsort(qa)
    for i, (k, acc) in enumerate(sorted(by_k.items())):
        a = np.asarray(acc, dtype=np.float64)
        ax.plot(qa[order], a[order], "o-", ms=3, color=f"C{i % 10}", label=f"{k}-hop accuracy")
        if ceiling and k in ceiling:
            ax.plot(qa[order], np.asarray(ceiling[k], dtype=np.float64)[order], "--", lw=1, color=f"C{i % 10}")
    if learned_giant is not None:
        g = np.asarray(learned_giant, dtype=np.float64)
        ax.plot(qa[order], g[order], "s-", ms=3, color="0.5", label="learned graph: giant fraction")
    if q_c is not None and np.isfinite(q_c):
        ax.axvline(q_c, color="k", ls=":", lw=1, label=f"percolation point q = {q_c:.3g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def transition_vs_size(points: Mapping[Any, tuple[Sequence[float], Sequence[float]]], *,
                       reference_slope: float | None = None, xlabel: str = "size", ylabel: str = "transition step",
                       title: str = ""):
    """Transition steps against a size on log-log axes: ``points = {seed: (sizes, steps)}``, one marker series
    per seed with its least-squares line (slope in the legend); ``reference_slope`` draws a line of that slope
    through the geometric mean of all points (e.g. 1/2 for Lubana et al.'s |K|^(1/2))."""
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    xs, ys = [], []
    for i, (seed, (x, y)) in enumerate(points.items()):
        xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        ok = np.isfinite(ya) & (ya > 0) & (xa > 0)
        label = f"seed {seed}"
        if ok.sum() >= 2:
            b, a = np.polyfit(np.log10(xa[ok]), np.log10(ya[ok]), 1)
            u = np.linspace(np.log10(xa[ok]).min(), np.log10(xa[ok]).max(), 20)
            ax.plot(10**u, 10 ** (a + b * u), "-", lw=1, color=f"C{i % 10}")
            label += f" (slope {b:.2f})"
        ax.plot(xa[ok], ya[ok], "o", color=f"C{i % 10}", label=label)
        xs += np.log10(xa[ok]).tolist()
        ys += np.log10(ya[ok]).tolist()
    if reference_slope is not None and len(xs) >= 2:
        u = np.linspace(min(xs), max(xs), 20)
        ax.plot(10**u, 10 ** (np.mean(ys) + reference_slope * (u - np.mean(xs))), "k--", lw=1,
                label=f"slope {reference_slope:g} (reference)")
    if xs:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no transition step was measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


__all__ = ["metrics_vs_scale", "accuracies_vs_steps", "accuracy_vs_fraction", "transition_vs_size"]
