"""Bad input, by kind: every case is one ``theorylab: error: ...`` line naming the field, exit 2, nothing stored.

Each kind has its Python-level test (a one-line ConfigError) and its CLI test through ``refused``, which
checks the whole contract: exit code 2, nothing on stdout, one error line containing ``needle`` on stderr,
and no run in the store.
"""

from __future__ import annotations

import pytest

from theorylab.config import load_file
from theorylab.errors import ConfigError
from theorylab.runs import build_run_config

TINY = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.steps=2",
        "train.eval_every=1"]


def refused(cli, store, *args, needle: str) -> str:
    """Run the CLI and check the bad-input contract; return the error line."""
    rc, out, err = cli(*args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, out, err)
    assert out == "", out
    assert len(lines) == 1 and lines[0].startswith("theorylab: error: "), err
    assert lines[0] != "theorylab: error: " and needle in lines[0], err
    assert not (store.root / "runs").exists()
    if store.db_path.exists():
        assert store.list_runs() == []
    return lines[0]


def one_line_config_error(fn, *args, match: str, **kwargs) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


# --------------------------------------------------------------------------- 1. config files that are not UTF-8


@pytest.mark.parametrize("suffix", ["yaml", "json"])
@pytest.mark.parametrize("content", [
    bytes(range(256)),  # random bytes, invalid UTF-8 from the first high byte
    "model: {d_model: 16}  # réglé à la main\n".encode("latin-1"),  # latin-1 with non-ASCII
])
def test_config_file_not_utf8(tmp_path, cli, store, suffix, content):
    p = tmp_path / f"c.{suffix}"
    p.write_bytes(content)
    msg = one_line_config_error(load_file, p, match="not UTF-8")
    assert str(p) in msg and "byte" in msg
    refused(cli, store, "train", "modular", "--config", p, needle="not UTF-8")


