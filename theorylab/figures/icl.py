"""Figures of the in-context learning claims (Olsson et al. 2022; Garg et al. 2022; Bu et al. 2024;
Bietti et al. 2023), from per-seed curves (one value per evaluation step)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def induction_formation(runs: dict[str, Sequence[tuple[int, dict[str, Any], dict[str, float]]]]) -> Figure:
    """In-context loss and best prefix-matching score over steps (Olsson et al. 2022, Fig. 1-2).

    ``runs[name]`` holds ``(seed, curves, marks)`` per seed: curves ``{"steps", "loss_second_copy",
    "prefix_matching"}`` and marks ``{"drop_step", "rise_step"}`` (drawn as dotted lines).  The first
    name is drawn solid, the others dashed.
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(runs)
    for name in names:
        ls = "-" if name == names[0] else "--"
        for s, c, m in runs[name]:
            a.plot(c["steps"], c["loss_second_copy"], ls, label=f"{name} seed {s}")
            b.plot(c["steps"], c["prefix_matching"], ls, label=f"{name} seed {s}")
            for key, color in (("drop_step", "C3"), ("rise_step", "C2")):
                if m.get(key) is not None and math.isfinite(m[key]):
                    a.axvline(m[key], color=color, lw=0.6, ls=":")
                    b.axvline(m[key], color=color, lw=0.6, ls=":")
    a.set(xlabel="step", ylabel="loss on the second copy (nats)", title="in-context loss")
    b.set(xlabel="step", ylabel="best prefix-matching score (attention fraction)", title="induction score",
          ylim=(0, 1))
    b.legend(fontsize=6)
    fig.tight_layout()
    return fig


def regression_error(curves: Sequence[dict[str, Any]], d: int,
                     methods: Sequence[str] = ("transformer", "least_squares", "ridge", "averaging", "knn")) -> Figure:
    """Squared error / d (mean over seeds) against in-context examples / d, per method (Garg et al. 2022,
    Fig. 2); ``curves`` holds one ``{method: [error per k]}`` per seed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, name in enumerate(methods):
        y = np.mean([c[name] for c in curves], axis=0)
        ax.plot(np.arange(len(y)) / d, y, "-o" if name == "transformer" else "--", ms=3, color=f"C{i}",
                label=name.replace("_", " "))
    ax.axvline(1.0, color="gray", lw=0.6, ls=":")
    ax.axvline(2.0, color="gray", lw=0.6, ls="-.")
    ax.set(xlabel="in-context examples / d", ylabel="squared error / d", yscale="log",
           title=f"in-context linear regression, d = {d} (mean over {len(curves)} seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def panels(curves: Sequence[dict[str, Any]], keys: Sequence[Sequence[str]], titles: Sequence[str],
           log: Sequence[bool], ylabels: Sequence[str] | None = None) -> Figure:
    """One panel per group of series over steps, every seed drawn (Bu et al. 2024's training dynamics);
    ``curves`` holds one ``{"steps", key: [...]}`` per seed; log panels floor values at 1e-4."""
    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3.2))
    ylabels = ylabels or [""] * len(keys)
    for ax, ks, title, lg, yl in zip(np.atleast_1d(axes), keys, titles, log, ylabels):
        for i, c in enumerate(curves):
            for j, k in enumerate(ks):
                y = [max(v, 1e-4) for v in c[k]] if lg else c[k]
                ax.plot(c["steps"], y, color=f"C{j}", alpha=0.7, label=k if i == 0 else None)
        ax.set(xlabel="step", ylabel=yl, title=title, yscale="log" if lg else "linear")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def trigger_dynamics(curves: Sequence[dict[str, Any]]) -> Figure:
    """Losses by position kind and the memory-recall probes over steps (Bietti et al. 2023, Fig. 3)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, c in enumerate(curves):
        kw = {"alpha": 0.9 if i == 0 else 0.4}
        lab = (lambda x: x) if i == 0 else (lambda x: None)
        a.plot(c["steps"], c["icl_loss"], "C0", label=lab("in-context outputs"), **kw)
        a.plot(c["steps"], c["first_loss"], "C3", label=lab("first occurrences"), **kw)
        a.plot(c["steps"], c["bigram_loss"], "C2", label=lab("bigram positions"), **kw)
        a.plot(c["steps"], c["bigram_optimal_loss"], "C2:", label=lab("bigram Bayes loss"), **kw)
        for name, color in (("probe_induction_output", "C0"), ("probe_induction_key", "C1"),
                            ("probe_induction_key_triggers", "C5"), ("probe_prev_token", "C4"),
                            ("icl_accuracy", "k")):
            b.plot(c["steps"], c[name], color=color, label=lab(name), **kw)
    a.set(xlabel="step", ylabel="loss (nats)", title="losses by position kind (two layers)")
    b.set(xlabel="step", ylabel="recall / accuracy (fraction)", title="memory-recall probes", ylim=(0, 1.02))
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["induction_formation", "regression_error", "panels", "trigger_dynamics"]
