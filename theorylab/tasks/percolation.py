"""Concept percolation: our re-implementation of the data-generating process of Lubana, Kawaguchi, Dick and
Tanaka, "A percolation model of emergence" (ICLR 2025, arXiv 2408.12578), with its evaluations.

Written from the paper, from /work/shared/SETUPS.md section 2.2 (lines 133-245: the system as the official
code ``EkdeepSLubana/ConceptPercolation`` builds it) and from reading that code; no code is reused.

**The world** (:class:`World`, a pure function of the config and the data seed).  ``n_classes`` concept
classes (even); the first half are *subject* classes, the second half *object* classes.

* Descriptive properties are split into ``n_classes`` disjoint blocks (``numpy.array_split`` sizes, given to
  the classes in a random order), one per class.  In each block one property becomes the class's *non-PII
  identifier* with ``n_entities * 4 // 5`` values, and in every subject class a second one becomes a *PII
  identifier* with ``n_entities // 5`` values.  The identifier values are the **entities** (``E``); the
  remaining ("plain") descriptive properties carry ``n_descriptive_values`` values each.  Default: 5 * 20 +
  10 * 80 = 900 entities and 460 - 15 = 445 plain properties.
* Relative properties are split into ``n_classes // 2`` groups; group ``g`` is shared by subject class ``g``
  and object class ``g + n_classes // 2`` (its verbs point from subjects of class ``g`` to objects of class
  ``g + n_classes // 2``).
* Every plain property ``k`` has a random *prior support* ``S_k``: ``m = floor(p * n_values)`` of its values
  (``p`` = ``prior_param``; the official ``structured_zeros`` prior).  Entity ``e`` of the property's class
  admits the values ``(S_k + r_e) mod n_values``, the support rotated by the entity's index ``r_e`` within
  its class (non-PII identifiers first, then PII).  The true **entity-property graph** is the bipartite graph
  of entities and (property, value) nodes ``K`` with an edge for every admitted value: ``m`` edges per
  (entity, property of its class) pair, so its edge density over type-compatible pairs is ``m / n_values``
  (= p).  ``|K|`` counts the (property, value) nodes some entity admits (all ``445 * 40 = 17,800`` at the
  default).  The graph is a disjoint union of one block per class (an entity only takes its own class's
  properties), so every giant-component fraction below is per class, summed:
  ``sum_c |largest component in block c| / sum_c |nodes of block c|``, which goes from 0 to 1.
* Modifiers: ``n_adjectives`` adjectives may precede a non-PII identifier or a descriptive value (none with
  probability ``adj_null_prob``, else uniform); ``n_adverbs`` adverbs may precede a relative verb (none or
  one of them, uniform over the ``n_adverbs + 1`` choices).

**The grammar** (SETUPS 2.2; :data:`GRAMMAR`, an ``nltk.PCFG`` over symbols, :func:`pcfg`)::

    S -> [P] NP VP <eos>           NP -> subjectID 0.8 | NP Conj NP 0.2
    VP -> descPreP descV 0.4 | relV relPreP relNP 0.4 | VP Conj VP 0.2
    relNP -> objectID 0.7 | objectID Conj relNP 0.3
    descPreP -> is .5 | has .5     relPreP -> on .4 | in .3 | to .3     Conj -> and .5 | or .5

A token sequence is checked by mapping it to these symbols (:meth:`World.symbolise`; identifiers before the
first relative verb are ``subjectID``, after it ``objectID``; modifiers are dropped where they stand before
a word they can modify) and parsing them with NLTK's ViterbiParser (:func:`parses`; the grammar's language is
regular, and an equivalent regular expression, :func:`regular_match`, rejects most non-sentences before the
parser is asked; the tests check that the two agree).

A sentence is a symbolic derivation whose slots are filled obeying the type constraints
(:meth:`World.sample_sentence`): a class ``c`` is drawn uniformly; if the sentence has a relative verb the
subjects come from the subject class of ``c``'s pair and the objects from its object class, each verb is one
of the pair's shared relative properties; otherwise the subjects come from ``c``.  Subjects and objects are
uniform over their class's entities; a descriptive slot takes a uniform plain property of the subject class
and a value drawn uniformly from those admitted by the *last* subject before it (as the official code does).
The ``[P]`` symbol is not a token.  Sentences longer than ``(max_len - 3) // 2`` tokens are resampled, so
that every task format fits in ``max_len``.

**Training data** (:meth:`PercolationTask.train_batch`): ``Task: T{k} Ops: {ops} Out: {sentence}`` with
``T0`` free generation (ops ``<null>``), ``T1`` unscramble (ops = the sentence's tokens but ``<eos>``,
shuffled), ``T2`` conditional generation (ops = one random member of each non-empty category among subjects,
objects, relative verbs and descriptive values, the chosen words shuffled), drawn with probabilities
``[1 - instr_ratio, instr_ratio / 2, instr_ratio / 2]``.  Fresh samples every step: the sentences of step
``t`` come from ``step_rng(seed, t, 1)`` and the formatting from ``step_rng(seed, t, 2)``, so the revealed
graph can be replayed from sentences alone (:func:`revealed_graph_curve`).  Rows are padded with ``PAD``
(the last token id, an input-only token; its targets are ``IGNORE``) and trailing all-padding columns are
dropped.  **The loss is taken on the whole sequence** (every token after the first), as the official code
(nanoGPT-style) does: the instruction words and the T1/T2 operands are part of what the model learns, and
the T0 rows' sentences are learned as free text.  Taking it on the ``Out`` part only would change what the
model is trained on (the operands carry half of a T1 row's tokens) and hence the emergence timings.

**Evaluations** (:meth:`PercolationTask.evaluate`; keys ``test/<name>``): see its docstring.  The data's own
order parameter (the giant component of the graph of entity-value edges revealed so far by the training
sentences) is :func:`revealed_graph_curve`; Lubana et al.'s percolation argument puts its transition at about
``sqrt(|E| |K|)`` revealed edges (bipartite critical density ``1 / sqrt(|E| |K|)``,
:func:`theorylab.measures.emergence.bipartite_critical_density`).

**Deviations from the official setup** (all deliberate, listed so that results are read correctly):

1. Single-phrase sentences only (the official multi-phrase rule has probability 0).  No ``\\n`` tokens in the
   instruction template.
2. A PII subject is uniform over its class's PII identifiers; the official code draws it from a sparse prior
   (2 of 20 names) rotated by the key of the sentence's object (rotation 0 without objects), a further
   subject-object structure we leave out.  Identifier counts use integer arithmetic (``n // 5``,
   ``4 * n // 5``) and ``m = floor(p * n_values + 1e-9)``.
3. The rotation key of an entity is its index within its class (non-PII 0.., then PII); the official key is
   the value's index within its identifier property, so there a PII and a non-PII identifier with the same
   index admit the same values.  Blocks may be uneven (``array_split``) where the official code asserts
   divisibility.
4. Adjectives and adverbs are one pool each (the official groups ``G{g}_adj`` are a single group at the base
   config) drawn independently of the value (the official modifier prior, 0.1 null and uniform otherwise, is
   rotated by the value's index: nearly uniform too).  The grammar check is stricter than the official one,
   which drops modifiers: a modifier must stand directly before a word it can modify (an adjective before a
   non-PII identifier or a descriptive value, an adverb before a relative verb), and a generation must
   contain ``<eos>``.  Identifier tokens are subjects before the first relative verb and objects after it
   (the official check always calls a PII name a subject); a PII object then fails ``type_rel``.
5. ``type_all = type_desc * type_rel``: the official product also multiplies the adjective and adverb
   accuracies, which here are part of the grammar check.  The relative constraint is checked per verb (the
   official flag, once failed, stays failed for the later verbs of a phrase).
6. Long sentences are resampled so that the longest format (T1: ``2 L + 3`` tokens) fits ``max_len`` for every
   task; the official code resamples the (sentence, task) pair when the row exceeds ``max_len - 10``, which
   makes T1 sentences shorter on average than T0 sentences.
7. ``reach_rank``/``reach_prob`` rank the values within the queried property (the official eval ranks the true
   value among the whole vocabulary and divides by a hard-coded K), read the admitted values rather than one
   value drawn from a uniform prior, and decode unscrambling greedily (the official eval samples).
8. No likelihood evals under altered priors, no conditional-generation eval, no sentence-length bins.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from theorylab.config import Seed
from theorylab.errors import ConfigError
from theorylab.models.objectives import IGNORE
from theorylab.tasks import register_task
from theorylab.tasks.base import Batch, Task, TaskConfig, step_rng, torch_generator

# --------------------------------------------------------------------------- the grammar

#: The PCFG of SETUPS 2.2 (official ``dgp/PCSG.py``): nonterminal -> [(right-hand side, probability)].
#: Names that are keys are nonterminals; every other name is a terminal symbol.
GRAMMAR: dict[str, list[tuple[tuple[str, ...], float]]] = {
    "S": [(("Ph", "NP", "VP", "End"), 1.0)],
    "NP": [(("Subj",), 0.8), (("NP", "Conj", "NP"), 0.2)],
    "VP": [(("DescPreP", "DescV"), 0.4), (("RelV", "RelPreP", "RelNP"), 0.4), (("VP", "Conj", "VP"), 0.2)],
    "RelNP": [(("Obj",), 0.7), (("Obj", "Conj", "RelNP"), 0.3)],
    "Ph": [(("[P]",), 1.0)],
    "Subj": [(("subjectID",), 1.0)],
    "Obj": [(("objectID",), 1.0)],
    "RelV": [(("relV",), 1.0)],
    "DescV": [(("descV",), 1.0)],
    "DescPreP": [(("is",), 0.5), (("has",), 0.5)],
    "RelPreP": [(("on",), 0.4), (("in",), 0.3), (("to",), 0.3)],
    "Conj": [(("and",), 0.5), (("or",), 0.5)],
    "End": [(("<eos>",), 1.0)],
}
TERMINALS = frozenset(s for rules in GRAMMAR.values() for rhs, _ in rules for s in rhs if s not in GRAMMAR)

# Token ids of the fixed words; the world's tokens (modifiers, entities, verbs, values) follow, PAD is last.
SPECIALS = ["Task:", "Ops:", "Out:", "<null>", "T0", "T1", "T2", "<eos>", "is", "has", "on", "in", "to", "and", "or"]
TASK, OPS, OUT, NULL, T0, T1, T2, EOS = range(8)
WORD_IDS = {w: i for i, w in enumerate(SPECIALS)}
PROMPT_T0 = [TASK, T0, OPS, NULL, OUT]  # the free-generation prompt


def pcfg_string() -> str:
    """The grammar in NLTK's PCFG notation (terminals quoted)."""
    lines = []
    for lhs, rules in GRAMMAR.items():
        alts = " | ".join(" ".join(s if s in GRAMMAR else f"'{s}'" for s in rhs) + f" [{p}]" for rhs, p in rules)
        lines.append(f"{lhs} -> {alts}")
    return "\n".join(lines)


