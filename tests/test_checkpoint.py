"""Checkpoints: safetensors round trip, and clear errors for corrupt, truncated or mismatched files."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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


# --------------------------------------------------------------------------- never pickle
# torch.load (even with weights_only) and pickle can run code a crafted file carries; checkpoints are
# safetensors, and no checkpoint code path may unpickle.  Three checks, each shown able to fail:
# every file a run writes parses as safetensors without torch; no source of the checkpoint code paths
# (theorylab/store/, theorylab/runs/) names pickle or torch.load; and save, load and resume work with
# pickle's Unpickler and Pickler, its functions, torch.load and torch.save all raising.

PACKAGE = Path(__file__).resolve().parents[1] / "theorylab"
CHECKPOINT_CODE = sorted((PACKAGE / "store").rglob("*.py")) + sorted((PACKAGE / "runs").rglob("*.py"))
PICKLERS = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "copyreg"}

SAFETENSORS_WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None  # importing torch fails: nothing below may use it
from safetensors import safe_open
for path in sys.argv[1:]:
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
        keys = sorted(f.keys())
        arrays = {k: f.get_tensor(k) for k in keys}
    assert sorted(k for k in header if k != "__metadata__") == keys, path
    assert meta["format"] == "theorylab-checkpoint/1" and int(meta["step"]) >= 0, path
    assert any(k.startswith("model.") for k in keys), path
    print("ok", path, len(arrays))
"""


def pickle_uses(source: str) -> list[str]:
    """Every place a module's source imports a pickler or names torch.load, torch.save or
    torch.serialization (as ``torch.x``, ``from torch import x`` or an alias of torch)."""
    tree = ast.parse(source)
    torch_names = {"torch"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PICKLERS or a.name.startswith("torch.serialization"):
                    found.append(f"line {node.lineno}: import {a.name}")
                if a.name == "torch":
                    torch_names.add(a.asname or "torch")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            names = {a.name for a in node.names}
            if mod.split(".")[0] in PICKLERS or mod.startswith("torch.serialization") or (
                    mod == "torch" and names & {"load", "save", "serialization"}):
                found.append(f"line {node.lineno}: from {mod} import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Attribute) and node.attr in ("load", "save", "serialization"):
            if isinstance(node.value, ast.Name) and node.value.id in torch_names:
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.keyword) and node.arg in ("allow_pickle", "pickle_module"):
            found.append(f"line {node.lineno}: {node.arg}=")
    return found


def test_the_source_scan_finds_every_way_to_pickle():
    planted = {
        "import pickle": 1, "import pickle as pk": 1, "from pickle import Unpickler": 1, "import _pickle": 1,
        "import cloudpickle": 1, "import dill": 1, "from joblib import load": 1,
        "import torch\ntorch.load('x')": 1, "import torch as T\nT.save(1, 'x')": 1,
        "from torch import load": 1, "from torch.serialization import load": 1, "import torch.serialization": 1,
        "import numpy as np\nnp.load('x', allow_pickle=True)": 1,
        "import torch\nfrom safetensors.torch import load_file\nload_file('x')\ntorch.zeros(2)": 0,
    }
    for src, n in planted.items():
        assert len(pickle_uses(src)) == n, src


def test_no_checkpoint_code_path_names_pickle_or_torch_load():
    assert len(CHECKPOINT_CODE) >= 10 and PACKAGE / "store" / "checkpoint.py" in CHECKPOINT_CODE
    assert PACKAGE / "runs" / "loop.py" in CHECKPOINT_CODE
    found = {str(f.relative_to(PACKAGE)): pickle_uses(f.read_text(encoding="utf-8")) for f in CHECKPOINT_CODE}
    assert {f: uses for f, uses in found.items() if uses} == {}


@pytest.fixture()
def no_pickle(monkeypatch):
    """pickle and torch's pickle-based (de)serialisers all raise while the test runs."""
    import pickle

    def boom(*a, **k):
        raise AssertionError("pickle or torch.load/torch.save used")

    class Boom:
        def __init__(self, *a, **k):
            boom()

    for name in ("load", "loads", "dump", "dumps"):
        monkeypatch.setattr(pickle, name, boom)
    monkeypatch.setattr(pickle, "Unpickler", Boom)
    monkeypatch.setattr(pickle, "Pickler", Boom)
    for mod in (torch, torch.serialization):
        monkeypatch.setattr(mod, "load", boom)
        monkeypatch.setattr(mod, "save", boom)


def test_the_runtime_guard_catches_torch_load_and_its_unpickler(tmp_path, monkeypatch):
    """torch.load without weights_only unpickles through pickle.Unpickler (which pickle.load(s) patches
    never see), with weights_only through its own unpickler: the guard patches both ways in."""
    import io
    import pickle

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    real_load = torch.load
    monkeypatch.setattr(pickle, "Unpickler", type("Boom", (), {"__init__": lambda self, *a, **k: 1 / 0}))
    buf.seek(0)
    with pytest.raises(ZeroDivisionError):
        real_load(buf, weights_only=False)  # caught by the Unpickler patch
    monkeypatch.undo()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "load", lambda *a, **k: 1 / 0)
        buf.seek(0)
        with pytest.raises(ZeroDivisionError):
            torch.load(buf, weights_only=True)  # the Unpickler patch misses this one; the torch.load patch not


