"""Baselines for in-context linear regression (Garg et al. 2022, section 3 and Fig. 2).

Every function takes prompts ``xs [B, n, d]`` and ``ys [B, n]`` and returns predictions
``[B, n]``: entry ``k`` predicts ``y_k`` from the ``k`` earlier pairs only (``k = 0``:
no examples, every estimator predicts 0).  Computation is in float64.

* ``least_squares``: the minimum-norm least-squares fit (pseudo-inverse), as in Garg
  et al., so that it is defined for ``k < d`` as well; exact once ``k >= d`` on
  noiseless data;
* ``ridge``: ``(X'X + lam I)^-1 X'y`` (the Bayes-optimal estimator for ``w ~ N(0, I)`` and
  noise variance ``lam``);
* ``knn``: the mean of the ``y`` of the ``n_neighbors`` nearest earlier ``x``;
* ``averaging``: ``w = mean_i y_i x_i`` (unbiased for ``w`` when ``x ~ N(0, I)``).

:func:`error_by_k` turns predictions into the squared error per number of in-context
examples, divided by ``d`` (so predicting 0 scores about 1 when ``w, x ~ N(0, I)``).
"""

from __future__ import annotations

import torch

from theorylab.errors import ConfigError

METHODS = ("least_squares", "ridge", "knn", "averaging")


def _check(xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if xs.dim() != 3 or ys.dim() != 2 or xs.shape[:2] != ys.shape:
        raise ConfigError(f"xs must be [B, n, d] and ys [B, n] (got {tuple(xs.shape)} and {tuple(ys.shape)})")
    return xs.double(), ys.double()


def least_squares(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    xs, ys = _check(xs, ys)
    B, n, _ = xs.shape
    out = torch.zeros(B, n, dtype=torch.float64)
    for k in range(1, n):
        w = torch.linalg.pinv(xs[:, :k]) @ ys[:, :k, None]  # [B, d, 1]
        out[:, k] = (xs[:, k:k + 1] @ w)[:, 0, 0]
    return out


def ridge(xs: torch.Tensor, ys: torch.Tensor, lam: float = 0.1) -> torch.Tensor:
    if not lam > 0:
        raise ConfigError(f"lam must be > 0 (got {lam})")
    xs, ys = _check(xs, ys)
    B, n, d = xs.shape
    out = torch.zeros(B, n, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    for k in range(1, n):
        X, y = xs[:, :k], ys[:, :k, None]
        w = torch.linalg.solve(X.transpose(1, 2) @ X + lam * eye, X.transpose(1, 2) @ y)
        out[:, k] = (xs[:, k:k + 1] @ w)[:, 0, 0]
    return out


def knn(xs: torch.Tensor, ys: torch.Tensor, n_neighbors: int = 3) -> torch.Tensor:
    if n_neighbors < 1:
        raise ConfigError(f"n_neighbors must be >= 1 (got {n_neighbors})")
    xs, ys = _check(xs, ys)
    B, n, _ = xs.shape
    out = torch.zeros(B, n, dtype=torch.float64)
    for k in range(1, n):
        dist = (xs[:, :k] - xs[:, k:k + 1]).pow(2).sum(-1)  # [B, k]
        idx = dist.topk(min(n_neighbors, k), largest=False).indices
        out[:, k] = ys[:, :k].gather(1, idx).mean(1)
    return out


def averaging(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    xs, ys = _check(xs, ys)
    cs = (xs * ys[..., None]).cumsum(1)  # [B, n, d]: sum of y_i x_i up to i
    out = torch.zeros(ys.shape, dtype=torch.float64)
    k = torch.arange(1, xs.shape[1], dtype=torch.float64)
    w = cs[:, :-1] / k[None, :, None]
    out[:, 1:] = (w * xs[:, 1:]).sum(-1)
    return out


def predict(method: str, xs: torch.Tensor, ys: torch.Tensor, **kw) -> torch.Tensor:
    fns = {"least_squares": least_squares, "ridge": ridge, "knn": knn, "averaging": averaging}
    if method not in fns:
        raise ConfigError(f"method must be one of {', '.join(METHODS)} (got {method!r})")
    return fns[method](xs, ys, **kw)


def error_by_k(pred: torch.Tensor, target: torch.Tensor, d: int) -> torch.Tensor:
    """[n]: mean over prompts of (pred - target)^2 / d, per number k of in-context examples."""
    if pred.shape != target.shape or pred.dim() != 2:
        raise ConfigError(f"pred and target must both be [B, n] (got {tuple(pred.shape)}, {tuple(target.shape)})")
    return (pred.double() - target.double()).pow(2).mean(0) / d


def baseline_errors(xs: torch.Tensor, ys: torch.Tensor, target: torch.Tensor | None = None, *,
                    lam: float = 0.1, n_neighbors: int = 3) -> dict[str, torch.Tensor]:
    """Error curves ``[n]`` of every baseline against ``target`` (default: ``ys``)."""
    d = xs.shape[-1]
    target = ys if target is None else target
    kw = {"ridge": {"lam": lam}, "knn": {"n_neighbors": n_neighbors}}
    return {m: error_by_k(predict(m, xs, ys, **kw.get(m, {})), target, d) for m in METHODS}


def exponential_rate(steps, errors, *, start_below: float = 0.45, floor: float = 0.0) -> dict[str, float]:
    """Fit ``log error = c - rate * step`` on the decreasing stretch of a 0-1 error curve.

    The stretch runs from the first evaluation with error below ``start_below`` (past the
    chance plateau) to the last one before the error first reaches ``floor`` or zero (log 0
    is undefined).  Returns ``rate`` (per step), ``r2`` of the fit and ``n`` (points used;
    fewer than 3 gives NaN rate and r2).
    """
    import numpy as np

    s = np.asarray(steps, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if s.shape != e.shape or s.ndim != 1:
        raise ConfigError(f"steps and errors must be 1-D of equal length (got {s.shape}, {e.shape})")
    below = np.flatnonzero(e < start_below)
    out = {"rate": float("nan"), "r2": float("nan"), "n": 0.0}
    if not len(below):
        return out
    i0 = int(below[0])
    end = len(e)
    hit = np.flatnonzero((e[i0:] <= floor) | (e[i0:] <= 0))
    if len(hit):
        end = i0 + int(hit[0])
    x, y = s[i0:end], np.log(e[i0:end])
    out["n"] = float(len(x))
    if len(x) < 3:
        return out
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    ss = float(((y - y.mean()) ** 2).sum())
    out["rate"] = float(-slope)
    out["r2"] = float(1 - (resid ** 2).sum() / ss) if ss > 0 else float("nan")
    return out
