"""Figures of ALPINE's planning claims (Wang et al. 2024, Figs. 3-5), from plain arrays.

Read-outs are ``[n, n]`` score matrices (:func:`theorylab.measures.planning.mlp_readout`,
:func:`~theorylab.measures.planning.value_readout`); ground truths are boolean ``[n, n]`` arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _heat(ax, mat: np.ndarray, title: str, cmap: str = "viridis"):
    """Heatmap with the diagonal blanked (the scores exclude it)."""
    m = np.array(mat, dtype=float)
    np.fill_diagonal(m, np.nan)
    im = ax.imshow(m, cmap=cmap, aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return im


def _row_centred(readout: np.ndarray) -> np.ndarray:
    r = np.asarray(readout, dtype=float)
    n = r.shape[0]
    return r - np.nanmean(np.where(np.eye(n, dtype=bool), np.nan, r), 1, keepdims=True)


def adjacency(readout: np.ndarray, adj: np.ndarray) -> Figure:
    """The MLP read-out W_M' (row-centred) next to the true adjacency (rows: current node, columns: next)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    im = _heat(axes[0], _row_centred(readout), "MLP read-out W_M' (row-centred logits, diagonal blank)", "coolwarm")
    fig.colorbar(im, ax=axes[0], label="logit (nats)")
    _heat(axes[1], np.asarray(adj, dtype=float), "true adjacency A", "Greys")
    for ax in axes:
        ax.set_xlabel("next node k (index)")
        ax.set_ylabel("current node i (index)")
    fig.tight_layout()
    return fig


def reachability(readout: np.ndarray, observed: np.ndarray, unobserved: np.ndarray) -> Figure:
    """The value read-out W_V' (row-centred) next to observed reachability and the reachable-but-unobserved
    entries (rows: target, columns: node)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    im = _heat(axes[0], _row_centred(readout), "value read-out W_V' (row-centred logits, diagonal blank)",
               "coolwarm")
    fig.colorbar(im, ax=axes[0], label="logit (nats)")
    _heat(axes[1], np.asarray(observed, dtype=float), "observed reachability R_obs", "Greys")
    _heat(axes[2], np.asarray(unobserved, dtype=float), "reachable, never observed", "Greys")
    for ax in axes:
        ax.set_xlabel("node k (index)")
        ax.set_ylabel("target t (index)")
    fig.tight_layout()
    return fig


def accuracy_by_degree(per_seed: Sequence[dict[str, float]]) -> Figure:
    """Bar chart: mean +- sd over seeds of test path accuracy per degree (mean pair counts below); each
    seed's dict holds ``accuracy_degree{d}`` and ``n_degree{d}`` for d = 0..3."""
    labels = ["0", "1", "2", "3+"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    means, sds = [], []
    for d in range(4):
        v = np.array([s.get(f"accuracy_degree{d}", math.nan) for s in per_seed], dtype=float)
        v = v[np.isfinite(v)]
        means.append(v.mean() if len(v) else math.nan)
        sds.append(v.std(ddof=1) if len(v) > 1 else 0.0)
    counts = [np.mean([s.get(f"n_degree{d}", math.nan) for s in per_seed]) for d in range(4)]
    labels = [f"{lab}\n({c:.0f} pairs)" if math.isfinite(c) else lab for lab, c in zip(labels, counts)]
    ax.bar(labels, np.nan_to_num(means), yerr=sds, capsize=4, color=["C0", "C0", "C3", "C3"])
    ax.set_xlabel("degree of the test pair (0-1 observed, 2+ transitive); mean pairs per seed")
    ax.set_ylabel("path accuracy (fraction)")
    ax.set_ylim(0, 1.05)
    fig.tight_layout()
    return fig


def accuracy_vs_size(sizes: Sequence[int], per_seed: Sequence[Sequence[float]]) -> Figure:
    """Test path accuracy (mean +- sd over seeds, ``per_seed [seeds, sizes]``) against the number of nodes."""
    a = np.array(per_seed, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sd = a.std(0, ddof=1) if a.shape[0] > 1 else np.zeros(a.shape[1])
    ax.errorbar(sizes, a.mean(0), yerr=sd, marker="o", capsize=4)
    ax.set_xlabel("graph size n (nodes)")
    ax.set_ylabel("test path accuracy (fraction)")
    ax.set_ylim(0, 1.05)
    fig.tight_layout()
    return fig


__all__ = ["adjacency", "reachability", "accuracy_by_degree", "accuracy_vs_size"]
