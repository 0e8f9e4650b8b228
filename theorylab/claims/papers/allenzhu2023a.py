"""Allen-Zhu & Li (2023), "Physics of Language Models: Part 3.1, Knowledge Storage and Extraction"
(arXiv 2309.14316), on the ``bios`` task (synthetic biographies, ``docs/knowledge.md``).

The protocol: a world of N people; questions ("What is the birth city of <name>?") are trained for the
``p_train`` half and asked about the ``p_test`` half, whose biographies the model has seen but whose questions
it has not.  Held-out QA accuracy (``qa_test/accuracy``) is what the paper calls extraction.

* ``allenzhu2023a.augmentation_makes_knowledge_extractable``: pre-train on biographies, then fine-tune on the
  questions (a child run, ``parent`` = the pre-trained run).  Without augmentation (one biography a person,
  bioS single) held-out accuracy stays at the guess level; with multi5 + permute + fullname it is high.
* ``allenzhu2023a.mixed_training_extracts``: biographies and questions in one training run (mixed training)
  extract the held-out people's knowledge from the same single biographies that pre-train-then-fine-tune does
  not.

Both are negative-and-positive pairs in one run family: the positive arm is the control that the protocol can
extract at this size at all.  Premises: every pre-training memorised the biographies (``bio/accuracy``, the
value tokens of each person's first biography, teacher-forced) and every model answers the questions it was
trained on (``qa_train/accuracy``); a failed premise makes the verdict inconclusive.

The paper's numbers (abstract and Fig. 2 as summarised in ``../shared/SETUPS.md`` §5): N = 100,000 people,
GPT-2 small (12 layers, width 768) with rotary positions, 1,000 exposures; held-out QA 9.7% for bioS single
against 96.2% for multi5 + permute + fullname after fine-tuning.  Every tier here is far smaller; none is
faithful, so a failed criterion makes these verdicts inconclusive, never refuted.
"""

from __future__ import annotations

from typing import Any

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Evidence, Tier, all_of, fitted, tiers_of
from theorylab.claims.citations import ALLENZHU2023A as CITATION


class BiosTier(Tier):
    """A bios world and its training budgets: ``n_people`` people with every pool (names and attributes) of
    ``pool`` values, a decoder of ``n_layers`` x ``d_model`` with ``n_heads`` heads; ``bio_steps`` of
    pre-training on single biographies (``aug_steps`` on the augmented ones, five per person), ``qa_steps`` of
    fine-tuning on the questions at ``qa_lr``, ``mixed_steps`` of mixed training; ``batch_size`` rows a step at
    ``lr``; ``n_eval`` people evaluated per split."""

    n_people: int
    pool: int
    n_layers: int
    d_model: int
    n_heads: int
    bio_steps: int
    aug_steps: int
    qa_steps: int
    mixed_steps: int
    batch_size: int
    lr: float
    qa_lr: float
    n_eval: int


TIERS: dict[str, Tier] = tiers_of(BiosTier, {
    "smoke": {"n_people": 24, "pool": 4, "n_layers": 1, "d_model": 16, "n_heads": 2, "bio_steps": 30,
              "aug_steps": 30, "qa_steps": 20, "mixed_steps": 40, "batch_size": 16, "lr": 3e-3, "qa_lr": 1e-3,
              "n_eval": 12},
    # the bios_mixed / bios_pretrain presets' world (docs/knowledge.md): 200 people, pools of 10, 2 x 64.  The
    # budgets are those of the pilots there: 2,000 single-biography steps (about 640 exposures a person),
    # 4,000 augmented ones (the same 640 a biography set), 600 fine-tuning steps, 4,000 mixed steps.
    "quick": {"n_people": 200, "pool": 10, "n_layers": 2, "d_model": 64, "n_heads": 4, "bio_steps": 2000,
              "aug_steps": 4000, "qa_steps": 600, "mixed_steps": 4000, "batch_size": 64, "lr": 3e-3,
              "qa_lr": 1e-3, "n_eval": 100},
    # a GPU's size: 10,000 people at the paper's pools, a 4 x 256 decoder, about 1,000 exposures a person
    "full": {"n_people": 10000, "pool": 0, "n_layers": 4, "d_model": 256, "n_heads": 8, "bio_steps": 160000,
             "aug_steps": 160000, "qa_steps": 10000, "mixed_steps": 200000, "batch_size": 64, "lr": 1e-3,
             "qa_lr": 3e-4, "n_eval": 1000},
})
SEEDS = {"smoke": 2, "quick": 3, "full": 3}

# thresholds (fixed before any run of these claims)
MEMORISED = 0.9  # bio/accuracy: the biographies' values are known before extraction is judged (the paper: ~100%)
FITS_QA = 0.9  # qa_train/accuracy: the model answers the questions it was trained on
NEAR_GUESS = 0.1  # held-out accuracy at most 10 points above the know-nobody guess: "near 0%" (paper 9.7%)
EXTRACTS = 0.5  # held-out accuracy at least 0.5: most of the held-out facts extracted ("high": paper 96.2%)

