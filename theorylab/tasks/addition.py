"""Multi-digit addition with an answer of L tokens: the task of Schaeffer et al.'s metric-mirage argument.

Schaeffer, Miranda and Koyejo (2023, "Are Emergent Abilities of Large Language Models a Mirage?",
NeurIPS, §2) observe that exact match on an answer of ``L`` tokens behaves like ``p^L`` when each token is
right with probability ``p``: a smooth rise of ``p`` with scale looks like a sudden jump in exact match.
Their examples include multi-digit arithmetic (GPT-3's 2- to 5-digit addition).  Here every example is

    a_1 .. a_d  +  b_1 .. b_d  =  c_1 .. c_L        (L = d + 1 answer digits, leading zeros kept)

with ``a``, ``b`` uniform in ``[0, 10^d)``, operands written most significant digit first and the answer
least significant digit first by default (``reverse_answer``): the order in which a left-to-right model
can carry.  The loss is taken on the answer tokens only (teacher forcing).  Metrics on the answer:
``loss`` (nats per answer token), ``accuracy`` (per-token accuracy ``p``), ``exact_match`` (every answer
token right: with teacher forcing this equals greedy decoding's exact match, because greedy decoding
writes the right answer exactly when each token's argmax given the right prefix is right),
``answer_log_prob`` (log-probability of the whole right answer, nats: a continuous re-scoring) and
``digit_accuracy_<i>`` per answer position.  Training data are fresh every step (a pure function of seed
and step); the test set is fixed by the run seed.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from theorylab.tasks import register_task
from theorylab.tasks.base import IGNORE, Batch, Task, TaskConfig, step_rng

PLUS, EQUALS = 10, 11  # token ids after the ten digits


class AdditionConfig(TaskConfig):
    name: Literal["addition"] = "addition"
    digits: int = Field(3, ge=1, le=12, description="digits d of each operand; the answer has d + 1 tokens")
    reverse_answer: bool = Field(True, description="write the answer least significant digit first (the order a "
                                                   "left-to-right model can carry in)")
    n_test: int = Field(1024, gt=0, description="held-out examples")
    batch: int = Field(64, gt=0, description="examples per step when train.batch_size is none")

    def answer_length(self) -> int:
        return self.digits + 1

    def seq_len(self) -> int:
        return 2 * self.digits + 2 + self.answer_length() - 1  # the last answer digit is only a target

    def rows_per_step(self) -> int:
        return self.batch

    def data_numbers(self) -> int:
        return 2 * self.n_test * (self.seq_len() + 1)

    def model_defaults(self) -> dict[str, Any]:
        return {"d_vocab": 12, "d_vocab_out": 10, "n_ctx": self.seq_len()}


def digits_of(x: np.ndarray, d: int) -> np.ndarray:
    """[n] non-negative integers -> [n, d] decimal digits, most significant first (leading zeros kept)."""
    powers = 10 ** np.arange(d - 1, -1, -1, dtype=np.int64)
    return (x[:, None] // powers[None, :]) % 10


def examples(cfg: AdditionConfig, rng: np.random.Generator, n: int) -> Batch:
    """``n`` examples: tokens [n, T], targets [n, T] (IGNORE on the prompt), extras ``a``, ``b`` [n]."""
    d, L = cfg.digits, cfg.answer_length()
    hi = 10**d
    a = rng.integers(0, hi, n, dtype=np.int64)
    b = rng.integers(0, hi, n, dtype=np.int64)
    c = digits_of(a + b, L)
    if cfg.reverse_answer:
        c = c[:, ::-1]
    full = np.concatenate([digits_of(a, d), np.full((n, 1), PLUS), digits_of(b, d), np.full((n, 1), EQUALS), c], 1)
    tokens = torch.from_numpy(np.ascontiguousarray(full[:, :-1]))
    targets = torch.full_like(tokens, IGNORE)
    targets[:, -L:] = torch.from_numpy(np.ascontiguousarray(c))
    return Batch(tokens=tokens, targets=targets, extras={"a": torch.from_numpy(a), "b": torch.from_numpy(b)})


@register_task
class AdditionTask(Task):
    """d-digit addition, answer of d + 1 tokens; per-token accuracy beside exact match (Schaeffer et al. 2023)."""

    Config = AdditionConfig
    cfg: AdditionConfig

    def __init__(self, cfg: AdditionConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.test_set = examples(cfg, np.random.default_rng([self.seed, 0xADD]), cfg.n_test)

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        return examples(self.cfg, step_rng(self.seed, step), batch_size or self.cfg.batch)

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.test_set}

    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        logits = self.forward(model, batch) if out is None else out
        L = self.cfg.answer_length()
        lg, tg = logits[:, -L:].double(), batch.targets[:, -L:]
        lp = torch.log_softmax(lg, dim=-1).gather(-1, tg.unsqueeze(-1)).squeeze(-1)  # [n, L]
        right = lg.argmax(-1) == tg  # [n, L]
        m = {"loss": float(-lp.mean()), "accuracy": float(right.double().mean()),
             "exact_match": float(right.all(-1).double().mean()), "answer_log_prob": float(lp.sum(-1).mean())}
        for i in range(L):
            m[f"digit_accuracy_{i}"] = float(right[:, i].double().mean())
        return m
