"""The embedded results store: SQLite in WAL mode.

Layout under ``$THEORYLAB_HOME`` (default ``./theorylab-runs``)::

    store.sqlite          runs, metrics, artifacts, claim results
    runs/<run_id>/        checkpoints and figures of one run
    claims/<claim_id>/    figures of claim results

Every write is one short transaction, so two processes writing at once lose
nothing (SQLite serialises writers; a busy timeout makes the second one wait).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from theorylab.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,           -- created | running | finished | diverged | failed | stopped
    step INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    wall_seconds REAL,
    versions TEXT,
    git_commit TEXT,
    summary TEXT,                   -- JSON: final metrics, diverged step, ...
    tags TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    split TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, split, name)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,             -- checkpoint | figure | ...
    step INTEGER,
    path TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, kind, path)
);
CREATE TABLE IF NOT EXISTS claim_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    claim_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    seeds TEXT NOT NULL,
    verdict TEXT NOT NULL,
    result TEXT NOT NULL,           -- JSON: measured values, intervals, rule, run ids, figures, env
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS claim_results_by_claim ON claim_results (claim_id, tier, created);
"""


def home() -> Path:
    return Path(os.environ.get("THEORYLAB_HOME", "theorylab-runs")).resolve()


def package_versions() -> dict[str, str]:
    import numpy
    import torch

    from theorylab import __version__

    return {"theorylab": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform()}


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class RunRecord:
    id: str
    task: str
    config: dict[str, Any]
    seed: int
    status: str
    step: int
    created: float
    started: float | None
    finished: float | None
    wall_seconds: float | None
    versions: dict[str, Any]
    git_commit: str | None
    summary: dict[str, Any]
    tags: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Store:
    """A handle on the store directory.  Cheap to create; connections are per call."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).resolve() if root is not None else home()

    @property
    def db_path(self) -> Path:
        return self.root / "store.sqlite"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        self.root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA busy_timeout=60000")
            con.execute("PRAGMA synchronous=NORMAL")
            con.executescript(SCHEMA) if not getattr(self, "_schema_done", False) else None
            self._schema_done = True
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # ----------------------------------------------------------------- runs
    def create_run(self, run_id: str, task: str, config: dict[str, Any], seed: int,
                   tags: dict[str, Any] | None = None) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT OR IGNORE INTO runs (id, task, config, seed, status, created, versions, git_commit, tags)"
                " VALUES (?, ?, ?, ?, 'created', ?, ?, ?, ?)",
                (run_id, task, json.dumps(config, sort_keys=True), seed, time.time(),
                 json.dumps(package_versions()), git_commit(), json.dumps(tags or {})))

    def update_run(self, run_id: str, **fields: Any) -> None:
        allowed = {"status", "step", "started", "finished", "wall_seconds", "summary", "tags"}
        bad = set(fields) - allowed
        if bad:
            raise StoreError(f"cannot update run fields {sorted(bad)}")
        cols, vals = [], []
        for k, v in fields.items():
            cols.append(f"{k} = ?")
            vals.append(json.dumps(v) if k in ("summary", "tags") else v)
        with self.transaction() as con:
            con.execute(f"UPDATE runs SET {', '.join(cols)} WHERE id = ?", (*vals, run_id))

    def delete_run(self, run_id: str) -> None:
        """Forget a run: its row, metrics, artifacts and its directory of checkpoints."""
        with self.transaction() as con:
            for table, col in (("metrics", "run_id"), ("artifacts", "run_id"), ("runs", "id")):
                con.execute(f"DELETE FROM {table} WHERE {col} = ?", (run_id,))
        if run_id and "/" not in run_id and run_id not in (".", ".."):
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def _record(self, row: sqlite3.Row | tuple) -> RunRecord:
        (rid, task, config, seed, status, step, created, started, finished, wall, versions, commit, summary,
         tags) = row
        return RunRecord(rid, task, json.loads(config), seed, status, step, created, started, finished, wall,
                         json.loads(versions or "{}"), commit, json.loads(summary or "{}"), json.loads(tags or "{}"))

    def get_run(self, run_id: str) -> RunRecord | None:
        with self.connect() as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else self._record(row)

    def find_run(self, prefix: str) -> RunRecord:
        """A run by id or unique id prefix."""
        with self.connect() as con:
            rows = con.execute("SELECT * FROM runs WHERE id LIKE ? ORDER BY created",
                               (prefix.replace("%", "") + "%",)).fetchall()
        exact = [r for r in rows if r[0] == prefix]
        if exact:
            return self._record(exact[0])
        if not rows:
            raise StoreError(f"run {prefix!r}: not in the store at {self.root}")
        if len(rows) > 1:
            raise StoreError(f"run {prefix!r}: ambiguous, matches {len(rows)} runs")
        return self._record(rows[0])

    def list_runs(self, task: str | None = None, status: str | None = None, limit: int | None = None
                  ) -> list[RunRecord]:
        q, args = "SELECT * FROM runs", []
        conds = []
        if task:
            conds.append("task = ?")
            args.append(task)
        if status:
            conds.append("status = ?")
            args.append(status)
        if conds:
            q += " WHERE " + " AND ".join(conds)
        q += " ORDER BY created DESC"
        if limit:
            q += f" LIMIT {int(limit)}"
        with self.connect() as con:
            return [self._record(r) for r in con.execute(q, args).fetchall()]

    # ----------------------------------------------------------------- metrics
    def log_metrics(self, run_id: str, step: int, split: str, values: dict[str, float]) -> None:
        with self.transaction() as con:
            con.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, step, split, name, value) VALUES (?, ?, ?, ?, ?)",
                [(run_id, int(step), split, k, float(v)) for k, v in values.items()])

    def log_metric_rows(self, run_id: str, rows: list[tuple[int, str, str, float]]) -> None:
        with self.transaction() as con:
            con.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, step, split, name, value) VALUES (?, ?, ?, ?, ?)",
                [(run_id, int(s), sp, n, float(v)) for s, sp, n, v in rows])

    def truncate_metrics(self, run_id: str, after_step: int) -> None:
        """Drop metrics logged after ``after_step`` (a resumed run recomputes them)."""
        with self.transaction() as con:
            con.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, int(after_step)))

    def metrics(self, run_id: str, split: str | None = None, name: str | None = None
                ) -> dict[str, dict[str, list[tuple[int, float]]]]:
        """``{split: {name: [(step, value), ...]}}`` in step order."""
        q, args = "SELECT step, split, name, value FROM metrics WHERE run_id = ?", [run_id]
        if split:
            q += " AND split = ?"
            args.append(split)
        if name:
            q += " AND name = ?"
            args.append(name)
        q += " ORDER BY step"
        out: dict[str, dict[str, list[tuple[int, float]]]] = {}
        with self.connect() as con:
            for step, sp, nm, val in con.execute(q, args):
                out.setdefault(sp, {}).setdefault(nm, []).append((step, val))
        return out

    # ----------------------------------------------------------------- artifacts
    # Paths under the store root are kept relative to it (so a store directory can be moved or
    # copied whole) and handed back absolute.
    def _rel(self, path: str | Path) -> str:
        p = Path(path)
        if p.is_absolute():
            try:
                return p.relative_to(self.root).as_posix()
            except ValueError:
                return str(p)
        return p.as_posix()

    def _abs(self, stored: str) -> str:
        p = Path(stored)
        return str(p if p.is_absolute() else self.root / p)

    def add_artifact(self, run_id: str, kind: str, path: str | Path, step: int | None = None) -> None:
        with self.transaction() as con:
            con.execute("INSERT OR REPLACE INTO artifacts (run_id, kind, step, path, created) VALUES (?, ?, ?, ?, ?)",
                        (run_id, kind, step, self._rel(path), time.time()))

    def remove_artifact(self, run_id: str, kind: str, path: str | Path) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM artifacts WHERE run_id = ? AND kind = ? AND path IN (?, ?)",
                        (run_id, kind, self._rel(path), str(path)))

    def artifacts(self, run_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """``[{"kind", "step", "path" (absolute), "created"}]`` in step order."""
        q, args = "SELECT kind, step, path, created FROM artifacts WHERE run_id = ?", [run_id]
        if kind:
            q += " AND kind = ?"
            args.append(kind)
        q += " ORDER BY step, created"
        with self.connect() as con:
            return [{"kind": k, "step": s, "path": self._abs(p), "created": c} for k, s, p, c in con.execute(q, args)]

    # ----------------------------------------------------------------- stored models
    def checkpoints(self, run_ref: str) -> list[tuple[int, str]]:
        """``[(step, path)]`` of a run's checkpoints, in step order (a run id or unique prefix)."""
        rec = self.find_run(run_ref)
        return sorted((int(a["step"]), a["path"]) for a in self.artifacts(rec.id, "checkpoint"))

    def load_model(self, run_ref: str, step: int | None = None):
        """A stored run's :class:`~theorylab.models.Transformer` in eval mode, from its checkpoint at
        ``step`` (the last one when None).

        Raises :class:`~theorylab.errors.StoreError` when the run has no such checkpoint and
        :class:`~theorylab.errors.CheckpointError` when the file is missing, corrupt or does not
        match the run's model config.
        """
        from theorylab.models import Transformer, TransformerConfig
        from theorylab.store.checkpoint import load_checkpoint

        rec = self.find_run(run_ref)
        ckpts = self.checkpoints(rec.id)
        if step is not None:
            ckpts = [c for c in ckpts if c[0] == step]
        if not ckpts:
            raise StoreError(f"run {rec.id}: no checkpoint" + (f" at step {step}" if step is not None else ""))
        import torch

        model = Transformer(TransformerConfig(**rec.config["model"]))
        # weights are stored as trained: float64 runs in float64, float32 and bf16 (float32 master weights) in float32
        dtype = torch.float64 if rec.config.get("train", {}).get("dtype") == "float64" else torch.float32
        model = model.to(dtype)
        load_checkpoint(ckpts[-1][1], model)
        model.eval()
        return model

    def checkpoint_models(self, run_ref: str) -> list[tuple[int, Any]]:
        """``[(step, load)]`` for every checkpoint of a run: ``load()`` returns that step's model (loaded
        only when called, so a long series never sits in memory at once)."""
        rec = self.find_run(run_ref)
        return [(st, (lambda st=st: self.load_model(rec.id, st))) for st, _ in self.checkpoints(rec.id)]

    def load_task(self, run_ref: str):
        """The :class:`~theorylab.tasks.Task` a stored run trained on (same config and seed)."""
        from theorylab.tasks import build_task_config, make_task

        rec = self.find_run(run_ref)
        return make_task(build_task_config(rec.config["task"]), rec.seed)

    # ----------------------------------------------------------------- claims
    def save_claim_result(self, claim_id: str, tier: str, seeds: list[int], verdict: str,
                          result: dict[str, Any]) -> int:
        with self.transaction() as con:
            cur = con.execute(
                "INSERT INTO claim_results (claim_id, tier, seeds, verdict, result, created) VALUES (?, ?, ?, ?, ?, ?)",
                (claim_id, tier, json.dumps(seeds), verdict, json.dumps(result, default=_json_default), time.time()))
            return int(cur.lastrowid)

    def claim_results(self, claim_id: str | None = None, tier: str | None = None, latest: bool = True
                      ) -> list[dict[str, Any]]:
        q, args = "SELECT id, claim_id, tier, seeds, verdict, result, created FROM claim_results", []
        conds = []
        if claim_id:
            conds.append("claim_id = ?")
            args.append(claim_id)
        if tier:
            conds.append("tier = ?")
            args.append(tier)
        if conds:
            q += " WHERE " + " AND ".join(conds)
        q += " ORDER BY created"
        with self.connect() as con:
            rows = [{"id": i, "claim_id": c, "tier": t, "seeds": json.loads(s), "verdict": v,
                     "result": json.loads(r), "created": cr} for i, c, t, s, v, r, cr in con.execute(q, args)]
        if latest:
            last: dict[tuple[str, str], dict[str, Any]] = {}
            for r in rows:
                last[(r["claim_id"], r["tier"])] = r
            rows = list(last.values())
        return rows


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
