"""RunView: a claim's read-only handle on one stored run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from theorylab.store import Store


@dataclass
class RunView:
    """One stored run, read only: its record, config, metric series, checkpoints, model and task."""

    run_id: str
    store: Store
    _model: Any = field(default=None, repr=False)
    _task: Any = field(default=None, repr=False)

    @property
    def record(self):
        return self.store.find_run(self.run_id)

    @property
    def config(self):
        from theorylab.runs.config import RunConfig

        return RunConfig.model_validate(self.record.config)

    @property
    def final(self) -> dict[str, float]:
        """Metrics at the last evaluation, 'split/name' -> value."""
        return dict(self.record.summary.get("metrics", {}))

    @property
    def status(self) -> str:
        """The run's status as shown: ``interrupted`` for a run stored as ``running`` whose process is gone
        (:func:`theorylab.store.run_is_alive`); ``record.stored_status`` is the stored one."""
        return self.record.status

    def series(self, split: str, name: str) -> tuple[list[int], list[float]]:
        """(steps, values) of one metric at every evaluation."""
        rows = self.store.metrics(self.run_id, split, name).get(split, {}).get(name, [])
        return [s for s, _ in rows], [v for _, v in rows]

    def curves(self) -> dict[str, list]:
        """Train/test accuracy and loss at every evaluation: ``{"steps", "train_acc", "test_acc",
        "train_loss", "test_loss"}`` (what :func:`theorylab.figures.curves.training_curves` draws)."""
        steps, train_acc = self.series("train", "accuracy")
        return {"steps": [int(s) for s in steps], "train_acc": train_acc, "test_acc": self.series("test", "accuracy")[1],
                "train_loss": self.series("train", "loss")[1], "test_loss": self.series("test", "loss")[1]}

    def metrics(self) -> dict[str, dict[str, list[tuple[int, float]]]]:
        return self.store.metrics(self.run_id)

    def checkpoints(self) -> list[tuple[int, str]]:
        """``[(step, path)]`` in step order."""
        return self.store.checkpoints(self.run_id)

    def checkpoint_models(self) -> list[tuple[int, Any]]:
        """``[(step, load)]``: ``load()`` returns the model at that step (loaded on demand)."""
        return self.store.checkpoint_models(self.run_id)

    def model(self):
        """The final model (loaded once, eval mode)."""
        if self._model is None:
            self._model = self.store.load_model(self.run_id)
        return self._model

    def model_at(self, step: int):
        return self.store.load_model(self.run_id, step)

    def task(self):
        """The run's task (built once: same config and seed)."""
        if self._task is None:
            self._task = self.store.load_task(self.run_id)
        return self._task
