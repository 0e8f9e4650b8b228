"""Induction-head measurements from raw token tensors and attention patterns
(Olsson et al. 2022, "In-context Learning and Induction Heads").

All functions take ``tokens [B, T]`` and an attention pattern ``[B, H, T, T]`` (query
rows, key columns; e.g. ``cache["blocks.1.attn.hook_pattern"]``) and return one score
per head:

* previous-token score: mean attention from position i to i - 1;
* induction (stripe) score: on a sequence repeated with period P, mean attention from every
  position i >= P (every row of the later copies) to i - P + 1 (the token after the earlier
  occurrence);
* prefix-matching score: attention mass on the keys j whose previous token equals the
  query's token (tokens[j - 1] == tokens[i]), averaged over the query rows that have at
  least one such key (rows that cannot match are left out, not counted as zero).
"""

from __future__ import annotations

import numpy as np
import torch

from theorylab.errors import ConfigError


def _check(tokens: torch.Tensor, pattern: torch.Tensor) -> None:
    if tokens.dim() != 2 or pattern.dim() != 4 or pattern.shape[0] != tokens.shape[0] \
            or pattern.shape[-1] != tokens.shape[1] or pattern.shape[-2] != tokens.shape[1]:
        raise ConfigError(f"tokens [B, T] and pattern [B, H, T, T] do not match: {tuple(tokens.shape)} vs "
                          f"{tuple(pattern.shape)}")


def previous_token_score(tokens: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """Previous-token score of each head: ``[H]`` float64, the mean over b and over every query row
    ``1 <= i < T`` of ``pattern[b, h, i, i - 1]`` (a fraction in [0, 1]; 1 = attends only to the previous
    token).  Olsson et al. (2022): the first half of the two-layer induction circuit.

    ``tokens [B, T]`` (only the shape is read), ``pattern [B, H, T, T]`` (query rows, key columns).
    Raises ConfigError on mismatched shapes.
    """
    _check(tokens, pattern)
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).double().mean(dim=(0, 2))


def induction_score(tokens: torch.Tensor, pattern: torch.Tensor, period: int) -> torch.Tensor:
    """Induction (stripe) score of each head on a sequence repeated with period ``P``: ``[H]`` float64.

    ``score[h] = mean over b and over every query row i of the later copies (P <= i < T) of
    pattern[b, h, i, i - P + 1]``: the attention from a token to the token right after its earlier
    occurrence (row P, the first token of the second copy, looks at key 1).  ``T - P`` rows per sequence,
    each weighted equally; a fraction in [0, 1] for a softmax pattern (1 = a perfect induction head).

    Source: Olsson et al. (2022, "In-context Learning and Induction Heads": on repeated sequences of
    random tokens an induction head attends from a token to the one after its earlier occurrence) and the
    induction-head detector of TransformerLens (attention on the ``-(P - 1)`` diagonal of a repeated
    sequence, averaged over the repeated half).  ``tokens [B, T]`` are checked only for their shape: the caller makes them periodic.
    ``pattern [B, H, T, T]`` (query rows, key columns).  Raises ConfigError on mismatched shapes or
    ``period`` outside ``[1, T)``.
    """
    _check(tokens, pattern)
    T = tokens.shape[1]
    if not 1 <= period < T:
        raise ConfigError(f"period must lie in [1, {T}) (got {period})")
    # the (-(P - 1))-diagonal holds (i, i - P + 1) for i = P - 1 .. T - 1; row P - 1 belongs to the first copy
    return pattern.diagonal(offset=-(period - 1), dim1=-2, dim2=-1)[..., 1:].double().mean(dim=(0, 2))


