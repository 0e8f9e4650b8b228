"""Fine-tuning from a stored run at a chosen checkpoint (``parent_step``, ``--from-step``)."""

from __future__ import annotations

import json

import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.runs import build_run_config, train
from theorylab.runs.loop import build_model_for
from theorylab.runs.objectives import prepare
from theorylab.store import Store
from theorylab.tasks import make_task

SMALL = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.d_mlp=32", "train.batch_size=32",
         "task.length=4"]


@pytest.fixture()
def store(tmp_path):
    return Store(tmp_path / "store")


@pytest.fixture()
def parent(store):
    cfg = build_run_config("ab_strings", SMALL + ["train.steps=60", "train.lr=3e-3", "train.checkpoint_every=20",
                                                  "train.keep_checkpoints=all", "train.eval_every=20"])
    return train(cfg, store, progress=False)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_child_starts_from_the_parents_checkpoint_at_the_chosen_step(store, parent):
    assert [s for s, _ in store.checkpoints(parent.run_id)] == [20, 40, 60]
    cfg = build_run_config("ab_strings", SMALL + [f"parent={parent.run_id}", "parent_step=20", "train.steps=5"])
    model = build_model_for(cfg)
    prepare(cfg, make_task(cfg.task, cfg.seed), model, store, torch.device("cpu"), fresh=True)
    got, at20, final = _state(model), _state(store.load_model(parent.run_id, 20)), _state(store.load_model(parent.run_id))
    assert all(torch.equal(got[k], at20[k].to(got[k].dtype)) for k in got)
    assert not all(torch.equal(at20[k], final[k]) for k in at20)  # step 20 is not the final weights
    # the step is part of the child's identity, and absent from the dict of a child of the final weights
    plain = build_run_config("ab_strings", SMALL + [f"parent={parent.run_id}", "train.steps=5"])
    assert plain.run_id() != cfg.run_id() and "parent_step" not in plain.to_dict()
    assert cfg.to_dict()["parent_step"] == 20
    res = train(cfg, store, progress=False)
    assert res.status == "finished" and store.get_run(res.run_id).config["parent_step"] == 20


def test_bad_parent_steps_are_one_line_errors(store, parent):
    with pytest.raises(ConfigError, match="parent_step: needs a parent run"):
        build_run_config("ab_strings", SMALL + ["parent_step=20"])
    with pytest.raises(ConfigError, match="parent_step"):
        build_run_config("ab_strings", SMALL + [f"parent={parent.run_id}", "parent_step=-1"])
    before = {r.id for r in store.list_runs()}
    cfg = build_run_config("ab_strings", SMALL + [f"parent={parent.run_id}", "parent_step=30", "train.steps=5"])
    with pytest.raises(ConfigError, match=r"no checkpoint at step 30 \(it keeps steps 20, 40, 60"):
        train(cfg, store, progress=False)
    assert {r.id for r in store.list_runs()} == before  # nothing half-written


