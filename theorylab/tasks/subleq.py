"""SUBLEQ, the one-instruction computer of Giannou et al. (ICML 2023, "Looped transformers as
programmable computers", arXiv 2301.13196, Section 5): the reference interpreter and program files.

The variant fixed here (issue 17; the sources differ, SETUPS.md section 3.1):

* memory ``M`` of ``m`` cells, each a ``w``-bit two's-complement integer in [-2^(w-1), 2^(w-1) - 1];
* the program counter ``pc`` starts at 0; the machine has halted when ``pc < 0`` or ``pc + 2 >= m``;
* one step executes the instruction at ``pc``: ``a, b, c = M[pc], M[pc+1], M[pc+2]``;
  ``M[b] <- M[b] - M[a]`` wrapped to ``w`` bits; if the new ``M[b] <= 0`` then ``pc <- c`` else
  ``pc <- pc + 3``;
* the operands ``a`` and ``b`` are addresses read modulo ``m`` (for ``m`` a power of two these are the
  low log2(m) bits of their two's-complement code, which is what a pointer read over binary positional
  codes sees); ``c`` is taken as it is, so a negative or too large ``c`` halts the machine.

A program file is whitespace-separated integers, the initial memory from cell 0, zero-filled to ``m``
cells; ``#`` starts a comment that runs to the end of the line.

**The trained task** ``subleq_step`` (issue 17 part 3, below the interpreter).  Input: the state as ``m + 1``
tokens, ``[PC, M[0], ..., M[m-1]]``, each value ``v`` one token ``v + 2^(w-1)`` of a ``2^w`` vocabulary (offset
binary; the PC uses the same code, so ``m <= 2^(w-1) - 1``).  An encoder (every position sees every position)
predicts at every position the token of the next state (per-position classification); the loss weighs the PC
and the written cell ``changed_weight`` times the copied ones.  Training states: ``random_fraction`` random
single states (uniform memory, uniform running PC) and the rest drawn from traces of random programs whose
length in instructions follows ``curriculum``.  Held-out states: a fixed hash of the tokens puts
``heldout_fraction`` of all states aside (:func:`heldout_mask`); training never draws them, the test set is
drawn only from them.  Metrics: ``accuracy`` (token), ``state_accuracy`` (the whole next state),
``pc_accuracy``, ``write_accuracy`` and the state accuracy per kind.  Held-out program families (negate, add,
multiply, countdown, Fibonacci) are built by :func:`held_out_programs`; the rollout measure that feeds a model
its own predictions is :mod:`theorylab.measures.subleq`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from theorylab.errors import ConfigError
from theorylab.tasks import register_task
from theorylab.tasks.base import Batch, Task, TaskConfig, step_rng

_INTEGER = re.compile(r"[+-]?[0-9]+")
MAX_CELLS = 1 << 16  # far beyond any construction or task here; a larger memory is a typo


@dataclass(frozen=True)
class SubleqState:
    """One machine state: the memory (``m`` signed ``w``-bit ints) and the program counter."""

    memory: tuple[int, ...]
    pc: int

    def halted(self) -> bool:
        """True when ``pc < 0`` or ``pc + 2 >= m`` (no whole instruction at ``pc``)."""
        return self.pc < 0 or self.pc + 2 >= len(self.memory)


def wrap(x: int, bits: int) -> int:
    """``x`` reduced to a ``bits``-bit two's-complement integer (in [-2^(bits-1), 2^(bits-1) - 1])."""
    half = 1 << (bits - 1)
    return ((x + half) % (1 << bits)) - half


def check_bits(bits: int) -> None:
    """Raise ConfigError unless 2 <= bits <= 62."""
    if not isinstance(bits, int) or not 2 <= bits <= 62:
        raise ConfigError(f"bits: the word size must be an integer in [2, 62] (got {bits!r})")