@cache
def pcfg():
    """The grammar as an ``nltk.PCFG`` (start symbol ``S``; nltk is imported on first use)."""
    import nltk

    return nltk.PCFG.fromstring(pcfg_string())


@cache
def _parser():
    import nltk

    return nltk.ViterbiParser(pcfg())


_PARSES: dict[tuple[str, ...], bool] = {}

# The language of GRAMMAR is regular: one character per terminal symbol, then
#   [P] subj (Conj subj)* unit (Conj unit)* <eos>,   unit = descPreP descV | relV relPreP obj (Conj obj)*.
# parses() uses this expression only to reject quickly (a random 60-symbol string costs the Viterbi parser
# about a second); every string it accepts goes to the parser, and the tests check that both agree.
_CHAR = {"[P]": "P", "subjectID": "s", "objectID": "o", "relV": "r", "descV": "d", "is": "h", "has": "h",
         "on": "p", "in": "p", "to": "p", "and": "c", "or": "c", "<eos>": "e"}
_UNIT = "(?:hd|rpo(?:co)*)"
_LANGUAGE = re.compile(f"Ps(?:cs)*{_UNIT}(?:c{_UNIT})*e")


def regular_match(symbols: tuple[str, ...] | list[str]) -> bool:
    """Whether the symbols match the regular expression equivalent to :data:`GRAMMAR` (a fast necessary and
    sufficient test; :func:`parses` uses it to skip the parser on rejections)."""
    return _LANGUAGE.fullmatch("".join(_CHAR.get(s, "?") for s in symbols)) is not None


def parses(symbols: tuple[str, ...] | list[str]) -> bool:
    """Whether a symbol sequence (``('[P]', 'subjectID', 'is', 'descV', '<eos>')``) is derivable from ``S``
    by NLTK's ViterbiParser over :func:`pcfg`.  Sequences the equivalent regular expression rejects
    (:func:`regular_match`) are rejected without the parser; results are cached."""
    key = tuple(symbols)
    hit = _PARSES.get(key)
    if hit is not None:
        return hit
    ok = regular_match(key) and next(iter(_parser().parse(list(key))), None) is not None
    if len(_PARSES) < 200_000:
        _PARSES[key] = ok
    return ok


class Uniforms:
    """Uniform draws from a numpy Generator, fetched in blocks (scalar calls into numpy are slow)."""

    def __init__(self, rng: np.random.Generator, block: int = 2048):
        self.rng, self.block = rng, block
        self.buf = rng.random(block).tolist()
        self.i = 0

    def __call__(self) -> float:
        if self.i == len(self.buf):
            self.buf = self.rng.random(self.block).tolist()
            self.i = 0
        self.i += 1
        return self.buf[self.i - 1]

    def below(self, n: int) -> int:
        return min(int(self() * n), n - 1)


_CUM = {lhs: (np.cumsum([p for _, p in rules]).tolist(), [rhs for rhs, _ in rules]) for lhs, rules in GRAMMAR.items()}


def sample_symbols(u: Uniforms, limit: int) -> list[str] | None:
    """One derivation of the grammar as terminal symbols (``[P]`` first), or None once it exceeds ``limit``
    symbols (the caller resamples)."""
    stack, out = ["S"], []
    while stack:
        x = stack.pop()
        rule = _CUM.get(x)
        if rule is None:
            out.append(x)
            if len(out) > limit:
                return None
            continue
        cum, rhss = rule
        r = u() * cum[-1]
        j = 0
        while j < len(cum) - 1 and r >= cum[j]:
            j += 1
        stack.extend(reversed(rhss[j]))
    return out


# --------------------------------------------------------------------------- the config


def _floor(x: float) -> int:
    return int(math.floor(x + 1e-9))


