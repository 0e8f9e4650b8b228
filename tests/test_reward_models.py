"""Reward models on theorylab's Transformer (a value head trained on preference pairs), RLHF from a learned
reward model, and the Monte Carlo estimates used where responses cannot be enumerated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.measures.alignment import ab_closed_form, importance_sampled_optimum, monte_carlo_mean
from theorylab.models.preference import bradley_terry_loss
from theorylab.runs import build_run_config, train
from theorylab.runs.loop import build_model_for
from theorylab.runs.objectives import ObjectiveTask, reward_value
from theorylab.store import Store
from theorylab.tasks import make_task

SMALL = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.d_mlp=32", "train.batch_size=64",
         "task.length=4"]
RM = SMALL + ["objective.name=reward_model", "train.lr=3e-3"]


@pytest.fixture()
def store(tmp_path):
    return Store(tmp_path / "store")


# --------------------------------------------------------------------------- the reward model


def test_a_reward_model_is_a_one_output_value_head_read_after_the_whole_response():
    cfg = build_run_config("ab_strings", RM)
    assert cfg.model.d_vocab_out == 1 and cfg.model.n_ctx == 5  # BOS + the 4 response tokens
    task = make_task(cfg.task, 0)
    model = build_model_for(cfg)
    y = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]])
    v = reward_value(model, task, y)
    assert v.shape == (2,) and v.dtype == torch.float64
    # the value is the head at the last position, which has read every response token
    y2 = y.clone()
    y2[:, -1] = 1 - y2[:, -1]
    assert not torch.allclose(reward_value(model, task, y2), v)
    full = model(torch.cat([torch.full((2, 1), 2), y], 1))
    assert torch.allclose(v, full[:, -1, 0].double())


def test_the_reward_model_loss_is_bradley_terry_on_its_values():
    cfg = build_run_config("ab_strings", RM)
    task = make_task(cfg.task, 0)
    ot = ObjectiveTask(task, cfg.objective, None, "none")
    model = build_model_for(cfg)
    batch = ot.train_batch(0, 8)
    with torch.no_grad():
        loss, r = ot.loss(model, batch)
        rw = reward_value(model, task, batch.targets)
        rl = reward_value(model, task, batch.extras["targets_l"])
    assert torch.allclose(r, torch.cat([rw, rl]))
    assert float(loss) == pytest.approx(float(torch.mean(-torch.nn.functional.logsigmoid(rw - rl))), rel=1e-9)
    assert float(loss) == pytest.approx(float(bradley_terry_loss(rw, rl).mean()), rel=1e-12)


def test_a_reward_model_recovers_a_linear_reward_from_enough_pairs(store):
    # the count reward r = #a is linear in the tokens; with Bradley-Terry labels on 2048 pairs the value head
    # should order almost every pair of strings as the true reward does (measured: corr 0.99, order 0.99)
    cfg = build_run_config("ab_strings", RM + ["task.length=6", "task.n_pairs=2048",
                                               "train.steps=300", "train.eval_every=300"])
    res = train(cfg, store, progress=False)
    m = res.metrics
    assert m["rm/corr"] > 0.95 and m["rm/order_accuracy"] > 0.95
    assert m["rm/loss"] < 0.6  # BT labels are noisy: even the true reward has a loss well above 0


def test_bad_reward_model_configs_are_one_line_errors(store):
    with pytest.raises(ConfigError, match="value head has 1 output"):
        build_run_config("ab_strings", RM + ["model.d_vocab_out=2"])
    with pytest.raises(ConfigError, match="from scratch"):
        build_run_config("ab_strings", RM + ["parent=ab_strings-000000000000"])
    with pytest.raises(ConfigError, match="do not apply to a reward_model"):
        build_run_config("ab_strings", RM + ["objective.beta=0.1"])
    with pytest.raises(ConfigError, match="reward_model applies to rlhf only"):
        build_run_config("ab_strings", SMALL + ["objective.name=dpo", "objective.reward_model=x"])
    with pytest.raises(ConfigError, match="needs a task with preference data"):
        build_run_config("markov", ["objective.name=reward_model"])


# --------------------------------------------------------------------------- RLHF from a reward model


@pytest.fixture()
def parent_and_rm(store):
    parent = train(build_run_config("ab_strings", SMALL + ["train.steps=60", "train.lr=3e-3"]), store, progress=False)
    rm = train(build_run_config("ab_strings", RM + ["train.steps=100", "task.n_pairs=64"]), store, progress=False)
    return parent, rm


def test_rlhf_optimises_the_reward_model_and_reports_the_proxy_beside_the_true_reward(store, parent_and_rm):
    parent, rm = parent_and_rm
    cfg = build_run_config("ab_strings", SMALL + [f"parent={parent.run_id}", "objective.name=rlhf",
                                                  f"objective.reward_model={rm.run_id}", "task.beta=0.05",
                                                  "train.steps=40", "train.eval_every=20", "train.lr=3e-3"])
    assert cfg.run_id() != build_run_config("ab_strings", SMALL + [f"parent={parent.run_id}", "objective.name=rlhf",
                                                                   "task.beta=0.05", "train.steps=40",
                                                                   "train.eval_every=20", "train.lr=3e-3"]).run_id()
    res = train(cfg, store, progress=False)
    proxy = store.metrics(res.run_id, "policy", "proxy_reward")["policy"]["proxy_reward"]
    assert [s for s, _ in proxy] == [0, 20, 40]
    # the proxy is the reward model's value averaged exactly over the policy
    task = make_task(cfg.task, 0)
    model, rmodel = store.load_model(res.run_id), store.load_model(rm.run_id)
    pi = task.policy(model)
    assert proxy[-1][1] == pytest.approx(float(pi @ reward_value(rmodel, task, task.all_strings).detach()), rel=1e-6)
    assert proxy[-1][1] > proxy[0][1]  # 40 steps of a small beta raise the optimised reward


def test_an_rlhf_run_refuses_a_reward_model_that_is_not_one(store, parent_and_rm):
    parent, _ = parent_and_rm
    bad = build_run_config("ab_strings", SMALL + [f"parent={parent.run_id}", "objective.name=rlhf",
                                                  f"objective.reward_model={parent.run_id}", "train.steps=5"])
    with pytest.raises(ConfigError, match="not a reward_model run"):
        train(bad, store, progress=False)
    missing = build_run_config("ab_strings", SMALL + [f"parent={parent.run_id}", "objective.name=rlhf",
                                                      "objective.reward_model=ab_strings-000000000000"])
    with pytest.raises(ConfigError, match="objective.reward_model: run .* is not in the store"):
        train(missing, store, progress=False)


def test_a_sweep_trains_the_reward_model_before_the_rlhf_run(store):
    from theorylab.sweep import run_sweep, waves

    parent = build_run_config("ab_strings", SMALL + ["train.steps=20"])
    rm = build_run_config("ab_strings", RM + ["train.steps=20"])
    kid = build_run_config("ab_strings", SMALL + [f"parent={parent.run_id()}", "objective.name=rlhf",
                                                  f"objective.reward_model={rm.run_id()}", "train.steps=5"])
    units = [([c], [c.run_id()]) for c in (kid, rm, parent)]
    assert [[u[1][0] for u in w] for w in waves(units)] == [[rm.run_id(), parent.run_id()], [kid.run_id()]]
    res = run_sweep([kid, rm, parent], store=store, backend="inprocess", progress=False)
    assert set(res.status.values()) == {"finished"}


def test_cli_reward_model_then_rlhf(tmp_path, monkeypatch, capsys):
    import json

    from theorylab.cli import main

    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path / "home"))
    assert main(["train", "ab_strings", *SMALL, "train.steps=20", "-q", "--json"]) == 0
    pid = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["train", "ab_strings", *SMALL, "--objective", "reward_model", "train.steps=20", "-q", "--json"]) == 0
    rid = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["train", "ab_strings", "--from", pid, "--objective", "rlhf", "--reward-model", rid[:18],
                 "train.steps=5", "-q", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "policy/proxy_reward" in out["metrics"]
    assert Store(tmp_path / "home").get_run(out["run_id"]).config["objective"]["reward_model"] == rid


# --------------------------------------------------------------------------- Monte Carlo estimates


def test_monte_carlo_mean_is_the_normal_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, 10_000)
    m, lo, hi = monte_carlo_mean(x)
    assert m == pytest.approx(x.mean()) and hi - m == pytest.approx(1.96 * x.std(ddof=1) / 100, rel=1e-3)
    assert lo < 3.0 < hi
    with pytest.raises(ConfigError):
        monte_carlo_mean([1.0])


def test_importance_sampling_recovers_the_closed_form_optimum_of_the_ab_problem():
    # pi* of the count reward is i.i.d. with P*(a) = sigmoid(1/beta): reward and KL are closed forms
    L, beta = 8, 1.0
    task = make_task(build_run_config("ab_strings", [f"task.length={L}", f"task.beta={beta}"]).task, 0)
    exact = ab_closed_form(L, beta)
    covered = 0
    for seed in range(10):
        y = task.sample_reference(4000, np.random.default_rng(seed))
        est = importance_sampled_optimum(task.reward(y).numpy(), beta, seed=seed)
        assert est["reward"] == pytest.approx(exact["reward"], abs=0.15)
        assert est["kl"] == pytest.approx(exact["kl"], abs=0.15)
        assert 0.1 * 4000 < est["ess"] < 4000
        covered += (est["reward_lo"] <= exact["reward"] <= est["reward_hi"]) + (est["kl_lo"] <= exact["kl"] <= est["kl_hi"])
    assert covered >= 16  # 95% intervals: 19 of 20 expected
    # a tiny beta concentrates pi* on the rare best strings: the effective sample size collapses
    y = task.sample_reference(4000, np.random.default_rng(0))
    assert importance_sampled_optimum(task.reward(y).numpy(), 0.05)["ess"] < 100


def test_monte_carlo_evaluation_agrees_with_the_exact_one_on_an_enumerable_task():
    cfg = build_run_config("ab_strings", SMALL + ["task.length=6", "model.n_ctx=6", "objective.name=rlhf"])
    task = make_task(cfg.task, 0)
    ot = ObjectiveTask(task, cfg.objective, None, "task")
    torch.manual_seed(0)
    model = build_model_for(cfg)
    with torch.no_grad():  # a policy away from the reference, so that its KL is not ~0
        model.W_U.add_(torch.randn_like(model.W_U))
    exact = task.evaluate(model, "cpu", None, 256)
    mc = ot._monte_carlo(model, "cpu")
    assert mc["policy/kl_mc_lo"] <= exact["policy/kl"] <= mc["policy/kl_mc_hi"]
    assert mc["policy/optimum_kl_is_lo"] <= exact["policy/optimum_kl"] <= mc["policy/optimum_kl_is_hi"]
    assert mc["policy/optimum_reward_is_lo"] <= exact["policy/optimum_reward"] <= mc["policy/optimum_reward_is_hi"]


# --------------------------------------------------------------------------- what a new user tried


def test_runs_that_cannot_fit_their_parent_or_task_are_refused(store, parent_and_rm):
    parent, rm = parent_and_rm
    # a reward model is no policy to fine-tune: its one-output value head is not the task's output
    with pytest.raises(ConfigError, match=r"task 'ab_strings' writes 2 output tokens; the model \(the model of parent "
                                          r"run .*\) writes 1"):
        build_run_config("ab_strings", ["objective.name=dpo"], parent=(rm.run_id, store.get_run(rm.run_id).config))
    # a model copied from another task's run: its vocabulary is not the task's
    pcfg = train(build_run_config("pcfg_preference", ["model.d_model=16", "model.n_layers=1", "model.n_heads=2",
                                                      "train.steps=5", "task.max_len=5"]), store, progress=False)
    with pytest.raises(ConfigError, match=r"model.d_vocab_out: task 'ab_strings' writes 2 output tokens; the "
                                          r"model \(the model of parent run .*\) writes 12"):
        build_run_config("ab_strings", ["task.length=4"],
                         parent=(pcfg.run_id, store.get_run(pcfg.run_id).config))
    with pytest.raises(ConfigError, match="model.d_vocab: task 'pcfg_preference' has 13 input tokens"):
        build_run_config("pcfg_preference", ["model.d_vocab=3"])
    # the {a, b} task reads its outputs as a distribution over strings: no other output size
    with pytest.raises(ConfigError, match="model.d_vocab_out: task 'ab_strings' writes 2"):
        build_run_config("ab_strings", SMALL + ["model.d_vocab_out=3"])
    # beta belongs to the task, whose optimum metrics use it
    with pytest.raises(ConfigError, match="set task.beta=0.3 instead"):
        build_run_config("ab_strings", SMALL + ["objective.name=rlhf", "objective.beta=0.3"])
    # a reward model of other response lengths, and a prefix where a full id is needed
    with pytest.raises(ConfigError, match="reads 5-token inputs; this task's responses make 7"):
        train(build_run_config("ab_strings", SMALL + ["task.length=6", "model.n_ctx=6",
                                                      "objective.name=rlhf", f"objective.reward_model={rm.run_id}"]),
              store, progress=False)
    with pytest.raises(ConfigError, match="is a prefix; give the full run id"):
        train(build_run_config("ab_strings", SMALL + [f"parent={parent.run_id[:15]}", "objective.name=dpo"]), store,
              progress=False)


def test_a_reward_model_does_not_generate(tmp_path, monkeypatch, capsys):
    import json

    from theorylab.cli import main

    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path / "home"))
    assert main(["train", "ab_strings", *SMALL, "--objective", "reward_model", "train.steps=2", "-q", "--json"]) == 0
    rid = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["generate", rid, "-p", "2 0", "-n", "2"]) == 2
    assert "is a reward model" in capsys.readouterr().err
