"""A looped transformer that executes SUBLEQ: Giannou, Rajput, Sohn, Lee, Lee & Papailiopoulos (ICML 2023,
"Looped transformers as programmable computers", arXiv 2301.13196; SUBLEQ in Section 5), on theorylab's Transformer.

The machine is :mod:`theorylab.tasks.subleq`'s variant (issue 17): ``m`` cells of ``w``-bit two's-complement
integers holding program and data alike (von Neumann, self-modifying), ``pc`` starting at 0; one step reads
``a, b, c = M[pc], M[pc+1], M[pc+2]`` (``a``, ``b`` modulo ``m``), sets ``M[b] <- wrap(M[b] - M[a])`` and
jumps to ``c`` if the new ``M[b] <= 0``, else to ``pc + 3``; the machine has halted when ``pc < 0`` or
``pc + 2 >= m``.

The punch card (the input ``X``, one column per position, as in the paper): column 0 is the scratchpad,
column ``1 + i`` is memory cell ``i``.  A cell's column carries its binary positional code ``pos`` (``log2 m``
entries, bit of ``i`` -> ±1) and its ``w`` bits (``mem``, ±1, least significant first); the scratchpad carries
``scratch = 1`` and the program counter's ``P = max(w, log2 m + 2)`` bits (``pc``, ±1, two's complement, wide
enough for every ``c`` and for ``pc + 3 <= m``).  Every other residual dimension is scratch space that is zero
on input and zero again after each pass.  All weights are written through
:class:`theorylab.constructions.chiang.Residual` (named dimensions).

One pass of the block stack is one SUBLEQ step; the layers (each a genuine attention + ReLU-MLP block with
residual connections; "attention" is ``softmax(lambda * score)`` over all columns):

0. *Fetch a.*  One head: query = the low ``log2 m`` pc bits (scratchpad), keys = ``pos`` of every column, value
   = the cell's bits (sign-extended to ``log2 m``): reads ``a mod m`` (the paper's read by pointer: the score
   of cell ``j`` is ``lambda (log2 m - 2 Hamming(pc, j))``).  MLP: re-binarises ``a``; the codes of
   ``pc + 1`` and ``pc + 2`` (mod m) and the bits of ``pc + 3`` (ReLU step functions of the integer the bits
   encode: bit k of an integer ``v`` in a known range is a signed sum of steps ``[v >= j 2^k]``); the running
   flag ``[0 <= pc <= m - 3]``.
1. *Fetch b, c, M[a].*  Three heads (queries ``pc + 1``, ``pc + 2``, ``a``); MLP re-binarises the three.
2. *Fetch M[b].*  One head (query ``b``); MLP re-binarises it.
3. *Subtract and compare.*  No attention.  MLP: each result bit ``k`` of ``M[b] - M[a]`` (mod 2^w) is a signed
   sum of three steps of ``(M[b] mod 2^(k+1)) - (M[a] mod 2^(k+1)) + 2^(k+1)`` (two's-complement wrap for free);
   the flag ``le0 = [new M[b] <= 0]`` is three steps of ``(M[b] mod 2^w) - (M[a] mod 2^w) + 2^w``.
4. *Write and branch.*  One head: every column queries with its own ``pos`` (plus a constant), the scratchpad's
   key is ``b``'s code and every cell's key is its own ``pos`` minus a constant, so cell ``b`` attends to the
   scratchpad (score ``lambda log2 m`` against its own ``lambda (log2 m - 1)``) and fetches the result and the
   running flag; every other cell attends to itself.  MLP: in cell columns ``mem += 2 [target and r=1 and
   mem=-1] - 2 [target and r=-1 and mem=1]`` (only cell ``b`` changes, and only while running); in the
   scratchpad ``pc += run (le0 c + (1 - le0) (pc + 3) - pc)`` (products of a 0/1 flag and a ±1 bit are two
   ReLUs: ``f x = ReLU(x + 2f - 2) - ReLU(-x + 2f - 2)``).  A halted machine (run = 0) writes nothing.
5. *Error correction.*  No attention.  MLP: every state bit becomes ``clamp(2 x, -1, 1)`` (exactly ±1 when
   ``|x| >= 1/2``: softmax leakage never accumulates over loops).

Every scratch dimension is zeroed exactly (``x - ReLU(x) + ReLU(-x) = 0``) by the MLP of the block that last
uses it, so a pass leaves nothing but the state: its output is a clean punch card.

Between the reads the MLPs re-binarise (``clamp(2 x)`` into a clean dimension), so the arithmetic sees exact
bits; units meant for the scratchpad are gated off in cell columns (and vice versa) by a large multiple of the
``scratch`` indicator, so cell columns never carry stray values into later layers.

**Looping.**  The model is an encoder with continuous inputs (``input_dim = d_model``, read-in ``W_in`` the
identity, no positional encoding: the codes are part of the punch card, as in the paper) and ``n_loops = 1``.
:func:`run_looped` calls it again and again on its own residual output (``return_residual=True``; no final
norm): the output of one pass *is* the next input, bit for bit, and the state is decoded (sign of each bit)
only to record the trace.  This is what ``n_loops = k`` does inside one call (``looped_subleq(..., n_loops=k)``
gives ``k`` steps per call, the same numbers), but one call per step lets the trace be read after every step.

**Sizes** (``m = 32``, ``w = 8``): 6 layers, 3 heads (``d_head = max(log2 m, w) + 1 = 9``), ``d_mlp = 124``,
``d_model = 88`` (127 named dimensions; scratch names whose lifetimes do not overlap share a row, see
:class:`_Registers`), 198,175 parameters of which 2,809 are non-zero.  Sizes: ``m`` a power of two in
[8, 256], ``w`` in [4, 16] (e.g. ``m = 64, w = 12``: ``d_model = 122``, ``d_mlp = 182``).

**Sharpness.**  Every attention score is ``lambda`` times a small integer (dot products of ±1 codes); the
default ``lambda = 10`` is the official code's.  Measured with :func:`min_exact_sharpness` (bisection to 0.01 on
[0.5, 10], 8 random non-halting programs of seed 0, 1,000 loops each, every step's full state compared with the
interpreter): at ``m = 32, w = 8`` the smallest exact ``lambda`` is 1.558 (1.548 fails at loop 5, 1.558 runs
all 8,000 steps exactly; below the threshold runs fail within a few loops, above it they never do: the error
correction makes the threshold independent of the number of loops).  The margins predict it: a pointer read
is exact when the right cell's weight is >= 3/4, i.e. ``(1 + e^(-2 lambda))^(log2 m) <= 4/3`` (lambda >= 1.41
at m = 32); the write needs cell ``b``'s weight on the scratchpad >= 19/24, i.e.
``e^(-lambda) (1 + e^(-2 lambda))^(log2 m) <= 5/19`` (lambda >= 1.553), the binding one.

**Differences from the paper.**  The paper's punch card keeps instructions in their own columns (one column per
instruction holding ``a, b, c``) and data in memory columns; here program and data share the cells, as the
interpreter fixes, so an instruction is three cells read by three heads.  The SUBLEQ semantics differ between
sources (the authors' code describes its variant as differing from the classic one, paper Section 5.1); this
module runs the interpreter's classic variant (``M[b] <- M[b] - M[a]``, branch on ``<= 0``, addresses modulo
``m``).  The official code spends 10 layers on a step (read instruction 1, read memory 1, subtract 3, write 1,
branch 3, error correction 1; the abstract's 13 layers are for FLEQ); here 6 suffice because the
subtraction is a single ReLU layer of step functions and the write shares a layer with the branch.  Halting
(a fixed point once ``pc`` leaves ``[0, m - 3]``) is explicit here.  Bits are ±1 throughout (the paper's
convention for positional codes; it stores data bits the same way).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass

import torch

from theorylab.constructions.chiang import Residual
from theorylab.errors import ConfigError
from theorylab.models import Transformer, TransformerConfig
from theorylab.tasks.subleq import SubleqState
from theorylab.tasks.subleq import run as interpret

CELLS, BITS = 32, 8
SHARPNESS = 10.0  # the official code's lambda
# every score is lambda times an integer of at most about 2 log2 m + w; beyond 1e6 the softmax is already exactly
# hard in float64 (e^-1e6 = 0), and near 1e308 lambda times a score overflows to inf and the softmax to nan
MAX_SHARPNESS = 1e6
MIN_CELLS, MAX_CELLS = 8, 256
MIN_BITS, MAX_BITS = 4, 16
N_LAYERS = 6


@dataclass(frozen=True)
class SubleqSpec:
    """The machine a model executes: ``cells`` (m), ``bits`` (w), ``addr_bits`` (log2 m), ``pc_bits`` (P)."""

    cells: int
    bits: int
    sharpness: float

    @property
    def addr_bits(self) -> int:
        return self.cells.bit_length() - 1

    @property
    def pc_bits(self) -> int:
        return max(self.bits, self.addr_bits + 2)


def check_size(cells: int, bits: int, sharpness: float = SHARPNESS) -> None:
    """Raise ConfigError unless ``cells`` is a power of two in [8, 256], ``bits`` in [4, 16] and
    ``sharpness`` a finite number > 0."""
    if not isinstance(cells, int) or cells < MIN_CELLS or cells > MAX_CELLS or cells & (cells - 1):
        raise ConfigError(f"cells: the looped SUBLEQ transformer needs a power of two in [{MIN_CELLS}, {MAX_CELLS}] "
                          f"(got {cells!r})")
    if not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ConfigError(f"bits: the looped SUBLEQ transformer needs a word size in [{MIN_BITS}, {MAX_BITS}] "
                          f"(got {bits!r})")
    if not (isinstance(sharpness, (int, float)) and math.isfinite(sharpness) and 0 < sharpness <= MAX_SHARPNESS):
        raise ConfigError(f"sharpness: the softmax sharpness lambda must be a number in (0, {MAX_SHARPNESS:g}] "
                          f"(got {sharpness!r})")


# --------------------------------------------------------------------------- building blocks


def _names(s: SubleqSpec) -> tuple[list[str], list[str]]:
    """(all residual dimensions, the state dimensions the punch card carries)."""
    L, w, P = s.addr_bits, s.bits, s.pc_bits

    def vec(p: str, n: int) -> list[str]:
        return [f"{p}{k}" for k in range(n)]

    state = vec("pos", L) + ["scratch"] + vec("mem", w) + vec("pc", P)
    raw = vec("a_raw", L) + vec("b_raw", L) + vec("c_raw", w) + vec("ma_raw", w) + vec("mb_raw", w)
    clean = vec("a", L) + vec("b", L) + vec("c", w) + vec("ma", w) + vec("mb", w)
    computed = vec("q1_", L) + vec("q2_", L) + vec("pc3_", P) + ["run"] + vec("r", w) + ["le0"]
    write = vec("wr", w) + ["wsel"]
    return state + raw + clean + computed + write, state


class _MLP:
    """The ReLU units of one block's MLP: ``out += coef * ReLU(sum_i w_i x_i + bias)`` per unit, each optionally
    gated to the scratchpad column (``where='scratch'``) or to the cell columns (``where='cell'``)."""

    def __init__(self) -> None:
        self.units: list[tuple[dict[str, float], float, dict[str, float]]] = []
        self.consts: dict[str | None, dict[str, float]] = {}

    def relu(self, inp: dict[str, float], bias: float, out: dict[str, float], where: str | None) -> None:
        inp = dict(inp)
        if where is not None:
            # every input is bounded by ~1 in the columns gated off: G exceeds the pre-activation there
            g = 1.5 * sum(abs(v) for v in inp.values()) + abs(bias) + 2.0
            inp["scratch"] = inp.get("scratch", 0.0) + (g if where == "scratch" else -g)
            bias = bias - g if where == "scratch" else bias
        self.units.append((inp, bias, out))

    def const(self, out: dict[str, float], where: str | None) -> None:
        """Add constants to ``out`` in the columns ``where`` names (all columns for None)."""
        acc = self.consts.setdefault(where, defaultdict(float))
        for k, v in out.items():
            acc[k] += v

    def step(self, v: dict[str, float], c: float, t: float, out: dict[str, float], where: str | None) -> None:
        """``out += coef [v + c >= t]`` for an integer-valued ``v + c`` (tolerates noise below 1/4):
        ``ReLU(2 (v + c - t) + 1.5) - ReLU(2 (v + c - t) + 0.5)``."""
        inp = {k: 2 * x for k, x in v.items()}
        self.relu(inp, 2 * (c - t) + 1.5, out, where)
        self.relu(inp, 2 * (c - t) + 0.5, {k: -x for k, x in out.items()}, where)

    def bit(self, v: dict[str, float], c: float, lo: int, hi: int, k: int, dst: str, where: str) -> None:
        """``dst += ±1``: bit ``k`` of the integer ``v + c`` (known to lie in [lo, hi]) as -1/+1."""
        self.const({dst: 2.0 * ((lo >> k) & 1) - 1.0}, where)
        t = ((lo >> k) + 1) << k  # first multiple of 2^k above lo
        while t <= hi:
            self.step(v, c, t, {dst: 2.0 if (t >> k) & 1 else -2.0}, where)
            t += 1 << k

    def clamp(self, src: str, dst: str, where: str | None) -> None:
        """``dst += clamp(2 src, -1, 1)`` (``-src`` too when ``dst == src``: re-binarisation in place)."""
        self.relu({src: 2.0}, 1.0, {dst: 1.0}, where)
        self.relu({src: 2.0}, -1.0, {dst: -1.0}, where)
        self.const({dst: -1.0}, where)
        if dst == src:
            self.erase(src, where)

    def erase(self, name: str, where: str | None) -> None:
        """``name += -name``, exactly (one of the two ReLUs is 0)."""
        self.relu({name: 1.0}, 0.0, {name: -1.0}, where)
        self.relu({name: -1.0}, 0.0, {name: 1.0}, where)

    def select(self, x: str, flags: dict[str, float], c: float, out: dict[str, float], where: str | None) -> None:
        """``out += coef f x`` for ``x`` in [-1, 1] and a 0/1 condition ``f = [sum flags + c = 1]`` (the sum being
        at most 1 and an integer): ``ReLU(x + 2 (s - 1)) - ReLU(-x + 2 (s - 1))``."""
        inp = {k: 2 * v for k, v in flags.items()}
        self.relu({**inp, x: 1.0}, 2 * c - 2, out, where)
        self.relu({**inp, x: -1.0}, 2 * c - 2, {k: -v for k, v in out.items()}, where)

    def materialize(self) -> list[tuple[dict[str, float], float, dict[str, float]]]:
        units = list(self.units)
        for where, out in self.consts.items():
            inp = {} if where is None else {"scratch": 1.0 if where == "scratch" else -1.0}
            units.append((inp, 0.0 if where == "scratch" else 1.0, dict(out)))
        return units


class _Registers(Residual):
    """Named residual dimensions, where two scratch names whose lifetimes do not overlap share one row.

    A scratch name lives from the first sub-layer writing it to the last one touching it (the MLP that erases
    it, after which it is 0 in every column); sub-layer ``2 i`` is block ``i``'s attention, ``2 i + 1`` its MLP.
    The state names come first, each in its own row; the rest are packed greedily (interval colouring), which
    halves ``d_model`` against one row per name.  ``i(name)`` is the name's row; ``rows[name]`` the same map.
    """

    def __init__(self, names: list[str], state: list[str], heads: list[list[dict]], mlps: list[list]) -> None:
        span: dict[str, list[int]] = {}

        def touch(name: str, t: int) -> None:
            lo, hi = span.get(name, (t, t))
            span[name] = [min(lo, t), max(hi, t)]

        for i, layer in enumerate(heads):
            for head in layer:
                for name, _, _ in head["q"] + head["k"]:
                    touch(name, 2 * i)
                for src, dst in head["v"]:
                    touch(src, 2 * i)
                    touch(dst, 2 * i)
        for i, units in enumerate(mlps):
            for inp, _, out in units:
                for name in [*inp, *out]:
                    touch(name, 2 * i + 1)
        self.rows = {name: r for r, name in enumerate(state)}
        free_after: list[int] = []  # per scratch row: the last sub-layer its current name uses
        for name in sorted((n for n in names if n not in self.rows), key=lambda n: (span[n][0], names.index(n))):
            lo, hi = span[name]
            row = next((r for r, end in enumerate(free_after) if end < lo), None)
            if row is None:
                free_after.append(hi)
                row = len(free_after) - 1
            else:
                free_after[row] = hi
            self.rows[name] = len(state) + row
        self.names, self.mirror, self.d = list(names), False, len(state) + len(free_after)

    def i(self, name: str) -> int:
        if name not in self.rows:
            raise KeyError(f"no residual dimension {name!r}; dimensions: {self.names}")
        return self.rows[name]


def _unsigned(p: str, n: int) -> tuple[dict[str, float], float]:
    """``sum_{k<n} 2^k (x_k + 1) / 2`` for ±1 bits ``p0..p{n-1}``: (coefficients, constant)."""
    return {f"{p}{k}": 2.0 ** (k - 1) for k in range(n)}, (2.0 ** n - 1) / 2


def _signed(p: str, n: int) -> tuple[dict[str, float], float]:
    """The two's-complement value of the ±1 bits ``p0..p{n-1}``: (coefficients, constant)."""
    v, c = _unsigned(p, n)
    v[f"{p}{n - 1}"] = -(2.0 ** (n - 2))
    return v, c - 2.0 ** (n - 1)


