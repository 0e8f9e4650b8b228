"""Every positional encoding lets the formal-language encoder fit short training lengths.

Fitting the training lengths is the premise of every length-generalization claim (Delétang et al.
2023): a model at chance on its own lengths says nothing about generalization.  With sinusoidal
positions and unscaled token embeddings (init_std 0.02, ~1/35 of the unit-amplitude table's norm at
width 64) even_pairs stayed at chance on lengths 1..4 (0.66 here; 0.57 on lengths 1..8 after 600
steps); ``model.embed_scale`` (sqrt(d_model) beside the table, Vaswani et al. 2017) fixes it.

Settings: the task's preset (2-layer pre-LN encoder, width 64, 4 heads, lr 1e-3 with 100 warm-up steps,
batch 64, gradient clipping 1), lengths 1..4, seed 0.  ``train/accuracy`` is the mean over the training
lengths of the per-string accuracy on held-out strings of each length.

ALiBi is slower: a bidirectional encoder with only a distance bias has no marker of the first symbol.
With 2 layers even_pairs stays at 0.72 on lengths 3 and 4 after 4,000 steps, its output a function of
the number of b's alone (001, 010 and 100 get one probability: it never finds the first symbol); one
layer fits it in 3,000 steps, and reverse_string needs 3,000 steps.  Those runs are marked slow.  PARITY is not required here (Bhattamishra et al. 2020; Hahn 2020).
"""

from __future__ import annotations

import pytest

from theorylab.runs import build_run_config, train

FIT = 0.95  # "fitted": 95% mean accuracy over the training lengths (chance is 50%)


def _fit(task: str, positional: str, steps: int, *extra: str) -> dict[str, float]:
    cfg = build_run_config(task, [f"model.positional={positional}", "task.train_max_length=4",
                                  "task.test_max_length=5", "task.n_eval=32", f"train.steps={steps}",
                                  f"train.eval_every={steps}", "train.batch_size=64", *extra], seed=0)
    return train(cfg, None, progress=False).metrics


_SLOW = pytest.mark.slow


@pytest.mark.parametrize("task,positional,steps,extra", [
    ("even_pairs", "sinusoidal", 400, ()),
    ("even_pairs", "learned", 400, ()),
    ("even_pairs", "rotary", 400, ()),
    pytest.param("even_pairs", "alibi", 3000, ("model.n_layers=1",), marks=_SLOW),
    ("reverse_string", "sinusoidal", 600, ()),
    ("reverse_string", "learned", 600, ()),
    ("reverse_string", "rotary", 600, ()),
    pytest.param("reverse_string", "alibi", 3000, (), marks=_SLOW),
])
def test_short_training_lengths_are_fitted(task, positional, steps, extra):
    m = _fit(task, positional, steps, *extra)
    assert m["train/accuracy"] >= FIT, (task, positional, m["train/accuracy"], m["train/loss"])
