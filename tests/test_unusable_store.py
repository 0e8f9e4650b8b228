"""A store the program cannot use: one ``theorylab: error:`` line naming the path and the problem, exit 2,
nothing written, from the CLI (``runs``, ``train``, ``show``) and from the API (StoreError).

The kinds: a read-only store directory, a database of random bytes, a truncated database, and
``THEORYLAB_HOME`` naming a file.  A read-only directory does not stop root, so when the tests run as
root that case runs in a subprocess without root's power over file modes, where it is a real one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from theorylab.errors import StoreError
from theorylab.store import Store

TINY = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.steps=4", "train.eval_every=2"]
RUN = "modular-000000000000"

# (kind, what the error line says)
KINDS = [("readonly", "is read-only"), ("random", "is not an SQLite database"), ("truncated", "is truncated"),
         ("file", "is a file, not a directory")]


def _real_store(home: Path) -> None:
    """A store with one run and enough metrics for a database of several pages."""
    s = Store(home)
    s.create_run(RUN, "modular", {"task": {"name": "modular"}}, 0)
    s.update_run(RUN, status="finished", step=4)
    s.log_metric_rows(RUN, [(i, "test", f"m{j}", float(i)) for i in range(200) for j in range(5)])


def make_broken(kind: str, base: Path) -> Path:
    """A store of the given kind under ``base``; returns what THEORYLAB_HOME names."""
    home = base / "home"
    if kind == "file":
        home.write_text("not a directory\n")
    elif kind == "random":
        home.mkdir()
        (home / "store.sqlite").write_bytes(np.random.default_rng(0).bytes(8192))
    elif kind == "truncated":
        _real_store(home)
        db = home / "store.sqlite"
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    elif kind == "readonly":
        _real_store(home)
        for p in [home, *home.rglob("*")]:
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return home


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a digest of its content: equal snapshots, nothing written."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


# ----------------------------------------------------------------------------- what each check runs

CLI_CALLS = [["runs"], ["runs", "--json"], ["train", "modular", *TINY, "--quiet"], ["show", RUN], ["show", RUN, "--json"]]
API_CALLS = ["connect", "list_runs", "get_run", "create_run", "train", "checkpoint"]


def api_call(name: str, home: Path) -> None:
    s = Store(home)
    if name == "connect":
        with s.connect():
            pass
    elif name == "list_runs":
        s.list_runs()
    elif name == "get_run":
        s.get_run(RUN)
    elif name == "create_run":
        s.create_run("modular-111111111111", "modular", {}, 0)
    elif name == "train":
        from theorylab.runs import build_run_config, train

        train(build_run_config("modular", TINY), s, progress=False)
    elif name == "checkpoint":
        from theorylab.models import TransformerConfig, build_model
        from theorylab.store.checkpoint import save_checkpoint

        model = build_model(TransformerConfig(d_vocab=10, n_ctx=4, d_model=8, n_heads=2, n_layers=1), seed=0)
        save_checkpoint(s.run_dir("modular-111111111111") / "ckpt-00000001.safetensors", model, None, 1)


def collect(home: Path, api_calls: list[str]) -> dict:
    """Every CLI call (exit code, stdout, stderr) and API call (the exception) against ``home``, which
    THEORYLAB_HOME must name."""
    from theorylab.cli import main

    out: dict = {"cli": [], "api": {}}
    for argv in CLI_CALLS:
        o, e = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            rc = main(list(argv))
        out["cli"].append({"argv": argv, "rc": rc, "out": o.getvalue(), "err": e.getvalue()})
    for name in api_calls:
        try:
            api_call(name, home)
            out["api"][name] = {"type": None, "msg": ""}
        except Exception as err:
            out["api"][name] = {"type": type(err).__name__, "msg": str(err)}
    return out


CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import test_unusable_store as t
print("RESULT " + json.dumps(t.collect(Path(sys.argv[2]), json.loads(sys.argv[3]))))
"""


