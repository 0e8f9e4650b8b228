"""Train several seeds of one configuration at once, vectorised over seeds.

Every parameter of the seeds' models is stacked into one tensor with a leading seed
axis ``[S, ...]``; one forward pass computes all seeds' logits with batched matrix
products, the summed per-seed mean losses give each seed exactly its own gradient
(no operation mixes seeds), and one optimizer updates the stack.  AdamW and Adam are
elementwise, so one optimizer over the stack is the same algorithm as one per seed.

Each seed still lands in the store as its own run: the same run id as
:func:`theorylab.runs.train` would give it, its own metrics (evaluated with the
ordinary model, so the numbers mean the same thing), and its own checkpoints, which
the single-seed trainer can load and resume.

The batched forward (:func:`stacked_forward`) is also the fast path of one seed:

* only the positions that carry a loss (the columns with a target other than
  ``IGNORE``; for modular arithmetic, the ``=`` position) get queries, MLP and
  unembedding in the last layer;
* the first layer's input is a function of (token, position) alone, so its norm and
  Q/K/V projections are computed once on the small ``[vocab x positions]`` table and
  gathered, instead of once per example;
* attention over a handful of keys is written out (scores, softmax, weighted sum)
  rather than calling a kernel built for long sequences.

Configurations the batched forward does not cover (encoder models, continuous inputs,
hard attention, rotary/ALiBi/sinusoidal positions, position features, loops, dropout,
post-norm, gradient clipping) are trained one seed after another with
:func:`theorylab.runs.train`, so :func:`train_many` accepts every run config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from theorylab.errors import ConfigError
from theorylab.models import Transformer
from theorylab.models.config import TransformerConfig
from theorylab.runs.config import RunConfig
from theorylab.runs.loop import (
    DTYPES,
    Progress,
    RunResult,
    build_model_for,
    evaluate_model,
    latest_checkpoint,
    lr_at,
    make_optimizer,
    resolve_device,
    train,
)
from theorylab.store import Store
from theorylab.store.checkpoint import load_checkpoint, save_checkpoint
from theorylab.tasks import make_task
from theorylab.tasks.base import IGNORE

__all__ = ["train_many", "stacked_forward", "stacked_losses", "forward_backward", "supports_stacking",
           "StackedParams", "group_configs", "default_seed_chunk", "loss_columns"]


# --------------------------------------------------------------------------- what is supported


def unsupported_reason(cfg: RunConfig) -> str | None:
    """Why ``cfg`` cannot use the batched forward (None when it can)."""
    m: TransformerConfig = cfg.model
    checks = [
        (m.architecture != "decoder", f"architecture={m.architecture}"),
        (m.d_vocab is None or m.input_dim is not None, "continuous inputs"),
        (m.attention != "softmax", f"attention={m.attention}"),
        (m.positional not in ("learned", "none"), f"positional={m.positional}"),
        (bool(m.position_features), "position_features"),
        (m.log_length_scale, "log_length_scale"),
        (m.norm_position != "pre", "norm_position=post"),
        (m.n_loops != 1, "n_loops>1"),
        (m.dropout > 0, "dropout"),
        (m.n_layers < 1, "n_layers=0"),
        (cfg.train.grad_clip is not None, "grad_clip"),
        (cfg.train.optimizer not in ("adamw", "adam"), f"optimizer={cfg.train.optimizer}"),
    ]
    for bad, why in checks:
        if bad:
            return why
    return None


def supports_stacking(cfg: RunConfig) -> bool:
    return unsupported_reason(cfg) is None


# --------------------------------------------------------------------------- stacked parameters


@dataclass
class StackedParams:
    """Parameters of S models with identical shapes, stacked on a leading seed axis."""

    names: list[str]  # in ``model.named_parameters()`` order
    tensors: list[torch.Tensor]  # leaf tensors [S, *shape], requires_grad

    @classmethod
    def from_models(cls, models: list[Transformer]) -> StackedParams:
        named = [dict(m.named_parameters()) for m in models]
        names = list(named[0])
        tensors = [torch.stack([n[k].detach() for n in named]).contiguous().requires_grad_(True) for k in names]
        return cls(names, tensors)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.tensors))

    @torch.no_grad()
    def copy_into(self, model: Transformer, s: int) -> Transformer:
        params = dict(model.named_parameters())
        for k, t in zip(self.names, self.tensors):
            params[k].copy_(t[s])
        return model


def _norm(kind: str, eps: float, x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor:
    """The model's Norm with per-seed weights ``w, b [S, d]`` broadcast over ``x [S, ..., d]``."""
    if kind == "none":
        return x
    shape = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[-1],)
    if kind == "layernorm":
        xc = x - x.mean(-1, keepdim=True)
        var = xc.pow(2).mean(-1, keepdim=True)
        y = xc * torch.rsqrt(var + eps) if eps > 0 else xc / var.sqrt()
        return y * w.view(shape) + b.view(shape)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) if eps > 0 else x / x.pow(2).mean(-1, keepdim=True).sqrt()
    return y * w.view(shape)


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    if name == "gelu":
        return F.gelu(x)
    return F.gelu(x, approximate="tanh")