def step(state: SubleqState, bits: int) -> SubleqState:
    """One SUBLEQ instruction (the variant in the module docstring); a halted state is returned as it is.
    Memory values are assumed to be ``bits``-bit integers (:func:`parse_program` checks a program's); only the
    value written is wrapped."""
    if state.halted():
        return state
    mem = list(state.memory)
    m = len(mem)
    a, b, c = mem[state.pc], mem[state.pc + 1], mem[state.pc + 2]
    a, b = a % m, b % m
    mem[b] = wrap(mem[b] - mem[a], bits)
    pc = c if mem[b] <= 0 else state.pc + 3
    return SubleqState(tuple(mem), pc)


def run(state: SubleqState, bits: int, max_steps: int) -> list[SubleqState]:
    """The trace ``[s_0, s_1, ..., s_k]`` from ``state``: it stops at the first halted state or after
    ``max_steps`` steps (then ``k = max_steps`` and the last state may still be running)."""
    if max_steps < 0:
        raise ConfigError(f"max_steps: must be >= 0 (got {max_steps})")
    trace = [state]
    while len(trace) <= max_steps and not trace[-1].halted():
        trace.append(step(trace[-1], bits))
    return trace


def parse_program(text: str, cells: int, bits: int, source: str = "program") -> SubleqState:
    """The initial state of a program file's text: its integers from cell 0, zero-filled to ``cells``.

    Raises ConfigError (one line, naming ``source`` and the line) for a token that is not an integer,
    a value outside the ``bits``-bit two's-complement range, or more values than ``cells``.
    """
    check_bits(bits)
    if not isinstance(cells, int) or not 3 <= cells <= MAX_CELLS:
        raise ConfigError(f"cells: the memory size must be an integer in [3, {MAX_CELLS}] (got {cells!r})")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for tok in line.split("#", 1)[0].split():
            if not _INTEGER.fullmatch(tok):  # ASCII digits only: int() would also take '1_0' and full-width digits
                raise ConfigError(f"{source}: line {lineno}: {tok!r} is not an integer")
            v = int(tok, 10)
            if not lo <= v <= hi:
                raise ConfigError(f"{source}: line {lineno}: {v} is outside the {bits}-bit range [{lo}, {hi}]")
            values.append(v)
    if len(values) > cells:
        raise ConfigError(f"{source}: {len(values)} values do not fit in {cells} cells (--cells)")
    return SubleqState(tuple(values + [0] * (cells - len(values))), 0)


