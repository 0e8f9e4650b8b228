"""Named starting configurations (presets) beyond the bare task names.

``theorylab train grokking`` trains the mainline of Nanda et al. (2023); every value
can be overridden (``task.p=97 train.steps=5000``).
"""

from __future__ import annotations

from theorylab.runs.config import register_preset

# Nanda, Chan, Lieberum, Smith & Steinhardt (ICLR 2023), arXiv 2301.05217, section 3 and appendix:
# (a + b) mod 113, 30% of pairs for training, one-layer ReLU transformer without layer norm,
# d_model 128, 4 heads of 32, d_mlp 512, learned positions, untied embeddings;
# full-batch AdamW lr 1e-3, weight decay 1.0, betas (0.9, 0.98), 10-step linear warm-up; 40k epochs.
# Biases: the paper's attention has none; we turn all biases off (the unembedding bias stays, at 0
# initially).  init_std = 1/sqrt(d_model) as in the authors' code (W ~ N(0, 1/d_model)).
GROKKING = {
    "task": {"name": "modular", "p": 113, "op": "+", "train_fraction": 0.3},
    "model": {"n_layers": 1, "d_model": 128, "n_heads": 4, "d_head": 32, "d_mlp": 512, "act": "relu",
              "norm": "none", "positional": "learned", "tied_embeddings": False, "bias": False,
              "init_std": 0.0884},
    "train": {"steps": 40000, "lr": 1e-3, "weight_decay": 1.0, "betas": [0.9, 0.98], "warmup_steps": 10,
              "eval_every": 100, "checkpoint_every": 1000, "keep_checkpoints": "all"},
}

register_preset("grokking", GROKKING,
                "Nanda et al. 2023 mainline: (a+b) mod 113, 30% train, 1-layer d128 ReLU, AdamW wd 1.0, 40k steps")
