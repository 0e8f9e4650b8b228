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
from pathlib import Path
from typing import Any

import torch

from theorylab.errors import ConfigError
from theorylab.runs.devices import precision
from theorylab.tasks import Batch, Task
from theorylab.tasks.base import torch_generator

STEPPERS = ("single", "stacked")


def make_optimizer(tc: Any, params) -> torch.optim.Optimizer:
    """The optimizer of a :class:`~theorylab.runs.config.TrainConfig` over ``params``.  With ``train.compile``
    it is torch's fused kernel (``fused=True``: one kernel per parameter group instead of a loop of
    elementwise ops; the same update, rounded differently), else torch's default implementation."""
    params = list(params)
    fused = {"fused": True} if getattr(tc, "compile", False) else {}
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps, weight_decay=tc.weight_decay,
                                 **fused)
    if tc.optimizer == "adam":
        return torch.optim.Adam(params, lr=tc.lr, betas=tuple(tc.betas), eps=tc.eps, weight_decay=tc.weight_decay,
                                **fused)
    return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay, **fused)


def compiled(fn: Any, device: torch.device, members: int) -> Any:
    """``fn`` (a module or function computing a loss) compiled with :func:`torch.compile` for ``train.compile``.

    The forward pass and loss are traced by TorchDynamo and the backward pass is compiled with them by
    AOTAutograd, so ``loss.backward()`` on the result runs compiled kernels.  On a GPU the mode is
    ``reduce-overhead``: the step's kernels are replayed as CUDA graphs, which removes the launch cost of
    small steps (fixed-shape tasks record one graph; a new shape records another).  Compiled dropout draws
    from torch's generator as the eager pass does (``fallback_random``), so a (seed, step) keeps its mask.
    TorchDynamo compiles one graph per model object; the recompile limits are raised (at least the group's
    ``members``) and hitting one raises, so that no run silently falls back to eager code.  These are
    process-wide torch settings (``torch._inductor.config.fallback_random``, ``torch._dynamo.config``'s
    recompile limits and ``fail_on_recompile_limit_hit``), set the first time a step is compiled."""
    import torch._dynamo
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    # Graphs accumulate per code object over every run of the process (a notebook, an in-process sweep), so the
    # limits are raised well past what one group needs, and reaching them raises instead of running on eagerly:
    # a run with train.compile is compiled, or it fails.
    limit = max(256, 2 * members + 2)  # each member may need a static and a dynamic-shape graph
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit,
                                                           16 * limit)
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    return torch.compile(fn, mode="reduce-overhead" if device.type == "cuda" else None)


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
        self.seeds, self.models, self.opts = list(seeds), list(models), list(optimizers)
        self.losses = [_TaskLoss(task, model) for task, model in zip(tasks, self.models)]
        if self.tc.compile:
            device = next(models[0].parameters()).device
            self.losses = [compiled(f, device, len(self.losses)) for f in self.losses]

    def forward_backward(self, batches: list[Batch], step: int) -> tuple[list[float], list[float]]:
        """Fill each member's gradients (clipped); return each member's loss and gradient norm.
        A member whose loss is not finite gets no backward pass (its norm is nan)."""
        losses, norms = [], []
        if self.tc.compile:  # the compiled forward skips the model's range check (a value read): done here
            check_tokens(batches, self.models[0])
        for seed, loss_of, model, opt, batch in zip(self.seeds, self.losses, self.models, self.opts, batches):
            opt.zero_grad(set_to_none=True)
            with _dropout_rng(self.dropout, seed, step, batch), precision(self.tc.dtype, _device_of(batch)):
                loss = loss_of(batch)
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
        for attr in ("seeds", "models", "opts", "losses"):
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
        if chunk is not None and chunk != AUTO and (not isinstance(chunk, int) or chunk < 1):
            raise ConfigError(f"seed_chunk: must be None (all seeds at once), {AUTO!r} (measured) or >= 1 "
                              f"(got {chunk!r})")
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
        self.used: int | None = None  # seeds per pass of the last step
        self._one, self._many = _one_seed, _many_seeds
        if self.tc.compile:
            device = self.params[0].device
            # one graph per member for one seed at a time, one per chunk size timed or used for vmapped passes
            self._one, self._many = compiled(_one_seed, device, len(seeds)), compiled(_many_seeds, device, len(seeds))

    # ----------------------------------------------------------------- the step
    def forward_backward(self, batches: list[Batch], step: int) -> tuple[list[float], list[float]]:
        S = len(self.seeds)
        for t in self.params:
            if t.grad is None:
                t.grad = torch.zeros_like(t)
            else:
                t.grad.zero_()
        losses = [math.nan] * S
        vmappable = not self.dropout and _same_shapes(batches)
        if self.chunk == AUTO:
            self.chunk = self.measure_chunk(batches, step) if vmappable and S > 1 else 1
        size = S if self.chunk is None else min(self.chunk, S)
        self.vmapped = size > 1 and vmappable
        if not self.vmapped:
            size = 1
        self.used = size  # the seeds per pass this step actually took (what the run's summary records)
        for a in range(0, S, size):
            members = list(range(a, min(a + size, S)))
            part, views = self._pass(members, batches, step)
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

    def _pass(self, members: list[int], batches: list[Batch], step: int
              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The losses ``[len(members)]`` of consecutive ``members`` in one pass (vmapped when more than one), and
        the views of the stack they were computed from (their ``.grad`` holds the gradients after backward)."""
        a = members[0]
        views = [t.detach()[a:a + len(members)].requires_grad_(True) for t in self.params]
        if len(members) > 1:
            return self._vmapped_losses(views, [batches[k] for k in members]), views
        params = {f"model.{n}": v[0] for n, v in zip(self.names, views)}
        if self.tc.compile:
            check_tokens([batches[a]], self.models[0])
        with _dropout_rng(self.dropout, self.seeds[a], step, batches[a]), \
                precision(self.tc.dtype, _device_of(batches[a])):
            return self._one(self._loss_modules[a], params, batches[a]).reshape(1), views

    def measure_chunk(self, batches: list[Batch], step: int, repeats: int = 3) -> int:
        """The seeds per pass that train this group fastest on this machine, measured: for each candidate ``c``
        (1, 2, 4, ... up to the group's size, and the size itself) the forward and backward pass of the first
        ``c`` members is timed ``repeats`` times after a warm-up, and the candidate with the least time per seed
        (best of its repeats) wins.  Nothing is kept: the gradients are thrown away and no state changes.  On a
        CPU one seed at a time usually wins (a batched matmul is a loop over the batch there, and S-times
        larger activations leave the cache); on a GPU a pass over every seed does.  Candidates count at most
        the group's size; the choice is fixed for the rest of the training (a different chunk rounds
        differently) and recorded in the run's summary as ``seed_chunk``."""
        import time

        S = len(self.seeds)
        candidates = sorted({c for c in (1 << i for i in range(S.bit_length())) if c <= S} | {S})
        best, best_time = 1, math.inf
        for c in candidates:
            per_seed = math.inf
            for r in range(repeats + 1):
                t0 = time.perf_counter()
                part, _ = self._pass(list(range(c)), batches, step)
                ok = torch.isfinite(part.detach())
                if bool(ok.any()):
                    part[ok].sum().backward()
                if self.params[0].device.type == "cuda":
                    torch.cuda.synchronize()
                if r:  # the first pass warms up (and compiles, with train.compile)
                    per_seed = min(per_seed, (time.perf_counter() - t0) / c)
            if per_seed < best_time * 0.9:  # a larger chunk must win by 10%: clearly, not by timing noise
                best, best_time = c, per_seed
        self.measured = {"candidates": candidates, "chunk": best}
        return best

    def _vmapped_losses(self, views: list[torch.Tensor], batches: list[Batch]) -> torch.Tensor:
        from theorylab.models.transformer import trusted_inputs

        check_tokens(batches, self.models[0])  # the token-range check the model skips under vmap
        stacked = _stack_batches(batches)
        params = {f"model.{n}": v for n, v in zip(self.names, views)}
        with trusted_inputs(), precision(self.tc.dtype, _device_of(batches[0])):
            return self._many(self._loss_modules[0], params, stacked)

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


def check_tokens(batches: list[Batch], model: torch.nn.Module) -> None:
    """Raise :class:`~theorylab.errors.ConfigError` when a batch's token ids leave ``[0, d_vocab)`` of ``model``:
    the check the model makes itself in eager calls, made once here for the paths where it cannot (under
    :func:`torch.func.vmap`, and under :func:`torch.compile`, where reading a value would break the graph)."""
    if getattr(model.cfg, "d_vocab", None) is None:
        return
    for b in batches:
        if b.tokens is not None and b.tokens.numel() and not b.tokens.is_floating_point():
            model.check_token_ids(b.tokens)


def _one_seed(module: torch.nn.Module, params: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
    """One seed's loss: ``module`` (a :class:`_TaskLoss`) run with ``params`` in place of its model's own."""
    return torch.func.functional_call(module, params, (batch,))


def _many_seeds(module: torch.nn.Module, params: dict[str, torch.Tensor], stacked: dict[str, Any]) -> torch.Tensor:
    """The losses ``[S]`` of S seeds at once: ``module`` vmapped over the leading seed axis of ``params`` (each
    ``[S, ...]``) and of the stacked batch (:func:`_stack_batches`)."""
    def one(p: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        return torch.func.functional_call(module, p, (Batch(**batch),))

    return torch.func.vmap(one, randomness="error")(params, stacked)


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


#: ``seed_chunk`` that asks the stacked stepper to measure the fastest chunk on its first step
AUTO = "auto"
_CHUNKS: dict[str, int | None] = {}  # measured chunks of this process, by chunk_key


def chunk_key(cfg: Any, members: int, device: torch.device) -> str:
    """What a measured seed chunk depends on: the group's config without its seed, the number of members, the
    device and torch's CPU threads (a hash)."""
    import hashlib
    import json

    d = cfg.to_dict()
    for k in ("seed", "tags"):
        d.pop(k, None)
    d["train"].pop("device", None)
    blob = json.dumps({"config": d, "members": members, "device": str(device), "threads": torch.get_num_threads()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def known_chunk(key: str, path: Any = None) -> int | str | None:
    """The chunk measured before for ``key`` in this process, else in the JSON file ``path`` (a store's
    ``seed_chunks.json``), else :data:`AUTO` (measure it).  A group trained again on the same machine thus
    takes the same chunk, and rounds the same way, however its first timing would have come out."""
    if key in _CHUNKS:
        return _CHUNKS[key]
    if path is not None:
        import json

        try:
            known = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        if isinstance(known, dict) and key in known and valid_chunk(known[key]):
            _CHUNKS[key] = known[key]
            return known[key]
    return AUTO


def valid_chunk(c: Any) -> bool:
    """A chunk as the store records it: a positive int (not a bool), or None for all seeds in one pass."""
    return c is None or (isinstance(c, int) and not isinstance(c, bool) and c >= 1)


def remember_chunk(key: str, chunk: int | None, path: Any = None) -> None:
    """Record a measured chunk for ``key`` in this process and, when given, in the JSON file ``path``
    (rewritten atomically; a file that cannot be written is left alone: the chunk is then re-measured by the
    next process)."""
    import json
    import os

    _CHUNKS[key] = chunk
    if path is None:
        return
    path = Path(path)
    try:
        try:
            known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except ValueError:  # an unreadable file is replaced: it would otherwise never record a chunk again
            known = {}
        known = {k: v for k, v in known.items() if valid_chunk(v)} if isinstance(known, dict) else {}
        known[key] = chunk
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def default_seed_chunk(device: torch.device) -> int | str | None:
    """Seeds per forward/backward pass of the stacked stepper: ``THEORYLAB_SEED_CHUNK`` when set (a positive
    integer, ``all`` or ``auto``); else all of them on a GPU, where one pass over every seed removes launches;
    elsewhere measured on the group's first step (:meth:`StackedStepper.measure_chunk`; on the 2-core CPU of
    the benchmarks one seed at a time won for the presets, 8 grokking seeds in one pass ran 1.6x slower than 8
    passes of one, while tiny models went faster three at a time).

    Raises :class:`~theorylab.errors.ConfigError` for a malformed ``THEORYLAB_SEED_CHUNK``."""
    pinned = env_seed_chunk()
    if pinned is not _UNSET:
        return pinned
    return None if device.type == "cuda" else AUTO


_UNSET = object()


def env_seed_chunk() -> Any:
    """``THEORYLAB_SEED_CHUNK`` parsed: a positive int, None for ``all``, :data:`AUTO`, or a sentinel when unset.
    Raises :class:`~theorylab.errors.ConfigError` for anything else."""
    import os

    env = os.environ.get("THEORYLAB_SEED_CHUNK", "").strip()
    if not env:
        return _UNSET
    if env in ("all", AUTO):
        return None if env == "all" else AUTO
    if not (env.isascii() and env.isdigit()) or int(env) < 1:
        raise ConfigError(f"THEORYLAB_SEED_CHUNK: a positive integer, 'all' or 'auto' (got {env!r})")
    return int(env)


__all__ = ["AUTO", "STEPPERS", "check_tokens", "chunk_key", "env_seed_chunk", "known_chunk", "remember_chunk", "valid_chunk", "SingleStepper", "StackedStepper", "make_stepper", "make_optimizer", "clip_grads_",
           "default_seed_chunk"]