def _minus(x: dict[str, float], y: dict[str, float]) -> dict[str, float]:
    out = dict(x)
    for k, v in y.items():
        out[k] = out.get(k, 0.0) - v
    return out


# --------------------------------------------------------------------------- the model


def looped_subleq(cells: int = CELLS, bits: int = BITS, sharpness: float = SHARPNESS, n_loops: int = 1,
                  dtype: torch.dtype = torch.float64) -> Transformer:
    """The looped SUBLEQ transformer (Giannou et al. 2023, arXiv 2301.13196, Section 5; layout in the
    module docstring).

    ``cells`` (m, a power of two in [8, 256]), ``bits`` (w, in [4, 16]), ``sharpness`` (lambda > 0, multiplies
    every attention score); ``n_loops``: SUBLEQ steps per forward call.  The model maps a punch card
    ``[B, m + 1, d_model]`` (see :func:`encode`) to the next one with ``model(x, return_residual=True)``.
    Attributes ``model.residual`` (the named dimensions) and ``model.subleq`` (a :class:`SubleqSpec`).
    Raises ConfigError for unsupported sizes.
    """
    check_size(cells, bits, sharpness)
    if not isinstance(n_loops, int) or n_loops < 1:
        raise ConfigError(f"n_loops: must be an integer >= 1 (got {n_loops!r})")
    s = SubleqSpec(cells, bits, float(sharpness))
    L, w, P, m = s.addr_bits, s.bits, s.pc_bits, s.cells
    names, state = _names(s)
    d_head = max(L, w) + 1
    mlps = [_MLP() for _ in range(N_LAYERS)]
    heads: list[list[dict]] = [[] for _ in range(N_LAYERS)]

    def sx(k: int) -> int:  # the sign-extended bit index of a w-bit word read as a log2(m)-bit address
        return min(k, w - 1)

    def pointer(layer: int, query: str, values: list[tuple[str, str]]) -> None:
        """A head reading, from the scratchpad, the cell whose code is ``query0..`` into ``dst`` dims."""
        heads[layer].append({"q": [(f"{query}{k}", k, 1.0) for k in range(L)], "k": [(f"pos{k}", k, 1.0)
                                                                                    for k in range(L)],
                             "v": values})

    # 0: fetch a = M[pc] (mod m); codes of pc + 1, pc + 2; bits of pc + 3; run
    pointer(0, "pc", [(f"mem{sx(k)}", f"a_raw{k}") for k in range(L)])
    f = mlps[0]
    for k in range(L):
        f.clamp(f"a_raw{k}", f"a{k}", "scratch")
        f.erase(f"a_raw{k}", None)
    for r, dst in ((1, "q1_"), (2, "q2_"), (3, "pc3_")):
        for k in range(L if r < 3 else P):
            v, c = _unsigned("pc", k + 1)
            f.bit(v, c + r, r, (1 << (k + 1)) - 1 + r, k, f"{dst}{k}", "scratch")
    v, c = _signed("pc", P)
    f.step(v, c, 0, {"run": 1.0}, "scratch")
    f.step(v, c, m - 2, {"run": -1.0}, "scratch")

    # 1: fetch b (mod m), c, M[a]
    pointer(1, "q1_", [(f"mem{sx(k)}", f"b_raw{k}") for k in range(L)])
    pointer(1, "q2_", [(f"mem{k}", f"c_raw{k}") for k in range(w)])
    pointer(1, "a", [(f"mem{k}", f"ma_raw{k}") for k in range(w)])
    for name, n in (("b", L), ("c", w), ("ma", w)):
        for k in range(n):
            mlps[1].clamp(f"{name}_raw{k}", f"{name}{k}", "scratch")
            mlps[1].erase(f"{name}_raw{k}", None)
    for k in range(L):  # used up by this block's queries
        for name in ("q1_", "q2_", "a"):
            mlps[1].erase(f"{name}{k}", None)

    # 2: fetch M[b]
    pointer(2, "b", [(f"mem{k}", f"mb_raw{k}") for k in range(w)])
    for k in range(w):
        mlps[2].clamp(f"mb_raw{k}", f"mb{k}", "scratch")
        mlps[2].erase(f"mb_raw{k}", None)

    # 3: r = M[b] - M[a] (mod 2^w) bit by bit; le0 = [r <= 0]
    f = mlps[3]
    for k in range(w):
        (vb, cb), (va, ca) = _unsigned("mb", k + 1), _unsigned("ma", k + 1)
        f.bit(_minus(vb, va), cb - ca + (1 << (k + 1)), 1, (1 << (k + 2)) - 1, k, f"r{k}", "scratch")
    (vb, cb), (va, ca) = _unsigned("mb", w), _unsigned("ma", w)
    v, c = _minus(vb, va), cb - ca + (1 << w)  # in [1, 2^(w+1) - 1]; r <= 0 iff v mod 2^w is 0 or >= 2^(w-1)
    for t, sign in ((1 << (w - 1), 1.0), ((1 << w) + 1, -1.0), (3 << (w - 1), 1.0)):
        f.step(v, c, t, {"le0": sign}, "scratch")
    for k in range(w):
        f.erase(f"ma{k}", None)
        f.erase(f"mb{k}", None)

    # 4: write M[b] (cell b attends to the scratchpad) and branch (scratchpad)
    heads[4].append({"q": [(f"pos{k}", k, 1.0) for k in range(L)], "q_bias": [(L, 1.0)],
                     "k": [(f"pos{k}", k, 1.0) for k in range(L)] + [(f"b{k}", k, 1.0) for k in range(L)]
                     + [("scratch", L, 1.0)], "k_bias": [(L, -1.0)],
                     "v": [(f"r{k}", f"wr{k}") for k in range(w)] + [("run", "wsel")]})
    f = mlps[4]
    for k in range(w):
        # z = 2 wsel + wr - mem - 3 is >= 1/2 exactly when this is cell b, the machine runs, r = 1 and mem = -1
        for sign in (1.0, -1.0):
            z = {"wsel": 4.0, f"wr{k}": 2.0 * sign, f"mem{k}": -2.0 * sign}
            f.relu(z, -6.0, {f"mem{k}": 2.0 * sign}, "cell")
            f.relu(z, -7.0, {f"mem{k}": -2.0 * sign}, "cell")
    for k in range(P):
        f.select(f"c{sx(k)}", {"run": 1.0, "le0": 1.0}, -1.0, {f"pc{k}": 1.0}, "scratch")
        f.select(f"pc3_{k}", {"run": 1.0, "le0": -1.0}, 0.0, {f"pc{k}": 1.0}, "scratch")
        f.select(f"pc{k}", {"run": 1.0}, 0.0, {f"pc{k}": -1.0}, "scratch")
    for name in [f"b{k}" for k in range(L)] + [f"c{k}" for k in range(w)] + [f"pc3_{k}" for k in range(P)] + ["run"]:
        f.erase(name, None)

    # 5: error correction: re-binarise the state bits, zero the scratch dimensions still in use
    f = mlps[5]
    for k in range(w):
        f.clamp(f"mem{k}", f"mem{k}", None)
    for k in range(P):
        f.clamp(f"pc{k}", f"pc{k}", None)
    for name in [f"r{k}" for k in range(w)] + [f"wr{k}" for k in range(w)] + ["wsel", "le0"]:
        f.erase(name, None)
    erased = {next(iter(out)) for mlp in mlps for inp, bias, out in mlp.units
              if len(out) == 1 and inp == {next(iter(out)): 1.0} and bias == 0.0
              and next(iter(out.values())) == -1.0}
    assert set(names) - set(state) <= erased, sorted(set(names) - set(state) - erased)  # all scratch is zeroed

    built = [mlp.materialize() for mlp in mlps]
    R = _Registers(names, state, heads, built)
    d_mlp = max(len(u) for u in built)
    n_heads = max(len(h) for h in heads)
    cfg = TransformerConfig(
        architecture="encoder", input_dim=R.d, d_vocab_out=1, n_ctx=m + 1, d_model=R.d, n_layers=N_LAYERS,
        n_heads=n_heads, d_head=d_head, d_mlp=d_mlp, act="relu", attention="softmax", positional="none",
        norm="none", bias=True, n_loops=n_loops)
    model = Transformer(cfg).to(dtype)
    W = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    W["embed.W_in"] = torch.eye(R.d, dtype=dtype)
    qscale = s.sharpness * math.sqrt(d_head)  # theorylab divides scores by sqrt(d_head)
    for i in range(N_LAYERS):
        p = f"blocks.{i}."
        for h, head in enumerate(heads[i]):
            for name, ch, coef in head["q"]:
                W[p + "attn.W_Q"][h, R.i(name), ch] = coef * qscale
            for ch, coef in head.get("q_bias", []):
                W[p + "attn.b_Q"][h, ch] = coef * qscale
            for name, ch, coef in head["k"]:
                W[p + "attn.W_K"][h, R.i(name), ch] = coef
            for ch, coef in head.get("k_bias", []):
                W[p + "attn.b_K"][h, ch] = coef
            for j, (src, dst) in enumerate(head["v"]):
                W[p + "attn.W_V"][h, R.i(src), j] = 1.0
                R.write(W[p + "attn.W_O"], (h, j), dst, 1.0)
        for j, (inp, bias, out) in enumerate(built[i]):
            for name, coef in inp.items():
                W[p + "mlp.W_in"][R.i(name), j] = coef
            W[p + "mlp.b_in"][j] = bias
            for name, coef in out.items():
                R.write(W[p + "mlp.W_out"], j, name, coef)
    model.load_state_dict(W)
    model.residual = R
    model.subleq = s
    return model.eval()


