"""Config validation: every bad input is one ConfigError line naming the field."""

from __future__ import annotations

import pytest

from theorylab.config import apply_overrides, load_file
from theorylab.errors import ConfigError
from theorylab.runs import build_run_config

TINY = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.steps=5"]


def bad(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        build_run_config("modular", TINY + overrides)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_valid_config_fills_task_defaults():
    cfg = build_run_config("modular", TINY, seed=3)
    assert cfg.seed == 3
    assert cfg.model.d_vocab == 12 and cfg.model.d_vocab_out == 11 and cfg.model.n_ctx == 3
    assert cfg.model.d_model == 16


@pytest.mark.parametrize("ov,match", [
    (["model.d_model=-4"], r"model\.d_model"),
    (["model.d_model=0"], r"model\.d_model"),
    (["model.n_heads=0"], r"model\.n_heads"),
    (["train.steps=0"], r"train\.steps"),
    (["train.lr=-1"], r"train\.lr"),
    (["train.batch_size=0"], r"train\.batch_size"),
])
def test_negative_or_zero_sizes(ov, match):
    bad(ov, match)


def test_heads_must_divide_d_model():
    msg = bad(["model.d_model=18", "model.n_heads=4"], "must divide")
    assert "n_heads=4" in msg and "d_model=18" in msg


def test_unknown_task():
    with pytest.raises(ConfigError, match="unknown task or preset 'nope'"):
        build_run_config("nope")
    with pytest.raises(ConfigError, match=r"task: unknown task 'nope'"):
        build_run_config("modular", ["task.name=nope"])


def test_unknown_optimizer_lists_allowed():
    msg = bad(["train.optimizer=lion"], r"train\.optimizer")
    assert "adamw" in msg and "sgd" in msg


def test_wrong_types():
    bad(["model.d_model=big"], r"model\.d_model")
    bad(["train.lr=[1, 2]"], r"train\.lr")


def test_unknown_keys_anywhere():
    bad(["model.widht=3"], r"model\.widht: unknown key")
    bad(["train.nope=1"], r"train\.nope: unknown key")
    bad(["task.q=3"], r"task\.q: unknown key")
    bad(["extra=1"], r"extra: unknown key")


def test_task_field_rules():
    bad(["task.p=12"], r"task\.p: must be a prime")
    bad(["task.op=%"], r"task\.op")
    bad(["task.train_fraction=1.5"], r"task\.train_fraction")


def test_override_syntax():
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["model.d_model"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2", "d=x"]) == {"a": {"b": 1, "c": 2}, "d": "x"}


def test_config_files(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("task: {name: modular, p: 13}\nmodel: {d_model: 16, n_heads: 2}\ntrain: {steps: 3}\n")
    cfg = build_run_config(None, ["train.lr=0.01"], str(y))
    assert cfg.task.p == 13 and cfg.train.lr == 0.01 and cfg.model.d_model == 16
    j = tmp_path / "c.json"
    j.write_text('{"task": {"name": "modular", "p": 7}, "model": {"d_model": 8, "n_heads": 2}}')
    assert build_run_config(None, [], str(j)).task.p == 7


@pytest.mark.parametrize("name,text", [("broken.yaml", "task: [unclosed\n  - x: y"), ("broken.json", "{not json")])
def test_unparsable_file(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError, match="does not parse"):
        load_file(p)


def test_missing_file():
    with pytest.raises(ConfigError, match="no such file"):
        load_file("/nonexistent/cfg.yaml")


def test_run_id_depends_on_config_and_seed_not_tags():
    a = build_run_config("modular", TINY, seed=0)
    b = build_run_config("modular", TINY + ["tags.note=hello"], seed=0)
    c = build_run_config("modular", TINY, seed=1)
    d = build_run_config("modular", TINY + ["train.lr=0.002"], seed=0)
    assert a.run_id() == b.run_id()
    assert len({a.run_id(), c.run_id(), d.run_id()}) == 3


@pytest.mark.parametrize("ov,match", [
    (["model.d_model=true"], r"model\.d_model: must be a number, not true/false"),
    (["train.lr=false"], r"train\.lr: must be a number"),
    (["train.steps=2.5"], r"train\.steps"),
    (["seed=-1"], r"seed"),
    (["train.betas=[0.9]"], r"train\.betas"),
    (["train.betas=[0.9, 1.5]"], r"betas must lie in \[0, 1\)"),
    (["train.device=tpu"], r"train\.device: must be cpu, cuda, cuda:N, mps or auto"),
    (["train.schedule=step"], r"train\.schedule"),
    (["train.early_stop_metric=accuracy", "train.early_stop_value=0.9"], r"split/name"),
    (["train.early_stop_value=null"], r"go together"),
    (["model=3"], r"model"),
    (["task.p=4099"], r"task\.p"),
    (["task.p=1"], r"task\.p"),
])
def test_more_bad_values(ov, match):
    bad(ov, match)


def test_numbers_from_strings_and_yaml_floats():
    # YAML reads 3e-4 as a string; it is still a valid float, and "true" stays a bool where one belongs
    c = build_run_config("modular", TINY + ["train.lr=3e-4", "model.bias=true", "train.grad_clip=null"])
    assert c.train.lr == 3e-4 and c.model.bias is True and c.train.grad_clip is None


def test_config_round_trips_through_json():
    from theorylab.config import validate
    from theorylab.runs import RunConfig

    c = build_run_config("modular", TINY + ["train.batch_size=8", "tags.who=me"], seed=2)
    back = validate(RunConfig, c.to_dict())
    assert back == c and back.run_id() == c.run_id() and back.to_json() == c.to_json()


def test_file_with_a_bad_value_names_the_field(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("task: {name: modular, p: 11}\nmodel: {d_model: 16, n_heads: 3}\n")
    with pytest.raises(ConfigError, match="must divide"):
        build_run_config(None, [], str(y))
    y.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        build_run_config("modular", [], str(y))
    y.write_text("model: {d_model: 16}\n")
    with pytest.raises(ConfigError, match="task: required"):
        build_run_config(None, [], str(y))


def test_overrides_beat_file_beat_preset(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("train: {lr: 0.02, steps: 7}\n")
    c = build_run_config("modular", ["train.steps=9"], str(y))
    assert c.train.lr == 0.02 and c.train.steps == 9 and c.task.p == 47  # p from the preset
