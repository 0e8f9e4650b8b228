"""The model-size estimator: exact parameter counts without building, and a memory estimate that is rough
but never allocates."""

from __future__ import annotations

import pytest

from theorylab.models import Transformer, TransformerConfig
from theorylab.models.size import (
    TENSOR_OVERHEAD,
    activation_numbers,
    available_memory,
    fmt_bytes,
    param_count,
    param_tensors,
    ram_available,
    training_memory,
)

VARIANTS = [
    {},
    {"bias": False, "attn_only": True},
    {"norm": "rmsnorm", "tied_embeddings": True, "positional": "rotary"},
    {"norm": "none", "d_vocab_out": 3, "position_features": ["frac", "cos_pi"], "positional": "none"},
    {"norm_position": "post", "act": "relu", "d_mlp": 20},
    {"norm_position": "final", "final_norm": True},
    {"final_norm": False, "d_head": 3, "n_heads": 3},
    {"architecture": "encoder", "n_loops": 3},
    {"architecture": "encoder_decoder", "n_decoder_layers": 3},
    {"architecture": "encoder_decoder", "norm": "rmsnorm", "final_norm": False, "bias": False},
    {"d_vocab": None, "input_dim": 5, "d_vocab_out": 1},
    {"n_layers": 0},
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_param_count_matches_the_built_model(variant):
    cfg = TransformerConfig(**{"d_vocab": 11, "n_ctx": 7, "d_model": 8, "n_heads": 2, "n_layers": 2, **variant})
    model = Transformer(cfg)
    params = list(model.parameters())
    assert param_count(cfg) == sum(p.numel() for p in params)
    assert param_tensors(cfg) == len(params)


def test_training_memory_parts():
    cfg = TransformerConfig(d_vocab=11, n_ctx=7, d_model=8, n_heads=2)
    n = param_count(cfg)
    est = training_memory(cfg, rows=4, dtype="float64", optimizer_states=2)
    assert est.params == est.grads == 8 * n and est.optimizer == 16 * n
    assert est.overhead == param_tensors(cfg) * TENSOR_OVERHEAD
    assert est.activations == 8 * activation_numbers(cfg, 4) > 0
    assert est.total == est.params + est.grads + est.optimizer + est.overhead + est.activations
    assert training_memory(cfg, rows=4, optimizer_states=0).optimizer == 0
    # activations grow with the rows, parameters do not
    big = training_memory(cfg, rows=400)
    assert big.activations == 100 * training_memory(cfg, rows=4).activations and big.params == 4 * n


def test_absurd_sizes_are_estimated_at_once():
    huge = [TransformerConfig(d_vocab=114, d_model=10**9, n_heads=1, n_ctx=3),
            TransformerConfig(d_vocab=114, n_layers=10**6, n_ctx=3),
            TransformerConfig(d_vocab=10**12, n_ctx=3),
            TransformerConfig(d_vocab=10, n_ctx=10**9)]
    for cfg in huge:
        assert training_memory(cfg, rows=64).total > 10**12


def test_available_memory_and_formatting():
    ram = ram_available()
    assert ram is None or ram > 0
    got, where = available_memory("cpu")
    assert got == ram or got is None or abs(got - ram) < 2**30
    assert "RAM" in where
    assert fmt_bytes(512) == "512 B" and fmt_bytes(1.5e9) == "1.5 GB" and fmt_bytes(3e18) == "3.0 EB"
    assert fmt_bytes(4e30) == "4.0e+09 ZB"


def test_cuda_devices_report_their_free_memory(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: ((5 + i) * 10**9, 140 * 10**9))
    assert available_memory("cuda") == (5 * 10**9, "cuda:0")
    assert available_memory("cuda:2") == (7 * 10**9, "cuda:2")
    assert available_memory("auto") == (5 * 10**9, "cuda:0")

    def no_device(i):
        raise RuntimeError("invalid device ordinal")

    monkeypatch.setattr(torch.cuda, "mem_get_info", no_device)
    assert available_memory("cuda:7") == (None, "cuda:7")  # the loop reports a missing device itself
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert available_memory("cuda") == (None, "cuda")
    assert available_memory("auto")[1] == available_memory("cpu")[1] == "this machine's RAM"


def _numbers(batch) -> int:
    parts = [batch.tokens, batch.targets, batch.inputs, batch.mask, *batch.extras.values()]
    return sum(int(t.numel()) for t in parts if t is not None)


def test_task_data_estimates_bound_the_data_each_preset_holds():
    from theorylab.runs import build_run_config
    from theorylab.runs.config import preset_names
    from theorylab.tasks import make_task

    for name in preset_names():
        cfg = build_run_config(name)
        task = make_task(cfg.task, 0)
        held = sum(_numbers(b) for b in task.eval_sets().values())
        if task.train_set is not None:
            held += _numbers(task.train_set)
        assert held <= cfg.task.data_numbers(), name