def test_config_file_utf8_with_bom_reads(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes("\ufefftask: {name: modular, p: 13}  # réglé\n".encode("utf-8"))
    assert load_file(p) == {"task": {"name": "modular", "p": 13}}


def test_config_path_that_is_a_folder_or_unreadable(tmp_path, cli, store):
    refused(cli, store, "train", "modular", "--config", tmp_path, needle="no such file")


# --------------------------------------------------------------------------- 5. NaN and infinities


def _float_fields(cls) -> list[str]:
    """Fields whose annotation holds a float anywhere (float, float | None, tuple[float, float], ...)."""
    import typing

    def has_float(t) -> bool:
        return t is float or any(has_float(a) for a in typing.get_args(t))

    return [k for k, f in cls.model_fields.items() if has_float(f.annotation)]


def _config_classes():
    from theorylab.models import TransformerConfig
    from theorylab.runs import TrainConfig
    from theorylab.tasks import get_task, task_names

    out = [(TransformerConfig, "model", {"d_vocab": 5}), (TrainConfig, "train", {})]
    out += [(get_task(n).Config, "task", {"name": n}) for n in task_names()]
    return out


@pytest.mark.parametrize("bad", ["nan", ".nan", ".inf", "-.inf", "inf", "1e999"])
def test_every_float_field_of_every_config_refuses_non_finite(bad):
    from theorylab.config import parse_value, validate

    checked = 0
    for cls, section, base in _config_classes():
        for name in _float_fields(cls):
            ann = cls.model_fields[name].annotation
            value = parse_value(bad)
            if "dict" in str(ann):
                continue  # the lm grammar: tested below
            if "tuple" in str(ann):
                value = [value, 0.5]
            msg = one_line_config_error(validate, cls, {**base, name: value}, f"{section}.", match="finite")
            assert f"{section}.{name}" in msg, msg
            checked += 1
    assert checked >= 20


def test_non_finite_grammar_probability():
    one_line_config_error(build_run_config, "lm", ["task.grammar={S: [[.nan, [a]]]}"], match=r"task\.grammar.*finite")


@pytest.mark.parametrize("ov,field", [
    (["train.lr=.inf"], "train.lr"),
    (["train.weight_decay=.inf"], "train.weight_decay"),
    (["train.early_stop_metric=test/accuracy", "train.early_stop_value=.nan"], "train.early_stop_value"),
    (["train.grad_clip=.inf"], "train.grad_clip"),
    (["train.betas=[0.9, .nan]"], "train.betas"),
    (["model.init_std=nan"], "model.init_std"),
    (["task.train_fraction=.nan"], "task.train_fraction"),
])
def test_non_finite_overrides_are_refused(cli, store, ov, field):
    one_line_config_error(build_run_config, "modular", TINY + ov, match=field.replace(".", r"\."))
    refused(cli, store, "train", "modular", *TINY, *ov, needle=field)


def test_non_finite_in_a_json_config_file(tmp_path, cli, store):
    p = tmp_path / "c.json"
    p.write_text('{"train": {"lr": NaN}}')  # Python's json reads NaN; the config refuses it
    refused(cli, store, "train", "modular", "--config", p, needle="train.lr")


# --------------------------------------------------------------------------- 3. seeds; 4. task seeds


@pytest.mark.parametrize("seed", [-3, 2**63, 2**64 + 5, 10**30])
def test_run_config_seed_range(seed):
    msg = one_line_config_error(build_run_config, "modular", TINY, seed=seed, match="seed")
    assert "2**63" in msg
    one_line_config_error(build_run_config, "modular", [*TINY, f"seed={seed}"], match="seed")


def test_largest_seed_is_accepted():
    assert build_run_config("modular", TINY, seed=2**63 - 1).seed == 2**63 - 1


@pytest.mark.parametrize("args", [["--seed", str(2**63)], ["--seed", str(10**30)], ["--seed", "-3"],
                                  [f"seed={2**63}"], [f"seed={10**30}"]])
def test_train_seed_out_of_range_is_refused(cli, store, args):
    refused(cli, store, "train", "modular", *TINY, *args, needle="seed")


@pytest.mark.parametrize("task,field", [("modular", "data_seed"), ("alpine", "data_seed"),
                                        ("blocksworld", "data_seed"), ("bigram_triggers", "chain_seed")])
@pytest.mark.parametrize("value", [-1, 2**63])
def test_task_seeds_range(cli, store, task, field, value):
    one_line_config_error(build_run_config, task, [f"task.{field}={value}"], match=rf"task\.{field}.*2\*\*63")
    refused(cli, store, "train", task, f"task.{field}={value}", "train.steps=1", needle=f"task.{field}")


def test_every_task_seed_field_is_checked():
    from theorylab.config import validate
    from theorylab.tasks import get_task, task_names

    fields = [(n, k) for n in task_names() for k in get_task(n).Config.model_fields if k.endswith("seed")]
    assert len(fields) >= 4
    for name, k in fields:
        one_line_config_error(validate, get_task(name).Config, {"name": name, k: -1}, "task.", match=rf"task\.{k}")


def _commands():
    """(path, click command) of every verb of the app, sub-apps included."""
    import typer.main

    from theorylab.cli import app

    out = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            out.append((path, cmd))

    walk(typer.main.get_command(app), [])
    assert len(out) >= 12
    return out


def _argv(path, cmd, option, value):
    """A command line for ``cmd`` with every required argument and option filled and ``option value``."""
    argv = list(path)
    for p in cmd.params:
        if p.param_type_name == "argument" and p.required:
            argv.append("x")
        elif p.param_type_name == "option" and p.required and p is not option:
            argv += [p.opts[0], "1"]
    return [*argv, option.opts[0], value]


def _annotation_has(p, kind) -> bool:
    import typing

    def has(t) -> bool:
        return t is kind or any(has(a) for a in typing.get_args(t))

    return has(p.type_descriptor.annotation)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_every_float_option_of_every_verb_refuses_non_finite(cli, store, bad):
    seen = []
    for path, cmd in _commands():
        for p in cmd.params:
            if p.param_type_name == "option" and _annotation_has(p, float):
                refused(cli, store, *_argv(path, cmd, p, bad), needle=f"{p.opts[0]}: must be a finite number")
                seen.append(" ".join([*path, p.opts[0]]))
    assert {"generate --temperature", "generate --length-penalty", "generate --top-p",
            "construct parity --layernorm-eps", "measure planning --temperature"} <= set(seen), seen


@pytest.mark.parametrize("bad", ["-3", str(2**63), "99999999999999999999999"])
def test_every_seed_option_refuses_negative_and_huge(cli, store, bad):
    seen = []
    for path, cmd in _commands():
        for p in cmd.params:
            if p.name == "seed":
                refused(cli, store, *_argv(path, cmd, p, bad), needle="--seed")
                seen.append(" ".join(path))
    assert {"train", "generate", "construct parity", "measure planning"} <= set(seen), seen


# --------------------------------------------------------------------------- 7. no arguments; 10. flags


@pytest.mark.parametrize("args,verb", [([], "train"), (["measure"], "fourier")])
def test_no_arguments_prints_the_help_and_exits_0(cli, store, args, verb):
    rc, out, err = cli(*args)
    assert rc == 0 and "Usage:" in out and verb in out
    assert err == ""  # no empty "theorylab: error:" line


@pytest.mark.parametrize("args,flag", [
    (["train", "modular", "--force", "true"], "--force"),
    (["train", "modular", "--quiet", "false"], "--quiet"),
    (["train", "modular", "--json", "yes"], "--json"),
    (["sweep", "modular", "--stack", "no"], "--stack"),
    (["generate", "x", "-p", "1", "--stop-at-eos", "false"], "--no-stop-at-eos"),
    (["construct", "first", "--log-length", "on"], "--log-length"),
])
def test_a_flag_given_a_value_is_one_clear_line(cli, store, args, flag):
    line = refused(cli, store, *args, needle="is a flag and takes no value")
    assert flag in line


def test_flags_show_no_value_in_help(cli):
    for path in [[], ["measure"], *(path for path, _ in _commands())]:
        rc, out, _ = cli(*path, "--help")
        assert rc == 0 and "--help" in out
        assert "<bool>" not in out, (path, out)


# --------------------------------------------------------------------------- 6. empty train or test splits


@pytest.mark.parametrize("ov", [
    ["task.p=5", "task.train_fraction=0.01"],  # round(0.25) = 0 train pairs
    ["task.p=5", "task.train_fraction=0.99"],  # round(24.75) = 25 of 25: no test pair
    ["task.p=2", "task.op=/", "task.train_fraction=0.1"],  # 2 pairs (b != 0)
])
def test_modular_fraction_that_empties_a_split(cli, store, ov):
    msg = one_line_config_error(build_run_config, "modular", ov, match=r"task\.train_fraction")
    assert "pairs" in msg
    refused(cli, store, "train", "modular", *ov, "train.steps=1", needle="task.train_fraction")


@pytest.mark.parametrize("ov,n_train", [(["task.p=5", "task.train_fraction=0.04"], 1),
                                        (["task.p=5", "task.train_fraction=0.96"], 24),
                                        (["task.p=2", "task.op=/", "task.train_fraction=0.5"], 1)])
def test_modular_fraction_at_the_edges_is_allowed(ov, n_train):
    from theorylab.tasks import make_task

    cfg = build_run_config("modular", ov)
    task = make_task(cfg.task, 0)
    assert len(task.train_set) == n_train and len(task.test_set) >= 1


@pytest.mark.parametrize("task", ["alpine", "blocksworld"])
def test_graph_fraction_one_leaves_no_test_pair(cli, store, task):
    one_line_config_error(build_run_config, task, ["task.train_fraction=1"], match=r"task\.train_fraction")
    refused(cli, store, "train", task, "task.train_fraction=1", "train.steps=1", needle="task.train_fraction")


def test_graph_that_gives_an_empty_split_is_refused_before_anything_is_stored(cli, store):
    refused(cli, store, "train", "alpine", "task.n=2", "train.steps=1", needle="test pairs")


# --------------------------------------------------------------------------- 8. overrides given as one string


def test_one_override_string_is_one_override():
    one = build_run_config("modular", "train.steps=5")
    assert one.train.steps == 5
    assert one == build_run_config("modular", ["train.steps=5"])
    assert build_run_config("modular", ("train.steps=5", "task.p=11")).task.p == 11


@pytest.mark.parametrize("overrides,match", [
    (["train.steps=5", 3], r"override 3: expected a 'key=value' string"),
    ([("train.steps", 5)], r"expected a 'key=value' string"),
    ({"train.steps": 5}, r"overrides: give 'key=value' strings"),
    (5, r"overrides: give 'key=value' strings"),
    (b"train.steps=5", r"overrides: give 'key=value' strings"),
])
def test_overrides_of_another_type_are_one_line(overrides, match):
    one_line_config_error(build_run_config, "modular", overrides, match=match)


def test_apply_overrides_takes_one_string_too():
    from theorylab.config import apply_overrides

    assert apply_overrides({}, "a.b=2") == {"a": {"b": 2}}


@pytest.mark.parametrize("name", [{"task": {"name": "modular"}}, 3, ["modular"]])
def test_preset_name_of_another_type_is_one_line(name):
    one_line_config_error(build_run_config, name, match="task: give a task or preset name")


# --------------------------------------------------------------------------- 9. assignment and copies


@pytest.mark.parametrize("section,field,value,match", [
    ("train", "steps", -1, r"^train\.steps: "),
    ("train", "lr", float("nan"), r"^train\.lr: .*finite"),
    ("train", "optimizer", "lion", r"^train\.optimizer: "),
    ("model", "d_model", 0, r"^model\.d_model: "),
    ("model", "n_heads", 5, r"^model: .*must divide"),
    ("task", "p", 12, r"^task\.p: must be a prime"),
    ("task", "data_seed", -1, r"^task\.data_seed: "),
    (None, "seed", 2**63, r"^seed: "),
])
def test_assigning_a_bad_value_is_one_config_error_line(section, field, value, match):
    cfg = build_run_config("modular", TINY)
    target = cfg if section is None else getattr(cfg, section)
    before = getattr(target, field)
    one_line_config_error(setattr, target, field, value, match=match)
    assert getattr(target, field) == before  # the config is left as it was
    cfg.train.steps = 7  # a good value is still taken
    assert cfg.train.steps == 7


def test_building_a_section_directly_with_a_bad_value_is_one_line():
    from theorylab.runs import TrainConfig
    from theorylab.tasks.modular import ModularConfig

    one_line_config_error(TrainConfig, steps=0, match=r"^train\.steps: ")
    one_line_config_error(ModularConfig, p=4, match=r"^task\.p: ")


def test_copy_with_a_bad_update_is_one_line_and_a_good_one_is_validated():
    cfg = build_run_config("modular", TINY)
    one_line_config_error(cfg.model_copy, update={"seed": -1}, match=r"^seed: ")
    one_line_config_error(cfg.train.model_copy, update={"lr": float("inf")}, match=r"^train\.lr: ")
    two = cfg.model_copy(update={"seed": 2, "train": cfg.train.model_copy(update={"steps": 9})})
    assert two.seed == 2 and two.train.steps == 9 and cfg.train.steps == 2 and two.run_id() != cfg.run_id()


# --------------------------------------------------------------------------- 2. sizes beyond the machine


@pytest.fixture()
def nothing_is_built(monkeypatch):
    """Fail the test if a model or task were built: a refused size is refused by arithmetic alone."""
    import theorylab.runs.loop as loop

    def boom(*a, **k):
        raise AssertionError("built a model for a config that should have been refused")

    monkeypatch.setattr(loop, "build", boom)


@pytest.mark.parametrize("ov", [["model.d_model=1000000000"], ["model.n_layers=1000000"],
                                ["model.d_mlp=100000000000"], ["train.batch_size=10000000000"],
                                ["model.n_loops=100000000"]])
def test_absurd_model_sizes_are_refused_before_building(cli, store, nothing_is_built, ov):
    msg = one_line_config_error(build_run_config, "modular", ov, match=r"^model: this run needs about")
    assert "is available" in msg and "parameters" in msg and "activations" in msg
    refused(cli, store, "train", "modular", *ov, needle="this run needs about")


def test_every_preset_fits_and_its_estimate_is_modest():
    from theorylab.runs.config import check_memory, memory_estimate, preset_names

    for name in preset_names():
        cfg = build_run_config(name)  # refuses nothing a laptop can train
        assert memory_estimate(cfg).total < 10**9, name
        check_memory(cfg, available=10**9)


def test_check_memory_against_a_given_limit():
    from theorylab.runs.config import check_memory, memory_estimate

    cfg = build_run_config("modular")
    need = memory_estimate(cfg).total
    check_memory(cfg, available=need)
    one_line_config_error(check_memory, cfg, available=need - 1, match=r"^model: this run needs about")
    # seeds train together: two need twice the memory of one
    two = [cfg, cfg.model_copy(update={"seed": 1})]
    check_memory(two, available=2 * need)
    one_line_config_error(check_memory, two, available=2 * need - 1, match="2 runs trained together need")
    # configs that differ in more than the seed train one group at a time
    other = build_run_config("modular", ["model.d_model=32"])
    check_memory([cfg, other], available=need)


def test_seeds_that_do_not_fit_together_are_refused(cli, store, nothing_is_built, monkeypatch):
    import theorylab.runs.config as rc

    need = rc.memory_estimate(build_run_config("modular", TINY)).total
    monkeypatch.setattr(rc, "available_memory", lambda device: (int(1.5 * need), "a test limit"))
    build_run_config("modular", TINY)  # one seed fits
    refused(cli, store, "train", "modular", *TINY, "--seeds", "2", needle="2 runs trained together need")


def test_sweep_with_an_absurd_grid_point_is_refused(cli, store, nothing_is_built):
    refused(cli, store, "sweep", "modular", *TINY, "model.d_model=16,1000000000", "--backend", "inprocess",
            needle="this run needs about")


def test_estimate_follows_the_optimizer_and_dtype():
    from theorylab.runs.config import memory_estimate

    base = memory_estimate(build_run_config("modular", TINY))
    sgd = memory_estimate(build_run_config("modular", [*TINY, "train.optimizer=sgd"]))
    momentum = memory_estimate(build_run_config("modular", [*TINY, "train.optimizer=sgd", "train.momentum=0.9"]))
    wide = memory_estimate(build_run_config("modular", [*TINY, "train.dtype=float64"]))
    assert sgd.optimizer == 0 and momentum.optimizer == base.optimizer // 2 == base.params
    assert wide.params == 2 * base.params and wide.activations == 2 * base.activations


@pytest.mark.parametrize("args", [["parity", "--n", "1000000000"], ["first", "--n", "1000000000"],
                                  ["parity", "--n", "100000", "--attention", "hard_unique"],
                                  ["parity", "--n", "1000", "--samples", "10000000000"]])
def test_absurd_construction_sizes_are_refused(cli, store, monkeypatch, args):
    import torch

    def boom(*a, **k):
        raise AssertionError("allocated the strings of a construction that should have been refused")

    monkeypatch.setattr(torch, "randint", boom)
    refused(cli, store, "construct", *args, needle="of memory")


def test_construction_memory_estimate():
    from theorylab.constructions import chiang

    small = chiang.evaluation_memory(chiang.parity(), 100, 256)
    assert 0 < small < 10**8
    hard = chiang.evaluation_memory(chiang.parity(attention="hard_unique"), 10**5, 1)
    assert hard > 4 * 2 * 10**10 * 8  # [heads, N, N] float64 scores and patterns
    assert chiang.evaluate(chiang.parity(), "parity", 8, 16)["accuracy"] == 1.0


# --------------------------------------------------------------------------- 10. help


def test_every_option_and_argument_of_every_verb_has_help():
    missing = [" ".join([*path, p.name]) for path, cmd in _commands() for p in cmd.params
               if not (getattr(p, "help", None) or "").strip()]
    assert missing == []


@pytest.mark.parametrize("name,fields", [
    ("modular", ["task.p", "task.train_fraction", "task.data_seed", "model.d_model", "model.n_layers",
                 "train.lr", "train.steps", "train.early_stop_value", "seed"]),
    ("alpine", ["task.n", "task.paths_per_pair", "model.n_ctx", "train.batch_size"]),
    ("parity_check", ["task.train_max_length", "task.test_max_length", "model.architecture"]),
])
def test_train_task_help_lists_the_config_fields(cli, name, fields):
    for verb in ("train", "sweep"):
        rc, out, _ = cli(verb, name, "--help")
        assert rc == 0 and "--seed" in out and "key=value" in out
        for f in fields:
            assert f in out, (verb, name, f, out)
    rc, out, _ = cli("train", "--help")
    assert rc == 0 and "theorylab tasks TASK" in " ".join(out.split()) and "task.p" not in out


def test_train_help_shows_values_descriptions_and_what_is_allowed(cli):
    rc, out, _ = cli("train", "grokking", "--help")
    flat = " ".join(out.split())
    assert rc == 0 and "task.p = 113" in flat and "prime modulus" in flat  # the preset's value, the description
    assert "train.optimizer = adamw" in flat and "adamw | adam | sgd" in flat
    assert "model.d_model = 128" in flat and "> 0" in flat


def test_train_help_with_an_option_before_the_task(cli, tmp_path):
    rc, out, _ = cli("train", "--seed", "3", "modular", "--help")
    assert rc == 0 and "task.p" in out
    rc, out, _ = cli("train", "nosuchtask", "--help")
    assert rc == 0 and "unknown task or preset 'nosuchtask'" in " ".join(out.split())


def test_tasks_verb_shows_levels_and_one_task_s_fields(cli):
    import json

    from theorylab.tasks import get_task

    rc, out, _ = cli("tasks", "--json")
    rows = {r["name"]: r for r in json.loads(out)["tasks"]}
    assert rc == 0 and rows["parity_check"]["level"] == get_task("parity_check").level
    assert rows["grokking"]["level"] == get_task("modular").level  # a preset shows its task's level
    rc, out, _ = cli("tasks")
    assert rc == 0 and "level" in out and get_task("parity_check").level in out
    rc, out, _ = cli("tasks", "grokking", "--json")
    d = json.loads(out)
    fields = {f["key"]: f for f in d["fields"]}
    assert rc == 0 and d["name"] == "grokking" and d["task"] == "modular"
    assert fields["task.p"]["value"] == 113 and "prime" in fields["task.p"]["description"]
    assert fields["train.lr"]["allowed"] == "> 0, finite"
    rc, out, _ = cli("tasks", "grokking")
    assert rc == 0 and "task.train_fraction" in out


def test_tasks_verb_with_an_unknown_name(cli, store):
    refused(cli, store, "tasks", "nosuchtask", needle="unknown task or preset 'nosuchtask'")


@pytest.mark.parametrize("task,ov", [
    ("induction", "task.n_test=1000000000"), ("lm", "task.n_test=1000000000"),
    ("bigram_triggers", "task.vocab=100000"), ("bigram_triggers", "task.n_test=1000000000"),
    ("concepts", "task.n_test=1000000000"), ("icl_regression", "task.n_test=1000000000"),
    ("parity_check", "task.n_eval=1000000000"), ("alpine", "task.paths_per_pair=1000000000"),
    ("alpine", "task.eval_pairs=1000000000"), ("blocksworld", "task.test_paths_per_pair=1000000000"),
])
def test_absurd_task_sizes_are_refused_before_building(cli, store, nothing_is_built, task, ov):
    msg = one_line_config_error(build_run_config, task, [ov], match=r"^task: this run needs about")
    assert "task data" in msg
    refused(cli, store, "train", task, ov, needle="this run needs about")


def test_impossible_induction_periods_are_a_config_error():
    one_line_config_error(build_run_config, "induction", ["task.min_period=20"], match=r"task: min_period")


@pytest.mark.parametrize("args", [["--strategy", "sample", "--num-samples", "100000000000"],
                                  ["--strategy", "beam", "--num-beams", "100000000000"]])
def test_absurd_generation_batches_are_refused(cli, store, args):
    import json

    from theorylab.models.size import generation_memory

    rc, out, _ = cli("train", "modular", *TINY, "--json")
    assert rc == 0
    run = json.loads(out)["run_id"]
    before = store.get_run(run)
    rc, out, err = cli("generate", run, "-p", "1 2", "-n", "1", *args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and out == "" and len(lines) == 1 and "sequences of up to 3 tokens needs about" in lines[0], err
    assert store.get_run(run) == before and len(store.list_runs()) == 1  # nothing written
    cfg = build_run_config("modular", TINY)
    assert generation_memory(cfg.model, 10) == 10 * generation_memory(cfg.model, 1) > 0


# --------------------------------------------------------------------------- integers beyond 64 bits


@pytest.mark.parametrize("ov", ["train.steps=99999999999999999999", "train.eval_every=99999999999999999999",
                                "model.d_model=-99999999999999999999", "task.p=99999999999999999999"])
def test_integer_fields_hold_64_bit_integers(cli, store, ov):
    field = ov.split("=")[0]
    one_line_config_error(build_run_config, "modular", [*TINY, ov], match=field.replace(".", r"\."))
    refused(cli, store, "train", "modular", *TINY, ov, needle=field)


def test_every_int_option_refuses_values_beyond_64_bits(cli, store):
    seen = []
    for path, cmd in _commands():
        for p in cmd.params:
            if p.param_type_name == "option" and _annotation_has(p, int) and not _annotation_has(p, bool):
                refused(cli, store, *_argv(path, cmd, p, str(2**64)), needle=p.opts[0])
                seen.append(" ".join([*path, p.opts[0]]))
    assert {"runs --limit", "train --stop-after", "check --workers", "generate --top-k"} <= set(seen), seen


def test_sections_are_named_whatever_was_imported_first():
    """A fresh process that never imports theorylab.runs still names task.p and model.d_model."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        from theorylab.errors import ConfigError
        from theorylab.models import TransformerConfig
        from theorylab.tasks.modular import ModularConfig
        for make in (lambda: ModularConfig(p=4), lambda: setattr(TransformerConfig(d_vocab=3), "d_model", 0)):
            try:
                make()
            except ConfigError as e:
                print(e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("task.p: ") and lines[1].startswith("model.d_model: "), out


def test_every_config_field_has_a_description():
    missing = [f"{section}.{k}" for cls, section, _ in _config_classes() for k, f in cls.model_fields.items()
               if k != "name" and not (f.description or "").strip()]
    assert missing == []