DEVIATIONS = {
    "scale": "N = 200 people, pools of 10 values, a 2-layer width-64 decoder at the quick tier vs N = 100,000 at "
             "the paper's pools and GPT-2 small (12 x 768); the full tier is 10,000 people at the paper's pools",
    "exposures": "about 640 exposures per person at the quick tier vs the paper's 1,000",
    "positions": "learned absolute positions vs the paper's rotary embeddings",
    "text": "our own six templates per attribute and word-level tokens vs the paper's templates and GPT-2's BPE",
    "chance": "we compare with the accuracy of the best know-nobody answer (guess_accuracy: each attribute's most "
              "common answer among the trained people), about 1/pool per attribute here, where the paper's "
              "large pools make chance about 0",
}


def _pools(t: Tier) -> dict[str, int]:
    """The task's pool sizes: ``pool`` for every name and attribute pool (0 = the task's defaults, the paper's)."""
    if not t["pool"]:
        return {}
    keys = ("n_first", "n_middle", "n_last", "n_years", "n_cities", "n_universities", "n_majors", "n_employers")
    return dict.fromkeys(keys, t["pool"])


def bios_task(t: Tier, stage: str, augmented: bool, qa_kinds: tuple[str, ...] = ("retrieval",)) -> dict[str, Any]:
    """The ``bios`` task section of a claim run: the tier's world at ``stage``; ``augmented`` = multi5 + permute
    + fullname (else bioS single)."""
    return {"name": "bios", "n_people": t["n_people"], **_pools(t), "n_eval": t["n_eval"], "stage": stage,
            "multi": 5 if augmented else 1, "permute": augmented, "fullname": augmented, "qa_kinds": list(qa_kinds)}


