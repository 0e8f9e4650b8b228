"""Measurements for planning as path-finding (ALPINE; Wang et al., NeurIPS 2024, arXiv 2405.09220).

* :func:`path_accuracy_by_label` - generate from the prompt ``s t`` (temperature 1 as in
  the paper, or greedy) and score each completion: well-formed, starts at ``s``, every
  step an edge, ends at ``t``.  Broken down by the paper's degree and by the
  observed (degree <= 1) / transitive (degree >= 2) label.
* :func:`mlp_readout` - the paper's W_M': row ``i`` is the logit vector that node ``i``'s
  embedding produces through the FFN and the unembedding (plus the direct path),
  compared with the adjacency.
* :func:`value_readout` - the paper's W_V': row ``t`` is the logit vector a fully
  attended target ``t`` produces through W_V, W_O, the FFN and the unembedding,
  compared with observed and with true reachability.
* :func:`readout_scores` - within-row AUCs and mean inside/outside gaps of both.
* ``fig_*`` - heatmaps and accuracy plots (Agg; returned, saved by the caller).

Read-outs use layer 0 (the paper's 1-layer, 1-head model); with several heads the
value paths are summed (every head attending to ``t``).  ``norms=True`` applies the
model's own layer norms (ln1 before W_V, ln2 before the FFN, ln_final before W_U) to
the isolated vectors; the paper's formulas omit them (``norms=False``).  Positional
embeddings are left out, as in the paper.  The unembedding bias is left out: it is
the same for every row and says nothing about a particular node.

Scores compare entries *within a row* (a row is one decision: current node ``i``, or
target ``t``; the softmax is invariant to adding a constant to a row), pooled over
rows: the AUC is the fraction of (row, inside entry, outside entry) triples ranked the
right way round, the gap the mean over rows of (mean inside - mean outside).  The
diagonal is excluded.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from theorylab.errors import TheoryLabError

# --------------------------------------------------------------------------- read-outs


def _block0(model):
    if not hasattr(model, "blocks") or len(model.blocks) == 0:
        raise TheoryLabError("model: the read-outs need a decoder with at least one block")
    if model.cfg.d_vocab is None:
        raise TheoryLabError("model: the read-outs need token inputs (d_vocab)")
    return model.blocks[0]


def _ffn(block, x: torch.Tensor, norms: bool) -> torch.Tensor:
    if block.cfg.attn_only:
        return torch.zeros_like(x)
    return block.mlp(block.ln2(x) if norms else x)


def _unembed(model, x: torch.Tensor, n_nodes: int, norms: bool) -> torch.Tensor:
    if norms and hasattr(model, "ln_final"):
        x = model.ln_final(x)
    return x @ model.W_U[:, :n_nodes]


@torch.no_grad()
def mlp_readout(model, n_nodes: int, norms: bool = True) -> torch.Tensor:
    """The paper's W_M' (Wang et al. 2024, ALPINE: the FFN's read-out of the adjacency): ``[n, n]`` float64
    logits (nats), row ``i`` = ``(e_i + FFN(e_i)) W_U`` over the node tokens ``0..n-1``, layer 0, with the
    model's ln2 / ln_final when ``norms`` (see the module docstring).  Raises TheoryLabError for a model
    without blocks or token inputs."""
    block = _block0(model)
    e = model.embed.W_E[:n_nodes]
    r = e + _ffn(block, e, norms)
    return _unembed(model, r, n_nodes, norms).double().cpu()


@torch.no_grad()
def value_readout(model, n_nodes: int, norms: bool = True, head: int | None = None) -> torch.Tensor:
    """The paper's W_V' (Wang et al. 2024, ALPINE: the value path's read-out of reachability): ``[n, n]``
    float64 logits (nats), row ``t`` = ``(v_t + FFN(v_t)) W_U`` with ``v_t = sum_h (ln1(e_t) W_V^h + b_V^h)
    W_O^h + b_O`` (every head, or only ``head``) over the node tokens, layer 0.  Raises TheoryLabError as
    :func:`mlp_readout`."""
    block = _block0(model)
    attn = block.attn
    e = model.embed.W_E[:n_nodes]
    h = block.ln1(e) if norms else e
    heads = range(attn.W_V.shape[0]) if head is None else [head]
    v = torch.zeros_like(e)
    for hd in heads:
        z = h @ attn.W_V[hd]
        if block.cfg.bias:
            z = z + attn.b_V[hd]
        v = v + z @ attn.W_O[hd]
    if block.cfg.bias:
        v = v + attn.b_O
    r = v + _ffn(block, v, norms)
    return _unembed(model, r, n_nodes, norms).double().cpu()


def within_row_auc(scores: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> float:
    """Fraction of (row, inside entry, outside entry) triples with the inside entry scored
    higher (ties count one half), pooled over rows; NaN if no row has both kinds.  ``scores [r, c]``,
    ``inside`` / ``outside``: bool ``[r, c]`` (disjoint)."""
    scores = np.asarray(scores, dtype=np.float64)
    wins, total = 0.0, 0.0
    for r in range(scores.shape[0]):
        pos, neg = inside[r], outside[r]
        a, b = int(pos.sum()), int(neg.sum())
        if a == 0 or b == 0:
            continue
        vals = np.concatenate([scores[r, pos], scores[r, neg]])
        ranks = rankdata(vals)
        wins += ranks[:a].sum() - a * (a + 1) / 2
        total += a * b
    return float(wins / total) if total else math.nan


def mean_gap(scores: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> float:
    """Mean over rows (those with both kinds of entry) of mean(inside) - mean(outside), in the scores' unit;
    NaN if no row has both.  ``scores [r, c]``, ``inside`` / ``outside``: bool ``[r, c]``."""
    s = np.asarray(scores, dtype=np.float64)
    gaps = [s[r, inside[r]].mean() - s[r, outside[r]].mean() for r in range(s.shape[0])
            if inside[r].any() and outside[r].any()]
    return float(np.mean(gaps)) if gaps else math.nan


def readout_scores(model, task, norms: bool = True) -> dict[str, float]:
    """AUCs and gaps of both read-outs against the task's matrices.

    ``adj_auc``: W_M' vs the true adjacency; ``value_auc_obs`` / ``value_auc_true``: W_V'
    vs observed / true reachability (target-major); ``value_auc_unobs``: reachable but
    never observed entries against unreachable ones (0.5 = not learned);
    ``value_auc_obs_vs_unobs``: observed against reachable-but-unobserved.
    """
    n = task.n_nodes
    off = ~np.eye(n, dtype=bool)
    wm = mlp_readout(model, n, norms).cpu().numpy()
    wv = value_readout(model, n, norms).cpu().numpy()
    adj, obs_adj = task.adj & off, task.obs_adj & off
    ro, rt = task.obs_reach & off, task.true_reach & off
    unobs = rt & ~ro
    out = {
        "adj_auc": within_row_auc(wm, adj, off & ~adj),
        "adj_gap": mean_gap(wm, adj, off & ~adj),
        "adj_obs_auc": within_row_auc(wm, obs_adj, off & ~obs_adj),
        "value_auc_obs": within_row_auc(wv, ro, off & ~ro),
        "value_auc_true": within_row_auc(wv, rt, off & ~rt),
        "value_auc_unobs": within_row_auc(wv, unobs, off & ~rt),
        "value_auc_obs_vs_unobs": within_row_auc(wv, ro, unobs),
        "value_gap_obs": mean_gap(wv, ro, off & ~ro),
        "value_gap_true": mean_gap(wv, rt, off & ~rt),
        "value_gap_unobs": mean_gap(wv, unobs, off & ~rt),
    }
    out["value_auc_obs_minus_true"] = out["value_auc_obs"] - out["value_auc_true"]
    return out


# --------------------------------------------------------------------------- path accuracy


def path_accuracy_by_label(model, task, split: str = "test", temperature: float = 1.0, samples: int = 1,
                           seed: int = 0) -> dict[str, float]:
    """Path accuracy from the prompt ``s t`` on the ``split`` pairs, overall and by label.

    Each pair is sampled ``samples`` times (temperature 0 = greedy, one sample suffices);
    a pair's accuracy is its fraction of valid completions.  Keys: ``accuracy``,
    ``accuracy_observed`` (degree <= 1), ``accuracy_transitive`` (degree >= 2),
    ``accuracy_degree{0,1,2,3}`` (3 = three or more) and the pair counts ``n_*``.
    Missing labels give NaN.
    """
    if split not in ("train", "test"):
        raise TheoryLabError(f"split: {split!r} is not allowed; allowed: train, test")
    if samples < 1:
        raise TheoryLabError("samples: must be >= 1")
    if temperature < 0:
        raise TheoryLabError("temperature: must be >= 0 (0 = greedy)")
    pairs = task.test_pairs if split == "test" else task.train_pairs
    deg = task.test_degree if split == "test" else task.train_degree
    from theorylab.tasks.base import torch_generator

    g = torch_generator(seed, 0x9A7)
    reps = 1 if temperature == 0 else samples
    ok = np.zeros(len(pairs))
    for _ in range(reps):
        ok += task.path_accuracy(model, pairs, temperature, g)
    ok /= reps

    def mean(mask: np.ndarray) -> float:
        return float(ok[mask].mean()) if mask.any() else math.nan

    out: dict[str, float] = {"accuracy": mean(np.ones(len(pairs), dtype=bool)),
                             "accuracy_observed": mean(deg <= 1), "accuracy_transitive": mean(deg >= 2),
                             "n_pairs": float(len(pairs)), "n_observed": float((deg <= 1).sum()),
                             "n_transitive": float((deg >= 2).sum())}
    for d in range(4):
        out[f"accuracy_degree{d}"] = mean(deg == d)
        out[f"n_degree{d}"] = float((deg == d).sum())
    return out


def analyze(model, task, temperature: float = 1.0, samples: int = 1, seed: int = 0, norms: bool = True
            ) -> dict[str, float]:
    """Everything in one dict: test path accuracy by label and both read-outs' scores."""
    out = {f"test_{k}": v for k, v in path_accuracy_by_label(model, task, "test", temperature, samples,
                                                              seed).items()}
    out.update(readout_scores(model, task, norms))
    return out


def summary_table(values: dict[str, Any]) -> str:
    """A plain-text table of an :func:`analyze` result."""
    return "\n".join(f"{k:28s} {v:.4g}" if isinstance(v, float) else f"{k:28s} {v}" for k, v in values.items())


__all__ = [
    "mlp_readout", "value_readout", "within_row_auc", "mean_gap", "readout_scores", "path_accuracy_by_label",
    "analyze", "summary_table",
]