# --------------------------------------------------------------------------- punch cards


def _spec(model: Transformer) -> SubleqSpec:
    s = getattr(model, "subleq", None)
    if not isinstance(s, SubleqSpec):
        raise ConfigError("model: not a looped SUBLEQ transformer (build it with looped_subleq)")
    return s


def encode(model: Transformer, states: SubleqState | list[SubleqState]) -> torch.Tensor:
    """The punch cards of ``states``: ``[B, m + 1, d_model]`` in the model's dtype (B = 1 for one state).

    Column 0 is the scratchpad (``scratch = 1``, the pc bits), column ``1 + i`` memory cell ``i`` (its binary
    code in ±1, its ``w`` bits in ±1, least significant first); every other dimension is 0.  Raises ConfigError
    when a state has the wrong number of cells, a value outside the ``w``-bit range, or a pc outside the
    ``P``-bit two's-complement range the model holds.
    """
    s, R = _spec(model), model.residual
    states = [states] if isinstance(states, SubleqState) else list(states)
    m, w, P, L = s.cells, s.bits, s.pc_bits, s.addr_bits
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    x = torch.zeros(len(states), m + 1, R.d, dtype=model.embed.W_in.dtype)
    x[:, 0, R.i("scratch")] = 1.0
    for i in range(m):
        for k in range(L):
            x[:, 1 + i, R.i(f"pos{k}")] = 1.0 if (i >> k) & 1 else -1.0
    mem_idx = torch.tensor([R.i(f"mem{k}") for k in range(w)])
    pc_idx = torch.tensor([R.i(f"pc{k}") for k in range(P)])
    for b, st in enumerate(states):
        if len(st.memory) != m:
            raise ConfigError(f"state {b}: {len(st.memory)} cells but the model has {m}")
        if not all(lo <= v <= hi for v in st.memory):
            raise ConfigError(f"state {b}: memory values must lie in the {w}-bit range [{lo}, {hi}]")
        if not -(1 << (P - 1)) <= st.pc < (1 << (P - 1)):
            raise ConfigError(f"state {b}: pc={st.pc} is outside the {P}-bit range the model's pc holds")
    mem = torch.tensor([list(st.memory) for st in states], dtype=torch.long).view(len(states), m)
    shifts = torch.arange(w)
    x[:, 1:, mem_idx] = (((mem[..., None] >> shifts) & 1) * 2 - 1).to(x.dtype)
    pcs = torch.tensor([st.pc for st in states], dtype=torch.long)
    x[:, 0, pc_idx] = (((pcs[:, None] >> torch.arange(P)) & 1) * 2 - 1).to(x.dtype)
    return x


