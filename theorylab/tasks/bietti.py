"""Bigram data with trigger tokens (Bietti, Cabannes, Bouchacourt, Jégou & Bottou 2023, "Birth of a
Transformer: A Memory Viewpoint", NeurIPS, arXiv 2306.00802), written from the paper's description.

A global bigram Markov chain (initial distribution ``pi_1``, transition matrix ``pi_b``) over ``vocab``
tokens generates each sequence, except after the ``n_triggers`` trigger tokens ``q_k``: each
sequence draws its own output token ``o_k`` for every trigger, uniformly over the vocabulary (the
paper's ``pi_o``), and wherever ``q_k`` occurs the next token is ``o_k``.  The triggers are the
``n_triggers`` most likely tokens under the chain's stationary distribution, as the paper takes the
most frequent characters.

Predicting ``o_k`` at the *second and later* occurrences of ``q_k`` needs an induction head (look
back to the previous occurrence of the current token and copy what followed it); the first
occurrence is unpredictable (loss ``log vocab``); every other position is a global bigram that the
weights can memorise (Bayes loss ``H(pi_b[z_t])``).

Deviation: the paper estimates ``pi_1`` and ``pi_b`` from character-level Shakespeare, which cannot
be downloaded here; we draw them from a Dirichlet(``concentration``) per row, fixed by
``chain_seed`` (the same chain for every run seed, so seeds vary only the samples and the model).

Metrics per evaluation: loss and accuracy overall; on in-context outputs (``icl_*``: second and
later trigger occurrences), first occurrences (``first_*``) and bigram positions (``bigram_*``,
with ``bigram_optimal_loss``, the Bayes loss on exactly those positions); per layer, the best
head's previous-token score (over all positions, and ``prev_token_after_trigger_l*`` over the positions
right after a trigger, the ones the induction head reads) and trigger induction score (attention mass
from a trigger's repeat to the tokens that followed its earlier occurrences); and the paper's memory-recall probes, read
from the weights (:func:`memory_recall_probes`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from theorylab.config import Seed
from theorylab.tasks import register_task
from theorylab.tasks.base import IGNORE, Batch, Task, TaskConfig, step_rng


class BigramTriggersConfig(TaskConfig):
    name: Literal["bigram_triggers"] = "bigram_triggers"
    vocab: int = Field(64, gt=2, description="tokens (paper: 65 characters)")
    seq_len: int = Field(64, gt=2, description="tokens per sequence (paper: 256)")
    n_triggers: int = Field(5, ge=1, description="trigger tokens (paper: K = 5 most frequent)")
    concentration: float = Field(0.5, gt=0, description="Dirichlet concentration of pi_1 and each row of pi_b")
    chain_seed: Seed = Field(0, description="seed of the bigram chain (0..2**63-1; shared by every run seed)")
    n_test: int = Field(256, gt=0, description="sequences in the test split")

    @model_validator(mode="after")
    def _check(self) -> BigramTriggersConfig:
        if self.n_triggers >= self.vocab:
            raise ValueError(f"n_triggers ({self.n_triggers}) must be below vocab ({self.vocab})")
        return self

    def data_numbers(self) -> int:
        return 3 * self.vocab**2 + 3 * self.n_test * self.seq_len  # pi_b and its cumulative sums; the test split

    def model_defaults(self) -> dict[str, Any]:
        return {"d_vocab": self.vocab, "n_ctx": self.seq_len}


def bigram_chain(vocab: int, concentration: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pi_1 [V], pi_b [V, V]) drawn from Dirichlet(concentration), float64, rows summing to 1."""
    rng = np.random.default_rng([int(seed), 0xB16])
    alpha = np.full(vocab, concentration)
    return rng.dirichlet(alpha), rng.dirichlet(alpha, size=vocab)


def stationary(pi_b: np.ndarray) -> np.ndarray:
    """The stationary distribution of a transition matrix (left eigenvector of eigenvalue 1)."""
    w, v = np.linalg.eig(pi_b.T)
    mu = np.real(v[:, np.argmin(np.abs(w - 1))])
    return mu / mu.sum()


