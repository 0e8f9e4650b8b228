"""Modular arithmetic: ``a op b mod p`` (Power et al. 2022; Nanda et al. 2023).

Each example is the three tokens ``a b =`` (``=`` is token ``p``) and the answer
``c`` is predicted at the ``=`` position; no loss is taken elsewhere.  All pairs
(``b != 0`` for division) are split once, by the task seed, into a train fraction
and a test remainder.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator

from theorylab.config import Seed
from theorylab.tasks import register_task
from theorylab.tasks.base import IGNORE, Batch, Task, TaskConfig


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % k for k in range(2, int(n**0.5) + 1))


OPS = ("+", "-", "*", "/")


class ModularConfig(TaskConfig):
    name: Literal["modular"] = "modular"
    # p^2 examples are held in memory: 2048 bounds that at about 4 million (a few hundred MB).
    p: int = Field(113, ge=2, le=2048, description="prime modulus, 2..2048")
    op: Literal["+", "-", "*", "/"] = Field("+", description="the operation; / excludes b = 0")
    train_fraction: float = Field(0.3, gt=0, lt=1, description="share of the pairs in the train split (both "
                                  "splits must keep one pair)")
    data_seed: Seed | None = Field(None, description="seed of the train/test split (0..2**63-1); none = the run seed")

    @field_validator("p")
    @classmethod
    def _prime(cls, v: int) -> int:
        if not is_prime(v):
            raise ValueError("must be a prime (e.g. 97, 113)")
        return v

    @field_validator("train_fraction")
    @classmethod
    def _both_splits(cls, v: float, info: ValidationInfo) -> float:
        p, op = info.data.get("p"), info.data.get("op")
        if p is None or op is None:  # p or op is invalid itself: that error is reported
            return v
        n = n_pairs(p, op)
        n_train = int(round(v * n))
        if not 1 <= n_train <= n - 1:
            raise ValueError(f"{v} of the {n} pairs (p={p}, op {op}) gives {n_train} train and {n - n_train} test "
                             f"pairs; both splits need one: give a fraction above {0.5 / n:.3g} and below {1 - 0.5 / n:.3g}")
        return v

    def model_defaults(self) -> dict[str, Any]:
        return {"d_vocab": self.p + 1, "d_vocab_out": self.p, "n_ctx": 3}

    def rows_per_step(self) -> int:
        return int(round(self.train_fraction * n_pairs(self.p, self.op)))  # full batch: the train split

    def data_numbers(self) -> int:
        return 16 * n_pairs(self.p, self.op)  # every pair (3 tokens, 3 targets, a, b), again as the two splits


def n_pairs(p: int, op: str) -> int:
    """How many (a, b) examples the table holds: every pair, or b != 0 for division."""
    return p * (p - 1) if op == "/" else p * p


def modular_table(p: int, op: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All valid (a, b) pairs and their answers, in row-major order."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    if op == "/":
        keep = b != 0
        a, b = a[keep], b[keep]
        inverse = np.array([0] + [pow(x, p - 2, p) for x in range(1, p)])  # Fermat: b^(p-2) = 1/b mod p
        c = (a * inverse[b]) % p
    elif op == "+":
        c = (a + b) % p
    elif op == "-":
        c = (a - b) % p
    else:
        c = (a * b) % p
    return a, b, c


@register_task
class ModularTask(Task):
    Config = ModularConfig
    cfg: ModularConfig

    def __init__(self, cfg: ModularConfig, seed: int = 0):
        super().__init__(cfg, seed)
        p = cfg.p
        a, b, c = modular_table(p, cfg.op)
        split_seed = seed if cfg.data_seed is None else cfg.data_seed
        perm = np.random.default_rng([int(split_seed), 0x30D]).permutation(len(a))
        n_train = int(round(cfg.train_fraction * len(a)))
        tokens = torch.from_numpy(np.stack([a, b, np.full_like(a, p)], axis=1)).long()
        targets = torch.full_like(tokens, IGNORE)
        targets[:, -1] = torch.from_numpy(c).long()
        full = Batch(tokens=tokens, targets=targets,
                     extras={"a": torch.from_numpy(a).long(), "b": torch.from_numpy(b).long()})
        self.all_pairs = full
        self.train_idx = torch.from_numpy(np.sort(perm[:n_train]))
        self.test_idx = torch.from_numpy(np.sort(perm[n_train:]))
        self.train_set = full.index(self.train_idx)
        self.test_set = full.index(self.test_idx)

    def eval_sets(self) -> dict[str, Batch]:
        return {"train": self.train_set, "test": self.test_set}

    def pair_split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Which pairs ``(a, b)`` are in each split: boolean ``train [p, p]`` and ``test [p, p]``
        tables indexed by ``[a, b]`` (for ``/`` the column ``b = 0`` is in neither)."""
        p = self.cfg.p
        out = []
        for split in (self.train_set, self.test_set):
            m = torch.zeros(p, p, dtype=torch.bool)
            m[split.extras["a"], split.extras["b"]] = True
            out.append(m)
        return out[0], out[1]

    def forward(self, model, batch: Batch) -> torch.Tensor:
        # Only the '=' position carries a loss: ask the model for that position alone.
        return model(batch.tokens, positions=slice(-1, None))

    def loss(self, model, batch: Batch):
        logits = self.forward(model, batch)[:, -1]
        return torch.nn.functional.cross_entropy(logits, batch.targets[:, -1]), logits

    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        logits = (self.forward(model, batch) if out is None else out)
        if logits.dim() == 3:
            logits = logits[:, -1]
        tgt = batch.targets[:, -1]
        lp = torch.log_softmax(logits.double(), dim=-1)
        return {
            "loss": float(-lp.gather(-1, tgt[:, None]).mean()),
            "accuracy": float((logits.argmax(-1) == tgt).double().mean()),
        }
