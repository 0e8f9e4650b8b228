"""Checkpoints: safetensors round trip, and clear errors for corrupt, truncated or mismatched files."""

from __future__ import annotations

import pytest
import torch

from theorylab.errors import CheckpointError
from theorylab.models import TransformerConfig, build_model
from theorylab.store.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint


def small(d_model=16):
    return build_model(TransformerConfig(d_vocab=10, n_ctx=8, d_model=d_model, n_heads=2, n_layers=1), seed=0)


def saved(tmp_path):
    m = small()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.randint(0, 10, (2, 5))).sum().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.safetensors", m, opt, step=7, extra={"note": "x"})
    return m, opt, path


def test_round_trip(tmp_path):
    m, opt, path = saved(tmp_path)
    m2 = small()
    opt2 = torch.optim.AdamW(m2.parameters(), lr=1e-3)
    info = load_checkpoint(path, m2, opt2)
    assert info["step"] == 7 and info["extra"] == {"note": "x"}
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert set(s1) == set(s2)
    for k in s1:
        for key in s1[k]:
            assert torch.equal(torch.as_tensor(s1[k][key]), torch.as_tensor(s2[k][key]))


def test_no_temp_files_left(tmp_path):
    saved(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]


def test_truncated(tmp_path):
    _, _, path = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_checkpoint(path)


def test_flipped_bytes_fail_the_digest(tmp_path):
    _, _, path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        read_checkpoint(path)


def test_garbage_and_missing(tmp_path):
    p = tmp_path / "junk.safetensors"
    p.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        read_checkpoint(p)
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "absent.safetensors")


def test_mismatched_model(tmp_path):
    _, _, path = saved(tmp_path)
    with pytest.raises(CheckpointError, match="does not match the model"):
        load_checkpoint(path, small(d_model=32))


def test_pickle_is_never_used(tmp_path, monkeypatch):
    import pickle

    _, _, path = saved(tmp_path)

    def boom(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    load_checkpoint(path, small())


def test_wrong_optimizer_is_refused(tmp_path):
    _, _, path = saved(tmp_path)
    m = small()
    with pytest.raises(CheckpointError, match="optimizer 'AdamW' but the run uses SGD"):
        load_checkpoint(path, m, torch.optim.SGD(m.parameters(), lr=0.1))


def test_optimizer_state_of_another_shape_is_refused(tmp_path):
    _, _, path = saved(tmp_path)
    m = small()
    # same parameter names and shapes, but the optimizer covers only some of them
    opt = torch.optim.AdamW(list(m.parameters())[:2], lr=1e-3)
    with pytest.raises(CheckpointError, match="optimizer state"):
        load_checkpoint(path, m, opt)


def test_not_a_theorylab_checkpoint(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(p), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a theorylab checkpoint"):
        read_checkpoint(p)


def test_errors_are_one_line(tmp_path):
    _, _, path = saved(tmp_path)
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
