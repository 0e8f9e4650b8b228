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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from theorylab.errors import ConfigError

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

    Raises ConfigError when a memory value is outside the ``bits``-bit range.
    """
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
            try:
                v = int(tok, 10)
            except ValueError:
                raise ConfigError(f"{source}: line {lineno}: {tok!r} is not an integer") from None
            if not lo <= v <= hi:
                raise ConfigError(f"{source}: line {lineno}: {v} is outside the {bits}-bit range [{lo}, {hi}]")
            values.append(v)
    if len(values) > cells:
        raise ConfigError(f"{source}: {len(values)} values do not fit in {cells} cells (--cells)")
    return SubleqState(tuple(values + [0] * (cells - len(values))), 0)


def load_program(path: str | Path, cells: int, bits: int) -> SubleqState:
    """:func:`parse_program` of a file; a missing or unreadable file is a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"program file {str(p)!r}: cannot be read ({e.__class__.__name__})") from None
    return parse_program(text, cells, bits, source=str(p))
