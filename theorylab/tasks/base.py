"""The Task interface: a synthetic data source with a known ground truth.

A task family is a :class:`TaskConfig` subclass (its validated parameters, with a
``name`` literal) and a :class:`Task` subclass (the data).  Register both with
:func:`register_task`; the registry lives in :mod:`theorylab.tasks`.

Data comes as :class:`Batch` objects.  Token tasks fill ``tokens`` (``[B, T]`` int64)
and ``targets`` (``[B, T]`` int64, ``IGNORE`` where no loss is taken).  Tasks with
continuous inputs (in-context regression) fill ``inputs`` (``[B, T, D]`` float) and
float ``targets`` with a boolean ``mask``.  ``extras`` carries task-specific tensors
(labels for per-group accuracy, lengths, ...).

Randomness is explicit: the training batch for step ``t`` is a pure function of
(``seed``, ``t``), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from theorylab.config import Config, register_section
from theorylab.models.objectives import IGNORE
from theorylab.models.objectives import cross_entropy as token_cross_entropy


@dataclass
class Batch:
    tokens: torch.Tensor | None = None  # [B, T] int64
    targets: torch.Tensor | None = None  # [B, T] int64 (IGNORE = no loss) or [B, T, *] float
    inputs: torch.Tensor | None = None  # [B, T, D] float (continuous-input tasks)
    mask: torch.Tensor | None = None  # [B, T] bool (continuous targets)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        x = self.tokens if self.tokens is not None else self.inputs
        return 0 if x is None else int(x.shape[0])

    def index(self, idx: torch.Tensor | slice) -> Batch:
        def take(x):
            return None if x is None else x[idx]

        return Batch(
            tokens=take(self.tokens),
            targets=take(self.targets),
            inputs=take(self.inputs),
            mask=take(self.mask),
            extras={k: v[idx] for k, v in self.extras.items()},
        )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        def mv(x):
            if x is None:
                return None
            if dtype is not None and x.is_floating_point():
                return x.to(device=device, dtype=dtype)
            return x.to(device)

        return Batch(mv(self.tokens), mv(self.targets), mv(self.inputs), mv(self.mask),
                     {k: mv(v) for k, v in self.extras.items()})


class TaskConfig(Config):
    """Base of every task config.  Subclasses add ``name: Literal[...]`` and their fields."""

    name: str

    def model_defaults(self) -> dict[str, Any]:
        """Model fields this task decides (vocabulary, context length, output size)."""
        return {}

    # Sizes for the memory estimate (theorylab.runs.config.check_memory): rough, upper bounds, from the
    # config alone, so that an absurd size is refused before the task is built.
    def rows_per_step(self) -> int | None:
        """Examples in a training step when ``train.batch_size`` is none (none: the loop's default)."""
        return None

    def data_numbers(self) -> int:
        """About how many numbers the task holds in memory at once (its splits, tables, matrices)."""
        return 0


register_section(TaskConfig, "task")  # errors in any task config read task.<field>: ...


def step_rng(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """The generator for one training step: a pure function of (seed, step, stream)."""
    return np.random.default_rng([int(seed), int(step), int(stream), 0x7A5C])


def torch_generator(seed: int, *salt: int) -> torch.Generator:
    s = np.random.SeedSequence([int(seed), *[int(x) for x in salt]]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF)


class Task:
    """A synthetic task.  Subclasses set ``Config`` and implement the data methods.

    Fixed-dataset tasks (modular arithmetic, graph paths) build their splits in
    ``__init__`` and set ``self.train_set``; :meth:`train_batch` then draws
    minibatches (or the full batch) from it.  Online tasks (fresh samples every
    step) override :meth:`train_batch` and :meth:`eval_sets`.
    """

    Config: ClassVar[type[TaskConfig]]
    level: ClassVar[str | None] = None  # e.g. Chomsky hierarchy level, kept as data
    chance: ClassVar[float | None] = None  # accuracy of guessing, where the task has one (formal languages)

    def __init__(self, cfg: TaskConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = int(seed)
        self.train_set: Batch | None = None

    # ---------------------------------------------------------------- data
    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        """The batch for optimizer step ``step`` (pure function of seed and step)."""
        if self.train_set is None:
            raise NotImplementedError(f"{type(self).__name__} must override train_batch")
        n = len(self.train_set)
        if batch_size is None or batch_size >= n:
            return self.train_set
        idx = step_rng(self.seed, step).choice(n, size=batch_size, replace=False)
        return self.train_set.index(torch.from_numpy(np.sort(idx)))

    def eval_sets(self) -> dict[str, Batch]:
        """Named fixed evaluation splits, e.g. ``{"train": ..., "test": ...}``."""
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, device: Any, dtype: Any, eval_bs: int) -> dict[str, float] | None:
        """Optional: the whole evaluation as ``{"split/name": value}``, for tasks whose splits are
        not single batches (per-length accuracy over many lengths).  ``None`` (the default) means
        the trainer evaluates :meth:`metrics` on each of :meth:`eval_sets` in chunks."""
        return None

    # ---------------------------------------------------------------- loss and metrics
    def forward(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """Model outputs for a batch (logits ``[B, T, V]`` for token tasks)."""
        if batch.tokens is not None:
            return model(batch.tokens)
        return model(batch.inputs)

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean training loss in nats, and the model outputs it came from."""
        out = self.forward(model, batch)
        return token_cross_entropy(out, batch.targets), out

    @torch.no_grad()
    def metrics(self, model: torch.nn.Module, batch: Batch, out: torch.Tensor | None = None) -> dict[str, float]:
        """Evaluation metrics for one split: at least ``loss`` (nats) and ``accuracy``."""
        if out is None:
            out = self.forward(model, batch)
        return token_metrics(out, batch.targets)


def chunked_mean(fn: Callable[[Batch], dict[str, float]], batch: Batch, rows: int, device: Any = None,
                 dtype: Any = None) -> dict[str, float]:
    """``fn(chunk)`` over ``batch`` in chunks of ``rows`` examples (moved to ``device``/``dtype``), each value
    averaged with the chunk sizes as weights (one call when the batch fits)."""
    n = len(batch)
    if n <= rows:
        return fn(batch.to(device or "cpu", dtype))
    acc: dict[str, float] = {}
    for i in range(0, n, rows):
        part = batch.index(slice(i, i + rows)).to(device or "cpu", dtype)
        for k, v in fn(part).items():
            acc[k] = acc.get(k, 0.0) + v * len(part)
    return {k: v / n for k, v in acc.items()}


def chunked_metrics(task: Task, model: torch.nn.Module, batch: Batch, rows: int, device: Any = None,
                    dtype: Any = None) -> dict[str, float]:
    """``task.metrics`` over ``batch`` in chunks of ``rows`` examples (see :func:`chunked_mean`)."""
    return chunked_mean(lambda part: task.metrics(model, part), batch, rows, device, dtype)


def token_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Loss (nats, float64), token accuracy and whole-sequence accuracy."""
    mask = targets != IGNORE
    lp = torch.log_softmax(logits.double(), dim=-1)
    tgt = targets.clamp_min(0)
    nll = -lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    n = mask.sum().clamp_min(1)
    correct = (logits.argmax(-1) == targets) | ~mask
    return {
        "loss": float((nll * mask).sum() / n),
        "accuracy": float(((logits.argmax(-1) == targets) & mask).sum() / n),
        "seq_accuracy": float(correct.all(dim=-1).double().mean()),
    }
