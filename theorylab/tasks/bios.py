"""Synthetic biographies (bioS) for knowledge storage and extraction (task ``bios``).

Source: Allen-Zhu & Li, "Physics of Language Models: Part 3.1, Knowledge Storage and Extraction" (arXiv
2309.14316), SETUPS §5.2 (Part 3.1) and §5.3/§5.4 (a CPU-sized bioS, and its information content, after
Allen-Zhu & Li, "Part 3.3, Knowledge Capacity Scaling Laws", arXiv 2404.05405).  The paper's claim: a model
pretrained on one fixed biography per person memorises the facts but cannot be fine-tuned to *extract* them for
people whose questions it never saw (about 9.7 % out-of-distribution QA accuracy), while the augmented data
multi5 + permute + fullname makes them extractable (about 96.2 %).  The knowledge-manipulation questions
(``qa_kinds``) are after Allen-Zhu & Li, "Physics of Language Models: Part 3.2, Knowledge Manipulation" (arXiv
2309.14402): models that retrieve a fact well still fail to classify it ("is the birth month even?") or compare
two people's ("was A born in an earlier month than B?") unless a chain of thought (CoT: stating the month(s)
first) is used both in training and at test, and inverse search (the name from the attributes) stays at
virtually 0 % even for perfectly retrieved facts.

**The world** (:func:`make_world`, a pure function of the config and ``world_seed``, or the run seed when that
is none).  N = ``n_people`` individuals with unique full names, N distinct (first, middle, last) triples drawn
uniformly without replacement from ``n_first`` x ``n_middle`` x ``n_last`` name parts (the paper's 400 x 400 x
1000 by default).  Each person draws, independently and uniformly, a birth date (``n_years`` x 12 months x 28
days), a birth city (of ``n_cities``), a university (``n_universities``), a major (``n_majors``) and an employer
(``n_employers``); every employer's city is drawn once from the city pool, so the *company city* follows from the
employer.  The pool sizes default to the paper's (200 years, 200 cities, 300 universities, 100 majors, 263
companies).  Gender, which only picks the pronoun, alternates with the person index, as in the paper (even: he,
odd: she).  A fixed random half of the people (N // 2 of them) is ``p_train``, the rest ``p_test``.

**Tokens are words**, one per name part (decoded ``F17``, ``M3``, ``L902``), year (``1900`` ..), month name
(``January`` ..), day (``1`` .. ``28``), city (``City7``), university (``Univ12``), major (``Major4``) and
employer (``Corp55``), plus the template words and punctuation, ``<bos>``, ``<eos>`` and ``<pad>`` (input only,
the last id; ``d_vocab_out`` leaves it out).  The vocabulary is built from the pool sizes and the templates
alone (:class:`Vocabulary`; the few words only the Part 3.2 questions use, :data:`MANIPULATION_WORDS`, come
after the pools, so every other id is what it was before they existed), so every stage, variant and
``qa_kinds`` of one world shares it; the model's ``n_ctx`` is the longest row of any stage and any question
kind, less one (whatever sentence comes first: ``stage``, ``qa_kinds``, ``multi`` and ``permute`` leave it
alone, ``fullname`` lengthens it; 58 at the defaults, 68 with ``fullname``: every question is shorter than a
biography), so a QA child run keeps its parent's model whatever kinds it trains on.

**Biographies**: six sentences, one per attribute, in the order birth date, birth city, university, major,
employer, company city (:data:`ATTRIBUTES`).  Each sentence is one of six templates of our own per attribute
(:data:`TEMPLATES`, word-level, e.g. ``{S} was born on {month} {day} , {year} .``).  The first sentence names
the person in full (``F17 M3 L902``, or ``F17 M3 L902 's`` for a possessive); the later ones use ``he``/``she``
(``his``/``her``) unless ``fullname``.  Variants:

* ``multi`` = M: every person has M biographies, each with its own template draw per sentence (drawn once from
  the world seed; bioS *single* is ``multi = 1``);
* ``permute``: each biography's sentence order is shuffled (drawn once per biography, with the world).  The
  name goes in whichever sentence comes first; the others use pronouns (unless ``fullname``);
* ``fullname``: the full name in every sentence.

Combinations are allowed (the paper's best: ``multi=5 permute=true fullname=true``).

**QA**: question kinds (``qa_kinds``, :data:`QA_KINDS`; default ``[retrieval]``), each with one template of
our own (:data:`QUESTIONS`, :data:`MANIPULATIONS`):

* ``retrieval`` (Part 3.1): one question per attribute, e.g. ``where was F17 M3 L902 born ? City7``; the answer
  is ``month day , year`` for the birth date and one token for the others.
* ``inverse`` (Part 3.2 inverse search): all of a person's facts, ``which person attended Univ12 , majored in
  Major4 , works for Corp55 and was born in City7 on May 3 , 1950 ? F17 M3 L902``; the answer is the name.  With
  small pools two people may share every fact: the question is then ambiguous, and it is scored against the
  person asked about (:attr:`World.inverse_collisions`: the fraction of such people; 0 at the paper's pools).
* ``classify``: ``does F17 M3 L902 have a birthday in an even month ? no``, in the calendar numbering (January
  is month 1, odd; February 2, even); ``classify_cot`` answers ``May , no`` (the month first).
* ``compare``: ``does A have a birthday in an earlier month than B ? yes`` for two people A, B of one split,
  born in different calendar months (only the month counts, not the year or day); ``compare_cot`` answers
  ``May October , yes`` (A's month, B's month, the verdict).

**Stages** (``stage``).  ``bio``: biographies of all people, the loss on every token after ``<bos>`` (``<eos>``
included).  ``qa``: questions about ``p_train`` people, the loss on the answer tokens and ``<eos>`` only (the
paper's QA fine-tuning, here full fine-tuning from a ``parent`` run; the paper reports LoRA and full
fine-tuning alike).  ``mixed``: each row is a ``p_train`` question with probability ``qa_fraction`` (default 0.8,
a third-party note, SETUPS §5.2) and a biography otherwise (the paper's "mixed training").  Each row holds one
biography or one QA pair, left-aligned and padded to the stage's longest row (targets IGNORE on padding).
Stage ``qa`` pads to its longest question kind, ``mixed`` to ``n_ctx``.  Fresh rows every step from
``step_rng(seed, step)``: people uniform (over all people for biographies, over ``p_train`` for questions), a
person's biography uniform over its ``multi``, a question's kind uniform over ``qa_kinds``, the attribute of a
retrieval question uniform, the second person of a comparison uniform over the ``p_train`` people born in
another month.

**Evaluation** (:meth:`BiosTask.evaluate`).  ``qa_train/accuracy`` and ``qa_test/accuracy``: the fraction of
question-answer pairs (6 per person) whose whole answer is the teacher-forced argmax, over a fixed subset of at
most ``n_eval`` people of ``p_train`` and of ``p_test``; ``qa_<split>/<attribute>`` the same per attribute,
``qa_<split>/loss`` the mean loss (nats) on the answer tokens and ``<eos>``.  Teacher-forced exact match is
greedy decoding's exact match: greedy decoding writes the answer exactly iff every answer token is the argmax
given the true earlier ones (the ``<eos>`` after it is not required).  ``bio/accuracy``: memorisation, the
fraction of (person, attribute) pairs whose value tokens inside the person's first biography are all the
teacher-forced argmax, over a fixed subset of at most ``n_eval`` people; ``bio/<attribute>`` per attribute;
``bio/loss`` the mean loss per biography token.  The ``qa_<split>/*`` keys above are those of ``retrieval``, kept
only when it is in ``qa_kinds``.  For each other kind: ``qa_<split>/<kind>``, the fraction of the fixed
evaluation people of the split whose question of that kind has its whole answer as the teacher-forced argmax
(a comparison pairs each evaluation person, once and for all, with another evaluation person of the same split
born in another month, ``eval_partners``; with any person of the split when the evaluation people all share one
month); for the CoT kinds also ``qa_<split>/<kind>_final``, whether the
verdict token alone is the argmax, given the true month(s) before it.

**Information content** (:func:`attribute_bits`, :func:`name_bits`) and :func:`exposures`, for the Part 3.3
capacity experiments.

**What is ours, and what differs from the paper.**

* The templates are our own, six per attribute (the official generator has about 50 per attribute); the
  questions too, one template per kind for the Part 3.2 questions.  No template or code of the official
  generator is used.
* The Part 3.2 questions here: classification and comparison read the birth month only (calendar month;
  ``compare`` pairs are always drawn from two different months, so there are no ties); the CoT answer states
  the month(s) as the answer's first tokens; inverse search lists all five independent facts (birth date,
  birth city, university, major, employer).
* Words, not BPE: every name part and attribute value is one token (a birth date four: month, day, comma,
  year), and names and values are abstract ids (``City7``), not real names.
* Rows are not packed: one biography per row, where the paper concatenates biographies into 512-token windows
  (a replication warns the copies of one person must be shuffled across the corpus; fresh uniform rows give
  that here).
* The employer sentence comes before the company-city sentence (the official generator's default puts the
  company city first; its ``order`` flag swaps them).
* With ``permute`` the name is in the first sentence of the shuffled order.
* QA accuracy is read off one teacher-forced forward pass (equal to greedy exact match, above).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from pydantic import Field, model_validator

from theorylab.config import Seed
from theorylab.errors import ConfigError
from theorylab.tasks import register_task
from theorylab.tasks.base import IGNORE, Batch, Task, TaskConfig, step_rng

_NAME_SALT, _ATTR_SALT, _TEMPLATE_SALT, _ORDER_SALT, _SPLIT_SALT, _EVAL_SALT, _PAIR_SALT = (
    0xB105, 0xA77B, 0x7E3B, 0x0BDE, 0x5B17, 0xE7A1, 0x9A12)

#: the six attributes, in the order of an unpermuted biography
ATTRIBUTES = ("birth_date", "birth_city", "university", "major", "employer", "company_city")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
N_MONTHS, N_DAYS, FIRST_YEAR = 12, 28, 1900
MAX_PEOPLE = 200_000

#: the slots of a template; a slot's code in a compiled template is ``-(index + 1)``
SLOTS = ("first", "middle", "last", "pronoun", "possessive", "month", "day", "year", "birth_city", "university",
         "major", "employer", "company_city")
#: the value slots of each attribute (in the order of the QA answer)
VALUE_SLOTS = {"birth_date": ("month", "day", "year"), "birth_city": ("birth_city",),
               "university": ("university",), "major": ("major",), "employer": ("employer",),
               "company_city": ("company_city",)}
#: the answer of each question (a birth date with its comma)
_ANSWER = {a: " ".join("{" + s + "}" for s in v) for a, v in VALUE_SLOTS.items()} | {
    "birth_date": "{month} {day} , {year}"}

#: our biography templates, six per attribute: ``{S}`` the subject (full name or he/she), ``{P}`` the possessive
#: (full name + 's, or his/her), ``{slot}`` a value; words are separated by spaces
TEMPLATES: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "{S} was born on {month} {day} , {year} .",
        "{S} came into the world on {month} {day} , {year} .",
        "{P} date of birth is {month} {day} , {year} .",
        "{S} celebrates a birthday every {month} {day} , having been born in {year} .",
        "{S} was born in {year} , on {month} {day} .",
        "{P} life began on {month} {day} , {year} .",
    ),
    "birth_city": (
        "{S} was born in {birth_city} .",
        "{S} is a native of {birth_city} .",
        "{P} birthplace is {birth_city} .",
        "{S} first saw the light of day in {birth_city} .",
        "{P} place of birth was {birth_city} .",
        "{S} hails from {birth_city} .",
    ),
    "university": (
        "{S} studied at {university} .",
        "{S} attended {university} .",
        "{S} graduated from {university} .",
        "{P} alma mater is {university} .",
        "{S} received an education at {university} .",
        "{S} enrolled at {university} for higher education .",
    ),
    "major": (
        "{S} majored in {major} .",
        "{P} field of study was {major} .",
        "{S} earned a degree in {major} .",
        "{S} specialized in {major} .",
        "{S} focused on {major} during college .",
        "{P} chosen subject was {major} .",
    ),
    "employer": (
        "{S} works for {employer} .",
        "{S} is employed by {employer} .",
        "{P} employer is {employer} .",
        "{S} holds a job at {employer} .",
        "{S} joined the staff of {employer} .",
        "{S} earns a living at {employer} .",
    ),
    "company_city": (
        "{S} works in {company_city} .",
        "{P} office is located in {company_city} .",
        "{S} commutes to work in {company_city} .",
        "{P} workplace is in {company_city} .",
        "{S} is based in {company_city} for work .",
        "{S} has a job in {company_city} .",
    ),
}

#: our question per attribute (the answer, :data:`VALUE_SLOTS`, follows the question mark)
QUESTIONS: dict[str, str] = {
    "birth_date": "when was {S} born ?",
    "birth_city": "where was {S} born ?",
    "university": "which university did {S} attend ?",
    "major": "what did {S} study ?",
    "employer": "which company does {S} work for ?",
    "company_city": "where does {S} work ?",
}

#: the question kinds of ``qa_kinds`` (module doc): retrieval of one attribute (Part 3.1) and the knowledge
#: manipulations of Part 3.2 (inverse search, classification and comparison, each of the last two with and
#: without chain of thought)
QA_KINDS = ("retrieval", "inverse", "classify", "classify_cot", "compare", "compare_cot")
QaKind = Literal["retrieval", "inverse", "classify", "classify_cot", "compare", "compare_cot"]
_INVERSE_Q = ("which person attended {university} , majored in {major} , works for {employer} and was born in "
              "{birth_city} on {month} {day} , {year} ?")
_CLASSIFY_Q = "does {A} have a birthday in an even month ?"
_COMPARE_Q = "does {A} have a birthday in an earlier month than {B} ?"
#: our question and answer of each knowledge-manipulation kind (word-level): ``{A}`` the full name of the person
#: asked about, ``{B}`` that of the second person of a comparison, ``{month_a}``/``{month_b}`` their birth
#: months, ``{verdict}`` ``yes`` or ``no`` (:data:`VERDICTS`); the other slots are the person's values.  Months
#: are numbered in the calendar way: January is month 1 (odd), December month 12 (even).
MANIPULATIONS: dict[str, tuple[str, str]] = {
    "inverse": (_INVERSE_Q, "{A}"),
    "classify": (_CLASSIFY_Q, "{verdict}"),
    "classify_cot": (_CLASSIFY_Q, "{month_a} , {verdict}"),
    "compare": (_COMPARE_Q, "{verdict}"),
    "compare_cot": (_COMPARE_Q, "{month_a} {month_b} , {verdict}"),
}
VERDICTS = ("no", "yes")  # index: the verdict is true

PRONOUNS = ("he", "she")  # by person index parity
POSSESSIVES = ("his", "her")
_SLOT = re.compile(r"^\{(\w+)\}$")


# --------------------------------------------------------------------------- templates, compiled


def _compile(text: str, named: bool) -> list[str | int]:
    """A template as a list of words (str) and slot codes (negative ints), in the named or the pronoun form."""
    out: list[str | int] = []
    for w in text.split():
        m = _SLOT.match(w)
        if m is None:
            out.append(w)
        elif m.group(1) == "S":
            out += [-1, -2, -3] if named else [-(SLOTS.index("pronoun") + 1)]
        elif m.group(1) == "P":
            out += [-1, -2, -3, "'s"] if named else [-(SLOTS.index("possessive") + 1)]
        else:
            out.append(-(SLOTS.index(m.group(1)) + 1))
    return out


def _check_templates() -> None:
    for a in ATTRIBUTES:
        assert len(TEMPLATES[a]) >= 5, a
        for t in (*TEMPLATES[a], QUESTIONS[a] + " " + _ANSWER[a]):
            slots = re.findall(r"\{(\w+)\}", t)
            assert sum(s in ("S", "P") for s in slots) == 1, t
            assert sorted(s for s in slots if s not in ("S", "P")) == sorted(VALUE_SLOTS[a]), t


_check_templates()

#: every template as ``(attribute, text)``: the biography templates of each attribute in order, then the six
#: question-answer templates
_ALL: list[tuple[int, str]] = [(i, t) for i, a in enumerate(ATTRIBUTES) for t in TEMPLATES[a]] + [
    (i, QUESTIONS[a] + " " + _ANSWER[a]) for i, a in enumerate(ATTRIBUTES)]
_OFFSET = np.cumsum([0] + [len(TEMPLATES[a]) for a in ATTRIBUTES])[:-1]  # first template of each attribute
_QA0 = sum(len(TEMPLATES[a]) for a in ATTRIBUTES)  # first question-answer template
_FORMS = [[_compile(t, False), _compile(t, True)] for _, t in _ALL]  # [template][form: 0 pronoun, 1 named]
_LENS = np.array([[len(f) for f in forms] for forms in _FORMS], dtype=np.int64)  # [G, 2]
_ANSWER_START = np.array([_FORMS[_QA0 + i][1].index("?") + 1 for i in range(len(ATTRIBUTES))])  # in the sentence
_BASE_WORDS = tuple(sorted({w for forms in _FORMS for f in forms for w in f if isinstance(w, str)}
                           | set(PRONOUNS) | set(POSSESSIVES)))  # the words of biographies and retrieval

#: a compiled manipulation item: a word, or ``(who, slot)`` with ``who`` 0 the person asked about, 1 the second
#: person of a comparison, ``slot`` an index into :data:`SLOTS` or -1 for the verdict
_Item = str | tuple[int, int]


def _compile_kind(text: str) -> list[_Item]:
    out: list[_Item] = []
    for w in text.split():
        m = _SLOT.match(w)
        s = None if m is None else m.group(1)
        if s is None:
            out.append(w)
        elif s in ("A", "B"):
            out += [(int(s == "B"), SLOTS.index(x)) for x in ("first", "middle", "last")]
        elif s == "verdict":
            out.append((0, -1))
        elif s in ("month_a", "month_b"):
            out.append((int(s == "month_b"), SLOTS.index("month")))
        else:
            out.append((0, SLOTS.index(s)))
    return out


#: each manipulation kind's question and answer, compiled, and the index of its first answer item
_KIND_ITEMS: dict[str, tuple[list[_Item], int]] = {
    k: (_compile_kind(q) + _compile_kind(a), len(_compile_kind(q))) for k, (q, a) in MANIPULATIONS.items()}


def _check_manipulations() -> None:
    assert set(MANIPULATIONS) == set(QA_KINDS) - {"retrieval"} and get_args(QaKind) == QA_KINDS
    person = {(0, SLOTS.index(s)) for a in ATTRIBUTES[:-1] for s in VALUE_SLOTS[a]}  # company city implied
    for k, (items, start) in _KIND_ITEMS.items():
        question, answer = items[:start], items[start:]
        assert question[-1] == "?", k
        if k == "inverse":
            assert sorted(i for i in question if isinstance(i, tuple)) == sorted(person), k
            assert answer == [(0, SLOTS.index(s)) for s in ("first", "middle", "last")], k
        else:
            assert answer[-1] == (0, -1) and answer.count((0, -1)) == 1, k


_check_manipulations()
#: the words only the manipulation questions use (placed after the pools in the vocabulary)
MANIPULATION_WORDS = tuple(sorted(({w for items, _ in _KIND_ITEMS.values() for w in items if isinstance(w, str)}
                                   | set(VERDICTS)) - set(_BASE_WORDS)))
#: every word of the templates, questions and answers (sorted)
TEMPLATE_WORDS = tuple(sorted(set(_BASE_WORDS) | set(MANIPULATION_WORDS)))


def _longest_bio(fullname: bool) -> int:
    """Tokens of the longest biography (``<bos>`` and ``<eos>`` included), whatever sentence comes first."""
    pron = np.array([_LENS[_OFFSET[a]:_OFFSET[a] + len(TEMPLATES[x]), 0].max() for a, x in enumerate(ATTRIBUTES)])
    named = np.array([_LENS[_OFFSET[a]:_OFFSET[a] + len(TEMPLATES[x]), 1].max() for a, x in enumerate(ATTRIBUTES)])
    content = int(named.sum()) if fullname else int(pron.sum() + (named - pron).max())
    return content + 2


def _longest_qa() -> int:
    return int(_LENS[_QA0:, 1].max()) + 2


def _longest_kind(kind: str) -> int:
    """Tokens of the longest question-answer row of ``kind`` (``<bos>`` and ``<eos>`` included)."""
    return _longest_qa() if kind == "retrieval" else len(_KIND_ITEMS[kind][0]) + 2


# --------------------------------------------------------------------------- config


class BiosConfig(TaskConfig):
    name: Literal["bios"] = "bios"
    n_people: int = Field(1000, ge=2, le=MAX_PEOPLE, description="N, individuals (at most the name triples)")
    n_first: int = Field(400, ge=1, le=100_000, description="first names")
    n_middle: int = Field(400, ge=1, le=100_000, description="middle names")
    n_last: int = Field(1000, ge=1, le=100_000, description="last names")
    n_years: int = Field(200, ge=1, le=10_000, description="birth years (x 12 months x 28 days)")
    n_cities: int = Field(200, ge=1, le=100_000, description="cities (birth cities and company cities)")
    n_universities: int = Field(300, ge=1, le=100_000, description="universities")
    n_majors: int = Field(100, ge=1, le=100_000, description="majors")
    n_employers: int = Field(263, ge=1, le=100_000, description="employers, each with one city")
    multi: int = Field(1, ge=1, le=100, description="biographies per person (bioS single = 1, multi5 = 5)")
    permute: bool = Field(False, description="shuffle each biography's sentence order (drawn once per biography)")
    fullname: bool = Field(False, description="the full name in every sentence (else he/she after the first)")
    stage: Literal["bio", "qa", "mixed"] = Field(
        "bio", description="bio: biographies of everyone; qa: questions on p_train; mixed: both (qa_fraction)")
    qa_fraction: float = Field(0.8, ge=0, le=1, description="mixed stage: chance a row is a p_train question")
    qa_kinds: list[QaKind] = Field(
        default_factory=lambda: ["retrieval"], min_length=1,
        description="question kinds drawn uniformly for QA rows and evaluated: retrieval (one attribute), inverse "
                    "(the name from all attributes), classify / classify_cot (is the birth month even), compare / "
                    "compare_cot (was A born in an earlier month than B); _cot answers state the month(s) first")
    world_seed: Seed | None = Field(None, description="seed of the world (people, biographies, split); none = the "
                                                      "run seed")
    n_eval: int = Field(256, gt=0, description="people evaluated per split (a fixed subset)")
    batch: int = Field(64, gt=0, description="rows per step when train.batch_size is none")

    @model_validator(mode="after")
    def _check(self) -> BiosConfig:
        triples = self.n_first * self.n_middle * self.n_last
        if self.n_people > triples:
            raise ValueError(f"n_people ({self.n_people}) exceeds the {triples} distinct full names "
                             f"(n_first x n_middle x n_last = {self.n_first} x {self.n_middle} x {self.n_last})")
        twice = sorted({k for k in self.qa_kinds if self.qa_kinds.count(k) > 1})
        if twice:
            raise ValueError(f"qa_kinds lists {', '.join(twice)} more than once (kinds are drawn uniformly)")
        return self

    def vocab_size(self) -> int:
        """Every token, ``<pad>`` included."""
        return (3 + len(TEMPLATE_WORDS) + self.n_first + self.n_middle + self.n_last + self.n_years + N_MONTHS
                + N_DAYS + self.n_cities + self.n_universities + self.n_majors + self.n_employers)

    def longest_row(self) -> int:
        """Tokens of the longest row of any stage and any question kind (``<bos>`` .. ``<eos>``), whatever
        ``stage`` and ``qa_kinds`` are, so that a QA child keeps its parent's ``n_ctx``; the model reads one
        fewer."""
        return max(_longest_bio(self.fullname), *(_longest_kind(k) for k in QA_KINDS))

    def stage_width(self) -> int:
        """Input length of this stage's training rows: the longest row it can draw, less one (stage ``qa``: the
        longest question of ``qa_kinds``; ``bio`` and ``mixed``: ``n_ctx``)."""
        if self.stage == "qa":
            return max(_longest_kind(k) for k in self.qa_kinds) - 1
        return self.longest_row() - 1

    def model_defaults(self) -> dict[str, Any]:
        v = self.vocab_size()
        return {"d_vocab": v, "d_vocab_out": v - 1, "n_ctx": self.longest_row() - 1, "pad_token_id": v - 1}

    def rows_per_step(self) -> int:
        return self.batch

    def data_numbers(self) -> int:
        n, w = self.n_people, self.longest_row()
        evals = min(self.n_eval, n) * (1 + 2 * len(ATTRIBUTES) + 2 * sum(k != "retrieval" for k in self.qa_kinds))
        return n * (12 + 2 * len(ATTRIBUTES) * self.multi) + 4 * evals * w


# --------------------------------------------------------------------------- information content


def pool_sizes(cfg: BiosConfig) -> dict[str, int]:
    """The number of values of each independent attribute (the company city follows from the employer, so it
    has none of its own): the birth date's ``n_years x 12 x 28``, then the birth-city, university, major and
    employer pools."""
    return {"birth_date": cfg.n_years * N_MONTHS * N_DAYS, "birth_city": cfg.n_cities,
            "university": cfg.n_universities, "major": cfg.n_majors, "employer": cfg.n_employers}


def attribute_bits(cfg: BiosConfig) -> float:
    """Bits of attribute knowledge per person in bioS with independent uniform attributes: the sum of log2 of
    :func:`pool_sizes`; the company city adds nothing (it follows from the employer).  46.59 bits at the paper's
    pools.  The quantity of Allen-Zhu & Li 2024, "Physics of Language Models: Part 3.3, Knowledge Capacity
    Scaling Laws" (arXiv 2404.05405), as worked out in SETUPS §5.3."""
    return sum(math.log2(k) for k in pool_sizes(cfg).values())