def _row_mean(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``values [B, H, T]`` averaged over the query rows ``rows [B, T]`` only: ``[H]``.  Entries outside
    ``rows`` are not read (a NaN there does not leak into the mean)."""
    sel = rows[:, None].expand_as(values)
    return torch.where(sel, values, 0.0).sum(dim=(0, 2)) / rows.sum()


def prefix_matching_score(tokens: torch.Tensor, pattern: torch.Tensor,
                          rows: torch.Tensor | None = None) -> torch.Tensor:
    """Prefix-matching score of each head: ``[H]`` float64, a fraction in [0, 1].

    For a query row i, the matching keys are the positions ``1 <= j <= i`` whose previous token equals the
    query's token (``tokens[b, j - 1] == tokens[b, i]``: the token after an earlier occurrence, which an
    induction head attends to).  The score is the attention mass on the matching keys, averaged over the
    query rows that have at least one (and, if ``rows [B, T]`` bool is given, only over those rows);
    rows that cannot match are left out, not counted as zero, and entries outside the counted rows and
    keys are not read (a NaN there does not matter; a NaN on a counted entry gives NaN).

    Olsson et al. (2022, "In-context Learning and Induction Heads"): the prefix-matching property of an
    induction head; TransformerLens's induction-head detection pattern marks the same keys.
    ``tokens [B, T]``, ``pattern [B, H, T, T]``.  Raises ConfigError on mismatched shapes or when no
    counted row has a matching key.
    """
    _check(tokens, pattern)
    B, T = tokens.shape
    prev = torch.full_like(tokens, -1)
    prev[:, 1:] = tokens[:, :-1]
    match = prev[:, None, :] == tokens[:, :, None]  # [B, Tq, Tk]: tokens[k-1] == tokens[q]
    match[:, :, 0] = False  # key 0 has no previous token
    match &= torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()[None]  # keys a causal query can see
    if rows is not None and tuple(rows.shape) != (B, T):
        raise ConfigError(f"rows must be [B, T] = {(B, T)} (got {tuple(rows.shape)})")
    rows = match.any(-1) if rows is None else match.any(-1) & rows.bool()  # [B, Tq]
    if not rows.any():
        raise ConfigError("no query row has a matching earlier token: use repeated sequences")
    mass = torch.where(match[:, None], pattern.double(), 0.0).sum(-1)  # [B, H, Tq]
    return _row_mean(mass, rows)


def trigger_induction_score(tokens: torch.Tensor, pattern: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """Trigger-induction score of each head: ``[H]`` float64, the :func:`prefix_matching_score` over the
    query rows holding a repeated trigger (``kind == 2``): the attention mass on the positions right after
    the trigger's earlier occurrences, where its output token sits (Bietti et al. 2023, "Birth of a
    Transformer: A Memory Viewpoint": the induction head of the bigram-with-triggers task).

    ``tokens [B, T]``, ``pattern [B, H, T, T]``, ``kind [B, T]`` (the task's position kinds; 2 = a trigger
    seen before).  Returns zeros when no row holds a repeated trigger (the training loop logs only finite
    values).  Raises ConfigError on mismatched shapes.
    """
    _check(tokens, pattern)
    rows = kind == 2  # every repeat of a trigger has an earlier occurrence to match
    if not rows.any():
        return torch.zeros(pattern.shape[1], dtype=torch.float64, device=pattern.device)
    return prefix_matching_score(tokens, pattern, rows=rows)


def previous_token_after_trigger_score(tokens: torch.Tensor, pattern: torch.Tensor, triggers) -> torch.Tensor:
    """``[H]`` float64: mean of ``pattern[b, h, t, t - 1]`` over the positions ``t >= 1`` whose previous token
    is a trigger (where an output token sits: the only positions whose previous token the induction head
    needs); other rows are not read.  Bietti et al. (2023): the previous-token head of the
    bigram-with-triggers task.

    ``tokens [B, T]``, ``pattern [B, H, T, T]``, ``triggers``: the trigger token ids.  Returns zeros when no
    position follows a trigger.  Raises ConfigError on mismatched shapes.
    """
    _check(tokens, pattern)
    trig = torch.as_tensor(np.asarray(triggers), dtype=tokens.dtype, device=tokens.device)
    rows = torch.zeros_like(tokens, dtype=torch.bool)
    rows[:, 1:] = torch.isin(tokens[:, :-1], trig)
    if not rows.any():
        return torch.zeros(pattern.shape[1], dtype=torch.float64, device=pattern.device)
    diag = torch.zeros(pattern.shape[:3], dtype=torch.float64, device=pattern.device)
    diag[..., 1:] = pattern.diagonal(offset=-1, dim1=-2, dim2=-1).double()
    return _row_mean(diag, rows)


def _recalled(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``scores [..., n, m]``: 1.0 where row i's highest score is at ``target[i]`` and nowhere else (a tie
    recalls nothing: which of the tied entries comes first is an accident of the order), else 0.0."""
    best = scores.max(-1, keepdim=True).values
    at_best = scores == best
    hit = at_best.gather(-1, target.expand(*scores.shape[:-1])[..., None]).squeeze(-1)
    return (hit & (at_best.sum(-1) == 1)).double()