def test_cli_from_step(tmp_path, monkeypatch, capsys):
    from theorylab.cli import main

    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path / "home"))
    assert main(["train", "ab_strings", *SMALL, "train.steps=20", "train.checkpoint_every=10",
                 "train.keep_checkpoints=all", "-q", "--json"]) == 0
    pid = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["train", "ab_strings", "--from", pid[:16], "--from-step", "10", "train.steps=5", "-q", "--json"]) == 0
    rid = json.loads(capsys.readouterr().out)["run_id"]
    cfg = Store(tmp_path / "home").get_run(rid).config
    assert cfg["parent"] == pid and cfg["parent_step"] == 10
    # the lineage: root first, then each child with how it was made
    assert main(["train", "ab_strings", "--from", rid, "--objective", "dpo", "lora.rank=2", "train.steps=5", "-q",
                 "--json"]) == 0
    gid = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["show", gid, "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)["lineage"]
    assert [x["id"] for x in chain] == [pid, rid, gid]
    assert [(x["objective"], x["parent_step"], x["lora_rank"]) for x in chain] == \
        [("task", None, None), ("task", 10, None), ("dpo", None, 2)]
    assert main(["show", gid]) == 0
    assert f"lineage: {pid} -> {rid} (from step 10) -> {gid} (dpo, LoRA r=2)" in capsys.readouterr().out
    # the report's runs table shows the same lineage (from the config alone when the store is not at hand)
    from theorylab.report.html import _lineage

    st = Store(tmp_path / "home")
    assert _lineage(st, gid, None) == f"{pid} -> {rid} (from step 10) -> {gid} (dpo, LoRA r=2)"
    assert _lineage(st, pid, None) == ""
    assert _lineage(None, rid, st.get_run(rid).config) == f"{pid} (from step 10) -> {rid}"
    assert main(["train", "ab_strings", "--from-step", "10"]) == 2
    assert "give --from too" in capsys.readouterr().err
    assert main(["train", "ab_strings", "--from", pid, "--from-step", "15", "train.steps=5"]) == 2
    assert "no checkpoint at step 15" in capsys.readouterr().err


def test_cli_refuses_a_parent_of_another_vocabulary_and_a_missing_parent(tmp_path, monkeypatch, capsys):
    from theorylab.cli import main

    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path / "home"))
    world = ["task.n_people=20", "task.n_first=4", "task.n_middle=4", "task.n_last=4", "task.n_years=5",
             "task.n_cities=5", "task.n_universities=5", "task.n_majors=5", "task.n_employers=5", "task.n_eval=4",
             "model.d_model=16", "model.n_layers=1", "model.n_heads=2"]
    assert main(["train", "bios", *world, "train.steps=3", "-q", "--json"]) == 0
    pid = json.loads(capsys.readouterr().out)["run_id"]
    home = Store(tmp_path / "home")
    before = {r.id for r in home.list_runs()}
    # more cities: more tokens than the parent's model reads
    assert main(["train", "bios", "--from", pid, "task.stage=qa", "task.n_cities=6", "train.steps=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.d_vocab: task 'bios' has" in err and pid in err
    assert main(["train", "bios", "--from", "bios-0000000000", "task.stage=qa"]) == 2
    assert "bios-0000000000" in capsys.readouterr().err
    assert {r.id for r in home.list_runs()} == before  # nothing stored
    # the same world fine-tunes
    assert main(["train", "bios", "--from", pid, "task.stage=qa", "train.steps=2", "-q", "--json"]) == 0
    capsys.readouterr()
    # ... unless the child takes the task's vocabulary: embedding and unembedding resized
    assert main(["train", "bios", "--from", pid, "task.stage=qa", "task.n_cities=6", "vocabulary=task",
                 "train.steps=2", "-q", "--json"]) == 0
    rid = json.loads(capsys.readouterr().out)["run_id"]
    assert home.get_run(rid).config["vocabulary"] == "task"
    assert main(["train", "bios", "task.stage=qa", "vocabulary=task"]) == 2
    assert "vocabulary: 'task' resizes a parent run's vocabulary" in capsys.readouterr().err


def test_vocabulary_task_keeps_the_parents_rows_and_initialises_the_new_ones(store):
    world = ["task.n_people=20", "task.n_first=4", "task.n_middle=4", "task.n_last=4", "task.n_years=5",
             "task.n_cities=5", "task.n_universities=5", "task.n_majors=5", "task.n_employers=5", "task.n_eval=4",
             "model.d_model=16", "model.n_layers=1", "model.n_heads=2"]
    parent = train(build_run_config("bios", world + ["train.steps=5"]), store, progress=False)
    rec = store.get_run(parent.run_id)
    cfg = build_run_config("bios", ["task.n_cities=7", "vocabulary=task", "train.steps=3"], parent=(parent.run_id,
                                                                                                   rec.config))
    old = rec.config["model"]["d_vocab"]
    assert cfg.model.d_vocab == old + 2 and cfg.model.d_vocab == make_task(cfg.task, 0).cfg.vocab_size()
    assert cfg.model.pad_token_id == cfg.model.d_vocab - 1  # the task's <pad>, not the parent's (now a real token)
    fresh = _state(build_model_for(cfg))
    model = build_model_for(cfg)
    prepare(cfg, make_task(cfg.task, cfg.seed), model, store, torch.device("cpu"), fresh=True)
    got, theirs = _state(model), _state(store.load_model(parent.run_id))
    assert torch.equal(got["embed.W_E"][:old], theirs["embed.W_E"])
    assert torch.equal(got["embed.W_E"][old:], fresh["embed.W_E"][old:])  # as a fresh model of this seed
    out = theirs["unembed.W_U"].shape[1]  # the outputs (bios writes no <pad>)
    assert got["unembed.W_U"].shape[1] == out + 2
    assert torch.equal(got["unembed.W_U"][:, :out], theirs["unembed.W_U"])
    assert torch.equal(got["unembed.b_U"][:out], theirs["unembed.b_U"])
    assert all(torch.equal(got[k], theirs[k]) for k in theirs if k not in ("embed.W_E", "unembed.W_U", "unembed.b_U"))
    assert train(cfg, store, progress=False).status == "finished"
    with pytest.raises(ConfigError, match="plain fine-tuning"):
        build_run_config("bios", ["vocabulary=task", "lora.rank=2"], parent=(parent.run_id, rec.config))


def test_a_child_keeps_its_parents_world_whatever_its_seed(store):
    world = ["task.n_people=20", "task.n_first=4", "task.n_middle=4", "task.n_last=4", "task.n_years=5",
             "task.n_cities=5", "task.n_universities=5", "task.n_majors=5", "task.n_employers=5", "task.n_eval=8",
             "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "train.lr=1e-2", "train.batch_size=32"]
    parent = train(build_run_config("bios", world + ["train.steps=120", "train.eval_every=120"]), store, progress=False)
    rec = store.get_run(parent.run_id)
    child = build_run_config("bios", ["task.stage=qa", "train.steps=1", "train.lr=1e-9"], seed=1,
                             parent=(parent.run_id, rec.config))
    assert child.task.world_seed == 0 and child.seed == 1  # the parent's world, drawn from the parent's seed
    first = train(child, store, progress=False).metrics  # one step at lr 1e-9: the parent's function
    assert first["bio/accuracy"] == pytest.approx(parent.metrics["bio/accuracy"])
    # an explicit world seed on the child wins
    other = build_run_config("bios", ["task.world_seed=5"], seed=1, parent=(parent.run_id, rec.config))
    assert other.task.world_seed == 5


def test_from_step_at_the_final_step_is_plain_from(tmp_path, monkeypatch, capsys):
    from theorylab.cli import main

    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path / "home"))
    assert main(["train", "ab_strings", *SMALL, "train.steps=20", "train.checkpoint_every=10",
                 "train.keep_checkpoints=all", "-q", "--json"]) == 0
    pid = json.loads(capsys.readouterr().out)["run_id"]
    ids = []
    for extra in ([], ["--from-step", "20"]):
        assert main(["train", "ab_strings", "--from", pid, *extra, "train.steps=3", "-q", "--json"]) == 0
        ids.append(json.loads(capsys.readouterr().out)["run_id"])
    assert ids[0] == ids[1]
