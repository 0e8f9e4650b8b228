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
choices).  A model's loss on windows that start at a sentence boundary approaches this
optimum up to edge effects of order ``1 / n_ctx``.

``objective="masked"`` turns the stream into a masked-LM task for an encoder (BERT's
corruption: 15% of positions chosen, 80% of those become ``[MASK]``, 10% a random word,
10% unchanged; the loss is on the chosen positions).  Its optimum has no closed form here,
so only loss, accuracy and perplexity are reported.
"""

from __future__ import annotations

import bisect
import itertools
import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from theorylab.errors import ConfigError
from theorylab.models.objectives import bits, mask_tokens, perplexity
from theorylab.tasks import register_task
from theorylab.tasks.base import Batch, Task, TaskConfig, step_rng, token_cross_entropy, token_metrics

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
            seq = [0]  # every window starts at a sentence boundary
            while len(seq) < T + 1:
                seq.extend([ids[w] for w in sampler.sentence()])
                seq.append(0)
            rows[r] = seq[: T + 1]
        t = torch.from_numpy(rows)
        if self.cfg.objective == "masked":
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            inputs, labels = mask_tokens(t[:, :-1].contiguous(), self.ids[MASK], len(self.vocab), g,
                                         self.cfg.mask_prob)
            return Batch(tokens=inputs, targets=labels)
        return Batch(tokens=t[:, :-1].contiguous(), targets=t[:, 1:].contiguous())

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        return self._windows(batch_size or 32, step_rng(self.seed, step))

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.test_set}

    def loss(self, model, batch: Batch):
        logits = model(batch.tokens)
        return token_cross_entropy(logits, batch.targets), logits

    @torch.no_grad()
    def metrics(self, model, batch: Batch, out=None) -> dict[str, float]:
        logits = model(batch.tokens) if out is None else out
        m = token_metrics(logits, batch.targets)
        m.pop("seq_accuracy", None)
        m.update({"loss_bits": bits(m["loss"]), "perplexity": perplexity(m["loss"])})
        if self.cfg.objective == "masked":
            return m
        opt = self.stats["entropy_rate"]
        m.update({"optimal_loss": opt, "optimal_loss_bits": bits(opt), "optimal_perplexity": perplexity(opt),
                  "excess_loss": m["loss"] - opt})
        return m
