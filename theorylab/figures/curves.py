"""Training curves over log-scaled steps and per-seed bars (matplotlib, Agg), for any claim.

One function per figure; each returns the figure and the caller saves it (the claims
engine saves a claim's figures as PNG files).  Every axis is labelled with its unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

PALETTE = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:gray")
CURVE_KEYS = ("steps", "train_acc", "test_acc", "train_loss", "test_loss")


def positive_steps(steps: Sequence[float], values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Drop step 0 (and anything non-positive), which a log axis cannot show."""
    pts = [(s, v) for s, v in zip(steps, values) if s > 0]
    return [s for s, _ in pts], [v for _, v in pts]


def training_curves(groups: dict[str, list[dict[str, Sequence[float]]]], title: str = "",
                    markers: dict[str, float] | None = None) -> Figure:
    """Accuracy (left) and loss (right) over log-scaled steps.

    ``groups`` maps a label (e.g. "weight decay 1.0") to a list of curve dicts, one per
    seed, with keys ``steps, train_acc, test_acc, train_loss, test_loss``.  Train is
    dashed, test solid; one colour per group; ``markers`` draws labelled vertical lines
    (e.g. the step budget).
    """
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.0))
    for i, (label, curves) in enumerate(groups.items()):
        color = PALETTE[i % len(PALETTE)]
        for j, c in enumerate(curves):
            first = j == 0
            for key, ax, style, split in (("train_acc", ax_acc, "--", "train"), ("test_acc", ax_acc, "-", "test"),
                                          ("train_loss", ax_loss, "--", "train"),
                                          ("test_loss", ax_loss, "-", "test")):
                if key not in c or not c[key]:
                    continue
                xs, ys = positive_steps(c["steps"], c[key])
                ax.plot(xs, ys, style, color=color, alpha=0.8 if first else 0.45, lw=1.4,
                        label=f"{label}, {split}" if first else None)
    for ax in (ax_acc, ax_loss):
        ax.set_xscale("log")
        ax.set_xlabel("optimizer step (log scale)")
        ax.grid(True, which="both", alpha=0.25)
        for name, x in (markers or {}).items():
            ax.axvline(x, color="black", lw=0.8, ls=":")
            ax.annotate(name, (x, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=8,
                        ha="right", va="bottom")
    ax_acc.set_ylabel("accuracy (fraction correct)")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_loss.set_ylabel("cross-entropy loss (nats, log scale)")
    ax_loss.set_yscale("log")
    ax_acc.legend(fontsize=8, loc="best")
    ax_acc.set_title("accuracy (dashed: train, solid: test)", fontsize=10)
    ax_loss.set_title("loss (dashed: train, solid: test)", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def per_seed_bars(values: dict[str, Sequence[float]], ylabel: str, title: str = "",
                  threshold: float | None = None, log: bool = False) -> Figure:
    """One bar per group (mean) with each seed as a dot; an optional threshold line."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (_label, vals) in enumerate(values.items()):
        v = np.asarray([x for x in vals if x == x], dtype=float)
        color = PALETTE[i % len(PALETTE)]
        if len(v):
            ax.bar(i, v.mean(), color=color, alpha=0.35, width=0.6)
            ax.scatter(np.full(len(v), i), v, color=color, zorder=3, s=18)
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(list(values), fontsize=9)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if threshold is not None:
        ax.axhline(threshold, color="black", ls=":", lw=1, label=f"threshold {threshold:g}")
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.25)
    fig.tight_layout()
    return fig


__all__ = ["PALETTE", "CURVE_KEYS", "positive_steps", "training_curves", "per_seed_bars"]