def name_bits(cfg: BiosConfig, n_people: int | None = None) -> float:
    """Bits in the choice of the N distinct full names: log2 C(n_first x n_middle x n_last, N), by
    :func:`math.lgamma` (about 1.21e6 bits for N = 1e5 at the paper's pools).  Allen-Zhu & Li 2024, Part 3.3
    (arXiv 2404.05405), SETUPS §5.3.  ``n_people`` overrides ``cfg.n_people``; raises :class:`ConfigError` when
    it is negative or exceeds the name triples."""
    n = cfg.n_people if n_people is None else int(n_people)
    m = cfg.n_first * cfg.n_middle * cfg.n_last
    if not 0 <= n <= m:
        raise ConfigError(f"name_bits: need 0 <= N <= {m} name triples (got N = {n})")
    return (math.lgamma(m + 1) - math.lgamma(n + 1) - math.lgamma(m - n + 1)) / math.log(2)


def exposures(cfg: BiosConfig, steps: int, batch_size: int | None = None) -> float:
    """Mean number of times one person's biographies (any of their ``multi``) are seen in ``steps`` training
    steps of ``batch_size`` rows (none: ``cfg.batch``): steps x B / N in the ``bio`` stage, that times (1 -
    qa_fraction) in ``mixed``, 0 in ``qa``.  The "exposures" of Allen-Zhu & Li 2024, Part 3.3 (arXiv
    2404.05405), SETUPS §5.3: the capacity ratio is about 2 bits/parameter at 1000 exposures and 1 at 100.
    Raises :class:`ConfigError` for negative steps or a batch size below 1."""
    b = cfg.batch if batch_size is None else int(batch_size)
    if steps < 0 or b < 1:
        raise ConfigError(f"exposures: need steps >= 0 and batch_size >= 1 (got {steps}, {b})")
    share = {"bio": 1.0, "mixed": 1.0 - cfg.qa_fraction, "qa": 0.0}[cfg.stage]
    return steps * b * share / cfg.n_people