def stacked_forward(cfg: TransformerConfig, p: dict[str, torch.Tensor], tokens: torch.Tensor,
                    out_cols: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of S stacked models: ``tokens [S, B, T]`` -> ``[S, B, len(out_cols), V]``.

    ``out_cols`` are the positions whose logits are wanted (all when None); the last
    layer computes queries, MLP and unembedding for those rows only.  Equal, within
    float rounding, to running each seed's :class:`Transformer` with
    ``positions=out_cols`` (tested).
    """
    S, B, T = tokens.shape
    H, dh, d = cfg.n_heads, cfg.head_dim, cfg.d_model
    bias = cfg.bias
    pos = torch.arange(T, device=tokens.device)
    if out_cols is None:
        out_cols = pos
    n_out = int(out_cols.numel())
    W_E = p["embed.W_E"]  # [S, V, d]
    V = W_E.shape[1]
    # the residual stream entering layer 0, as a table over (token, position): [S, V*T, d]
    table = W_E[:, :, None, :]
    if cfg.positional == "learned":
        table = table + p["pos_embed.W_pos"][:, None, :T, :]
    else:
        table = table.expand(S, V, T, d)
    table = table.reshape(S, V * T, d)
    h = None  # [S, B, T, d] once computed
    L = cfg.n_layers
    for i in range(L):
        pre = f"blocks.{i}."
        last = i == L - 1
        q_rows = out_cols if last else pos
        Tq = n_out if last else T
        Wq, Wk, Wv, Wo = (p[pre + f"attn.W_{n}"] for n in "QKVO")  # [S, H, d, dh], W_O [S, H, dh, d]
        W_qkv = torch.cat([Wq, Wk, Wv], dim=1).permute(0, 2, 1, 3).reshape(S, d, 3 * H * dh)
        ln_w = p.get(pre + "ln1.w")
        ln_b = p.get(pre + "ln1.b")
        if i == 0:
            # every layer-0 quantity before the softmax is a function of (token, position):
            # compute it on the [V*T] table, then look rows up per example
            xn_tab = _norm(cfg.norm, cfg.norm_eps, table, ln_w, ln_b)
            qkv_tab = torch.bmm(xn_tab, W_qkv)  # [S, V*T, 3*H*dh]
            if bias:
                qkv_tab = qkv_tab + torch.cat([p[pre + "attn.b_Q"], p[pre + "attn.b_K"], p[pre + "attn.b_V"]],
                                              dim=1).reshape(S, 1, 3 * H * dh)
            q_tab, k_tab, v_tab = qkv_tab.view(S, V * T, 3, H, dh).permute(2, 0, 3, 1, 4)  # [S, H, VT, dh]
            VT = V * T
            qk = torch.matmul(q_tab, k_tab.transpose(-1, -2)) * (1.0 / math.sqrt(dh))  # [S, H, VT, VT]
            qk = qk.permute(0, 2, 3, 1).reshape(S * VT * VT, H)
            off = (torch.arange(S, device=tokens.device) * VT).view(S, 1, 1)
            k_idx = tokens * T + pos  # [S, B, T] table rows of the keys
            q_idx = tokens[:, :, q_rows] * T + q_rows  # [S, B, Tq]
            pair = (off.view(S, 1, 1, 1) * VT + q_idx[:, :, :, None] * VT + k_idx[:, :, None, :])  # [S, B, Tq, T]
            scores = F.embedding(pair, qk).permute(0, 1, 4, 2, 3)  # [S, B, H, Tq, T]
            v = F.embedding(k_idx + off, v_tab.permute(0, 2, 1, 3).reshape(S * VT, H * dh)).view(S, B, T, H, dh)
            resid = F.embedding(q_idx + off, table.reshape(S * VT, d))  # [S, B, Tq, d]
        else:
            xn = _norm(cfg.norm, cfg.norm_eps, h, ln_w, ln_b)
            kv = torch.bmm(xn.reshape(S, B * T, d), W_qkv[:, :, H * dh:])
            if bias:
                kv = kv + torch.cat([p[pre + "attn.b_K"], p[pre + "attn.b_V"]], dim=1).reshape(S, 1, 2 * H * dh)
            k, v = kv.view(S, B, T, 2, H, dh).unbind(3)
            xq = xn if Tq == T else xn[:, :, q_rows]
            q = torch.bmm(xq.reshape(S, B * Tq, d), W_qkv[:, :, : H * dh])
            if bias:
                q = q + p[pre + "attn.b_Q"].reshape(S, 1, H * dh)
            q = q.view(S, B, Tq, H, dh)
            resid = h if Tq == T else h[:, :, q_rows]
            scores = torch.matmul(q.permute(0, 1, 3, 2, 4), k.permute(0, 1, 3, 4, 2)) * (1.0 / math.sqrt(dh))
        allowed = pos[None, :] <= q_rows[:, None]  # causal [Tq, T]
        if not bool(allowed.all()):
            scores = scores.masked_fill(~allowed, float("-inf"))
        pattern = torch.softmax(scores, dim=-1)  # [S, B, H, Tq, T]
        if Tq == 1:
            z = (pattern.view(S, B, H, T, 1) * v.transpose(2, 3)).sum(-2).unsqueeze(2)  # [S, B, 1, H, dh]
        else:
            z = torch.matmul(pattern, v.permute(0, 1, 3, 2, 4)).permute(0, 1, 3, 2, 4)  # [S, B, Tq, H, dh]
        attn = torch.bmm(z.reshape(S, B * Tq, H * dh), Wo.reshape(S, H * dh, d)).view(S, B, Tq, d)
        if bias:
            attn = attn + p[pre + "attn.b_O"].view(S, 1, 1, d)
        x = resid + attn
        if not cfg.attn_only:
            xn2 = _norm(cfg.norm, cfg.norm_eps, x, p.get(pre + "ln2.w"), p.get(pre + "ln2.b"))
            W_in, W_out = p[pre + "mlp.W_in"], p[pre + "mlp.W_out"]
            if bias:
                hid = torch.baddbmm(p[pre + "mlp.b_in"].unsqueeze(1), xn2.reshape(S, B * Tq, d), W_in)
            else:
                hid = torch.bmm(xn2.reshape(S, B * Tq, d), W_in)
            hid = _act(cfg.act, hid)
            if bias:
                m = torch.baddbmm(p[pre + "mlp.b_out"].unsqueeze(1), hid, W_out)
            else:
                m = torch.bmm(hid, W_out)
            x = x + m.view(S, B, Tq, d)
        h = x
    if cfg.norm_position == "pre" and cfg.final_norm and cfg.norm != "none":
        h = _norm(cfg.norm, cfg.norm_eps, h, p.get("ln_final.w"), p.get("ln_final.b"))
    W_U = p["embed.W_E"].transpose(1, 2) if cfg.tied_embeddings else p["unembed.W_U"]  # [S, d, V]
    logits = torch.baddbmm(p["unembed.b_U"].unsqueeze(1), h.reshape(S, B * n_out, d), W_U)
    return logits.view(S, B, n_out, -1)


def loss_columns(targets: torch.Tensor) -> torch.Tensor:
    """Positions (columns of ``targets [.., B, T]``) where any example has a loss."""
    t = targets.reshape(-1, targets.shape[-1])
    return torch.nonzero((t != IGNORE).any(0)).flatten()


def stacked_losses(cfg: TransformerConfig, p: dict[str, torch.Tensor], tokens: torch.Tensor,
                   targets: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Per-seed mean cross-entropy (nats) over the non-IGNORE targets: ``[S]``."""
    logits = stacked_forward(cfg, p, tokens, cols)  # [S, B, C, V]
    S = logits.shape[0]
    tgt = targets[:, :, cols]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=IGNORE,
                          reduction="none").view(S, -1)
    n = (tgt != IGNORE).reshape(S, -1).sum(-1).clamp_min(1)
    return nll.sum(-1) / n


