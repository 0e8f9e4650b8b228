"""The speed paths of the training loop (issue: compiled step, bf16, stacked seeds that scale): each agrees with
eager float32 within a stated tolerance, and each is part of a run's identity exactly when it changes numbers.
Timings are measured in ``benchmarks/``, never asserted here."""

from __future__ import annotations

import json
import math

import pytest
import torch

from theorylab.runs import build, build_run_config, train_many
from theorylab.runs.devices import precision
from theorylab.runs.steppers import AUTO, StackedStepper, default_seed_chunk, make_optimizer
from theorylab.store import Store

SMALL = ["task.p=13", "model.d_model=16", "model.d_head=4", "model.d_mlp=32", "train.steps=12",
         "train.eval_every=4", "train.stepper=stacked"]


def _cfgs(extra=(), seeds=(0, 1, 2)):
    return [build_run_config("grokking", SMALL + list(extra), seed=s) for s in seeds]


# --------------------------------------------------------------------------- identity


def test_compile_is_part_of_the_identity_only_when_on():
    eager = build_run_config("modular", seed=0)
    on = build_run_config("modular", ["train.compile=true"], seed=0)
    assert "compile" not in eager.to_dict()["train"]  # eager runs keep the dict they had before the field
    assert on.to_dict()["train"]["compile"] is True and on.run_id() != eager.run_id()


def test_compile_uses_torch_fused_optimizers():
    for opt in ("adamw", "adam", "sgd"):
        tc = build_run_config("modular", [f"train.optimizer={opt}", "train.compile=true"], seed=0).train
        assert make_optimizer(tc, [torch.nn.Parameter(torch.zeros(3))]).param_groups[0]["fused"] is True
        eager = build_run_config("modular", [f"train.optimizer={opt}"], seed=0).train
        assert not make_optimizer(eager, [torch.nn.Parameter(torch.zeros(3))]).param_groups[0].get("fused")


def test_bf16_computes_in_bf16_and_the_loss_in_float32():
    cfg = build_run_config("modular", ["train.dtype=bf16"], seed=0)
    task, model = build(cfg)
    batch = task.train_batch(0, 16)
    with precision("bf16", "cpu"):
        loss, out = task.loss(model, batch)
    assert out.dtype == torch.bfloat16  # the matmuls ran in bf16 ...
    assert loss.dtype == torch.float32  # ... and the cross-entropy in float32 (autocast's float32 list)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float32 master weights
    with torch.no_grad():
        ref = task.loss(model, batch)[0]
    assert float(loss.detach()) == pytest.approx(float(ref), rel=2e-2)  # bf16 keeps 8 bits of mantissa


# --------------------------------------------------------------------------- the measured seed chunk


def test_seed_chunk_from_the_environment(monkeypatch):
    from theorylab.errors import ConfigError

    cpu = torch.device("cpu")
    monkeypatch.delenv("THEORYLAB_SEED_CHUNK")
    assert default_seed_chunk(cpu) == AUTO
    for env, want in (("all", None), ("3", 3), ("auto", AUTO)):
        monkeypatch.setenv("THEORYLAB_SEED_CHUNK", env)
        assert default_seed_chunk(cpu) == want
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv("THEORYLAB_SEED_CHUNK", bad)
        with pytest.raises(ConfigError, match="THEORYLAB_SEED_CHUNK"):
            default_seed_chunk(cpu)


def test_measuring_the_chunk_changes_nothing():
    """The timing passes throw their gradients away: the first step's losses, gradients and the weights are those
    of a stepper told the chunk."""
    cfgs = _cfgs(["train.dtype=float64"])
    built = [build(c) for c in cfgs]
    tasks, models = [t for t, _ in built], [m for _, m in built]

    def stepper(chunk):
        return StackedStepper(cfgs[0], [c.seed for c in cfgs], tasks, models,
                              [make_optimizer(cfgs[0].train, m.parameters()) for m in models], chunk=chunk)

    batches = [t.train_batch(0, None) for t in tasks]
    auto = stepper(AUTO)
    before = [p.detach().clone() for p in auto.params]
    losses, norms = auto.forward_backward(batches, 0)
    assert auto.chunk in auto.measured["candidates"] and auto.measured["candidates"] == [1, 2, 3]
    told = stepper(auto.chunk)
    ref_losses, ref_norms = told.forward_backward(batches, 0)
    assert losses == pytest.approx(ref_losses, rel=1e-12) and norms == pytest.approx(ref_norms, rel=1e-12)
    for a, b, p in zip(auto.params, told.params, before):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-15)
        assert torch.equal(a.detach(), p)