@torch.no_grad()
def memory_recall_probes(model, triggers=None) -> dict[str, float]:
    """Bietti et al.'s memory-recall probes (2023, "Birth of a Transformer: A Memory Viewpoint": the
    associative memories of the induction mechanism, read from the weights) for a two-layer attention-only
    model: fractions in [0, 1], best head (or head pair); layer norms and biases ignored.  A probe counts an
    item as recalled when the right entry holds the highest score alone (a tie recalls nothing).

    * ``probe_prev_token``: layer-0 positional key-query memory: the fraction of positions t >= 1
      whose highest score ``(p_t W_Q)(p_s W_K)^T`` over s <= t is at s = t - 1 (learned positions only);
    * ``probe_induction_key``: layer-1 key memory: the fraction of tokens k whose query
      ``e_k W_Q^1`` scores highest against the key written by the layer-0 value/output path of the
      same token, ``e_k W_V^0 W_O^0 W_K^1``, among all tokens j;
    * ``probe_induction_key_triggers`` (when ``triggers`` is given): the same, over the trigger tokens k
      only (argmax still over all j): with fixed triggers the task needs only these keys, so the
      all-token probe can stay low while this one is high;
    * ``probe_induction_output``: layer-1 output memory: the fraction of tokens k for which
      ``e_k W_V^1 W_O^1 W_U`` has its largest logit at k (the head copies what it attends to).

    Weights read: ``embed.W_E [V, d]``, ``W_U [d, V]``, ``blocks.{0,1}.attn.W_Q/W_K/W_V [H, d, dh]``, ``W_O
    [H, dh, d]``, ``pos_embed.W_pos [T, d]``.  Returns ``{}`` for a model with fewer than two blocks.
    """
    blocks = model.blocks
    if len(blocks) < 2:
        return {}
    W_E = model.embed.W_E.double()
    W_U = (model.unembed.W_U if hasattr(model.unembed, "W_U") else model.embed.W_E.T).double()
    V = W_E.shape[0]
    a0, a1 = blocks[0].attn, blocks[1].attn
    out: dict[str, float] = {}
    ids = torch.arange(V, device=W_E.device)
    ov1 = torch.einsum("vd,hde,hef,fu->hvu", W_E, a1.W_V.double(), a1.W_O.double(), W_U)
    out["probe_induction_output"] = float(_recalled(ov1, ids).mean(-1).max())
    q1 = torch.einsum("vd,hde->hve", W_E, a1.W_Q.double())  # [H1, V, dh]
    prev_written = torch.einsum("vd,hde,hef->hvf", W_E, a0.W_V.double(), a0.W_O.double())  # [H0, V, d]
    k1 = torch.einsum("gvf,hfe->ghve", prev_written, a1.W_K.double())  # [H0, H1, V, dh]
    scores = torch.einsum("hve,ghue->ghvu", q1, k1)
    recalled = _recalled(scores, ids)  # [H0, H1, V]
    out["probe_induction_key"] = float(recalled.mean(-1).max())
    if triggers is not None:
        out["probe_induction_key_triggers"] = float(recalled[..., torch.as_tensor(np.asarray(triggers), device=W_E.device)].mean(-1).max())
    if hasattr(model, "pos_embed"):
        P = model.pos_embed.W_pos.double()
        T = P.shape[0]
        s = torch.einsum("hte,hse->hts", torch.einsum("td,hde->hte", P, a0.W_Q.double()),
                         torch.einsum("sd,hde->hse", P, a0.W_K.double()))
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=P.device).tril(), float("-inf"))[:, 1:]
        out["probe_prev_token"] = float(_recalled(s, torch.arange(T - 1, device=P.device)).mean(-1).max())
    return out


