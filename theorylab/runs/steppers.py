"""Steppers: how the training loop computes one optimizer step for a group of runs.

A group is one or more runs whose configs differ only in the seed.  The loop
(:mod:`theorylab.runs.loop`) owns everything else (batches, evaluation, divergence,
checkpoints, the store); a stepper only turns the members' batches into gradients and
applies the optimizer:

* :class:`SingleStepper` (``train.stepper=single``): each member is its own
  :class:`~theorylab.models.Transformer` with its own optimizer;
* :class:`StackedStepper` (``train.stepper=stacked``): every parameter of the members is
  stacked into one tensor with a leading seed axis ``[S, ...]`` and one optimizer updates the
  stack (AdamW, Adam and SGD are elementwise, so this is the same algorithm per seed).  The
  forward pass is the same ``Transformer`` code run over a seed's slice of the stack
  (:func:`torch.func.functional_call`), vectorised over ``chunk`` seeds at a time with
  :func:`torch.func.vmap` when the members' batches have one shape (``chunk=1``: one seed
  after another, the fastest on a CPU).  No operation mixes seeds, so each seed gets exactly
  its own gradient; results agree with the single stepper to float rounding, not bit for bit,
  which is why the stepper is part of a run's identity.

Both clip each member's gradient by its own global norm (``train.grad_clip``) and report that
norm, and both draw a member's dropout from a generator derived from (seed, step), so a run is
reproducible step by step.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from theorylab.errors import ConfigError
from theorylab.runs.devices import precision
from theorylab.tasks import Batch, Task
from theorylab.tasks.base import torch_generator

STEPPERS = ("single", "stacked")


def make_optimizer(tc: Any, params) -> torch.optim.Optimizer:
    """The optimizer of a :class:`~theorylab.runs.config.TrainConfig` over ``params``."""
    params = list(params)
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps, weight_decay=tc.weight_decay)
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps, weight_decay=tc.weight_decay)
    return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)


def clip_grads_(grads: list[torch.Tensor], clip: float | None) -> float:
    """The global L2 norm of ``grads`` (float; nan or inf when a gradient is not finite); when ``clip``
    is given, scale them in place by ``min(1, clip / (norm + 1e-6))`` as
    :func:`torch.nn.utils.clip_grad_norm_` does."""
    if not grads:
        return 0.0
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if clip is not None:
        coef = torch.clamp(clip / (norm + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef)
    return float(norm)


class SingleStepper:
    """Each member trains its own model with its own optimizer."""

    name = "single"

    def __init__(self, cfg: Any, seeds: list[int], tasks: list[Task], models: list[torch.nn.Module],
                 optimizers: list[torch.optim.Optimizer], **_: Any):
        self.tc, self.dropout = cfg.train, cfg.model.dropout > 0
        self.seeds, self.tasks, self.models, self.opts = list(seeds), list(tasks), list(models), list(optimizers)

    def forward_backward(self, batches: list[Batch], step: int) -> tuple[list[float], list[float]]:
        """Fill each member's gradients (clipped); return each member's loss and gradient norm.
        A member whose loss is not finite gets no backward pass (its norm is nan)."""
        losses, norms = [], []
        for seed, task, model, opt, batch in zip(self.seeds, self.tasks, self.models, self.opts, batches):
            opt.zero_grad(set_to_none=True)
            with _dropout_rng(self.dropout, seed, step, batch), precision(self.tc.dtype, _device_of(batch)):
                loss = task.loss(model, batch)[0]
            value = float(loss.detach())
            losses.append(value)
            if not math.isfinite(value):
                norms.append(math.nan)
                continue
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norms.append(clip_grads_(grads, self.tc.grad_clip))
        return losses, norms

    def apply(self, lr: float) -> None:
        for opt in self.opts:
            for g in opt.param_groups:
                g["lr"] = lr
            opt.step()

    def drop(self, members: list[int]) -> None:
        keep = [k for k in range(len(self.models)) if k not in members]
        for attr in ("seeds", "tasks", "models", "opts"):
            setattr(self, attr, [getattr(self, attr)[k] for k in keep])

    def model(self, k: int) -> torch.nn.Module:
        return self.models[k]

    def optimizer(self, k: int) -> torch.optim.Optimizer:
        return self.opts[k]


class _TaskLoss(torch.nn.Module):
    """``task.loss(model, batch)`` as a module, so that :func:`torch.func.functional_call` can run it with
    a seed's parameters in place of the model's own."""

    def __init__(self, task: Task, model: torch.nn.Module):
        super().__init__()
        self.task, self.model = task, model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.task.loss(self.model, batch)[0]


def _stack_batches(batches: list[Batch]) -> dict[str, Any]:
    """The members' batches as one dict of tensors with a leading seed axis (what vmap maps over)."""
    def st(xs: list[torch.Tensor | None]) -> torch.Tensor | None:
        return None if xs[0] is None else torch.stack(xs)

    out = {k: st([getattr(b, k) for b in batches]) for k in ("tokens", "targets", "inputs", "mask")}
    out = {k: v for k, v in out.items() if v is not None}  # vmap maps tensors only; Batch fills in None
    out["extras"] = {k: torch.stack([b.extras[k] for b in batches]) for k in batches[0].extras}
    return out


