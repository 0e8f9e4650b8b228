"""Formal-language tasks for length generalization (Delétang et al. 2023; Bhattamishra et al. 2020;
Chiang & Cholak 2022).

Each task maps an input string to an output string; the Chomsky-hierarchy level of the task
(``regular``, ``dcf`` = deterministic context-free, ``cs`` = context-sensitive) is kept beside it
in the registry as ``Task.level``.  The task definitions follow Delétang et al. (ICLR 2023,
arXiv 2207.02098, section 3 and appendix A; written from the paper's and its repository's task
descriptions, not their code):

============== ========= ================================================================ =======
task           level     input -> output                                                  classes
============== ========= ================================================================ =======
even_pairs     regular   a/b string -> are #ab + #ba even (equivalently first == last)      2
parity_check   regular   a/b string -> number of b's modulo 2 (PARITY)                      2
first          regular   bit string -> its first bit (FIRST, Chiang & Cholak 2022)          2
modular_arith. regular   d op d op ... d, d in 0..4, op in {+,-,*} -> value mod 5           5
               (usual precedence: products first; even lengths drop the last symbol)
cycle_navig.   regular   moves in {stay, +1, -1} on a 5-cycle from 0 -> final position      5
reverse_string dcf       bit string w -> reverse(w)                                         2
stack_manip.   dcf       stack bits (bottom first) then POP / PUSH 0 / PUSH 1 actions       3
                         -> final stack top first, then a stop symbol (length L + 1;
                         positions after the stop carry no loss and no accuracy)
duplicate_str. cs        bit string w -> w w                                                2
missing_dup.   cs        w w with one symbol replaced by a hole (odd L: a pad at the end)   2
                         -> the missing bit
bucket_sort    cs        string over 0..4 -> the same symbols sorted                        5
============== ========= ================================================================ =======

**Layout.**  The model is an encoder (bidirectional attention).  The input reads
``x_1 ... x_L`` followed by K copies of a query symbol (the output slots, K = output length);
the model's prediction for output position k is read at slot k.  Loss and accuracy are taken on
the slots only.  With ``query_position="start"`` the slots come first, before the string (a CLS
symbol at position 0, as Chiang & Cholak's FIRST experiments read it).

**Protocol** (Delétang et al.): every training step draws one length uniformly from
``train_min_length .. train_max_length`` and a batch of strings of that length; evaluation draws
``n_eval`` fresh strings at each length and reports per-length accuracy (``acc_len_L``: the mean
per-token accuracy over the output slots) and the *score*, the mean of the per-length
accuracies, as ``accuracy``.  Split ``train`` uses the training lengths (held-out strings),
split ``test`` the lengths ``test_min_length .. test_max_length`` (every ``test_stride``-th).
Each length's evaluation strings are a pure function of (task seed, split, length).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from theorylab.tasks import register_task
from theorylab.tasks.base import IGNORE, Batch, Task, TaskConfig, chunked_metrics, step_rng

LEVELS = {"regular": "regular", "dcf": "deterministic context-free", "cs": "context-sensitive"}


class FormalConfig(TaskConfig):
    """Lengths and evaluation sizes shared by every formal-language task."""

    train_min_length: int = Field(1, ge=1, description="shortest training length")
    train_max_length: int = Field(40, ge=1, description="train on lengths min..max (Deletang et al.: 40)")
    test_min_length: int | None = Field(None, ge=1, description="none = train_max_length + 1")
    test_max_length: int = Field(500, ge=1, description="longest test length (Deletang et al.: 500)")
    test_stride: int = Field(1, ge=1, description="evaluate every k-th test length")
    n_eval: int = Field(64, gt=0, description="fresh strings per evaluated length")
    query_position: Literal["end", "start"] = Field(
        "end", description="where the output slots sit: after the string (Deletang et al.) or before it, a CLS "
                           "at position 0 read there (Chiang & Cholak's FIRST)")

    @model_validator(mode="after")
    def _lengths(self) -> FormalConfig:
        if self.train_min_length > self.train_max_length:
            raise ValueError(f"train_min_length ({self.train_min_length}) must be <= train_max_length "
                             f"({self.train_max_length})")
        lo = self.test_min_length if self.test_min_length is not None else self.train_max_length + 1
        if lo > self.test_max_length:
            raise ValueError(f"test lengths are empty: test_min_length {lo} > test_max_length {self.test_max_length}")
        return self

    def train_lengths(self) -> list[int]:
        return list(range(self.train_min_length, self.train_max_length + 1))

    def test_lengths(self) -> list[int]:
        lo = self.test_min_length if self.test_min_length is not None else self.train_max_length + 1
        lengths = list(range(lo, self.test_max_length + 1, self.test_stride))
        if lengths[-1] != self.test_max_length:
            lengths.append(self.test_max_length)  # always evaluate the longest length
        return lengths

    def rows_per_step(self) -> int:
        return 128  # the loop's batch when train.batch_size is none (train_batch)

    def data_numbers(self) -> int:
        n_ctx = self.model_defaults()["n_ctx"]
        return 4 * self.n_eval * n_ctx  # one length's evaluation strings at a time (tokens, targets; two splits)

    def model_defaults(self) -> dict[str, Any]:
        task = _TASK_BY_NAME[self.name]
        longest = max(self.train_max_length, self.test_max_length)
        return {"architecture": "encoder", "d_vocab": task.n_symbols + 1, "d_vocab_out": task.n_classes,
                "n_ctx": longest + task.output_length(longest)}


_TASK_BY_NAME: dict[str, type[FormalTask]] = {}


class FormalTask(Task):
    """Base of the formal-language tasks: subclasses define the alphabet and :meth:`sample`."""

    Config: ClassVar[type[FormalConfig]]
    cfg: FormalConfig
    level: ClassVar[str]
    n_symbols: ClassVar[int]  # input alphabet (the query symbol is n_symbols)
    n_classes: ClassVar[int]  # output alphabet
    chance: ClassVar[float]  # accuracy of uniform guessing over the output classes (per output token)

    @staticmethod
    def output_length(length: int) -> int:
        return 1

    def sample(self, rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` strings of one ``length``: inputs [n, L] and outputs [n, K] (IGNORE = no target)."""
        raise NotImplementedError

    @classmethod
    def reference(cls, x: list[int]) -> list[int]:
        """The output for one input, computed the slow obvious way (used to test :meth:`sample`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ data
    def batch(self, rng: np.random.Generator, n: int, length: int) -> Batch:
        x, y = self.sample(rng, n, length)
        length, k = x.shape[1], y.shape[1]  # modular_arithmetic drops the last symbol of even lengths
        slots, blank = np.full((n, k), self.n_symbols, dtype=np.int64), np.full((n, length), IGNORE, dtype=np.int64)
        if self.cfg.query_position == "start":
            tokens, targets = np.concatenate([slots, x], axis=1), np.concatenate([y, blank], axis=1)
        else:
            tokens, targets = np.concatenate([x, slots], axis=1), np.concatenate([blank, y], axis=1)
        return Batch(tokens=torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)),
                     targets=torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int64)))

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        rng = step_rng(self.seed, step)
        length = int(rng.integers(self.cfg.train_min_length, self.cfg.train_max_length + 1))
        return self.batch(rng, batch_size or 128, length)

    def split_lengths(self) -> dict[str, list[int]]:
        return {"train": self.cfg.train_lengths(), "test": self.cfg.test_lengths()}

    def eval_batch(self, split: str, length: int) -> Batch:
        """The fixed evaluation strings of one split and length."""
        salt = {"train": 1, "test": 2}.get(split, 3)
        return self.batch(np.random.default_rng([self.seed, salt, int(length), 0xF0]), self.cfg.n_eval, length)

    def eval_sets(self) -> dict[str, Batch]:
        """One batch per split, at its longest length (the trainer calls :meth:`evaluate` instead)."""
        return {s: self.eval_batch(s, lengths[-1]) for s, lengths in self.split_lengths().items()}

    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        logits = model(batch.tokens) if out is None else out
        mask = batch.targets != IGNORE
        lp = torch.log_softmax(logits.double(), -1)
        nll = -lp.gather(-1, batch.targets.clamp_min(0)[..., None]).squeeze(-1)
        hit = ((logits.argmax(-1) == batch.targets) & mask).double()
        per_row = hit.sum(1) / mask.sum(1).clamp_min(1)  # per-string token accuracy
        return {"loss": float((nll * mask).sum() / mask.sum().clamp_min(1)), "accuracy": float(per_row.mean()),
                "seq_accuracy": float((hit.sum(1) == mask.sum(1)).double().mean())}

    @torch.no_grad()
    def evaluate(self, model, device, dtype, eval_bs: int) -> dict[str, float]:
        """Per-length accuracy on every split; ``accuracy`` = the score (mean over lengths).

        Long strings make long inputs, so ``eval_bs`` is read as a budget of *tokens* per forward
        pass here (rows per chunk = eval_bs // sequence length, at least one)."""
        out: dict[str, float] = {}
        for split, lengths in self.split_lengths().items():
            accs, losses, seqs = [], [], []
            for length in lengths:
                rows = max(1, eval_bs // (length + self.output_length(length)))
                m = chunked_metrics(self, model, self.eval_batch(split, length), rows, device, dtype)
                accs.append(m["accuracy"])
                losses.append(m["loss"])
                seqs.append(m["seq_accuracy"])
                out[f"{split}/acc_len_{length}"] = m["accuracy"]
                out[f"{split}/loss_len_{length}"] = m["loss"]
            out[f"{split}/accuracy"] = float(np.mean(accs))
            out[f"{split}/loss"] = float(np.mean(losses))
            out[f"{split}/seq_accuracy"] = float(np.mean(seqs))
            out[f"{split}/min_length_accuracy"] = float(np.min(accs))
        return out


def per_length(metrics: dict[str, float], split: str = "test", what: str = "acc") -> tuple[list[int], list[float]]:
    """(lengths, values) from a run's ``split/acc_len_L`` (``what="acc"``, accuracy) or ``split/loss_len_L``
    (``what="loss"``, cross-entropy in nats per output symbol) metrics, sorted by length."""
    pre = f"{split}/{what}_len_"
    pairs = sorted((int(k[len(pre):]), v) for k, v in metrics.items() if k.startswith(pre))
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _formal(name: str, level: str, n_symbols: int, n_classes: int, chance: float, doc: str):
    """Class decorator: give a FormalTask its config class and registry entry."""

    def wrap(cls: type[FormalTask]) -> type[FormalTask]:
        config = type(f"{cls.__name__}Config", (FormalConfig,), {
            "__annotations__": {"name": Literal[name]}, "name": name, "__doc__": doc})
        cls.Config = config
        cls.level, cls.n_symbols, cls.n_classes, cls.chance = level, n_symbols, n_classes, chance
        cls.__doc__ = doc
        _TASK_BY_NAME[name] = cls
        return register_task(cls)

    return wrap


def _bits(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    return rng.integers(0, 2, size=(n, length), dtype=np.int64)


# ---------------------------------------------------------------------------------- regular


@_formal("even_pairs", "regular", 2, 2, 0.5, "Is the number of 'ab' plus 'ba' pairs even? (regular)")
class EvenPairs(FormalTask):
    def sample(self, rng, n, length):
        x = _bits(rng, n, length)
        return x, (x[:, :1] == x[:, -1:]).astype(np.int64)  # the pair count is even iff first == last

    @classmethod
    def reference(cls, x):
        s = "".join("ab"[t] for t in x)
        pairs = sum(s[i:i + 2] in ("ab", "ba") for i in range(len(s) - 1))
        return [int(pairs % 2 == 0)]


@_formal("parity_check", "regular", 2, 2, 0.5, "PARITY: the number of b's modulo 2 (regular)")
class ParityCheck(FormalTask):
    def sample(self, rng, n, length):
        x = _bits(rng, n, length)
        return x, (x.sum(1, keepdims=True) % 2).astype(np.int64)

    @classmethod
    def reference(cls, x):
        return ["".join("ab"[t] for t in x).count("b") % 2]


@_formal("first", "regular", 2, 2, 0.5, "FIRST: the first bit of the string (Chiang & Cholak 2022; regular)")
class First(FormalTask):
    def sample(self, rng, n, length):
        x = _bits(rng, n, length)
        return x, x[:, :1].copy()

    @classmethod
    def reference(cls, x):
        return [x[0]]


MOD = 5  # modulus of modular_arithmetic, cycle length of cycle_navigation, alphabet of bucket_sort
PLUS, MINUS, TIMES = MOD, MOD + 1, MOD + 2  # operator tokens of modular_arithmetic


@_formal("modular_arithmetic", "regular", MOD + 3, MOD, 1 / MOD,
         "d op d op ... d with d in 0..4 and op in {+, -, *}, evaluated with the usual precedence, mod 5 "
         "(regular; an even length drops its last symbol, as in Deletang et al.)")
class ModularArithmetic(FormalTask):
    def sample(self, rng, n, length):
        m = length if length % 2 else length - 1  # expressions have odd length
        x = np.empty((n, m), dtype=np.int64)
        x[:, 0:m:2] = rng.integers(0, MOD, size=(n, (m + 1) // 2))
        x[:, 1:m:2] = rng.integers(PLUS, TIMES + 1, size=(n, m // 2))
        total = np.zeros(n, dtype=np.int64)
        term = x[:, 0].copy()  # the current product, with its sign
        for i in range(1, m, 2):
            op, d = x[:, i], x[:, i + 1]
            times = op == TIMES
            total = np.where(times, total, total + term)
            term = np.where(times, term * d, np.where(op == PLUS, d, -d)) % MOD
        return x, ((total + term) % MOD)[:, None]

    @classmethod
    def reference(cls, x):
        m = len(x) if len(x) % 2 else len(x) - 1
        expr = "".join(str(t) if i % 2 == 0 else "+-*"[t - PLUS] for i, t in enumerate(x[:m]))
        return [eval(expr) % MOD]  # noqa: S307 - digits and + - * only, built above


@_formal("cycle_navigation", "regular", 3, MOD, 1 / MOD,
         "moves 0 = stay, 1 = +1, 2 = -1 on a cycle of 5 from position 0 -> the final position (regular)")
class CycleNavigation(FormalTask):
    def sample(self, rng, n, length):
        x = rng.integers(0, 3, size=(n, length), dtype=np.int64)
        step = np.array([0, 1, -1])[x]
        return x, (step.sum(1, keepdims=True) % MOD).astype(np.int64)

    @classmethod
    def reference(cls, x):
        pos = 0
        for t in x:
            pos = {0: pos, 1: (pos + 1) % MOD, 2: (pos - 1) % MOD}[t]
        return [pos]


# ---------------------------------------------------------------------- deterministic context-free


@_formal("reverse_string", "dcf", 2, 2, 0.5, "bit string w -> reverse(w) (deterministic context-free)")
class ReverseString(FormalTask):
    @staticmethod
    def output_length(length):
        return length

    def sample(self, rng, n, length):
        x = _bits(rng, n, length)
        return x, x[:, ::-1].copy()

    @classmethod
    def reference(cls, x):
        return list(reversed(x))


POP, PUSH0, PUSH1 = 2, 3, 4  # stack_manipulation action tokens (stack symbols are 0 and 1)
STOP = 2  # stack_manipulation output: end of the final stack


@_formal("stack_manipulation", "dcf", 5, 3, 1 / 3,
         "stack bits (bottom first), then POP / PUSH 0 / PUSH 1 actions -> the final stack top first and a stop "
         "symbol (deterministic context-free)")
class StackManipulation(FormalTask):
    @staticmethod
    def output_length(length):
        return length + 1

    def sample(self, rng, n, length):
        x = np.empty((n, length), dtype=np.int64)
        y = np.full((n, length + 1), IGNORE, dtype=np.int64)
        if length == 1:
            x[:, 0] = rng.integers(0, 2, size=n)
            y[:, 0], y[:, 1] = x[:, 0], STOP
            return x, y
        # the initial stack takes 1..length-1 symbols, the actions the rest
        stack_len = rng.integers(1, length, size=n)
        bits = rng.integers(0, 2, size=(n, length))
        acts = rng.integers(POP, PUSH1 + 1, size=(n, length))
        is_stack = np.arange(length)[None, :] < stack_len[:, None]
        x[:] = np.where(is_stack, bits, acts)
        # simulate all rows at once: a [n, length] array of stack cells and a height per row
        cells = np.zeros((n, length), dtype=np.int64)
        height = np.zeros(n, dtype=np.int64)
        rows = np.arange(n)
        for t in range(length):
            tok = x[:, t]
            push = is_stack[:, t] | (tok >= PUSH0)
            val = np.where(is_stack[:, t], tok, tok - PUSH0)
            cells[rows[push], height[push]] = val[push]
            height = np.where(push, height + 1, np.maximum(height - 1, 0))
        for r in range(n):  # top first, then the stop symbol; later slots carry no target
            h = height[r]
            y[r, :h] = cells[r, :h][::-1]
            y[r, h] = STOP
        return x, y

    @classmethod
    def reference(cls, x):
        k = 0  # stack symbols (0, 1) come first; the first action token (2, 3, 4) starts the actions
        while k < len(x) and x[k] in (0, 1):
            k += 1
        stack = list(x[:k])
        for a in x[k:]:
            if a == POP:
                if stack:
                    stack.pop()
            else:
                stack.append(a - PUSH0)
        out = stack[::-1] + [STOP]
        return out + [IGNORE] * (len(x) + 1 - len(out))


# ----------------------------------------------------------------------------- context-sensitive


@_formal("duplicate_string", "cs", 2, 2, 0.5, "bit string w -> w w (context-sensitive)")
class DuplicateString(FormalTask):
    @staticmethod
    def output_length(length):
        return 2 * length

    def sample(self, rng, n, length):
        x = _bits(rng, n, length)
        return x, np.concatenate([x, x], axis=1)

    @classmethod
    def reference(cls, x):
        return list(x) + list(x)


HOLE, PAD = 2, 3  # missing_duplicate: the removed symbol, and the pad of odd lengths


@_formal("missing_duplicate", "cs", 4, 2, 0.5,
         "w w with one symbol replaced by a hole (odd lengths end with a pad) -> the missing bit "
         "(context-sensitive)")
class MissingDuplicate(FormalTask):
    def sample(self, rng, n, length):
        if length == 1:  # no string to duplicate: Deletang et al. fix input and output to 1
            return np.ones((n, 1), dtype=np.int64), np.ones((n, 1), dtype=np.int64)
        half = length // 2
        w = _bits(rng, n, half)
        x = np.concatenate([w, w, np.full((n, length % 2), PAD, dtype=np.int64)], axis=1)
        hole = rng.integers(0, 2 * half, size=n)
        rows = np.arange(n)
        y = x[rows, hole].copy()
        x[rows, hole] = HOLE
        return x, y[:, None]

    @classmethod
    def reference(cls, x):
        if len(x) == 1:
            return [1]
        half = len(x) // 2
        a, b = list(x[:half]), list(x[half:2 * half])
        for i in range(half):  # the hole is in one copy; the other copy holds its value
            if a[i] == HOLE:
                return [b[i]]
            if b[i] == HOLE:
                return [a[i]]
        raise ValueError("no hole in the input")


@_formal("bucket_sort", "cs", MOD, MOD, 1 / MOD, "string over 0..4 -> its symbols sorted (context-sensitive)")
class BucketSort(FormalTask):
    @staticmethod
    def output_length(length):
        return length

    def sample(self, rng, n, length):
        x = rng.integers(0, MOD, size=(n, length), dtype=np.int64)
        return x, np.sort(x, axis=1)

    @classmethod
    def reference(cls, x):
        counts = [list(x).count(s) for s in range(MOD)]
        return [s for s in range(MOD) for _ in range(counts[s])]


FORMAL_TASKS = dict(_TASK_BY_NAME)
"""name -> task class, in the order of the table above."""
