"""Multi-token recall: the answer to a query of ``L`` keys is their ``L`` values (Schaeffer et al.'s toy model).

Schaeffer, Miranda and Koyejo (2023, "Are Emergent Abilities of Large Language Models a Mirage?", NeurIPS,
§2) argue that when each of the ``L`` tokens of an answer is right with probability ``p(N)`` that rises
smoothly with the model size ``N``, exact match on the whole answer behaves like ``p(N)^L``: a sharp,
"emergent" curve made by the metric, while per-token metrics (accuracy, token edit distance, the
log-probability of the right answer) stay smooth.  The issue names "multi-digit addition, or multi-token
recall" as tasks with such answers; this recall task is built so that both of the toy model's premises hold
by construction:

* **independent tokens**: a query is ``L`` keys drawn independently, and the right answer token ``i`` is the
  value of key ``i`` alone (a fixed random table), so the ``L`` answer tokens are right or wrong
  independently and exact match is ``p^L`` in expectation;
* **a smooth p(N)**: a key is a pair of tokens ``(a, b)`` from an alphabet of ``A`` (so its value cannot
  sit in a free per-key embedding but must be stored in the weights that combine the two), the table holds
  ``A^2 log2 V`` bits, and keys are drawn with Zipf frequencies ``P(rank r) ~ r^-s``.  A model with too few
  parameters stores the table partly, the most frequent keys first (about 2 bits per parameter: Allen-Zhu
  and Li 2024, "Physics of language models 3.3"); with ``s = 1`` the frequency mass of the ``n`` most
  frequent keys grows like ``log n``, so ``p`` rises smoothly with ``log N`` (the quantization model of
  Michaud et al. 2023, which gives power-law scaling from Zipf-distributed pieces of knowledge).

Every example interleaves keys and values: ``a_1 b_1 v_1 a_2 b_2 v_2 .. a_L b_L v_L``; the model reads all
but the last token and is scored on each ``v_i`` (at the position of ``b_i``; loss on the answer tokens
only).  Training queries are fresh every step (a pure function of seed and step); the test queries are a
fixed sample from the same distribution.  Metrics on the test queries: ``loss`` (nats per answer token),
``accuracy`` (per-token accuracy ``p``), ``exact_match`` (all ``L`` right), ``answer_log_prob`` (nats,
log-probability of the whole right answer: a continuous re-scoring), ``edit_distance`` (token edit distance
of the greedy answer from the right one, Levenshtein over tokens, averaged: Schaeffer et al.'s linear
metric; the greedy answer feeds the model's own values back), ``p_to_the_L`` (``accuracy ** L``, their
prediction of exact match), ``position_accuracy_<i>`` and ``exact_match_<n>``, the exact match of the first
``n`` answer tokens for ``n`` = 1, 2, 4, .. below ``L`` (answers of ``n`` tokens from the same model).  Addition (:mod:`theorylab.tasks.addition`) is the
other task with L-token answers; there the digits are learned all-or-none and depend on each other through
carries, so neither premise holds.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from theorylab.tasks import register_task
from theorylab.tasks.base import IGNORE, Batch, Task, TaskConfig, step_rng


class RecallConfig(TaskConfig):
    name: Literal["recall"] = "recall"
    alphabet: int = Field(32, ge=2, le=4096, description="tokens A a key is made of (keys are pairs: A^2 keys)")
    answer_length: int = Field(4, ge=1, le=64, description="keys per query, so tokens L of every answer")
    n_values: int = Field(16, ge=2, le=65536, description="value tokens V; each key's value is uniform over them")
    zipf: float = Field(1.0, ge=0, le=4, description="exponent s of the key frequencies P(rank r) ~ r^-s "
                                                    "(0: uniform)")
    n_test: int = Field(2048, gt=0, description="held-out queries (a fixed sample)")
    batch: int = Field(64, gt=0, description="queries per step when train.batch_size is none")

    def n_keys(self) -> int:
        return self.alphabet**2

    def rows_per_step(self) -> int:
        return self.batch

    def data_numbers(self) -> int:
        return self.n_keys() * 2 + 4 * self.n_test * 3 * self.answer_length

    def model_defaults(self) -> dict[str, Any]:
        return {"d_vocab": self.alphabet + self.n_values, "d_vocab_out": self.n_values,
                "n_ctx": 3 * self.answer_length - 1}


class World:
    """The recall world of one seed: ``table`` [A^2] value ids (key ``a * A + b``) and ``probs`` [A^2] key
    frequencies (Zipf over a random ranking of the keys)."""

    def __init__(self, cfg: RecallConfig, seed: int):
        rng = np.random.default_rng([int(seed), 0x2EC])
        k = cfg.n_keys()
        self.table = rng.integers(0, cfg.n_values, k)
        w = np.arange(1, k + 1, dtype=np.float64) ** -cfg.zipf
        self.probs = np.empty(k)
        self.probs[rng.permutation(k)] = w / w.sum()

    def queries(self, cfg: RecallConfig, rng: np.random.Generator, n: int) -> Batch:
        """``n`` queries: tokens [n, 3L - 1], targets [n, 3L - 1] (value ids at the ``b_i`` positions, IGNORE
        elsewhere), extras ``keys`` [n, L]."""
        L, A = cfg.answer_length, cfg.alphabet
        keys = rng.choice(self.probs.size, size=(n, L), p=self.probs)
        vals = self.table[keys]
        seq = np.stack([keys // A, keys % A, A + vals], 2).reshape(n, 3 * L)
        tgt = np.full((n, 3 * L), IGNORE, dtype=np.int64)
        tgt[:, 1::3] = vals
        return Batch(tokens=torch.from_numpy(np.ascontiguousarray(seq[:, :-1])),
                     targets=torch.from_numpy(np.ascontiguousarray(tgt[:, :-1])),
                     extras={"keys": torch.from_numpy(keys)})


def prefix_lengths(L: int) -> list[int]:
    """Answer lengths at which exact match is also scored (on the first ``n`` answer tokens): the powers of two
    below ``L``, then ``L`` itself; ``exact_match_<n>`` is the exact match of an ``n``-token answer from the same
    model (Schaeffer et al.'s third prediction: longer answers look sharper)."""
    out, n = [], 1
    while n < L:
        out.append(n)
        n *= 2
    return [*out, L]


def token_edit_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Levenshtein distance between the rows of two [n, L] token arrays (insertions, deletions and
    substitutions of whole tokens, each cost 1): [n] ints.  Dynamic programming over the L + 1 columns,
    vectorised over rows."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"token_edit_distance: expected [n, L] arrays with equal n; got {a.shape} and {b.shape}")
    n, la, lb = a.shape[0], a.shape[1], b.shape[1]
    prev = np.tile(np.arange(lb + 1), (n, 1))
    for i in range(1, la + 1):
        cur = np.empty_like(prev)
        cur[:, 0] = i
        for j in range(1, lb + 1):
            sub = prev[:, j - 1] + (a[:, i - 1] != b[:, j - 1])
            cur[:, j] = np.minimum(np.minimum(prev[:, j] + 1, cur[:, j - 1] + 1), sub)
        prev = cur
    return prev[:, lb]


@register_task
class RecallTask(Task):
    """Queries of L keys answered by their L values; per-token accuracy, exact match and continuous re-scorings."""

    Config = RecallConfig
    cfg: RecallConfig

    def __init__(self, cfg: RecallConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.world = World(cfg, self.seed)
        self.test_set = self.world.queries(cfg, np.random.default_rng([self.seed, 0x7E57]), cfg.n_test)

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        return self.world.queries(self.cfg, step_rng(self.seed, step), batch_size or self.cfg.batch)

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.test_set}

    @torch.no_grad()
    def greedy(self, model, batch: Batch) -> torch.Tensor:
        """The model's own answer to each query: [n, L] value ids, each read after the keys with the model's
        earlier answers (not the right ones) fed back."""
        A = self.cfg.alphabet
        seq = batch.tokens.clone()
        out = []
        for i in range(self.cfg.answer_length):
            nxt = model(seq[:, : 3 * i + 2])[:, -1].argmax(-1)
            out.append(nxt)
            if 3 * i + 2 < seq.shape[1]:
                seq[:, 3 * i + 2] = A + nxt
        return torch.stack(out, 1)

    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        logits = self.forward(model, batch) if out is None else out
        L = self.cfg.answer_length
        lg, tg = logits[:, 1::3], batch.targets[:, 1::3]  # [n, L, V], [n, L]
        lp = torch.log_softmax(lg.double(), dim=-1).gather(-1, tg.unsqueeze(-1)).squeeze(-1)  # [n, L]
        right = lg.argmax(-1) == tg  # [n, L]
        p = float(right.double().mean())
        m = {"loss": float(-lp.mean()), "accuracy": p, "exact_match": float(right.all(-1).double().mean()),
             "answer_log_prob": float(lp.sum(-1).mean()), "p_to_the_L": p**L}
        if model is not None:
            gen = self.greedy(model, batch).cpu().numpy()
            m["edit_distance"] = float(token_edit_distance(gen, tg.cpu().numpy()).mean())
        for i in range(L):
            m[f"position_accuracy_{i}"] = float(right[:, i].double().mean())
        for n in prefix_lengths(L)[:-1]:
            m[f"exact_match_{n}"] = float(right[:, :n].all(-1).double().mean())
        return m


__all__ = ["RecallConfig", "RecallTask", "World", "prefix_lengths", "token_edit_distance"]
