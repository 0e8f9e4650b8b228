"""Store: runs, metrics, artifacts, claim results; concurrent writers lose nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from theorylab.errors import StoreError
from theorylab.store import Store


def test_run_round_trip(store):
    store.create_run("modular-abc", "modular", {"a": 1}, 3, {"t": "x"})
    store.update_run("modular-abc", status="finished", step=9, summary={"metrics": {"test/accuracy": 0.5}})
    rec = store.get_run("modular-abc")
    assert rec.config == {"a": 1} and rec.seed == 3 and rec.status == "finished" and rec.step == 9
    assert rec.summary["metrics"]["test/accuracy"] == 0.5 and rec.tags == {"t": "x"}
    assert store.find_run("modular-a").id == "modular-abc"
    with pytest.raises(StoreError, match="not in the store"):
        store.find_run("zzz")


def test_ambiguous_prefix(store):
    store.create_run("modular-aa1", "modular", {}, 0)
    store.create_run("modular-aa2", "modular", {}, 0)
    with pytest.raises(StoreError, match="ambiguous"):
        store.find_run("modular-aa")


def test_metrics_and_artifacts(store):
    store.create_run("r", "modular", {}, 0)
    store.log_metrics("r", 0, "test", {"loss": 2.0, "accuracy": 0.1})
    store.log_metrics("r", 10, "test", {"loss": 1.0, "accuracy": 0.5})
    assert store.metrics("r")["test"]["loss"] == [(0, 2.0), (10, 1.0)]
    store.truncate_metrics("r", 5)
    assert store.metrics("r")["test"]["loss"] == [(0, 2.0)]
    store.add_artifact("r", "checkpoint", "/x/ckpt", 10)
    assert store.artifacts("r", "checkpoint")[0]["path"] == "/x/ckpt"


def test_wal_mode(store):
    store.create_run("r", "modular", {}, 0)
    with store.connect() as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_claim_results_latest(store):
    store.save_claim_result("a2020.x", "smoke", [0, 1], "supported", {"v": 1})
    store.save_claim_result("a2020.x", "smoke", [0, 1], "refuted", {"v": 2})
    rows = store.claim_results("a2020.x")
    assert len(rows) == 1 and rows[0]["verdict"] == "refuted"
    assert len(store.claim_results("a2020.x", latest=False)) == 2


WRITER = textwrap.dedent("""
    import sys
    from theorylab.store import Store
    s = Store(sys.argv[1]); w = sys.argv[2]
    for i in range(150):
        rid = f"run-{w}-{i % 5}"
        s.create_run(rid, "modular", {"w": w}, 0)
        s.log_metrics(rid, i, "test", {"loss": float(i), "accuracy": 0.5})
""")


def test_two_concurrent_writers_lose_nothing(tmp_path):
    root = tmp_path / "shared"
    Store(root).create_run("init", "modular", {}, 0)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), w]) for w in ("a", "b")]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    s = Store(root)
    assert len(s.list_runs()) == 11
    for w in ("a", "b"):
        total = sum(len(s.metrics(f"run-{w}-{k}")["test"]["loss"]) for k in range(5))
        assert total == 150


def test_default_home_and_override(tmp_path, monkeypatch):
    monkeypatch.delenv("THEORYLAB_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Store().root == (tmp_path / "theorylab-runs").resolve()
    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path / "elsewhere"))
    assert Store().root == (tmp_path / "elsewhere").resolve()


def test_run_records_versions_and_commit(store):
    store.create_run("r", "modular", {}, 0)
    rec = store.get_run("r")
    assert {"theorylab", "python", "torch", "numpy"} <= set(rec.versions)
    assert rec.git_commit is None or len(rec.git_commit) == 40


def test_delete_run_removes_rows_and_files(store):
    store.create_run("r", "modular", {}, 0)
    store.log_metrics("r", 0, "test", {"loss": 1.0})
    ck = store.run_dir("r") / "ckpt.safetensors"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"x")
    store.add_artifact("r", "checkpoint", ck, 0)
    store.delete_run("r")
    assert store.get_run("r") is None and store.metrics("r") == {} and store.artifacts("r") == []
    assert not store.run_dir("r").exists()


def test_store_directory_can_be_moved(tmp_path):
    a = Store(tmp_path / "a")
    a.create_run("r", "modular", {}, 0)
    ck = a.run_dir("r") / "ckpt-00000001.safetensors"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"x")
    a.add_artifact("r", "checkpoint", ck, 1)
    (tmp_path / "a").rename(tmp_path / "b")
    [art] = Store(tmp_path / "b").artifacts("r")
    assert art["path"] == str(tmp_path.resolve() / "b" / "runs" / "r" / "ckpt-00000001.safetensors")
    Store(tmp_path / "b").remove_artifact("r", "checkpoint", art["path"])
    assert Store(tmp_path / "b").artifacts("r") == []


TRAINER = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from theorylab.store import Store
    from theorylab.runs import build_run_config, train
    cfg = build_run_config("modular", ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32",
                                       "train.steps=40", "train.eval_every=2", "train.checkpoint_every=4"],
                           seed=int(sys.argv[2]))
    print(train(cfg, Store(sys.argv[1]), progress=False).run_id)
""")


def test_two_concurrent_trainers_share_a_store(tmp_path):
    root = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-c", TRAINER, str(root), str(seed)], stdout=subprocess.PIPE,
                              text=True) for seed in (0, 1)]
    ids = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and len(set(ids)) == 2
    s = Store(root)
    for rid in ids:
        rec = s.get_run(rid)
        assert rec.status == "finished" and rec.step == 40
        m = s.metrics(rid)
        assert [step for step, _ in m["test"]["accuracy"]] == list(range(0, 41, 2))
        assert [a["step"] for a in s.artifacts(rid, "checkpoint")] == [40]
