"""Figures of the alignment claims: the reward-KL frontier with trained policies on it, and the gold and proxy
rewards against sqrt(KL) with Gao et al.'s fitted forms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def reward_kl_frontier(kl: Sequence[float], reward: Sequence[float],
                       points: Mapping[str, Sequence[tuple[float, float]]], optimum: Mapping[str, tuple[float, float]],
                       title: str = ""):
    """The exact frontier (``kl`` [n] nats, ``reward`` [n]) as a line; ``points``: label -> [(KL, reward)] of
    trained policies (one per seed); ``optimum``: label -> (KL, reward) of pi* for each beta."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(kl, reward, color="0.3", lw=1.5, label="exact frontier (tilted reference)")
    markers = "osD^v<>"
    for i, (label, pts) in enumerate(points.items()):
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, marker=markers[i % len(markers)], s=36, alpha=0.8, label=label)
    for label, (x, y) in optimum.items():
        ax.scatter([x], [y], marker="*", s=140, color="k", zorder=5)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xlabel("KL(pi || pi_ref) (nats)")
    ax.set_ylabel("expected reward E_pi[r] (count of a)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def overoptimization(curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
                     fits: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str = ""):
    """Gold and proxy reward gains against ``d = sqrt(KL)``: ``curves``: method -> (d [n], gold gain [n], proxy
    gain [n]); ``fits``: method -> (d [m], fitted gold gain [m]) drawn dashed."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.8), squeeze=False)
    for ax, (name, (d, gold, proxy)) in zip(axes[0], curves.items()):
        ax.plot(d, gold, "o-", ms=3, label="gold reward")
        ax.plot(d, proxy, "s-", ms=3, alpha=0.7, label="proxy reward")
        if name in fits:
            ax.plot(*fits[name], "--", color="k", lw=1, label="Gao et al. form, fitted")
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set_xlabel("d = sqrt(KL(pi || pi_ref)) (sqrt nats)")
        ax.set_ylabel("reward gain over the reference")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["reward_kl_frontier", "overoptimization"]