class PercolationConfig(TaskConfig):
    """Lubana et al.'s concept-percolation language (defaults: the paper's base config, official
    ``config/conf.yaml``)."""

    name: Literal["percolation"] = "percolation"
    n_classes: int = Field(10, ge=2, le=1000, description="concept classes (even: half subject, half object "
                           "classes, paired by the relative properties)")
    n_descriptive_properties: int = Field(460, ge=6, le=100_000, description="descriptive properties, identifiers "
                                          "included (split over the classes)")
    n_descriptive_values: int = Field(40, ge=2, le=10_000, description="values of each descriptive property")
    n_relative_properties: int = Field(100, ge=1, le=100_000, description="relative properties (verbs), split into "
                                       "n_classes // 2 groups shared by a subject and an object class")
    n_entities: int = Field(100, ge=5, le=100_000, description="identifiers per subject class: n // 5 PII plus "
                            "4n // 5 non-PII (object classes: the non-PII ones only)")
    prior_param: float = Field(0.1, gt=0, le=1, description="density p: each (entity, property) admits "
                               "floor(p * n_descriptive_values) values")
    instr_ratio: float = Field(0.8, ge=0, le=1, description="share of instruction rows (T1 unscramble, T2 "
                               "conditional generation, half each); the rest are T0 free generation")
    n_adjectives: int = Field(20, ge=1, le=10_000, description="adjectives (modify identifiers and values)")
    n_adverbs: int = Field(20, ge=1, le=10_000, description="adverbs (modify relative verbs)")
    adj_null_prob: float = Field(0.1, ge=0, le=1, description="chance a modifiable identifier or value has no "
                                 "adjective")
    max_len: int = Field(128, ge=16, le=4096, description="longest row in tokens (sentences longer than "
                         "(max_len - 3) // 2 are resampled)")
    batch: int = Field(128, gt=0, description="rows per step when train.batch_size is none")
    data_seed: Seed | None = Field(None, description="seed of the world (classes, priors; 0..2**63-1); none = the "
                                   "run seed")
    n_test: int = Field(256, gt=0, le=1_000_000, description="held-out rows for test/loss")
    n_generations: int = Field(128, gt=0, le=100_000, description="free generations for grammar and type checks")
    gen_temperature: float = Field(1.0, gt=0, le=10, description="sampling temperature of the free generations")
    n_unscramble: int = Field(128, gt=0, le=100_000, description="held-out sentences for the unscramble eval")
    n_probe_entities: int = Field(8, gt=0, le=100_000, description="probed entities per class (at most the class's "
                                  "entities) for reach_* and learned_*")
    n_probe_properties: int = Field(4, gt=0, le=100_000, description="probed plain descriptive properties per class "
                                    "(at most the class's)")

    @model_validator(mode="after")
    def _check(self) -> PercolationConfig:
        c = self.n_classes
        if c % 2:
            raise ValueError(f"n_classes ({c}) must be even: half subject and half object classes")
        if self.n_descriptive_properties < 3 * c:
            raise ValueError(f"n_descriptive_properties ({self.n_descriptive_properties}) must be >= 3 * n_classes "
                             f"({3 * c}): a class needs identifier properties and at least one descriptive property")
        if self.n_relative_properties < c // 2:
            raise ValueError(f"n_relative_properties ({self.n_relative_properties}) must be >= n_classes // 2 "
                             f"({c // 2}): one group per subject-object class pair")
        if self.admitted_per_pair() < 1:
            raise ValueError(f"prior_param * n_descriptive_values = {self.prior_param * self.n_descriptive_values:g} "
                             "admits no value; it must be >= 1")
        return self

    # sizes from the config alone
    def admitted_per_pair(self) -> int:
        """``m = floor(p * n_values)``: the values each (entity, property) pair admits."""
        return _floor(self.prior_param * self.n_descriptive_values)

    def n_pii(self) -> int:
        return self.n_entities // 5

    def n_nonpii(self) -> int:
        return 4 * self.n_entities // 5

    def n_entities_total(self) -> int:
        """``|E| = n_classes * (4n // 5) + n_classes // 2 * (n // 5)`` (900 at the default)."""
        return self.n_classes * self.n_nonpii() + self.n_classes // 2 * self.n_pii()

    def n_plain_properties(self) -> int:
        """Descriptive properties that are not identifiers: ``n_descriptive_properties - 3 * n_classes // 2``."""
        return self.n_descriptive_properties - self.n_classes - self.n_classes // 2

    def max_value_nodes(self) -> int:
        """An upper bound on ``|K|``: every value of every plain property (reached when a class has at least
        ``n_descriptive_values`` entities, as at the default: 17,800)."""
        return self.n_plain_properties() * self.n_descriptive_values

    def max_sentence_len(self) -> int:
        """The longest sentence in tokens, ``<eos>`` included: ``(max_len - 3) // 2``."""
        return (self.max_len - 3) // 2

    def vocab_size(self) -> int:
        """Input tokens: the fixed words, modifiers, entities, verbs, values and PAD (the last id)."""
        return (len(SPECIALS) + self.n_adjectives + self.n_adverbs + self.n_entities_total()
                + self.n_relative_properties + self.max_value_nodes() + 1)

    def rows_per_step(self) -> int:
        return self.batch

    def data_numbers(self) -> int:
        per_class_props = self.n_descriptive_properties // self.n_classes + 1
        edges = self.n_entities_total() * per_class_props * self.admitted_per_pair()
        rows = self.n_test + self.n_unscramble + self.n_generations + self.batch
        return 3 * edges + 2 * self.max_value_nodes() + 2 * rows * self.max_len

    def model_defaults(self) -> dict[str, Any]:
        v = self.vocab_size()
        return {"d_vocab": v, "d_vocab_out": v - 1, "n_ctx": self.max_len, "pad_token_id": v - 1}


# --------------------------------------------------------------------------- the world


@dataclass
class Sentence:
    """One filled sentence: its tokens (``<eos>`` last) and what fills its slots (entity ids, relative
    property ids, and ``(entity, plain property, value)`` for every descriptive clause)."""

    tokens: list[int]
    subjects: list[int]
    objects: list[int]
    verbs: list[int]
    descs: list[tuple[int, int, int]]


@dataclass
class Check:
    """The grammar and type checks of one generated token sequence (:meth:`World.check`)."""

    grammatical: bool
    desc_ok: int  # descriptive slots whose property belongs to the class of the last subject before them
    desc_admitted: int  # ... whose value that subject also admits
    n_desc: int
    rel_ok: int  # relative verbs whose subjects are all of its subject class and objects all of its object class
    n_rel: int
    symbols: tuple[str, ...]


