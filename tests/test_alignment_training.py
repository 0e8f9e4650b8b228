"""Fine-tuning from a parent run with the alignment objectives (DPO, IPO, RLHF) on the {a, b}-string task, the
task's exact evaluation, sweeps that train a parent before its children, the CLI's --from, and the alignment
claims' measurements."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from theorylab.config import validate
from theorylab.errors import ConfigError
from theorylab.measures.alignment import ab_closed_form, frontier_reward, kl_divergence, tilted_policy
from theorylab.models.preference import dpo_loss, ipo_loss
from theorylab.runs import RunConfig, build_run_config, train
from theorylab.runs.objectives import ObjectiveConfig, ObjectiveTask
from theorylab.store import Store
from theorylab.tasks import make_task
from theorylab.tasks.preference import (
    ABStringsConfig,
    reference_log_prob,
    response_log_prob,
    reward_of,
    sample_pairs,
    strings,
    tabular_problem,
)

SMALL = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.d_mlp=32", "train.batch_size=32",
         "train.eval_every=20", "task.length=4"]


@pytest.fixture()
def store(tmp_path):
    return Store(tmp_path / "store")


@pytest.fixture()
def parent(store):
    cfg = build_run_config("ab_strings", SMALL + ["train.steps=60", "train.lr=3e-3"])
    return train(cfg, store, progress=False)


def child(parent_id: str, *extra: str) -> RunConfig:
    return build_run_config("ab_strings", SMALL + [f"parent={parent_id}", *extra])


# --------------------------------------------------------------------------- the task


def test_the_optimum_of_the_ab_task_is_the_closed_form():
    for beta in (0.25, 1.0):
        task = make_task(ABStringsConfig(length=6, beta=beta), 0)
        cf = ab_closed_form(6, beta)
        opt = task.optimum.numpy()
        assert opt.sum() == pytest.approx(1.0)
        assert float(opt @ task.all_rewards.numpy()) == pytest.approx(cf["reward"], rel=1e-10)
        ref = np.exp(task.ref_log_probs.numpy())
        assert kl_divergence(opt, ref) == pytest.approx(cf["kl"], rel=1e-10)
        # pi* is the frontier's point at its own KL, and the frontier is the tilted reference
        assert frontier_reward(ref, task.all_rewards.numpy(), cf["kl"]) == pytest.approx(cf["reward"], rel=1e-8)
        assert np.allclose(tilted_policy(ref, task.all_rewards.numpy(), 1 / beta), opt)


def test_the_policy_of_a_model_is_a_distribution_over_all_strings_and_matches_its_log_probs():
    cfg = build_run_config("ab_strings", SMALL)
    task = make_task(cfg.task, 0)
    from theorylab.runs.loop import build_model_for

    model = build_model_for(cfg)
    pi = task.policy(model)
    assert pi.shape == (16,) and float(pi.sum()) == pytest.approx(1.0, abs=1e-9)
    y = strings(4)[[3, 9]]
    assert torch.allclose(torch.log(pi[[3, 9]]), response_log_prob(model, y).detach(), atol=1e-9)
    m = task.evaluate(model, "cpu", None, 64)
    assert m["policy/kl"] == pytest.approx(kl_divergence(pi.numpy(), np.exp(task.ref_log_probs.numpy())), abs=1e-9)
    assert m["policy/optimum_reward"] == pytest.approx(ab_closed_form(4, 0.5)["reward"])


def test_pairs_are_labelled_as_configured():
    hard = make_task(ABStringsConfig(length=6, labels="hard"), 1)
    b = hard.preference_batch(0, 512)
    cfg = hard.cfg
    rw, rl = reward_of(b.targets, cfg), reward_of(b.extras["targets_l"], cfg)
    assert bool((rw >= rl).all()) and float((rw > rl).double().mean()) > 0.5
    assert torch.equal(b.tokens[:, 1:], b.targets[:, :-1])  # the model reads [BOS, y_1..y_{L-1}]
    bt = make_task(ABStringsConfig(length=6, labels="bt"), 1)
    b = bt.preference_batch(0, 4096)
    d = (reward_of(b.targets, cfg) - reward_of(b.extras["targets_l"], cfg)).numpy()
    # Bradley-Terry: some pairs are labelled against the reward, and pairs one apart are won 73% of the time
    assert (d < 0).any() and np.mean(d[np.abs(d) == 1] > 0) == pytest.approx(1 / (1 + math.e ** -1), abs=0.05)
    fixed = make_task(ABStringsConfig(length=6, n_pairs=100), 3)
    a, c = fixed.preference_batch(5, None), fixed.preference_batch(9, None)
    assert torch.equal(a.targets, c.targets) and len(a) == 100  # one fixed data set
    assert len(fixed.preference_batch(5, 10)) == 10


def test_tabular_pairs_follow_the_reward():
    rng = np.random.default_rng(0)
    prob = tabular_problem(rng, K=5, prompts=2)
    assert prob.pi_ref.shape == (2, 5) and np.allclose(prob.pi_ref.sum(1), 1)
    x, w, lo = sample_pairs(prob, 400, rng, "hard")
    assert (w != lo).all() and (prob.r[x, w] >= prob.r[x, lo]).all()
    with pytest.raises(ConfigError, match="labels"):
        sample_pairs(prob, 3, rng, "soft")
    with pytest.raises(ConfigError, match="K >= 2"):
        tabular_problem(rng, K=1)


# --------------------------------------------------------------------------- objectives


def test_the_dpo_and_ipo_objectives_are_the_formulas_on_the_models_log_probabilities(store, parent):
    from theorylab.runs.objectives import prepare

    for name, extra in (("dpo", ["objective.label_smoothing=0.1"]), ("ipo", [])):
        cfg = child(parent.run_id, f"objective.name={name}", *extra)
        task = make_task(cfg.task, 0)
        from theorylab.runs.loop import build_model_for

        model = build_model_for(cfg)
        wrapped = prepare(cfg, task, model, store, torch.device("cpu"), fresh=True)
        assert isinstance(wrapped, ObjectiveTask) and wrapped.kind == "parent"
        batch = wrapped.train_batch(0, 8)
        loss = wrapped.loss(model, batch)[0]
        yw, yl = batch.targets, batch.extras["targets_l"]
        ref = store.load_model(parent.run_id)
        lw, ll = response_log_prob(model, yw), response_log_prob(model, yl)
        rw, rl = response_log_prob(ref, yw), response_log_prob(ref, yl)
        want = (dpo_loss(lw, ll, rw, rl, 0.5, 0.1) if name == "dpo" else ipo_loss(lw, ll, rw, rl, 0.5)).mean()
        assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-10)
        # the child starts from the parent's weights, so every log-ratio starts at 0: DPO's loss is log 2
        if name == "dpo":
            assert float(loss.detach()) == pytest.approx(math.log(2), rel=1e-9)


def test_reference_kinds():
    cfg = build_run_config("ab_strings", SMALL + ["objective.name=dpo", "objective.reference=none"])
    task = make_task(cfg.task, 0)
    wrapped = ObjectiveTask(task, cfg.objective, None, "none")
    y = strings(4)
    assert torch.equal(wrapped._ref_log_prob(y), torch.zeros(16, dtype=torch.float64))
    wrapped = ObjectiveTask(task, cfg.objective, None, "task")
    assert torch.allclose(wrapped._ref_log_prob(y), reference_log_prob(y, 0.5))


def test_fine_tuning_starts_from_the_parent_and_reaches_the_optimum(store, parent):
    p_metrics = parent.metrics
    sft = train(child(parent.run_id, "train.steps=1", "train.lr=1e-9"), store, progress=False)
    assert sft.metrics["policy/kl"] == pytest.approx(p_metrics["policy/kl"], abs=1e-6)  # the parent's weights
    for name in ("dpo", "rlhf"):
        r = train(child(parent.run_id, f"objective.name={name}", "train.steps=150", "train.lr=1e-2",
                        "task.beta=1"), store, progress=False)
        assert r.status == "finished"
        # from TV 0.23 at the reference to near pi* (P*(a) = 0.73 at beta 1)
        assert r.metrics["policy/tv_to_optimum"] < 0.08, (name, r.metrics)
        assert r.metrics["policy/p_a"] == pytest.approx(ab_closed_form(4, 1.0)["p_a"], abs=0.05)


def test_ppo_reuses_a_sample_batch_for_its_epochs(store, parent):
    cfg = child(parent.run_id, "objective.name=rlhf", "objective.ppo_clip=0.2", "objective.ppo_epochs=3")
    from theorylab.runs.loop import build_model_for
    from theorylab.runs.objectives import prepare

    model = build_model_for(cfg)
    task = prepare(cfg, make_task(cfg.task, 0), model, store, torch.device("cpu"), fresh=True)
    task.loss(model, task.train_batch(3, 8))
    first = task._ppo[1].clone()
    task.loss(model, task.train_batch(4, 8))
    assert torch.equal(task._ppo[1], first) and task._ppo[0] == 3  # steps 3..5 share the batch drawn at 3
    task.loss(model, task.train_batch(6, 8))
    assert task._ppo[0] == 6


def test_a_stopped_dpo_run_resumes_exactly(store, parent):
    from theorylab.runs import resume

    cfg = child(parent.run_id, "objective.name=dpo", "train.steps=40", "train.checkpoint_every=10")
    other = Store(store.root.parent / "other")
    other_parent = train(build_run_config("ab_strings", SMALL + ["train.steps=60", "train.lr=3e-3"]), other,
                         progress=False)
    assert other_parent.run_id == parent.run_id
    whole = train(cfg, other, progress=False)
    train(cfg, store, progress=False, stop_after=20)
    again = resume(store, cfg.run_id(), progress=False)
    assert again.metrics == whole.metrics


def test_bad_fine_tuning_configs_are_one_line_errors(store, parent):
    with pytest.raises(ConfigError, match="needs a task with preference data"):
        build_run_config("markov", ["objective.name=dpo"])
    with pytest.raises(ConfigError, match="label_smoothing applies to dpo only"):
        build_run_config("ab_strings", ["objective.name=ipo", "objective.label_smoothing=0.1"])
    with pytest.raises(ConfigError, match="single stepper"):
        build_run_config("ab_strings", ["objective.name=dpo", "train.stepper=stacked"])
    with pytest.raises(ConfigError, match="ppo_epochs > 1 needs ppo_clip"):
        build_run_config("ab_strings", ["objective.name=rlhf", "objective.ppo_epochs=2"])
    with pytest.raises(ConfigError, match="'parent' needs a parent run"):
        build_run_config("ab_strings", ["objective.name=dpo", "objective.reference=parent"])
    with pytest.raises(ConfigError, match="not in the store"):
        train(child("ab_strings-000000000000", "objective.name=dpo"), store, progress=False)
    with pytest.raises(ConfigError, match="differs from parent run"):
        train(child(parent.run_id, "objective.name=dpo", "model.d_model=32"), store, progress=False)
    with pytest.raises(ConfigError, match="read from a store"):
        train(child(parent.run_id, "objective.name=dpo"), None, progress=False)
    assert [r.id for r in store.list_runs()] == [parent.run_id]  # nothing half-written


def test_defaults_keep_the_config_dict_of_runs_trained_from_scratch():
    d = build_run_config("ab_strings", SMALL).to_dict()
    assert "parent" not in d and "objective" not in d
    d = build_run_config("ab_strings", SMALL + ["objective.name=dpo"]).to_dict()
    assert d["objective"]["name"] == "dpo"
    assert validate(RunConfig, d).objective == ObjectiveConfig(name="dpo")


# --------------------------------------------------------------------------- sweeps and the CLI


def test_a_sweep_trains_parents_before_their_children(store):
    from theorylab.sweep import run_sweep, waves

    ref = build_run_config("ab_strings", SMALL + ["train.steps=30"])
    kids = [child(ref.run_id(), "objective.name=dpo", "train.steps=10", f"task.beta={b}") for b in (0.5, 1.0)]
    grand = build_run_config("ab_strings", SMALL + [f"parent={kids[0].run_id()}", "train.steps=5"])
    units = [([c], [c.run_id()]) for c in (grand, *kids, ref)]
    order = [[u[1][0] for u in w] for w in waves(units)]
    assert order == [[ref.run_id()], [k.run_id() for k in kids], [grand.run_id()]]
    res = run_sweep([grand, *kids, ref], store=store, backend="inprocess", progress=False)
    assert set(res.status.values()) == {"finished"} and len(res.trained) == 4


def test_cli_train_from_a_parent(tmp_path, monkeypatch, capsys):
    from theorylab.cli import main

    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path / "home"))
    assert main(["train", "ab_strings", *SMALL, "train.steps=20", "-q", "--json"]) == 0
    import json

    pid = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["train", "ab_strings", "--from", pid[:16], "--objective", "ipo", "train.steps=10", "-q",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rec = Store(tmp_path / "home").get_run(out["run_id"])
    assert rec.config["parent"] == pid and rec.config["objective"]["name"] == "ipo"
    assert main(["train", "ab_strings", "--from", "nothing-like-this", "--objective", "dpo"]) == 2
    assert "not in the store" in capsys.readouterr().err
    assert main(["train", "ab_strings", "--objective", "ppo"]) == 2
    assert "objective.name" in capsys.readouterr().err


# --------------------------------------------------------------------------- the claims' measurements


def test_tabular_claims_measure_exact_quantities():
    from theorylab.claims.papers import azar2024, gao2023, rafailov2023

    m = rafailov2023.tabular_measures(rafailov2023.TABULAR_TIERS["smoke"], 0)
    assert m["tv_max"] < 1e-6 < 1e-3 < m["tv_cut_min"]
    m = azar2024.pair_measures(azar2024.PAIR_TIERS["quick"], 0)
    rows = {round(r["beta"], 3): r for r in m["rows"]}
    assert rows[0.5]["ipo_pi_w"] == pytest.approx(0.7310585786300049, abs=1e-12)
    assert rows[0.5]["pi_l_slope"] == pytest.approx(-2.0, abs=0.02) and rows[1.0]["pi_l_slope"] == pytest.approx(
        -1.0, abs=0.02)
    assert m["loss_slope_err_max"] < 0.05
    m = gao2023.overopt_measures(gao2023.TIERS["quick"], 0)
    assert m["proxy_monotone"] == 1.0 and m["rl_drop"] > 0.25 and m["bon_drop"] > 0.25
    assert m["rl_beta_lo"] > 0 and m["bon_kl_formula_excess"] <= 1e-9  # exact KL never exceeds the formula