def forward_backward(cfg: TransformerConfig, sp: StackedParams, opt: torch.optim.Optimizer, tokens: torch.Tensor,
                     targets: torch.Tensor, cols: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Zero the gradients and fill them with each seed's own gradient; return the losses ``[S]``.

    Seeds go through the forward and backward pass ``chunk`` at a time (``None``: all at
    once).  A chunk whose loss is not finite gets no backward pass (the caller drops it).
    The optimizer step is the caller's: ``opt.step()``.
    """
    n = tokens.shape[0]
    size = n if chunk is None else max(1, min(chunk, n))
    if size == n:
        opt.zero_grad(set_to_none=True)
        losses = stacked_losses(cfg, sp.as_dict(), tokens, targets, cols)
        if bool(torch.isfinite(losses).all()):
            losses.sum().backward()
        return losses.detach()
    # chunks: each chunk's parameters are detached views (leaves of their own graph), so
    # backward allocates chunk-sized gradients, which are copied into the stacked .grad
    for t in sp.tensors:
        if t.grad is None:
            t.grad = torch.zeros_like(t)
    parts = []
    for a in range(0, n, size):
        views = [t.detach()[a:a + size].requires_grad_(True) for t in sp.tensors]
        part = stacked_losses(cfg, dict(zip(sp.names, views)), tokens[a:a + size], targets[a:a + size], cols)
        ok = bool(torch.isfinite(part).all())
        if ok:
            part.sum().backward()
        for t, v in zip(sp.tensors, views):
            if ok and v.grad is not None:
                t.grad[a:a + size].copy_(v.grad)
            else:
                t.grad[a:a + size].zero_()
        parts.append(part.detach())
    return torch.cat(parts)


# --------------------------------------------------------------------------- training several seeds


def group_configs(cfgs: list[RunConfig]) -> list[list[int]]:
    """Indices of ``cfgs`` grouped so that each group differs only in seed (and tags)."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cfgs):
        d = c.to_dict()
        d.pop("seed", None)
        d.pop("tags", None)
        d["train"].pop("device", None)
        key = RunConfig.model_validate({**d, "seed": 0}).to_json() + str(c.train.device)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


class _Seed:
    """Book-keeping of one seed inside a stacked group."""

    def __init__(self, cfg: RunConfig, store: Store | None):
        self.cfg, self.store = cfg, store
        self.run_id = cfg.run_id()
        self.task = make_task(cfg.task, cfg.seed)
        self.model = build_model_for(cfg)
        self.last: dict[str, float] = {}
        self.status = "finished"
        self.diverged_step: int | None = None
        self.early = False
        self.step = 0
        self.wall = 0.0


def train_many(cfgs: list[RunConfig], store: Store | None = None, *, force: bool = False, progress: bool = True,
               on_eval: Callable[[int, int, dict[str, float]], None] | None = None,
               vectorise: bool = True, stop_after: int | None = None, seed_chunk: int | None = 0
               ) -> list[RunResult]:
    """Train every config, seeds of one configuration together; results in input order.

    Runs already finished in ``store`` are served from it (unless ``force``).  Unfinished
    runs of a group (stopped, killed) resume from their last checkpoints when all of
    them have one at the same step, and start again from step 0 otherwise.
    ``stop_after`` stops after that many steps (status ``stopped``; call again to go
    on).  ``on_eval(index, step, metrics)`` is called at every evaluation, ``index``
    into ``cfgs``.  ``seed_chunk``: seeds per forward/backward pass (``None`` = all at
    once; the default 0 picks :func:`default_seed_chunk` for the device).
    ``vectorise=False`` trains one after another with :func:`theorylab.runs.train`
    (the reference the stacked path must match).
    """
    if seed_chunk is not None and seed_chunk < 0:
        raise ConfigError(f"seed_chunk: must be None (all at once), 0 (device default) or >= 1 (got {seed_chunk})")
    results: list[RunResult | None] = [None] * len(cfgs)
    first: dict[str, int] = {}  # run id -> first index: a repeated config is trained once
    for i, c in enumerate(cfgs):
        first.setdefault(c.run_id(), i)
    dupes = {i: first[c.run_id()] for i, c in enumerate(cfgs) if first[c.run_id()] != i}
    keep = [i for i in range(len(cfgs)) if i not in dupes]
    for sub in group_configs([cfgs[i] for i in keep]):
        group = [keep[g] for g in sub]
        gcfgs = [cfgs[i] for i in group]
        if not vectorise or unsupported_reason(gcfgs[0]) is not None:
            for i in group:
                cb = None if on_eval is None else (lambda st, v, _i=i: on_eval(_i, st, v))
                results[i] = train(cfgs[i], store, force=force, progress=progress, on_eval=cb,
                                   stop_after=stop_after)
            continue
        todo = []
        for i in group:
            c = cfgs[i]
            rid = c.run_id()
            if store is not None:
                rec = store.get_run(rid)
                if rec is not None and force:
                    store.delete_run(rid)
                    rec = None
                if rec is not None and rec.status in ("finished", "diverged"):
                    results[i] = train(c, store, progress=False)  # served from the store
                    continue
                if rec is None:
                    store.create_run(rid, c.task.name, c.to_dict(), c.seed, c.tags)
            todo.append(i)
        if todo:
            for i, r in zip(todo, _train_stacked([cfgs[i] for i in todo], store, progress=progress,
                                                 on_eval=on_eval, index=todo, stop_after=stop_after,
                                                 seed_chunk=seed_chunk)):
                results[i] = r
    for i, j in dupes.items():
        results[i] = results[j]
    return results  # type: ignore[return-value]


def default_seed_chunk(device: torch.device) -> int | None:
    """Seeds per forward/backward pass: all of them on a GPU; one at a time on a CPU.

    On a CPU a batched matmul is a loop over the batch anyway, so stacking seeds in one
    pass saves nothing, while S-times larger activations fall out of cache: measured on
    the mainline, 8 seeds in one pass ran ~1.7x slower than 8 passes of one seed.  The
    parameters and the optimizer stay stacked either way.
    """
    return None if device.type == "cuda" else 1


def _train_stacked(cfgs: list[RunConfig], store: Store | None, *, progress: bool, on_eval, index: list[int],
                   stop_after: int | None = None, seed_chunk: int | None = 0) -> list[RunResult]:
    tc = cfgs[0].train
    mcfg = cfgs[0].model
    device = resolve_device(tc.device)
    chunk = default_seed_chunk(device) if seed_chunk == 0 else seed_chunk
    dtype = DTYPES[tc.dtype]
    seeds = [_Seed(c, store) for c in cfgs]
    for s in seeds:
        s.model.to(device)
    active = list(range(len(seeds)))
    start = 0
    prior_wall = [0.0] * len(seeds)
    found = [latest_checkpoint(store, s.run_id) for s in seeds] if store is not None else [None]
    resumed = all(f is not None for f in found) and len({f[1] for f in found}) == 1
    opt_states: list[torch.optim.Optimizer] = []
    if resumed:
        start = found[0][1]
        for j, s in enumerate(seeds):
            opt_s = make_optimizer(tc, s.model.parameters())
            info = load_checkpoint(found[j][0], s.model, opt_s)
            prior_wall[j] = float(info["extra"].get("wall_seconds", 0.0))
            opt_states.append(opt_s)
    sp = StackedParams.from_models([s.model for s in seeds])
    opt = make_optimizer(tc, sp.tensors)
    if resumed:
        per_seed = [list(o_s.param_groups[0]["params"]) for o_s in opt_states]
        for i, t in enumerate(sp.tensors):
            states = [opt_states[j].state.get(per_seed[j][i]) for j in range(len(seeds))]
            if all(states):
                opt.state[t] = {key: (torch.stack([st[key] for st in states]) if torch.is_tensor(v) and v.dim()
                                      else (v.clone() if torch.is_tensor(v) else v)) for key, v in states[0].items()}
    full_batch = all(tc.batch_size is None or tc.batch_size >= len(s.task.train_set or []) for s in seeds) \
        and all(s.task.train_set is not None for s in seeds)

    def batch_tensors(step: int, members: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        bs = [seeds[j].task.train_batch(step, tc.batch_size) for j in members]
        if len({len(b) for b in bs}) != 1:
            raise ConfigError("train.batch_size: seeds of one stacked group need equal batch sizes; "
                              "set train.batch_size or use vectorise=False")
        return torch.stack([b.tokens for b in bs]).to(device), torch.stack([b.targets for b in bs]).to(device)

    cached = batch_tensors(0, active) if full_batch else None
    cols = loss_columns(cached[1]) if cached is not None else None
    for s in seeds:
        if store is not None:
            if not resumed:
                for a in store.artifacts(s.run_id, "checkpoint"):
                    Path(a["path"]).unlink(missing_ok=True)
                    store.remove_artifact(s.run_id, "checkpoint", a["path"])
            store.truncate_metrics(s.run_id, start if resumed else -1)
            store.update_run(s.run_id, status="running", started=time.time())
    label = f"{len(seeds)} seeds" if len(seeds) > 1 else seeds[0].run_id
    bar = Progress(tc.steps, label, enabled=progress, start=start)
    t0 = time.perf_counter()

    def checkpoint(j: int, at: int) -> None:
        s = seeds[j]
        if store is None:
            return
        k = active.index(j)
        sp.copy_into(s.model, k)
        opt_s = make_optimizer(tc, s.model.parameters())
        for p_s, p_all in zip(s.model.parameters(), sp.tensors):
            st = opt.state.get(p_all)
            if st:
                opt_s.state[p_s] = {key: (v[k].clone() if torch.is_tensor(v) and v.dim() > 0 else
                                          (v.clone() if torch.is_tensor(v) else v)) for key, v in st.items()}
        for g_s, g in zip(opt_s.param_groups, opt.param_groups):
            g_s["lr"] = g["lr"]
        path = store.run_dir(s.run_id) / f"ckpt-{at:08d}.safetensors"
        save_checkpoint(path, s.model, opt_s, at, extra={"wall_seconds": prior_wall[j] + time.perf_counter() - t0,
                                                         "run_id": s.run_id})
        store.add_artifact(s.run_id, "checkpoint", path, at)
        if tc.keep_checkpoints == "last":
            for a in store.artifacts(s.run_id, "checkpoint"):
                if a["path"] != str(path):
                    Path(a["path"]).unlink(missing_ok=True)
                    store.remove_artifact(s.run_id, "checkpoint", a["path"])

    def evaluate(at: int) -> list[int]:
        """Evaluate every active seed at step ``at``; return those that must stop."""
        stop = []
        infos = []
        for k, j in enumerate(active):
            s = seeds[j]
            sp.copy_into(s.model, k)
            vals = evaluate_model(s.task, s.model, device, dtype, tc.eval_batch_size, s.cfg.probes)
            vals["train/lr"] = lr_at(tc, max(at - 1, 0))
            if store is not None:
                store.log_metric_rows(s.run_id, [(at, *key.split("/", 1), v) for key, v in vals.items()])
            if on_eval is not None:
                on_eval(index[j], at, vals)
            s.last = vals
            if any(not math.isfinite(v) for v in vals.values()):
                s.status, s.diverged_step = "diverged", at
                stop.append(j)
            elif tc.early_stop_metric is not None and tc.early_stop_metric in vals:
                v = vals[tc.early_stop_metric]
                if (v >= tc.early_stop_value) if tc.early_stop_mode == "max" else (v <= tc.early_stop_value):
                    s.early = True
                    stop.append(j)
            infos.append(vals.get("test/accuracy", vals.get("train/loss", float("nan"))))
        bar.update(at, "acc " + " ".join(f"{v:.3g}" for v in infos), force_line=True)
        return stop

    def finish(j: int, at: int) -> None:
        s = seeds[j]
        s.step = at
        sp.copy_into(s.model, active.index(j))
        if s.status != "diverged":
            checkpoint(j, at)
        sps = (at - start) / max(time.perf_counter() - t0, 1e-9)
        s.wall = prior_wall[j] + time.perf_counter() - t0
        if s.status == "finished" and at < tc.steps and not s.early:
            s.status = "stopped"
        if store is not None:
            store.update_run(s.run_id, status=s.status, step=at, finished=time.time(),
                             wall_seconds=s.wall,
                             summary={"metrics": s.last, "steps_per_second": sps, "diverged_step": s.diverged_step,
                                      "early_stopped": s.early, "trained_with": f"multiseed x{len(seeds)}"})

    def drop(members: list[int], at: int) -> None:
        nonlocal sp, opt, cached
        keep = [k for k, j in enumerate(active) if j not in members]
        for j in members:
            finish(j, at)
        for j in members:
            active.remove(j)
        if not active:
            return
        idx = torch.tensor(keep, device=device)
        new = [t.detach().index_select(0, idx).contiguous().requires_grad_(True) for t in sp.tensors]
        new_opt = make_optimizer(tc, new)
        for old_t, new_t in zip(sp.tensors, new):
            st = opt.state.get(old_t)
            if st:
                new_opt.state[new_t] = {key: (v.index_select(0, idx).contiguous() if torch.is_tensor(v) and v.dim()
                                              else v) for key, v in st.items()}
        for g_new, g in zip(new_opt.param_groups, opt.param_groups):
            g_new["lr"] = g["lr"]
        sp = StackedParams(sp.names, new)
        opt = new_opt
        if cached is not None:
            cached = (cached[0].index_select(0, idx), cached[1].index_select(0, idx))

    step = start
    if start == 0:
        stopping = evaluate(0)
        if stopping:
            drop(stopping, 0)
    end = tc.steps if stop_after is None else min(tc.steps, start + stop_after)
    try:
        while active and step < end:
            lr = lr_at(tc, step)
            for g in opt.param_groups:
                g["lr"] = lr
            tokens, targets = cached if cached is not None else batch_tensors(step, active)
            c = cols if cols is not None else loss_columns(targets)
            losses = forward_backward(mcfg, sp, opt, tokens, targets, c, chunk)
            bad = [j for j, ok in zip(active, torch.isfinite(losses).tolist()) if not ok]
            if bad:
                for j in bad:
                    seeds[j].status, seeds[j].diverged_step = "diverged", step
                    seeds[j].last = {**seeds[j].last, "train/loss": float("nan")}
                drop(bad, step)
                continue
            opt.step()
            step += 1
            if step % tc.eval_every == 0 or step == tc.steps:
                stopping = evaluate(step)
                if stopping:
                    drop(stopping, step)
            elif bar.tty:
                bar.update(step, f"loss={float(losses.mean()):.4g}")
            if tc.checkpoint_every and step % tc.checkpoint_every == 0 and step < tc.steps:
                for j in active:
                    checkpoint(j, step)
    finally:
        bar.close()
    for j in list(active):
        finish(j, step)
    out = []
    wall = time.perf_counter() - t0
    for s in seeds:
        sps = (s.step - start) / max(wall, 1e-9)
        out.append(RunResult(s.run_id, s.status, s.step, s.last, s.wall, sps, diverged_step=s.diverged_step,
                             early_stopped=s.early, model=s.model))
    return out