def decode(model: Transformer, x: torch.Tensor) -> list[SubleqState]:
    """The states a batch of punch cards ``[B, m + 1, d_model]`` holds: the sign of every state bit
    (two's complement, least significant first).  A read-out only; the model never sees it."""
    s, R = _spec(model), model.residual
    w, P = s.bits, s.pc_bits
    mem = (x[:, 1:, [R.i(f"mem{k}") for k in range(w)]] > 0).long()
    pc = (x[:, 0, [R.i(f"pc{k}") for k in range(P)]] > 0).long()
    mem_v = (mem << torch.arange(w)).sum(-1)
    mem_v = mem_v - (mem_v >> (w - 1) << w)
    pc_v = (pc << torch.arange(P)).sum(-1)
    pc_v = pc_v - (pc_v >> (P - 1) << P)
    return [SubleqState(tuple(mem_v[b].tolist()), int(pc_v[b])) for b in range(x.shape[0])]


@torch.no_grad()
def loop_once(model: Transformer, x: torch.Tensor) -> torch.Tensor:
    """One pass of the block stack (``model.cfg.n_loops`` SUBLEQ steps): punch cards ``[B, m + 1, d]`` in,
    the next ones out (the residual stream after the error-correction layer).  Runs in chunks of 64 cards
    (float64 traffic, not arithmetic, bounds the speed on a CPU)."""
    return torch.cat([model(x[i:i + 64], return_residual=True) for i in range(0, len(x), 64)]) if len(x) else x


