"""Torch's CPU threads: the chooser (work per step, cores, free cores, the user's choice), the loop that
applies it once per training, and ``--threads`` on the CLI.  No timings: the chooser's inputs are given."""

from __future__ import annotations

import json

import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.runs import build_run_config, train
from theorylab.runs import threads as th

TINY = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.eval_every=10", "train.steps=10"]


@pytest.fixture()
def chooser(monkeypatch):
    """No OMP_NUM_THREADS (conftest sets it to 1 for every other test); torch back to 1 thread afterwards."""
    monkeypatch.delenv(th.ENV_VAR, raising=False)
    yield
    torch.set_num_threads(1)


def never(*_a, **_k):
    raise AssertionError("free cores were sampled for work that asks for one thread")


def test_small_modular_config_gets_one_thread_without_sampling(chooser, monkeypatch):
    monkeypatch.setattr(th, "free_cores", never)
    cfg = build_run_config("modular", seed=0)  # the preset: ~1.1e9 FLOPs per step by the estimate
    assert th.config_step_flops(cfg) < 2 * th.FLOPS_PER_THREAD
    assert th.choose_threads(cfg) == 1
    assert th.choose_threads(cfg, cores=64, free=64.0) == 1


def test_large_work_gets_the_cores_that_are_free(chooser):
    big = 100 * th.FLOPS_PER_THREAD
    assert th.choose_threads(big, cores=4, free=4.0) == 4
    assert th.choose_threads(big, cores=4, free=16.0) == 4  # never more than the cores
    assert th.choose_threads(big, cores=2, free=1.0) == 1  # a neighbour holds one of two cores
    assert th.choose_threads(big, cores=2, free=0.0) == 1
    assert th.choose_threads(big, cores=8, free=2.8) == 3  # 0.8 of a core idle counts, 0.6 would not
    assert th.choose_threads(big, cores=8, free=2.6) == 2
    assert th.choose_threads(3 * th.FLOPS_PER_THREAD, cores=8, free=8.0) == 3  # one per FLOPS_PER_THREAD
    assert 1 <= th.choose_threads(big) <= th.usable_cores()


def test_requested_and_environment_win(chooser, monkeypatch):
    monkeypatch.setattr(th, "free_cores", never)
    cfg = build_run_config("modular", seed=0)
    assert th.choose_threads(cfg, 3) == 3  # the user's count, as given
    assert th.choose_threads(100 * th.FLOPS_PER_THREAD, 1, cores=8, free=8.0) == 1
    monkeypatch.setenv(th.ENV_VAR, "2")
    assert th.choose_threads(cfg) == 2
    assert th.choose_threads(cfg, 1) == 1  # threads= beats the environment
    monkeypatch.setenv(th.ENV_VAR, "lots")  # not a count: ignored, the chooser decides
    assert th.choose_threads(cfg) == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_requested_counts_are_config_errors(chooser, bad):
    with pytest.raises(ConfigError, match="positive number of threads"):
        th.choose_threads(1.0, bad)
    with pytest.raises(ConfigError, match="positive number of threads"):
        train(build_run_config("modular", TINY), None, progress=False, threads=bad)


def test_free_cores_is_a_share_of_the_usable_cores():
    free = th.free_cores(0.02)
    assert 0.0 <= free <= th.usable_cores()


def test_container_cpu_quota_is_read_from_cgroup_v2_and_v1(tmp_path):
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert th._cgroup_quota(str(v2)) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert th._cgroup_quota(str(v2)) is None
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert th._cgroup_quota(str(v1)) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert th._cgroup_quota(str(v1)) is None
    assert th._cgroup_quota(str(tmp_path / "none")) is None


def test_step_flops_is_six_n_per_token_plus_attention():
    cfg = build_run_config("modular", TINY)
    from theorylab.runs import build

    task, model = build(cfg)
    batch = task.train_batch(0, None)
    n = sum(p.numel() for p in model.parameters())
    b, t = batch.tokens.shape
    assert th.step_flops(model, batch) == b * t * (6 * n + 6 * cfg.model.n_layers * t * cfg.model.d_model)
    assert th.config_step_flops(cfg) == th.step_flops(model, batch)  # full batch: the task's training set
    lm = build_run_config("lm", seed=0)  # a batch size: that many sequences of the full context
    t, n = lm.model.n_ctx, sum(p.numel() for p in build(lm)[1].parameters())
    assert th.config_step_flops(lm) == lm.train.batch_size * t * (6 * n + 6 * lm.model.n_layers * t * lm.model.d_model)


def test_the_loop_sets_the_threads_once_per_training(chooser, monkeypatch):
    import theorylab.runs.loop as loop

    calls = []

    def spy(work, requested=None):
        calls.append((work, requested))
        return th.set_threads(work, requested)

    monkeypatch.setattr(loop, "set_threads", spy)
    torch.set_num_threads(2)
    res = train(build_run_config("modular", TINY), None, progress=False)  # small: the chooser says 1
    assert torch.get_num_threads() == 1 and res.threads == 1
    assert len(calls) == 1 and calls[0][1] is None and calls[0][0] > 0
    torch.set_num_threads(2)
    res = train(build_run_config("modular", TINY), None, progress=False, threads=1)
    assert torch.get_num_threads() == 1 and res.threads == 1 and calls[-1][1] == 1


def test_threads_are_not_part_of_the_run_id(store):
    cfg = build_run_config("modular", TINY)
    a = train(cfg, store, progress=False, threads=1)
    assert store.get_run(a.run_id).summary["threads"] == 1
    b = train(cfg, store, progress=False, threads=2)  # the same run: served from the store
    torch.set_num_threads(1)
    assert b.run_id == a.run_id and b.reused and b.threads == 1


@pytest.mark.parametrize("verb", [["train", "modular"], ["sweep", "modular"], ["check", "power2022.weight_decay_needed"],
                                  ["resume", "modular-0"]])
@pytest.mark.parametrize("value", ["0", "x", "-2", "1.5"])
def test_bad_threads_option_exits_2_with_one_line(cli, store, verb, value):
    rc, out, err = cli(*verb, "--threads", value)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("theorylab: error: --threads: expected a positive number of threads")
    assert not store.db_path.exists()


def test_train_with_threads_1_end_to_end(cli, store):
    torch.set_num_threads(2)
    rc, out, _ = cli("train", "modular", *TINY, "--threads", "1", "--json")
    d = json.loads(out)
    assert rc == 0 and d["status"] == "finished" and d["threads"] == 1 and torch.get_num_threads() == 1
    assert store.get_run(d["run_id"]).summary["threads"] == 1


def test_sweep_and_check_take_threads(store):
    from theorylab.claims.engine import check
    from theorylab.sweep import run_sweep

    with pytest.raises(ConfigError, match="threads"):
        run_sweep([build_run_config("modular", TINY)], store, backend="inprocess", threads=0)
    with pytest.raises(ConfigError, match="threads"):
        check("power2022.weight_decay_needed", tier="smoke", store=store, threads=0)
    assert not store.db_path.exists()
    res = run_sweep([build_run_config("modular", TINY)], store, backend="inprocess", threads=1, progress=False)
    assert res.ok and store.get_run(res.run_ids[0]).summary["threads"] == 1
