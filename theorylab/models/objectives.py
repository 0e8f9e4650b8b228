"""Language-model objectives and their metrics.

* causal LM: predict token ``t+1`` from tokens ``<= t``;
* masked LM: BERT's corruption (15% of positions; of those 80% become ``[MASK]``, 10% a
  random token, 10% stay) and a loss on the selected positions only;
* sequence-to-sequence: decoder logits against target tokens;
* last-position classification: one label per sequence, read at a position.

Losses are mean cross-entropy in nats; :func:`bits` and :func:`perplexity` convert.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from theorylab.errors import ConfigError

IGNORE = -100
LN2 = math.log(2.0)


def bits(nats: float | torch.Tensor) -> float | torch.Tensor:
    """Cross-entropy in bits from nats."""
    return nats / LN2


def perplexity(nats: float | torch.Tensor) -> float | torch.Tensor:
    """exp(cross-entropy in nats)."""
    return torch.exp(nats) if torch.is_tensor(nats) else math.exp(nats)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) over positions whose target is not IGNORE.  ``logits [..., V]`` in bfloat16 or
    float16 (a mixed-precision forward pass) are taken to float32 first, so the loss is always computed in at
    least float32 (Micikevicius et al. 2018, §3.3: reductions in full precision)."""
    if logits.shape[:-1] != targets.shape:
        raise ConfigError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} do not line up")
    if logits.dtype in (torch.bfloat16, torch.float16):
        logits = logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)


def causal_lm_loss(logits: torch.Tensor, tokens: torch.Tensor, loss_mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """``logits [B, T, V]`` computed from ``tokens [B, T]``: loss of predicting tokens[:, 1:]."""
    targets = tokens[:, 1:].clone()
    if loss_mask is not None:
        targets[~loss_mask[:, 1:].bool()] = IGNORE
    return cross_entropy(logits[:, :-1], targets)


def mask_tokens(tokens: torch.Tensor, mask_token_id: int, vocab_size: int, generator: torch.Generator,
                mask_prob: float = 0.15, special_ids: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption.  Returns ``(inputs, labels)``; labels are IGNORE where not selected."""
    if not 0 < mask_prob < 1:
        raise ConfigError(f"mask_prob must lie in (0, 1) (got {mask_prob})")
    if not 0 <= mask_token_id < vocab_size:
        raise ConfigError(f"mask_token_id must lie in [0, {vocab_size}) (got {mask_token_id})")
    u = torch.rand(tokens.shape, generator=generator)
    selectable = torch.ones_like(tokens, dtype=torch.bool)
    for s in special_ids:
        selectable &= tokens != s
    selected = (u < mask_prob) & selectable
    labels = torch.where(selected, tokens, torch.full_like(tokens, IGNORE))
    r = torch.rand(tokens.shape, generator=generator)
    to_mask = selected & (r < 0.8)
    to_random = selected & (r >= 0.8) & (r < 0.9)
    inputs = tokens.clone()
    inputs[to_mask] = mask_token_id
    random_tokens = torch.randint(0, vocab_size, tokens.shape, generator=generator)
    inputs[to_random] = random_tokens[to_random]
    return inputs, labels


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return cross_entropy(logits, labels)


def seq2seq_loss(logits: torch.Tensor, decoder_targets: torch.Tensor) -> torch.Tensor:
    """Decoder ``logits [B, T, V]`` against ``decoder_targets [B, T]`` (IGNORE = padding)."""
    return cross_entropy(logits, decoder_targets)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, position: int = -1) -> torch.Tensor:
    """One label per sequence read from the logits at ``position`` (default: the last)."""
    return F.cross_entropy(logits[:, position], labels)
