"""Devices: every registered task trains on every device this machine has, task code never mixes devices
(checked on the CPU by marking tensors as on a device), --device on the CLI and the API, and bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from theorylab.errors import ConfigError
from theorylab.runs import build, build_run_config, train
from theorylab.runs.devices import DeviceMixingError, audit_devices, available_devices
from theorylab.tasks import Batch, task_names
from theorylab.tasks.modular import ModularTask

# the smallest config of each task family that still exercises its metrics and probes
TINY = {"modular": ["task.p=7"], "subleq_step": ["task.n_test=8"], "alpine": ["task.n=12", "task.p=0.3", "task.eval_pairs=16"],
        "blocksworld": ["task.eval_pairs=16", "task.paths_per_pair=2"], "lm": ["task.seq_len=16"],
        "induction": ["task.vocab=12", "task.period=4", "task.min_period=2", "task.n_test=8"],
        "icl_regression": ["task.d=3", "task.n_points=5", "task.n_test=8"], "concepts": ["task.n_test=8"],
        "bigram_triggers": ["task.vocab=12", "task.seq_len=16", "task.n_test=8"],
        "markov": ["task.vocab=8", "task.seq_len=16", "task.n_test=8"],
        "addition": ["task.digits=2", "task.n_test=8"],
        "recall": ["task.alphabet=4", "task.answer_length=3", "task.n_test=8"],
        "knowledge_graph": ["task.n=12", "task.degree=3", "task.test_hops=2", "task.max_hops=4",
                            "task.n_test_pairs=8", "task.n_eval=8"],
        "ab_strings": ["task.length=4", "task.n_test=8"],
        "pcfg_preference": ["task.max_len=8", "task.n_test=8", "task.n_eval_samples=8"],
        "percolation": ["task.n_descriptive_properties=30", "task.n_entities=5", "task.n_relative_properties=5",
                        "task.n_test=8", "task.n_generations=4", "task.n_unscramble=4", "task.max_len=32",
                        "task.batch=8"],
        "bios": ["task.n_people=16", "task.n_first=4", "task.n_middle=4", "task.n_last=4", "task.n_years=4",
                 "task.n_cities=4", "task.n_universities=4", "task.n_majors=4", "task.n_employers=4", "task.n_eval=4",
                 "task.stage=mixed", "task.batch=8"]}
FORMAL = ["task.train_max_length=4", "task.test_max_length=6", "task.n_eval=4"]


def tiny(name: str, *extra: str):
    return build_run_config(name, [*TINY.get(name, FORMAL), "model.d_model=16", "model.n_heads=2", *extra])


def test_every_task_is_covered():
    formal = {n for n in task_names() if n not in TINY}
    for n in formal:  # the formal tasks share one config shape
        assert tiny(n).task.train_max_length == 4, n


@pytest.mark.parametrize("name", task_names())
def test_task_code_follows_the_device(name):
    """loss, metrics (or the task's own evaluation) and the preset's probes, with the batch and the model
    marked as on a device: a CPU-built tensor meeting them, or .numpy() on them, raises."""
    cfg = tiny(name)
    task, model = build(cfg)
    audit_devices(task, model, cfg.probes)


class _MixingTask(ModularTask):
    """Metrics that weigh the rows with a tensor built on the CPU (the fault the audit found in three tasks)."""

    def metrics(self, model, batch, out=None):
        logits = model(batch.tokens)[:, -1]
        weight = torch.ones(len(batch.targets))  # no device=: lands on the CPU
        return {"accuracy": float(((logits.argmax(-1) == batch.targets[:, -1]) * weight).mean())}


class _NumpyTask(ModularTask):
    def metrics(self, model, batch, out=None):
        return {"accuracy": float(batch.targets.numpy().mean())}


class _CorrectTask(ModularTask):
    def metrics(self, model, batch, out=None):
        logits = model(batch.tokens)[:, -1]
        weight = torch.ones(len(batch.targets), device=batch.tokens.device)
        return {"accuracy": float(((logits.argmax(-1) == batch.targets[:, -1]) * weight).mean()),
                "mean_target": float(batch.targets.cpu().numpy().mean())}


@pytest.mark.parametrize("cls,fault", [(_MixingTask, "mixes a tensor on the device with one built on the CPU"),
                                       (_NumpyTask, r"\.numpy\(\) on a tensor on the device")])
def test_planted_device_faults_are_caught(cls, fault):
    cfg = tiny("modular")
    _, model = build(cfg)
    with pytest.raises(DeviceMixingError, match=fault) as err:
        audit_devices(cls(cfg.task, 0), model)
    assert "test_devices.py" in str(err.value)  # names the line of task code


def test_correct_task_code_passes_the_audit():
    cfg = tiny("modular")
    _, model = build(cfg)
    audit_devices(_CorrectTask(cfg.task, 0), model)


@pytest.mark.parametrize("device", available_devices())
@pytest.mark.parametrize("name", task_names())
def test_every_task_trains_on_every_device(name, device, store):
    cfg = tiny(name, "train.steps=3", "train.eval_every=3", f"train.device={device}")
    r = train(cfg, store, progress=False)
    assert r.status == "finished" and r.step == 3
    assert next(r.model.parameters()).device.type == torch.device(device).type
    assert r.metrics and all(isinstance(v, float) for v in r.metrics.values())


def test_device_is_not_part_of_a_run_id_but_is_checked():
    assert tiny("modular").run_id() == tiny("modular", "train.device=auto").run_id()
    from theorylab.sweep import on_device

    with pytest.raises(ConfigError, match="device: must be cpu, cuda, cuda:N, mps or auto"):
        on_device([tiny("modular")], "gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            on_device([tiny("modular")], "cuda")
    assert [c.train.device for c in on_device([tiny("modular")], "cpu")] == ["cpu"]


def test_check_takes_a_device(store):
    from theorylab.claims.engine import check

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            check("hahn2020.soft_attention_sensitivity", "smoke", store=store, device="cuda")
    r = check("hahn2020.soft_attention_sensitivity", "smoke", seeds=1, store=store, device="cpu")
    assert r.device.startswith("cpu")


@pytest.mark.parametrize("args", [["train", "modular", "--device", "tpu"],
                                  ["sweep", "modular", "--device", "gpu"],
                                  ["check", "hahn2020.soft_attention_sensitivity", "--device", "cuda:7"]])
def test_cli_device_errors_are_one_line(args, tmp_path, monkeypatch):
    from theorylab.cli.app import main

    monkeypatch.setenv("THEORYLAB_HOME", str(tmp_path))
    if args[-1] == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    assert main(args) == 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("stepper", ["single", "stacked"])
def test_bf16_autocasts_over_float32_weights(stepper, store):
    f32 = train(tiny("modular", "train.steps=20", f"train.stepper={stepper}"), store, progress=False)
    bf = train(tiny("modular", "train.steps=20", "train.dtype=bf16", f"train.stepper={stepper}"), store,
               progress=False)
    assert bf.run_id != f32.run_id  # bf16 changes the numbers, so it is part of the identity
    assert all(p.dtype == torch.float32 for p in bf.model.parameters())  # master weights stay float32
    a, b = f32.metrics["train/loss"], bf.metrics["train/loss"]
    assert a != b and abs(a - b) < 0.1 * a  # rounded differently, trained the same way


def test_bf16_forward_runs_in_bfloat16():
    from theorylab.runs.devices import precision

    cfg = tiny("modular", "train.dtype=bf16")
    task, model = build(cfg)
    batch: Batch = task.train_batch(0, 4)
    with precision(cfg.train.dtype, "cpu"):
        logits = model(batch.tokens)
    assert logits.dtype == torch.bfloat16
    assert model(batch.tokens).dtype == torch.float32  # outside the context: float32
