"""Checkpoints in safetensors: model, optimizer state, RNG state and step; never pickle.

A checkpoint file holds tensors ``model.<param>`` and ``optim.<i>.<state>`` and a
metadata header (JSON strings) with the step, the optimizer's class and param
groups, the caller's ``extra`` (the trainer puts the run id, the wall time so far
and the RNG state there) and a SHA-256 digest of every tensor's bytes.  The
trainer draws every random number of step ``t`` from generators derived from
(seed, ``t``), so its RNG state is exactly (seed, step) and is recorded as such.  Files are written to a temporary name and
renamed into place, so a kill mid-write never leaves a half-written checkpoint.
Loading checks the digest, the keys and the shapes and raises one
:class:`~theorylab.errors.CheckpointError` line for any problem; a file that cannot be written
(a read-only directory, a full disk) raises one :class:`~theorylab.errors.StoreError` line.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from theorylab.errors import CheckpointError, StoreError

FORMAT = "theorylab-checkpoint/1"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    step: int, extra: dict[str, Any] | None = None) -> Path:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v.detach().contiguous().cpu()
                                        for k, v in model.state_dict().items()}
    meta: dict[str, str] = {"format": FORMAT, "step": str(int(step))}
    if optimizer is not None:
        sd = optimizer.state_dict()
        for idx, state in sd["state"].items():
            for key, val in state.items():
                t = val if torch.is_tensor(val) else torch.tensor(val)
                tensors[f"optim.{idx}.{key}"] = t.detach().contiguous().cpu()
        meta["optim_param_groups"] = json.dumps(sd["param_groups"])
        meta["optim_class"] = type(optimizer).__name__
    if extra:
        meta["extra"] = json.dumps(extra, sort_keys=True)
    meta["digest"] = _digest(tensors)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata=meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise StoreError(f"checkpoint {str(path)!r} cannot be written: {_write_problem(path, err)}") from None
    return path


def _write_problem(path: Path, err: Exception) -> str:
    """Why a file cannot be written there, in words: a file where a directory must be, a read-only
    directory, a full disk, or the error's own first line."""
    import errno

    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    code = getattr(err, "errno", None)
    text = (str(err).splitlines() or [type(err).__name__])[0]
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, not a directory"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or "Permission denied" in text or "Read-only" in text:
        return f"{str(existing)!r} is read-only ({getattr(err, 'strerror', None) or text})"
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text:
        return f"the disk is full ({getattr(err, 'strerror', None) or text})"
    return getattr(err, "strerror", None) or text


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata, verified; raises CheckpointError on any problem."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for bad headers and sizes
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or truncated: {msg}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {str(path)!r}: not a theorylab checkpoint (format {meta.get('format')!r})")
    if meta.get("digest") != _digest(tensors):
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: tensor data does not match its digest")
    try:
        int(meta["step"])
        for key in ("extra", "optim_param_groups"):
            if key in meta:
                json.loads(meta[key])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: bad metadata ({type(err).__name__})") from None
    return tensors, meta


def load_checkpoint(path: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Restore model (and optimizer) in place; return ``{"step": ..., "extra": ...}``."""
    tensors, meta = read_checkpoint(path)
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(model_sd)), sorted(set(model_sd) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for k, v in model_sd.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"checkpoint {str(path)!r} does not match the model: {k} has shape "
                                  f"{tuple(v.shape)}, the model {tuple(own[k].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in model_sd.items()})
    if optimizer is not None:
        if meta.get("optim_class") != type(optimizer).__name__:
            raise CheckpointError(f"checkpoint {str(path)!r}: optimizer {meta.get('optim_class')!r} but the run "
                                  f"uses {type(optimizer).__name__}")
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, key = k.split(".", 2)
                state.setdefault(int(idx), {})[key] = v
        try:
            groups = json.loads(meta["optim_param_groups"])
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            msg = (str(err).splitlines() or [type(err).__name__])[0]
            raise CheckpointError(f"checkpoint {str(path)!r}: optimizer state does not match the run: {msg}") from None
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for p in params:
            for key, val in optimizer.state.get(p, {}).items():
                if torch.is_tensor(val) and val.dim() > 0 and tuple(val.shape) != tuple(p.shape):
                    raise CheckpointError(f"checkpoint {str(path)!r}: optimizer state {key!r} has shape "
                                          f"{tuple(val.shape)}, its parameter {tuple(p.shape)}")
    extra = json.loads(meta["extra"]) if "extra" in meta else {}
    return {"step": int(meta["step"]), "extra": extra}