def _same_shapes(batches: list[Batch]) -> bool:
    def shapes(b: Batch):
        return [None if x is None else tuple(x.shape) for x in (b.tokens, b.targets, b.inputs, b.mask)] + \
               sorted((k, tuple(v.shape)) for k, v in b.extras.items())

    first = shapes(batches[0])
    return all(shapes(b) == first for b in batches[1:])


class StackedStepper:
    """Every member's parameters stacked on a leading seed axis, one optimizer over the stack."""

    name = "stacked"

    def __init__(self, cfg: Any, seeds: list[int], tasks: list[Task], models: list[torch.nn.Module],
                 optimizers: list[torch.optim.Optimizer], chunk: int | None = None, **_: Any):
        if chunk is not None and chunk < 1:
            raise ConfigError(f"seed_chunk: must be None (all seeds at once) or >= 1 (got {chunk})")
        self.tc, self.dropout = cfg.train, cfg.model.dropout > 0
        self.chunk = chunk
        self.seeds, self.tasks, self.models, self.opts = list(seeds), list(tasks), list(models), list(optimizers)
        self.names = [n for n, _ in models[0].named_parameters()]
        named = [dict(m.named_parameters()) for m in models]
        self.params = [torch.stack([n[k].detach() for n in named]).contiguous().requires_grad_(True)
                       for k in self.names]
        self.opt = make_optimizer(self.tc, self.params)
        # stack the members' optimizer states (a resumed group), parameter by parameter
        for i, t in enumerate(self.params):
            states = [o.state.get(named[j][self.names[i]]) for j, o in enumerate(optimizers)]
            if all(states):
                self.opt.state[t] = {key: (torch.stack([st[key] for st in states]) if torch.is_tensor(v) and v.dim()
                                           else (v.clone() if torch.is_tensor(v) else v))
                                     for key, v in states[0].items()}
        self._loss_modules = [_TaskLoss(task, models[0]) for task in tasks]
        self.vmapped = False  # whether the last step ran seeds through vmap

    # ----------------------------------------------------------------- the step
    def forward_backward(self, batches: list[Batch], step: int) -> tuple[list[float], list[float]]:
        S = len(self.seeds)
        for t in self.params:
            if t.grad is None:
                t.grad = torch.zeros_like(t)
            else:
                t.grad.zero_()
        losses = [math.nan] * S
        size = S if self.chunk is None else min(self.chunk, S)
        self.vmapped = size > 1 and not self.dropout and _same_shapes(batches)
        if not self.vmapped:
            size = 1
        for a in range(0, S, size):
            members = list(range(a, min(a + size, S)))
            views = [t.detach()[a:a + len(members)].requires_grad_(True) for t in self.params]
            if self.vmapped:
                part = self._vmapped_losses(views, [batches[k] for k in members])
            else:
                k = members[0]
                params = {f"model.{n}": v[0] for n, v in zip(self.names, views)}
                with _dropout_rng(self.dropout, self.seeds[k], step, batches[k]), \
                        precision(self.tc.dtype, _device_of(batches[k])):
                    part = torch.func.functional_call(self._loss_modules[k], params, (batches[k],)).reshape(1)
            ok = torch.isfinite(part.detach())
            if bool(ok.any()):
                part[ok].sum().backward()
            for t, v in zip(self.params, views):
                if v.grad is not None:
                    t.grad[a:a + len(members)].copy_(v.grad)
            for j, k in enumerate(members):
                losses[k] = float(part[j].detach())
        norms = []
        for k in range(S):
            if not math.isfinite(losses[k]):
                norms.append(math.nan)
                continue
            norms.append(clip_grads_([t.grad[k] for t in self.params], self.tc.grad_clip))
        return losses, norms

    def _vmapped_losses(self, views: list[torch.Tensor], batches: list[Batch]) -> torch.Tensor:
        from theorylab.models.transformer import trusted_inputs

        for b in batches:  # the token-range check the model skips under vmap
            if b.tokens is not None and b.tokens.numel():
                lo, hi = int(b.tokens.min()), int(b.tokens.max())
                V = self.models[0].cfg.d_vocab
                if lo < 0 or (V is not None and hi >= V):
                    raise ConfigError(f"token ids must lie in [0, {V}) (got {lo}..{hi})")
        stacked = _stack_batches(batches)
        module = self._loss_modules[0]

        def one(params: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
            return torch.func.functional_call(module, params, (Batch(**batch),))

        params = {f"model.{n}": v for n, v in zip(self.names, views)}
        with trusted_inputs(), precision(self.tc.dtype, _device_of(batches[0])):
            return torch.func.vmap(one, randomness="error")(params, stacked)

    def apply(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()

    # ----------------------------------------------------------------- members
    def drop(self, members: list[int]) -> None:
        keep = [k for k in range(len(self.seeds)) if k not in members]
        for attr in ("seeds", "tasks", "models", "opts", "_loss_modules"):
            setattr(self, attr, [getattr(self, attr)[k] for k in keep])
        if not keep:
            return
        device = self.params[0].device
        idx = torch.tensor(keep, device=device)
        new = [t.detach().index_select(0, idx).contiguous().requires_grad_(True) for t in self.params]
        opt = make_optimizer(self.tc, new)
        for old_t, new_t in zip(self.params, new):
            st = self.opt.state.get(old_t)
            if st:
                opt.state[new_t] = {key: (v.index_select(0, idx).contiguous() if torch.is_tensor(v) and v.dim() else v)
                                    for key, v in st.items()}
        for g_new, g in zip(opt.param_groups, self.opt.param_groups):
            g_new["lr"] = g["lr"]
        self.params, self.opt = new, opt
        for lm in self._loss_modules:
            lm.model = self.models[0]

    @torch.no_grad()
    def model(self, k: int) -> torch.nn.Module:
        """Member ``k``'s own model, holding its current weights (copied out of the stack)."""
        m = self.models[k]
        params = dict(m.named_parameters())
        for n, t in zip(self.names, self.params):
            params[n].copy_(t[k])
        return m

    def optimizer(self, k: int) -> torch.optim.Optimizer:
        """Member ``k``'s optimizer state as a single-model optimizer (what a checkpoint stores)."""
        m = self.model(k)
        opt = self.opts[k]
        opt.state.clear()
        for p, t in zip(m.parameters(), self.params):
            st = self.opt.state.get(t)
            if st:
                opt.state[p] = {key: (v[k].clone() if torch.is_tensor(v) and v.dim() else
                                      (v.clone() if torch.is_tensor(v) else v)) for key, v in st.items()}
        for g_s, g in zip(opt.param_groups, self.opt.param_groups):
            g_s["lr"] = g["lr"]
        return opt


def _device_of(batch: Batch) -> torch.device:
    x = batch.tokens if batch.tokens is not None else batch.inputs
    return x.device if x is not None else torch.device("cpu")


class _dropout_rng:
    """Fork the RNG and seed it from (seed, step) while a dropout model runs (a no-op otherwise)."""

    def __init__(self, active: bool, seed: int, step: int, batch: Batch):
        self.active, self.seed, self.step, self.batch = active, seed, step, batch

    def __enter__(self):
        if self.active:
            x = self.batch.tokens if self.batch.tokens is not None else self.batch.inputs
            self._fork = torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else [])
            self._fork.__enter__()
            torch.manual_seed(int(torch_generator(self.seed, 2, self.step).initial_seed()))

    def __exit__(self, *exc):
        if self.active:
            return self._fork.__exit__(*exc)
        return False


def make_stepper(kind: str, cfg: Any, seeds: list[int], tasks: list[Task], models: list[torch.nn.Module],
                 optimizers: list[torch.optim.Optimizer], chunk: int | None = None):
    """The stepper ``kind`` (``single`` or ``stacked``) over a group's members."""
    if kind == "single":
        return SingleStepper(cfg, seeds, tasks, models, optimizers)
    if kind == "stacked":
        return StackedStepper(cfg, seeds, tasks, models, optimizers, chunk=chunk)
    raise ConfigError(f"train.stepper: {kind!r}; allowed: {', '.join(STEPPERS)}")


def default_seed_chunk(device: torch.device) -> int | None:
    """Seeds per forward/backward pass of the stacked stepper: all of them on a GPU, one at a time on a
    CPU (where a batched matmul is a loop over the batch anyway and S-times larger activations fall
    out of cache: measured on the grokking mainline, 8 seeds in one pass ran about 1.7x slower than 8
    passes of one seed)."""
    return None if device.type == "cuda" else 1


__all__ = ["STEPPERS", "SingleStepper", "StackedStepper", "make_stepper", "make_optimizer", "clip_grads_",
           "default_seed_chunk"]
