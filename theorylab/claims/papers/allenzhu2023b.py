"""Allen-Zhu & Li (2023), "Physics of Language Models: Part 3.2, Knowledge Manipulation" (arXiv 2309.14402),
on the ``bios`` task, with the protocol of :mod:`theorylab.claims.papers.allenzhu2023a`.

Both claims read one run family: the augmented pre-training of Part 3.1 (``pretrain_augmented``, the same run)
and one fine-tuning of it (``manipulation``) on the questions of :data:`KINDS` about the ``p_train`` half of the
people, drawn uniformly; every kind is scored on both halves (``qa_train/<kind>``, ``qa_test/<kind>``).

* ``allenzhu2023b.inverse_search_fails``: the model answers the forward questions ("What is the birth city of
  <name>?") about the held-out half but not the inverse ones ("Who was born on <date> in <city>, studied <major>
  at <university> and worked for <employer>?"): the paper's "virtually 0%" inverse search, even when the
  knowledge is stored and extractable forward (§5 Result 7).
* ``allenzhu2023b.manipulation_needs_cot``: about the held-out half, classification ("Was <name> born in an even
  month?") and comparison ("Was A born in an earlier month than B?") answered directly stay near chance, while
  with a chain of thought in training and at test (the month(s) first, then the verdict) they are answered
  (§4 Results 3-4).

**The paper's numbers** (arXiv 2309.14402 v2, read in a stored copy of its text): models pre-trained on bioS
multi5 + permute retrieve birth dates of held-out people at nearly 100%.  Without CoT, "is the birth month even"
needs 10,000 trained people to reach 75% held-out accuracy and ranking months 50,000 to reach 85% (Result 3);
training with hints does not help answering without them (Result 4); with a hint at test the even-month question
reaches 94.2% (hint accuracy 91.0%, §4 footnote 15).  Inverse search is near 0% for every augmentation, even with
mixed training (Result 7).  The paper LoRA-fine-tunes each task on its own with hints on half the questions; we
fine-tune one model on all kinds at once (``deviations``).
"""

from __future__ import annotations

from typing import Any

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Evidence, all_of, fitted, happened
from theorylab.claims.citations import ALLENZHU2023B as CITATION
from theorylab.claims.papers.allenzhu2023a import (
    DEVIATIONS,
    EXTRACTS,
    FITS_QA,
    MEMORISED,
    NEAR_GUESS,
    SEEDS,
    TIERS,
    _fmt,
    bios_config,
    protocol_runs,
)

KINDS = ("retrieval", "inverse", "classify", "classify_cot", "compare", "compare_cot")
VERDICTS = ("classify", "classify_cot", "compare", "compare_cot")  # the yes/no kinds
# Fine-tuning steps per question kind, in units of the 3.1 fine-tuning's qa_steps: each kind gets half of its rows,
# as in the first four-kind run (twice qa_steps for four kinds); six kinds: three times qa_steps.
STEPS_PER_KIND = 0.5
INVERSE_NEAR_ZERO = 0.05  # held-out inverse search at most 5%: "virtually 0%" (a uniform guess of a name: 1/N)
# "Near chance" for a yes/no question: at most 10 points above the know-nobody verdict (verdict_guess, about 0.5).
# The 10 points of the 3.1 claims' "near 0%" band; a chance-level model's accuracy on the quick tier's 100 held-out
# questions has a binomial sd of 0.05, so it stays inside 0.1 in about 95% of seeds; and the paper needs 10,000
# trained people for 75% on the even month without CoT (Result 3), 100 times our quick tier's 100.
NEAR_CHANCE = NEAR_GUESS
# "Answered with CoT": the whole CoT answer (the month(s) and the verdict) exact for at least half of the held-out
# questions, the bar of EXTRACTS.  It is a lower bound on the paper's "test acc (with hint)", which also counts a
# right verdict after a wrong month; by the paper's own account (footnote 15: a wrong hint leaves a coin flip) it
# means a verdict accuracy of at least 0.5 + 0.5 x 0.5 = 0.75, above the 0.6 the no-CoT criterion allows.
COT_WORKS = EXTRACTS

MANIPULATION_DEVIATIONS = {
    **DEVIATIONS,
    "fine-tuning": "one full fine-tuning on six question kinds at once (retrieval, inverse search, classification and "
                   "comparison with and without CoT, drawn uniformly), each kind getting half the rows of the 3.1 "
                   "fine-tuning; the paper LoRA-fine-tunes each task on its own, with hints on half of its questions",
    "pre-training": "multi5 + permute + fullname (the 3.1 augmentation claim's run) vs the paper's multi5 + permute",
}


