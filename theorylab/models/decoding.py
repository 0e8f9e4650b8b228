"""Decoding: greedy, beam search and sampling with a KV cache.

Semantics follow Hugging Face ``generate`` (so that a model exported with
:func:`theorylab.models.hf.to_hf` decodes to the same tokens):

* sampling filters run temperature -> top-k -> top-p; top-k keeps every token whose score
  ties the k-th; top-p keeps a token while the probability mass ranked above it is below
  ``top_p`` (so the token crossing the threshold survives), and at least
  ``min_tokens_to_keep`` tokens; ``top_k=0`` and ``top_p=1`` switch a filter off;
* beam search keeps ``num_beams`` running beams; each step looks at the best
  ``max(2, 1 + #eos) * num_beams`` continuations; a continuation that ends (eos, or the
  length limit) among the first ``num_beams`` of them becomes a finished hypothesis scored
  ``sum log p / generated_length ** length_penalty``; ``early_stopping`` True stops once
  ``num_beams`` hypotheses are finished, False stops when the best running beam, scored at its
  current length, cannot beat the worst finished one, "never" does the same with the most
  favourable length;
* finished sequences are padded with ``pad_token_id`` (or the first eos id; in beam search,
  as in Hugging Face, a pad id of 0 also falls back to the first eos id).
"""

from __future__ import annotations

from typing import Literal

import torch

from theorylab.errors import ConfigError
from theorylab.models.transformer import KVCache, Transformer

NEG = -1.0e9


# --------------------------------------------------------------------------- logits filters