def in_context_gain(loss_per_position: torch.Tensor, period: int) -> float:
    """In-context gain on a sequence repeated with period ``P`` (nats; > 0 = it learns in context): the mean
    loss on the first copy's tokens ``1 .. P-1`` minus the mean loss on the tokens ``P+1 .. T-1`` (those an
    induction head can copy from an earlier occurrence; token ``P``, the second copy's first token, follows
    the first copy's last token, which occurred nowhere before, so it cannot be predicted in context).
    The same split as the induction task's ``in_context_gain`` metric; Olsson et al. (2022) measure
    in-context learning as the loss on later tokens minus the loss on earlier ones.

    ``loss_per_position [..., T]``: the loss on token ``t`` (predicted from the tokens before it; entry 0 is
    unused), i.e. a next-token loss shifted right by one.  Every entry of the two sets is weighted equally.
    Raises ConfigError unless ``2 <= P`` and ``P + 1 < T``.
    """
    T = loss_per_position.shape[-1]
    if not 2 <= period < T - 1:
        raise ConfigError(f"period must lie in [2, {T - 1}) for {T} positions (got {period})")
    loss = loss_per_position.detach().double()
    first = loss[..., 1:period].mean()
    later = loss[..., period + 1:].mean()
    return float(first - later)


# --------------------------------------------------------------------------- phase-change detection


def _arrays(steps, values):
    import numpy as np

    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if s.ndim != 1 or s.shape != v.shape or len(s) < 3:
        raise ConfigError(f"steps and values must be 1-D, of equal length and at least 3 long (got {s.shape}, "
                          f"{v.shape})")
    if not np.all(np.isfinite(v)):
        raise ConfigError("values must be finite")
    if np.any(np.diff(s) <= 0):
        raise ConfigError("steps must be strictly increasing")
    return s, v


def transition(steps, values, *, direction: str = "down", window_frac: float = 0.1) -> dict[str, float]:
    """Where and how abruptly a curve moves from its start to its end (Olsson et al. 2022: the induction-head
    "phase change", an abrupt drop of the in-context loss that coincides with a rise of the head scores).

    ``steps`` and ``values``: 1-D, equal length, at least 3, steps ascending, values finite (any unit);
    ``direction`` "down" for a loss, "up" for a score; ``x`` below is the curve signed so that the expected
    direction is up.  Returns:

    * ``step``: the first evaluated step from which on the curve stays at least halfway from
      its first value to its last (a midpoint crossing that does not revert); NaN when ``change <= 0``;
    * ``change``: last minus first value, signed so that the expected direction is positive (the values'
      unit);
    * ``sharpness``: the largest fraction of ``change`` gained across one window, the net change
      ``(x[j] - x[i]) / change`` from an evaluation i to the last evaluation j within ``window_frac`` of
      the run's steps after it (at least the next evaluation, when the window is shorter than one
      interval), maximised over i (1 = all of it at once; a linear curve gives about ``window_frac``; 0 when
      ``change <= 0``).  An abrupt transition has a sharpness well above ``window_frac``.

    Raises ConfigError on a bad ``direction``, ``window_frac`` outside (0, 1) or bad arrays.
    """
    import numpy as np

    if direction not in ("down", "up"):
        raise ConfigError(f"direction must be 'down' or 'up' (got {direction!r})")
    if not 0 < window_frac < 1:
        raise ConfigError(f"window_frac must lie in (0, 1) (got {window_frac})")
    s, v = _arrays(steps, values)
    x = -v if direction == "down" else v
    change = float(x[-1] - x[0])
    out = {"step": float("nan"), "change": change, "sharpness": 0.0}
    if change <= 0:
        return out
    frac = (x - x[0]) / change
    stays = np.minimum.accumulate(frac[::-1])[::-1]  # stays[i] = min(frac[i:])
    out["step"] = float(s[int(np.argmax(stays >= 0.5))])
    width = window_frac * (s[-1] - s[0])
    best = 0.0
    for i in range(len(s)):
        # at least one evaluation interval, when the window is shorter than that
        j = min(max(int(np.searchsorted(s, s[i] + width, side="right")) - 1, i + 1), len(s) - 1)
        best = max(best, float(x[j] - x[i]) / change)
    out["sharpness"] = best
    return out