def test_a_measured_chunk_is_recorded_and_reused(tmp_path, monkeypatch):
    import theorylab.runs.steppers as steppers

    monkeypatch.delenv("THEORYLAB_SEED_CHUNK")
    monkeypatch.setattr(steppers, "_CHUNKS", {})
    store = Store(tmp_path)
    cfgs = _cfgs(["train.checkpoint_every=4"])
    first = train_many(cfgs, store, progress=False)
    chunk = store.get_run(first[0].run_id).summary["seed_chunk"]
    assert isinstance(chunk, int) and 1 <= chunk <= 3
    known = json.loads((store.root / "seed_chunks.json").read_text())
    assert list(known.values()) == [chunk]
    # a new process (no chunk in memory) that trains the group again takes the store's chunk without timing
    monkeypatch.setattr(steppers, "_CHUNKS", {})
    monkeypatch.setattr(StackedStepper, "measure_chunk", lambda *a, **k: pytest.fail("measured again"))
    again = train_many(cfgs, store, progress=False, force=True)
    assert [r.metrics for r in again] == [r.metrics for r in first]
    assert store.get_run(again[0].run_id).summary["seed_chunk"] == chunk


# --------------------------------------------------------------------------- agreement with eager float32 (slow)


def test_every_field_is_listed_with_compile_off(cli):
    rc, out, err = cli("tasks", "modular")
    assert rc == 0 and "train.compile" in out and "train.dtype" in out, err


def test_compiling_fails_loudly_instead_of_falling_back_to_eager():
    import torch._dynamo

    from theorylab.runs.steppers import compiled

    compiled(torch.nn.Linear(2, 2), torch.device("cpu"), 3)
    assert torch._dynamo.config.fail_on_recompile_limit_hit is True
    assert torch._dynamo.config.recompile_limit >= 256  # graphs of earlier runs in the process count too


def test_seed_chunk_inputs_are_checked(tmp_path, monkeypatch):
    import theorylab.runs.steppers as steppers
    from theorylab.errors import ConfigError
    from theorylab.runs.steppers import known_chunk, remember_chunk

    for bad in ("²", "٣", "1.5"):
        monkeypatch.setenv("THEORYLAB_SEED_CHUNK", bad)
        with pytest.raises(ConfigError, match="THEORYLAB_SEED_CHUNK"):
            default_seed_chunk(torch.device("cpu"))
    monkeypatch.setenv("THEORYLAB_SEED_CHUNK", "1")
    for bad in ("x", True, 2.5, -1):
        with pytest.raises(ConfigError, match="seed_chunk"):
            train_many(_cfgs(seeds=(0,)), None, progress=False, seed_chunk=bad)
    for good in ("all", "auto"):
        assert train_many(_cfgs(seeds=(0, 1)), None, progress=False, seed_chunk=good)[0].status == "finished"
    # a store file with values no chunk can have, or no JSON at all, is ignored, then repaired
    monkeypatch.setattr(steppers, "_CHUNKS", {})
    path = tmp_path / "seed_chunks.json"
    for content in ('{"k": 0}', '{"k": true}', '{"k": -1}', "garbage{{", ""):
        path.write_text(content)
        steppers._CHUNKS.clear()
        assert known_chunk("k", path) == AUTO
    remember_chunk("k", 2, path)
    steppers._CHUNKS.clear()
    assert known_chunk("k", path) == 2 and json.loads(path.read_text()) == {"k": 2}


