"""Every preset in one table: a named starting configuration for ``theorylab train NAME``.

A preset is ``{"config": {"task": ..., "model": ..., "train": ...}, "description": ...}``; every
value can be overridden (``theorylab train grokking task.p=97 train.steps=5000``).  A bare task
name that has no preset here starts from the task's defaults.  Add your own with
:func:`register_preset` (from Python) or a config file (``--config``).

Checkpoint cadence: a kill (or a power cut) loses the work since the last checkpoint.  Every preset
checkpoints at least every tenth of its run (``checkpoint_every`` <= steps / 10, on the evaluation grid
where one fits; ``tests/test_presets_checkpoint.py`` checks it), and every run, preset or not, also
checkpoints after ``train.checkpoint_minutes`` (5) minutes of wall time without one: a kill loses at
most a tenth of the run or five minutes, whichever is less, on any hardware.  A checkpoint of these
models costs milliseconds.
"""

from __future__ import annotations

from typing import Any

from theorylab.tasks.formal import FORMAL_TASKS

PRESETS: dict[str, dict[str, Any]] = {}


def register_preset(name: str, config: dict[str, Any], description: str = "") -> None:
    """A named starting point: ``theorylab train NAME`` uses it (a task name is also a preset)."""
    PRESETS[name] = {"config": config, "description": description}


# --------------------------------------------------------------------------- modular arithmetic

# The grokking mainline below (Nanda et al. 2023) scaled to CPU seconds: p = 47, d_model 64; its initialisation
# too, W ~ N(0, 1/d_model) for every matrix (init = normal, init_std = 1/sqrt(64)).
register_preset(
    "modular",
    {
        "task": {"name": "modular", "p": 47, "op": "+", "train_fraction": 0.5},
        "model": {"n_layers": 1, "d_model": 64, "n_heads": 4, "d_mlp": 256, "act": "relu", "norm": "none",
                  "positional": "learned", "bias": False, "init": "normal", "init_std": 64 ** -0.5},
        "train": {"steps": 3000, "lr": 3e-3, "weight_decay": 1.0, "betas": [0.9, 0.98], "warmup_steps": 10,
                  "eval_every": 50, "checkpoint_every": 300, "early_stop_metric": "test/accuracy",
                  "early_stop_value": 0.99},
    },
    "(a + b) mod 47 on a one-layer transformer; stops once test accuracy reaches 99% (seconds on a CPU)",
)

# Nanda, Chan, Lieberum, Smith & Steinhardt (ICLR 2023), arXiv 2301.05217, section 3 and appendix:
# (a + b) mod 113, 30% of pairs for training, one-layer ReLU transformer without layer norm,
# d_model 128, 4 heads of 32, d_mlp 512, learned positions, untied embeddings;
# full-batch AdamW lr 1e-3, weight decay 1.0, betas (0.9, 0.98), 10-step linear warm-up; 40k epochs.
# Biases: the paper's attention has none; we turn all biases off (the unembedding bias stays, at 0
# initially).  Initialisation as in the authors' code: W ~ N(0, 1/d_model) for W_E, W_pos, W_Q, W_K, W_V,
# W_O, W_in and W_out alike (init = normal, init_std = 1/sqrt(d_model); the default init = gpt2 would give
# W_O and W_out half that variance).  One difference remains: their W_U ~ N(0, 1/d_vocab) with d_vocab =
# p + 1 = 114 (std 0.094), ours N(0, 1/d_model) (std 0.088).
# Checkpoints every 1000 steps, all kept: the series the Fourier progress measures read (and a fortieth
# of the run, so a kill loses little).
register_preset(
    "grokking",
    {
        "task": {"name": "modular", "p": 113, "op": "+", "train_fraction": 0.3},
        "model": {"n_layers": 1, "d_model": 128, "n_heads": 4, "d_head": 32, "d_mlp": 512, "act": "relu",
                  "norm": "none", "positional": "learned", "tied_embeddings": False, "bias": False,
                  "init": "normal", "init_std": 128 ** -0.5},
        "train": {"steps": 40000, "lr": 1e-3, "weight_decay": 1.0, "betas": [0.9, 0.98], "warmup_steps": 10,
                  "eval_every": 100, "checkpoint_every": 1000, "keep_checkpoints": "all"},
    },
    "Nanda et al. 2023 mainline: (a+b) mod 113, 30% train, 1-layer d128 ReLU, AdamW wd 1.0, 40k steps",
)

# --------------------------------------------------------------------------- planning (Wang et al. 2024)

