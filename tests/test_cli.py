"""CLI: exit codes, one JSON object with --json, nothing written on bad input, kill -9, SIGTERM and
Ctrl-C + resume.

Most tests call ``theorylab.cli.main`` in-process (fast); the entry point itself and the signals are
exercised in real subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from theorylab.store import Store

TINY = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.eval_every=10"]


def strict_json(text: str):
    def no_constants(name):
        raise AssertionError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=no_constants)


def one_json(stdout: str):
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout
    return strict_json(lines[0])


def tl(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "theorylab", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_train_runs_show_resume_json(cli, store):
    rc, out, _ = cli("train", "modular", *TINY, "train.steps=20", "--json")
    assert rc == 0
    d = one_json(out)
    assert d["status"] == "finished" and d["step"] == 20 and not d["reused"]
    assert {"train/accuracy", "test/accuracy", "train/loss", "test/loss"} <= set(d["metrics"])
    rc, out, _ = cli("train", "modular", *TINY, "train.steps=20", "--json")
    again = one_json(out)
    assert rc == 0 and again["reused"] and again["metrics"] == d["metrics"] and again["run_id"] == d["run_id"]
    runs = one_json(cli("runs", "--json")[1])
    assert [x["id"] for x in runs["runs"]] == [d["run_id"]]
    show = one_json(cli("show", d["run_id"][:12], "--json")[1])
    assert show["id"] == d["run_id"] and show["status"] == "finished"
    assert [a["step"] for a in show["artifacts"] if a["kind"] == "checkpoint"] == [20]
    assert show["config"]["task"]["p"] == 11 and show["versions"]["torch"]
    resumed = one_json(cli("resume", d["run_id"], "--json")[1])
    assert resumed["reused"] and resumed["metrics"] == d["metrics"]
    tasks = one_json(cli("tasks", "--json")[1])
    assert "modular" in {t["name"] for t in tasks["tasks"]}


def test_force_retrains(cli, store):
    d = one_json(cli("train", "modular", *TINY, "train.steps=10", "--json")[1])
    f = one_json(cli("train", "modular", *TINY, "train.steps=10", "--force", "--json")[1])
    assert not f["reused"] and f["run_id"] == d["run_id"] and f["metrics"] == d["metrics"]
    assert len(store.list_runs()) == 1


def test_human_output(cli):
    rc, out, _ = cli("train", "modular", *TINY, "train.steps=10", "--quiet")
    assert rc == 0 and "finished at step 10" in out and "test/accuracy" in out and "steps/s" in out
    rc, out, _ = cli("runs")
    assert rc == 0 and "modular-" in out


@pytest.mark.parametrize("args,needle", [
    (["train", "modular", "model.d_model=15", "model.n_heads=4"], "must divide"),
    (["train", "modular", "model.d_model=0"], "model.d_model"),
    (["train", "modular", "train.steps=-5"], "train.steps"),
    (["train", "nosuchtask"], "unknown task"),
    (["train", "modular", "task.name=nosuchtask"], "unknown task"),
    (["train", "modular", "train.optimizer=lion"], "train.optimizer"),
    (["train", "modular", "model.bogus=1"], "unknown key"),
    (["train", "modular", "model.d_model=wide"], "model.d_model"),
    (["train", "modular", "model.d_model=true"], "not true/false"),
    (["train", "modular", "train.device=tpu"], "train.device"),
    (["train", "modular", *TINY, "train.early_stop_metric=test/acc", "train.early_stop_value=0.9"],
     "train.early_stop_metric"),
    (["train", "modular", "--config", "/nonexistent.yaml"], "no such file"),
    (["train", "modular", "justaword"], "expected key=value"),
    (["show", "nosuchrun"], "not in the store"),
    (["resume", "nosuchrun"], "not in the store"),
    (["train", "modular", "--seed", "x"], "seed"),
    (["train", "modular", "--seed", "-3"], "seed"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(cli, store, args, needle):
    rc, out, err = cli(*args, "--json")
    assert rc == 2
    assert out == ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("theorylab: error: ") and needle in lines[0], err
    assert not (store.root / "runs").exists()
    if store.db_path.exists():
        assert store.list_runs() == []


def test_unparsable_config_file(cli, store, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model: {d_model: [1,\n")
    rc, out, err = cli("train", "modular", "--config", p)
    assert rc == 2 and out == "" and "does not parse" in err and len(err.strip().splitlines()) == 1
    assert not store.db_path.exists()


def test_entry_point_exit_codes(cli_env):
    r = tl(["train", "modular", "model.d_model=15", "model.n_heads=4", "--json"], cli_env)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "must divide" in r.stderr
    assert not Path(cli_env["THEORYLAB_HOME"]).exists()


def test_help(cli):
    assert cli("--help")[0] == 0
    rc, out, _ = cli("train", "--help")
    assert rc == 0 and "key=value" in out and "--seed" in out and "--json" in out


def test_corrupt_checkpoint_cli(cli, store):
    d = one_json(cli("train", "modular", *TINY, "train.steps=20", "train.checkpoint_every=10", "--json")[1])
    store.update_run(d["run_id"], status="stopped")
    ck = Path(store.artifacts(d["run_id"], "checkpoint")[-1]["path"])
    ck.write_bytes(ck.read_bytes()[:100])
    rc, out, err = cli("resume", d["run_id"], "--json")
    assert rc == 2 and out == "" and "corrupt or truncated" in err
    assert len(err.strip().splitlines()) == 1
    assert store.get_run(d["run_id"]).status == "stopped"  # the record is left as it was


def test_checkpoint_of_another_run_is_refused(cli, store):
    a = one_json(cli("train", "modular", *TINY, "train.steps=10", "--json")[1])
    b = one_json(cli("train", "modular", *TINY, "train.steps=10", "--seed", "1", "--json")[1])
    store.update_run(b["run_id"], status="stopped")
    pa = Path(store.artifacts(a["run_id"], "checkpoint")[-1]["path"])
    pb = Path(store.artifacts(b["run_id"], "checkpoint")[-1]["path"])
    pb.write_bytes(pa.read_bytes())  # same shapes, wrong run
    rc, _, err = cli("resume", b["run_id"])
    assert rc == 2 and "belongs to run " + a["run_id"] in err


def test_diverged_run_is_strict_json(cli):
    rc, out, _ = cli("train", "modular", *TINY, "train.steps=30", "train.optimizer=sgd", "train.lr=1e30", "--json")
    assert rc == 0
    d = one_json(out)  # strict: no NaN or Infinity tokens
    assert d["status"] == "diverged" and d["diverged_step"] is not None and d["diverged_on"]


def test_plain_progress_lines_when_not_a_tty(cli):
    rc, _, err = cli("train", "modular", *TINY, "train.steps=20")
    assert rc == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("[modular-")]
    assert lines and "step 0/20" in lines[0] and "step 20/20" in lines[-1]
    assert all("eta" in ln and "test/loss=" in ln for ln in lines)
    rc, _, err = cli("train", "modular", *TINY, "train.steps=20", "--seed", "1", "--quiet")
    assert rc == 0 and err == ""


KILLABLE = ["task.p=23", "model.d_model=32", "model.n_heads=2", "model.d_mlp=64", "train.steps=300",
            "train.eval_every=50", "train.checkpoint_every=25", "train.batch_size=64"]


def start_training(env, overrides, **popen):
    """``theorylab train modular`` in a subprocess, returned once its first checkpoint is in the store."""
    from theorylab.runs import build_run_config

    proc = subprocess.Popen([sys.executable, "-m", "theorylab", "train", "modular", *overrides, "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)
    run_id = build_run_config("modular", overrides).run_id()
    s = Store(env["THEORYLAB_HOME"])
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # until a checkpoint is registered in the store
        if s.db_path.exists() and s.artifacts(run_id, "checkpoint"):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped: " + proc.stderr.read()
    return proc, run_id, s


def assert_resumes_to_the_uninterrupted_run(resumed, s, run_id, tmp_path, overrides):
    from theorylab.runs import build_run_config, train

    ref_store = Store(tmp_path / "ref")
    ref = train(build_run_config("modular", overrides), ref_store, progress=False)
    assert ref.run_id == run_id
    assert resumed["status"] == "finished" and resumed["step"] == 300
    assert resumed["metrics"] == ref.metrics  # bit for bit
    assert s.metrics(run_id) == ref_store.metrics(ref.run_id)


def test_kill_9_is_listed_as_interrupted_and_resumes_to_the_uninterrupted_run(cli_env, cli, tmp_path):
    proc, run_id, s = start_training(cli_env, KILLABLE)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    [rec] = s.list_runs()
    assert rec.stored_status == "running"  # killed: never marked anything by the dead process
    assert rec.status == "interrupted" and rec.pid == proc.pid  # but its process is gone, and that shows
    killed_at = max(a["step"] for a in s.artifacts(rec.id, "checkpoint"))
    assert 0 < killed_at < 300 and rec.step >= killed_at  # the stored step is never behind the checkpoint
    assert cli_env["THEORYLAB_HOME"] == str(tmp_path / "runs")  # the cli fixture's store: the same one
    rc, out, _ = cli("runs")
    assert rc == 0 and "interrupted" in out and run_id in out
    assert [x["status"] for x in one_json(cli("runs", "--json")[1])["runs"]] == ["interrupted"]
    rc, out, _ = cli("show", run_id)
    assert "status=interrupted" in out and f"process {proc.pid}" in out and "is gone" in out
    assert f"resumes from its checkpoint at step {killed_at}" in out
    r = tl(["resume", run_id[:10], "--json", "--quiet"], cli_env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_resumes_to_the_uninterrupted_run(one_json(r.stdout), s, run_id, tmp_path, KILLABLE)


def test_sigterm_stops_the_run_with_one_line_and_it_resumes_to_the_uninterrupted_run(cli_env, cli, tmp_path):
    proc, run_id, s = start_training(cli_env, KILLABLE)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"theorylab: interrupted (SIGTERM): run {run_id} stopped at step")
    assert f"theorylab resume {run_id}" in lines[0] and "Traceback" not in err
    rec = s.get_run(run_id)
    assert rec.status == rec.stored_status == "stopped" and "SIGTERM" in rec.summary["error"]
    rc, out, err = cli("resume", run_id, "--json", "--quiet")
    assert rc == 0, err
    assert_resumes_to_the_uninterrupted_run(one_json(out), s, run_id, tmp_path, KILLABLE)


def test_ctrl_c_prints_its_message_and_stops_the_run(cli_env):
    # SIGINT raises KeyboardInterrupt in a Python whose SIGINT is not ignored (a shell's background job's is)
    proc, run_id, s = start_training(cli_env, KILLABLE,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"theorylab: interrupted (SIGINT): run {run_id} stopped at step")
    rec = s.get_run(run_id)
    assert rec.status == "stopped" and rec.summary["error"] == "interrupted by Ctrl-C (SIGINT)"
    step = max(a["step"] for a in s.artifacts(run_id, "checkpoint"))
    assert f"it resumes from its checkpoint at step {step}: theorylab resume {run_id}" in lines[0]


def test_an_interrupt_inside_a_command_is_said_not_swallowed(cli, store, monkeypatch):
    """typer turns a KeyboardInterrupt into a silent exit 130; main() must still say what was interrupted."""
    from theorylab.tasks.modular import ModularTask

    real = ModularTask.train_batch

    def interrupted(self, step, bs):
        if step == 7:
            raise KeyboardInterrupt
        return real(self, step, bs)

    monkeypatch.setattr(ModularTask, "train_batch", interrupted)
    rc, out, err = cli("train", "modular", *TINY, "train.steps=20", "train.checkpoint_every=5", "--quiet")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 130 and out == "" and len(lines) == 1, err
    assert lines[0].startswith("theorylab: interrupted (SIGINT): run modular-") and "stopped at step 7" in lines[0]
    assert "resumes from its checkpoint at step 5" in lines[0]
    [rec] = store.list_runs()
    assert rec.status == "stopped" and rec.step == 7


# --------------------------------------------------------------------------- one grammar


@pytest.mark.parametrize("text, seeds", [("3", [0, 1, 2]), ("0-2", [0, 1, 2]), ("2-4", [2, 3, 4]),
                                         ("0,2,5", [0, 2, 5]), ("0-1,5", [0, 1, 5]), ("1", [0])])
def test_seeds_is_a_count_a_range_or_a_list(text, seeds):
    from theorylab.cli.app import parse_seeds

    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["0", "x", "3-1", "-1", "1,,2", "", "1.5", str(2 ** 63)])
def test_bad_seeds_are_one_line(text):
    from theorylab.cli.app import parse_seeds
    from theorylab.errors import ConfigError

    with pytest.raises(ConfigError, match="--seeds"):
        parse_seeds(text)


def test_seeds_mean_the_same_in_train_sweep_and_check(cli, store):
    d = one_json(cli("train", "modular", *TINY, "train.steps=4", "--seeds", "1-2", "--json")[1])
    assert d["seeds"] == [1, 2] and [r["status"] for r in d["runs"]] == ["finished", "finished"]
    s = one_json(cli("sweep", "modular", *TINY, "train.steps=4", "--seeds", "1-2", "--backend", "inprocess",
                     "--json")[1])
    assert sorted(s["reused"]) == sorted(r["run_id"] for r in d["runs"])  # the same two runs
    rc, out, _ = cli("check", "power2022.weight_decay_needed", "--tier", "smoke", "--seeds", "0,3", "--backend",
                     "inprocess", "--json")
    assert rc == 0 and one_json(out)["results"][0]["seeds"] == [0, 3]
    for verb in (["train", "modular"], ["sweep", "modular"], ["check", "power2022.weight_decay_needed"]):
        rc, _, err = cli(*verb, "--seeds", "3-1")
        assert rc == 2 and "--seeds" in err


def test_stacked_seeds_from_the_cli(cli, store):
    d = one_json(cli("train", "modular", *TINY, "train.steps=4", "--seeds", "2", "--stack", "--json")[1])
    assert [r["stepper"] for r in d["runs"]] == ["stacked", "stacked"]
    rc, _, err = cli("train", "modular", "--stack")
    assert rc == 2 and "--stack" in err


def test_exit_codes_failed_run_is_1_bad_input_is_2(cli, store, monkeypatch):
    from theorylab.tasks.modular import ModularTask

    def broken(self, step, bs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ModularTask, "train_batch", broken)
    for args in (["train", "modular", *TINY, "train.steps=4"],
                 ["sweep", "modular", *TINY, "train.steps=4", "--backend", "inprocess"],
                 ["check", "power2022.weight_decay_needed", "--tier", "smoke", "--backend", "inprocess"]):
        rc, out, err = cli(*args)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 1 and lines[-1].startswith("theorylab: failed: ") and "disk on fire" in lines[-1], (args, err)
    rc, _, err = cli("runs", "--status", "bogus")
    assert rc == 2 and "--status" in err
    rc, _, err = cli("runs", "--limit", "-1")
    assert rc == 2 and "--limit" in err


def test_help_lists_verbs_by_group_and_version(cli):
    rc, out, _ = cli("--help")
    assert rc == 0
    groups = [ln for ln in out.splitlines() if "─ " in ln and "Options" not in ln]
    assert [g.split("─ ")[1].split(" ")[0] for g in groups] == ["Runs", "Claims", "Sweeps", "Measures",
                                                                 "Constructions"]
    for verb in ("train", "resume", "runs", "show", "generate", "claims", "check", "report", "sweep", "measure",
                 "construct"):
        assert f" {verb} " in out, verb
    from theorylab import __version__

    rc, out, _ = cli("--version")
    assert rc == 0 and out.strip() == f"theorylab {__version__}"


def test_a_verb_module_that_fails_to_import_is_an_error(monkeypatch):
    import importlib
    import sys

    import theorylab.cli as cli_pkg

    monkeypatch.setitem(sys.modules, "theorylab.cli.measure", None)  # as if it failed to import
    with pytest.raises(ImportError):
        importlib.reload(cli_pkg)
    monkeypatch.undo()
    importlib.reload(cli_pkg)


def test_measure_fourier_of_a_stored_run(cli, store):
    d = one_json(cli("train", "modular", *TINY, "train.steps=20", "train.checkpoint_every=10",
                     "train.keep_checkpoints=all", "--json")[1])
    rc, out, _ = cli("measure", "fourier", d["run_id"], "--json")
    m = one_json(out)
    assert rc == 0 and m["run_id"] == d["run_id"] and m["measures"]["steps"] == [10, 20]
    assert len(m["measures"]["restricted_loss"]) == 2
    rc, _, err = cli("measure", "fourier", d["run_id"], "--every", "0")
    assert rc == 2 and "--every" in err
    rc, _, err = cli("measure", "nosuch", d["run_id"])
    assert rc == 2


def test_a_ctrl_c_while_the_command_line_loads_is_one_line(monkeypatch, capsys):
    import sys
    import types

    import theorylab.__main__ as main_module

    class Loading(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt  # as if Ctrl-C arrived while torch was importing

    monkeypatch.setitem(sys.modules, "theorylab.cli", Loading("theorylab.cli"))
    with pytest.raises(SystemExit) as exc:
        main_module.entry()
    assert exc.value.code == 130
    assert capsys.readouterr().err == "theorylab: interrupted (SIGINT) while starting; nothing ran\n"
