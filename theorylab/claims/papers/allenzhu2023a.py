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
  not.  Mixed training on the augmented biographies is its positive control.
* ``allenzhu2023a.multiplicity_and_fullname_help_alone``: the augmentations one at a time (pre-train, then
  fine-tune).  Five biographies a person (multi5) and the full name in every sentence (fullname) each lift
  held-out accuracy above bioS single; one fixed shuffle of the sentences (permute alone, the paper's
  "single+permute1") does not.
* ``allenzhu2023a.augmentation_stores_knowledge_at_the_name``: on the pre-trained models (before any
  fine-tuning), a linear probe reads the attributes from the name alone (Q-probe) after augmented pre-training
  and not after bioS single, while in both the values are linearly decodable just before they are written
  (P-probe).

The extraction claims are negative-and-positive pairs in one run family: the positive arm is the control that
the protocol can extract at this size at all.  Premises: every pre-training memorised the biographies
(``bio/accuracy``, the value tokens of each person's first biography, teacher-forced) and every model answers
the questions it was trained on (``qa_train/accuracy``); a failed premise makes the verdict inconclusive.

**Arms** (:func:`protocol_runs`, one family shared by the claims; identical configs are one run in the store):
``pretrain_<variant>`` (biographies only), ``finetune_<variant>`` (its child, fine-tuned on the ``p_train``
questions) and ``mixed_<variant>`` (biographies and questions together), for the variants of :data:`VARIANTS`:
``single``, ``multi5``, ``permute``, ``fullname`` and ``augmented`` (multi5 + permute + fullname).

**The paper's numbers** (arXiv 2309.14316 v3, read in a stored copy of its text; Fig. 2-3 themselves were not
readable): N = 100,000 people, GPT-2 small (12 layers, width 768) with rotary positions, 1,000 exposures.
Held-out QA after pre-train then fine-tune: 9.7% for bioS single (§4.1 and Fig. 3), 41% for multi5 (§5.1), 4.4%
for single+permute1 and 70% for single+permute5 (§5.1), 96.6% for five diverse and shuffled biographies a person
(§4.2 Result 3; the multi5 + permute + fullname figure 96.2% is the replication's reading, ``../shared/SETUPS.md``
A.5.2); single+fullname helps (§4.2 Result 3: "adding multiplicity, permutations, or repeating full names, all
help", with the exception of single+permute1, which "hurts"), its number is in Fig. 3 only.  Mixed training on
bioS single: 86.6% (§3 Result 1).  Probes (§5): with bioS single the P-probe stays low (2% for the company
name) until the token just before the value, where it reaches 100%; with multi5 + permute it is near 100% from
the first position; Q-probe accuracy tracks held-out QA accuracy (§5.2 Result 5; a replication reports 12.4%
without and 98.8% with augmentation, SETUPS A.5.2).  Every tier here is far smaller; none is faithful, so a
failed criterion makes these verdicts inconclusive, never refuted.
"""

from __future__ import annotations

from typing import Any

from theorylab.claims import register_claim
from theorylab.claims.base import Claim, Criterion, Evidence, Tier, all_of, fitted, happened, tiers_of
from theorylab.claims.citations import ALLENZHU2023A as CITATION
from theorylab.errors import ConfigError


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
# An augmentation alone "helps" when it lifts held-out accuracy at least 10 points above bioS single: as far as the
# band within which single counts as "near 0%" (NEAR_GUESS), and a third of the paper's multi5 gain (9.7% -> 41%,
# arXiv 2309.14316 §5.1).  "Does not help" is the mirror: the whole interval of the lift below those 10 points.
HELPS = 0.1
# fullname alone: the paper says it helps (§4.2 Result 3) but gives its number in Fig. 3 only, which we could not
# read; so only the direction is tested: the whole interval of the lift above 0
FULLNAME_HELPS = 0.0
# the Q-probe reads "most" attributes from the name alone: the bar of EXTRACTS, since the paper finds Q-probe
# accuracy tracks held-out QA accuracy (§5.2 Result 5; a replication: 98.8% with augmentation, SETUPS A.5.2)
AT_THE_NAME = 0.5
# a P-probe just before the value reads what the model is about to write: its own unembedding is such a linear
# read-out, right >= 0.9 of the time by the memorised premise; 10 points less for a probe fitted on the trained
# half of the people only (the paper: 100% just before the value in every variant, §5.1)
STORED_WHERE_WRITTEN = 0.8

#: the biography variants of the protocol: (multi, permute, fullname) of the task (``docs/knowledge.md``);
#: ``permute`` alone is one fixed shuffle per person, the paper's "single+permute1"
VARIANTS: dict[str, tuple[int, bool, bool]] = {
    "single": (1, False, False), "multi5": (5, False, False), "permute": (1, True, False),
    "fullname": (1, False, True), "augmented": (5, True, True)}
ARMS = ("pretrain", "finetune", "mixed")

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
VARIANT_DEVIATIONS = {
    "permute alone": "one fixed shuffle of the sentences per person (the paper's single+permute1, which it reports "
                     "hurts: 4.4%); its single+permute2/5 (several shuffles of the same sentences) are not built",
    "fullname alone": "the paper's number for single+fullname is in its Fig. 3 only, which we could not read; the "
                      "claim tests the direction its text states (Result 3), not a size",
    "budgets": "multi5 pre-trains as long as the augmented data (aug_steps: five biographies a person), permute and "
               "fullname alone as long as single (bio_steps)",
}
PROBE_DEVIATIONS = {
    "probes": "linear probes on the final residual (after the final norm) only; the paper's P-probe also trains a "
              "rank-2 update of the embeddings and its Q-probe a rank-16 one",
    "positions": "the P-probe at the token just before each value in the person's first biography, the Q-probe at "
                 "the last name token of '<bos> first middle last'; the paper probes six special positions of each "
                 "biography and puts an end token after the name",
    "probe data": "probes train on the p_train half of the people and are scored on the p_test half: 100 and 100 at "
                  "the quick tier",
}


def _pools(t: Tier) -> dict[str, int]:
    """The task's pool sizes: ``pool`` for every name and attribute pool (0 = the task's defaults, the paper's)."""
    if not t["pool"]:
        return {}
    keys = ("n_first", "n_middle", "n_last", "n_years", "n_cities", "n_universities", "n_majors", "n_employers")
    return dict.fromkeys(keys, t["pool"])


def _variant(variant: str) -> tuple[int, bool, bool]:
    if variant not in VARIANTS:
        raise ConfigError(f"variant: {variant!r}; allowed: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def bios_task(t: Tier, stage: str, variant: str, qa_kinds: tuple[str, ...] = ("retrieval",)) -> dict[str, Any]:
    """The ``bios`` task section of a claim run: the tier's world at ``stage`` with the biographies of
    ``variant`` (a key of :data:`VARIANTS`: ``single`` is bioS single, ``augmented`` multi5 + permute + fullname).
    Raises ConfigError for an unknown variant."""
    multi, permute, fullname = _variant(variant)
    return {"name": "bios", "n_people": t["n_people"], **_pools(t), "n_eval": t["n_eval"], "stage": stage,
            "multi": multi, "permute": permute, "fullname": fullname, "qa_kinds": list(qa_kinds)}


def pretrain_steps(t: Tier, variant: str) -> int:
    """Pre-training steps of ``variant``: ``aug_steps`` with five biographies a person (the same exposures per
    biography as single's ``bio_steps``), else ``bio_steps``."""
    return t["aug_steps"] if _variant(variant)[0] > 1 else t["bio_steps"]


def bios_config(t: Tier, seed: int, stage: str, variant: str, steps: int, lr: float, parent=None,
                qa_kinds: tuple[str, ...] = ("retrieval",), setup: str = ""):
    """One run of the protocol on the biographies of ``variant`` (:data:`VARIANTS`): trained from scratch, or
    fine-tuned from ``parent`` (a RunConfig, whose model it keeps and whose world it sees: ``world_seed`` is the
    run seed, the same for parent and child)."""
    from theorylab.config import validate
    from theorylab.runs import RunConfig

    model = parent.model.to_dict() if parent is not None else {
        "n_layers": t["n_layers"], "d_model": t["d_model"], "n_heads": t["n_heads"], "positional": "learned"}
    d: dict[str, Any] = {
        "task": bios_task(t, stage, variant, qa_kinds), "model": model,
        "train": {"steps": steps, "batch_size": t["batch_size"], "lr": lr, "eval_every": max(1, steps // 4),
                  "checkpoint_every": max(1, steps // 4)},
        "seed": seed, "tags": {"claim_setup": setup or f"bios-{stage}"}}
    if parent is not None:
        d["parent"] = parent.run_id()
    return validate(RunConfig, d)


def protocol_runs(t: Tier, seed: int, arms: tuple[str, ...]) -> dict[str, Any]:
    """The named runs of the protocol's ``arms``, each ``<arm>_<variant>`` with an arm of :data:`ARMS` and a
    variant of :data:`VARIANTS`: ``pretrain_<v>`` (biographies, :func:`pretrain_steps`), ``finetune_<v>`` (a child
    of ``pretrain_<v>``, which it brings along, on the ``p_train`` questions for ``qa_steps`` at ``qa_lr``) and
    ``mixed_<v>`` (biographies and questions for ``mixed_steps``).  Identical configs are one run, so claims
    sharing an arm share its training.  Raises ConfigError for an unknown arm or variant."""
    runs: dict[str, Any] = {}
    for name in arms:
        arm, _, variant = name.partition("_")
        if arm not in ARMS:
            raise ConfigError(f"arm: {name!r}; allowed: <{'|'.join(ARMS)}>_<{'|'.join(VARIANTS)}>")
        _variant(variant)
        if arm == "mixed":
            runs[name] = bios_config(t, seed, "mixed", variant, t["mixed_steps"], t["lr"],
                                     setup=f"bios-mixed-{variant}")
            continue
        pre_name = f"pretrain_{variant}"
        if pre_name not in runs:
            runs[pre_name] = bios_config(t, seed, "bio", variant, pretrain_steps(t, variant), t["lr"],
                                         setup=f"bios-pretrain-{variant}")
        if arm == "finetune":
            runs[name] = bios_config(t, seed, "qa", variant, t["qa_steps"], t["qa_lr"], parent=runs[pre_name],
                                     setup=f"bios-finetune-{variant}")
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
                  why="mixed training extracts most held-out facts (the paper: 86.6% on bioS single, §3 Result 1)"),
        Criterion("finetuned_above_guess", "<=", NEAR_GUESS,
                  why="pre-train then fine-tune on bioS single: within 10 points of the guess ('near 0%')"),
        premises=[fitted("memorised_min", MEMORISED, name="the biographies were memorised",
                         why="bio/accuracy >= 0.9 in the mixed run and the pre-training"),
                  fitted("qa_fit_min", FITS_QA, name="the trained questions are answered",
                         why="qa_train/accuracy >= 0.9 in the mixed run and the fine-tuning"),
                  happened("mixed_augmented_extraction", ">=", EXTRACTS,
                           name="mixed training on augmented biographies extracts (the positive control)",
                           why="held-out accuracy >= 0.5 with multi5 + permute + fullname: if even the easiest data "
                               "does not extract in mixed training, this size cannot judge single biographies")],
    )
    extra_quantities = ("finetuned_extraction", "guess")

    def experiment(self, tier, seed):
        return protocol_runs(self.params(tier), seed, ("finetune_single", "mixed_single", "mixed_augmented"))

    def measure(self, tier, seed, runs):
        g = guess(runs["finetune_single"])
        ft = float(runs["finetune_single"].final["qa_test/accuracy"])
        mixed = runs["mixed_single"].final
        return {"mixed_extraction": float(mixed["qa_test/accuracy"]), "finetuned_extraction": ft,
                "finetuned_above_guess": ft - g, "guess": g,
                "mixed_augmented_extraction": float(runs["mixed_augmented"].final["qa_test/accuracy"]),
                **premises(runs, ("mixed_single", "pretrain_single"), ("mixed_single", "finetune_single"))}


ALONE = ("multi5", "permute", "fullname")  # the augmentations one at a time


@register_claim
class MultiplicityAndFullnameHelpAlone(_Extraction):
    id = "allenzhu2023a.multiplicity_and_fullname_help_alone"
    title = "Multiplicity and full names each make knowledge more extractable alone; one fixed shuffle does not"
    statement = ("Pre-trained on one augmentation of the biographies at a time and fine-tuned on questions about half "
                 "of the people, a model answers more questions about the other half than after bioS single when "
                 "each person has five biographies (multi5) or the full name is in every sentence (fullname); one "
                 "fixed shuffle of each person's sentences (single+permute1) does not help.")
    deviations = {**DEVIATIONS, **VARIANT_DEVIATIONS}
    rule = all_of(
        Criterion("multi5_gain", ">=", HELPS,
                  why="multi5 alone lifts held-out accuracy at least 10 points above bioS single (the paper: 9.7% "
                      "-> 41%, arXiv 2309.14316 §5.1)"),
        Criterion("fullname_gain", ">", FULLNAME_HELPS,
                  why="fullname alone lifts it (direction only: the paper's text says it helps, §4.2 Result 3; its "
                      "number is in Fig. 3, not read)"),
        Criterion("permute_gain", "<", HELPS,
                  why="one fixed shuffle (single+permute1) lifts it by less than the 10 points that count as help "
                      "(the paper: it hurts, 9.7% -> 4.4%, §5.1 and Result 3)"),
        premises=[fitted("memorised_min", MEMORISED, name="every pre-training memorised the biographies",
                         why="bio/accuracy >= 0.9 in all five pre-trainings: extraction is judged on stored knowledge"),
                  fitted("qa_fit_min", FITS_QA, name="every fine-tuning fitted its questions",
                         why="qa_train/accuracy >= 0.9 in all five fine-tunings"),
                  happened("augmented_extraction", ">=", EXTRACTS,
                           name="all three augmentations together extract (the positive control)",
                           why="multi5 + permute + fullname reaches held-out accuracy >= 0.5: if the full "
                               "augmentation does not extract at this size, one augmentation alone cannot be judged")],
    )
    extra_quantities = ("single_extraction", "multi5_extraction", "permute_extraction", "fullname_extraction",
                        "guess")

    def experiment(self, tier, seed):
        return protocol_runs(self.params(tier), seed, tuple(f"finetune_{v}" for v in ("single", *ALONE, "augmented")))

    def measure(self, tier, seed, runs):
        variants = ("single", *ALONE, "augmented")
        acc = {v: float(runs[f"finetune_{v}"].final["qa_test/accuracy"]) for v in variants}
        return {**{f"{v}_extraction": acc[v] for v in variants},
                **{f"{v}_gain": acc[v] - acc["single"] for v in ALONE},
                "guess": guess(runs["finetune_single"]),
                **premises(runs, tuple(f"pretrain_{v}" for v in variants), tuple(f"finetune_{v}" for v in variants))}

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        from theorylab.figures.knowledge import accuracy_bars

        values = {v: evidence.values(f"{v}_extraction") for v in ("single", *ALONE, "augmented")}
        lines = {"know-nobody guess": _mean(evidence.values("guess"))}
        return {"extraction_by_variant": accuracy_bars(
            values, "held-out QA accuracy (exact match)", lines,
            "Pre-train then fine-tune, one augmentation at a time (dots: seeds)")}


@register_claim
class AugmentationStoresKnowledgeAtTheName(_Extraction):
    id = "allenzhu2023a.augmentation_stores_knowledge_at_the_name"
    title = "Augmented pre-training stores each attribute at the person's name; bioS single stores it only in context"
    statement = ("After pre-training on augmented biographies (multi5 + permute + fullname), a linear probe reads a "
                 "held-out person's attributes from the hidden state at the end of their name alone; after bioS "
                 "single it reads them no better than chance there, although in both models each value is "
                 "linearly decodable just before it is written in the biography.")
    deviations = {**DEVIATIONS, **PROBE_DEVIATIONS}
    rule = all_of(
        Criterion("q_augmented", ">=", AT_THE_NAME,
                  why="Q-probe (name alone) after augmented pre-training, mean over attributes >= 0.5: most "
                      "attributes stored at the name (the paper's Q-probe tracks its 96% extraction, §5.2)"),
        Criterion("q_single_above_chance", "<=", NEAR_GUESS,
                  why="Q-probe after bioS single within 10 points of a probe that reads nothing (the paper: "
                      "low, as single's 9.7% extraction; the band of 'near 0%' above)"),
        premises=[fitted("memorised_min", MEMORISED, name="both pre-trainings memorised the biographies",
                         why="bio/accuracy >= 0.9: the knowledge probed is held"),
                  happened("p_min", ">=", STORED_WHERE_WRITTEN, name="the values are decodable where they are written",
                           why="P-probe just before each value, mean over attributes, >= 0.8 in both models: a "
                               "linear read-out finds the knowledge in the biography (the paper: 100%, §5.1)")],
    )
    extra_quantities = ("q_single", "p_single", "p_augmented", "chance")

    def experiment(self, tier, seed):
        # the pre-trainings of augmentation_makes_knowledge_extractable, before fine-tuning: the same runs
        return protocol_runs(self.params(tier), seed, ("pretrain_single", "pretrain_augmented"))

    def measure(self, tier, seed, runs):
        from theorylab.measures.knowledge import p_probe, probe_chance, q_probe

        probes = {}
        for v in ("single", "augmented"):
            run = runs[f"pretrain_{v}"]
            model, task = run.model(), run.task()
            probes[v] = {"p": p_probe(model, task), "q": q_probe(model, task)}
        chance = probe_chance(runs["pretrain_single"].task())  # one world: the same people, values and split
        probes["chance"] = {"p": chance, "q": chance}
        p = {v: probes[v]["p"]["mean"] for v in ("single", "augmented")}
        q = {v: probes[v]["q"]["mean"] for v in ("single", "augmented")}
        return {"q_augmented": q["augmented"], "q_single": q["single"], "q_single_above_chance": q["single"] - chance["mean"],
                "p_single": p["single"], "p_augmented": p["augmented"], "p_min": min(p.values()),
                "chance": chance["mean"], "probes": probes,
                "memorised_min": min(float(runs[f"pretrain_{v}"].final["bio/accuracy"]) for v in ("single", "augmented"))}

    def tables(self, evidence: Evidence) -> dict[str, dict[str, Any]]:
        from theorylab.measures.knowledge import PROBED

        rows = []
        for s in evidence.seeds:
            probes = evidence.series.get(s, {}).get("probes", {})
            for v in ("single", "augmented", "chance"):
                for kind, label in (("p", "P-probe, just before the value"), ("q", "Q-probe, the name alone")):
                    if v == "chance" and kind == "q":
                        continue  # one chance level serves both probes
                    acc = probes.get(v, {}).get(kind, {})
                    rows.append([s, v if v != "chance" else "chance (no read-out)", label if v != "chance" else "",
                                 *(_fmt(acc.get(a)) for a in (*PROBED, "mean"))])
        return {"probes": {"columns": ["seed", "pre-training", "probe", *PROBED, "mean"], "rows": rows,
                           "note": "test accuracy of linear probes trained on the p_train people and scored on the "
                                   "p_test people (measures/knowledge.py); chance: the p_train people's most common "
                                   "label scored on the p_test people"}}

    def figures(self, evidence: Evidence) -> dict[str, Any]:
        from theorylab.figures.knowledge import accuracy_bars

        values = {"P single": evidence.values("p_single"), "P augmented": evidence.values("p_augmented"),
                  "Q single": evidence.values("q_single"), "Q augmented": evidence.values("q_augmented")}
        lines = {"chance": _mean(evidence.values("chance")), "Q threshold": AT_THE_NAME}
        return {"probes": accuracy_bars(values, "probe test accuracy (mean over attributes)", lines,
                                        "P-probe (before the value) and Q-probe (the name alone), pre-trained models")}


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")