_ALPINE_MODEL = {"n_layers": 1, "n_heads": 1, "d_model": 120, "act": "gelu", "norm": "layernorm",
                 "positional": "learned", "bias": True}
_ALPINE_TRAIN = {"steps": 10000, "lr": 5e-4, "weight_decay": 0.1, "betas": [0.9, 0.95], "grad_clip": 1.0,
                 "batch_size": 32, "schedule": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.1,
                 "eval_every": 1000, "checkpoint_every": 1000}
register_preset("alpine", {"task": {"name": "alpine"}, "model": _ALPINE_MODEL, "train": _ALPINE_TRAIN},
                "ALPINE path-finding on a random DAG (n=100, p=0.1), 1-layer 1-head d=120 (Wang et al. 2024)")
register_preset("blocksworld", {"task": {"name": "blocksworld"}, "model": _ALPINE_MODEL,
                                "train": {**_ALPINE_TRAIN, "steps": 3000, "eval_every": 500,
                                          "checkpoint_every": 300}},
                "Blocksworld (4 blocks, 73 states) path-finding, 1-layer 1-head d=120 (Wang et al. 2024)")

# --------------------------------------------------------------------------- language model

register_preset(
    "lm",
    {
        "task": {"name": "lm", "seq_len": 64},
        "model": {"n_layers": 2, "d_model": 64, "n_heads": 4, "act": "gelu", "positional": "learned"},
        "train": {"steps": 600, "batch_size": 32, "lr": 3e-3, "warmup_steps": 50, "schedule": "cosine",
                  "min_lr_ratio": 0.1, "eval_every": 100, "checkpoint_every": 60},
    },
    "a small decoder on the generated PCFG corpus; reports perplexity beside the optimum",
)

# --------------------------------------------------------------------------- in-context learning

register_preset(
    "induction",
    {
        "task": {"name": "induction", "vocab": 64, "period": 16},
        "model": {"n_layers": 2, "d_model": 64, "n_heads": 2, "attn_only": True, "positional": "learned",
                  "norm": "layernorm"},
        "probes": ["induction_heads"],
        "train": {"steps": 1500, "batch_size": 64, "lr": 1e-3, "warmup_steps": 50, "eval_every": 100,
                  "checkpoint_every": 100},
    },
    "two-layer attention-only transformer on repeated random tokens (induction heads)",
)
register_preset(
    "icl_regression",
    {
        "task": {"name": "icl_regression", "d": 5, "n_points": 16},
        "model": {"n_layers": 3, "d_model": 64, "n_heads": 4, "positional": "learned", "norm": "layernorm",
                  "act": "gelu"},
        "train": {"steps": 3000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100, "eval_every": 250,
                  "checkpoint_every": 250},
    },
    "in-context linear regression (Garg et al. 2022), d = 5, on a small decoder",
)
register_preset(
    "concepts",
    {
        "task": {"name": "concepts"},
        "model": {"n_layers": 1, "d_model": 64, "n_heads": 1, "d_mlp": 64, "act": "relu", "norm": "none",
                  "positional": "none"},
        "probes": ["concept_attention", "concept_alignment"],
        "train": {"steps": 600, "batch_size": 64, "optimizer": "sgd", "lr": 0.1, "eval_every": 25,
                  "checkpoint_every": 50},
    },
    "one softmax-attention + ReLU-MLP block on concept-based sparse-coding prompts (Bu et al. 2024)",
)
register_preset(
    "bigram_triggers",
    {"task": {"name": "bigram_triggers", "vocab": 64, "seq_len": 64, "n_triggers": 5},
     "model": {"n_layers": 2, "d_model": 64, "n_heads": 1, "attn_only": True, "positional": "learned",
               "norm": "layernorm", "bias": False},
     "probes": ["trigger_heads", "memory_recall"],
     "train": {"steps": 2000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 50, "eval_every": 100,
               "checkpoint_every": 200}},
    "Bietti et al. 2023: bigram sequences with trigger -> output pairs, 2-layer attention-only transformer",
)

# --------------------------------------------------------------------------- emergence