def apply_temperature(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0 (got {temperature})")
    return scores / temperature


def apply_top_k(scores: torch.Tensor, top_k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    if top_k < 0:
        raise ConfigError(f"top_k must be >= 0 (got {top_k}); 0 turns the filter off")
    if top_k == 0:
        return scores
    k = min(max(top_k, min_tokens_to_keep), scores.shape[-1])
    kth = torch.topk(scores, k, dim=-1).values[..., -1:]
    return scores.masked_fill(scores < kth, float("-inf"))


def apply_top_p(scores: torch.Tensor, top_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must lie in (0, 1] (got {top_p})")
    if top_p == 1.0:
        return scores
    sorted_scores, order = torch.sort(scores, dim=-1, descending=False)
    cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cum <= (1 - top_p)  # the mass ranked above the token is < top_p => kept
    drop_sorted[..., -min_tokens_to_keep:] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))


def filter_logits(scores: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Temperature, then top-k, then top-p (Hugging Face's order)."""
    if min_tokens_to_keep < 1:
        raise ConfigError(f"min_tokens_to_keep must be >= 1 (got {min_tokens_to_keep})")
    scores = apply_temperature(scores, temperature)
    scores = apply_top_k(scores, top_k, min_tokens_to_keep)
    return apply_top_p(scores, top_p, min_tokens_to_keep)


# --------------------------------------------------------------------------- generate


def _eos_list(eos_token_id) -> list[int]:
    if eos_token_id is None:
        return []
    return [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(x) for x in eos_token_id]


@torch.no_grad()
def generate(model: Transformer, input_ids: torch.Tensor, max_new_tokens: int, *,
             strategy: Literal["greedy", "beam", "sample"] | None = None, do_sample: bool = False,
             num_beams: int = 1, length_penalty: float = 1.0, early_stopping: bool | str = False,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_tokens_to_keep: int = 1,
             eos_token_id: int | list[int] | None = None, pad_token_id: int | None = None,
             generator: torch.Generator | None = None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Continue ``input_ids [B, T]`` by up to ``max_new_tokens`` tokens; returns ``[B, T + n]``.

    ``strategy`` overrides ``do_sample``/``num_beams`` ("greedy", "beam", "sample").  Note the
    default ``top_k=0`` (no top-k filter), unlike Hugging Face's 50.  Prompts of different
    lengths are left-padded with ``attention_mask`` (1 = token, 0 = padding); as in Hugging Face,
    each row's positions then count from its first real token.
    """
    if model.cfg.architecture != "decoder":
        raise ConfigError("generate needs a decoder-only model (architecture='decoder')")
    if input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ConfigError(f"input_ids must be [batch, seq] token ids (got shape {tuple(input_ids.shape)})")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1 (got {max_new_tokens})")
    if num_beams < 1:
        raise ConfigError(f"num_beams must be >= 1 (got {num_beams})")
    if early_stopping not in (True, False, "never"):
        raise ConfigError(f"early_stopping must be True, False or 'never' (got {early_stopping!r})")
    if strategy is not None:
        if strategy not in ("greedy", "beam", "sample"):
            raise ConfigError(f"strategy must be greedy, beam or sample (got {strategy!r})")
        do_sample = strategy == "sample"
        if strategy == "greedy":
            num_beams = 1
    mask = _check_mask(model, input_ids, attention_mask)
    prompt_len = input_ids.shape[1] if mask is None else int(mask.sum(-1).max())
    longest = prompt_len + max_new_tokens - 1  # the last new token is never fed back
    if model.cfg.positional == "learned" and longest > model.cfg.n_ctx:
        raise ConfigError(f"max_new_tokens: a {prompt_len}-token prompt plus {max_new_tokens} new tokens "
                          f"needs {longest} positions; the model learned {model.cfg.n_ctx} (n_ctx)")
    # validate filters up front even if unused
    filter_logits(torch.zeros(1, 2), temperature, top_k, top_p, min_tokens_to_keep)
    eos = _eos_list(eos_token_id)
    V = model.cfg.vocab_out
    if model.cfg.d_vocab is None or V > model.cfg.d_vocab:
        raise ConfigError(f"vocabularies do not match: the model writes {V} tokens but reads "
                          f"{model.cfg.d_vocab}; generation feeds outputs back as inputs")
    n_in = model.cfg.d_vocab  # eos and pad are fed back as inputs: they must be input tokens
    for e in eos + ([pad_token_id] if pad_token_id is not None else []):
        if not 0 <= e < n_in:
            raise ConfigError(f"eos/pad token id {e} outside the vocabulary [0, {n_in})")
    if eos and pad_token_id is None:
        pad_token_id = eos[0]
    was_training = model.training
    model.eval()
    try:
        if num_beams > 1 and not do_sample:
            return _beam(model, input_ids, max_new_tokens, num_beams, length_penalty, early_stopping, eos,
                         pad_token_id, mask)
        if num_beams > 1:
            raise ConfigError("beam sampling is not supported: use num_beams=1 with sampling")
        return _greedy_or_sample(model, input_ids, max_new_tokens, do_sample, temperature, top_k, top_p,
                                 min_tokens_to_keep, eos, pad_token_id, generator, mask)
    finally:
        model.train(was_training)


def _check_mask(model: Transformer, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """The prompt mask as booleans, or None when there is no padding."""
    if mask is None:
        return None
    if mask.shape != ids.shape:
        raise ConfigError(f"attention_mask must have the prompts' shape {tuple(ids.shape)} (got {tuple(mask.shape)})")
    mask = mask.to(ids.device).bool()
    if bool(mask.all()):
        return None
    if not bool(mask[:, -1].all()) or bool((mask[:, 1:].int() < mask[:, :-1].int()).any()):
        raise ConfigError("attention_mask: generation needs left padding (zeros before each row's tokens, "
                          "and a token in the last column)")
    cfg = model.cfg
    if cfg.position_features or cfg.log_length_scale:
        raise ConfigError("attention_mask: left padding would shift position_features / log_length_scale, which "
                          "read absolute positions; generate rows of equal length separately")
    return mask


class _Stepper:
    """Next-token logits with a KV cache, or by recomputing the prefix when the model's position
    features depend on the sequence length (then cached keys would be stale).  With a left-padding
    ``mask`` the padding is masked out and positions count from each row's first token."""

    def __init__(self, model: Transformer, mask: torch.Tensor | None = None):
        self.model = model
        self.cache = KVCache() if model.supports_kv_cache else None
        self.mask = mask
        # absolute embeddings need per-row positions; relative ones (rotary, ALiBi) only the mask
        self.shift = mask is not None and model.cfg.positional in ("learned", "sinusoidal")

    def __call__(self, seqs: torch.Tensor) -> torch.Tensor:
        """Logits [N, V] after ``seqs [N, T]`` (with a cache only its new tokens are run)."""
        start = 0 if self.cache is None else self.cache.length
        kw = {}
        if self.mask is not None:
            grow = seqs.shape[1] - self.mask.shape[1]
            if grow > 0:
                self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], grow)], 1)
            kw["attention_mask"] = self.mask
            if self.shift:
                kw["position_ids"] = (self.mask.long().cumsum(-1) - 1).clamp_min(0)[:, start:]
        if self.cache is None:
            return self.model(seqs, positions=slice(-1, None), **kw)[:, -1].float()
        return self.model(seqs[:, start:], cache=self.cache, positions=slice(-1, None), **kw)[:, -1].float()

    def reorder(self, index: torch.Tensor) -> None:
        if self.cache is not None:
            self.cache.reorder(index)


def _greedy_or_sample(model, ids, max_new, do_sample, temperature, top_k, top_p, keep, eos, pad, generator, mask):
    step_logits = _Stepper(model, mask)
    logits = step_logits(ids)
    out = ids
    unfinished = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)
    eos_t = torch.tensor(eos, device=ids.device) if eos else None
    for step in range(max_new):
        if do_sample:
            scores = filter_logits(logits, temperature, top_k, top_p, keep)
            probs = scores.softmax(-1)
            if generator is not None and generator.device != probs.device:  # e.g. a CPU generator, GPU model
                nxt = torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1).to(probs.device)
            else:
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        else:
            nxt = logits.argmax(-1)
        if eos_t is not None:
            nxt = torch.where(unfinished, nxt, torch.full_like(nxt, pad))
        out = torch.cat([out, nxt[:, None]], dim=1)
        if eos_t is not None:
            unfinished &= ~torch.isin(nxt, eos_t)
            if not unfinished.any():
                break
        if step + 1 < max_new:
            logits = step_logits(out)
    return out


