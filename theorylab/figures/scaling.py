"""Figures of scaling sweeps: loss against compute with IsoFLOP curves and the compute-optimal frontier,
loss against parameters for each token budget, and the fitted surface's residuals.

Plain data in (arrays of N parameters, D tokens, C FLOP and loss in nats per token), a matplotlib Figure
out (Agg); the caller saves it.  ``predict(N, D) -> loss`` is a fitted law (for example
:meth:`theorylab.measures.scaling.Approach3Fit.predict`), ``floor`` the
known floor of the source (nats/token: its entropy rate, or the optimal loss of the model's windows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]



def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def loss_vs_compute(N: Sequence[float], D: Sequence[float], loss: Sequence[float], *,
                    budgets: Sequence[float | None] | None = None, predict: Predict | None = None,
                    allocation: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
                    floor: float | None = None, title: str = "loss against compute"):
    """Loss (nats/token) against C = 6ND (FLOP, log axis), each run coloured by log10 N; runs of one
    IsoFLOP budget joined; with ``predict`` and ``allocation`` (C -> (N_opt, D_opt)) the fitted
    compute-optimal frontier L(N_opt(C), D_opt(C)); with ``floor`` the source's floor."""
    N, D, loss = _arr(N), _arr(D), _arr(loss)
    C = 6 * N * D
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    sc = ax.scatter(C, loss, c=np.log10(N), cmap="viridis", s=28, zorder=3)
    fig.colorbar(sc, ax=ax, label="log10 N (parameters)")
    if budgets is not None:
        b = np.array([np.nan if x is None else float(x) for x in budgets])
        for c in sorted({x for x in b if np.isfinite(x)}):
            idx = np.where(b == c)[0]
            idx = idx[np.argsort(C[idx])]
            ax.plot(C[idx], loss[idx], color="0.6", lw=1, zorder=2)
            if predict is not None:
                n = np.geomspace(N[idx].min(), N[idx].max(), 50)
                ax.plot(np.full_like(n, c), predict(n, c / (6 * n)), color="0.8", lw=0.8, ls=":", zorder=1)
    if predict is not None and allocation is not None:
        cs = np.geomspace(C.min(), C.max() * 3, 100)
        n_opt, d_opt = allocation(cs)
        ax.plot(cs, predict(n_opt, d_opt), color="C3", lw=1.5, label="fitted compute-optimal frontier")
    if floor is not None:
        ax.axhline(floor, color="k", ls="--", lw=1, label=f"floor of the source {floor:.4f}")
    ax.set_xscale("log")
    ax.set_xlabel("compute C = 6ND (FLOP)")
    ax.set_ylabel("test loss (nats/token)")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def loss_vs_params(N: Sequence[float], D: Sequence[float], loss: Sequence[float], *,
                   predict: Predict | None = None, floor: float | None = None,
                   title: str = "loss against parameters, per token budget"):
    """Loss (nats/token) against N (parameters, log axis), one line per token budget D; the fitted law
    dashed beside each."""
    N, D, loss = _arr(N), _arr(D), _arr(loss)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, d in enumerate(sorted(set(D.tolist()))):
        idx = np.where(D == d)[0]
        idx = idx[np.argsort(N[idx])]
        col = f"C{i % 10}"
        ax.plot(N[idx], loss[idx], "o-", color=col, label=f"D = {d:.3g} tokens")
        if predict is not None and len(idx) > 1:
            n = np.geomspace(N[idx].min(), N[idx].max(), 50)
            ax.plot(n, predict(n, np.full_like(n, d)), "--", color=col, lw=1)
    if floor is not None:
        ax.axhline(floor, color="k", ls="--", lw=1, label=f"floor of the source {floor:.4f}")
    ax.set_xscale("log")
    ax.set_xlabel("N (parameters)")
    ax.set_ylabel("test loss (nats/token)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def residuals(N: Sequence[float], D: Sequence[float], loss: Sequence[float], predict: Predict, *,
              bound: float | None = None, title: str = "residuals of the fitted law"):
    """log L - log L_hat (the fit's residual, dimensionless) against C = 6ND (FLOP), coloured by log10 N;
    ``bound`` draws the declared +-bound."""
    N, D, loss = _arr(N), _arr(D), _arr(loss)
    r = np.log(loss) - np.log(predict(N, D))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    sc = ax.scatter(6 * N * D, r, c=np.log10(N), cmap="viridis", s=28)
    fig.colorbar(sc, ax=ax, label="log10 N (parameters)")
    ax.axhline(0, color="k", lw=0.8)
    if bound is not None:
        for s in (-1, 1):
            ax.axhline(s * bound, color="C3", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("compute C = 6ND (FLOP)")
    ax.set_ylabel("log L - log L_fit")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def intercept_bias(widths: Sequence[float], fitted: Sequence[float], true: float,
                   title: str = "Approach 2: intercept of log10 D* against grid width"):
    """The fitted intercept of log10 D* (Approach 2) against the grid's half-width (a factor, log axis),
    with the true intercept."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.plot(widths, fitted, "o-", label="Approach 2 (noise-free points)")
    ax.axhline(true, color="k", ls="--", lw=1, label=f"true {true:.6f}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("grid half-width k (sizes N*/k .. k N*)")
    ax.set_ylabel("intercept of log10 D* on log10 C")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["loss_vs_compute", "loss_vs_params", "residuals", "intercept_bias"]