# --------------------------------------------------------------------------- vocabulary and world


class Vocabulary:
    """The word tokens of a bioS world (module doc): ``<bos>`` = 0, ``<eos>`` = 1, the words of the biographies
    and the retrieval questions (sorted), then the pools (first, middle, last names, years, months, days, cities,
    universities, majors, employers), then the words only the Part 3.2 questions use (:data:`MANIPULATION_WORDS`,
    sorted; placed after the pools so that every earlier id is what it was before they were added) and ``<pad>``
    last.  ``words`` the strings, ``index`` their ids; ``first0`` .. ``employer0`` each pool's first id,
    ``manipulation0`` the first manipulation word's."""

    def __init__(self, cfg: BiosConfig):
        words = ["<bos>", "<eos>", *_BASE_WORDS]
        pools = [("first", "F", cfg.n_first), ("middle", "M", cfg.n_middle), ("last", "L", cfg.n_last),
                 ("year", None, cfg.n_years), ("month", None, N_MONTHS), ("day", None, N_DAYS),
                 ("city", "City", cfg.n_cities), ("university", "Univ", cfg.n_universities),
                 ("major", "Major", cfg.n_majors), ("employer", "Corp", cfg.n_employers)]
        self.start: dict[str, int] = {}
        for key, prefix, n in pools:
            self.start[key] = len(words)
            if key == "year":
                words += [str(FIRST_YEAR + i) for i in range(n)]
            elif key == "month":
                words += list(MONTHS)
            elif key == "day":
                words += [str(i + 1) for i in range(n)]
            else:
                words += [f"{prefix}{i}" for i in range(n)]
        self.start["manipulation"] = len(words)
        words += MANIPULATION_WORDS
        words.append("<pad>")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        if len(self.index) != len(words):
            raise ConfigError("bios: two tokens share a spelling")  # cannot happen with the built-in templates
        self.bos, self.eos, self.pad = 0, 1, len(words) - 1
        for k, v in self.start.items():
            setattr(self, f"{k}0", v)

    def __len__(self) -> int:
        return len(self.words)

    def decode(self, ids: Any, skip_pad: bool = True) -> str:
        """Space-separated words of token ids (a sequence or a 1-d tensor), ``<pad>`` left out unless
        ``skip_pad`` is false.  Raises :class:`ConfigError` for an id outside the vocabulary."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        bad = [i for i in ids if not 0 <= int(i) < len(self.words)]
        if bad:
            raise ConfigError(f"bios decode: ids {bad[:5]} are outside the vocabulary of {len(self.words)}")
        return " ".join(self.words[int(i)] for i in ids if not (skip_pad and int(i) == self.pad))

    def encode(self, text: str) -> list[int]:
        """Token ids of space-separated words.  Raises :class:`ConfigError` naming unknown words."""
        unknown = [w for w in text.split() if w not in self.index]
        if unknown:
            raise ConfigError(f"bios encode: unknown words {unknown[:5]}")
        return [self.index[w] for w in text.split()]


@dataclass(frozen=True)
class World:
    """The people of a bioS world, every array ``[N]`` int64 of pool indices unless said: names ``first``,
    ``middle``, ``last``; ``year`` (0 = 1900), ``month`` (0 = January), ``day`` (0 = the 1st); ``birth_city``,
    ``university``, ``major``, ``employer``; ``employer_city`` ``[n_employers]`` and ``company_city`` (=
    ``employer_city[employer]``); ``gender`` (index parity: 0 he, 1 she); ``templates`` ``[N, multi, 6]`` (the
    template of each attribute's sentence, per biography); ``orders`` ``[N, multi, 6]`` (the attribute at each
    sentence position; the identity unless ``permute``); ``p_train``, ``p_test`` (sorted person indices)."""

    first: np.ndarray
    middle: np.ndarray
    last: np.ndarray
    year: np.ndarray
    month: np.ndarray
    day: np.ndarray
    birth_city: np.ndarray
    university: np.ndarray
    major: np.ndarray
    employer: np.ndarray
    employer_city: np.ndarray
    company_city: np.ndarray
    gender: np.ndarray
    templates: np.ndarray
    orders: np.ndarray
    p_train: np.ndarray
    p_test: np.ndarray

    def __len__(self) -> int:
        return len(self.first)

    def profiles(self) -> np.ndarray:
        """``[N]`` int64: a label of each person's facts that the inverse question states (birth date, birth
        city, university, major, employer; the company city follows from the employer): two people share a
        label iff they share all of these."""
        facts = np.stack([self.year, self.month, self.day, self.birth_city, self.university, self.major,
                          self.employer], 1)
        if not len(facts):
            return np.zeros(0, dtype=np.int64)
        return np.unique(facts, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)

    @property
    def inverse_ambiguous(self) -> np.ndarray:
        """``[N]`` bool: whether another person shares all the facts of this person's inverse question (then
        the question has several right names; the evaluation counts only the asked person's name)."""
        label = self.profiles()
        return np.bincount(label, minlength=1)[label] > 1 if len(label) else np.zeros(0, dtype=bool)

    @property
    def inverse_collisions(self) -> float:
        """The fraction of people whose inverse question is ambiguous (:attr:`inverse_ambiguous`).  About
        ``1 - (1 - 1/K)^(N-1)`` for K = n_years x 12 x 28 x n_cities x n_universities x n_majors x n_employers
        equally likely profiles.  Measured at world seed 0: 0 at the paper's pools (K ~ 1.1e14; N = 1000 and N
        = 100 000) and in the small worlds of the tests (N = 40 and 64); 0.265 for N = 1000 with 10 cities and
        every other pool but the birth date of size 1 (K = 3360; the formula gives 0.257) and 0.958 with all of
        them of size 1 (K = 336; formula 0.949)."""
        amb = self.inverse_ambiguous
        return float(amb.mean()) if len(amb) else 0.0


