"""Repeated random tokens (Olsson et al. 2022): a block of random tokens, then the block again.

The block length varies per sequence (``min_period`` to ``period``), so no fixed positional
offset solves the task: predicting the second copy needs content-based lookup, an induction
head (previous-token head, then a head that attends to the token after the earlier
occurrence).  Sequences are padded to a fixed length with fresh random tokens.  The loss is
taken at every position; the metrics report the loss on the first and on the second copy,
the in-context gain between them, and, per layer, the best head's prefix-matching score
(attention on the token after an earlier occurrence of the current token) and
previous-token score, from the attention patterns.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from theorylab.tasks import register_task
from theorylab.tasks.base import Batch, Task, TaskConfig, step_rng, token_cross_entropy


class InductionConfig(TaskConfig):
    name: Literal["induction"] = "induction"
    vocab: int = Field(64, gt=1, description="tokens the random blocks are drawn from")
    period: int = Field(16, gt=1, description="longest random block")
    min_period: int = Field(8, gt=1, description="shortest random block")
    n_test: int = Field(256, gt=0, description="sequences in the test split")

    @model_validator(mode="after")
    def _periods(self) -> InductionConfig:
        if self.min_period > self.period:
            raise ValueError(f"min_period must be <= period ({self.min_period} > {self.period})")
        return self

    def model_defaults(self) -> dict[str, Any]:
        return {"d_vocab": self.vocab, "n_ctx": 2 * self.period}

    def data_numbers(self) -> int:
        return self.n_test * (6 * self.period + 1)  # the test split: tokens, targets, second-copy mask [n, 2 period]


@register_task
class InductionTask(Task):
    """Repeated random tokens: in-context copying needs an induction head."""

    Config = InductionConfig
    cfg: InductionConfig

    def __init__(self, cfg: InductionConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.test_set = self._sample(cfg.n_test, np.random.default_rng([self.seed, 0x1D]))

    def _sample(self, n: int, rng: np.random.Generator) -> Batch:
        c = self.cfg
        if c.min_period > c.period:
            from theorylab.errors import ConfigError

            raise ConfigError(f"task.min_period must be <= task.period ({c.min_period} > {c.period})")
        T = 2 * c.period
        seq = rng.integers(0, c.vocab, size=(n, T))
        periods = rng.integers(c.min_period, c.period + 1, size=n)
        second = np.zeros((n, T), dtype=bool)  # positions of the second copy
        for r, p in enumerate(periods):
            seq[r, p:2 * p] = seq[r, :p]
            second[r, p:2 * p] = True
        tokens = torch.from_numpy(seq).long()
        targets = tokens.clone()
        targets[:, :-1] = tokens[:, 1:]
        targets[:, -1] = -100
        return Batch(tokens=tokens, targets=targets,
                     extras={"period": torch.from_numpy(periods).long(), "second": torch.from_numpy(second)})

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        return self._sample(batch_size or 64, step_rng(self.seed, step))

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.test_set}

    def loss(self, model, batch: Batch):
        logits = model(batch.tokens)
        return token_cross_entropy(logits, batch.targets), logits

    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        logits = model(batch.tokens) if out is None else out
        lp = torch.log_softmax(logits.double(), -1)
        tgt = batch.targets.clamp_min(0)
        nll = -lp.gather(-1, tgt[..., None]).squeeze(-1)  # loss of predicting token t + 1 at t
        correct = (logits.argmax(-1) == batch.targets).double()
        # predictions of second-copy tokens from their previous position (the first one is not predictable)
        pred_second = torch.zeros_like(batch.extras["second"])
        pred_second[:, :-1] = batch.extras["second"][:, 1:]
        pred_second[torch.arange(len(batch)), batch.extras["period"] - 1] = False
        pred_first = torch.zeros_like(pred_second)
        for r, p in enumerate(batch.extras["period"].tolist()):
            pred_first[r, : p - 1] = True
        first, later = nll[pred_first].mean(), nll[pred_second].mean()
        valid = batch.targets != -100
        m = {"loss": float(nll[valid].mean()), "accuracy": float(correct[valid].mean()),
             "loss_first_copy": float(first), "loss_second_copy": float(later), "in_context_gain": float(first - later),
             "accuracy_second_copy": float(correct[pred_second].mean())}
        return m
