"""Pérez, Barceló & Marinković (2021), "Attention is Turing Complete", JMLR 22(75):1-35: a hard-attention
encoder-decoder transformer that simulates a Turing machine, run in exact rational arithmetic and in floats
through the same weights; and the order-invariance of a transformer without positional encodings.

**Machines.**  A machine is a JSON file ``{"start": "q0", "accept": ["qa"], "reject": ["qr"], "blank": "_",
"transitions": [["q0", "1", "q0", "1", "R"], ...]}`` (state, symbol read, next state, symbol written, move
L/R/S; an optional ``"comment"``).  The tape is infinite to the right; the input starts at cell 0, where the
head starts; a move left at cell 0 stays at cell 0; a step is one transition taken.  A configuration halts in
an accept or reject state or when no transition applies (then it rejects).  :func:`simulate` is the plain
reference simulator.

**The construction** (:class:`TuringTransformer`; paper section 4 and its appendix, as far as known here:
the primary text was not readable, details below are from the unofficial re-implementation
``siddankthep/turing-complete-attention`` and from recollection, marked *unverified*).  Attention is hard:
score(q, k) = -|<q, k>|, and the output averages the values of all maximisers ("hardmax").  Every weight is a
matrix over named residual dimensions (:class:`~theorylab.constructions.chiang.Residual`); its entries are
the rationals 0, ±1, ±2, -3, ±1/2, 1/3.  Positional features of (1-indexed) position t are (1, t, 1/t, 1/t^2).

* Encoder (1 layer) over ``⊢ w _`` (a start marker, the input, one blank): position p = c + 2 holds cell c.
  Its FFN writes ``e_cell0`` = [p = 2] (a ReLU bump); its keys are (p, 1) for cells and (1/2, 0) for ``⊢``;
  values carry the symbol one-hot (``⊢`` carries blank) and ``e_cell0``.  Its self-attention has zero value
  weights and is left out.
* Decoder position t = 1 is a start token (``bos``); position t = i + 2 receives configuration i as
  y_i = (state q_i one-hot, symbol read s_i one-hot, the move d_{i-1} that led here, z_i = [head at cell 0]).
* Decoder layer 1 (FFN; Lemma "δ is computable by a FFN", *unverified numbering*): ReLU(q_a + s_b - 1) is the
  one-hot of the pair (q_i, s_i) = (a, b); a linear map writes δ(a, b) = (next state, symbol written v_i,
  move d_i).  A second unit ReLU(q_a + s_b + z_i - 2) per left-moving pair adds +1 to d_i: the effective
  move is 0 at cell 0.  Halting pairs write themselves back (a fixed point) and ``halt`` = 1; the start
  token writes the start state.
* Decoder layer 2: zero queries and keys, so hardmax averages all positions t' <= t: ``c_cur`` = c(i)/t
  (the average of the moves received) and ``c_next`` = c(i+1)/t (the average of the moves computed), where
  c(i) is the head's cell at step i.
* Decoder layer 3, self-attention: query (c(i+1)/t, 1/t, 1/(3 t^2)), key (1/t', -c(j)/t', 1/t'^2) at the
  position t' = j + 2 of step j, so <q, k> = (c(i+1) - c(j))/(t t') + 1/(3 t^2 t'^2): |<q, k>| is smallest
  for the latest step j <= i that wrote to cell c(i+1) (ties broken towards the latest by the 1/t'^2 term).
  The value is the symbol v_j written there and ``visited`` = 1.  The start token's key (0, 0, 3/2) scores
  1/(2 t^2): it beats every mismatch (>= 11/(12 t^2)) and loses to every match (<= 1/(12 t^2)), so an
  unvisited cell attends to it and reads ``visited`` = 0.
* Decoder layer 3, cross-attention: query (1/t, -(c(i+1) + 2)/t) against the encoder keys gives
  -|p - c(i+1) - 2|/t: the input cell c(i+1) scores 0; beyond the input (and its blank) the start marker
  (score -1/(2 t)) wins and reads blank.  The value is the input symbol and [c(i+1) = 0].
* Decoder layer 3, FFN: s_{i+1} = ReLU(written + visited - 1) + ReLU(input - visited), per symbol.
* Output (linear): y_{i+1} = (q_{i+1}, s_{i+1}, d_i, z_{i+1}), plus read-outs ``halt`` (configuration i
  halts) and ``write`` (v_i, for reconstructing the tape).  The output vector itself, unrounded, is the next
  decoder input (autoregressive: position t consumes the outputs of positions < t).

Width ``d = 2|Q| + 6|Σ| + 15`` (encoder and decoder share the residual space), 1 encoder layer, 3 decoder
layers, one head per attention.

**Deviations from the paper** (each the simplest faithful variant we could write; *unverified* where we could
not read the paper's own choice):

1. Moves L/R/S with a one-sided tape where a left move at cell 0 stays; the paper (unverified) uses L/R and a
   machine that never moves left of cell 0.  This needs the flag z_i and one extra ReLU per left-moving pair.
2. A start token at decoder position 1 (the paper starts from a fixed y_0; unverified): it computes the first
   configuration, including the symbol at cell 0, through the same layers, and its key is the "never
   visited" sink of layer 3.  Positions are 1-indexed; step i sits at position i + 2 (paper: i + 1).
3. The input is read in layer 3 (cross-attention to cell c(i+1)); the unofficial code reads the encoder in
   layer 1.  "Cell beyond the input" is decided by a start-marker key (score 1/2) instead of comparing
   positions in the output function, and the encoder sees ``⊢ w _`` (the paper: w, possibly with an end
   marker; unverified).
4. ReLU instead of the paper's piecewise-linear sigmoid (both are exact on 0/1 inputs); the start token's
   and flags' biases are the residual's constant dimension ``one``; no layer norm.
5. Halting is a read-out flag and halting configurations are fixed points; the paper accepts when the
   decoded state is final (unverified).  ``write`` is an extra read-out, not fed back.
6. The tie-break term 1/(3 t^2 t'^2) follows the unofficial code's weights (query 1/(3(i+1)^2), key
   1/(j+1)^2); its gaps between two visits of a cell are about 2/(3 t^5) against scores of size c/(t t'),
   so with rounding error eps the latest write is lost when t^3 ~ 1/eps: t ~ eps^(-1/3) (prediction
   [derived], not a statement of the paper).

**Arithmetic.**  ``exact`` runs the forward pass on Python ``int`` and :class:`fractions.Fraction` values
(numpy object arrays, sparse matrix products); ``float64``/``float32``/``float16`` on numpy arrays of that
dtype.  The weights are one table of rationals, converted.  :func:`first_divergence` and :func:`run` compare
the decoded configuration (state, head, symbol read, tape, halting) with the simulator at every step.
Measured (:func:`divergence_sweep`, numpy on a CPU): ``examples/turing/counter.json`` on the empty input
first diverges at step 333 in float32 (prediction eps^(-1/3) = 203) and 27 in float16 (10; float16 also
underflows the tie-break term into subnormals); a^L on ``palindrome.json`` and a^L b^L on ``anbn.json``
(L <= 48, up to 1225 steps) diverge at steps 142-327 in float32 and 23-143 in float16; float64 did not
diverge within 100,000 steps of the counter (a lower bound; prediction about 1.6e5; the run took ~8 min).
A divergence is only seen once an older write that differs from the latest is read, so these steps are
upper bounds on where the tie-break is first lost.

**NoPE invariance** (:func:`nope_invariance`; paper section on the necessity of positional encodings,
"Proposition 3", unverified numbering): without positional encodings an encoder's per-position outputs are
permutation-equivariant, and any pooled read-out (the mean over positions, or a decoder query attending
to the encoder) is invariant to permuting the input and to repeating it k times.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from theorylab.constructions.chiang import Residual
from theorylab.errors import ConfigError

MOVES = {"L": -1, "R": 1, "S": 0}
ARITHMETICS = ("exact", "float64", "float32", "float16")
KEYS = ("start", "accept", "reject", "blank", "transitions")
OPTIONAL = ("reject", "comment", "name")

# --------------------------------------------------------------------------- machines


@dataclass(frozen=True)
class Machine:
    """A one-tape Turing machine.  ``delta[(state, read)] = (next state, write, move in {-1, 0, 1})``."""

    start: str
    accept: frozenset
    reject: frozenset
    blank: str
    delta: dict = field(hash=False, compare=False)
    states: tuple = ()
    symbols: tuple = ()
    source: str = "machine"

    def halts(self, state: str, symbol: str) -> bool:
        """Whether the configuration (state, symbol under the head) halts: a final state or no transition."""
        return state in self.accept or state in self.reject or (state, symbol) not in self.delta


def _fail(source: str, what: str) -> ConfigError:
    return ConfigError(f"{source}: {what}")


def parse_machine(obj: Any, source: str = "machine") -> Machine:
    """A :class:`Machine` from the parsed JSON object.  Raises ConfigError (one line naming the field) for a
    missing or unknown key, a state or symbol that is not a non-empty string (symbols: one character), an
    unknown move, a duplicate (state, symbol) transition, a transition out of a halting state, or a state
    that both accepts and rejects."""
    if not isinstance(obj, dict):
        raise _fail(source, f"expected a JSON object with keys {', '.join(KEYS)}")
    missing = [k for k in KEYS if k not in obj and k not in OPTIONAL]
    if missing:
        raise _fail(source, f"missing key(s) {', '.join(missing)}; required: start, accept, blank, transitions "
                            "(optional: reject, comment, name)")
    unknown = sorted(set(obj) - set(KEYS) - set(OPTIONAL))
    if unknown:
        raise _fail(source, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS + OPTIONAL[1:])}")

    def state(v: Any, where: str) -> str:
        if not isinstance(v, str) or not v:
            raise _fail(source, f"{where}: a state must be a non-empty string (got {v!r})")
        return v

    def symbol(v: Any, where: str) -> str:
        if not isinstance(v, str) or len(v) != 1:
            raise _fail(source, f"{where}: a symbol must be a one-character string (got {v!r})")
        return v

    def states(v: Any, key: str) -> frozenset:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list):
            raise _fail(source, f"{key}: expected a list of states (got {v!r})")
        return frozenset(state(s, f"{key}[{k}]") for k, s in enumerate(v))

    start = state(obj["start"], "start")
    accept, reject = states(obj["accept"], "accept"), states(obj.get("reject", []), "reject")
    both = accept & reject
    if both:
        raise _fail(source, f"state(s) {', '.join(sorted(both))} both accept and reject")
    blank = symbol(obj["blank"], "blank")
    rows = obj["transitions"]
    if not isinstance(rows, list):
        raise _fail(source, "transitions: expected a list of [state, read, next state, write, move]")
    delta: dict[tuple[str, str], tuple[str, str, int]] = {}
    first_at: dict[tuple[str, str], int] = {}
    for k, row in enumerate(rows):
        where = f"transitions[{k}]"
        if not isinstance(row, list) or len(row) != 5:
            raise _fail(source, f"{where}: expected [state, read, next state, write, move] (got {row!r})")
        q, a, q2, b, m = row
        q, q2 = state(q, f"{where} state"), state(q2, f"{where} next state")
        a, b = symbol(a, f"{where} read"), symbol(b, f"{where} write")
        if m not in MOVES:
            raise _fail(source, f"{where}: unknown move {m!r}; allowed: L, R, S")
        if q in accept or q in reject:
            raise _fail(source, f"{where}: {q!r} is a halting (accept/reject) state and cannot have transitions")
        if (q, a) in delta:
            raise _fail(source, f"{where}: duplicate transition for (state {q!r}, read {a!r}), "
                                f"first given at transitions[{first_at[(q, a)]}]")
        delta[(q, a)] = (q2, b, MOVES[m])
        first_at[(q, a)] = k
    named = {start} | accept | reject | {q for q, _ in delta} | {v[0] for v in delta.values()}
    syms = {blank} | {a for _, a in delta} | {v[1] for v in delta.values()}
    return Machine(start=start, accept=accept, reject=reject, blank=blank, delta=delta,
                   states=(start, *sorted(named - {start})), symbols=(blank, *sorted(syms - {blank})),
                   source=source)


def load_machine(path: str | Path) -> Machine:
    """Read a machine file (JSON, see the module docstring).  Raises ConfigError for a missing or unreadable
    file, JSON that does not parse (with its line and column) or a malformed machine."""
    p = Path(path)
    if not str(path).strip():
        raise ConfigError("--machine: give a machine file (got an empty path)")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--machine {path}: cannot read the machine file ({err.__class__.__name__}: "
                          f"{getattr(err, 'strerror', None) or err})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--machine {path}: not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
                          ) from None
    return parse_machine(obj, f"--machine {path}")


def check_input(machine: Machine, word: str) -> str:
    """``word`` if every character is a symbol of the machine; else ConfigError naming the symbol."""
    for k, ch in enumerate(word):
        if ch not in machine.symbols:
            raise ConfigError(f"--input: symbol {ch!r} at position {k} is not in the machine's alphabet "
                              f"{{{', '.join(repr(s) for s in machine.symbols)}}}")
    return word


def _check_steps(max_steps: int) -> int:
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 0:
        raise ConfigError(f"--max-steps: expected an integer >= 0 (got {max_steps!r})")
    return int(max_steps)


def random_machine(rng: np.random.Generator, n_states: int = 3, symbols: str = "_ab",
                   density: float = 0.85) -> Machine:
    """A random machine for checks: states ``q0 .. q{n-1}`` plus ``qa`` (accept) and ``qr`` (reject), the blank
    ``symbols[0]``; each (state, symbol) has a transition with probability ``density`` (else it halts and
    rejects), to a uniformly random working state (90%) or a final one, writing a random symbol and moving L, R
    or S uniformly, so stay moves and left moves at cell 0 occur."""
    states = [f"q{k}" for k in range(n_states)]
    p = [0.9 / n_states] * n_states + [0.05, 0.05]
    rows = []
    for q in states:
        for a in symbols:
            if rng.random() < density:
                rows.append([q, a, str(rng.choice(states + ["qa", "qr"], p=p)), str(rng.choice(list(symbols))),
                             str(rng.choice(["L", "R", "S"]))])
    return parse_machine({"start": "q0", "accept": ["qa"], "reject": ["qr"], "blank": symbols[0],
                          "transitions": rows}, "random machine")


# --------------------------------------------------------------------------- reference simulator


@dataclass
class Trace:
    """A run of the simulator: ``states[i]``, ``heads[i]`` (cell index), ``reads[i]`` (symbol under the head)
    of configuration i = 0..steps, and ``writes[i]``, ``moves[i]`` (effective move: -1, 0, 1) of step i."""

    states: list
    heads: list
    reads: list
    writes: list
    moves: list
    tape: list  # the final visited tape, cell 0 first
    halted: bool
    accepted: bool

    @property
    def steps(self) -> int:
        return len(self.writes)


def simulate(machine: Machine, word: str, max_steps: int = 1000) -> Trace:
    """Run ``machine`` on ``word`` for at most ``max_steps`` transitions.  ``halted`` is False when the budget
    ran out first; ``accepted`` needs a halt in an accept state.  Raises ConfigError for a symbol outside the
    alphabet or a negative budget."""
    check_input(machine, word)
    max_steps = _check_steps(max_steps)
    tape = list(word) or [machine.blank]
    state, head = machine.start, 0
    tr = Trace([], [], [], [], [], tape, False, False)
    while True:
        read = tape[head]
        tr.states.append(state)
        tr.heads.append(head)
        tr.reads.append(read)
        if machine.halts(state, read):
            tr.halted, tr.accepted = True, state in machine.accept
            return tr
        if tr.steps >= max_steps:
            return tr
        state, write, move = machine.delta[(state, read)]
        tape[head] = write
        new = max(0, head + move)
        tr.writes.append(write)
        tr.moves.append(new - head)
        head = new
        if head == len(tape):
            tape.append(machine.blank)


def show_tape(tape: list, blank: str) -> str:
    """The visited tape as a string with blanks trimmed from both ends."""
    return "".join(tape).strip(blank)


# --------------------------------------------------------------------------- arithmetic backends


class _Rows(list):
    """A sparse weight (list of rows) that knows its column count."""

    ncols = 0


class _Exact:
    """Exact rationals: Python ints where integral, :class:`Fraction` otherwise; sparse matrix products."""

    name = "exact"

    def weight(self, W: np.ndarray) -> list:
        """Per row, the (column, value) pairs of the non-zero entries."""
        return [[(c, _int_or_frac(W[r, c])) for c in range(W.shape[1]) if W[r, c] != 0] for r in range(W.shape[0])]

    def vector(self, values: list) -> np.ndarray:
        v = np.empty(len(values), dtype=object)
        v[:] = [_norm(x) for x in values]
        return v

    def mm(self, x: np.ndarray, W: _Rows) -> np.ndarray:
        out: list = [0] * W.ncols
        for r, xv in enumerate(x):
            if xv:
                for c, w in W[r]:
                    out[c] += xv * w
        return self.vector(out)

    def relu(self, x: np.ndarray) -> np.ndarray:
        return self.vector([v if v > 0 else 0 for v in x])

    def attend(self, q: np.ndarray, keys: list, values: list) -> np.ndarray:
        """Hardmax: the mean of the values whose score -|<q, k>| is largest."""
        scores = [-abs(sum(a * b for a, b in zip(q, k) if a and b)) for k in keys]
        best = max(scores)
        picked = [v for s, v in zip(scores, values) if s == best]
        return self.vector([Fraction(sum(col), len(picked)) for col in zip(*picked)])

    def half(self) -> Any:
        return Fraction(1, 2)


class _Float:
    """numpy floats of one dtype; the attention cache grows by doubling."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(name)

    def weight(self, W: np.ndarray) -> np.ndarray:
        return np.array([[float(x) for x in row] for row in W], dtype=np.float64).astype(self.dtype)

    def vector(self, values: list) -> np.ndarray:
        return np.array([float(x) for x in values], dtype=np.float64).astype(self.dtype)

    def mm(self, x: np.ndarray, W: np.ndarray) -> np.ndarray:
        return x @ W

    def relu(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, self.dtype.type(0))

    def attend(self, q: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        scores = -np.abs(keys @ q)
        picked = values[scores == scores.max()]
        return picked.sum(0) / self.dtype.type(len(picked))

    def half(self) -> Any:
        return self.dtype.type(0.5)


def _int_or_frac(x: Any) -> Any:
    """``x`` as a Python ``int`` when integral, else a Fraction of Python ints.  numpy integers are converted:
    a numpy int64 inside a Fraction would overflow silently once the denominators grow (t^2 t'^2 ...)."""
    if isinstance(x, np.integer):
        return int(x)
    x = Fraction(x)
    num, den = int(x.numerator), int(x.denominator)
    return num if den == 1 else Fraction(num, den)


def _norm(x: Any) -> Any:
    """An exact value as a Python int when integral (ints keep the arithmetic fast), else a Fraction of Python
    ints (never numpy integers, which would overflow)."""
    if type(x) is int:
        return x
    if type(x) is Fraction and type(x.numerator) is int and type(x.denominator) is int:
        return x.numerator if x.denominator == 1 else x
    return _int_or_frac(x)


def _backend(arithmetic: str):
    if arithmetic not in ARITHMETICS:
        raise ConfigError(f"--arithmetic: {arithmetic!r}; allowed: {', '.join(ARITHMETICS)}")
    return _Exact() if arithmetic == "exact" else _Float(arithmetic)


class _Cache:
    """Keys and values of the positions seen so far, for one attention."""

    def __init__(self, num, dk: int, dv: int):
        self.num, self.n = num, 0
        if isinstance(num, _Float):
            self.K = np.zeros((16, dk), num.dtype)
            self.V = np.zeros((16, dv), num.dtype)
        else:
            self.K, self.V = [], []

    def add(self, k: np.ndarray, v: np.ndarray) -> None:
        if isinstance(self.K, list):
            self.K.append(k)
            self.V.append(v)
        else:
            if self.n == len(self.K):
                self.K = np.concatenate([self.K, np.zeros_like(self.K)])
                self.V = np.concatenate([self.V, np.zeros_like(self.V)])
            self.K[self.n], self.V[self.n] = k, v
        self.n += 1

    def attend(self, q: np.ndarray) -> np.ndarray:
        if isinstance(self.K, list):
            return self.num.attend(q, self.K, self.V)
        return self.num.attend(q, self.K[: self.n], self.V[: self.n])


# --------------------------------------------------------------------------- the construction

POS = ("one", "pos", "inv", "inv2")  # (1, t, 1/t, 1/t^2) of the 1-indexed position t


class TuringTransformer:
    """Pérez et al.'s encoder-decoder for ``machine``: weights built once, as exact rationals, from named
    residual dimensions (``self.residual``); :meth:`run` evaluates them in any arithmetic.

    Matrices (all ``[d_in, d_out]``, applied as ``x @ W``): ``enc_embed`` [|Σ|+1, d] (token one-hot: ⊢ then
    the symbols), ``pos_embed`` [4, d], ``enc_ffn_in``/``enc_ffn_out``, ``enc_key`` [d, 2], ``dec_embed`` [d_y, d], ``ffn1_in``/``ffn1_out``,
    ``attn2_q``/``attn2_k`` [d, 1], ``attn2_v`` [d, 2], ``attn2_o`` [2, d], ``attn3_q``/``attn3_k`` [d, 3],
    ``attn3_v`` [d, |Σ|+1], ``attn3_o``, ``cross3_q`` [d, 2], ``enc_value`` [d, |Σ|+1], ``cross3_o``,
    ``ffn3_in``/``ffn3_out``, ``out`` [d, d_y].  Head dimensions are named too (``self.heads``)."""

    def __init__(self, machine: Machine):
        self.machine = m = machine
        Q, S = m.states, m.symbols
        self.y_names = [*(f"y_q:{q}" for q in Q), *(f"y_s:{s}" for s in S), "y_move", "y_cell0", "y_halt",
                        *(f"y_write:{s}" for s in S)]
        Y = Residual(self.y_names, mirror=False)
        names = [*POS, "e_start", *(f"e_sym:{s}" for s in S), "e_cell0", "bos",
                 *(f"q_in:{q}" for q in Q), *(f"s_in:{s}" for s in S), "m_in", "z_in",
                 *(f"q_next:{q}" for q in Q), *(f"v_w:{s}" for s in S), "d", "halt", "c_cur", "c_next",
                 *(f"w_sym:{s}" for s in S), "visited", *(f"a_sym:{s}" for s in S), "a_cell0",
                 *(f"s_next:{s}" for s in S)]
        self.residual = R = Residual(names, mirror=False)
        d, F = R.d, Fraction
        self.width, self.encoder_layers, self.decoder_layers = d, 1, 3

        def zeros(rows: int, cols: int) -> np.ndarray:
            return np.array([[F(0)] * cols for _ in range(rows)], dtype=object)

        W: dict[str, np.ndarray] = {}
        # embeddings: token 0 = the start marker ⊢, token 1 + k = symbol k
        W["enc_embed"] = zeros(len(S) + 1, d)
        R.write(W["enc_embed"], 0, "e_start", F(1))
        for k, s in enumerate(S):
            R.write(W["enc_embed"], k + 1, f"e_sym:{s}", F(1))
        W["pos_embed"] = zeros(4, d)
        for k, name in enumerate(POS):
            R.write(W["pos_embed"], k, name, F(1))
        W["dec_embed"] = zeros(Y.d, d)
        for q in Q:
            R.write(W["dec_embed"], Y.i(f"y_q:{q}"), f"q_in:{q}", F(1))
        for s in S:
            R.write(W["dec_embed"], Y.i(f"y_s:{s}"), f"s_in:{s}", F(1))
        R.write(W["dec_embed"], Y.i("y_move"), "m_in", F(1))
        R.write(W["dec_embed"], Y.i("y_cell0"), "z_in", F(1))
        W["bos_embed"] = zeros(1, d)
        R.write(W["bos_embed"], 0, "bos", F(1))

        # encoder FFN: e_cell0 = ReLU(p-1) - 2 ReLU(p-2) + ReLU(p-3) = [p = 2] for integer p >= 1
        W["enc_ffn_in"], W["enc_ffn_out"] = zeros(d, 3), zeros(3, d)
        for j, (shift, coef) in enumerate(((1, 1), (2, -2), (3, 1))):
            W["enc_ffn_in"][R.i("pos"), j] = F(1)
            W["enc_ffn_in"][R.i("one"), j] = F(-shift)
            R.write(W["enc_ffn_out"], j, "e_cell0", F(coef))
        # encoder keys: cells (p, 1); the start marker (1/2, 0); values: symbol (⊢ reads blank) and [cell 0]
        W["enc_key"] = zeros(d, 2)
        W["enc_key"][R.i("pos"), 0] = F(1)
        W["enc_key"][R.i("e_start"), 0] = F(-1, 2)
        W["enc_key"][R.i("one"), 1] = F(1)
        W["enc_key"][R.i("e_start"), 1] = F(-1)
        # heads: value dimensions named like the residual's, W_V [d, d_v] then W_O [d_v, d]
        H2 = Residual(["m_in", "d"], mirror=False)
        H3 = Residual([*(f"v_w:{s}" for s in S), "visited"], mirror=False)
        HX = Residual([*(f"sym:{s}" for s in S), "cell0"], mirror=False)
        self.heads = {"attn2": H2, "attn3": H3, "cross3": HX}
        W["enc_value"], W["cross3_o"] = zeros(d, HX.d), zeros(HX.d, d)
        for s in S:
            HX.write(W["enc_value"], R.i(f"e_sym:{s}"), f"sym:{s}", F(1))
            R.write(W["cross3_o"], HX.i(f"sym:{s}"), f"a_sym:{s}", F(1))
        HX.write(W["enc_value"], R.i("e_start"), f"sym:{m.blank}", F(1))
        HX.write(W["enc_value"], R.i("e_cell0"), "cell0", F(1))
        R.write(W["cross3_o"], HX.i("cell0"), "a_cell0", F(1))

        # decoder layer 1 FFN: the transition function
        units: list[tuple[dict[str, Fraction], dict[str, Fraction]]] = []  # (input weights, output writes)
        for q in Q:
            for s in S:
                pair = {f"q_in:{q}": F(1), f"s_in:{s}": F(1), "one": F(-1)}
                if m.halts(q, s):
                    units.append((pair, {f"q_next:{q}": F(1), f"v_w:{s}": F(1), "halt": F(1)}))
                    continue
                q2, w, mv = m.delta[(q, s)]
                units.append((pair, {f"q_next:{q2}": F(1), f"v_w:{w}": F(1), "d": F(mv)}))
                if mv < 0:  # at cell 0 a left move stays: d += 1 when z_i = 1
                    units.append(({**pair, "z_in": F(1), "one": F(-2)}, {"d": F(1)}))
        units.append(({"bos": F(1)}, {f"q_next:{m.start}": F(1)}))
        W["ffn1_in"], W["ffn1_out"] = zeros(d, len(units)), zeros(len(units), d)
        for j, (ins, outs) in enumerate(units):
            for name, v in ins.items():
                W["ffn1_in"][R.i(name), j] = v
            for name, v in outs.items():
                R.write(W["ffn1_out"], j, name, v)

        # decoder layer 2: uniform hardmax (zero scores) averages the moves received and computed
        W["attn2_q"], W["attn2_k"], W["attn2_v"], W["attn2_o"] = zeros(d, 1), zeros(d, 1), zeros(d, 2), zeros(2, d)
        for src, dst in (("m_in", "c_cur"), ("d", "c_next")):
            H2.write(W["attn2_v"], R.i(src), src, F(1))
            R.write(W["attn2_o"], H2.i(src), dst, F(1))

        # decoder layer 3: the last write to cell c(i+1); the start token is the "never written" sink
        W["attn3_q"], W["attn3_k"] = zeros(d, 3), zeros(d, 3)
        W["attn3_v"], W["attn3_o"] = zeros(d, H3.d), zeros(H3.d, d)
        W["attn3_q"][R.i("c_next"), 0] = F(1)
        W["attn3_q"][R.i("inv"), 1] = F(1)
        W["attn3_q"][R.i("inv2"), 2] = F(1, 3)
        W["attn3_k"][R.i("inv"), 0] = F(1)
        W["attn3_k"][R.i("bos"), 0] = F(-1)
        W["attn3_k"][R.i("c_cur"), 1] = F(-1)
        W["attn3_k"][R.i("inv2"), 2] = F(1)
        W["attn3_k"][R.i("bos"), 2] = F(1, 2)
        for s in S:
            H3.write(W["attn3_v"], R.i(f"v_w:{s}"), f"v_w:{s}", F(1))
            R.write(W["attn3_o"], H3.i(f"v_w:{s}"), f"w_sym:{s}", F(1))
        H3.write(W["attn3_v"], R.i("one"), "visited", F(1))
        H3.write(W["attn3_v"], R.i("bos"), "visited", F(-1))
        R.write(W["attn3_o"], H3.i("visited"), "visited", F(1))
        # cross-attention to cell c(i+1) of the input: <q, k> = (p - c(i+1) - 2)/t
        W["cross3_q"] = zeros(d, 2)
        W["cross3_q"][R.i("inv"), 0] = F(1)
        W["cross3_q"][R.i("c_next"), 1] = F(-1)
        W["cross3_q"][R.i("inv"), 1] = F(-2)
        # layer 3 FFN: the symbol under the head next = last written if visited, else the input's
        W["ffn3_in"], W["ffn3_out"] = zeros(d, 2 * len(S)), zeros(2 * len(S), d)
        for k, s in enumerate(S):
            W["ffn3_in"][R.i(f"w_sym:{s}"), 2 * k] = F(1)
            W["ffn3_in"][R.i("visited"), 2 * k] = F(1)
            W["ffn3_in"][R.i("one"), 2 * k] = F(-1)
            W["ffn3_in"][R.i(f"a_sym:{s}"), 2 * k + 1] = F(1)
            W["ffn3_in"][R.i("visited"), 2 * k + 1] = F(-1)
            R.write(W["ffn3_out"], 2 * k, f"s_next:{s}", F(1))
            R.write(W["ffn3_out"], 2 * k + 1, f"s_next:{s}", F(1))

        # output: y_{i+1} and the read-outs
        W["out"] = zeros(d, Y.d)
        for q in Q:
            Y.write(W["out"], R.i(f"q_next:{q}"), f"y_q:{q}", F(1))
        for s in S:
            Y.write(W["out"], R.i(f"s_next:{s}"), f"y_s:{s}", F(1))
            Y.write(W["out"], R.i(f"v_w:{s}"), f"y_write:{s}", F(1))
        Y.write(W["out"], R.i("d"), "y_move", F(1))
        Y.write(W["out"], R.i("a_cell0"), "y_cell0", F(1))
        Y.write(W["out"], R.i("halt"), "y_halt", F(1))
        self.weights = W
        self.y = Y
        self._converted: dict[str, dict] = {}

    def n_parameters(self) -> int:
        """Number of weight entries (zeros included)."""
        return sum(w.size for w in self.weights.values())

    def _weights(self, num) -> dict:
        if num.name not in self._converted:
            conv = {}
            for k, w in self.weights.items():
                c = num.weight(w)
                if isinstance(c, list):
                    c = _Rows(c)
                    c.ncols = w.shape[1]
                conv[k] = c
            self._converted[num.name] = conv
        return self._converted[num.name]

    def _pos(self, num, t: int) -> np.ndarray:
        return num.vector([1, t, Fraction(1, t), Fraction(1, t * t)])

    def run(self, word: str, arithmetic: str = "exact", max_steps: int = 1000) -> TransformerRun:
        """Run the transformer autoregressively on ``word`` until the ``halt`` read-out fires or
        ``max_steps`` steps are taken, decode each configuration and compare it with :func:`simulate`.
        Raises ConfigError for an input symbol outside the alphabet, a negative budget or an unknown
        arithmetic."""
        m, num = self.machine, _backend(arithmetic)
        check_input(m, word)
        max_steps = _check_steps(max_steps)
        W = self._weights(num)
        Y = self.y
        mm, relu = num.mm, num.relu

        # encoder: ⊢ w _, positions p = 1..n+2
        cross = _Cache(num, 2, self.heads["cross3"].d)
        tokens = [0, *(1 + m.symbols.index(ch) for ch in word), 1 + m.symbols.index(m.blank)]
        onehot = [[int(i == j) for j in range(len(m.symbols) + 1)] for i in range(len(m.symbols) + 1)]
        for p, tok in enumerate(tokens, start=1):
            h = mm(num.vector(onehot[tok]), W["enc_embed"]) + mm(self._pos(num, p), W["pos_embed"])
            h = h + mm(relu(mm(h, W["enc_ffn_in"])), W["enc_ffn_out"])
            cross.add(mm(h, W["enc_key"]), mm(h, W["enc_value"]))

        attn2, attn3 = _Cache(num, 1, self.heads["attn2"].d), _Cache(num, 3, self.heads["attn3"].d)
        y = num.vector([0] * Y.d)
        bos = num.vector([1])
        zero_bos = num.vector([0])
        outs = []
        sim = simulate(m, word, max_steps)
        for t in range(1, max_steps + 3):
            h = mm(y, W["dec_embed"]) + mm(self._pos(num, t), W["pos_embed"]) + mm(
                bos if t == 1 else zero_bos, W["bos_embed"])
            h = h + mm(relu(mm(h, W["ffn1_in"])), W["ffn1_out"])  # layer 1
            attn2.add(mm(h, W["attn2_k"]), mm(h, W["attn2_v"]))  # layer 2
            h = h + mm(attn2.attend(mm(h, W["attn2_q"])), W["attn2_o"])
            attn3.add(mm(h, W["attn3_k"]), mm(h, W["attn3_v"]))  # layer 3
            h = h + mm(attn3.attend(mm(h, W["attn3_q"])), W["attn3_o"])
            h = h + mm(cross.attend(mm(h, W["cross3_q"])), W["cross3_o"])
            h = h + mm(relu(mm(h, W["ffn3_in"])), W["ffn3_out"])
            y = mm(h, W["out"])
            outs.append(self._decode(y, num))
            if t >= 2 and outs[-1]["halt"]:
                break
        return self._compare(word, outs, sim, arithmetic, max_steps)

    def _decode(self, y: np.ndarray, num) -> dict:
        m, Y, half = self.machine, self.y, num.half()

        def one(prefix: str, items: tuple) -> str | None:
            hits = [s for s in items if y[Y.i(f"{prefix}:{s}")] > half]
            return hits[0] if len(hits) == 1 else None

        mv = y[Y.i("y_move")]
        return {"state": one("y_q", m.states), "read": one("y_s", m.symbols), "write": one("y_write", m.symbols),
                "move": int(round(float(mv))) if abs(float(mv) - round(float(mv))) < 0.25 else None,
                "halt": bool(y[Y.i("y_halt")] > half)}

    def _compare(self, word: str, outs: list, sim: Trace, arithmetic: str, max_steps: int) -> TransformerRun:
        """Configuration i of the transformer: state and read from output i (position i + 1), head and tape
        from the moves and writes of outputs 1..i; it halts at i when output i + 1 says so."""
        m = self.machine
        tape = list(word) or [m.blank]
        head, diverged = 0, None
        states, heads, reads = [], [], []
        n_conf = len(outs) - 1  # configurations 0..n_conf-1; outs[i + 1] is step i
        halted = outs[-1]["halt"]
        steps = n_conf - 1
        tape_ok = True
        for i in range(n_conf):
            o, nxt = outs[i], outs[i + 1]
            states.append(o["state"])
            heads.append(head)
            reads.append(o["read"])
            if diverged is None:
                same = (i < len(sim.states) and tape_ok and o["state"] == sim.states[i] and head == sim.heads[i]
                        and o["read"] == sim.reads[i]
                        and nxt["halt"] == (i == len(sim.states) - 1 and sim.halted))
                if not same:
                    diverged = i
            if i == n_conf - 1:
                break
            if diverged is None and (nxt["write"] != sim.writes[i] or nxt["move"] != sim.moves[i]):
                tape_ok = False
            w = nxt["write"] if nxt["write"] is not None else "?"
            tape[head] = w
            head = max(0, head + (nxt["move"] or 0))
            if head == len(tape):
                tape.append(m.blank)
        if diverged is None and n_conf != len(sim.states):
            diverged = min(n_conf, len(sim.states))
        state = states[-1]
        return TransformerRun(
            arithmetic=arithmetic, accepted=bool(halted and state in m.accept), halted=bool(halted), steps=steps,
            tape=show_tape(tape, m.blank), state=state, first_divergence_step=diverged,
            matches_simulator=diverged is None, states=states, heads=heads, reads=reads,
            simulator_steps=sim.steps, max_steps=max_steps)


@dataclass
class TransformerRun:
    """The transformer's decoded run and its comparison with the simulator (``first_divergence_step``: the
    first configuration index whose state, head, symbol read, tape or halting differs; None when none)."""

    arithmetic: str
    accepted: bool
    halted: bool
    steps: int
    tape: str
    state: str | None
    first_divergence_step: int | None
    matches_simulator: bool
    states: list
    heads: list
    reads: list
    simulator_steps: int
    max_steps: int

    def summary(self) -> dict:
        """The fields ``theorylab construct turing`` prints (JSON-ready)."""
        return {"accepted": self.accepted, "halted": self.halted, "steps": self.steps, "tape": self.tape,
                "state": self.state, "matches_simulator": self.matches_simulator,
                "first_divergence_step": self.first_divergence_step, "arithmetic": self.arithmetic,
                "max_steps": self.max_steps, "simulator_steps": self.simulator_steps}


_BUILT: dict[int, TuringTransformer] = {}


def construct(machine: Machine) -> TuringTransformer:
    """The transformer for ``machine`` (built once per machine object)."""
    key = id(machine)
    if key not in _BUILT or _BUILT[key].machine is not machine:
        _BUILT[key] = TuringTransformer(machine)
    return _BUILT[key]


def run(machine: Machine, word: str, arithmetic: str = "exact", max_steps: int = 1000) -> TransformerRun:
    """Simulate ``machine`` on ``word`` with the transformer in ``arithmetic`` (exact | float64 | float32 |
    float16) for at most ``max_steps`` steps.  Raises ConfigError for bad input."""
    return construct(machine).run(word, arithmetic, max_steps)


def first_divergence(machine: Machine, word: str, arithmetic: str = "float32", max_steps: int = 1000) -> int | None:
    """The first step at which the transformer's decoded configuration differs from the simulator's (None:
    none within ``max_steps``)."""
    return run(machine, word, arithmetic, max_steps).first_divergence_step


EPS = {"float16": 2.0**-10, "float32": 2.0**-23, "float64": 2.0**-52}


def divergence_sweep(machine: Machine, words: list[str], arithmetics: tuple = ("float16", "float32", "float64"),
                     max_steps: int = 2000) -> list[dict]:
    """First divergence step of each (arithmetic, input) within ``max_steps``, against the prediction
    i* ~ eps^(-1/3) (eps = unit roundoff 2^-p of the format: 2^-10, 2^-23, 2^-52; [derived], see deviation 6).
    Rows: arithmetic, input, eps, predicted, first_divergence (None: none seen), lower_bound (the steps run
    without divergence when None), ratio (first divergence / predicted)."""
    rows = []
    for a in arithmetics:
        if a not in EPS:
            raise ConfigError(f"arithmetic {a!r}: allowed {', '.join(EPS)}")
        for w in words:
            r = run(machine, w, a, max_steps)
            pred = EPS[a] ** (-1 / 3)
            fd = r.first_divergence_step
            rows.append({"arithmetic": a, "input": w, "eps": EPS[a], "predicted": pred, "first_divergence": fd,
                         "lower_bound": None if fd is not None else r.steps,
                         "ratio": None if fd is None else fd / pred})
    return rows


# --------------------------------------------------------------------------- NoPE invariance


def nope_invariance(word: list[int] | None = None, ks: tuple = (2, 3), n_perms: int = 5, seed: int = 0,
                    d_model: int = 32, n_layers: int = 2, d_vocab: int = 4, positional: str = "none") -> dict:
    """Order-invariance of a transformer without positional encodings (Pérez et al. 2021, "Proposition 3",
    unverified numbering; derivation in ``shared/SETUPS.md`` 4.1).

    Builds a random float64 encoder-decoder theorylab ``Transformer`` (softmax attention,
    ``positional="none"``, ``seed``) and compares, for ``word`` (token ids, default [0, 1, 1, 2, 3]),
    random permutations of it and it repeated k times (k in ``ks``): (a) the mean over positions of the
    encoder output, [d_model]; (b) the logits of a one-token decoder that cross-attends to the encoder,
    [d_vocab]; both are invariant.  Per-position encoder outputs are only equivariant: (c) checks
    out(perm(x)) = perm(out(x)) and out(x repeated k) = out(x) tiled.  Returns the largest absolute
    differences (floats; ~1e-15 expected), the sizes and ``readout`` (the decoder logits for ``word``, so two
    calls with one seed compare two words, e.g. "ab" and "aabb"); raises ConfigError for an empty word.
    ``positional`` other than "none" (e.g. "sinusoidal") is the control: then nothing is invariant."""
    import torch

    from theorylab.models import TransformerConfig
    from theorylab.models.transformer import build_model

    word = [0, 1, 1, 2, 3] if word is None else list(word)
    if not word:
        raise ConfigError("word: needs at least one token")
    if any(not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError(f"ks: repetition counts must be integers >= 1 (got {ks!r})")
    cfg = TransformerConfig(architecture="encoder_decoder", d_vocab=d_vocab, n_ctx=max(64, len(word) * max(ks, default=1)),
                            d_model=d_model, n_layers=n_layers, n_heads=4, act="gelu", positional=positional,
                            init="normal",
                            init_std=1 / math.sqrt(d_model))
    model = build_model(cfg, seed=seed).double().eval()
    g = np.random.default_rng(seed)
    x = torch.tensor([word])
    dec = torch.zeros(1, 1, dtype=torch.long)
    with torch.no_grad():
        base_enc = model.encode(x)[0]
        base_mean, base_read = base_enc.mean(0), model(x, decoder_tokens=dec)[0, -1]
        diff = {"mean_permuted": 0.0, "readout_permuted": 0.0, "equivariant_permuted": 0.0,
                "mean_repeated": 0.0, "readout_repeated": 0.0, "equivariant_repeated": 0.0}
        for _ in range(n_perms):
            perm = torch.tensor(g.permutation(len(word)))
            xp = x[:, perm]
            enc = model.encode(xp)[0]
            diff["mean_permuted"] = max(diff["mean_permuted"], (enc.mean(0) - base_mean).abs().max().item())
            diff["equivariant_permuted"] = max(diff["equivariant_permuted"],
                                               (enc - base_enc[perm]).abs().max().item())
            r = model(xp, decoder_tokens=dec)[0, -1]
            diff["readout_permuted"] = max(diff["readout_permuted"], (r - base_read).abs().max().item())
        for k in ks:
            xk = x.repeat(1, k)
            enc = model.encode(xk)[0]
            diff["mean_repeated"] = max(diff["mean_repeated"], (enc.mean(0) - base_mean).abs().max().item())
            diff["equivariant_repeated"] = max(diff["equivariant_repeated"],
                                               (enc - base_enc.repeat(k, 1)).abs().max().item())
            r = model(xk, decoder_tokens=dec)[0, -1]
            diff["readout_repeated"] = max(diff["readout_repeated"], (r - base_read).abs().max().item())
        scale = base_read.abs().max().item()
    return {**diff, "readout_scale": scale, "word": word, "ks": list(ks), "n_perms": n_perms, "seed": seed,
            "positional": positional, "readout": base_read.tolist()}
