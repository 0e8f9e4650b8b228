"""In-context learning measures: exponential convergence of an error curve, and the readings of
Bu et al. (2024, arXiv 2411.02199) on a model trained on concept-based prompts (attention on
same-label demonstrations; alignment of the MLP's input weights with the concept dictionary).

The reference estimators of in-context linear regression (least squares, ridge, k-NN, averaging)
are ground truth of that task family and live beside it, in :mod:`theorylab.tasks.icl_regression`.
"""

from __future__ import annotations

import numpy as np
import torch

from theorylab.errors import ConfigError


def same_label_attention(pattern: torch.Tensor, demo_labels: torch.Tensor, targets: torch.Tensor) -> float:
    """The query's attention (mean over heads) on the demonstrations whose label equals its own,
    averaged over prompts (Bu et al. 2024: attention concentrates on same-label demonstrations).

    ``pattern [B, H, L + 1, L + 1]`` (the first layer's ``hook_pattern``; the query is the last row
    and the L demonstrations the first columns), ``demo_labels [B, L]``, ``targets [B]`` (class ids).
    Returns a fraction in [0, 1].  Raises ConfigError on mismatched shapes.
    """
    if pattern.dim() != 4 or demo_labels.dim() != 2 or pattern.shape[-1] != demo_labels.shape[1] + 1 \
            or pattern.shape[0] != demo_labels.shape[0]:
        raise ConfigError(f"pattern [B, H, L+1, L+1] and demo_labels [B, L] do not match: "
                          f"{tuple(pattern.shape)} vs {tuple(demo_labels.shape)}")
    if tuple(targets.shape) != (demo_labels.shape[0],):
        raise ConfigError(f"targets must be [B] = [{demo_labels.shape[0]}] (got {tuple(targets.shape)})")
    q = pattern[:, :, -1, :-1].double().mean(1)  # [B, L]
    same = demo_labels == targets[:, None]
    return float((q * same).sum(-1).mean())


@torch.no_grad()
def concept_weight_alignment(model, directions: dict[str, np.ndarray]) -> dict[str, float]:
    """Largest ``|<direction, column>|`` over the MLP's input neurons, read through the input embedding
    (``embed.W_in @ blocks.0.mlp.W_in``, one column per neuron, ``[2 d, d_mlp]``): for the concept-specific
    directions (``b_k`` on the word half, ``r_k`` on the label half), their complements (``a_k``, ``q_k``)
    and noise directions (outside the dictionary); and the Frobenius norm ``mlp_norm`` of the MLP weights,
    ``sqrt(|W_in|_F^2 + |W_out|_F^2)`` (both matrices as one vector; Bu et al. 2024, the four
    training-dynamics panels).  Inner products in the input's unit (the directions are unit vectors).

    ``directions`` is :meth:`theorylab.tasks.concepts.ConceptsTask.directions` (arrays ``[n, d]``).
    Returns ``{}`` for a model without continuous inputs or without an MLP in block 0.
    """
    w = dict(model.named_parameters())
    if "embed.W_in" not in w or "blocks.0.mlp.W_in" not in w:
        return {}
    eff = (w["embed.W_in"] @ w["blocks.0.mlp.W_in"]).double().cpu().numpy()  # [2d, d_mlp]
    d = directions["word_concept"].shape[1]
    word, lab = eff[:d], eff[d:]

    def top(dirs, mat):
        return float(np.abs(dirs @ mat).max()) if len(dirs) else 0.0

    noise = directions["noise"]
    return {"w_concept": max(top(directions["word_concept"], word), top(directions["label_concept"], lab)),
            "w_complement": max(top(directions["word_shared"], word), top(directions["label_shared"], lab)),
            "w_noise": max(top(noise, word), top(noise, lab)) if len(noise) else 0.0,
            "mlp_norm": float(torch.cat([w["blocks.0.mlp.W_in"].detach().double().flatten(),
                                         w["blocks.0.mlp.W_out"].detach().double().flatten()]).norm())}


def exponential_rate(steps, errors, *, start_below: float = 0.45, floor: float = 0.0) -> dict[str, float]:
    """Fit ``log error = c - rate * step`` (least squares) on the decreasing stretch of a 0-1 error curve
    (Bu et al. 2024: the 0-1 error converges exponentially, a straight line in log error against steps).

    The stretch runs from the first evaluation with error below ``start_below`` (past the
    chance plateau) to the last one before the error first reaches ``floor`` or zero (log 0
    is undefined).  Evaluations whose error is NaN or infinite are missing and skipped.  Returns
    ``rate`` (per step), ``r2`` of the fit (NaN when log error is constant) and ``n`` (points used;
    fewer than 3 gives NaN rate and r2).  ``steps``, ``errors``: 1-D, equal length.  Raises ConfigError
    otherwise.
    """
    import numpy as np

    s = np.asarray(steps, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if s.shape != e.shape or s.ndim != 1:
        raise ConfigError(f"steps and errors must be 1-D of equal length (got {s.shape}, {e.shape})")
    finite = np.isfinite(e)
    s, e = s[finite], e[finite]
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