def manipulation_runs(t, seed: int) -> dict[str, Any]:
    """The family of both claims: ``pretrain_augmented`` (the 3.1 protocol's run: :func:`protocol_runs`, so the
    store trains it once for every claim) and its child ``manipulation``, fine-tuned on :data:`KINDS` about the
    ``p_train`` people for ``len(KINDS) * STEPS_PER_KIND * qa_steps`` steps at ``qa_lr``."""
    pre = protocol_runs(t, seed, ("pretrain_augmented",))["pretrain_augmented"]
    steps = round(len(KINDS) * STEPS_PER_KIND * t["qa_steps"])
    return {"pretrain_augmented": pre,
            "manipulation": bios_config(t, seed, "qa", "augmented", steps, t["qa_lr"], parent=pre, qa_kinds=KINDS,
                                        setup="bios-manipulation")}


def manipulation_quantities(runs) -> dict[str, Any]:
    """Every quantity the 3.2 claims read from the family: held-out (``qa_test``) accuracy per kind
    (``forward_extraction`` for retrieval, ``inverse_extraction``, ``classify``, ``classify_cot``, ``compare``,
    ``compare_cot``, the CoT kinds' verdict given the true months ``<kind>_final``), the know-nobody verdicts
    ``<kind>_guess`` and ``<kind>_above_chance`` for the direct kinds, the premises (``memorised``,
    ``forward_fit``, ``inverse_fit``, ``manipulation_fit_min``: the lowest ``qa_train`` accuracy of the yes/no
    kinds) and, as a series, ``kinds``: per kind its trained and held-out accuracies and chance level."""
    from theorylab.measures.knowledge import guess_accuracy, verdict_guess

    run = runs["manipulation"]
    f, task = run.final, run.task()
    kinds: dict[str, dict[str, float]] = {
        "retrieval": {"train": float(f["qa_train/accuracy"]), "test": float(f["qa_test/accuracy"]),
                      "guess": guess_accuracy(task, "qa_test")},
        "inverse": {"train": float(f["qa_train/inverse"]), "test": float(f["qa_test/inverse"]),
                    "guess": 1.0 / len(task.world)}}
    for k in VERDICTS:
        kinds[k] = {"train": float(f[f"qa_train/{k}"]), "test": float(f[f"qa_test/{k}"]),
                    "guess": verdict_guess(task, k, "qa_test")}
        if k.endswith("_cot"):
            kinds[k]["final"] = float(f[f"qa_test/{k}_final"])
    out: dict[str, Any] = {"forward_extraction": kinds["retrieval"]["test"],
                           "inverse_extraction": kinds["inverse"]["test"]}
    for k in VERDICTS:
        out[k] = kinds[k]["test"]
        if k.endswith("_cot"):
            out[f"{k}_final"] = kinds[k]["final"]
        else:
            out[f"{k}_guess"] = kinds[k]["guess"]
            out[f"{k}_above_chance"] = kinds[k]["test"] - kinds[k]["guess"]
    out.update({"memorised": float(runs["pretrain_augmented"].final["bio/accuracy"]),
                "forward_fit": kinds["retrieval"]["train"], "inverse_fit": kinds["inverse"]["train"],
                "manipulation_fit_min": min(kinds[k]["train"] for k in VERDICTS), "kinds": kinds})
    return out


class _Manipulation(Claim):
    citation = CITATION
    tiers = TIERS
    seeds = SEEDS
    deviations = MANIPULATION_DEVIATIONS

    def experiment(self, tier, seed):
        return manipulation_runs(self.params(tier), seed)

    def measure(self, tier, seed, runs) -> dict[str, Any]:
        return manipulation_quantities(runs)

    def tables(self, evidence: Evidence) -> dict[str, dict[str, Any]]:
        rows = []
        for s in evidence.seeds:
            for kind, v in evidence.series.get(s, {}).get("kinds", {}).items():
                rows.append([s, kind, _fmt(v.get("train")), _fmt(v.get("test")), _fmt(v.get("final")),
                             _fmt(v.get("guess"))])
        return {"manipulation": {
            "columns": ["seed", "question kind", "trained people", "held-out people",
                        "held-out verdict given the true month(s)",
                        "know-nobody answer on held-out (CoT kinds: the verdict alone)"],
            "rows": rows,
            "note": "teacher-forced exact match of the whole answer after one fine-tuning on every kind; the CoT "
                    "kinds' answer is the month(s) then the verdict; know-nobody: retrieval's guess_accuracy, 1/N "
                    "for a name, verdict_guess for yes/no"}}


