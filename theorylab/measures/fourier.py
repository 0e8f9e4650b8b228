"""Fourier progress measures for modular addition (Nanda et al. 2023, arXiv 2301.05217).

Everything here is a pure function of a model (or a run's checkpoints) and the
modular task, computed in float64.

Fourier basis over Z_p
    An orthonormal ``p x p`` matrix ``F`` whose rows are functions of ``x in Z_p``:
    row 0 is the constant ``1/sqrt(p)``; rows ``2k-1`` and ``2k`` are
    ``cos(2 pi k x / p)`` and ``sin(2 pi k x / p)`` scaled to unit norm, for
    ``k = 1 .. (p-1)/2``.  (``p`` is an odd prime.)

Fourier norms
    The embedding ``W_E[:p]`` (number tokens only, ``[p, d_model]``) in the basis is
    ``F @ W_E[:p]``; the norm of row ``j`` is the weight the embedding puts on basis
    function ``j``.  The unembedding ``W_U [d_model, p]`` and the neuron-logit map
    ``W_L = W_out @ W_U [d_mlp, p]`` are transformed along their output (answer)
    axis.  Per-frequency norms combine the cos and sin rows: ``sqrt(|cos_k|^2 + |sin_k|^2)``.

Key frequencies (our rule, chosen once from the final checkpoint)
    Nanda et al. (2023, section 4, reverse-engineering the mainline model) read the key
    frequencies off the embedding's Fourier norms: a grokked embedding puts nearly all its
    norm on a few frequencies and little on the rest.  Our rule makes that reading exact.  Sort the squared per-frequency norms
    ``s_(1) >= s_(2) >= ... >= s_(n)`` (``n = (p-1)/2``) and find the largest drop
    ``s_(m) / s_(m+1)`` between neighbours (a drop to an exact zero is infinite; between two
    zeros there is none; of equal largest drops the deepest is taken).  If that drop is at
    least ``KEY_GAP`` (= 4, a factor 2 in norm) the key frequencies are every frequency with
    ``s >= s_(m)``; otherwise there are none.

    Why a gap and not a threshold on the mean or on a share of the norm.  A threshold of c
    times the mean can never pass more than ``n / c`` frequencies and drops keys that share
    the norm evenly (six equal keys at p = 47 are 3.8x the mean each); a share of the norm
    (the smallest set holding 95%) counts the noise floor in: on grokked quick-tier runs
    (p = 59, five seeds) 3-4 keys hold 87-95% of the squared norm above a floor of 25-26
    frequencies at 0.04-2.6% each, and 95% takes 8 to 15 frequencies on four of the five.
    The gap sits where the keys end and the floor begins: 7x to 39x on those runs, while no
    other neighbouring pair differs by 2x or more.  A random embedding spreads its norm evenly
    (each frequency a sum of ``2 d_model`` squares): its largest neighbouring drop stayed
    below 2.4x in 200 draws at every p in {13, 59, 113} for d_model >= 16 (below 4x in 99%
    of draws at d_model = 4), so it has no key frequency.  The rule has no cap on the count
    (every frequency but the smallest can be key), is blind to the order of ties (a cut
    never falls between equal norms) and to the overall scale.  Its blind spot: a key that is
    weaker than the other keys by more than they stand above the floor is cut off with the
    floor (the largest drop then lies inside the keys).

Restricted and excluded loss
    Over the full grid of pairs, the logits for answer ``c`` are a function of
    ``(a, b)``.  For frequency ``k`` the directions ``cos(w_k (a+b))`` and
    ``sin(w_k (a+b))`` (``w_k = 2 pi k / p``; ``a-b`` for subtraction) are orthogonal
    in ``R^{p^2}``.  *Restricted* logits keep, for every ``c``, only the projection on
    the key frequencies' directions plus the mean over ``(a, b)`` (the constant
    term); the restricted loss is their cross-entropy on all pairs.  *Excluded*
    logits remove those directions; the excluded loss is measured on the training
    pairs (the memorised part), for all key frequencies at once and for each alone.

Gini coefficient (Hurley & Rickard 2009, "Comparing measures of sparsity")
    For non-negative ``c_1..c_n`` sorted ascending, ``G = 1 - 2 sum_k (c_k / |c|_1)
    ((n - k + 1/2) / n)``.  ``G = 0`` for a constant vector, ``(n-1)/n`` for a
    one-hot one.  Applied to the ``p`` Fourier component norms of ``W_E`` and of
    ``W_L``: it rises as the weights concentrate on the key frequencies.

Sum of squared weights
    Over every parameter of the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from theorylab.errors import TheoryLabError

KEY_GAP = 4.0  # keys end at the largest drop between sorted squared norms, if >= 4x (see the module docstring)

__all__ = [
    "KEY_GAP", "fourier_basis", "basis_labels", "component_norms", "frequency_norms", "embedding_norms",
    "unembedding_norms", "neuron_logit_norms", "select_key_frequencies", "key_frequencies", "all_logits", "sum_directions",
    "restricted_logits", "excluded_logits", "cross_entropy", "gini", "weight_norm_sq", "progress_measures",
    "measure_checkpoints",
]


def _check_p(p: int) -> None:
    if p < 3 or p % 2 == 0:
        raise TheoryLabError(f"p: the Fourier basis here needs an odd modulus >= 3 (got {p})")


def fourier_basis(p: int) -> torch.Tensor:
    """The orthonormal Fourier basis of functions on Z_p: ``[p, p]`` float64, rows = basis functions."""
    _check_p(p)
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, (p - 1) // 2 + 1):
        w = 2 * math.pi * k / p
        rows.append(torch.cos(w * x))
        rows.append(torch.sin(w * x))
    B = torch.stack(rows)
    return B / B.norm(dim=1, keepdim=True)


def basis_labels(p: int) -> list[str]:
    """The names of the rows of :func:`fourier_basis`: ``["const", "cos 1", "sin 1", ...]`` (``p`` of them)."""
    return ["const"] + [f"{f} {k}" for k in range(1, (p - 1) // 2 + 1) for f in ("cos", "sin")]


def component_norms(W: torch.Tensor, p: int) -> torch.Tensor:
    """Norm of each Fourier component of ``W [p, n]`` (axis 0 indexed by Z_p): ``[p]`` float64, in ``W``'s
    unit, rows ordered as :func:`basis_labels` (Nanda et al. 2023, section 4: the norms of the embedding in
    the Fourier basis).  Raises TheoryLabError for a bad ``p`` or when ``W`` does not have ``p`` rows."""
    if W.dim() != 2 or W.shape[0] != p:
        raise TheoryLabError(f"W: the Fourier norms need [p, n] = [{p}, n] rows indexed by Z_p (got {tuple(W.shape)})")
    return (fourier_basis(p) @ W.detach().double()).norm(dim=1)


def frequency_norms(W: torch.Tensor, p: int) -> torch.Tensor:
    """Per-frequency norms ``sqrt(|cos_k|^2 + |sin_k|^2)`` of ``W [p, n]``, ``k = 1..(p-1)/2``: ``[(p-1)/2]``
    float64 (entry ``k - 1`` for frequency ``k``).  Raises as :func:`component_norms`."""
    c = component_norms(W, p)
    return (c[1::2] ** 2 + c[2::2] ** 2).sqrt()


def _number_embedding(model, p: int) -> torch.Tensor:
    return model.embed.W_E[:p].detach().double()  # [p, d]


def embedding_norms(model, p: int) -> torch.Tensor:
    """Fourier component norms of the embedding of the numbers 0..p-1 (``W_E[:p]``, ``[p, d_model]``): ``[p]``."""
    return component_norms(_number_embedding(model, p), p)


def unembedding_norms(model, p: int) -> torch.Tensor:
    """Fourier component norms of the unembedding ``W_U[:, :p]`` (``[d_model, p]``) along the answer axis:
    ``[p]``."""
    return component_norms(model.W_U[:, :p].detach().double().T, p)


def neuron_logit_norms(model, p: int) -> torch.Tensor:
    """Fourier component norms of ``W_L = W_out @ W_U`` (last layer) along the answer axis: ``[p]``."""
    blk = model.blocks[-1]
    if not hasattr(blk, "mlp"):
        return unembedding_norms(model, p)
    W_L = blk.mlp.W_out.detach().double() @ model.W_U[:, :p].detach().double()  # [d_mlp, p]
    return component_norms(W_L.T, p)


def select_key_frequencies(sq_norms: torch.Tensor | np.ndarray | Sequence[float], gap: float = KEY_GAP) -> list[int]:
    """The key frequencies (1-based, ascending) of per-frequency squared norms ``[(p-1)/2]`` (entry ``k - 1``
    for frequency ``k``, any unit): every frequency at or above the largest drop between neighbouring sorted
    values, if that drop is at least ``gap``; none otherwise (the rule and its reason are in the module
    docstring; Nanda et al. 2023, section 4, read the keys off the embedding's Fourier norms).

    Raises TheoryLabError when ``gap <= 1`` or a value is negative or not finite.
    """
    s = torch.as_tensor(np.asarray(sq_norms, dtype=np.float64)).flatten()
    if not gap > 1:
        raise TheoryLabError(f"gap: a key-frequency gap must be > 1 (got {gap})")
    if not bool(torch.isfinite(s).all()):
        raise TheoryLabError("key frequencies: the Fourier norms are not finite (a diverged embedding?)")
    if bool((s < 0).any()):
        raise TheoryLabError("key frequencies: squared norms must be non-negative")
    if s.numel() < 2:
        return []
    srt = torch.sort(s, descending=True).values
    hi, lo = srt[:-1], srt[1:]
    drop = torch.where(lo > 0, hi / torch.where(lo > 0, lo, 1.0),
                       torch.where(hi > 0, math.inf, 1.0))  # [n - 1]: s_(m) / s_(m+1)
    best = float(drop.max())
    if not best >= gap:
        return []
    m = int(torch.nonzero(drop == best).flatten().max())  # the deepest of equal largest drops
    return [int(k) + 1 for k in torch.nonzero(s >= srt[m]).flatten()]


def key_frequencies(model, p: int, gap: float = KEY_GAP) -> list[int]:
    """Key frequencies of the embedding of the numbers ``0..p-1`` (``model.embed.W_E[:p]``, ``[p, d_model]``):
    :func:`select_key_frequencies` of its squared per-frequency Fourier norms; 1-based, ascending.

    Nanda et al. (2023, arXiv 2301.05217, section 4).  Raises TheoryLabError for an even or too small ``p``
    and for a non-finite embedding.
    """
    return select_key_frequencies(frequency_norms(_number_embedding(model, p), p) ** 2, gap)


# --------------------------------------------------------------------------- logits on the full grid


@torch.no_grad()
def all_logits(model, p: int) -> torch.Tensor:
    """Logits of every input ``a b =`` as ``[a, b, c]`` (``[p, p, p]``, float64), computed in float64."""
    import copy

    m = copy.deepcopy(model).double().eval()
    dev = next(m.parameters()).device
    a, b = torch.meshgrid(torch.arange(p, device=dev), torch.arange(p, device=dev), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p, device=dev)], dim=1)
    out = m(tokens, positions=slice(-1, None))[:, -1, :p]
    return out.reshape(p, p, p)


def sum_directions(p: int, k: int, op: str = "+") -> torch.Tensor:
    """Unit vectors ``cos(w_k s)`` and ``sin(w_k s)`` over the grid, ``s = a+b`` (or ``a-b``): ``[2, p, p]``."""
    if op not in ("+", "-"):
        raise TheoryLabError(f"op: restricted/excluded loss are defined for '+' and '-' (got {op!r})")
    x = torch.arange(p, dtype=torch.float64)
    s = x[:, None] + x[None, :] if op == "+" else x[:, None] - x[None, :]
    w = 2 * math.pi * k / p
    d = torch.stack([torch.cos(w * s), torch.sin(w * s)])
    return d / d.flatten(1).norm(dim=1)[:, None, None]


def _projection(logits: torch.Tensor, freqs: list[int], op: str) -> torch.Tensor:
    """Sum over ``freqs`` of the logits' projection on their (a,b)-directions, per answer c."""
    p = logits.shape[0]
    out = torch.zeros_like(logits, dtype=torch.float64)
    L = logits.double()
    for k in freqs:
        D = sum_directions(p, k, op)  # [2, p, p]
        coef = torch.einsum("abc,dab->dc", L, D)  # [2, p]
        out += torch.einsum("dc,dab->abc", coef, D)
    return out


def restricted_logits(logits: torch.Tensor, freqs: list[int], op: str = "+") -> torch.Tensor:
    """Restricted logits ``[p, p, p]`` float64 (Nanda et al. 2023, section 5.1): of ``logits [a, b, c]`` keep,
    for every ``c``, only the directions ``cos / sin(w_k (a op b))`` of the frequencies ``freqs`` and the
    mean over ``(a, b)``.  Raises TheoryLabError for an ``op`` other than ``"+"`` or ``"-"``."""
    L = logits.double()
    return L.mean(dim=(0, 1), keepdim=True).expand_as(L) + _projection(L, freqs, op)


def excluded_logits(logits: torch.Tensor, freqs: list[int], op: str = "+") -> torch.Tensor:
    """Excluded logits ``[p, p, p]`` float64 (Nanda et al. 2023, section 5.1): ``logits [a, b, c]`` with the
    directions ``cos / sin(w_k (a op b))`` of the frequencies ``freqs`` removed (everything else kept).
    Raises TheoryLabError for an ``op`` other than ``"+"`` or ``"-"``."""
    L = logits.double()
    return L - _projection(L, freqs, op)


def cross_entropy(logits: torch.Tensor, op: str, p: int, mask: torch.Tensor | None = None) -> float:
    """Mean cross-entropy (nats, float64) of ``[p, p, p]`` logits ``[a, b, c]`` against ``(a op b) mod p``,
    over the pairs where ``mask [p, p]`` is True (all pairs without one).  Raises TheoryLabError unless
    ``op`` is ``"+"`` or ``"-"``."""
    if op not in ("+", "-"):
        raise TheoryLabError(f"op: the Fourier measures are defined for '+' and '-' (got {op!r})")
    x = torch.arange(p)
    c = (x[:, None] + x[None, :]) % p if op == "+" else (x[:, None] - x[None, :]) % p
    lp = torch.log_softmax(logits.double(), dim=-1)
    nll = -lp.gather(-1, c[..., None]).squeeze(-1)
    if mask is not None:
        nll = nll[mask]
    return float(nll.mean())


# --------------------------------------------------------------------------- sparsity and weights


def gini(c: torch.Tensor | np.ndarray | list[float]) -> float:
    """Hurley & Rickard's (2009) Gini index of a non-negative vector ``c [n]`` (0 = evenly spread, (n-1)/n =
    one-hot; 0 for an all-zero vector; NaN if an entry is NaN).  Nanda et al. (2023) track it on the
    Fourier norms.  Raises TheoryLabError for an empty vector or a negative entry."""
    v = torch.as_tensor(c, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise TheoryLabError("gini: empty vector")
    if bool((v < 0).any()):
        raise TheoryLabError("gini: values must be non-negative (norms)")
    total = float(v.sum())
    if total == 0.0:
        return 0.0
    n = v.numel()
    s, _ = torch.sort(v)
    k = torch.arange(1, n + 1, dtype=torch.float64)
    return float(1.0 - 2.0 * torch.sum((s / total) * ((n - k + 0.5) / n)))


def weight_norm_sq(model) -> float:
    """Sum of squared weights over every parameter of ``model`` (float64; Nanda et al. 2023 track it through
    the cleanup phase)."""
    return float(sum(float((p.detach().double() ** 2).sum()) for p in model.parameters()))


# --------------------------------------------------------------------------- all measures at once


def progress_measures(model, task, freqs: list[int], per_frequency: bool = True) -> dict[str, Any]:
    """Every progress measure of one model on a modular task (``+`` or ``-``), given the key frequencies
    (Nanda et al. 2023, section 5.1): ``train_loss`` / ``test_loss`` (nats, on the task's pairs),
    ``restricted_loss`` (on every pair), ``excluded_loss`` (on the training pairs; and per frequency in
    ``excluded_loss_per_freq`` when ``per_frequency``), ``gini_embed``, ``gini_neuron_logit`` and
    ``weight_norm_sq``.  Raises TheoryLabError for another ``op``."""
    cfg = task.cfg
    p, op = cfg.p, cfg.op
    if op not in ("+", "-"):
        raise TheoryLabError(f"task.op: Fourier progress measures need '+' or '-' (got {op!r})")
    train, test = task.pair_split()
    L = all_logits(model, p)
    out: dict[str, Any] = {
        "train_loss": cross_entropy(L, op, p, train),
        "test_loss": cross_entropy(L, op, p, test),
        "restricted_loss": cross_entropy(restricted_logits(L, freqs, op), op, p),
        "excluded_loss": cross_entropy(excluded_logits(L, freqs, op), op, p, train),
        "gini_embed": gini(embedding_norms(model, p)),
        "gini_neuron_logit": gini(neuron_logit_norms(model, p)),
        "weight_norm_sq": weight_norm_sq(model),
    }
    if per_frequency:
        out["excluded_loss_per_freq"] = {int(k): cross_entropy(excluded_logits(L, [k], op), op, p, train)
                                         for k in freqs}
    return out


def measure_checkpoints(task, checkpoints: Sequence[tuple[int, Callable[[], Any]]], freqs: list[int] | None = None,
                        every: int = 1) -> dict[str, Any]:
    """Progress measures over a series of checkpoints of one modular-arithmetic run.

    ``checkpoints`` is ``[(step, load)]`` in step order, ``load()`` returning that step's model
    (:meth:`theorylab.store.Store.checkpoint_models` gives it for a stored run); every ``every``-th
    one is measured, and the last always.  Key frequencies come from the final checkpoint
    (:func:`key_frequencies`) unless given.  Returns ``{"steps": [...], "key_frequencies": [...],
    measure: [value per step], ...}`` plus ``"embed_norms_final"`` and ``"freq_norms_final"`` (the
    spectrum of the final embedding) for figures.  Raises TheoryLabError when there is no checkpoint.
    """
    if not checkpoints:
        raise TheoryLabError("no checkpoints to measure")
    if every < 1:
        raise TheoryLabError(f"every: must be >= 1 (got {every})")
    p = task.cfg.p
    final = checkpoints[-1][1]()
    if freqs is None:
        freqs = key_frequencies(final, p)
    series: dict[str, Any] = {"steps": [], "key_frequencies": list(freqs)}
    chosen = list(checkpoints[::every])
    if chosen[-1][0] != checkpoints[-1][0]:
        chosen.append(checkpoints[-1])
    for step, load in chosen:
        m = final if step == checkpoints[-1][0] else load()
        vals = progress_measures(m, task, freqs)
        series["steps"].append(step)
        for k, v in vals.items():
            if k == "excluded_loss_per_freq":
                for f, x in v.items():
                    series.setdefault(f"excluded_loss_freq_{f}", []).append(x)
            else:
                series.setdefault(k, []).append(v)
    series["embed_norms_final"] = embedding_norms(final, p).tolist()
    series["freq_norms_final"] = frequency_norms(_number_embedding(final, p), p).tolist()
    return series
