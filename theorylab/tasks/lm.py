"""A language-modelling corpus the lab generates itself, with a known optimal loss.

Sentences come from a probabilistic context-free grammar and are joined by an ``<eos>``
token.  The default grammar is recursive (noun phrases take prepositional phrases) and
unambiguous (every string has one derivation), so the entropy of a sentence equals the
entropy of its derivation, which has a closed form:

* ``M[A, B]`` = expected number of ``B`` in one expansion of ``A``;
* expected expansions per sentence ``n = e_S (I - M)^-1`` (finite when the grammar is
  consistent: spectral radius of M < 1);
* ``H(sentence) = sum_A n[A] * H(rule choice at A)`` and
  ``E[length] = sum_A n[A] * E[terminals in A's rule]``.

Sentences are independent, so the stream's entropy rate (the best achievable loss per
token, in nats) is ``H(sentence) / (E[length] + 1)`` (the ``+ 1`` is the ``<eos>``,
which carries no information of its own: whether a sentence ends is part of the rule
choices).  The metrics report it as ``optimal_loss``.

The window floor.  The model does not see the stationary stream: every window starts with
``<eos>`` at a sentence boundary (a renewal point) and is cut after ``seq_len`` targets,
usually mid-sentence; target ``t`` is predicted from the ``t`` tokens before it.  Sentences
are independent, so the best prediction depends only on the words ``w`` since the last
``<eos>``: ``P(a | w) = P_prefix(w a) / P_prefix(w)`` and ``P(<eos> | w) = P(sentence = w) /
P_prefix(w)``, computed exactly by :class:`PrefixParser` (a beam of leftmost derivations).
The best achievable loss on these windows, ``window_optimal_loss``, is the expectation over
windows of the mean of ``-log`` these conditionals; :func:`window_optimum` estimates it by
Monte Carlo over windows drawn as the task draws them (``window_optimal_loss_se``), and
:func:`window_optimum_exact` propagates the parser's finitely many configurations instead.
It is not the rate: the per-position Bayes losses of a window that starts at a boundary sum
to ``T H + C + o(1)``, an edge effect of order ``1 / T``.  For the default grammar ``C =
+0.224`` nats (the known boundary makes the first word cheap, 1.03 nats, the words after it
cost more than ``H``), so the floor lies above the rate: 1.6476 nats at ``seq_len`` 16,
1.6372 at 64 (``H + 0.0035``), 1.6341 at 512, and it tends to ``H`` = 1.6337 (at 16384 tokens
it is within 2e-5, a check of the parser against the closed form).  Fitted irreducible
losses of models trained on these windows should be compared with the window floor.
:meth:`LMTask.optimal_logits` is the Bayes predictor itself.

``objective="masked"`` turns the stream into a masked-LM task for an encoder (BERT's
corruption: 15% of positions chosen, 80% of those become ``[MASK]``, 10% a random word,
10% unchanged; the loss is on the chosen positions).  Its optimum has no closed form here,
so only loss, accuracy and perplexity are reported.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from theorylab.errors import ConfigError
from theorylab.models.objectives import bits, mask_tokens, perplexity
from theorylab.tasks import register_task
from theorylab.tasks.base import Batch, Task, TaskConfig, step_rng, token_metrics

Grammar = dict[str, list[tuple[float, tuple[str, ...]]]]

EOS = "<eos>"
MASK = "[MASK]"

DEFAULT_GRAMMAR: Grammar = {
    "S": [(1.0, ("NP", "VP"))],
    "NP": [(0.5, ("Det", "N")), (0.2, ("Det", "Adj", "N")), (0.3, ("Det", "N", "PP"))],
    "PP": [(1.0, ("P", "NP"))],
    "VP": [(0.55, ("V", "NP")), (0.3, ("V",)), (0.15, ("V", "Adv"))],
    "Det": [(0.5, ("the",)), (0.3, ("a",)), (0.2, ("every",))],
    "N": [(0.25, ("dog",)), (0.2, ("cat",)), (0.15, ("bird",)), (0.15, ("tree",)), (0.1, ("house",)),
          (0.1, ("river",)), (0.05, ("idea",))],
    "Adj": [(0.4, ("big",)), (0.3, ("small",)), (0.2, ("old",)), (0.1, ("red",))],
    "V": [(0.3, ("sees",)), (0.25, ("likes",)), (0.2, ("finds",)), (0.15, ("sleeps",)), (0.1, ("runs",))],
    "P": [(0.4, ("near",)), (0.35, ("under",)), (0.25, ("with",))],
    "Adv": [(0.6, ("quickly",)), (0.4, ("often",))],
}


def check_grammar(g: Grammar, start: str = "S") -> None:
    if start not in g:
        raise ConfigError(f"grammar: no rules for the start symbol {start!r}")
    for a, rules in g.items():
        total = sum(p for p, _ in rules)
        if not rules or abs(total - 1.0) > 1e-9 or any(p <= 0 for p, _ in rules):
            raise ConfigError(f"grammar: the rule probabilities of {a!r} must be positive and sum to 1 (got {total})")


def terminals(g: Grammar) -> list[str]:
    return sorted({s for rules in g.values() for _, rhs in rules for s in rhs if s not in g})


def grammar_stats(g: Grammar, start: str = "S") -> dict[str, float]:
    """Closed forms: expected sentence length, sentence entropy (nats), entropy rate per token."""
    check_grammar(g, start)
    names = list(g)
    idx = {a: i for i, a in enumerate(names)}
    M = np.zeros((len(names), len(names)))
    h = np.zeros(len(names))
    term = np.zeros(len(names))
    for a, rules in g.items():
        for p, rhs in rules:
            h[idx[a]] -= p * math.log(p)
            for s in rhs:
                if s in g:
                    M[idx[a], idx[s]] += p
                else:
                    term[idx[a]] += p
    rho = max(abs(np.linalg.eigvals(M))) if len(names) else 0.0
    if rho >= 1:
        raise ConfigError(f"grammar: inconsistent (expected expansions grow without bound, spectral radius {rho:.3f})")
    e = np.zeros(len(names))
    e[idx[start]] = 1.0
    n = np.linalg.solve((np.eye(len(names)) - M).T, e)  # n = e (I - M)^-1
    H = float(n @ h)
    L = float(n @ term)
    return {"sentence_entropy": H, "expected_length": L, "entropy_rate": H / (L + 1.0)}


class _Sampler:
    """Draws sentences fast: cumulative rule probabilities per nonterminal, uniforms drawn in blocks."""

    def __init__(self, g: Grammar, rng: np.random.Generator, start: str = "S", block: int = 4096):
        self.rules = {a: ([rhs[::-1] for _, rhs in rules], list(itertools.accumulate(p for p, _ in rules)))
                      for a, rules in g.items()}
        self.rng, self.start, self.block = rng, start, block
        self.u: list[float] = []
        self.i = 0

    def sentence(self, max_len: int = 10_000) -> list[str]:
        out: list[str] = []
        stack = [self.start]
        rules = self.rules
        while stack:
            sym = stack.pop()
            r = rules.get(sym)
            if r is None:
                out.append(sym)
                if len(out) > max_len:
                    raise ConfigError("grammar: a sentence exceeded the length limit")
                continue
            rhs, cum = r
            if len(rhs) == 1:
                stack.extend(rhs[0])
                continue
            if self.i == len(self.u):
                self.u, self.i = self.rng.random(self.block).tolist(), 0
            u = self.u[self.i] * cum[-1]
            self.i += 1
            stack.extend(rhs[min(bisect.bisect_right(cum, u), len(rhs) - 1)])
        return out


def sample_sentence(g: Grammar, rng: np.random.Generator, start: str = "S", max_len: int = 10_000) -> list[str]:
    """One sentence (a list of terminals) drawn from the grammar."""
    return _Sampler(g, rng, start, block=64).sentence(max_len)


# ------------------------------------------------------------------ exact prefix probabilities

States = dict[tuple[str, ...], float]
_IMPOSSIBLE = math.log(1e-300)  # the log-probability optimal_logits gives an impossible word


def nullable(g: Grammar) -> set[str]:
    """The nonterminals that can derive the empty string (a fixed point over the rules)."""
    out: set[str] = set()
    changed = True
    while changed:
        changed = False
        for a, rules in g.items():
            if a not in out and any(all(s in out for s in rhs) for _, rhs in rules):
                out.add(a)
                changed = True
    return out


def left_recursion(g: Grammar) -> list[str] | None:
    """A left-recursive cycle ``[A, B, ..., A]`` of the grammar, or ``None`` when it has none.

    ``A`` is left-recursive when it derives a string that starts with ``A`` itself without consuming a
    word: an edge ``A -> B`` of the left-corner graph is a rule ``A -> X_1 .. X_k B ...`` whose
    ``X_1 .. X_k`` are all nullable (``k = 0`` included), and a cycle of that graph is left recursion
    (unit cycles ``A -> B``, ``B -> A`` too).  A leftmost-derivation parser would expand such a
    nonterminal forever, so :class:`PrefixParser` refuses these grammars."""
    eps = nullable(g)
    edges: dict[str, list[str]] = {}
    for a, rules in g.items():
        nxt: list[str] = []
        for _, rhs in rules:
            for s in rhs:
                if s in g and s not in nxt:
                    nxt.append(s)
                if s not in eps:
                    break
        edges[a] = nxt
    colour: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(a: str) -> list[str] | None:
        colour[a] = 1
        path.append(a)
        for b in edges[a]:
            if colour.get(b) == 1:
                return path[path.index(b):] + [b]
            if b not in colour and (cyc := visit(b)) is not None:
                return cyc
        path.pop()
        colour[a] = 2
        return None

    for a in g:
        if a not in colour and (cyc := visit(a)) is not None:
            return cyc
    return None


class PrefixParser:
    """Exact next-word distributions of a PCFG's sentences given the words read so far.

    For a partial sentence ``w`` (the words since the last ``<eos>``),

        P(next = a | w) = P_prefix(w a) / P_prefix(w),    P(next = <eos> | w) = P(sentence = w) / P_prefix(w),

    where ``P_prefix(w)`` is the probability that a sentence starts with ``w``.  Both come from a beam of
    leftmost derivations (Jelinek & Lafferty 1991, *Computation of the probability of initial substring
    generation by stochastic context-free grammars*, compute the same prefix probabilities in closed form;
    this is the plain enumeration, exact when the grammar has no left recursion).  A *state* is the stack of
    symbols one partial derivation still has to expand (a tuple, top = last element, the order of
    ``_Sampler``'s stack) and its probability.  To read a word ``a``, each state's top nonterminal is
    expanded, summing over rule choices, until a word is on top; the states whose top is ``a`` are kept and
    ``a`` is popped; states with equal stacks merge (their probabilities add).  An empty stack is a complete
    sentence: its probability goes to ``<eos>``.  The states after reading ``w`` sum to ``P_prefix(w)``
    (each derivation of a sentence that starts with ``w`` passes through exactly one of them), so the
    parser stays exact for ambiguous grammars too.  The methods keep the states normalised to sum 1, so
    the mass kept when reading ``a`` is ``P(a | w)``.

    Reading one word costs O(states); a window of T words costs O(T x states).  For the stream, the
    normalised state sets ("configurations") are interned and the transitions cached: a configuration's
    probabilities are rounded to 13 significant digits so that the same configuration reached through
    different words (after "the dog" and after "a cat" the stacks and their relative weights are the
    same) shares one cache entry; the conditionals stay exact to about 1e-12.

    Raises :class:`ConfigError` for an invalid or inconsistent grammar (:func:`grammar_stats`) and for a
    left-recursive one, naming the nonterminal (:func:`left_recursion`).
    """

    def __init__(self, g: Grammar, start: str = "S", cache_size: int = 500_000):
        grammar_stats(g, start)  # rule probabilities and consistency
        cyc = left_recursion(g)
        if cyc is not None:
            raise ConfigError(f"grammar: {cyc[0]!r} is left-recursive ({' -> '.join(cyc)} without consuming a "
                              "word); the exact prefix parser needs a grammar without left recursion")
        self.grammar, self.start, self.cache_size = g, start, cache_size
        self._rules = {a: [(p, tuple(reversed(rhs))) for p, rhs in rules] for a, rules in g.items()}
        self._expanded: dict[tuple[str, ...], tuple[dict[str, States], float]] = {}
        self._reset_cache()

    # ---- states
    def initial(self) -> States:
        """The states at a sentence boundary: one stack holding the start symbol."""
        return {(self.start,): 1.0}

    def _expand(self, stack: tuple[str, ...]) -> tuple[dict[str, States], float]:
        """``({a: {stack after reading a: probability}}, P(stack derives the empty string))``: the stack's
        top expanded (leftmost, summed over rules) until a word is on top, grouped by that word."""
        hit = self._expanded.get(stack)
        if hit is not None:
            return hit
        succ: dict[str, States] = {}
        end = 0.0
        if not stack:
            end = 1.0
        elif stack[-1] not in self._rules:
            succ = {stack[-1]: {stack[:-1]: 1.0}}
        else:
            rest = stack[:-1]
            for p, rev in self._rules[stack[-1]]:
                s, e = self._expand(rest + rev)
                for a, nxt in s.items():
                    d = succ.setdefault(a, {})
                    for st, q in nxt.items():
                        d[st] = d.get(st, 0.0) + p * q
                end += p * e
        if len(self._expanded) >= self.cache_size:
            self._expanded.clear()
        self._expanded[stack] = (succ, end)
        return succ, end

    def next_distribution(self, states: States) -> dict[str, float]:
        """``{word or '<eos>': P(next | words read)}`` for normalised ``states`` (sums to 1)."""
        dist: dict[str, float] = {}
        for stack, p in states.items():
            succ, end = self._expand(stack)
            for a, nxt in succ.items():
                dist[a] = dist.get(a, 0.0) + p * sum(nxt.values())
            if end:
                dist[EOS] = dist.get(EOS, 0.0) + p * end
        return dist

    def advance(self, states: States, word: str) -> tuple[States, float]:
        """Read ``word``: ``(normalised states after it, P(word | words read))``.  ``<eos>`` ends the
        sentence (the states restart at :meth:`initial`); an impossible word gives ``({}, 0.0)``."""
        mass = sum(states.values())
        if word == EOS:
            p_end = sum(p * self._expand(st)[1] for st, p in states.items())
            return (self.initial() if p_end > 0 else {}), p_end / mass if mass > 0 else 0.0
        new: States = {}
        for stack, p in states.items():
            for st, q in self._expand(stack)[0].get(word, {}).items():
                new[st] = new.get(st, 0.0) + p * q
        total = sum(new.values())
        if total <= 0:
            return {}, 0.0
        return {st: q / total for st, q in new.items()}, total / mass

    def prefix_log_prob(self, words: Sequence[str]) -> float:
        """``log P_prefix(words)``: the log-probability (nats) that a sentence starts with ``words``
        (``-inf`` when none does)."""
        states, lp = self.initial(), 0.0
        for w in words:
            states, p = self.advance(states, w)
            if p <= 0:
                return -math.inf
            lp += math.log(p)
        return lp

    def sentence_log_prob(self, words: Sequence[str]) -> float:
        """``log P(sentence = words)`` (nats; ``-inf`` for a string the grammar cannot produce)."""
        return self.prefix_log_prob([*words, EOS])

    # ---- interned configurations, for streams of windows
    def _reset_cache(self) -> None:
        self._ids: dict[tuple, int] = {}
        self._states: list[States] = []
        self._steps: dict[tuple[int, str], tuple[int, float]] = {}
        self._vectors: dict[tuple[int, int], np.ndarray] = {}
        self._dists: dict[int, dict[str, float]] = {}
        self._intern(self.initial())

    def _intern(self, states: States) -> int:
        key = tuple(sorted((st, float(f"{p:.12e}")) for st, p in states.items()))
        cid = self._ids.get(key)
        if cid is None:
            cid = self._ids[key] = len(self._states)
            self._states.append(dict(key))
        return cid

    def _step(self, cid: int, word: str) -> tuple[int, float]:
        hit = self._steps.get((cid, word))
        if hit is None:
            states, p = self.advance(self._states[cid], word)
            hit = self._steps[(cid, word)] = (self._intern(states) if p > 0 else -1, p)
        return hit

    def _next(self, cid: int) -> dict[str, float]:
        hit = self._dists.get(cid)
        if hit is None:
            hit = self._dists[cid] = self.next_distribution(self._states[cid])
        return hit

    def _walk(self, words: Sequence[str]) -> list[int]:
        """The configuration after each of ``words`` (``words[0]`` must be ``<eos>``: a boundary)."""
        if not len(words) or words[0] != EOS:
            raise ConfigError("prefix parser: a window must start with <eos> (at a sentence boundary)")
        if len(self._steps) > self.cache_size:
            self._reset_cache()
        cids = [0]
        cid = 0
        for t in range(1, len(words)):
            cid, p = self._step(cid, words[t])
            if p <= 0:
                raise ConfigError(f"prefix parser: word {t} ({words[t]!r}) is impossible after "
                                  f"{' '.join(words[:t])!r} under the grammar")
            cids.append(cid)
        return cids

    def window_log_probs(self, words: Sequence[str]) -> np.ndarray:
        """``[len(words) - 1]`` float64: ``log P(words[t] | words[:t])`` (nats) for ``t >= 1``, exact, for
        a window that starts at a sentence boundary (``words[0] == '<eos>'``).  Raises :class:`ConfigError`
        for a window that does not start with ``<eos>`` or has a word the grammar cannot produce there."""
        cids = self._walk(words)
        return np.log([self._steps[(cids[t], words[t + 1])][1] for t in range(len(words) - 1)])

    def window_next_log_probs(self, words: Sequence[str], vocab: Sequence[str]) -> np.ndarray:
        """``[len(words), len(vocab)]`` float64: row ``t`` is ``log P(next = vocab[j] | words[:t + 1])``,
        the Bayes predictor after each word of a window that starts at a boundary (``words[0] == '<eos>'``);
        impossible words get ``log 1e-300``."""
        cids = self._walk(words)
        vkey = hash(tuple(vocab))
        out = np.empty((len(words), len(vocab)))
        for t, cid in enumerate(cids):
            vec = self._vectors.get((cid, vkey))
            if vec is None:
                dist = self._next(cid)
                vec = np.array([math.log(dist[w]) if dist.get(w, 0.0) > 0 else _IMPOSSIBLE for w in vocab])
                self._vectors[(cid, vkey)] = vec
            out[t] = vec
        return out


def window_optimum_exact(g: Grammar, seq_len: int, start: str = "S", parser: PrefixParser | None = None,
                         max_configs: int = 100_000) -> float:
    """The same floor as :func:`window_optimum` without sampling (nats per token), where the parser's
    configurations (normalised state sets) reachable within ``seq_len`` words stay few: the exact
    conditionals make the configuration a Markov chain (the next word's law is a function of it, and the
    word determines the next configuration), so its law ``pi_t`` is propagated forward from the boundary and

        floor(T) = (1 / T) sum_{t < T} sum_c pi_t(c) H(next word | c).

    The default grammar has 12 configurations (its stacks never grow: every recursion is at the end of a
    rule).  Raises :class:`ConfigError` when more than ``max_configs`` are reachable (a centre-embedding
    grammar; use the Monte Carlo :func:`window_optimum`) or for a left-recursive grammar."""
    parser = parser or PrefixParser(g, start)
    law = {0: 1.0}  # configuration id -> probability; 0 is the boundary
    total = 0.0
    for _ in range(seq_len):
        new: dict[int, float] = {}
        for cid, p in law.items():
            for w, q in parser._next(cid).items():
                if q > 0:
                    total -= p * q * math.log(q)
                    nxt = parser._step(cid, w)[0]
                    new[nxt] = new.get(nxt, 0.0) + p * q
        law = new
        if len(law) > max_configs:
            raise ConfigError(f"window_optimum_exact: more than {max_configs} parser configurations; "
                              "use the Monte Carlo window_optimum")
    return total / seq_len


def _window(sampler: _Sampler, T: int) -> list[str]:
    """One window of ``T + 1`` symbols that starts at a sentence boundary (``<eos>``), as the task draws it."""
    seq = [EOS]
    while len(seq) < T + 1:
        seq.extend(sampler.sentence())
        seq.append(EOS)
    return seq[: T + 1]


def window_optimum(g: Grammar, seq_len: int, n_windows: int, rng: np.random.Generator, start: str = "S",
                   parser: PrefixParser | None = None) -> tuple[float, float]:
    """The Bayes predictor's loss on windows of ``seq_len`` targets that start at a sentence boundary:
    ``(mean, standard error)`` in nats per token.

    ``n_windows`` windows are drawn as :meth:`LMTask._windows` draws them (``rng`` feeds the same sampler);
    each window's loss is the mean over its ``seq_len`` targets of ``-log P(target | window prefix)``, with
    the exact conditionals of :class:`PrefixParser`.  Its expectation is the exact optimal loss for windows
    of that length; the standard error is the windows' standard deviation over ``sqrt(n_windows)``.
    Raises :class:`ConfigError` for a left-recursive grammar, ``seq_len < 1`` or ``n_windows < 2``."""
    if seq_len < 1 or n_windows < 2:
        raise ConfigError(f"window_optimum: need seq_len >= 1 and n_windows >= 2 (got {seq_len}, {n_windows})")
    parser = parser or PrefixParser(g, start)
    sampler = _Sampler(g, rng, start)
    losses = np.array([-parser.window_log_probs(_window(sampler, seq_len)).mean() for _ in range(n_windows)])
    return float(losses.mean()), float(losses.std(ddof=1) / math.sqrt(n_windows))


WINDOW_OPTIMUM_TOKENS = 500_000  # targets behind LMTask.window_optimum: SE about 0.0005 nats, ~0.5 s
_WINDOW_OPTIMA: dict[tuple, tuple[float, float]] = {}  # (grammar, start, seq_len, windows) -> (mean, se)


def _grammar_key(g: Grammar) -> tuple:
    return tuple((a, tuple((float(p), tuple(rhs)) for p, rhs in rules)) for a, rules in sorted(g.items()))


class LMConfig(TaskConfig):
    name: Literal["lm"] = "lm"
    seq_len: int = Field(64, gt=1, description="tokens per training window (model context)")
    n_test: int = Field(256, gt=0, description="held-out windows")
    grammar: dict[str, list[tuple[float, list[str]]]] | None = Field(
        None, description="a PCFG as {nonterminal: [[prob, [symbols...]], ...]}; none = the built-in grammar")
    start: str = Field("S", description="the grammar's start symbol")
    objective: Literal["causal", "masked"] = Field(
        "causal", description="causal: next-token prediction (decoder); masked: BERT-style masked LM (encoder)")
    mask_prob: float = Field(0.15, gt=0, lt=1, description="masked objective: share of positions predicted")

    def rows_per_step(self) -> int:
        return 32  # the loop's batch when train.batch_size is none (train_batch)

    def data_numbers(self) -> int:
        return 2 * self.n_test * (self.seq_len + 1)  # the test windows: tokens and targets

    def model_defaults(self) -> dict[str, Any]:
        g = _grammar(self)
        d = {"d_vocab": len(terminals(g)) + 1 + (self.objective == "masked"), "n_ctx": self.seq_len}
        if self.objective == "masked":
            d["architecture"] = "encoder"
        return d


def _grammar(cfg: LMConfig) -> Grammar:
    if cfg.grammar is None:
        return DEFAULT_GRAMMAR
    return {a: [(float(p), tuple(rhs)) for p, rhs in rules] for a, rules in cfg.grammar.items()}


@register_task
class LMTask(Task):
    """Next-token prediction on sentences from a PCFG; the optimal loss (entropy rate) is known."""

    Config = LMConfig
    cfg: LMConfig

    def __init__(self, cfg: LMConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.grammar = _grammar(cfg)
        self.stats = grammar_stats(self.grammar, cfg.start)
        self.vocab = [EOS] + terminals(self.grammar) + ([MASK] if cfg.objective == "masked" else [])
        self.ids = {w: i for i, w in enumerate(self.vocab)}
        self.test_set = self._windows(cfg.n_test, np.random.default_rng([self.seed, 0x1E57]))
        self._parser: PrefixParser | None = None
        self._window_opt: tuple[float, float] | None = None

    # text <-> ids
    def encode(self, text: str, boundary: bool = True) -> list[int]:
        """Word ids; with ``boundary`` a leading ``<eos>``, as every training window starts with one."""
        unknown = [w for w in text.split() if w not in self.ids]
        if unknown:
            raise ConfigError(f"prompt: unknown words {unknown}; the vocabulary is {', '.join(self.vocab)}")
        return ([0] if boundary else []) + [self.ids[w] for w in text.split()]

    def decode(self, ids) -> str:
        return " ".join(self.vocab[int(i)] for i in ids)

    def _windows(self, n: int, rng: np.random.Generator) -> Batch:
        T = self.cfg.seq_len
        rows = np.empty((n, T + 1), dtype=np.int64)
        sampler = _Sampler(self.grammar, rng, self.cfg.start)
        ids = self.ids
        for r in range(n):
            rows[r] = [ids[w] for w in _window(sampler, T)]  # every window starts at a sentence boundary
        t = torch.from_numpy(rows)
        if self.cfg.objective == "masked":
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            inputs, labels = mask_tokens(t[:, :-1].contiguous(), self.ids[MASK], len(self.vocab), g,
                                         self.cfg.mask_prob)
            return Batch(tokens=inputs, targets=labels)
        return Batch(tokens=t[:, :-1].contiguous(), targets=t[:, 1:].contiguous())

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        return self._windows(batch_size or 32, step_rng(self.seed, step))

    # the exact floor of the windows the model sees
    @property
    def parser(self) -> PrefixParser:
        """The grammar's :class:`PrefixParser` (built on first use; :class:`ConfigError` if left-recursive)."""
        if self._parser is None:
            self._parser = PrefixParser(self.grammar, self.cfg.start)
        return self._parser

    def _causal_only(self, what: str) -> None:
        if self.cfg.objective != "causal":
            raise ConfigError(f"lm: {what} is defined for the causal objective only (got {self.cfg.objective!r})")

    def window_optimum(self) -> tuple[float, float]:
        """``(window_optimal_loss, window_optimal_loss_se)``, nats per token: the Bayes predictor's loss on
        windows of ``seq_len`` targets that start at a sentence boundary (:func:`window_optimum`), from
        ``ceil(WINDOW_OPTIMUM_TOKENS / seq_len)`` windows (clipped to [200, 50000]) drawn by a generator seeded with
        ``[0x0B7, seq_len]`` alone, so every run of a sweep reports the same number.  Computed on first use
        (about half a second on the default grammar) and cached, per task object and per process.
        Raises :class:`ConfigError` for the masked objective or a left-recursive grammar."""
        self._causal_only("the window optimum")
        if self._window_opt is None:
            T = self.cfg.seq_len
            n = min(50_000, max(200, math.ceil(WINDOW_OPTIMUM_TOKENS / T)))
            key = (_grammar_key(self.grammar), self.cfg.start, T, n)
            if key not in _WINDOW_OPTIMA:
                _WINDOW_OPTIMA[key] = window_optimum(self.grammar, T, n, np.random.default_rng([0x0B7, T]),
                                                     self.cfg.start, self.parser)
            self._window_opt = _WINDOW_OPTIMA[key]
        return self._window_opt

    @property
    def window_optimal_loss(self) -> float:
        """The exact optimal loss (nats/token, Monte Carlo over windows) for this task's windows."""
        return self.window_optimum()[0]

    @property
    def window_optimal_loss_se(self) -> float:
        """The standard error of :attr:`window_optimal_loss` (nats)."""
        return self.window_optimum()[1]

    def optimal_logits(self, batch: Batch | torch.Tensor) -> torch.Tensor:
        """The exact Bayes predictor: ``[B, T, V]`` float64 log-probabilities (on the tokens' device) for a
        batch of causal windows (or their tokens ``[B, T]``), each starting with ``<eos>`` at a sentence
        boundary; position ``t`` predicts target ``t`` (token ``t + 1``) from tokens ``0..t``
        (:meth:`PrefixParser.window_next_log_probs`).  Impossible words get ``log 1e-300``.  Its cross-entropy
        on sampled windows is, in expectation, :attr:`window_optimal_loss`.  Raises :class:`ConfigError` for
        the masked objective, a left-recursive grammar, token ids outside the vocabulary, a window that does
        not start with ``<eos>`` or one the grammar cannot produce."""
        self._causal_only("optimal_logits")
        tokens = batch.tokens if isinstance(batch, Batch) else batch
        V = len(self.vocab)
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= V):
            raise ConfigError(f"optimal_logits: token ids must lie in [0, {V})")
        rows = tokens.cpu().numpy()
        out = np.empty((*rows.shape, V))
        for r, row in enumerate(rows):
            out[r] = self.parser.window_next_log_probs([self.vocab[i] for i in row], self.vocab)
        return torch.from_numpy(out).to(tokens.device)

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.test_set}

    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        logits = self.forward(model, batch) if out is None else out
        m = token_metrics(logits, batch.targets)
        m.pop("seq_accuracy", None)
        m.update({"loss_bits": bits(m["loss"]), "perplexity": perplexity(m["loss"])})
        if self.cfg.objective == "masked":
            return m
        opt = self.stats["entropy_rate"]
        m.update({"optimal_loss": opt, "optimal_loss_bits": bits(opt), "optimal_perplexity": perplexity(opt),
                  "excess_loss": m["loss"] - opt})
        if left_recursion(self.grammar) is None:  # the exact window floor needs the prefix parser
            w, se = self.window_optimum()
            m.update({"window_optimal_loss": w, "window_optimal_loss_se": se})
        return m