def test_save_load_and_resume_never_unpickle(tmp_path, no_pickle):
    from theorylab.runs import build_run_config, resume, train, train_many
    from theorylab.store import Store

    m, opt, path = saved(tmp_path)
    m2 = small()
    load_checkpoint(path, m2, torch.optim.AdamW(m2.parameters(), lr=1e-3))
    store = Store(tmp_path / "store")
    base = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.steps=12",
            "train.eval_every=4", "train.checkpoint_every=4", "train.keep_checkpoints=all"]
    cfg = build_run_config("modular", base)
    assert train(cfg, store, progress=False, stop_after=6).status == "stopped"
    assert resume(store, cfg.run_id(), progress=False).status == "finished"
    stacked = [build_run_config("modular", base + ["train.stepper=stacked"], seed=s) for s in (1, 2)]
    train_many(stacked, store, progress=False, stop_after=5)
    assert [r.status for r in train_many(stacked, store, progress=False)] == ["finished", "finished"]
    assert store.load_model(cfg.run_id()) is not None
    series = store.checkpoint_models(cfg.run_id())
    assert [s for s, _ in series][-1] == 12 and all(load() is not None for _, load in series)


def test_every_checkpoint_file_a_run_writes_is_safetensors(tmp_path):
    """Read back without torch (it cannot even be imported there), header first, then every tensor."""
    from theorylab.runs import build_run_config, resume, train, train_many
    from theorylab.store import Store

    store = Store(tmp_path / "store")
    base = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.steps=12",
            "train.eval_every=4", "train.checkpoint_every=4", "train.keep_checkpoints=all"]
    cfg = build_run_config("modular", base)
    train(cfg, store, progress=False, stop_after=6)
    resume(store, cfg.run_id(), progress=False)
    train_many([build_run_config("modular", base + ["train.stepper=stacked"], seed=s) for s in (1, 2)], store,
               progress=False)
    files = sorted(p for p in (store.root / "runs").rglob("*") if p.is_file())
    registered = sorted(Path(a["path"]) for r in store.list_runs() for a in store.artifacts(r.id, "checkpoint"))
    assert files == registered and len(files) >= 9, files  # every file a run left is one of its checkpoints
    r = subprocess.run([sys.executable, "-c", SAFETENSORS_WITHOUT_TORCH, *map(str, files)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("ok ") == len(files)
    pickled = tmp_path / "pickled.safetensors"  # the check can fail: a torch.save file does not parse
    torch.save({"model.w": torch.zeros(2)}, pickled)
    r = subprocess.run([sys.executable, "-c", SAFETENSORS_WITHOUT_TORCH, str(pickled)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0


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