def test_the_environment_pins_the_chunk_of_a_resumed_group_too(tmp_path, monkeypatch):
    store = Store(tmp_path)
    cfgs = _cfgs(["train.checkpoint_every=4"])
    monkeypatch.setenv("THEORYLAB_SEED_CHUNK", "3")
    train_many(cfgs, store, progress=False, stop_after=5)
    monkeypatch.setenv("THEORYLAB_SEED_CHUNK", "1")  # pinned: wins over the chunk the checkpoints recorded
    done = train_many(cfgs, store, progress=False)
    assert store.get_run(done[0].run_id).summary["seed_chunk"] == 1
    monkeypatch.delenv("THEORYLAB_SEED_CHUNK")
    cfgs2 = _cfgs(["train.checkpoint_every=4"], seeds=(5, 6, 7))
    monkeypatch.setenv("THEORYLAB_SEED_CHUNK", "3")
    train_many(cfgs2, store, progress=False, stop_after=5)
    monkeypatch.delenv("THEORYLAB_SEED_CHUNK")  # not pinned: the resume takes the recorded chunk, no timing
    monkeypatch.setattr(StackedStepper, "measure_chunk", lambda *a, **k: pytest.fail("measured again"))
    done = train_many(cfgs2, store, progress=False)
    assert store.get_run(done[0].run_id).summary["seed_chunk"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("stepper", ["single", "stacked"])
def test_compiled_step_agrees_with_eager(stepper):
    """The compiled step (torch.compile through AOTAutograd, fused AdamW) follows the eager float32 curve: after
    40 full-batch steps of the modular preset every logged loss is within 1e-3 relative and every accuracy within
    1% of the examples.  The loss difference measured is about 4e-5 (float32 rounding of other kernels, growing
    with the steps); an accuracy moves by whole examples when a near-tie flips (3 of 1,105 measured); a wrong
    gradient or a skipped weight decay moves the loss by far more than 1e-3 in 40 steps."""
    import torch._dynamo

    extra = ["train.steps=40", "train.eval_every=10", f"train.stepper={stepper}"]
    eager = train_many([build_run_config("modular", extra, seed=s) for s in (0, 1)], None, progress=False)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    # the stacked seeds go in one vmapped pass (the GPU's default), which must compile too
    comp = train_many([build_run_config("modular", extra + ["train.compile=true"], seed=s) for s in (0, 1)], None,
                      progress=False, seed_chunk=None if stepper == "stacked" else 0)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # compiled, not silently eager
    assert torch._dynamo.utils.counters["aot_autograd"]["total"] >= 1  # the backward pass too
    for a, b in zip(eager, comp):
        assert b.status == "finished" and a.run_id != b.run_id
        for k, v in a.metrics.items():
            tol = {"abs": 0.01} if k.endswith("accuracy") else {"rel": 1e-3, "abs": 1e-6}
            assert math.isfinite(b.metrics[k]) and b.metrics[k] == pytest.approx(v, **tol), (k, v, b.metrics[k])


@pytest.mark.slow
def test_bf16_grokking_step_tracks_float32():
    """The modular preset (p = 47, the grokking mainline at CPU size) groks at nearly the same step in bf16 as in
    float32: each seed's step to 99% test accuracy within a factor 1.5.  Why 1.5: over seeds 0-3 the float32
    step itself ranges 440-1210 (a factor 2.75; measured when this test was written), so a precision whose
    effect is below 1.5x is smaller than the seed's own.  Measured then: seed 0 1210 -> 1100, seed 1 500 -> 620.
    The mainline itself (p = 113) is compared in docs/speed.md."""
    steps = {}
    for dtype in ("float32", "bf16"):
        res = train_many([build_run_config("modular", [f"train.dtype={dtype}", "train.eval_every=10"], seed=s)
                          for s in (0, 1)], None, progress=False)
        assert all(r.early_stopped for r in res), dtype  # both grokked within the preset's 3,000 steps
        steps[dtype] = [r.step for r in res]
    for f32, b16 in zip(steps["float32"], steps["bf16"]):
        assert 1 / 1.5 <= b16 / f32 <= 1.5, steps


def test_the_loss_of_half_precision_logits_is_float32():
    from theorylab.models.objectives import cross_entropy

    logits = torch.randn(4, 3, 7)
    targets = torch.randint(0, 7, (4, 3))
    for dt in (torch.bfloat16, torch.float16):
        loss = cross_entropy(logits.to(dt), targets)
        assert loss.dtype == torch.float32
        assert float(loss) == pytest.approx(float(cross_entropy(logits.to(dt).float(), targets)), rel=1e-6)
    assert cross_entropy(logits.double(), targets).dtype == torch.float64  # never lowered


def test_a_bad_compile_value_is_one_line_and_exit_2(cli):
    rc, out, err = cli("train", "modular", "train.compile=maybe", "train.steps=2")
    assert rc == 2 and "train.compile" in err and len(err.strip().splitlines()) == 1, err