@torch.no_grad()
def run_looped(model: Transformer, state: SubleqState, max_steps: int) -> list[SubleqState]:
    """The trace ``[s_0, ..., s_k]`` of the looped transformer from ``state``, like
    :func:`theorylab.tasks.subleq.run`: one pass per step, each pass fed the previous pass's residual output;
    it stops at the first (decoded) halted state or after ``max_steps`` steps.  Raises ConfigError for a
    negative ``max_steps`` or a state the model cannot hold (see :func:`encode`)."""
    if max_steps < 0:
        raise ConfigError(f"max_steps: must be >= 0 (got {max_steps})")
    _spec(model)  # a looped SUBLEQ transformer, or one ConfigError line
    if model.cfg.n_loops != 1:
        raise ConfigError("run_looped: needs a model with n_loops=1 (one SUBLEQ step per pass)")
    x = encode(model, state)
    trace = decode(model, x)
    while len(trace) <= max_steps and not trace[-1].halted():
        x = loop_once(model, x)
        trace.append(decode(model, x)[0])
    return trace


# --------------------------------------------------------------------------- programs and sharpness


def random_states(n: int, cells: int = CELLS, bits: int = BITS, seed: int = 0,
                  halted_fraction: float = 0.0) -> list[SubleqState]:
    """``n`` uniformly random states (every cell uniform over the ``bits``-bit range, pc uniform over the
    running range [0, m - 3], or for ``halted_fraction`` of them a halted pc in [-2^(w-1), -1] or [m - 2, m])."""
    rng = random.Random(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = []
    for _ in range(n):
        mem = tuple(rng.randint(lo, hi) for _ in range(cells))
        if rng.random() < halted_fraction:
            pc = rng.choice([rng.randint(lo, -1), rng.randint(cells - 2, cells)])
        else:
            pc = rng.randint(0, cells - 3)
        out.append(SubleqState(mem, pc))
    return out


def random_programs(n: int, cells: int = CELLS, bits: int = BITS, seed: int = 0) -> list[SubleqState]:
    """``n`` random programs that never halt: ``k`` random instructions ``a b c`` (``a`` anywhere, ``b`` in the
    data region after the code, ``c`` the start of an instruction), then ``d d 0`` (always jumps back to 0),
    then random data; pc = 0.  The code is never overwritten, the data changes at every step.  Raises
    ConfigError when the word size cannot hold the code's addresses (needs m <= 2^(w-1))."""
    if cells > 1 << (bits - 1):
        raise ConfigError(f"random_programs: {cells} cells need addresses beyond the {bits}-bit range")
    rng = random.Random(seed)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    k = max(1, (cells // 2) // 3 - 1)  # about half the memory is code
    data0 = 3 * (k + 1)
    out = []
    for _ in range(n):
        mem: list[int] = []
        for _ in range(k):
            mem += [rng.randrange(cells), rng.randrange(data0, cells), 3 * rng.randrange(k + 1)]
        d = rng.randrange(data0, cells)
        mem += [d, d, 0]
        mem += [rng.randint(lo, hi) for _ in range(cells - len(mem))]
        out.append(SubleqState(tuple(mem), 0))
    return out


@torch.no_grad()
def exact_loops(model: Transformer, states: list[SubleqState], loops: int) -> int:
    """The number of loops (up to ``loops``) for which every state's decoded trace equals the interpreter's at
    every step (the whole batch runs in parallel; a halted machine stays as it is)."""
    s = _spec(model)
    refs = [interpret(st, s.bits, loops) for st in states]
    x = encode(model, states)
    for t in range(1, loops + 1):
        x = loop_once(model, x)
        got = decode(model, x)
        if any(g != ref[min(t, len(ref) - 1)] for g, ref in zip(got, refs)):
            return t - 1
    return loops


def min_exact_sharpness(cells: int = CELLS, bits: int = BITS, loops: int = 1000, programs: int = 8,
                        seed: int = 0, lo: float = 0.5, hi: float = SHARPNESS, tol: float = 0.01) -> dict:
    """The smallest softmax sharpness lambda for which ``loops`` loops stay exact (every step's full state equal
    to the interpreter's) on ``programs`` :func:`random_programs` (seed ``seed``), by bisection on [lo, hi] to
    ``tol`` (assumes exactness is monotone in lambda, which the margins of the construction imply).

    Returns ``{"sharpness": lambda, "exact_at_hi": bool, "loops": ..., "programs": ..., "steps_checked": ...,
    "evaluations": [(lambda, exact loops), ...]}``; ``sharpness`` is None when even ``hi`` is not exact.
    At the defaults (m = 32, w = 8, 1,000 loops, 8 programs, tol 0.01) it takes about 90 s on one CPU thread and
    returns 1.558 (Giannou et al. 2023 use lambda = 10; the module docstring derives the threshold).
    Raises ConfigError for unsupported sizes.
    """
    check_size(cells, bits, hi)
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise ConfigError(f"tol: the bisection tolerance must be a finite number > 0 (got {tol!r})")
    if not (isinstance(lo, (int, float)) and 0 < lo < hi):
        raise ConfigError(f"lo: the search needs 0 < lo < hi (got lo={lo!r}, hi={hi!r})")
    if loops < 1 or programs < 1:
        raise ConfigError(f"loops and programs: need at least 1 each (got {loops}, {programs})")
    states = random_programs(programs, cells, bits, seed)
    evals: list[tuple[float, int]] = []

    def exact(lam: float) -> bool:
        n = exact_loops(looped_subleq(cells, bits, lam), states, loops)
        evals.append((lam, n))
        return n == loops

    res = {"loops": loops, "programs": programs, "cells": cells, "bits": bits, "seed": seed,
           "steps_checked": loops * programs, "evaluations": evals}
    if not exact(hi):
        return {**res, "sharpness": None, "exact_at_hi": False}
    if exact(lo):
        return {**res, "sharpness": lo, "exact_at_hi": True}
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if exact(mid):
            hi = mid
        else:
            lo = mid
    return {**res, "sharpness": hi, "exact_at_hi": True}


def compare_traces(model_trace: list[SubleqState], ref_trace: list[SubleqState]) -> int | None:
    """The first step at which two traces differ (a missing step counts as a difference), None if none."""
    for t in range(max(len(model_trace), len(ref_trace))):
        if t >= len(model_trace) or t >= len(ref_trace) or model_trace[t] != ref_trace[t]:
            return t
    return None


__all__ = ["looped_subleq", "encode", "decode", "loop_once", "run_looped", "random_states", "random_programs",
           "exact_loops", "min_exact_sharpness", "compare_traces", "check_size", "SubleqSpec"]
