"""CLI: exit codes, one JSON object with --json, nothing written on bad input, kill -9 + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.eval_every=10"]


def tl(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "theorylab", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def one_json(stdout: str):
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


def test_train_runs_show_json(cli_env):
    r = tl(["train", "modular", *TINY, "train.steps=20", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    d = one_json(r.stdout)
    assert d["status"] == "finished" and d["step"] == 20 and "test/accuracy" in d["metrics"]
    again = one_json(tl(["train", "modular", *TINY, "train.steps=20", "--json"], cli_env).stdout)
    assert again["reused"] and again["metrics"] == d["metrics"]
    runs = one_json(tl(["runs", "--json"], cli_env).stdout)
    assert [x["id"] for x in runs["runs"]] == [d["run_id"]]
    show = one_json(tl(["show", d["run_id"][:12], "--json"], cli_env).stdout)
    assert show["id"] == d["run_id"] and show["artifacts"]


@pytest.mark.parametrize("args,needle", [
    (["train", "modular", "model.d_model=15", "model.n_heads=4"], "must divide"),
    (["train", "nosuchtask"], "unknown task"),
    (["train", "modular", "train.optimizer=lion"], "train.optimizer"),
    (["train", "modular", "model.bogus=1"], "unknown key"),
    (["train", "modular", "--config", "/nonexistent.yaml"], "no such file"),
    (["show", "nosuchrun"], "not in the store"),
    (["resume", "nosuchrun"], "not in the store"),
    (["train", "modular", "--seed", "x"], "seed"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(cli_env, args, needle):
    r = tl(args + ["--json"], cli_env)
    assert r.returncode == 2
    assert r.stdout == ""
    err = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and needle in err[0], r.stderr
    home = Path(cli_env["THEORYLAB_HOME"])
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())
    if (home / "store.sqlite").exists():
        from theorylab.store import Store

        assert Store(home).list_runs() == []


def test_unparsable_config_file(cli_env, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model: {d_model: [1,\n")
    r = tl(["train", "modular", "--config", str(p)], cli_env)
    assert r.returncode == 2 and "does not parse" in r.stderr


def test_corrupt_checkpoint_cli(cli_env):
    d = one_json(tl(["train", "modular", *TINY, "train.steps=20", "train.checkpoint_every=10",
                     "--json"], cli_env).stdout)
    from theorylab.store import Store

    s = Store(cli_env["THEORYLAB_HOME"])
    s.update_run(d["run_id"], status="stopped")
    ck = Path(s.artifacts(d["run_id"], "checkpoint")[-1]["path"])
    ck.write_bytes(ck.read_bytes()[:100])
    r = tl(["resume", d["run_id"]], cli_env)
    assert r.returncode == 2 and "corrupt or truncated" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_plain_progress_lines_when_not_a_tty(cli_env):
    r = tl(["train", "modular", *TINY, "train.steps=20"], cli_env)
    assert r.returncode == 0
    assert "step 10/20" in r.stderr and "eta" in r.stderr


def test_kill_9_then_resume_equals_uninterrupted(cli_env, tmp_path):
    args = ["train", "modular", "task.p=23", "model.d_model=32", "model.n_heads=2", "model.d_mlp=64",
            "train.steps=1000", "train.eval_every=100", "train.checkpoint_every=100", "train.batch_size=64",
            "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "theorylab", *args], env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs_dir = Path(cli_env["THEORYLAB_HOME"]) / "runs"
    deadline = time.time() + 120
    while time.time() < deadline:
        if list(runs_dir.glob("*/ckpt-*.safetensors")) and proc.poll() is None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    from theorylab.store import Store

    s = Store(cli_env["THEORYLAB_HOME"])
    [rec] = s.list_runs()
    assert rec.status == "running"  # killed: never marked finished
    r = tl(["resume", rec.id, "--json", "--quiet"], cli_env, timeout=300)
    assert r.returncode == 0, r.stderr
    resumed = one_json(r.stdout)
    ref_env = {**cli_env, "THEORYLAB_HOME": str(tmp_path / "ref")}
    ref = one_json(tl([*args, "--json"], ref_env, timeout=300).stdout)
    assert resumed["status"] == "finished" and resumed["step"] == 1000
    assert resumed["metrics"] == ref["metrics"]
    assert s.metrics(rec.id) == Store(ref_env["THEORYLAB_HOME"]).metrics(ref["run_id"])