def row_entropy(pi_b: np.ndarray) -> np.ndarray:
    """[V]: entropy (nats) of each row, the Bayes loss of predicting the next token from the current one."""
    p = np.clip(pi_b, 1e-300, 1)
    return -(pi_b * np.log(p)).sum(1)


@register_task
class BigramTriggersTask(Task):
    """Global bigrams plus sequence-specific trigger -> output pairs (needs an induction head)."""

    Config = BigramTriggersConfig
    cfg: BigramTriggersConfig

    def __init__(self, cfg: BigramTriggersConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.pi_1, self.pi_b = bigram_chain(cfg.vocab, cfg.concentration, cfg.chain_seed)
        self.triggers = np.sort(np.argsort(-stationary(self.pi_b), kind="stable")[: cfg.n_triggers])
        self._cum_b = np.cumsum(self.pi_b, axis=1)
        self._cum_1 = np.cumsum(self.pi_1)
        self.test_set = self.sample(cfg.n_test, np.random.default_rng([self.seed, 0xB1E77]))

    # ------------------------------------------------------------------ data
    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        c = self.cfg
        V, T = c.vocab, c.seq_len
        out_tok = rng.integers(0, V, size=(n, c.n_triggers))  # o_k per sequence
        trig_index = np.full(V, -1)
        trig_index[self.triggers] = np.arange(c.n_triggers)
        u = rng.random((n, T))
        z = np.empty((n, T), dtype=np.int64)
        z[:, 0] = np.minimum(np.searchsorted(self._cum_1, u[:, 0], side="right"), V - 1)
        rows = np.arange(n)
        for t in range(1, T):
            prev = z[:, t - 1]
            nxt = (self._cum_b[prev] < u[:, t, None]).sum(1)  # inverse-CDF draw from pi_b[prev]
            k = trig_index[prev]
            z[:, t] = np.where(k >= 0, out_tok[rows, np.maximum(k, 0)], np.minimum(nxt, V - 1))
        tokens = torch.from_numpy(z)
        targets = tokens.clone()
        targets[:, :-1] = tokens[:, 1:]
        targets[:, -1] = IGNORE
        # kind of each prediction position t (predicting z_{t+1}): 2 = in-context output (a repeat of
        # a trigger), 1 = first occurrence of a trigger, 0 = bigram
        is_trig = trig_index[z] >= 0
        seen = np.zeros((n, T), dtype=bool)
        for q in self.triggers:
            occ = z == q
            seen |= occ & (np.cumsum(occ, axis=1) >= 2)
        kind = np.where(is_trig, np.where(seen, 2, 1), 0)
        kind[:, -1] = -1  # no target at the last position
        return Batch(tokens=tokens, targets=targets,
                     extras={"kind": torch.from_numpy(kind), "outputs": torch.from_numpy(out_tok)})

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        return self.sample(batch_size or 64, step_rng(self.seed, step))

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.test_set}

    # ------------------------------------------------------------------ metrics
    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        logits = model(batch.tokens) if out is None else out
        lp = torch.log_softmax(logits.double(), -1)
        nll = -lp.gather(-1, batch.targets.clamp_min(0)[..., None]).squeeze(-1)
        hit = (logits.argmax(-1) == batch.targets).double()
        kind = batch.extras["kind"]
        m: dict[str, float] = {"loss": float(nll[kind >= 0].mean()), "accuracy": float(hit[kind >= 0].mean())}
        for name, code in (("bigram", 0), ("first", 1), ("icl", 2)):
            sel = kind == code
            if sel.any():
                m[f"{name}_loss"], m[f"{name}_accuracy"] = float(nll[sel].mean()), float(hit[sel].mean())
        big = (kind == 0).cpu().numpy()
        m["bigram_optimal_loss"] = float(row_entropy(self.pi_b)[batch.tokens.cpu().numpy()[big]].mean())
        return m