# --------------------------------------------------------------------------- a hand-built induction head


def hand_built_induction_model(vocab: int, n_ctx: int, scale: float = 40.0):
    """A two-layer attention-only Transformer whose weights implement an induction head.

    Residual stream: [token one-hot (vocab) | position one-hot (n_ctx) | previous token
    (vocab) | output (vocab)].  Layer 0's head attends from i to i - 1 by position and
    writes the token it finds into the previous-token subspace; layer 1's head queries
    with the current token against keys' previous tokens (prefix matching) and copies the
    attended token into the output subspace, which the unembedding reads.  No norms.

    The two-layer circuit of Olsson et al. (2022) written by hand: ``vocab`` tokens, ``n_ctx`` positions,
    ``d_model = 3 vocab + n_ctx``; ``scale`` is the attention logit of a match (large = hard attention).
    Returns a :class:`~theorylab.models.Transformer` in eval mode.
    """
    from theorylab.models import Transformer, TransformerConfig

    V, T = vocab, n_ctx
    d = 3 * V + T
    dh = max(V, T)
    cfg = TransformerConfig(d_vocab=V, n_ctx=T, d_model=d, n_layers=2, n_heads=1, d_head=dh, attn_only=True,
                            norm="none", positional="learned", bias=False)
    model = Transformer(cfg)
    tok, pos, prev, out = slice(0, V), slice(V, V + T), slice(V + T, 2 * V + T), slice(2 * V + T, d)
    w: dict[str, torch.Tensor] = {}
    W_E = torch.zeros(V, d)
    W_E[:, tok] = torch.eye(V)
    W_pos = torch.zeros(T, d)
    W_pos[:, pos] = torch.eye(T)
    w["embed.W_E"], w["pos_embed.W_pos"] = W_E, W_pos
    # layer 0: query at position i matches key at position i - 1
    Q0, K0, V0, O0 = tuple(torch.zeros(1, d, dh) for _ in range(3)) + (torch.zeros(1, dh, d),)
    Q0[0, pos, :T] = torch.eye(T)
    K0[0, pos, :T] = scale * torch.eye(T, T).roll(1, dims=1)  # key j -> head dim j + 1
    K0[0, V + T - 1, 0] = 0.0  # the last position has no successor (no wrap-around)
    V0[0, tok, :V] = torch.eye(V)
    O0[0, :V, prev] = torch.eye(V)
    # layer 1: query token == key's previous token; copy the key's token to the output
    Q1, K1, V1, O1 = tuple(torch.zeros(1, d, dh) for _ in range(3)) + (torch.zeros(1, dh, d),)
    Q1[0, tok, :V] = torch.eye(V)
    K1[0, prev, :V] = scale * torch.eye(V)
    K1[0, V, :V] = -scale  # position 0 has no previous token (layer 0 made it attend to itself)
    V1[0, tok, :V] = torch.eye(V)
    O1[0, :V, out] = torch.eye(V)
    for i, (q, k, v, o) in enumerate(((Q0, K0, V0, O0), (Q1, K1, V1, O1))):
        w.update({f"blocks.{i}.attn.W_Q": q, f"blocks.{i}.attn.W_K": k, f"blocks.{i}.attn.W_V": v,
                  f"blocks.{i}.attn.W_O": o})
    W_U = torch.zeros(d, V)
    W_U[out] = scale * torch.eye(V)
    w["unembed.W_U"] = W_U
    model.set_weights(w, strict=True)
    return model.eval()
