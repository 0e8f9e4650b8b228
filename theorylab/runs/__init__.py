"""Runs (layer 3): configs and presets, THE training loop with its steppers, probes, a run view."""

from theorylab.runs.config import RunConfig, TrainConfig, build_run_config
from theorylab.runs.loop import (
    RunResult,
    build,
    build_model_for,
    checkpoint_steps,
    load_run_model,
    lr_at,
    resume,
    train,
    train_many,
)
from theorylab.runs.presets import PRESETS, register_preset
from theorylab.runs.steppers import STEPPERS, make_optimizer

__all__ = [
    "RunConfig", "TrainConfig", "RunResult", "PRESETS", "STEPPERS", "build_run_config", "register_preset", "train",
    "train_many", "resume", "build", "build_model_for", "load_run_model", "checkpoint_steps", "lr_at",
    "make_optimizer",
]
