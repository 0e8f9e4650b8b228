"""The embedded results store: SQLite in WAL mode.

Layout under ``$THEORYLAB_HOME`` (default ``./theorylab-runs``)::

    store.sqlite          runs, metrics, artifacts, claim results
    runs/<run_id>/        checkpoints and figures of one run
    claims/<claim_id>/    figures of claim results

Every write is one short transaction, so two processes writing at once lose
nothing (SQLite serialises writers; a busy timeout makes the second one wait).

A store the program cannot use (the directory is a file or read-only, the database is not an
SQLite file or is truncated, the disk is full) raises one :class:`~theorylab.errors.StoreError`
line that names the path and the problem, before anything is written where that can be known.

A run being trained records who trains it (host, pid, the process's start time) and a heartbeat
the loop refreshes; a ``running`` run whose process is gone is reported as ``interrupted``
(:func:`run_is_alive`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
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
    tags TEXT,
    host TEXT,                      -- who trains it: host name, process id, the process's start time
    pid INTEGER,
    pid_start TEXT,
    heartbeat REAL                  -- time.time() of the loop's last sign of life
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


# Columns added after the first release: a store written by older code gains them when opened.
_ADDED_RUN_COLUMNS = {"host": "TEXT", "pid": "INTEGER", "pid_start": "TEXT", "heartbeat": "REAL"}
_RUN_COLUMNS = ("id", "task", "config", "seed", "status", "step", "created", "started", "finished", "wall_seconds",
                "versions", "git_commit", "summary", "tags", *_ADDED_RUN_COLUMNS)

# Liveness.  The loop writes a heartbeat at most every HEARTBEAT_SECONDS (and at least at every
# evaluation and checkpoint); a run on this host is alive while its process is; a run on another
# host is taken for dead once its heartbeat is older than STALE_AFTER_SECONDS, which must exceed the
# longest stretch the loop spends without a heartbeat (one step, one evaluation or one checkpoint).
HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 600.0

# SQLite error names that mean the store (not the program) is the problem.
_STORE_PROBLEMS = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR",
                   "SQLITE_FULL", "SQLITE_PERM", "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_NOLFS", "SQLITE_AUTH")
_SQLITE_MAGIC = b"SQLite format 3\x00"


def home() -> Path:
    return Path(os.environ.get("THEORYLAB_HOME", "theorylab-runs")).resolve()


def this_host() -> str:
    return socket.gethostname()


def process_start(pid: int) -> str | None:
    """An identity of process ``pid``'s start (boot id and start time in clock ticks, from ``/proc``), so a
    recycled pid is not taken for the process that trained a run; None where ``/proc`` is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start = stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{start}"
    except (OSError, IndexError):
        return None


