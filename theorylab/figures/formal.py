"""Figures of the formal-language claims (Delétang et al. 2023): per-length accuracy curves, the primary
artefact of the Chomsky-hierarchy benchmark."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def per_length_accuracy(curves: dict[str, dict[str, Sequence[dict[str, Any]]]], chance: dict[str, float],
                        levels: dict[str, str | None], title: str) -> Figure:
    """Per-length test accuracy (mean over seeds) for each task, one line per encoding.

    ``curves[task][encoding]`` holds one ``{"lengths", "acc"}`` per seed; ``chance[task]`` is drawn dotted
    and ``levels[task]`` (the task's Chomsky level) goes in its panel's title.
    """
    tasks = list(curves)
    cols = min(3, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for enc, per_seed in curves[task].items():
            if not per_seed:
                continue
            acc = np.mean([c["acc"] for c in per_seed], axis=0)
            ax.plot(per_seed[0]["lengths"], acc, marker=".", label=enc)
        ax.axhline(chance[task], color="grey", ls=":", lw=1)
        ax.set_title(f"{task} ({levels[task]})", fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("test length (symbols)")
        ax.set_ylabel("accuracy (fraction of output symbols)")
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = ["per_length_accuracy"]
