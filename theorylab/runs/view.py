"""RunView: a claim's read-only handle on one stored run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from theorylab.store import Store


@dataclass
class RunView:
    run_id: str
    store: Store
    _model: Any = field(default=None, repr=False)

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
        return self.record.status

    def series(self, split: str, name: str) -> tuple[list[int], list[float]]:
        rows = self.store.metrics(self.run_id, split, name).get(split, {}).get(name, [])
        return [s for s, _ in rows], [v for _, v in rows]

    def metrics(self) -> dict[str, dict[str, list[tuple[int, float]]]]:
        return self.store.metrics(self.run_id)

    def checkpoints(self) -> list[tuple[int, str]]:
        from theorylab.runs import checkpoint_steps

        return checkpoint_steps(self.store, self.run_id)

    def model(self):
        """The final model (loaded once, eval mode)."""
        if self._model is None:
            from theorylab.runs import load_run_model

            _, self._model = load_run_model(self.store, self.run_id)
        return self._model

    def model_at(self, step: int):
        from theorylab.runs import load_run_model

        return load_run_model(self.store, self.run_id, step)[1]

    def task(self):
        from theorylab.tasks import make_task

        cfg = self.config
        return make_task(cfg.task, cfg.seed)