# Schaeffer et al. 2023's metric mirage: a one-layer model of about 5k parameters holds part of a 4,096-key
# table, so its per-token accuracy sits mid-way while exact match on 8 tokens is near p^8 (sweep
# model.d_model to see the two curves: theorylab check schaeffer2023.metric_mirage does).
register_preset(
    "recall",
    {"task": {"name": "recall", "alphabet": 64, "answer_length": 8, "n_values": 16, "zipf": 1.0},
     "model": {"n_layers": 1, "d_model": 16, "n_heads": 1, "act": "gelu", "positional": "learned"},
     "train": {"steps": 2000, "batch_size": 128, "lr": 1e-2, "warmup_steps": 50, "schedule": "cosine",
               "min_lr_ratio": 0.1, "eval_every": 200, "checkpoint_every": 200}},
    "multi-token recall (Schaeffer et al. 2023): per-token accuracy, exact match, p^L and edit distance",
)
# Lubana et al. 2025 scaled to a CPU: 180 entities, 60 descriptive properties (|K| = 1,800 values), the
# official optimiser settings (AdamW betas (0.9, 0.95), weight decay 1e-4, clip 1) at lr 3e-3.  The paper's
# base system (the task's defaults: 900 entities, 460 properties) is the claim's full tier, for a GPU.
register_preset(
    "percolation",
    {"task": {"name": "percolation", "n_descriptive_properties": 60, "n_entities": 20, "n_relative_properties": 20},
     "model": {"n_layers": 2, "d_model": 64, "n_heads": 2, "act": "gelu", "positional": "learned", "bias": False},
     "train": {"steps": 2000, "batch_size": 64, "lr": 3e-3, "betas": [0.9, 0.95], "weight_decay": 1e-4,
               "grad_clip": 1.0, "warmup_steps": 100, "eval_every": 50, "checkpoint_every": 200}},
    "Lubana et al. 2025's concept-percolation language at CPU scale: grammar, type constraints, unscrambling",
)
register_preset(
    "knowledge_graph",
    {"task": {"name": "knowledge_graph", "n": 64, "degree": 4.0, "q": 0.5},
     "model": {"n_layers": 2, "d_model": 64, "n_heads": 4, "act": "gelu", "positional": "learned"},
     "train": {"steps": 1500, "batch_size": 128, "lr": 1e-3, "warmup_steps": 75, "eval_every": 150,
               "checkpoint_every": 150}},
    "k-hop questions on a random knowledge graph with half its relations revealed (mean degree 2 of 4)",
)

# --------------------------------------------------------------------------- knowledge (Allen-Zhu & Li, Part 3.1)

# A CPU-sized bioS (docs/knowledge.md): 200 people, every pool 10 values, a 2-layer width-64 decoder.  In a
# one-seed pilot mixed training on the augmented biographies reached held-out QA accuracy 0.45 after 2,000
# steps and was still rising (single biographies: 0.11, chance level); bios_mixed runs twice as long.
_BIOS_WORLD = {"n_people": 200, "n_first": 10, "n_middle": 10, "n_last": 10, "n_years": 10, "n_cities": 10,
               "n_universities": 10, "n_majors": 10, "n_employers": 10, "n_eval": 100}
_BIOS_MODEL = {"n_layers": 2, "d_model": 64, "n_heads": 4}
register_preset(
    "bios_mixed",
    {"task": {"name": "bios", **_BIOS_WORLD, "stage": "mixed", "multi": 5, "permute": True, "fullname": True},
     "model": _BIOS_MODEL,
     "train": {"steps": 4000, "batch_size": 64, "lr": 3e-3, "eval_every": 500, "checkpoint_every": 400}},
    "Allen-Zhu & Li 3.1 mixed training: augmented biographies of 200 people with questions about half of them; "
    "qa_test/accuracy reads the knowledge extracted for the other half",
)
register_preset(
    "bios_pretrain",
    {"task": {"name": "bios", **_BIOS_WORLD, "stage": "bio"}, "model": _BIOS_MODEL,
     "train": {"steps": 2000, "batch_size": 64, "lr": 3e-3, "eval_every": 500, "checkpoint_every": 200}},
    "Allen-Zhu & Li 3.1 pretraining on one biography per person (bioS single; add task.multi=5 "
    "task.permute=true task.fullname=true to augment); then fine-tune: theorylab train bios --from RUN "
    "task.stage=qa",
)
# The protocols per augmentation (Part 3.1 §4.2, arXiv 2309.14316: each augmentation alone and all three), the arms of
# the allenzhu2023a claims: bios_pretrain_<variant> to pre-train (then fine-tune with --from RUN task.stage=qa) and
# bios_mixed_<variant> for mixed training.  Five biographies a person pre-train twice as long as one (the same
# exposures per biography, as the claims' aug_steps); mixed training runs bios_mixed's 4,000 steps.  permute alone
# is one fixed shuffle per person (the paper's single+permute1); augmented is bios_mixed's data.
_BIOS_VARIANTS = {"single": {}, "multi5": {"multi": 5}, "permute": {"permute": True}, "fullname": {"fullname": True},
                  "augmented": {"multi": 5, "permute": True, "fullname": True}}
