"""Devices: the ``--device`` option's resolution, and a CPU-side check that a task's code would run on a
GPU (every tensor it builds follows the batch's or the model's device).

A machine without a GPU cannot run the CUDA path, but the usual faults of task code on a GPU can be
caught on a CPU: a tensor built without ``device=`` (it lands on the CPU) meeting one on the GPU, or
``.numpy()`` called on a GPU tensor.  :func:`audit_devices` runs a task's loss, metrics and the run's
probes with every batch tensor and model parameter marked as living on a *device*; results of operations
on marked tensors stay marked, a factory call given ``device=`` (or ``.to(device)``) makes a marked
tensor, and ``.cpu()`` an unmarked one.  An operation that mixes a marked tensor with an unmarked one of
one or more dimensions (0-dimensional CPU tensors mix with GPU tensors in PyTorch), or ``.numpy()`` on a
marked tensor, raises :class:`DeviceMixingError` naming the operation and where it was called.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from theorylab.errors import TheoryLabError

FACTORIES = {torch.tensor, torch.as_tensor, torch.zeros, torch.ones, torch.full, torch.empty, torch.arange,
             torch.linspace, torch.eye, torch.rand, torch.randn, torch.randint, torch.randperm}


class DeviceMixingError(RuntimeError):
    """Task code that would mix devices on a GPU."""


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA when available, else MPS, else the CPU) as a
    torch device.  Raises TheoryLabError (one line naming ``train.device``) when the device is not
    available on this machine."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TheoryLabError(f"train.device: {name!r} requested but CUDA is not available (use cpu or auto)")
    if name.startswith("cuda:") and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise TheoryLabError(f"train.device: {name!r} requested but only {torch.cuda.device_count()} CUDA "
                             f"device(s) exist")
    if name == "mps" and not mps_available():
        raise TheoryLabError("train.device: 'mps' requested but MPS is not available (use cpu or auto)")
    return torch.device(name)


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def available_devices() -> list[str]:
    """The devices a run can use on this machine: ``cpu``, then ``cuda:N`` for each GPU, then ``mps``."""
    out = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return out + (["mps"] if mps_available() else [])


#: storage dtype of weights, optimizer state and batches per ``train.dtype`` (bf16 keeps float32 master weights)
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bf16": torch.float32}
#: the autocast dtype per ``train.dtype`` (None: no autocast)
AUTOCAST = {"float32": None, "float64": None, "bf16": torch.bfloat16}


def precision(dtype_name: str, device: torch.device | str):
    """The context a forward pass and loss run in for ``train.dtype = dtype_name`` on ``device``: for
    ``bf16``, :func:`torch.autocast` to bfloat16 (matmuls and attention in bf16, reductions and the
    weights in float32; Micikevicius et al. 2018, "Mixed Precision Training", with bf16 needing no loss
    scaling); otherwise a no-op."""
    from contextlib import nullcontext

    cast = AUTOCAST[dtype_name]
    if cast is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=cast)


def _where() -> str:
    """The innermost frame outside torch and this module (the task code that made the call)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/torch/" not in frame.filename and not frame.filename.endswith(("runs/devices.py", "runs/loop.py", "tasks/base.py")):
            return f"{frame.filename}:{frame.lineno} ({frame.line})"
    return "?"


class OnDevice(torch.Tensor):
    """A tensor marked as living on the audited device (see the module docstring)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name == "numpy":
            raise DeviceMixingError(f".numpy() on a tensor on the device (fails on a GPU; use .cpu().numpy()) at "
                                    f"{_where()}")
        leaves = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
        if name not in ("__getitem__", "__setitem__", "index_select", "gather", "take", "to", "cpu", "__repr__",
                        "__format__", "__str__", "size", "dim", "numel", "__len__", "__bool__", "item", "tolist",
                        "__get__", "__set__", "__float__", "__int__", "__index__", "requires_grad_", "detach",
                        "__contains__", "embedding"):
            plain = [x for x in leaves if not isinstance(x, OnDevice) and not isinstance(x, torch.nn.Parameter)
                     and x.dim() > 0]
            if plain and any(isinstance(x, OnDevice) for x in leaves):
                raise DeviceMixingError(f"{name} mixes a tensor on the device with one built on the CPU "
                                        f"(shape {tuple(plain[0].shape)}; build it with device=... or .to(...)) at "
                                        f"{_where()}")
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        if name == "cpu":  # back on the host (a CPU tensor's .cpu() is itself: unmark a view of it)
            return tree_map(lambda x: x.as_subclass(torch.Tensor) if isinstance(x, torch.Tensor) else x, out)
        return tree_map(lambda x: x.as_subclass(OnDevice) if type(x) is torch.Tensor else x, out)


def _targets_device(args: tuple, kwargs: dict) -> bool:
    if "device" in kwargs:
        return True
    return any(isinstance(a, (str, torch.device)) or (isinstance(a, torch.Tensor)) for a in args)


class _Factories(TorchFunctionMode):
    """Factory calls given ``device=`` make marked tensors (they would be built on the device)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in FACTORIES and kwargs.get("device") is not None and type(out) is torch.Tensor:
            return out.as_subclass(OnDevice)
        if func is torch.Tensor.to and _targets_device(args[1:], kwargs) and type(out) is torch.Tensor:
            return out.as_subclass(OnDevice)
        return out


def mark(x: Any) -> Any:
    """Every tensor in ``x`` (a tensor, a Batch, or a pytree of them) marked as on the device."""
    from theorylab.tasks import Batch

    if isinstance(x, Batch):
        return Batch(mark(x.tokens), mark(x.targets), mark(x.inputs), mark(x.mask), mark(x.extras))
    return tree_map(lambda t: t.as_subclass(OnDevice) if isinstance(t, torch.Tensor) else t, x)


class _Call(torch.nn.Module):
    """A task function of (model, batch) as a module, so the model's parameters can be marked."""

    def __init__(self, fn, model: torch.nn.Module):
        super().__init__()
        self.fn, self.model = fn, model

    def forward(self, batch):
        return self.fn(self.model, batch)


@contextmanager
def marking():
    with _Factories():
        yield


def audit_devices(task, model: torch.nn.Module, probes: tuple[str, ...] | list[str] = (), step: int = 0,
                  batch_size: int = 4, eval_rows: int = 64) -> None:
    """Run ``task.loss`` on a training batch and the evaluation (metrics, or the task's own ``evaluate``, and
    ``probes``) with every tensor marked as on the device; raise :class:`DeviceMixingError` where the task's
    code would mix devices or call ``.numpy()`` on a GPU tensor."""
    from theorylab.runs.loop import evaluate_model

    params = {f"model.{n}": p.detach().as_subclass(OnDevice) for n, p in model.named_parameters()}
    batch = mark(task.train_batch(step, batch_size))
    with marking():
        torch.func.functional_call(_Call(lambda m, b: task.loss(m, b)[0], model), params, (batch,))
        torch.func.functional_call(
            _Call(lambda m, _b: evaluate_model(task, m, "cpu", None, eval_rows, probes), model), params, (batch,))


__all__ = ["AUTOCAST", "DTYPES", "DeviceMixingError", "OnDevice", "audit_devices", "available_devices", "mark",
           "precision", "resolve_device"]