def _beam(model, ids, max_new, nb, lp, early, eos, pad, mask):
    B, T0 = ids.shape
    L = T0 + max_new
    # As Hugging Face does: a pad id of 0 counts as unset, so finished beams are filled with eos.
    fill = pad if pad else (eos[0] if eos else 0)
    K = max(2, 1 + len(eos)) * nb
    dev = ids.device
    running = torch.full((B, nb, L), fill, dtype=torch.long, device=dev)
    running[:, :, :T0] = ids[:, None]
    finished = running.clone()
    run_scores = torch.zeros(B, nb, device=dev)
    run_scores[:, 1:] = NEG
    fin_scores = torch.full((B, nb), NEG, device=dev)
    fin_done = torch.zeros(B, nb, dtype=torch.bool, device=dev)
    fin_len = torch.full((B, nb), T0, dtype=torch.long, device=dev)
    open_ = torch.ones(B, dtype=torch.bool, device=dev)
    top_mask = torch.arange(K, device=dev) < nb
    eos_t = torch.tensor(eos, device=dev) if eos else None
    step_logits = _Stepper(model, None if mask is None else mask.repeat_interleave(nb, 0))
    logits = step_logits(running[:, :, :T0].reshape(B * nb, T0))
    cur = T0
    while True:
        V = logits.shape[-1]
        logp = torch.log_softmax(logits, -1).view(B, nb, V) + run_scores[:, :, None]
        cand_scores, cand_idx = torch.topk(logp.view(B, nb * V), K, dim=-1)
        src_beam, tok = cand_idx // V, cand_idx % V
        cand = torch.gather(running, 1, src_beam[:, :, None].expand(B, K, L)).clone()
        cand[:, :, cur] = tok
        ends = torch.full_like(tok, cur + 1 >= L, dtype=torch.bool)
        if eos_t is not None:
            ends |= torch.isin(tok, eos_t)
        # finished hypotheses: only continuations ranked among the first nb may finish
        norm = cand_scores / float(cur + 1 - T0) ** lp
        full = fin_done.all(-1) & (early is True)
        ok = ends & top_mask[None] & open_[:, None] & ~full[:, None]
        merged_scores = torch.cat([fin_scores, torch.where(ok, norm, norm + NEG * 3)], 1)
        merged_seqs = torch.cat([finished, cand], 1)
        merged_done = torch.cat([fin_done, ok], 1)
        merged_len = torch.cat([fin_len, torch.full_like(tok, cur + 1)], 1)
        keep = torch.topk(merged_scores, nb, dim=-1).indices
        fin_scores = torch.gather(merged_scores, 1, keep)
        finished = torch.gather(merged_seqs, 1, keep[:, :, None].expand(B, nb, L))
        fin_done = torch.gather(merged_done, 1, keep)
        fin_len = torch.gather(merged_len, 1, keep)
        # running beams: the best continuations that did not end
        live = cand_scores + ends.float() * NEG
        nxt = torch.topk(live, nb, dim=-1).indices
        running = torch.gather(cand, 1, nxt[:, :, None].expand(B, nb, L))
        run_scores = torch.gather(live, 1, nxt)
        parent = torch.gather(src_beam, 1, nxt)  # [B, nb] index of the beam each continues
        cur += 1
        # can a running beam still beat the worst finished one?
        best_len = (L - T0) if (early == "never" and lp > 0) else (cur - T0)
        best_possible = run_scores[:, :1] / float(best_len) ** lp
        worst = torch.where(fin_done, fin_scores.min(-1, keepdim=True).values, torch.full_like(fin_scores, NEG))
        open_ &= (best_possible > worst).any(-1)
        if not open_.any() or (fin_done.all() and early is True) or bool(ends.all()):
            break
        flat_parent = (parent + torch.arange(B, device=dev)[:, None] * nb).reshape(-1)
        step_logits.reorder(flat_parent)
        logits = step_logits(running[:, :, :cur].reshape(B * nb, cur))
    best = finished[:, 0]
    best_scores_done = fin_done[:, 0]
    # a batch row with no finished hypothesis (cannot happen once the length limit is reached) keeps its best beam
    best = torch.where(best_scores_done[:, None], best, running[:, 0])
    out_len = int(torch.where(best_scores_done, fin_len[:, 0], torch.full_like(fin_len[:, 0], cur)).max())
    return best[:, :out_len]