for _variant, _data in _BIOS_VARIANTS.items():
    _steps = 4000 if _data.get("multi", 1) > 1 else 2000
    if _variant != "single":  # bios_pretrain is single's
        register_preset(
            f"bios_pretrain_{_variant}",
            {"task": {"name": "bios", **_BIOS_WORLD, "stage": "bio", **_data}, "model": _BIOS_MODEL,
             "train": {"steps": _steps, "batch_size": 64, "lr": 3e-3, "eval_every": 500,
                       "checkpoint_every": _steps // 10}},
            f"Allen-Zhu & Li 3.1 pretraining on the {_variant} biographies of 200 people; then fine-tune: theorylab "
            "train bios --from RUN task.stage=qa",
        )
    if _variant != "augmented":  # bios_mixed is augmented's
        register_preset(
            f"bios_mixed_{_variant}",
            {"task": {"name": "bios", **_BIOS_WORLD, "stage": "mixed", **_data}, "model": _BIOS_MODEL,
             "train": {"steps": 4000, "batch_size": 64, "lr": 3e-3, "eval_every": 500, "checkpoint_every": 400}},
            f"Allen-Zhu & Li 3.1 mixed training on the {_variant} biographies of 200 people with questions about half "
            "of them; qa_test/accuracy reads the knowledge extracted for the other half",
        )

# --------------------------------------------------------------------------- formal languages (Delétang et al. 2023)

for _name, _cls in FORMAL_TASKS.items():
    register_preset(
        _name,
        {"task": {"name": _name, "train_max_length": 20, "test_max_length": 80, "test_stride": 4, "n_eval": 64},
         "model": {"n_layers": 2, "d_model": 64, "n_heads": 4, "positional": "sinusoidal"},
         "train": {"steps": 2000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100, "eval_every": 500,
                   "checkpoint_every": 200, "grad_clip": 1.0}},
        f"{_cls.__doc__} - train on lengths 1..20, test 21..80",
    )

# --------------------------------------------------------------------------- SUBLEQ, trained (issue 17 part 3)

# One SUBLEQ step as per-position classification on an encoder (theorylab.tasks.subleq; the trained round of the
# re-implementation in SETUPS.md 3.3).  Pilots on one CPU thread (batch 64, 4 layers, width 64): on the Mini system
# (16 cells, 7 or 6 bits) held-out state accuracy stays near 5% for 5,000 steps (the model copies the written
# cell: it has not yet found where the instruction writes); the "micro" system of subleq_step (8 cells, 5 bits,
# 9 tokens) leaves that plateau after about 5,000 steps and reaches 0.89 state accuracy at step 8,000
# (about 3 minutes).  Its held-out family is countdown (the only one that fits 8 cells).
_SUBLEQ_TRAIN = {"batch_size": 64, "lr": 3e-3, "weight_decay": 0.1, "warmup_steps": 100, "schedule": "cosine",
                 "eval_every": 500, "checkpoint_every": 500}
register_preset(
    "subleq_step",
    {"task": {"name": "subleq_step", "cells": 8, "bits": 5, "max_instructions": 2},
     "model": {"n_layers": 4, "d_model": 64, "n_heads": 4},
     "train": {**_SUBLEQ_TRAIN, "steps": 8000}},
    "one SUBLEQ step (Giannou et al. 2023) on a 4-layer encoder, 8 cells of 5 bits: held-out single-step state "
    "accuracy ~0.9 after 8,000 steps (minutes on a CPU); rollouts: theorylab.measures.subleq",
)
register_preset(
    "subleq_mini",
    {"task": {"name": "subleq_step", "cells": 16, "bits": 7, "max_instructions": 4,
              "curriculum": [[0, 1], [5000, 2], [10000, 3], [15000, 4]]},
     "model": {"n_layers": 4, "d_model": 128, "n_heads": 8},
     "train": {**_SUBLEQ_TRAIN, "lr": 1e-3, "steps": 40000, "eval_every": 2000, "checkpoint_every": 2000}},
    "the re-implementation's Mini system (16 cells, 7 bits) on a 4-layer width-128 encoder with a curriculum on "
    "program length; every held-out family fits; not piloted to convergence (hours on a CPU)",
)

__all__ = ["PRESETS", "register_preset"]