def make_world(cfg: BiosConfig, seed: int) -> World:
    """The world of ``cfg`` drawn from ``seed`` (module doc).  Names, attributes, templates, sentence orders and
    the split each have their own seed stream, so e.g. ``multi`` changes the biographies but not the people.
    Raises :class:`ConfigError` when N exceeds the name triples."""
    n = cfg.n_people
    m = cfg.n_first * cfg.n_middle * cfg.n_last
    if n > m:
        raise ConfigError(f"task.n_people: {n} exceeds the {m} distinct full names")
    code = np.random.default_rng([int(seed), _NAME_SALT]).choice(m, size=n, replace=False).astype(np.int64)
    first, rest = np.divmod(code, cfg.n_middle * cfg.n_last)
    middle, last = np.divmod(rest, cfg.n_last)
    rng = np.random.default_rng([int(seed), _ATTR_SALT])
    year = rng.integers(cfg.n_years, size=n)
    month = rng.integers(N_MONTHS, size=n)
    day = rng.integers(N_DAYS, size=n)
    birth_city = rng.integers(cfg.n_cities, size=n)
    university = rng.integers(cfg.n_universities, size=n)
    major = rng.integers(cfg.n_majors, size=n)
    employer = rng.integers(cfg.n_employers, size=n)
    employer_city = rng.integers(cfg.n_cities, size=cfg.n_employers)
    k = len(ATTRIBUTES)
    trng = np.random.default_rng([int(seed), _TEMPLATE_SALT])
    templates = np.stack([trng.integers(len(TEMPLATES[a]), size=(n, cfg.multi)) for a in ATTRIBUTES], -1)
    orders = np.broadcast_to(np.arange(k), (n, cfg.multi, k)).copy()
    if cfg.permute:
        orders = np.random.default_rng([int(seed), _ORDER_SALT]).permuted(orders, axis=-1)
    perm = np.random.default_rng([int(seed), _SPLIT_SALT]).permutation(n)
    return World(first=first, middle=middle, last=last, year=year, month=month, day=day, birth_city=birth_city,
                 university=university, major=major, employer=employer, employer_city=employer_city,
                 company_city=employer_city[employer], gender=np.arange(n) % 2, templates=templates,
                 orders=orders, p_train=np.sort(perm[:n // 2]), p_test=np.sort(perm[n // 2:]))


# --------------------------------------------------------------------------- the task


@register_task
class BiosTask(Task):
    """bioS biographies and questions (module doc).

    Interface: ``world`` (:class:`World`), ``vocab`` (:class:`Vocabulary`), ``decode``; :meth:`values`,
    :meth:`facts`, :meth:`biography`, :meth:`bio_rows`, :meth:`qa_rows`, :meth:`question_rows`,
    :meth:`partners`, :meth:`train_batch`, :meth:`evaluate`; the fixed evaluation people ``eval_people``
    (``{"bio", "qa_train", "qa_test"}``, sorted index arrays) and, with a compare kind in ``qa_kinds``, their
    fixed partners ``eval_partners`` (``{"qa_train", "qa_test"}``, aligned with ``eval_people``);
    ``kind_width`` (``{kind: input width of its rows}``).
    """

    Config = BiosConfig
    cfg: BiosConfig

    def __init__(self, cfg: BiosConfig, seed: int = 0):
        super().__init__(cfg, seed)
        self.world_seed = self.seed if cfg.world_seed is None else int(cfg.world_seed)
        self.world = make_world(cfg, self.world_seed)
        self.vocab = Vocabulary(cfg)
        v = self.vocab
        g = len(_FORMS)
        width = int(_LENS.max())
        self._table = np.zeros((g, 2, width), dtype=np.int64)
        self._tags = np.full((g, 2, width), -1, dtype=np.int64)
        value_attr = {SLOTS.index(s): a for a, x in enumerate(ATTRIBUTES) for s in VALUE_SLOTS[x]}
        for i, forms in enumerate(_FORMS):
            for f, items in enumerate(forms):
                for j, w in enumerate(items):
                    if isinstance(w, str):
                        self._table[i, f, j] = v.index[w]
                    else:
                        self._table[i, f, j] = w
                        self._tags[i, f, j] = value_attr.get(-w - 1, -1)
        self.bio_width = _longest_bio(cfg.fullname) - 1
        self.qa_width = _longest_qa() - 1
        self.kind_width = {k: _longest_kind(k) - 1 for k in QA_KINDS}
        self.width = cfg.stage_width()
        rng = np.random.default_rng([self.world_seed, _EVAL_SALT])
        w = self.world
        n = len(w)
        self.eval_people = {
            "bio": np.sort(rng.choice(n, size=min(cfg.n_eval, n), replace=False)),
            "qa_train": np.sort(rng.choice(w.p_train, size=min(cfg.n_eval, len(w.p_train)), replace=False)),
            "qa_test": np.sort(rng.choice(w.p_test, size=min(cfg.n_eval, len(w.p_test)), replace=False)),
        }
        k = len(ATTRIBUTES)
        pb = self.eval_people["bio"]
        self._eval = {"bio": self.bio_rows(pb, np.zeros(len(pb), dtype=np.int64), tags=True)}
        self.eval_partners: dict[str, np.ndarray] = {}
        for i, split in enumerate(("qa_train", "qa_test")):
            p = self.eval_people[split]
            if "retrieval" in cfg.qa_kinds:
                self._eval[split] = self.qa_rows(np.repeat(p, k), np.tile(np.arange(k), len(p)))
            if any(kind.startswith("compare") for kind in cfg.qa_kinds):
                pool = p if len(np.unique(w.month[p])) > 1 else (w.p_train if i == 0 else w.p_test)
                self.eval_partners[split] = self.partners(p, pool, np.random.default_rng(
                    [self.world_seed, _PAIR_SALT, i]))
            for kind in cfg.qa_kinds:
                if kind != "retrieval":
                    self._eval[f"{split}/{kind}"] = self.question_rows(kind, p,
                                                                       partners=self.eval_partners.get(split))

    def decode(self, ids: Any, skip_pad: bool = True) -> str:
        """:meth:`Vocabulary.decode`."""
        return self.vocab.decode(ids, skip_pad)

    # ---------------------------------------------------------------- facts
    def values(self, people: np.ndarray) -> np.ndarray:
        """``[R, len(SLOTS)]`` int64: the token of each slot (:data:`SLOTS`) for each of ``people`` ``[R]``."""
        w, v = self.world, self.vocab
        p = np.asarray(people, dtype=np.int64)
        cols = [v.first0 + w.first[p], v.middle0 + w.middle[p], v.last0 + w.last[p],
                v.index["he"] + (v.index["she"] - v.index["he"]) * w.gender[p],
                v.index["his"] + (v.index["her"] - v.index["his"]) * w.gender[p],
                v.month0 + w.month[p], v.day0 + w.day[p], v.year0 + w.year[p], v.city0 + w.birth_city[p],
                v.university0 + w.university[p], v.major0 + w.major[p], v.employer0 + w.employer[p],
                v.city0 + w.company_city[p]]
        return np.stack(cols, 1)

    def facts(self, person: int) -> dict[str, list[int]]:
        """The value tokens of each attribute of ``person`` (the QA answer, e.g. ``[month, day, ',', year]``),
        and ``name``: ``[first, middle, last]``.  Raises :class:`ConfigError` for a person outside the world."""
        self._check_people(np.array([person]))
        row = self.values(np.array([person]))[0]
        out = {"name": row[:3].tolist()}
        for i in range(len(ATTRIBUTES)):
            items = self._table[_QA0 + i, 1, _ANSWER_START[i]:_LENS[_QA0 + i, 1]]
            out[ATTRIBUTES[i]] = [int(row[-c - 1]) if c < 0 else int(c) for c in items]
        return out

    def _check_people(self, people: np.ndarray) -> None:
        if len(people) and (people.min() < 0 or people.max() >= len(self.world)):
            raise ConfigError(f"bios: people must lie in 0..{len(self.world) - 1}")

    # ---------------------------------------------------------------- rows
    def _assemble(self, g: np.ndarray, form: np.ndarray, people: np.ndarray, width: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows ``<bos> sentences <eos> <pad>..`` of ``width + 1`` tokens from templates ``g`` ``[R, S]`` in
        forms ``form`` ``[R, S]`` for ``people`` ``[R]``: (tokens ``[R, width + 1]``, the attribute of each
        value token else -1 ``[R, width + 1]``, content lengths ``[R]``).  Raises :class:`ConfigError` when a row
        does not fit."""
        r = len(people)
        seg, tag, lens = self._table[g, form], self._tags[g, form], _LENS[g, form]
        keep = np.arange(seg.shape[-1]) < lens[..., None]
        flat, flat_tag = seg[keep], tag[keep]
        row_len = lens.sum(1)
        if r and int(row_len.max()) + 1 > width:
            raise ConfigError(f"bios: rows of {int(row_len.max()) + 1} input tokens do not fit width {width}")
        rows = np.repeat(np.arange(r), row_len)
        col = 1 + np.arange(len(flat)) - np.repeat(np.cumsum(row_len) - row_len, row_len)
        full = np.full((r, width + 1), self.vocab.pad, dtype=np.int64)
        tags = np.full((r, width + 1), -1, dtype=np.int64)
        full[:, 0] = self.vocab.bos
        full[rows, col] = flat
        tags[rows, col] = flat_tag
        full[np.arange(r), 1 + row_len] = self.vocab.eos
        hole_r, hole_c = np.nonzero(full < 0)
        full[hole_r, hole_c] = self.values(people)[hole_r, -full[hole_r, hole_c] - 1]
        return full, tags, row_len

    def bio_rows(self, people: np.ndarray, bios: np.ndarray, width: int | None = None, tags: bool = False) -> Batch:
        """Biography ``bios[r]`` (``0..multi-1``) of person ``people[r]``, one per row: tokens and targets
        ``[R, width]`` (default: the longest biography less one), the loss on every token after ``<bos>``;
        extras ``person`` ``[R]``, ``attribute`` ``[R]`` (-1: a biography) and, with ``tags``, ``value_attr``
        ``[R, width]`` (the attribute of each value-token *target*, else -1).  Raises :class:`ConfigError` for
        people or biographies outside the world, or a width too short."""
        p, b = np.asarray(people, dtype=np.int64), np.asarray(bios, dtype=np.int64)
        self._check_people(p)
        if len(b) and (b.min() < 0 or b.max() >= self.cfg.multi):
            raise ConfigError(f"bios: biographies must lie in 0..{self.cfg.multi - 1}")
        width = self.bio_width if width is None else width
        order = self.world.orders[p, b]  # [R, 6] attribute at each position
        tmpl = np.take_along_axis(self.world.templates[p, b], order, 1)
        g = _OFFSET[order] + tmpl
        form = np.ones_like(g) if self.cfg.fullname else (np.arange(g.shape[1]) == 0)[None, :].repeat(len(p), 0)
        full, tag, row_len = self._assemble(g, form.astype(np.int64), p, width)
        targets = np.where(np.arange(width)[None, :] <= row_len[:, None], full[:, 1:], IGNORE)
        extras = {"person": torch.from_numpy(p.copy()), "attribute": torch.full((len(p),), -1, dtype=torch.long)}
        if tags:
            extras["value_attr"] = torch.from_numpy(np.ascontiguousarray(tag[:, 1:]))
        return Batch(tokens=torch.from_numpy(np.ascontiguousarray(full[:, :-1])), targets=torch.from_numpy(targets),
                     extras=extras)

    def qa_rows(self, people: np.ndarray, attributes: np.ndarray, width: int | None = None) -> Batch:
        """The question about attribute ``attributes[r]`` (an index into :data:`ATTRIBUTES`) of person
        ``people[r]`` and its answer, one per row: tokens and targets ``[R, width]`` (default: the longest QA row
        less one), the loss on the answer tokens and ``<eos>`` only; extras ``person``, ``attribute`` ``[R]``
        and ``value_attr`` ``[R, width]`` (the attribute on the answer's targets, ``<eos>`` excluded, else -1).
        Raises :class:`ConfigError` for people or attributes out of range."""
        p, a = np.asarray(people, dtype=np.int64), np.asarray(attributes, dtype=np.int64)
        self._check_people(p)
        if len(a) and (a.min() < 0 or a.max() >= len(ATTRIBUTES)):
            raise ConfigError(f"bios: attributes must lie in 0..{len(ATTRIBUTES) - 1}")
        width = self.qa_width if width is None else width
        full, _, row_len = self._assemble((_QA0 + a)[:, None], np.ones((len(p), 1), dtype=np.int64), p, width)
        j = np.arange(width)[None, :]
        keep = (j >= _ANSWER_START[a][:, None]) & (j <= row_len[:, None])
        targets = np.where(keep, full[:, 1:], IGNORE)
        answer = np.where(keep & (j < row_len[:, None]), a[:, None], -1)  # the whole answer, a date's comma too
        return Batch(tokens=torch.from_numpy(np.ascontiguousarray(full[:, :-1])), targets=torch.from_numpy(targets),
                     extras={"person": torch.from_numpy(p.copy()), "attribute": torch.from_numpy(a.copy()),
                             "value_attr": torch.from_numpy(answer)})

    def partners(self, people: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each of ``people`` ``[R]``, a member of ``pool`` (person indices) drawn uniformly among those born
        in another calendar month (so never the person): ``[R]`` int64, the second person of a comparison.
        Raises :class:`ConfigError` for people outside the world, or when some person has no such member (the
        pool holds one birth month only: a tiny world)."""
        p, pool = np.asarray(people, dtype=np.int64), np.asarray(pool, dtype=np.int64)
        self._check_people(p)
        self._check_people(pool)
        month = self.world.month
        pm = month[pool]
        ranked = pool[np.argsort(pm, kind="stable")]
        counts = np.bincount(pm, minlength=N_MONTHS)
        starts = np.cumsum(counts) - counts
        m = month[p]
        others = len(pool) - counts[m]
        if len(p) and int(others.min()) == 0:
            raise ConfigError("bios: a comparison needs two people born in different months, and the pool of "
                              f"{len(pool)} people has one birth month only (a larger world or n_eval)")
        u = rng.integers(np.maximum(others, 1)) if len(p) else np.zeros(0, dtype=np.int64)
        return ranked[np.where(u >= starts[m], u + counts[m], u)]

    def question_rows(self, kind: str, people: np.ndarray, attributes: np.ndarray | None = None,
                      partners: np.ndarray | None = None, width: int | None = None) -> Batch:
        """One question of ``kind`` (:data:`QA_KINDS`) about ``people[r]`` per row, with its answer: tokens and
        targets ``[R, width]`` (default: ``kind_width[kind]``, the kind's row less one), the loss on the answer
        tokens and ``<eos>`` only.  ``retrieval`` is :meth:`qa_rows` (``attributes`` ``[R]`` required); the
        manipulations (module doc, :data:`MANIPULATIONS`): ``inverse`` answers with the name, ``classify`` with
        ``yes`` iff the birth month is even (January = 1 is odd), ``compare`` with ``yes`` iff ``people[r]`` was
        born in an earlier calendar month than ``partners[r]`` (``[R]``, required for the compare kinds, each
        born in another month than its person; ignored otherwise); the ``_cot`` kinds state the month(s), then
        ``,`` and the verdict.  Extras ``person``, ``partner`` (-1 where none), ``attribute`` (the retrieval
        attribute; -2 for a manipulation), ``kind`` (index into :data:`QA_KINDS`) ``[R]``, and ``answer_part``
        ``[R, width]``: on the answer's targets (``<eos>`` excluded) 1 for the verdict and 0 for the other answer
        tokens, else -1 (retrieval also keeps :meth:`qa_rows`' ``value_attr``).  Raises :class:`ConfigError` for
        an unknown kind, people or partners outside the world, missing ``attributes`` or ``partners``, a
        partner born in the person's month, or a width too short."""
        if kind not in QA_KINDS:
            raise ConfigError(f"bios: unknown question kind {kind!r} (one of {', '.join(QA_KINDS)})")
        p = np.asarray(people, dtype=np.int64)
        self._check_people(p)
        r = len(p)
        if kind == "retrieval":
            if attributes is None:
                raise ConfigError("bios: retrieval questions need their attributes")
            b = self.qa_rows(p, attributes, width)
            b.extras.update(partner=torch.full((r,), -1, dtype=torch.long),
                            kind=torch.zeros(r, dtype=torch.long),
                            answer_part=torch.where(b.extras["value_attr"] >= 0, 0, -1))
            return b
        items, start = _KIND_ITEMS[kind]
        n = len(items)
        width = self.kind_width[kind] if width is None else width
        if n + 1 > width:
            raise ConfigError(f"bios: rows of {n + 1} input tokens do not fit width {width}")
        month = self.world.month
        q, partner = p, np.full(r, -1, dtype=np.int64)
        if kind.startswith("compare"):
            if partners is None:
                raise ConfigError(f"bios: {kind} questions need partners")
            q = partner = np.asarray(partners, dtype=np.int64)
            if q.shape != p.shape:
                raise ConfigError(f"bios: {len(q)} partners for {r} people")
            self._check_people(q)
            if bool((month[q] == month[p]).any()):
                raise ConfigError("bios: a compared pair must be born in different months")
            verdict = month[p] < month[q]
        else:
            verdict = (month[p] + 1) % 2 == 0  # January is month 1 (odd)
        v = self.vocab
        vals = (self.values(p), self.values(q))
        cols = [np.full(r, v.index[it], dtype=np.int64) if isinstance(it, str)
                else np.where(verdict, v.index[VERDICTS[1]], v.index[VERDICTS[0]]) if it[1] < 0
                else vals[it[0]][:, it[1]] for it in items]
        full = np.full((r, width + 1), v.pad, dtype=np.int64)
        full[:, 0] = v.bos
        full[:, 1:n + 1] = np.stack(cols, 1)
        full[:, n + 1] = v.eos
        j = np.arange(width)
        targets = np.where(((j >= start) & (j <= n))[None, :], full[:, 1:], IGNORE)
        part = np.full((r, width), -1, dtype=np.int64)
        part[:, start:n] = 0
        part[:, [i for i, it in enumerate(items) if it == (0, -1)]] = 1
        return Batch(tokens=torch.from_numpy(np.ascontiguousarray(full[:, :-1])), targets=torch.from_numpy(targets),
                     extras={"person": torch.from_numpy(p.copy()), "partner": torch.from_numpy(partner.copy()),
                             "attribute": torch.full((r,), -2, dtype=torch.long),
                             "kind": torch.full((r,), QA_KINDS.index(kind), dtype=torch.long),
                             "answer_part": torch.from_numpy(part)})

    def biography(self, person: int, index: int = 0) -> tuple[list[int], list[int]]:
        """Biography ``index`` of ``person`` without ``<bos>``/``<eos>``: (token ids, the attribute of each
        token's value, -1 for other tokens)."""
        b = self.bio_rows(np.array([person]), np.array([index]), tags=True)
        n = int((b.targets[0] != IGNORE).sum()) - 1
        return b.targets[0, :n].tolist(), b.extras["value_attr"][0, :n].tolist()

    # ---------------------------------------------------------------- training data
    def train_batch(self, step: int, batch_size: int | None) -> Batch:
        """``batch_size`` (default ``cfg.batch``) fresh rows of the stage (module doc), ``[B, stage_width]``;
        extras ``person``, ``attribute`` (-1: a biography, -2: a manipulation question), ``kind`` (-1: a
        biography, else the index into :data:`QA_KINDS`) and ``partner`` (the second person of a comparison,
        else -1) ``[B]``.  Each question's kind is drawn uniformly from ``qa_kinds`` (no draw when there is one
        kind, so a retrieval-only config draws exactly the rows it drew before the kinds existed); a comparison's
        second person is uniform over the ``p_train`` people of another birth month."""
        cfg, w = self.cfg, self.world
        rows = batch_size or cfg.batch
        rng = step_rng(self.seed, step)
        if cfg.stage == "bio":
            qa = np.zeros(rows, dtype=bool)
        elif cfg.stage == "qa":
            qa = np.ones(rows, dtype=bool)
        else:
            qa = rng.random(rows) < cfg.qa_fraction
        n_qa = int(qa.sum())
        people = np.empty(rows, dtype=np.int64)
        people[qa] = w.p_train[rng.integers(len(w.p_train), size=n_qa)]
        people[~qa] = rng.integers(len(w), size=rows - n_qa)
        attr = rng.integers(len(ATTRIBUTES), size=n_qa)
        bios = rng.integers(cfg.multi, size=rows - n_qa)
        kinds = cfg.qa_kinds
        pick = rng.integers(len(kinds), size=n_qa) if len(kinds) > 1 else np.zeros(n_qa, dtype=np.int64)
        where_qa, asked = np.nonzero(qa)[0], people[qa]
        parts = []
        for i, kind in enumerate(kinds):
            sel = pick == i
            if sel.any():
                mates = self.partners(asked[sel], w.p_train, rng) if kind.startswith("compare") else None
                parts.append((where_qa[sel], self.question_rows(kind, asked[sel], attr[sel], mates)))
        if rows - n_qa:
            parts.append((np.nonzero(~qa)[0], self.bio_rows(people[~qa], bios)))
        tokens = torch.full((rows, self.width), self.vocab.pad, dtype=torch.long)
        targets = torch.full((rows, self.width), IGNORE, dtype=torch.long)
        attribute = torch.full((rows,), -1, dtype=torch.long)
        kind_of = torch.full((rows,), -1, dtype=torch.long)
        partner = torch.full((rows,), -1, dtype=torch.long)
        for where, part in parts:
            idx = torch.from_numpy(where)
            t = part.tokens.shape[1]
            tokens[idx, :t], targets[idx, :t] = part.tokens, part.targets
            attribute[idx] = part.extras["attribute"]
            if "kind" in part.extras:
                kind_of[idx], partner[idx] = part.extras["kind"], part.extras["partner"]
        return Batch(tokens=tokens, targets=targets, extras={"person": torch.from_numpy(people),
                                                             "attribute": attribute, "kind": kind_of,
                                                             "partner": partner})

    def eval_sets(self) -> dict[str, Batch]:
        """The fixed evaluation rows: ``bio`` (first biographies); with ``retrieval`` in ``qa_kinds``,
        ``qa_train`` and ``qa_test`` (6 questions per person); for each other kind ``qa_train/<kind>`` and
        ``qa_test/<kind>`` (one question per person; a comparison pairs each person with ``eval_partners``)."""
        return dict(self._eval)

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def _score(self, model: torch.nn.Module, batch: Batch, device: Any, dtype: Any, eval_bs: int,
               tag_key: str = "value_attr", n_tags: int = len(ATTRIBUTES)) -> tuple[np.ndarray, float, float]:
        """Teacher-forced: per row and tag ``0..n_tags-1`` of ``extras[tag_key]`` (the attributes, or the
        answer parts) whether every target so tagged is the argmax (``[R, n_tags]`` bool; true where the row has
        none), the summed loss (nats) and the number of loss tokens."""
        ok, nll_sum, count = [], 0.0, 0.0
        for i in range(0, len(batch), max(1, eval_bs)):
            part = batch.index(slice(i, i + eval_bs)).to(device or "cpu", dtype)
            logits = self.forward(model, part)
            tgt = part.targets
            mask = tgt != IGNORE
            right = logits.argmax(-1) == tgt
            tag = part.extras[tag_key]
            ok.append(torch.stack([(right | (tag != a)).all(-1) for a in range(n_tags)], 1).cpu())
            lp = torch.log_softmax(logits.double(), -1)
            nll = -lp.gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1)
            nll_sum += float((nll * mask).sum())
            count += float(mask.sum())
        return torch.cat(ok).numpy(), nll_sum, count

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, device: Any, dtype: Any, eval_bs: int) -> dict[str, float]:
        """With ``retrieval`` in ``qa_kinds``: ``qa_train/*``, ``qa_test/*`` (``accuracy``, one key per
        attribute, ``loss``); for each other kind ``qa_<split>/<kind>`` (exact match of the whole answer), and
        for the ``_cot`` kinds ``qa_<split>/<kind>_final`` (the verdict alone, given the true months); always
        ``bio/*`` (``accuracy``, per attribute, ``loss``): module doc.  Teacher-forced, in chunks of ``eval_bs``
        rows."""
        out: dict[str, float] = {}
        for split in ("qa_train", "qa_test"):
            if split in self._eval:
                b = self._eval[split]
                ok, nll, cnt = self._score(model, b, device, dtype, eval_bs)
                attr = b.extras["attribute"].numpy()
                hit = ok[np.arange(len(attr)), attr]
                out[f"{split}/accuracy"] = float(hit.mean())
                for i, a in enumerate(ATTRIBUTES):
                    out[f"{split}/{a}"] = float(hit[attr == i].mean())
                out[f"{split}/loss"] = nll / max(cnt, 1.0)
            for kind in self.cfg.qa_kinds:
                if kind == "retrieval":
                    continue
                ok, _, _ = self._score(model, self._eval[f"{split}/{kind}"], device, dtype, eval_bs, "answer_part", 2)
                out[f"{split}/{kind}"] = float((ok[:, 0] & ok[:, 1]).mean())
                if kind.endswith("_cot"):
                    out[f"{split}/{kind}_final"] = float(ok[:, 1].mean())
        ok, nll, cnt = self._score(model, self._eval["bio"], device, dtype, eval_bs)
        out["bio/accuracy"] = float(ok.mean())
        for i, a in enumerate(ATTRIBUTES):
            out[f"bio/{a}"] = float(ok[:, i].mean())
        out["bio/loss"] = nll / max(cnt, 1.0)
        return out


__all__ = ["ATTRIBUTES", "BiosConfig", "BiosTask", "MANIPULATIONS", "MANIPULATION_WORDS", "MONTHS", "QA_KINDS",
           "QUESTIONS", "SLOTS", "TEMPLATES", "TEMPLATE_WORDS", "VALUE_SLOTS", "VERDICTS", "Vocabulary", "World",
           "attribute_bits", "exposures", "make_world", "name_bits", "pool_sizes"]
