"""Scaling sweeps (theorylab.sweep.scaling) and the ``theorylab scaling`` verbs, end to end on tiny grids."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from theorylab.errors import ConfigError
from theorylab.models.size import param_count
from theorylab.sweep.scaling import Training, collect, grid_plan, isoflop_plan, ladder, task_config


def test_ladder_is_log_spaced_inside_the_range():
    task = task_config("lm")
    lad = ladder(task, 2e3, 1e5, 5)
    ns = [n for _, n in lad]
    assert ns == sorted(ns) and len(set(ns)) == len(ns) == 5
    assert ns[0] < 3e3 and ns[-1] > 7e4
    # the counts are the built models' counts for this task's vocabulary and context
    for shape, n in lad:
        d, L, H = shape
        cfg = grid_plan(task, (n, n, 1), (1e4, 1e4, 1)).runs[0].config
        assert param_count(cfg.model) == n and cfg.model.d_model == d and cfg.model.n_layers == L
    with pytest.raises(ConfigError, match="sizes"):
        ladder(task, 1e12, 1e13, 3)
    with pytest.raises(ConfigError, match="sizes"):
        ladder(task, 1e5, 1e3, 3)


def test_grid_plan_trains_each_run_for_exactly_its_tokens():
    tr = Training(batch_size=16, min_steps=50)
    plan = grid_plan(task_config("lm", seq_len=32), (2e3, 3e4, 3), (1e4, 1e5, 3), seed=7, training=tr)
    assert len(plan.runs) == 9 and len({r.name for r in plan.runs}) == 9
    for r in plan.runs:
        c = r.config
        assert r.D == c.train.steps * c.train.batch_size * 32  # D counts tokens trained, exactly
        # at most 16 windows a step, fewer where that keeps at least 50 steps
        assert c.train.batch_size <= 16 and (c.train.steps >= 50 or c.train.batch_size == 1)
        assert c.train.batch_size == 16 or c.train.steps * (c.train.batch_size + 1) * 32 < 50 * 32 * 2 + r.D
        assert r.C == 6 * r.N * r.D and r.C_exact > 0 and r.N_non_embedding < r.N
        assert c.train.schedule == "cosine" and c.train.min_lr_ratio == 0.1  # the schedule ends at D
        assert c.seed == 7 and c.task.seq_len == 32
        assert c.train.steps % c.train.eval_every == 0 or c.train.eval_every >= 1
    Ds = sorted({r.D for r in plan.runs})
    assert len(Ds) == 3 and Ds[0] < Ds[1] < Ds[2]
    with pytest.raises(ConfigError, match="tokens"):
        grid_plan(task_config("lm"), (2e3, 3e4, 3), (0, 1e5, 3))


def test_isoflop_plan_keeps_each_budget_within_a_step():
    budgets = [1e10, 1e11]
    plan = isoflop_plan(task_config("lm"), budgets, per_budget=4, width=4)
    assert plan.design == "isoflop" and plan.budgets == budgets
    for r in plan.runs:
        per_step = r.config.train.batch_size * 64
        assert abs(r.C - r.budget) <= 6 * r.N * per_step / 2 + 1  # rounded to whole steps
        n0 = math.sqrt(r.budget / 120)
        assert n0 / 6 <= r.N <= n0 * 6
    for c in budgets:
        assert sum(r.budget == c for r in plan.runs) >= 3
    with pytest.raises(ConfigError, match="per_budget"):
        isoflop_plan(task_config("lm"), budgets, per_budget=2)
    with pytest.raises(ConfigError, match="not a scaling source"):
        task_config("modular")


def test_collect_leaves_out_runs_without_a_loss():
    plan = grid_plan(task_config("lm"), (2e3, 3e4, 2), (1e4, 1e5, 2))
    losses = {r.name: 2.0 + i for i, r in enumerate(plan.runs)}
    losses[plan.runs[1].name] = math.nan
    p, rows = collect(plan, losses)
    assert len(p) == 3 and [r["kept"] for r in rows] == [True, False, True, True]
    assert np.allclose(p.loss, [2.0, 4.0, 5.0]) and np.allclose(p.C, 6 * p.N * p.D)
    with pytest.raises(ConfigError):
        collect(plan, {})


def test_scaling_sweep_cli_trains_fits_and_writes(cli, tmp_path):
    out = tmp_path / "sweep"
    args = ["scaling", "sweep", "--sizes", "1.5e3:6e3:2", "--tokens", "4e3:2e4:3", "--batch-size", "8",
            "--min-steps", "20", "--n-test", "16", "--bootstrap", "20", "--backend", "inprocess", "--out", str(out),
            "--json"]
    rc, stdout, err = cli(*args)
    assert rc == 0, err
    res = json.loads(stdout)
    assert res["design"] == "grid" and res["trained"] == 6 and len(res["runs"]) == 6
    assert set(res["approach3"]) >= {"E", "A", "B", "alpha", "beta"}
    assert res["entropy_rate"] == pytest.approx(1.6337, abs=1e-4)  # the PCFG's closed form
    assert res["floor"] > res["entropy_rate"]  # windows of 64 tokens that start at a sentence boundary
    assert math.isfinite(res["E_minus_floor"])
    for f in ("points.csv", "fit.json", "loss_vs_compute.png", "loss_vs_params.png", "residuals.png"):
        assert (out / f).stat().st_size > 0, f
    rows = list(csv.DictReader(open(out / "points.csv")))
    assert len(rows) == 6 and all(float(r["loss"]) > 1.6 for r in rows)
    # a rerun is served from the store; the points file reads back with `scaling fit`
    again = json.loads(cli(*args)[1])
    assert again["trained"] == 0 and again["reused"] == 6
    rc, stdout, err = cli("scaling", "fit", out / "points.csv", "--bootstrap", "0", "--json")
    assert rc == 0, err
    assert json.loads(stdout)["n_points"] == 6


def test_scaling_sweep_plan_and_bad_input(cli, store):
    rc, stdout, err = cli("scaling", "sweep", "--budgets", "1e10,1e11", "--plan", "--json")
    assert rc == 0, err
    plan = json.loads(stdout)
    assert plan["design"] == "isoflop" and len(plan["runs"]) >= 6
    for bad, word in ((["--sizes", "3:1"], "--sizes"), (["--tokens", "a:b:c"], "--tokens"),
                      (["--budgets", "1e10,-1"], "--budgets"), (["--task", "modular"], "task"),
                      (["--backend", "spark"], "--backend"), (["--lr", "0"], "--lr")):
        rc, _, err = cli("scaling", "sweep", "--plan", *bad)
        assert rc == 2 and word in err and len(err.strip().splitlines()) == 1, (bad, err)
    assert not store.list_runs()  # nothing trained, nothing written


def test_scaling_fit_cli_on_the_public_points(cli, store):
    from theorylab.measures.scaling import CHINCHILLA_CSV

    rc, out, err = cli("scaling", "fit", CHINCHILLA_CSV, "--drop-highest", "5", "--bootstrap", "20", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["n_points"] == 240 and d["n_rows"] == 245 and d["dropped"] == 5
    for k, want in (("E", 1.8172), ("alpha", 0.3473), ("beta", 0.3672)):
        assert d[k]["value"] == pytest.approx(want, abs=1e-3) and d[k]["ci"][0] < want < d[k]["ci"][1]
    rc, out, err = cli("scaling", "fit", CHINCHILLA_CSV, "--approach", "2", "--bootstrap", "0", "--json",
                       "--budgets", "6e18,1e19,3e19,6e19,1e20,3e20,6e20,1e21,3e21")
    assert rc == 0, err
    d = json.loads(out)
    assert d["n_points"] == 123 and d["n_rows"] == 245 and 0.48 <= d["a"]["value"] <= 0.51


def test_scaling_fit_cli_bad_input(cli, store, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("N,loss\n1e6,2.0\n")
    for args, word in (([bad], "nor a 'C'"), ([tmp_path / "none.csv"], "none.csv"), ([bad, "--approach", "5"], "--approach"),
                       ([bad, "--budgets", "x"], "--budgets"), ([bad, "--tol", "2"], "--tol")):
        rc, _, err = cli("scaling", "fit", *args)
        assert rc == 2 and word in err and len(err.strip().splitlines()) == 1, (args, err)


def test_scaling_fit_cli_reads_the_shipped_points_by_name_from_anywhere(cli, store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli("scaling", "fit", "chinchilla", "--drop-highest", "5", "--bootstrap", "0", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["n_rows"] == 245 and d["dropped"] == 5 and d["n_points"] == 240
    rc, _, err = cli("scaling", "fit", "chinchilla", "--budgets", "1e19,1e20")  # budgets are Approach 2's
    assert rc == 2 and "--budgets" in err


def test_scaling_fit_cli_reports_a_fit_without_an_allocation(cli, store, monkeypatch):
    """A fit whose allocation is undefined (an exponent at 0: loss that does not fall with N or D) still
    stands: the command prints it, says why there is no allocation, and succeeds."""
    from theorylab.measures import scaling as S

    def undefined(self, C):
        return S.optimal_allocation(self.E, self.A, self.B, self.alpha, 0.0, C)

    monkeypatch.setattr(S.Approach3Fit, "optimal_allocation", undefined)
    rc, out, err = cli("scaling", "fit", "chinchilla", "--bootstrap", "0", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["E"]["value"] > 1 and "undefined" in d["approach3"]["allocation_error"]
    assert "allocation" not in d["approach3"]


def test_scaling_sweep_refuses_before_training(cli, store, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for bad, word in ((["--budgets", "1e9", "--tokens-per-param", "0"], "tokens_per_param"),
                      (["--budgets", "1e9,1e9"], "distinct"),
                      (["--budgets", "1e9", "--sizes", "1e3:1e4:2"], "--budgets"),
                      (["--set", "task.name=markov"], "task.name"),
                      (["--set", "vocab=8"], "--set"),
                      (["--tokens", "1e4:3e4:1000"], "tokens"),
                      (["--out", str(afile)], "not a directory"),
                      (["--bootstrap", "5"], "--bootstrap")):
        rc, _, err = cli("scaling", "sweep", "--backend", "inprocess", *bad)
        assert rc == 2 and word in err and len(err.strip().splitlines()) == 1, (bad, err)
    assert not store.list_runs()


def test_plans_say_what_they_could_not_do():
    plan = grid_plan(task_config("lm"), (2e3, 2e3, 1), (1, 10, 2))  # two budgets that round to one step
    assert len(plan.runs) == 1 and "planned once" in plan.notes[0]
    iso = isoflop_plan(task_config("lm"), [1e8, 1e11], per_budget=3, width=2)
    assert any("only" in n or "no model" in n for n in iso.notes)


def test_api_misuse_gets_one_clear_error():
    from theorylab.measures.scaling import fit_approach2, fit_approach3, points, read_points
    from theorylab.models.size import training_flops

    good = points(N=[1e4, 1e5, 1e6, 1e4, 1e5, 1e6], D=[1e6] * 3 + [1e7] * 3, loss=[3, 2.5, 2.2, 2.8, 2.3, 2.0])
    for call, word in ((lambda: fit_approach3([1, 2, 3]), "expected Points"),
                       (lambda: fit_approach3(None), "expected Points"),
                       (lambda: fit_approach2("x"), "expected Points"),
                       (lambda: fit_approach3(good, bootstrap=2), "at least 20"),
                       (lambda: read_points(None), "expected a path"),
                       (lambda: training_flops("abc", 1e4), "TransformerConfig"),
                       (lambda: grid_plan(task_config("lm"), "1.5e3:6e3:2", (1e4, 1e5, 2)), "sizes"),
                       (lambda: collect(grid_plan(task_config("lm"), (2e3, 2e3, 1), (1e4, 1e4, 1)), [1, 2]),
                        "collect")):
        with pytest.raises(ConfigError, match=word):
            call()


def test_read_points_names_the_file_line_after_blank_lines(tmp_path):
    from theorylab.measures.scaling import read_points

    f = tmp_path / "p.csv"
    f.write_text("N,D,loss\n1e4,1e6,3\n\n\n1e5,1e6,2.5\n1e6,1e6,abc\n")
    with pytest.raises(ConfigError, match="line 6"):
        read_points(f)
    f.write_text("N,D,loss\n1e4,1e6,3\n\n1e5,1e6,nan\n")
    with pytest.raises(ConfigError, match="line 4"):
        read_points(f)


def test_approach2_refuses_a_continuum_of_compute():
    from theorylab.measures.scaling import chinchilla_points, fit_approach2

    with pytest.raises(ConfigError, match="--budgets"):
        fit_approach2(chinchilla_points(drop_highest=0))


def test_scaling_fit_cli_gives_both_of_kaplans_forms(cli, store, tmp_path):
    """L(N) = (N_c/N)^alpha_N and the joint L(N, D), recovered from points drawn from the joint law."""
    N = np.repeat(np.geomspace(1e6, 1e9, 6), 5)
    D = np.tile(np.geomspace(1e9, 1e12, 5), 6)
    aN, aD, Nc, Dc = 0.076, 0.095, 8.8e13, 5.4e13
    loss = ((Nc / N) ** (aN / aD) + Dc / D) ** aD
    f = tmp_path / "kaplan.csv"
    f.write_text("N,D,loss\n" + "".join(f"{n},{d},{x}\n" for n, d, x in zip(N, D, loss)))
    rc, out, err = cli("scaling", "fit", f, "--approach", "kaplan", "--bootstrap", "0", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["kaplan"]["alpha_N"]["value"] == pytest.approx(aN, rel=1e-3)
    assert d["kaplan"]["alpha_D"]["value"] == pytest.approx(aD, rel=1e-3)
    assert d["kaplan_n"]["form"] == "N" and 0 < d["kaplan_n"]["alpha_N"]["value"] < 0.2