def bios_config(t: Tier, seed: int, stage: str, augmented: bool, steps: int, lr: float, parent=None,
                qa_kinds: tuple[str, ...] = ("retrieval",), setup: str = ""):
    """One run of the protocol: trained from scratch, or fine-tuned from ``parent`` (a RunConfig, whose model it
    keeps and whose world it sees: ``world_seed`` is the run seed, the same for parent and child)."""
    from theorylab.config import validate
    from theorylab.runs import RunConfig

    model = parent.model.to_dict() if parent is not None else {
        "n_layers": t["n_layers"], "d_model": t["d_model"], "n_heads": t["n_heads"], "positional": "learned"}
    d: dict[str, Any] = {
        "task": bios_task(t, stage, augmented, qa_kinds), "model": model,
        "train": {"steps": steps, "batch_size": t["batch_size"], "lr": lr, "eval_every": max(1, steps // 4),
                  "checkpoint_every": max(1, steps // 4)},
        "seed": seed, "tags": {"claim_setup": setup or f"bios-{stage}"}}
    if parent is not None:
        d["parent"] = parent.run_id()
    return validate(RunConfig, d)


def protocol_runs(t: Tier, seed: int, arms: tuple[str, ...]) -> dict[str, Any]:
    """The named runs of the protocol's ``arms``: ``pretrain_single``/``finetune_single`` (bioS single),
    ``pretrain_augmented``/``finetune_augmented`` (multi5 + permute + fullname), ``mixed_single``.  Identical
    configs are one run, so claims sharing an arm share its training."""
    runs: dict[str, Any] = {}
    for aug, name in ((False, "single"), (True, "augmented")):
        if f"finetune_{name}" in arms:
            pre = bios_config(t, seed, "bio", aug, t["aug_steps"] if aug else t["bio_steps"], t["lr"],
                              setup=f"bios-pretrain-{name}")
            runs[f"pretrain_{name}"] = pre
            runs[f"finetune_{name}"] = bios_config(t, seed, "qa", aug, t["qa_steps"], t["qa_lr"], parent=pre,
                                                   setup=f"bios-finetune-{name}")
    if "mixed_single" in arms:
        runs["mixed_single"] = bios_config(t, seed, "mixed", False, t["mixed_steps"], t["lr"],
                                           setup="bios-mixed-single")
    return runs


def guess(run) -> float:
    """The know-nobody accuracy on the held-out half of a run's world (:func:`guess_accuracy`)."""
    from theorylab.measures.knowledge import guess_accuracy

    return guess_accuracy(run.task(), "qa_test")


def premises(runs, memorised: tuple[str, ...], answered: tuple[str, ...]) -> dict[str, float]:
    """The protocol's premise quantities: ``memorised_min``, the lowest ``bio/accuracy`` of the ``memorised`` runs,
    and ``qa_fit_min``, the lowest ``qa_train/accuracy`` of the ``answered`` runs."""
    return {"memorised_min": min(float(runs[k].final["bio/accuracy"]) for k in memorised),
            "qa_fit_min": min(float(runs[k].final["qa_train/accuracy"]) for k in answered)}


class _Extraction(Claim):
    citation = CITATION
    tiers = TIERS
    seeds = SEEDS
    deviations = DEVIATIONS
    decides = "the full tier (10,000 people at the paper's pools, on a GPU), or longer training at this size"

    def tables(self, evidence: Evidence) -> dict[str, dict[str, Any]]:
        rows = []
        for s in evidence.seeds:
            for name, run in sorted(evidence.runs.get(s, {}).items()):
                f = run.final
                rows.append([s, name, _fmt(f.get("bio/accuracy")), _fmt(f.get("qa_train/accuracy")),
                             _fmt(f.get("qa_test/accuracy"))])
        return {"extraction": {"columns": ["seed", "run", "bio/accuracy", "qa_train/accuracy", "qa_test/accuracy"],
                               "rows": rows, "note": "final evaluation of every run (teacher-forced exact match)"}}


def _fmt(x: Any) -> str:
    return "" if x is None else f"{float(x):.3f}"


@register_claim
class AugmentationMakesExtractable(_Extraction):
    id = "allenzhu2023a.augmentation_makes_knowledge_extractable"
    title = "Knowledge pre-trained without augmentation cannot be extracted by fine-tuning; with it, it can"
    statement = ("Pre-trained on one biography per person and fine-tuned on questions about half of the people, a "
                 "model answers questions about the other half no better than a guess, although it memorised "
                 "their biographies; pre-trained on augmented biographies (five per person, sentences permuted, "
                 "the full name in every sentence), the same fine-tuning extracts most of their attributes.")
    rule = all_of(
        Criterion("single_above_guess", "<=", NEAR_GUESS,
                  why="bioS single: held-out accuracy within 10 points of the know-nobody guess ('near 0%'; the "
                      "paper's 9.7%)"),
        Criterion("augmented_extraction", ">=", EXTRACTS,
                  why="multi5 + permute + fullname: most held-out facts extracted (the paper's 96.2%)"),
        premises=[fitted("memorised_min", MEMORISED, name="both pre-trainings memorised the biographies",
                         why="extraction is judged on knowledge the model holds: bio/accuracy >= 0.9"),
                  fitted("qa_fit_min", FITS_QA, name="both fine-tunings fitted their questions",
                         why="qa_train/accuracy >= 0.9: the fine-tuning learned the question format")],
    )
    extra_quantities = ("single_extraction", "guess")

    def experiment(self, tier, seed):
        return protocol_runs(self.params(tier), seed, ("finetune_single", "finetune_augmented"))

    def measure(self, tier, seed, runs):
        g = guess(runs["finetune_single"])
        single = float(runs["finetune_single"].final["qa_test/accuracy"])
        return {"single_extraction": single, "single_above_guess": single - g, "guess": g,
                "augmented_extraction": float(runs["finetune_augmented"].final["qa_test/accuracy"]),
                **premises(runs, ("pretrain_single", "pretrain_augmented"), ("finetune_single", "finetune_augmented"))}


@register_claim
class MixedTrainingExtracts(_Extraction):
    id = "allenzhu2023a.mixed_training_extracts"
    title = "Mixed training extracts knowledge that pre-training then fine-tuning does not"
    statement = ("Trained on single biographies and questions about half of the people at once (mixed training), a "
                 "model answers questions about the other half; pre-trained on the same biographies and then "
                 "fine-tuned on the same questions, it does not.")
    rule = all_of(
        Criterion("mixed_extraction", ">=", EXTRACTS,
                  why="mixed training extracts most held-out facts (the paper reports high accuracy on bioS single)"),
        Criterion("finetuned_above_guess", "<=", NEAR_GUESS,
                  why="pre-train then fine-tune on bioS single: within 10 points of the guess ('near 0%')"),
        premises=[fitted("memorised_min", MEMORISED, name="the biographies were memorised",
                         why="bio/accuracy >= 0.9 in the mixed run and the pre-training"),
                  fitted("qa_fit_min", FITS_QA, name="the trained questions are answered",
                         why="qa_train/accuracy >= 0.9 in the mixed run and the fine-tuning")],
    )
    extra_quantities = ("finetuned_extraction", "guess")

    def experiment(self, tier, seed):
        return protocol_runs(self.params(tier), seed, ("finetune_single", "mixed_single"))

    def measure(self, tier, seed, runs):
        g = guess(runs["finetune_single"])
        ft = float(runs["finetune_single"].final["qa_test/accuracy"])
        mixed = runs["mixed_single"].final
        return {"mixed_extraction": float(mixed["qa_test/accuracy"]), "finetuned_extraction": ft,
                "finetuned_above_guess": ft - g, "guess": g,
                **premises(runs, ("mixed_single", "pretrain_single"), ("mixed_single", "finetune_single"))}