def load_program(path: str | Path, cells: int, bits: int) -> SubleqState:
    """:func:`parse_program` of a file; a missing or unreadable file is a ConfigError."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"program file {str(p)!r}: is a directory; give a file of integers")
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of the program
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"program file {str(p)!r}: cannot be read ({e.__class__.__name__})") from None
    return parse_program(text, cells, bits, source=str(p))


# =========================================================================== the trained SUBLEQ-step task
#
# Issue 17, part 3 ("the gap, trained"): an encoder reads one machine state as tokens and predicts the next
# state at every position; the rollout measure (theorylab.measures.subleq) then feeds it its own predictions.
# The setup follows the trained round of the public re-implementation ``anadim/subleq-transformer`` as
# SETUPS.md section 3.3 summarises it (its README and code, not a paper; authorship unclear): input
# [PC, M[0..m-1]] as one token per value, target the next state, a mixture of random single states and
# states from random-program traces, a curriculum on the program length, the loss weighted towards the
# positions an instruction writes; its "Mini" system is 16 cells of 7-bit values (vocabulary 128, length 17).
# Everything here is written from that description, not from its code; the numbers it reports (single step
# 99.9 %+, exact multi-step rollouts) were on 32 cells x 8 bits with 80k GPU steps, not on this CPU size.

RANDOM, TRACE = 0, 1  # extras["kind"]: a random single state, or a state from a random program's trace


class SubleqStepConfig(TaskConfig):
    """One SUBLEQ step as per-position classification (issue 17 part 3; the variant of this module)."""

    name: Literal["subleq_step"] = "subleq_step"
    cells: int = Field(16, ge=4, le=256, description="memory cells m; the input is PC then M[0..m-1] (m + 1 tokens)")
    bits: int = Field(7, ge=4, le=10, description="word size w: values in [-2^(w-1), 2^(w-1) - 1], one token each "
                                                  "(vocabulary 2^w); 7 = the re-implementation's Mini system")
    min_instructions: int = Field(1, ge=1, description="shortest random training program, in instructions")
    max_instructions: int = Field(4, ge=1, description="longest random training program (3 cells each; at least one "
                                                       "data cell must remain) when no curriculum stage applies, and "
                                                       "for the held-out trace states")
    curriculum: list[tuple[int, int]] = Field(
        default_factory=list,
        description="[[step, max_instructions], ...]: from each listed training step on, random programs have at "
                    "most that many instructions (the last stage at or before the step applies; before the first, "
                    "and with an empty list, max_instructions)")
    random_fraction: float = Field(0.6, ge=0, le=1, description="share of random single states (uniform memory, "
                                                               "uniform running PC); the rest come from traces")
    data_range: int | None = Field(None, ge=0, description="data cells of random programs are uniform in "
                                                           "[-r, r] (clipped to the word); none = the whole word")
    data_operand_prob: float = Field(0.7, ge=0, le=1, description="chance that a random instruction's operand a or "
                                                                 "b points into the data region (else any cell)")
    halt_prob: float = Field(0.15, ge=0, le=1, description="chance that a random instruction's branch target is "
                                                          "-1 (halt); else an instruction start of its program")
    trace_steps: int = Field(24, ge=1, le=4096, description="a trace state is drawn uniformly from the running "
                                                            "states of the first trace_steps steps")
    changed_weight: float = Field(10.0, ge=1, description="loss weight of the PC and the written cell relative to "
                                                         "the other (copied) positions (re-implementation: 100)")
    heldout_fraction: float = Field(0.0625, gt=0, lt=1, description="share of all states, by a fixed hash of the "
                                                                    "tokens, that training never sees; test states "
                                                                    "come only from that share")
    n_test: int = Field(2000, gt=0, description="held-out test states (random_fraction of them random, the rest "
                                                "trace states at max_instructions)")
    batch: int = Field(128, gt=0, description="states per step when train.batch_size is none")

    @model_validator(mode="after")
    def _sizes(self) -> SubleqStepConfig:
        hi = (1 << (self.bits - 1)) - 1
        if self.cells > hi:
            raise ValueError(f"cells ({self.cells}) must be <= 2^(bits-1) - 1 = {hi}, so that every address and "
                             f"every next PC (at most m) is a {self.bits}-bit value")
        if self.min_instructions > self.max_instructions:
            raise ValueError(f"min_instructions ({self.min_instructions}) must be <= max_instructions "
                             f"({self.max_instructions})")
        stages = [k for _, k in self.curriculum]
        for k in [self.max_instructions, *stages]:
            if not self.min_instructions <= k or 3 * k >= self.cells:
                raise ValueError(f"a program of {k} instructions must be >= min_instructions "
                                 f"({self.min_instructions}) and leave a data cell: 3 * {k} < cells ({self.cells})")
        if any(s < 0 for s, _ in self.curriculum) or [s for s, _ in self.curriculum] != sorted(
                s for s, _ in self.curriculum):
            raise ValueError("curriculum: steps must be >= 0 and increasing")
        return self

    def vocab(self) -> int:
        return 1 << self.bits

    def seq_len(self) -> int:
        return self.cells + 1

    def instructions_at(self, step: int) -> int:
        """The most instructions a random training program has at training ``step`` (the curriculum)."""
        k = self.max_instructions
        for s, kk in self.curriculum:
            if step >= s:
                k = kk
        return k

    def rows_per_step(self) -> int:
        return self.batch

    def data_numbers(self) -> int:
        return 4 * self.n_test * self.seq_len()

    def model_defaults(self) -> dict[str, Any]:
        return {"architecture": "encoder", "d_vocab": self.vocab(), "d_vocab_out": self.vocab(),
                "n_ctx": self.seq_len()}


# --------------------------------------------------------------------------- encoding


def encode(state: SubleqState, bits: int) -> list[int]:
    """The tokens of a state: ``[PC, M[0], ..., M[m-1]]``, each value ``v`` as token ``v + 2^(bits-1)``
    (offset binary: token 0 is -2^(bits-1), token 2^(bits-1) is 0).  Raises ConfigError for a value (or PC)
    outside the ``bits``-bit range."""
    half = 1 << (bits - 1)
    vals = [state.pc, *state.memory]
    if any(not -half <= v < half for v in vals):
        raise ConfigError(f"state: a value is outside the {bits}-bit range [{-half}, {half - 1}]")
    return [v + half for v in vals]


def decode(tokens: list[int] | np.ndarray | torch.Tensor, bits: int) -> SubleqState:
    """The state of one row of tokens (the inverse of :func:`encode`)."""
    half = 1 << (bits - 1)
    vals = [int(t) - half for t in (tokens.tolist() if hasattr(tokens, "tolist") else tokens)]
    return SubleqState(tuple(vals[1:]), vals[0])


def step_array(mem: np.ndarray, pc: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`step` on many states at once: ``mem [B, m]`` and ``pc [B]`` (int64 values) -> new copies.

    Halted rows are returned unchanged, as :func:`step` does; the tests check it against :func:`step`."""
    B, m = mem.shape
    rows = np.arange(B)
    running = (pc >= 0) & (pc + 2 < m)
    p = np.where(running, pc, 0)
    a, b, c = mem[rows, p] % m, mem[rows, p + 1] % m, mem[rows, p + 2]
    half = 1 << (bits - 1)
    new = ((mem[rows, b] - mem[rows, a] + half) % (1 << bits)) - half
    out = mem.copy()
    out[rows[running], b[running]] = new[running]
    return out, np.where(running, np.where(new <= 0, c, p + 3), pc)


