"""Measurements: pure functions of a model, a series of checkpoints and a task (layer 1)."""