@register_claim
class InverseSearchFails(_Manipulation):
    id = "allenzhu2023b.inverse_search_fails"
    title = "Inverse knowledge search fails where forward retrieval of the same facts works"
    deviations = {**MANIPULATION_DEVIATIONS,
                  "inverse question": "ours states all five stored facts and asks for the full name; the paper's "
                                      "asks for the person with given attributes in several forms"}
    decides = "the full tier, or longer pre-training so that forward retrieval generalises at this size"
    statement = ("Pre-trained on augmented biographies and fine-tuned on forward and inverse questions about half of "
                 "the people, a model answers forward questions about the other half (it can extract their facts) "
                 "but names almost none of them from their facts (inverse search).")
    rule = all_of(
        Criterion("forward_extraction", ">=", EXTRACTS,
                  why="the control: forward retrieval extracts most held-out facts (the paper: near 100% on "
                      "augmented data)"),
        Criterion("inverse_extraction", "<=", INVERSE_NEAR_ZERO,
                  why="'virtually 0%' inverse search on held-out people, at most 5%"),
        premises=[fitted("memorised", MEMORISED, name="the pre-training memorised the biographies",
                         why="bio/accuracy >= 0.9: the facts are stored"),
                  fitted("inverse_fit", FITS_QA, name="inverse search was learned for the trained people",
                         why="qa_train/inverse >= 0.9: the failure is one of extraction, not of the question"),
                  fitted("forward_fit", FITS_QA, name="forward questions were learned for the trained people",
                         why="qa_train/accuracy >= 0.9")],
    )
    extra_quantities = ("classify", "classify_cot", "classify_cot_final", "compare", "compare_cot",
                        "compare_cot_final")


@register_claim
class ManipulationNeedsCot(_Manipulation):
    id = "allenzhu2023b.manipulation_needs_cot"
    title = "Classification and comparison of stored knowledge work only with a chain of thought"
    decides = "the full tier, or longer pre-training so that forward retrieval generalises at this size"
    statement = ("Pre-trained on augmented biographies and fine-tuned on questions about half of the people, a model "
                 "asked about the other half whether a person was born in an even month, or in an earlier month "
                 "than another, answers near chance when it must answer at once, but answers most of them when it "
                 "states the month(s) first, as it was trained to.")
    deviations = {**MANIPULATION_DEVIATIONS,
                  "questions": "ours: 'does A have a birthday in an even month ?' and 'does A have a birthday in an "
                               "earlier month than B ?' (pairs born in different months, calendar months only); "
                               "the paper's: the even month and ranking months ('born in a month later than')",
                  "CoT score": "the whole CoT answer (month(s) and verdict) teacher-forced, a lower bound on the "
                               "paper's test accuracy with hint, which also counts a right verdict after a wrong "
                               "month; the verdict given the true months is reported beside it",
                  "trained people": "100 trained people at the quick tier (5,000 at the full tier) vs the paper's "
                                    "2,500-50,000; its no-CoT accuracy rises with them (75% at 10,000 for the even "
                                    "month, 85% at 50,000 for ranking months), so 'near chance' is its prediction "
                                    "for our small tiers"}
    rule = all_of(
        Criterion("classify_above_chance", "<=", NEAR_CHANCE,
                  why="'is the birth month even?' answered directly: within 10 points of the know-nobody verdict "
                      "(the paper: far below what 12 months need; 75% only at 10,000 trained people)"),
        Criterion("compare_above_chance", "<=", NEAR_CHANCE,
                  why="'born in an earlier month than B?' answered directly: within 10 points of the know-nobody "
                      "verdict (the paper: ranking months needs 50,000 trained people for 85%)"),
        Criterion("classify_cot", ">=", COT_WORKS,
                  why="with the month first, most held-out questions answered exactly, month and verdict (the "
                      "paper: 94.2% with a hint, §4 footnote 15)"),
        Criterion("compare_cot", ">=", COT_WORKS,
                  why="with both months first, most held-out comparisons answered exactly, months and verdict "
                      "(the paper, Result 4: accuracy follows the hint's)"),
        premises=[fitted("memorised", MEMORISED, name="the pre-training memorised the biographies",
                         why="bio/accuracy >= 0.9: the months are stored"),
                  fitted("forward_fit", FITS_QA, name="forward questions were learned for the trained people",
                         why="qa_train/accuracy >= 0.9"),
                  fitted("manipulation_fit_min", FITS_QA, name="every yes/no question was learned for the trained "
                                                               "people",
                         why="qa_train >= 0.9 for classification and comparison, with and without CoT: a direct "
                             "answer failing on held-out people is a failure to manipulate, not to learn the "
                             "question"),
                  happened("forward_extraction", ">=", EXTRACTS,
                           name="forward retrieval extracts the held-out people's facts",
                           why="qa_test/accuracy >= 0.5: manipulating knowledge can only be judged where it can be "
                               "retrieved at all (the paper's models retrieve held-out birth dates at ~100%)")],
    )
    extra_quantities = ("classify_guess", "compare_guess", "classify", "compare", "classify_cot_final",
                        "compare_cot_final")

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        from theorylab.figures.knowledge import accuracy_bars

        values = {"classify": evidence.values("classify"), "classify CoT": evidence.values("classify_cot"),
                  "compare": evidence.values("compare"), "compare CoT": evidence.values("compare_cot")}
        guesses = evidence.values("classify_guess") + evidence.values("compare_guess")
        lines = {"know-nobody verdict": sum(guesses) / len(guesses) if guesses else float("nan"),
                 "CoT threshold": COT_WORKS}
        return {"manipulation": accuracy_bars(values, "held-out accuracy (whole answer, exact)", lines,
                                              "Yes/no questions about held-out people, with and without CoT")}