_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


def heldout_mask(tokens: np.ndarray, fraction: float) -> np.ndarray:
    """``[B]`` bool: which rows of ``tokens [B, T]`` are held out.  A fixed (seed-free) hash of the whole row,
    so the held-out share is the same set of states for every run seed and every sampler; training batches
    drop these rows, test sets keep only them: disjoint by construction."""
    h = np.full(tokens.shape[0], 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(tokens.shape[1]):
            h = (h ^ tokens[:, j].astype(np.uint64)) * _HASH_MUL
            h ^= h >> np.uint64(29)
        h = (h ^ (h >> np.uint64(32))) * _HASH_MUL
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


# --------------------------------------------------------------------------- samplers


def random_states(rng: np.random.Generator, n: int, cells: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random single states: every cell uniform over the word, PC uniform over the running PCs
    ``0..m-3``.  Returns ``mem [n, m]`` and ``pc [n]`` (int64)."""
    half = 1 << (bits - 1)
    return rng.integers(-half, half, (n, cells)), rng.integers(0, cells - 2, n)


def random_programs(rng: np.random.Generator, n: int, cfg: SubleqStepConfig, max_instructions: int) -> np.ndarray:
    """``n`` random programs as initial memories ``[n, m]`` (PC 0): ``k`` instructions (uniform in
    ``min_instructions..max_instructions``) in cells ``0..3k-1``, data after them.  Operands point into the data
    region with chance ``data_operand_prob`` (else anywhere); the branch target is -1 (halt) with chance
    ``halt_prob``, else a uniform instruction start of the program; data values uniform in ``[-r, r]``."""
    m, half = cfg.cells, 1 << (cfg.bits - 1)
    r = half - 1 if cfg.data_range is None else min(cfg.data_range, half - 1)
    k = rng.integers(cfg.min_instructions, max_instructions + 1, n)
    mem = rng.integers(-r, r + 1, (n, m))
    lo = 3 * k  # first data cell
    for j in range(max_instructions):
        here = j < k
        ops = []
        for _ in range(2):
            in_data = rng.random(n) < cfg.data_operand_prob
            data_addr = lo + np.floor(rng.random(n) * (m - lo)).astype(np.int64)
            ops.append(np.where(in_data, data_addr, rng.integers(0, m, n)))
        target = 3 * np.floor(rng.random(n) * k).astype(np.int64)
        c = np.where(rng.random(n) < cfg.halt_prob, -1, target)
        for off, v in enumerate([*ops, c]):
            mem[here, 3 * j + off] = v[here]
    return mem


def trace_states(rng: np.random.Generator, n: int, cfg: SubleqStepConfig,
                 max_instructions: int) -> tuple[np.ndarray, np.ndarray]:
    """One state from each of ``n`` random programs' traces: uniform over the running states among the
    first ``trace_steps`` steps (step 0, the program itself, included).  Returns ``mem [n, m]``, ``pc [n]``."""
    mem = random_programs(rng, n, cfg, max_instructions)
    pc = np.zeros(n, dtype=np.int64)
    mems, pcs, running = [mem], [pc], [np.ones(n, dtype=bool)]
    for _ in range(cfg.trace_steps - 1):
        mem, pc = step_array(mem, pc, cfg.bits)
        mems.append(mem)
        pcs.append(pc)
        running.append((pc >= 0) & (pc + 2 < cfg.cells))
    run = np.stack(running, 1)  # [n, S]; a halted machine stays halted
    pick = np.floor(rng.random(n) * run.sum(1)).astype(np.int64)  # the pick-th running step
    rows = np.arange(n)
    return np.stack(mems, 1)[rows, pick], np.stack(pcs, 1)[rows, pick]


def make_batch(mem: np.ndarray, pc: np.ndarray, kind: np.ndarray, cfg: SubleqStepConfig) -> Batch:
    """The batch of states ``mem [B, m]``, ``pc [B]``: tokens ``[B, m+1]``, targets = the encoded next states
    ``[B, m+1]``; extras ``kind [B]`` (RANDOM or TRACE), ``written [B]`` (the position the instruction writes:
    1 + b) and ``weight [B, m+1]`` (``changed_weight`` at the PC and the written position, else 1)."""
    half = 1 << (cfg.bits - 1)
    nmem, npc = step_array(mem, pc, cfg.bits)
    tokens = np.concatenate([pc[:, None], mem], 1) + half
    targets = np.concatenate([npc[:, None], nmem], 1) + half
    written = 1 + mem[np.arange(len(pc)), np.clip(pc, 0, cfg.cells - 2) + 1] % cfg.cells
    weight = np.ones(tokens.shape, dtype=np.float32)
    weight[:, 0] = cfg.changed_weight
    weight[np.arange(len(pc)), written] = cfg.changed_weight
    return Batch(tokens=torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)),
                 targets=torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int64)),
                 extras={"kind": torch.from_numpy(kind.astype(np.int64)), "written": torch.from_numpy(written),
                         "weight": torch.from_numpy(weight)})


_MAX_DRAWS = 64  # rounds of candidates before a split is declared (nearly) empty


def sample_states(rng: np.random.Generator, n: int, cfg: SubleqStepConfig, max_instructions: int,
                  heldout: bool) -> Batch:
    """``n`` states, ``round(random_fraction * n)`` random then the rest from traces, all from the held-out
    share (``heldout=True``) or all outside it; candidates are drawn until enough pass the split."""
    n_rand = int(round(cfg.random_fraction * n))
    parts = []
    for kind, want in ((RANDOM, n_rand), (TRACE, n - n_rand)):
        got_m, got_p, have = [np.zeros((0, cfg.cells), dtype=np.int64)], [np.zeros(0, dtype=np.int64)], 0
        for _ in range(_MAX_DRAWS):
            if have >= want:
                break
            share = cfg.heldout_fraction if heldout else 1 - cfg.heldout_fraction
            draw = max(16, int(1.2 * (want - have) / share) + 8)
            if kind == RANDOM:
                mem, pc = random_states(rng, draw, cfg.cells, cfg.bits)
            else:
                mem, pc = trace_states(rng, draw, cfg, max_instructions)
            tok = np.concatenate([pc[:, None], mem], 1) + (1 << (cfg.bits - 1))
            keep = heldout_mask(tok, cfg.heldout_fraction) == heldout
            got_m.append(mem[keep])
            got_p.append(pc[keep])
            have += int(keep.sum())
        if have < want:
            raise ConfigError(f"task: {_MAX_DRAWS} draws found only {have} of {want} "
                              f"{'held-out' if heldout else 'training'} states; the state space is too small for "
                              f"the split (raise cells, bits or data_range)")
        parts.append((np.concatenate(got_m)[:want], np.concatenate(got_p)[:want], np.full(want, kind)))
    mem, pc, kind = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return make_batch(mem, pc, kind, cfg)


# --------------------------------------------------------------------------- the task


def step_counts(logits: torch.Tensor, batch: Batch) -> dict[str, float]:
    """Sums over a batch (not means, so chunks add up): ``loss`` (nats, summed over positions), ``positions``,
    ``tokens_right``, ``states``, ``states_right``, ``pc_right``, ``write_right``, and per kind
    ``states_<kind>`` and ``states_right_<kind>``.  ``logits [B, T, V]``, targets ``[B, T]``."""
    lp = torch.log_softmax(logits.double(), -1).gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
    right = logits.argmax(-1) == batch.targets  # [B, T]
    state_right = right.all(-1)
    written = batch.extras["written"]
    rows = torch.arange(len(written), device=written.device)
    kind = batch.extras["kind"]
    out = {"loss": float(-lp.sum()), "positions": float(right.numel()), "tokens_right": float(right.sum()),
           "states": float(len(right)), "states_right": float(state_right.sum()),
           "pc_right": float(right[:, 0].sum()), "write_right": float(right[rows, written].sum())}
    for k, name in ((RANDOM, "random"), (TRACE, "trace")):
        out[f"states_{name}"] = float((kind == k).sum())
        out[f"states_right_{name}"] = float((state_right & (kind == k)).sum())
    return out


def counts_to_metrics(c: dict[str, float]) -> dict[str, float]:
    """Metrics from :func:`step_counts` sums: ``loss`` (nats per position, unweighted), ``accuracy`` (token),
    ``state_accuracy`` (the whole next state right), ``pc_accuracy``, ``write_accuracy`` (the written cell),
    ``state_accuracy_random`` and ``state_accuracy_trace`` (each left out where its kind is absent: the training
    loop reads a non-finite metric as divergence)."""
    n, pos = max(c["states"], 1.0), max(c["positions"], 1.0)
    out = {"loss": c["loss"] / pos, "accuracy": c["tokens_right"] / pos, "state_accuracy": c["states_right"] / n,
           "pc_accuracy": c["pc_right"] / n, "write_accuracy": c["write_right"] / n}
    for kind in ("random", "trace"):
        if c[f"states_{kind}"]:
            out[f"state_accuracy_{kind}"] = c[f"states_right_{kind}"] / c[f"states_{kind}"]
    return out


@register_task
class SubleqStepTask(Task):
    """One SUBLEQ step (Giannou et al. 2023's one-instruction computer): state tokens in, next state out."""

    Config = SubleqStepConfig
    cfg: SubleqStepConfig

    def __init__(self, cfg: SubleqStepConfig, seed: int = 0):
        super().__init__(cfg, seed)
        rng = np.random.default_rng([self.seed, 0x5B1E0])
        self.test_set = sample_states(rng, cfg.n_test, cfg, cfg.max_instructions, heldout=True)

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        return sample_states(step_rng(self.seed, step), batch_size or self.cfg.batch, self.cfg,
                             self.cfg.instructions_at(step), heldout=False)

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.test_set}

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy (nats) per position, averaged with ``extras["weight"]`` (the PC and the written cell
        count ``changed_weight`` times)."""
        out = self.forward(model, batch)
        ce = F.cross_entropy(out.reshape(-1, out.shape[-1]), batch.targets.reshape(-1), reduction="none")
        w = batch.extras["weight"].reshape(-1).to(ce.dtype)
        return (ce * w).sum() / w.sum(), out

    @torch.no_grad()
    def metrics(self, model: torch.nn.Module, batch: Batch, out: torch.Tensor | None = None) -> dict[str, float]:
        return counts_to_metrics(step_counts(self.forward(model, batch) if out is None else out, batch))

    @torch.no_grad()
    def evaluate(self, model, device, dtype, eval_bs: int) -> dict[str, float]:
        total: dict[str, float] = {}
        for i in range(0, len(self.test_set), eval_bs):
            part = self.test_set.index(slice(i, i + eval_bs)).to(device or "cpu", dtype)
            for k, v in step_counts(self.forward(model, part), part).items():
                total[k] = total.get(k, 0.0) + v
        return {f"test/{k}": v for k, v in counts_to_metrics(total).items()}


# --------------------------------------------------------------------------- held-out program families


@dataclass(frozen=True)
class Program:
    """A named program: its initial state and where its answer is left when it halts."""

    family: str
    operands: tuple[int, ...]
    state: SubleqState
    result_cell: int
    expected: int  # the answer in exact integer arithmetic (equal to the machine's when it fits the word)


def _layout(cells: int, bits: int, need: int, values: dict[int, int], family: str) -> SubleqState:
    if cells < need:
        raise ConfigError(f"{family}: the program needs {need} cells (got cells={cells})")
    check_bits(bits)
    half = 1 << (bits - 1)
    mem = [0] * cells
    for addr, v in values.items():
        if not -half <= v < half:
            raise ConfigError(f"{family}: value {v} (cell {addr}) is outside the {bits}-bit range "
                              f"[{-half}, {half - 1}]")
        mem[addr] = v
    return SubleqState(tuple(mem), 0)


def _code(*instructions: tuple[int, int, int], at: int = 0) -> dict[int, int]:
    return {at + 3 * j + i: v for j, ins in enumerate(instructions) for i, v in enumerate(ins)}


def negate_program(x: int, cells: int = 16, bits: int = 7) -> Program:
    """``R = -x``: ``0: X R -1`` (R = 0 - X, halt if R <= 0), ``3: Z Z -1`` (halt); X, R, Z in cells 6-8.
    1 or 2 steps.  Answer in cell 7.  Raises ConfigError when it does not fit ``cells`` or ``x`` the word."""
    X, R, Z = 6, 7, 8
    st = _layout(cells, bits, 9, {**_code((X, R, -1), (Z, Z, -1)), X: x}, "negate")
    return Program("negate", (x,), st, R, -x)


def add_program(x: int, y: int, cells: int = 16, bits: int = 7) -> Program:
    """``Y = x + y``: ``X Z`` (Z = -x), ``Z Y`` (Y = y + x), ``Z Z -1`` (halt); X, Y, Z in cells 9-11.
    3 steps.  Answer in cell 10."""
    X, Y, Z = 9, 10, 11
    st = _layout(cells, bits, 12, {**_code((X, Z, 3), (Z, Y, 6), (Z, Z, -1)), X: x, Y: y}, "add")
    return Program("add", (x, y), st, Y, x + y)


def multiply_program(x: int, y: int, cells: int = 16, bits: int = 7) -> Program:
    """``x * y`` for ``y >= 1`` by repeated subtraction: ``0: X Z 3`` (Z -= x), ``3: ONE Y m-3`` (y -= 1; done
    when y <= 0), ``6: 8 8 0`` (clear cell 8, which already holds 0, and jump to 0), data X, Y, Z, ONE in cells
    9-12, and at ``m-3``: ``Z 8 -1`` (cell 8 = -Z = x*y, then halt: the next PC is -1 or m).  3y steps.
    Answer in cell 8.  Raises ConfigError for ``y < 1`` or fewer than 16 cells."""
    if y < 1:
        raise ConfigError(f"multiply: y must be >= 1 (got {y})")
    X, Y, Z, ONE, end = 9, 10, 11, 12, cells - 3
    code = {**_code((X, Z, 3), (ONE, Y, end), (8, 8, 0)), **_code((Z, 8, -1), at=end)}
    st = _layout(cells, bits, 16, {**code, X: x, Y: y, ONE: 1}, "multiply")
    return Program("multiply", (x, y), st, 8, x * y)


def countdown_program(n: int, cells: int = 16, bits: int = 7) -> Program:
    """Count ``N`` down from ``n >= 1`` to 0: ``0: ONE N -1`` (N -= 1; halt when N <= 0), ``3: 5 5 0`` (clear
    cell 5, which holds 0, and jump to 0); N, ONE in cells 6-7.  2n - 1 steps.  Answer (0) in cell 6."""
    if n < 1:
        raise ConfigError(f"countdown: n must be >= 1 (got {n})")
    N, ONE = 6, 7
    st = _layout(cells, bits, 8, {**_code((ONE, N, -1), (5, 5, 0)), N: n, ONE: 1}, "countdown")
    return Program("countdown", (n,), st, N, 0)


def fibonacci(k: int) -> int:
    """F(k) with F(0) = 0, F(1) = 1."""
    a, b = 0, 1
    for _ in range(k):
        a, b = b, a + b
    return a


def fibonacci_program(n: int, cells: int = 16, bits: int = 7) -> Program:
    """F(2n) in ``n >= 1`` loops of 4 instructions, with A = F(2i) and B = -F(2i+1) (one sign flipped, so each
    update is a single subtraction): ``0: B A 3`` (A = F(2i+2)), ``3: A B 6`` (B = -F(2i+3)), ``6: ONE N -1``
    (N -= 1; halt when N <= 0), ``9: 11 11 0`` (clear cell 11, which holds 0, and jump to 0); A, B, ONE, N in
    cells 12-15.  4n - 1 steps.  Answer F(2n) in cell 12 (and -F(2n+1) in cell 13)."""
    if n < 1:
        raise ConfigError(f"fibonacci: n must be >= 1 (got {n})")
    A, B, ONE, N = 12, 13, 14, 15
    code = _code((B, A, 3), (A, B, 6), (ONE, N, -1), (11, 11, 0))
    st = _layout(cells, bits, 16, {**code, A: 0, B: -1, ONE: 1, N: n}, "fibonacci")
    return Program("fibonacci", (n,), st, A, fibonacci(2 * n))


FAMILIES = ("negate", "add", "multiply", "countdown", "fibonacci")


NEEDS = {"negate": 9, "add": 12, "multiply": 16, "countdown": 8, "fibonacci": 16}  # cells each family needs


def held_out_programs(cells: int = 16, bits: int = 7, families: tuple[str, ...] | None = None) -> list[Program]:
    """The standard held-out programs, every answer inside the word: negate x for x in [-(2^(w-1)-1),
    2^(w-1)-1]; add x + y for x, y in [-10, 10] (the re-implementation's 441); multiply x * y for x in 0..7,
    y in 1..15 with x * y inside the word; countdown from 1..2^(w-1)-1 (2n - 1 steps, up to 125 at 7 bits);
    Fibonacci for n = 1.. while F(2n+1) fits (n <= 4 at 7 bits).  None of these families is in the training
    sampler (random programs), though a state of theirs may by chance be a training state.  ``families``: none =
    every family that fits ``cells`` (:data:`NEEDS`; 8 cells leave only countdown); a named family that does not
    fit, or an unknown one, is a ConfigError."""
    hi = (1 << (bits - 1)) - 1
    if families is None:
        families = tuple(f for f in FAMILIES if NEEDS[f] <= cells)
    out: list[Program] = []
    for fam in families:
        if fam == "negate":
            out += [negate_program(x, cells, bits) for x in range(-hi, hi + 1)]
        elif fam == "add":
            r = min(10, hi // 2)
            out += [add_program(x, y, cells, bits) for x in range(-r, r + 1) for y in range(-r, r + 1)]
        elif fam == "multiply":
            out += [multiply_program(x, y, cells, bits) for x in range(8) for y in range(1, 16) if x * y <= hi]
        elif fam == "countdown":
            out += [countdown_program(n, cells, bits) for n in range(1, hi + 1)]
        elif fam == "fibonacci":
            n = 1
            while fibonacci(2 * n + 1) <= hi + 1:
                out.append(fibonacci_program(n, cells, bits))
                n += 1
        else:
            raise ConfigError(f"families: unknown family {fam!r}; known: {', '.join(FAMILIES)}")
    return out
