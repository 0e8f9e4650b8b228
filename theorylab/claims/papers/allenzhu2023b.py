"""Allen-Zhu & Li (2023), "Physics of Language Models: Part 3.2, Knowledge Manipulation" (arXiv 2309.14402),
on the ``bios`` task, with the protocol of :mod:`theorylab.claims.papers.allenzhu2023a`.

* ``allenzhu2023b.inverse_search_fails``: pre-trained on augmented biographies and fine-tuned on forward
  questions ("What is the birth city of <name>?") and inverse ones ("Who was born on <date> in <city>, studied
  <major> at <university> and worked for <employer>?") about half of the people, a model answers the forward
  questions about the other half but not the inverse ones: the paper's "virtually 0%" inverse search, even when
  the knowledge is stored and extractable forward.

The same fine-tuning also trains classification ("Was <name> born in an even month?") with and without a chain
of thought (the month first); their held-out accuracies are reported beside the rule (Part 3.2's finding:
classification works only with the chain of thought in training and at test).
"""

from __future__ import annotations

from typing import Any

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, all_of, fitted
from theorylab.claims.citations import ALLENZHU2023B as CITATION
from theorylab.claims.papers.allenzhu2023a import DEVIATIONS, EXTRACTS, FITS_QA, MEMORISED, SEEDS, TIERS, bios_config

KINDS = ("retrieval", "inverse", "classify", "classify_cot")
INVERSE_NEAR_ZERO = 0.05  # held-out inverse search at most 5%: "virtually 0%" (a uniform guess of a name: 1/N)


@register_claim
class InverseSearchFails(Claim):
    id = "allenzhu2023b.inverse_search_fails"
    title = "Inverse knowledge search fails where forward retrieval of the same facts works"
    citation = CITATION
    tiers = TIERS
    seeds = SEEDS
    deviations = {**DEVIATIONS,
                  "inverse question": "ours states all five stored facts and asks for the full name; the paper's "
                                      "asks for the person with given attributes in several forms",
                  "fine-tuning": "one fine-tuning on four question kinds at once (retrieval, inverse, classify with "
                                 "and without CoT), twice the 3.1 fine-tuning's steps; the paper fine-tunes each "
                                 "task on its own"}
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
    extra_quantities = ("classify", "classify_cot", "classify_cot_final")

    def experiment(self, tier, seed):
        t = self.params(tier)
        pre = bios_config(t, seed, "bio", True, t["aug_steps"], t["lr"], setup="bios-pretrain-augmented")
        return {"pretrain_augmented": pre,
                "manipulation": bios_config(t, seed, "qa", True, 2 * t["qa_steps"], t["qa_lr"], parent=pre,
                                            qa_kinds=KINDS, setup="bios-manipulation")}

    def measure(self, tier, seed, runs) -> dict[str, Any]:
        f = runs["manipulation"].final
        return {"forward_extraction": float(f["qa_test/accuracy"]), "inverse_extraction": float(f["qa_test/inverse"]),
                "classify": float(f["qa_test/classify"]), "classify_cot": float(f["qa_test/classify_cot"]),
                "classify_cot_final": float(f["qa_test/classify_cot_final"]),
                "memorised": float(runs["pretrain_augmented"].final["bio/accuracy"]),
                "inverse_fit": float(f["qa_train/inverse"]), "forward_fit": float(f["qa_train/accuracy"])}
