"""Runs: configs, the deterministic trainer, checkpoints."""

from theorylab.runs.config import PRESETS, RunConfig, build_run_config, register_preset
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

__all__ = [
    "RunConfig", "RunResult", "PRESETS", "build_run_config", "register_preset", "train", "resume", "build",
    "build_model_for", "load_run_model", "checkpoint_steps", "lr_at", "make_optimizer",
]