class World:
    """Concept classes, entities, properties, priors, the true entity-property graph and the vocabulary.

    Build with :meth:`build`.  Arrays (numpy int64 unless noted): ``prop_class [n_plain]``,
    ``prop_start [C + 1]`` (plain properties of class c are ``prop_start[c]:prop_start[c+1]``),
    ``support [n_plain, m]`` (sorted prior support of each property), ``rel_group [n_rel]``,
    ``rel_start [C/2 + 1]``, ``ent_class [|E|]``, ``ent_rot [|E|]``, ``ent_pii [|E|]`` (bool),
    ``ent_start [C + 1]``; ``support_pos [n_plain, n_values]`` (position of a value in ``support[k]``, -1 if
    absent); the true graph ``edge_entity``, ``edge_prop``, ``edge_value`` (``[n_edges]``, entity-major: edge
    ``edge_base[e] + (k - prop_start[c]) * m + j`` is entity e's j-th admitted value of k, see
    :meth:`edge_ids`) and ``value_nodes`` (sorted ids ``k * n_values + v`` of the used value nodes, ``[|K|]``).
    Token ids: ``ADJ0 + i``, ``ADV0 + i``, ``ENT0 + e``, ``REL0 + r``, ``VAL0 + k * n_values + v``, ``PAD``.
    """

    def __init__(self, cfg: PercolationConfig, seed: int):
        self.cfg, self.seed = cfg, int(seed)
        C, V, m = cfg.n_classes, cfg.n_descriptive_values, cfg.admitted_per_pair()
        self.n_classes, self.half, self.n_values, self.m = C, C // 2, V, m
        rng = np.random.default_rng([self.seed, 0x9E2C])
        sizes = np.array([len(b) for b in np.array_split(np.arange(cfg.n_descriptive_properties), C)])
        sizes = sizes[rng.permutation(C)]
        self.class_block = sizes  # descriptive properties per class, identifiers included
        plain = sizes - 1 - (np.arange(C) < self.half)
        self.prop_start = np.concatenate([[0], np.cumsum(plain)]).astype(np.int64)
        self.n_plain = int(self.prop_start[-1])
        self.prop_class = np.repeat(np.arange(C), plain).astype(np.int64)
        keys = rng.random((self.n_plain, V))
        self.support = np.sort(np.argsort(keys, axis=1)[:, :m], axis=1).astype(np.int64)
        self.support_pos = np.full((self.n_plain, V), -1, dtype=np.int64)
        np.put_along_axis(self.support_pos, self.support, np.arange(m)[None, :].repeat(self.n_plain, 0), axis=1)
        groups = np.array_split(np.arange(cfg.n_relative_properties), self.half)
        self.rel_group = np.concatenate([np.full(len(g), i) for i, g in enumerate(groups)]).astype(np.int64)
        self.rel_start = np.concatenate([[0], np.cumsum([len(g) for g in groups])]).astype(np.int64)
        n_np, n_pii = cfg.n_nonpii(), cfg.n_pii()
        counts = np.array([n_np + (n_pii if c < self.half else 0) for c in range(C)])
        self.ent_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.n_entities = int(self.ent_start[-1])
        self.ent_class = np.repeat(np.arange(C), counts).astype(np.int64)
        self.ent_rot = np.concatenate([np.arange(n) for n in counts]).astype(np.int64)
        self.ent_pii = self.ent_rot >= n_np
        # vocabulary
        self.ADJ0 = len(SPECIALS)
        self.ADV0 = self.ADJ0 + cfg.n_adjectives
        self.ENT0 = self.ADV0 + cfg.n_adverbs
        self.REL0 = self.ENT0 + self.n_entities
        self.VAL0 = self.REL0 + cfg.n_relative_properties
        self.PAD = self.VAL0 + self.n_plain * V
        self.vocab_size = self.PAD + 1
        if self.vocab_size != cfg.vocab_size():  # pragma: no cover - a bug, not a config problem
            raise AssertionError("vocabulary size does not match PercolationConfig.vocab_size")
        self._kinds = self._token_kinds()
        # the true graph, entity-major
        ents, props, vals = [], [], []
        for c in range(C):
            e = np.arange(self.ent_start[c], self.ent_start[c + 1])
            k = np.arange(self.prop_start[c], self.prop_start[c + 1])
            v = (self.support[k][None, :, :] + self.ent_rot[e][:, None, None]) % V  # [n_e, n_k, m]
            ents.append(np.broadcast_to(e[:, None, None], v.shape).ravel())
            props.append(np.broadcast_to(k[None, :, None], v.shape).ravel())
            vals.append(v.ravel())
        self.edge_entity = np.concatenate(ents).astype(np.int64)
        self.edge_prop = np.concatenate(props).astype(np.int64)
        self.edge_value = np.concatenate(vals).astype(np.int64)
        per_entity = (self.prop_start[1:] - self.prop_start[:-1])[self.ent_class] * m
        self.edge_base = np.concatenate([[0], np.cumsum(per_entity)[:-1]]).astype(np.int64)
        self.value_nodes = np.unique(self.edge_prop * V + self.edge_value)  # the used (property, value) nodes

    @classmethod
    def build(cls, cfg: PercolationConfig, seed: int) -> World:
        """The world of ``cfg`` built from ``seed`` (``cfg.data_seed`` overrides it)."""
        return cls(cfg, seed if cfg.data_seed is None else cfg.data_seed)

    # ---------------------------------------------------------------- sizes of the true graph
    @property
    def n_edges(self) -> int:
        return len(self.edge_entity)

    @property
    def n_value_nodes(self) -> int:
        """``|K|``: (property, value) nodes admitted by at least one entity."""
        return len(self.value_nodes)

    @property
    def edge_density(self) -> float:
        """Edges over type-compatible (entity, property, value) triples: ``m / n_values`` (= p up to the floor)."""
        compatible = int(((self.prop_start[1:] - self.prop_start[:-1])[self.ent_class]).sum()) * self.n_values
        return self.n_edges / compatible

    @property
    def bipartite_density(self) -> float:
        """Edges over all ``|E| * |K|`` pairs (about p / n_classes: the graph is block-diagonal by class)."""
        return self.n_edges / (self.n_entities * self.n_value_nodes)

    def class_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(|E_c|, |K_c|)`` per class: entities and used value nodes of each block of the true graph."""
        e = np.bincount(self.ent_class, minlength=self.n_classes)
        k = np.bincount(self.prop_class[self.value_nodes // self.n_values], minlength=self.n_classes)
        return e, k

    def admitted(self, entity: int | np.ndarray, prop: int | np.ndarray) -> np.ndarray:
        """Values admitted by ``entity`` for ``prop`` (``[..., m]``; broadcasts; the property must belong to the
        entity's class)."""
        return (self.support[prop] + np.asarray(self.ent_rot[entity])[..., None]) % self.n_values

    def edge_ids(self, entity: np.ndarray, prop: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Index into the true edge arrays of each ``(entity, prop, value)`` (``-1`` where it is not an edge)."""
        entity, prop, value = (np.asarray(x, dtype=np.int64) for x in (entity, prop, value))
        same = self.prop_class[prop] == self.ent_class[entity]
        j = self.support_pos[prop, (value - self.ent_rot[entity]) % self.n_values]
        local = prop - self.prop_start[self.ent_class[entity]]
        return np.where(same & (j >= 0), self.edge_base[entity] + local * self.m + j, -1)

    # ---------------------------------------------------------------- tokens
    def _token_kinds(self) -> np.ndarray:
        """Per token id: 0 word, 1 adjective, 2 adverb, 3 entity, 4 relative verb, 5 value, 6 other."""
        kinds = np.full(self.vocab_size, 6, dtype=np.int64)
        kinds[WORD_IDS["<eos>"]:len(SPECIALS)] = 0
        kinds[self.ADJ0:self.ADV0] = 1
        kinds[self.ADV0:self.ENT0] = 2
        kinds[self.ENT0:self.REL0] = 3
        kinds[self.REL0:self.VAL0] = 4
        kinds[self.VAL0:self.PAD] = 5
        return kinds

    def word(self, t: int) -> str:
        """A readable name of token ``t`` (``c3.id7``: class 3's non-PII identifier 7; ``c0.pii2``; ``rel5``;
        ``d12.v31``: value 31 of plain property 12; ``adj4``; ``adv0``; ``<pad>``)."""
        t = int(t)
        if t < len(SPECIALS):
            return SPECIALS[t]
        if t < self.ADV0:
            return f"adj{t - self.ADJ0}"
        if t < self.ENT0:
            return f"adv{t - self.ADV0}"
        if t < self.REL0:
            e = t - self.ENT0
            c, r, n_np = self.ent_class[e], self.ent_rot[e], self.cfg.n_nonpii()
            return f"c{c}.pii{r - n_np}" if self.ent_pii[e] else f"c{c}.id{r}"
        if t < self.VAL0:
            return f"rel{t - self.REL0}"
        if t < self.PAD:
            k, v = divmod(t - self.VAL0, self.n_values)
            return f"d{k}.v{v}"
        return "<pad>"

    def decode(self, tokens) -> str:
        """Token ids -> words joined by spaces."""
        return " ".join(self.word(t) for t in np.asarray(tokens).ravel().tolist())

    def value_token(self, prop: int, value: int) -> int:
        return self.VAL0 + int(prop) * self.n_values + int(value)

    # ---------------------------------------------------------------- sampling
    def sample_sentence(self, u: Uniforms) -> Sentence:
        """A grammatical, type-correct sentence of at most ``cfg.max_sentence_len()`` tokens (resampled
        until it fits), drawn with the uniforms ``u`` (see the module docstring for the filling rules)."""
        limit = self.cfg.max_sentence_len()
        while True:
            syms = sample_symbols(u, limit + 1)  # + 1: the [P] symbol is not a token
            if syms is None:
                continue
            s = self._fill(syms[1:], u)
            if len(s.tokens) <= limit:
                return s

    def _fill(self, syms: list[str], u: Uniforms) -> Sentence:
        cfg, V = self.cfg, self.n_values
        c = u.below(self.n_classes)
        subj_class = c
        obj_class = -1
        if "relV" in syms:
            subj_class = c if c < self.half else c - self.half
            obj_class = subj_class + self.half
        null = cfg.adj_null_prob
        toks: list[int] = []
        subjects, objects, verbs, descs = [], [], [], []
        last = -1
        for s in syms:
            if s == "subjectID" or s == "objectID":
                cl = subj_class if s == "subjectID" else obj_class
                e = int(self.ent_start[cl]) + u.below(int(self.ent_start[cl + 1] - self.ent_start[cl]))
                if not self.ent_pii[e] and u() >= null:
                    toks.append(self.ADJ0 + u.below(cfg.n_adjectives))
                toks.append(self.ENT0 + e)
                if s == "subjectID":
                    subjects.append(e)
                    last = e
                else:
                    objects.append(e)
            elif s == "relV":
                g0, g1 = int(self.rel_start[subj_class]), int(self.rel_start[subj_class + 1])
                r = g0 + u.below(g1 - g0)
                a = u.below(cfg.n_adverbs + 1)
                if a:
                    toks.append(self.ADV0 + a - 1)
                toks.append(self.REL0 + r)
                verbs.append(r)
            elif s == "descV":
                k0, k1 = int(self.prop_start[subj_class]), int(self.prop_start[subj_class + 1])
                k = k0 + u.below(k1 - k0)
                v = int((self.support[k, u.below(self.m)] + self.ent_rot[last]) % V)
                if u() >= null:
                    toks.append(self.ADJ0 + u.below(cfg.n_adjectives))
                toks.append(self.VAL0 + k * V + v)
                descs.append((last, k, v))
            else:
                toks.append(WORD_IDS[s])
        return Sentence(toks, subjects, objects, verbs, descs)

    def sample_sentences(self, rng: np.random.Generator, n: int) -> list[Sentence]:
        """``n`` sentences from ``rng``."""
        u = Uniforms(rng)
        return [self.sample_sentence(u) for _ in range(n)]

    # ---------------------------------------------------------------- checking
    def symbolise(self, tokens) -> tuple[tuple[str, ...], list]:
        """The grammar symbols of a token sequence up to its first ``<eos>`` (``[P]`` first; ``'?'`` for a token
        that cannot stand there, including a misplaced modifier; no ``<eos>``: none is appended, so the
        sequence does not parse) and its slots ``[(kind, id), ...]`` with kind ``subject``, ``object``,
        ``verb`` or ``desc`` (id = entity, relative property or value token offset)."""
        kinds = self._kinds
        syms = ["[P]"]
        slots = []
        seen_rel = False
        pending = 0  # 1 adjective, 2 adverb waiting for its word
        for t in (int(x) for x in tokens):
            kind = kinds[t] if 0 <= t < len(kinds) else 6
            if pending:
                fits = (kind == 5 or (kind == 3 and not self.ent_pii[t - self.ENT0])) if pending == 1 else kind == 4
                if not fits:
                    syms.append("?")
                pending = 0
            if kind == 1 or kind == 2:
                pending = int(kind)
                continue
            if kind == 0:
                syms.append(SPECIALS[t])
                if t == EOS:
                    break
            elif kind == 3:
                syms.append("objectID" if seen_rel else "subjectID")
                slots.append(("object" if seen_rel else "subject", t - self.ENT0))
            elif kind == 4:
                seen_rel = True
                syms.append("relV")
                slots.append(("verb", t - self.REL0))
            elif kind == 5:
                syms.append("descV")
                slots.append(("desc", t - self.VAL0))
            else:
                syms.append("?")
        if pending:
            syms.append("?")
        return tuple(syms), slots

    def check(self, tokens) -> Check:
        """Grammar (NLTK ViterbiParser on the symbols, :func:`parses`) and type constraints of a token
        sequence (a generated sentence; read up to its first ``<eos>``).

        Descriptive slot: satisfied when its property belongs to the class of the last subject before it
        (``desc_ok``, the official ``desc``), admitted when that subject also admits its value.  Relative
        verb: satisfied when every subject is of the verb's subject class and every object of its object
        class (vacuous for a missing side, as in the official check)."""
        syms, slots = self.symbolise(tokens)
        grammatical = parses(syms)
        subjects = [i for k, i in slots if k == "subject"]
        objects = [i for k, i in slots if k == "object"]
        desc_ok = desc_adm = n_desc = rel_ok = n_rel = 0
        last = -1
        for kind, i in slots:
            if kind == "subject":
                last = i
            elif kind == "desc":
                n_desc += 1
                k, v = divmod(i, self.n_values)
                if last >= 0 and self.prop_class[k] == self.ent_class[last]:
                    desc_ok += 1
                    desc_adm += int(self.support_pos[k, (v - self.ent_rot[last]) % self.n_values] >= 0)
            elif kind == "verb":
                n_rel += 1
                g = int(self.rel_group[i])
                ok = all(self.ent_class[s] == g for s in subjects) and all(
                    self.ent_class[o] == g + self.half for o in objects)
                rel_ok += int(ok)
        return Check(grammatical, desc_ok, desc_adm, n_desc, rel_ok, n_rel, syms)

    # ---------------------------------------------------------------- graphs
    def giant_fraction(self, entities: np.ndarray, nodes: np.ndarray, edge_entity: np.ndarray,
                       edge_node: np.ndarray) -> float:
        """Per-class giant fraction of a bipartite graph on the given entity ids and value-node ids
        (``node = prop * n_values + value``) with the given edges (every endpoint must be among the nodes):
        ``sum_c |largest component within class c| / (len(entities) + len(nodes))``."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        entities, nodes = np.unique(entities), np.unique(nodes)
        n = len(entities) + len(nodes)
        if n == 0:
            return 0.0
        a = np.searchsorted(entities, edge_entity)
        b = len(entities) + np.searchsorted(nodes, edge_node)
        g = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
        n_comp, labels = connected_components(g, directed=False)
        cls = np.concatenate([self.ent_class[entities], self.prop_class[nodes // self.n_values]])
        counts = np.bincount(cls * n_comp + labels, minlength=self.n_classes * n_comp).reshape(self.n_classes, n_comp)
        return float(counts.max(1).sum() / n)


# --------------------------------------------------------------------------- rows


def format_row(world: World, sentence: Sentence, task: int, rng: np.random.Generator) -> list[int]:
    """``Task: T{task} Ops: {ops} Out: {sentence}`` as token ids (task 0, 1 or 2).  Operands: ``<null>`` (T0);
    the sentence's tokens but ``<eos>``, shuffled (T1); one random member of each non-empty category among
    subjects, objects, relative verbs and descriptive values, shuffled (T2; every sentence has a subject)."""
    if task == 1:
        body = sentence.tokens[:-1]
        ops = [body[i] for i in rng.permutation(len(body))]
    elif task == 2:
        cats = [[world.ENT0 + e for e in sentence.subjects], [world.ENT0 + e for e in sentence.objects],
                [world.REL0 + r for r in sentence.verbs], [world.value_token(k, v) for _, k, v in sentence.descs]]
        words = [c[int(rng.integers(len(c)))] for c in cats if c]
        ops = [words[i] for i in rng.permutation(len(words))]
    else:
        ops = [NULL]
    return [TASK, T0 + task, OPS, *ops, OUT, *sentence.tokens]


def encode_rows(rows: list[list[int]], pad: int) -> Batch:
    """Rows of token ids -> a Batch: ``tokens = row[:-1]``, ``targets = row[1:]`` (``[B, T]``, T = longest
    row - 1), PAD after each row and IGNORE as its target; ``extras['task']`` (0, 1, 2), ``extras['length']``
    (row length)."""
    width = max(len(r) for r in rows)
    arr = np.full((len(rows), width), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        arr[i, :len(r)] = r
    tokens = torch.from_numpy(arr[:, :-1].copy())
    targets = torch.from_numpy(np.where(arr[:, 1:] == pad, IGNORE, arr[:, 1:]))
    return Batch(tokens=tokens, targets=targets,
                 extras={"task": torch.tensor([r[1] - T0 for r in rows]), "length": torch.tensor([len(r) for r in rows])})


# --------------------------------------------------------------------------- the task


@register_task
class PercolationTask(Task):
    """Lubana et al.'s concept-percolation language (see the module docstring).

    Interface: ``world`` (:class:`World`), ``test_set`` (held-out rows for the loss), ``unscramble_sentences``,
    ``probe_entities``/``probe_pairs`` (the reach/learned probes), ``probe_true_giant`` (``learned_giant`` of
    a model that knows every probed edge), :meth:`examples`, :meth:`generation_metrics`,
    :meth:`unscramble_metrics`, :meth:`probe_metrics`, :meth:`evaluate`."""

    Config = PercolationConfig
    cfg: PercolationConfig

    def __init__(self, cfg: PercolationConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.world = w = World.build(cfg, self.seed)
        held = np.random.default_rng([w.seed, 0x7E57])
        self.test_set = self.examples(held, cfg.n_test, np.random.default_rng([w.seed, 0x7E58]))
        self.unscramble_sentences = w.sample_sentences(np.random.default_rng([w.seed, 0x5C4A]), cfg.n_unscramble)
        shuf = np.random.default_rng([w.seed, 0x5C4B])
        self.unscramble_rows = [format_row(w, s, 1, shuf) for s in self.unscramble_sentences]
        self._build_probes(np.random.default_rng([w.seed, 0x94B3]))

    # ---------------------------------------------------------------- data
    def examples(self, sentence_rng: np.random.Generator, n: int, format_rng: np.random.Generator) -> Batch:
        """``n`` rows (sentences from ``sentence_rng``, tasks and operands from ``format_rng``) as a Batch
        (see :func:`encode_rows`); ``extras['n_desc']`` counts each row's descriptive clauses."""
        sents = self.world.sample_sentences(sentence_rng, n)
        r = self.cfg.instr_ratio
        draws = format_rng.random(n)
        tasks = np.where(draws < 1 - r, 0, np.where(draws < 1 - r / 2, 1, 2))
        rows = []
        for s, t in zip(sents, tasks.tolist()):
            rows.append(format_row(self.world, s, t, format_rng))
        b = encode_rows(rows, self.world.PAD)
        b.extras["n_desc"] = torch.tensor([len(s.descs) for s in sents])
        return b

    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        """The rows of step ``step``: sentences from ``step_rng(seed, step, 1)``, formatting from stream 2."""
        return self.examples(step_rng(self.seed, step, 1), batch_size or self.cfg.batch, step_rng(self.seed, step, 2))

    def eval_sets(self) -> dict[str, Batch]:
        return {"test": self.test_set}

    # ---------------------------------------------------------------- probes
    def _build_probes(self, rng: np.random.Generator) -> None:
        w, cfg = self.world, self.cfg
        ents, pairs = [], []
        for c in range(w.n_classes):
            e0, e1 = int(w.ent_start[c]), int(w.ent_start[c + 1])
            k0, k1 = int(w.prop_start[c]), int(w.prop_start[c + 1])
            es = np.sort(rng.choice(np.arange(e0, e1), min(cfg.n_probe_entities, e1 - e0), replace=False))
            ks = np.sort(rng.choice(np.arange(k0, k1), min(cfg.n_probe_properties, k1 - k0), replace=False))
            for e in es.tolist():
                row = len(ents)
                ents.append(e)
                pairs += [(row, k) for k in ks.tolist()]
        self.probe_entities = np.array(ents, dtype=np.int64)
        self.probe_pairs = np.array(pairs, dtype=np.int64)  # [P, 2]: (row into probe_entities, property)
        # prompts `Task: T0 Ops: <null> Out: [adj] e is [adj]`, modifiers drawn as in the data
        u = Uniforms(rng)
        rows = []
        for e in ents:
            r = list(PROMPT_T0)
            if not w.ent_pii[e] and u() >= cfg.adj_null_prob:
                r.append(w.ADJ0 + u.below(cfg.n_adjectives))
            r += [w.ENT0 + e, WORD_IDS["is"]]
            if u() >= cfg.adj_null_prob:
                r.append(w.ADJ0 + u.below(cfg.n_adjectives))
            rows.append(r)
        width = max(len(r) for r in rows)
        self.probe_tokens = torch.full((len(rows), width), w.PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            self.probe_tokens[i, :len(r)] = torch.tensor(r)
        self.probe_last = torch.tensor([len(r) - 1 for r in rows])
        pe = self.probe_entities[self.probe_pairs[:, 0]]
        self.probe_admitted = w.admitted(pe, self.probe_pairs[:, 1])  # [P, m]
        oracle = np.zeros((len(self.probe_pairs), w.n_values))
        np.put_along_axis(oracle, self.probe_admitted, 10.0, axis=1)
        self.probe_true_giant = self.probe_metrics(torch.from_numpy(oracle))["learned_giant"]

    @torch.no_grad()
    def probe_value_logits(self, model: torch.nn.Module, device: Any = None) -> torch.Tensor:
        """The model's logits over each probed property's values at the value position of its probe prompt
        ``Task: T0 Ops: <null> Out: [adj] e is [adj]``: ``[P, n_values]`` float32 (row i = ``probe_pairs[i]``)."""
        w = self.world
        dev = device if device is not None else next(model.parameters()).device
        logits = model(self.probe_tokens.to(dev))  # [R, T, V_out]
        last = logits[torch.arange(len(self.probe_last)), self.probe_last.to(dev)].float().cpu()  # [R, V_out]
        rows = torch.from_numpy(self.probe_pairs[:, 0])
        cols = w.VAL0 + torch.from_numpy(self.probe_pairs[:, 1])[:, None] * w.n_values + torch.arange(w.n_values)
        return last[rows[:, None], cols]

    def probe_metrics(self, value_logits: torch.Tensor) -> dict[str, float]:
        """``reach_prob``, ``reach_rank``, ``learned_edges``, ``learned_giant`` from ``value_logits [P,
        n_values]`` (row i: the logits over the values of property ``probe_pairs[i, 1]`` for entity
        ``probe_entities[probe_pairs[i, 0]]``); the definitions are in :meth:`evaluate`."""
        w = self.world
        V, m = w.n_values, w.m
        lv = value_logits.double()
        adm = torch.from_numpy(self.probe_admitted)
        q = torch.softmax(lv, dim=-1)
        order = torch.argsort(-lv, dim=-1, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(V).expand_as(order).contiguous())
        r_adm = rank.gather(1, adm)  # [P, m], 0 = the model's top value
        learned = (r_adm < m).numpy()
        pe = self.probe_entities[self.probe_pairs[:, 0]]
        nodes = self.probe_pairs[:, 1][:, None] * V + self.probe_admitted  # [P, m]
        giant = w.giant_fraction(self.probe_entities, nodes.ravel(), np.broadcast_to(pe[:, None], nodes.shape)[learned],
                                 nodes[learned])
        return {"reach_prob": float(q.gather(1, adm).sum(1).mean()),
                "reach_rank": float(r_adm.double().mean() / max(1, V - 1)),
                "learned_edges": float(learned.mean()),
                "learned_giant": giant}

    # ---------------------------------------------------------------- generation checks
    def generation_metrics(self, rows: torch.Tensor | list) -> dict[str, float]:
        """``grammar``, ``type_desc``, ``desc_admitted``, ``type_rel``, ``type_all`` of generated sentences (rows of
        token ids after ``Out:``; each is read up to its first ``<eos>``).  Slot accuracies pool the slots of
        all rows (0 when no row has such a slot)."""
        checks = [self.world.check(r) for r in (rows.tolist() if torch.is_tensor(rows) else rows)]
        n_desc = sum(c.n_desc for c in checks)
        n_rel = sum(c.n_rel for c in checks)
        td = sum(c.desc_ok for c in checks) / n_desc if n_desc else 0.0
        tr = sum(c.rel_ok for c in checks) / n_rel if n_rel else 0.0
        return {"grammar": float(np.mean([c.grammatical for c in checks])) if checks else 0.0,
                "type_desc": td, "type_rel": tr, "type_all": td * tr,
                "desc_admitted": sum(c.desc_admitted for c in checks) / n_desc if n_desc else 0.0}

    @torch.no_grad()
    def free_generations(self, model: torch.nn.Module, device: Any = None, rows: int = 1024) -> torch.Tensor:
        """``cfg.n_generations`` samples at ``cfg.gen_temperature`` from the prompt ``Task: T0 Ops: <null>
        Out:``: ``[n, max_sentence_len]`` token ids (PAD after ``<eos>``), ``rows`` at a time.  The sampling
        noise is fixed by the seed, the same at every evaluation (for a given ``rows``: :meth:`evaluate` keeps
        the default, so its numbers do not depend on ``eval_bs``)."""
        from theorylab.tasks.graphs import generate_tokens

        w, cfg = self.world, self.cfg
        dev = device if device is not None else next(model.parameters()).device
        gen = torch_generator(self.seed, 0x6E4)
        prompts = torch.tensor(PROMPT_T0, dtype=torch.long).repeat(cfg.n_generations, 1).to(dev)
        out = [generate_tokens(model, prompts[i:i + rows], cfg.max_sentence_len(), cfg.gen_temperature, gen, EOS, w.PAD)
               for i in range(0, len(prompts), rows)]
        return torch.cat(out, 0).cpu()

    @torch.no_grad()
    def unscramble_generations(self, model: torch.nn.Module, device: Any = None, rows: int = 1024) -> torch.Tensor:
        """Greedy completions of the held-out T1 prompts ``Task: T1 Ops: {shuffled} Out:`` (left-padded):
        ``[n_unscramble, longest target]`` token ids."""
        from theorylab.models.decoding import generate

        w = self.world
        dev = device if device is not None else next(model.parameters()).device
        prompts = [r[:len(r) - len(s.tokens)] for r, s in zip(self.unscramble_rows, self.unscramble_sentences)]
        longest = max(len(s.tokens) for s in self.unscramble_sentences)
        outs = []
        for i in range(0, len(prompts), rows):
            part = prompts[i:i + rows]
            width = max(len(p) for p in part)
            ids = torch.full((len(part), width), w.PAD, dtype=torch.long)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for j, p in enumerate(part):
                ids[j, width - len(p):] = torch.tensor(p)
                mask[j, width - len(p):] = 1
            got = generate(model, ids.to(dev), longest, do_sample=False, eos_token_id=EOS, pad_token_id=w.PAD,
                           attention_mask=mask.to(dev))[:, width:].cpu()
            if got.shape[1] < longest:
                got = torch.cat([got, torch.full((len(part), longest - got.shape[1]), w.PAD, dtype=torch.long)], 1)
            outs.append(got)
        return torch.cat(outs, 0)

    def unscramble_metrics(self, generations: torch.Tensor) -> dict[str, float]:
        """``unscramble_exact`` and ``unscramble_token`` of generations ``[n_unscramble, >= longest target]``
        against the held-out sentences (``<eos>`` included in the target)."""
        exact, token = [], []
        for g, s in zip(generations.tolist(), self.unscramble_sentences):
            hit = [a == b for a, b in zip(g[:len(s.tokens)], s.tokens)]
            hit += [False] * (len(s.tokens) - len(hit))
            exact.append(all(hit))
            token.append(sum(hit) / len(hit))
        return {"unscramble_exact": float(np.mean(exact)), "unscramble_token": float(np.mean(token))}

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def heldout_metrics(self, model: torch.nn.Module, device: Any = None, dtype: Any = None,
                        rows: int = 256) -> dict[str, float]:
        """``loss`` (mean next-token cross-entropy in nats over every non-IGNORE target of ``test_set``) and
        ``accuracy`` (argmax accuracy over the same targets).  Rows are sorted by length and run in chunks of
        at most ``rows`` rows and 4096 tokens, each cut to its longest row (little padding)."""
        b = self.test_set
        lengths = b.extras["length"] - 1
        order = torch.argsort(lengths, stable=True).tolist()
        chunks, cur = [], []
        for i in order:  # ascending lengths: the last row of a chunk is its longest
            if cur and (len(cur) >= rows or (len(cur) + 1) * int(lengths[i]) > 4096):
                chunks.append(cur)
                cur = []
            cur.append(i)
        chunks.append(cur)
        total, right, count = 0.0, 0, 0
        for chunk in chunks:
            idx = torch.tensor(chunk)
            width = int(lengths[idx].max())
            part = b.index(idx)
            part = Batch(tokens=part.tokens[:, :width], targets=part.targets[:, :width]).to(device or "cpu", dtype)
            logits = model(part.tokens).float()
            mask = part.targets != IGNORE
            lg, tg = logits[mask], part.targets[mask]
            total += float(torch.nn.functional.cross_entropy(lg, tg, reduction="sum"))
            right += int((lg.argmax(-1) == tg).sum())
            count += int(mask.sum())
        return {"loss": total / max(1, count), "accuracy": right / max(1, count)}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, device: Any, dtype: Any, eval_bs: int) -> dict[str, float]:
        """The whole evaluation, ``{"test/<name>": value}``; fixed held-out data from the (data) seed.

        * ``loss``, ``accuracy``: next-token cross-entropy (nats) and argmax accuracy on ``n_test`` held-out rows
          of the training mixture, whole-row targets as in training.
        * ``grammar``: fraction of ``n_generations`` free generations (prompt ``Task: T0 Ops: <null> Out:``,
          sampled at ``gen_temperature``, up to ``(max_len - 3) // 2`` tokens) that contain ``<eos>`` and whose
          symbols up to it parse under the PCFG (NLTK ViterbiParser).
        * ``type_desc``: over every descriptive value those generations write, the fraction whose property
          belongs to the class of the last subject before it; ``desc_admitted``: ... and whose value that
          subject admits (the entity-level constraint); ``type_rel``: over every relative verb, the fraction
          whose subject class holds every subject and whose object class holds every object of the sentence;
          ``type_all = type_desc * type_rel``.  (0 when no such slot was generated.)
        * ``unscramble_exact``/``unscramble_token``: greedy completions of ``n_unscramble`` held-out T1 prompts
          (the target is a permutation of the operands plus ``<eos>``): the fraction written exactly, and the
          mean over sentences of the fraction of target positions written right.
        * Probes: in each class ``n_probe_entities`` entities e and ``n_probe_properties`` plain properties k
          (fixed); the logits at the value position of ``Task: T0 Ops: <null> Out: [adj] e is [adj]``
          (modifiers drawn as in the data; the template ``[P] subjectID is descV <eos>``), restricted to the
          ``n_values`` values of k.  ``reach_prob``: mean over (e, k) of the probability (softmax over k's
          values) of the values e admits (chance p); ``reach_rank``: mean over (e, k) and admitted v of
          ``rank(v) / (n_values - 1)``, rank 0 = the model's top value (chance 0.5; best ``(m - 1) / (2 (n_values
          - 1))``); ``learned_edges``: fraction of the probed true edges e-(k, v) learned, i.e. v admitted and
          among the model's top ``m`` values for (e, k) (chance about p); ``learned_giant``: per-class giant
          fraction (:meth:`World.giant_fraction`) of the bipartite graph of learned edges on the probed nodes
          (the probed entities and every value some probed entity admits for a probed property); a model that
          knows every edge scores ``probe_true_giant``.
        """
        was = model.training
        model.eval()
        try:
            dev = next(model.parameters()).device if device is None else device
            rows = max(1, eval_bs)
            out = self.heldout_metrics(model, dev, dtype, rows)
            out.update(self.generation_metrics(self.free_generations(model, dev)))
            out.update(self.unscramble_metrics(self.unscramble_generations(model, dev, rows)))
            out.update(self.probe_metrics(self.probe_value_logits(model, dev)))
        finally:
            model.train(was)
        return {f"test/{k}": float(v) for k, v in out.items()}


# --------------------------------------------------------------------------- the revealed graph


@dataclass
class RevealedCurve:
    """The graph of entity-value edges revealed by the training sentences, along training.

    ``steps [n]``: steps replayed (the batches of steps ``0 .. steps[i] - 1``); ``edges [n]``: distinct true
    edges revealed by descriptive clauses so far; ``giant [n]``: per-class giant fraction of the revealed
    bipartite graph over every node of the true graph (``|E| + |K|`` nodes); ``clauses [n]``: descriptive
    clauses seen (with repeats).  ``n_entities`` (|E|), ``n_value_nodes`` (|K|), ``n_true_edges``;
    ``critical_edges = sqrt(|E| |K|)`` (revealed edges at the bipartite critical density ``1 / sqrt(|E| |K|)``
    of the whole graph) and ``critical_edges_blocks = sum_c sqrt(|E_c| |K_c|)`` (the same per class block;
    equal for equal blocks)."""

    steps: np.ndarray
    edges: np.ndarray
    giant: np.ndarray
    clauses: np.ndarray
    n_entities: int
    n_value_nodes: int
    n_true_edges: int
    critical_edges: float
    critical_edges_blocks: float


def revealed_graph_curve(cfg: PercolationConfig, seed: int, steps: int, batch_size: int | None = None,
                         every: int = 100, world: World | None = None) -> RevealedCurve:
    """Replay the training sentences of steps ``0 .. steps - 1`` (a pure function of ``seed`` and the step:
    the same sentences :meth:`PercolationTask.train_batch` formats) and record, after every ``every`` steps
    (and after the last), the revealed entity-value edges and the giant fraction of the revealed graph (see
    :class:`RevealedCurve`).  Lubana et al.'s percolation argument: the revealed graph percolates after about
    ``sqrt(|E| |K|)`` edges.  Raises ConfigError for ``steps < 1`` or ``every < 1``."""
    if steps < 1 or every < 1:
        raise ConfigError(f"revealed_graph_curve needs steps >= 1 and every >= 1 (got {steps}, {every})")
    w = world if world is not None else World.build(cfg, seed)
    bs = batch_size or cfg.batch
    seen = np.zeros(w.n_edges, dtype=bool)
    all_ents = np.arange(w.n_entities)
    out_steps, out_edges, out_giant, out_clauses = [], [], [], []
    clauses = 0
    for t in range(steps):
        sents = w.sample_sentences(step_rng(seed, t, 1), bs)
        trip = np.array([d for s in sents for d in s.descs], dtype=np.int64).reshape(-1, 3)
        clauses += len(trip)
        if len(trip):
            ids = w.edge_ids(trip[:, 0], trip[:, 1], trip[:, 2])
            seen[ids[ids >= 0]] = True
        if (t + 1) % every == 0 or t + 1 == steps:
            idx = np.nonzero(seen)[0]
            giant = w.giant_fraction(all_ents, w.value_nodes, w.edge_entity[idx],
                                     w.edge_prop[idx] * w.n_values + w.edge_value[idx])
            out_steps.append(t + 1)
            out_edges.append(len(idx))
            out_giant.append(giant)
            out_clauses.append(clauses)
    e_c, k_c = w.class_sizes()
    return RevealedCurve(np.array(out_steps), np.array(out_edges), np.array(out_giant), np.array(out_clauses),
                         w.n_entities, w.n_value_nodes, w.n_edges, math.sqrt(w.n_entities * w.n_value_nodes),
                         float(np.sqrt(e_c * k_c).sum()))


__all__ = [
    "GRAMMAR", "PercolationConfig", "PercolationTask", "World", "Sentence", "Check", "RevealedCurve", "Uniforms", "pcfg",
    "pcfg_string", "parses", "regular_match", "sample_symbols", "format_row", "encode_rows",
    "revealed_graph_curve",
]
