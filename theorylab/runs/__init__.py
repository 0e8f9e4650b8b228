"""Runs: configs, the deterministic trainer, checkpoints."""

from theorylab.runs.config import RunConfig, build_run_config
from theorylab.runs.loop import (
    RunResult,
    build,
    build_model_for,
    checkpoint_steps,
    load_run_model,
    lr_at,
    make_optimizer,
    resume,
    train,
)
from theorylab.runs.presets import PRESETS, register_preset

__all__ = [
    "RunConfig", "RunResult", "PRESETS", "build_run_config", "register_preset", "train", "resume", "build",
    "build_model_for", "load_run_model", "checkpoint_steps", "lr_at", "make_optimizer",
]