def _process_gone(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` of this host has ended (or the pid now names another process)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        pass
    except OSError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is gone
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return True
    except (OSError, IndexError):
        pass
    now = process_start(pid)
    return start is not None and now is not None and now != start


def owner() -> dict[str, Any]:
    """This process as the owner of the runs it trains: ``{"host", "pid", "pid_start"}``."""
    return {"host": this_host(), "pid": os.getpid(), "pid_start": process_start(os.getpid())}


def run_is_alive(host: str | None, pid: int | None, pid_start: str | None, heartbeat: float | None,
                 now: float | None = None) -> bool:
    """Whether the process recorded as training a run still does: on this (POSIX) host, whether that
    process is there; on another (or an unknown) host, whether its heartbeat is younger than
    :data:`STALE_AFTER_SECONDS`."""
    if host is not None and pid is not None and host == this_host() and os.name == "posix":
        return not _process_gone(int(pid), pid_start)  # (on Windows, os.kill(pid, 0) would end that process)
    if heartbeat is None:
        return False
    now = time.time() if now is None else now
    return now - heartbeat <= STALE_AFTER_SECONDS


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


def git_dirty() -> bool | None:
    """Whether the checkout holding theorylab has changes to tracked files (None when it is no git checkout):
    a commit then does not name the code that ran."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                             capture_output=True, text=True, timeout=5)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _sqlite_file_problem(db: Path) -> str | None:
    """What is wrong with an SQLite database file, read from its 100-byte header without SQLite (which
    would create its ``-wal`` and ``-shm`` files beside a broken database): None when nothing is."""
    try:
        size = db.stat().st_size
        with open(db, "rb") as fh:
            head = fh.read(100)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if size == 0:
        return None  # SQLite makes an empty file a new database
    if not head.startswith(_SQLITE_MAGIC[: len(head)]):
        return "is not an SQLite database (corrupt or overwritten)"
    if len(head) < 100:
        return f"is truncated ({size} bytes, shorter than an SQLite header)"
    page = int.from_bytes(head[16:18], "big")
    page = 65536 if page == 1 else page
    pages = int.from_bytes(head[28:32], "big")
    if head[24:28] == head[92:96] and pages > 0 and size < page * pages:  # the header's page count is valid
        return f"is truncated ({size} bytes; its header says {pages} pages of {page} bytes)"
    if page < 512 or page & (page - 1) or size % page:
        return f"is truncated or corrupt ({size} bytes is not a whole number of {page}-byte pages)"
    return None


def _add_missing_columns(con: sqlite3.Connection) -> None:
    """Bring a store written by older code up to this schema (one transaction; concurrent openers wait)."""
    have = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
    if set(_ADDED_RUN_COLUMNS) <= have:
        return
    con.execute("BEGIN IMMEDIATE")
    try:
        have = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
        for col, kind in _ADDED_RUN_COLUMNS.items():
            if col not in have:
                con.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


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
    host: str | None = None       # who trains (or trained) it
    pid: int | None = None
    pid_start: str | None = None
    heartbeat: float | None = None  # time.time() of the loop's last sign of life
    stored_status: str = ""       # the status as stored; ``status`` says ``interrupted`` for a dead ``running``

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Store:
    """A handle on the store directory.  Cheap to create; connections are per call."""

    def __init__(self, root: str | Path | None = None):
        self.from_env = root is None and "THEORYLAB_HOME" in os.environ
        self.root = Path(root).resolve() if root is not None else home()
        self._checked = False

    @property
    def db_path(self) -> Path:
        return self.root / "store.sqlite"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    # ----------------------------------------------------------------- a store the program can use
    def _where(self) -> str:
        return f"store {str(self.root)!r}" + (" (THEORYLAB_HOME)" if self.from_env else "")

    def _elsewhere(self) -> str:
        return "point THEORYLAB_HOME at another directory" if self.from_env else "give another store directory"

    def check(self) -> None:
        """Raise one :class:`StoreError` line unless this store can be used: its directory is a writable
        directory (or can be made one) and its database, if there is one, is an SQLite file that is not
        truncated.  Writes nothing; :meth:`connect` runs it once per handle and :func:`train` before
        training, so a store the program cannot use is refused before anything is written."""
        root = self.root
        existing = root
        while not existing.exists() and existing != existing.parent:  # the nearest existing ancestor
            existing = existing.parent
        if not existing.is_dir():
            what = "is a file" if existing == root else f"lies under {str(existing)!r}, which is a file"
            raise StoreError(f"{self._where()} {what}, not a directory; {self._elsewhere()}")
        if not os.access(existing, os.W_OK | os.X_OK):
            what = "is read-only" if existing == root else f"cannot be created: {str(existing)!r} is read-only"
            raise StoreError(f"{self._where()} {what} (theorylab writes its runs there); make it writable "
                             f"or {self._elsewhere()}")
        db = self.db_path
        if existing != root or not (db.exists() or db.is_symlink()):
            return
        if not db.is_file():
            raise StoreError(f"store database {str(db)!r} is not a file; move it aside or {self._elsewhere()}")
        if not os.access(db, os.R_OK | os.W_OK):
            raise StoreError(f"store database {str(db)!r} is read-only (theorylab writes its runs there); make it "
                             f"writable or {self._elsewhere()}")
        problem = None
        for attempt in range(3):  # a header read while another process extends the file can look short
            problem = _sqlite_file_problem(db)
            if problem is None or "not an SQLite" in problem:
                break
            time.sleep(0.1 * (attempt + 1))
        if problem is not None:
            raise StoreError(f"store database {str(db)!r} {problem}; move it aside (a new store starts there) "
                             f"or {self._elsewhere()}")

    def _sqlite_error(self, err: sqlite3.Error) -> StoreError:
        """One line naming the store and the problem, for an SQLite error that is the store's fault."""
        name = getattr(err, "sqlite_errorname", "") or ""
        db = str(self.db_path)
        msg = (str(err).splitlines() or [type(err).__name__])[0]
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return StoreError(f"store database {db!r} is corrupt or not an SQLite database ({msg}); move it aside "
                              f"(a new store starts there) or {self._elsewhere()}")
        if name.startswith(("SQLITE_READONLY", "SQLITE_PERM")) or (
                name.startswith("SQLITE_CANTOPEN") and not os.access(self.root, os.W_OK | os.X_OK)):
            return StoreError(f"{self._where()} is read-only ({msg}); make it writable or {self._elsewhere()}")
        if name.startswith("SQLITE_FULL"):
            return StoreError(f"{self._where()}: the disk is full ({msg})")
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreError(f"store database {db!r} stayed locked by another process ({msg}); try again")
        return StoreError(f"store database {db!r} cannot be used ({msg})")

    def _is_store_problem(self, err: BaseException) -> bool:
        name = getattr(err, "sqlite_errorname", "") or ""
        return isinstance(err, sqlite3.DatabaseError) and name.startswith(_STORE_PROBLEMS)

    def _make_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            self.check()  # names the problem when it is one it knows
            raise StoreError(f"{self._where()} cannot be created: {err.strerror or err}") from None

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to the store's database (created with its directory when missing).  Raises
        :class:`StoreError` for a store the program cannot use."""
        if not self._checked:
            self.check()
            self._checked = True
        self._make_root()
        try:
            con = sqlite3.connect(self.db_path, timeout=60.0, isolation_level=None)
        except sqlite3.Error as err:
            raise self._sqlite_error(err) from None
        try:
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA busy_timeout=60000")
                con.execute("PRAGMA synchronous=NORMAL")
                if not getattr(self, "_schema_done", False):
                    con.executescript(SCHEMA)
                    _add_missing_columns(con)
                    self._schema_done = True
            except sqlite3.Error as err:
                if self._is_store_problem(err):
                    raise self._sqlite_error(err) from None
                raise
            try:
                yield con
            except sqlite3.Error as err:
                if self._is_store_problem(err):
                    raise self._sqlite_error(err) from None
                raise
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
                try:
                    con.execute("ROLLBACK")
                except sqlite3.Error:  # no transaction left to roll back (a failed COMMIT ends it)
                    pass
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
        allowed = {"status", "step", "started", "finished", "wall_seconds", "summary", "tags", "host", "pid",
                   "pid_start", "heartbeat"}
        bad = set(fields) - allowed
        if bad:
            raise StoreError(f"cannot update run fields {sorted(bad)}")
        cols, vals = [], []
        for k, v in fields.items():
            cols.append(f"{k} = ?")
            vals.append(json.dumps(v) if k in ("summary", "tags") else v)
        with self.transaction() as con:
            con.execute(f"UPDATE runs SET {', '.join(cols)} WHERE id = ?", (*vals, run_id))

    def heartbeat(self, run_ids: list[str], step: int | None = None, now: float | None = None) -> None:
        """The loop's sign of life for the runs it trains (and how far they are): one short write."""
        if not run_ids:
            return
        marks = ",".join("?" * len(run_ids))
        now = time.time() if now is None else now
        with self.transaction() as con:
            if step is None:
                con.execute(f"UPDATE runs SET heartbeat = ? WHERE status = 'running' AND id IN ({marks})",
                            (now, *run_ids))
            else:
                con.execute(f"UPDATE runs SET heartbeat = ?, step = ? WHERE status = 'running' AND id IN ({marks})",
                            (now, int(step), *run_ids))

    def delete_run(self, run_id: str) -> None:
        """Forget a run: its row, metrics, artifacts and its directory of checkpoints."""
        with self.transaction() as con:
            for table, col in (("metrics", "run_id"), ("artifacts", "run_id"), ("runs", "id")):
                con.execute(f"DELETE FROM {table} WHERE {col} = ?", (run_id,))
        if run_id and "/" not in run_id and run_id not in (".", ".."):
            shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def _record(self, row: sqlite3.Row | tuple, now: float | None = None) -> RunRecord:
        (rid, task, config, seed, status, step, created, started, finished, wall, versions, commit, summary,
         tags, host, pid, pid_start, heartbeat) = row
        shown = status
        if status == "running" and not run_is_alive(host, pid, pid_start, heartbeat if heartbeat is not None
                                                    else started, now):
            shown = "interrupted"  # its process is gone: stopped without a word (killed, crashed, powered off)
        return RunRecord(rid, task, json.loads(config), seed, shown, step, created, started, finished, wall,
                         json.loads(versions or "{}"), commit, json.loads(summary or "{}"), json.loads(tags or "{}"),
                         host, pid, pid_start, heartbeat, status)

    _SELECT = f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs"

    def get_run(self, run_id: str) -> RunRecord | None:
        with self.connect() as con:
            row = con.execute(f"{self._SELECT} WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else self._record(row)

    def find_run(self, prefix: str) -> RunRecord:
        """A run by id or unique id prefix."""
        with self.connect() as con:
            rows = con.execute(f"{self._SELECT} WHERE id LIKE ? ORDER BY created",
                               (prefix.replace("%", "") + "%",)).fetchall()
        exact = [r for r in rows if r[0] == prefix]
        if exact:
            return self._record(exact[0])
        if not rows:
            raise StoreError(f"run {prefix!r}: not in the store at {self.root}")
        if len(rows) > 1:
            raise StoreError(f"run {prefix!r}: ambiguous, matches {len(rows)} runs")
        return self._record(rows[0])

    def list_runs(self, task: str | None = None, status: str | None = None, limit: int | None = None,
                  now: float | None = None) -> list[RunRecord]:
        """Runs, newest first.  ``status`` is the status as shown: ``interrupted`` selects the ``running``
        runs whose process is gone and ``running`` the others (``now``: the time liveness is judged at)."""
        q, args = self._SELECT, []
        conds = []
        if task:
            conds.append("task = ?")
            args.append(task)
        if status:
            conds.append("status = ?")
            args.append("running" if status == "interrupted" else status)
        if conds:
            q += " WHERE " + " AND ".join(conds)
        q += " ORDER BY created DESC"
        shown_only = status in ("running", "interrupted")
        if limit and not shown_only:
            q += f" LIMIT {int(limit)}"
        with self.connect() as con:
            recs = [self._record(r, now) for r in con.execute(q, args).fetchall()]
        if shown_only:
            recs = [r for r in recs if r.status == status][: int(limit) if limit else None]
        return recs

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
        ``step`` (the last one when None); a run with low-rank adapters comes back with them merged into its
        weights (:func:`theorylab.models.lora.merge_lora`).

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
        lora = rec.config.get("lora") or {}
        if lora.get("rank"):  # a run with low-rank adapters stores base and adapters; hand back the merged model
            from theorylab.models.lora import LoraConfig, apply_lora, merge_lora

            apply_lora(model, LoraConfig(**lora), torch.Generator().manual_seed(0))  # values replaced by the load
            load_checkpoint(ckpts[-1][1], model)
            merged = merge_lora(model).state_dict()
            model = Transformer(TransformerConfig(**rec.config["model"])).to(dtype)  # the usual parameter order
            model.load_state_dict(merged)
        else:
            load_checkpoint(ckpts[-1][1], model)
        model.eval()
        return model

    def lineage(self, run_ref: str) -> list[dict[str, Any]]:
        """A run's ancestry from its root to itself: each run's ``id``, ``task``, ``status``, ``objective`` (its
        objective's name), ``parent_step`` (the parent's checkpoint it started from; None = the final weights)
        and ``lora_rank``.  A parent missing from the store ends the chain with ``{"id": ..., "status":
        "missing"}``."""
        chain: list[dict[str, Any]] = []
        rec = self.find_run(run_ref)
        seen: set[str] = set()
        while True:
            cfg = rec.config
            chain.append({"id": rec.id, "task": rec.task, "status": rec.status,
                          "objective": cfg.get("objective", {}).get("name", "task"),
                          "parent_step": cfg.get("parent_step"), "lora_rank": cfg.get("lora", {}).get("rank")})
            seen.add(rec.id)
            parent = cfg.get("parent")
            if parent is None or parent in seen:
                break
            nxt = self.get_run(parent)
            if nxt is None:
                chain.append({"id": parent, "status": "missing"})
                break
            rec = nxt
        return chain[::-1]

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


def lineage_text(chain: list[dict[str, Any]]) -> str:
    """:meth:`Store.lineage`'s chain on one line, root first: ``a -> b (from step 10) -> c (dpo, LoRA r=2)``."""
    return " -> ".join(lineage_step(x) for x in chain)


def lineage_step(x: dict[str, Any]) -> str:
    """One run of :meth:`Store.lineage` as ``id (objective, from step K, LoRA r=R)``."""
    if x.get("status") == "missing":
        return f"{x['id']} (missing from the store)"
    notes = [x["objective"]] if x["objective"] != "task" else []
    if x.get("parent_step") is not None:
        notes.append(f"from step {x['parent_step']}")
    if x.get("lora_rank"):
        notes.append(f"LoRA r={x['lora_rank']}")
    return x["id"] + (f" ({', '.join(notes)})" if notes else "")