def _drop_root_powers():  # pragma: no cover - runs in the child, before it executes Python
    """Keep uid 0 but drop the capabilities that let root ignore file modes (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH, CAP_FOWNER) from the bounding set: the Python the child executes lacks them."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def collect_without_root_powers(home: Path, api_calls: list[str]) -> dict:
    """:func:`collect` in a subprocess for which file modes hold although it runs as root."""
    env = {**os.environ, "THEORYLAB_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    repo = Path(__file__).resolve().parents[1]
    probe_code = f"open({str(home / 'probe')!r}, 'w')"
    try:
        probe = subprocess.run([sys.executable, "-c", probe_code], capture_output=True, text=True, env=env, cwd=repo,
                               preexec_fn=_drop_root_powers)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("running as root, and root's power over file modes cannot be dropped here")
    if "PermissionError" not in probe.stderr:
        (home / "probe").unlink(missing_ok=True)
        pytest.skip("running as root, and root's power over file modes cannot be dropped here")
    r = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).parent), str(home), json.dumps(api_calls)],
                       env=env, capture_output=True, text=True, timeout=300, cwd=repo, preexec_fn=_drop_root_powers)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture()
def base():
    """A directory of its own (not pytest's tmp_path, which keeps the last runs' files)."""
    d = Path(tempfile.mkdtemp(prefix="theorylab-unusable-"))
    yield d
    for p in [d, *d.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("kind, problem", KINDS)
def test_unusable_store_is_one_line_exit_2_and_nothing_written(kind, problem, base, monkeypatch):
    home = make_broken(kind, base)
    named = str(home / "store.sqlite") if kind in ("random", "truncated") else str(home)
    # every API entry point that writes: a checkpoint cannot be written into a read-only or missing directory
    # (into the directory of a corrupt database it can: the loop refuses that store before any checkpoint)
    api_calls = API_CALLS if kind in ("readonly", "file") else [c for c in API_CALLS if c != "checkpoint"]
    before = snapshot(base)
    if kind == "readonly" and os.geteuid() == 0:  # root writes into read-only directories
        got = collect_without_root_powers(home, api_calls)
    else:
        monkeypatch.setenv("THEORYLAB_HOME", str(home))
        got = collect(home, api_calls)
    for r in got["cli"]:
        lines = [ln for ln in r["err"].splitlines() if ln.strip()]
        assert r["rc"] == 2 and r["out"] == "", (kind, r)
        assert len(lines) == 1 and lines[0].startswith("theorylab: error: "), (kind, r)
        assert problem in lines[0] and named in lines[0] and "Traceback" not in r["err"], (kind, r)
    for name in api_calls:
        res = got["api"][name]
        assert res["type"] == "StoreError" and problem in res["msg"], (kind, name, res)
        assert named in res["msg"] or (name == "checkpoint" and str(home) in res["msg"]), (kind, name, res)
    assert snapshot(base) == before, "something was written"


def test_a_database_corrupt_inside_is_one_store_error(tmp_path, cli):
    """A database whose header is sound but whose pages are not: SQLite finds it on reading; still one line."""
    home = tmp_path / "home"
    _real_store(home)
    db = home / "store.sqlite"
    data = bytearray(db.read_bytes())
    data[4096:] = np.random.default_rng(1).bytes(len(data) - 4096)  # every page after the first
    db.write_bytes(bytes(data))
    s = Store(home)
    with pytest.raises(StoreError, match="corrupt") as info:
        s.list_runs()
    assert str(db) in str(info.value) and "\n" not in str(info.value)


def test_sqlite_errors_that_are_the_program_s_stay_errors(store):
    """Only errors that are the store's fault become StoreError; a bad query is a bug, not bad input."""
    import sqlite3

    store.create_run("r", "modular", {}, 0)
    with pytest.raises(sqlite3.OperationalError, match="syntax"):
        with store.connect() as con:
            con.execute("SELEC 1")


def test_check_names_each_problem_and_writes_nothing(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(StoreError, match="lies under .*which is a file"):
        Store(f / "sub" / "store").check()
    assert not (tmp_path / "f" / "sub").exists()
    Store(tmp_path / "new" / "store").check()  # a store that does not exist yet is fine, and not made
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "store.sqlite").write_bytes(b"")
    Store(empty).check()  # SQLite makes an empty file a new database
    (empty / "store.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 20)
    with pytest.raises(StoreError, match="truncated"):
        Store(empty).check()


def test_a_store_from_older_code_gains_the_new_columns(tmp_path):
    """A store written before runs recorded their owner opens, keeps its runs, and shows its dead run."""
    import sqlite3
    import time

    home = tmp_path / "old"
    home.mkdir()
    con = sqlite3.connect(home / "store.sqlite")
    con.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, task TEXT NOT NULL, config TEXT NOT NULL, seed INTEGER NOT "
                "NULL, status TEXT NOT NULL, step INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, started REAL, "
                "finished REAL, wall_seconds REAL, versions TEXT, git_commit TEXT, summary TEXT, tags TEXT)")
    old = time.time() - 3600
    con.execute("INSERT INTO runs (id, task, config, seed, status, created, started) VALUES "
                "('modular-a', 'modular', '{}', 0, 'running', ?, ?)", (old, old))
    con.commit()
    con.close()
    [rec] = Store(home).list_runs()
    assert rec.id == "modular-a" and rec.stored_status == "running" and rec.status == "interrupted"
    assert rec.host is None and rec.heartbeat is None
    with Store(home).connect() as con:
        cols = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
    assert {"host", "pid", "pid_start", "heartbeat"} <= cols


def test_the_entry_point_prints_one_line_not_a_traceback(base):
    home = make_broken("file", base)
    r = subprocess.run([sys.executable, "-m", "theorylab", "runs"], env={**os.environ, "THEORYLAB_HOME": str(home)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("theorylab: error: store ") and str(home) in r.stderr
