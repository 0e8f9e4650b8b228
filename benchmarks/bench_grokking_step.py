"""Benchmark: the mainline grokking step (Nanda et al. 2023) on this machine.

Measures in one process:

1. steps/s of theorylab's training step at the ``grokking`` preset (p=113, 30% of
   pairs, full batch of 3,831 examples) against the baseline: a plain float32 PyTorch
   loop of the same model written the obvious way (an ``nn.Module`` that computes every
   position through attention, MLP and unembedding, then takes the last position's
   logits; ``torch.optim.AdamW`` with default implementation flags).  theorylab is timed
   with each stepper of its training loop (:mod:`theorylab.runs.steppers`), as the loop
   runs a step (forward, backward, per-seed gradient norm, learning rate, AdamW): the
   single stepper (what ``theorylab train`` runs) and the stacked stepper with one seed.
   An end-to-end ``train_many`` rate (with its evaluations) is printed as well.
   The single stepper is also timed with ``train.dtype=bf16`` (bfloat16 autocast, float32 master
   weights) and with ``train.compile=true`` (torch.compile of the step, fused AdamW; ``--no-compile``
   leaves these out): the issue's CPU target is the grokking step at least 5x the plain loop.
2. S seeds trained at once (stacked parameters, one optimizer; seeds per pass measured, the default on
   a CPU, and one pass over all seeds with vmap, the default on a GPU) against the same S seeds
   trained one after another, for S in ``--seeds`` (8, 32, 64).  Target: at least 1.5x on a CPU, 10x
   on an H200 for 8 seeds.
3. ``--to-99 8,64``: wall seconds for that many mainline seeds, stacked, to reach 99% test accuracy
   (early stop), the default on a GPU (targets: 8 within 15 s, 64 within 60 s on an H200).  On a CPU
   one seed takes minutes, so it runs only when asked.

Rounds alternate between the contenders and the median is reported, so a neighbour's
load hits all alike.

    python benchmarks/bench_grokking_step.py [--steps 20] [--rounds 3] [--seeds 8,32,64] [--threads 1]
                                             [--dtype float32] [--no-compile] [--to-99 8,64]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from common import matmul_peak

from theorylab.runs import build_run_config, train_many


class PlainTransformer(nn.Module):
    """The mainline model written the obvious way: every position through every layer."""

    def __init__(self, d_vocab: int, d_out: int, n_ctx: int, d_model: int, n_heads: int, d_mlp: int,
                 init_std: float, generator: torch.Generator):
        super().__init__()
        self.n_heads = n_heads
        self.embed = nn.Embedding(d_vocab, d_model)
        self.pos = nn.Parameter(torch.empty(n_ctx, d_model))
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)
        self.mlp_in = nn.Linear(d_model, d_mlp, bias=False)
        self.mlp_out = nn.Linear(d_mlp, d_model, bias=False)
        self.unembed = nn.Linear(d_model, d_out)
        with torch.no_grad():
            for p in self.parameters():
                p.normal_(0.0, init_std, generator=generator)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        H = self.n_heads
        x = self.embed(tokens) + self.pos[:T]
        q = self.q(x).view(B, T, H, -1).transpose(1, 2)
        k = self.k(x).view(B, T, H, -1).transpose(1, 2)
        v = self.v(x).view(B, T, H, -1).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
        z = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, -1)
        x = x + self.o(z)
        x = x + self.mlp_out(F.relu(self.mlp_in(x)))
        return self.unembed(x)


def baseline_stepper(cfg, device="cpu"):
    """The baseline loop: the obvious PyTorch training step of the same model (float32)."""
    from theorylab.tasks import make_task

    task = make_task(cfg.task, cfg.seed)
    m = cfg.model
    model = PlainTransformer(m.d_vocab, m.vocab_out, m.n_ctx, m.d_model, m.n_heads, m.mlp_dim, m.init_std,
                             torch.Generator().manual_seed(cfg.seed)).to(device)
    tc = cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
    tokens, targets = task.train_set.tokens.to(device), task.train_set.targets[:, -1].to(device)

    def run(n: int) -> None:
        for _ in range(n):
            logits = model(tokens)[:, -1]
            loss = F.cross_entropy(logits, targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device != "cpu":
            torch.cuda.synchronize()

    return run


def theorylab_stepper(cfgs, kind="single", chunk=0, device="cpu"):
    """theorylab's training step for these seeds as the loop runs it: lr, forward/backward (each seed's
    gradient clipped and its norm read), optimizer step, with the stepper ``kind``."""
    import torch as _torch

    from theorylab.runs import build, lr_at, make_optimizer
    from theorylab.runs.steppers import default_seed_chunk, make_stepper

    built = [build(c, _torch.device(device)) for c in cfgs]
    tasks, models = [t for t, _ in built], [m for _, m in built]
    tc = cfgs[0].train
    ch = default_seed_chunk(_torch.device(device)) if chunk == 0 else chunk
    st = make_stepper(kind, cfgs[0], [c.seed for c in cfgs], tasks, models,
                      [make_optimizer(tc, m.parameters()) for m in models], chunk=ch)
    state = {"step": 0}

    def run(n: int) -> None:
        for _ in range(n):
            step = state["step"]
            st.forward_backward([t.train_batch(step, tc.batch_size).to(device) for t in tasks], step)
            st.apply(lr_at(tc, step))
            state["step"] += 1
        if device != "cpu":
            _torch.cuda.synchronize()

    run.stepper = st
    return run


def timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return time.perf_counter() - t0


def step_flops(cfg) -> float:
    """FLOPs of one training step (forward and backward) of theorylab's model, counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (matmuls and attention; elementwise ops count 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    from theorylab.runs import build

    task, model = build(cfg)
    with FlopCounterMode(display=False) as fc:
        task.loss(model, task.train_batch(0, cfg.train.batch_size))[0].backward()
    return float(fc.get_total_flops())




def with_train(cfg, **update):
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=update)})


def part1(args) -> None:
    n = args.steps
    cfg = with_train(build_run_config(args.preset, seed=0), device=args.device)
    print(f"preset {args.preset}: p={cfg.task.p}, train pairs={round(cfg.task.train_fraction * cfg.task.p ** 2)}, "
          f"d_model={cfg.model.d_model}, d_mlp={cfg.model.mlp_dim}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), device {args.device}")
    contenders = {"baseline": ("baseline: plain float32 nn.Module, all positions, torch AdamW", None),
                  "stacked": ("theorylab stacked stepper, 1 seed, float32", ([cfg], "stacked")),
                  "single": ("theorylab single stepper, float32 (what train() runs)", ([cfg], "single")),
                  "bf16": ("theorylab single stepper, train.dtype=bf16", ([with_train(cfg, dtype="bf16")], "single"))}
    if not args.no_compile:
        contenders["compiled"] = ("theorylab single stepper, train.compile=true",
                                  ([with_train(cfg, compile=True)], "single"))
        contenders["compiled bf16"] = ("theorylab single stepper, compile and bf16",
                                       ([with_train(cfg, compile=True, dtype="bf16")], "single"))
    fns = {}
    for k, (_, spec) in contenders.items():
        fns[k] = baseline_stepper(cfg, args.device) if spec is None else theorylab_stepper(*spec, device=args.device)
        fns[k](2)  # warm-up (and compilation)
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(args.rounds):
        for k in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            rates[k].append(n / timed(fns[k], n))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print("\n1. mainline full-batch training step, steps/s (median of rounds; all rounds)")
    for k, (label, _) in contenders.items():
        print(f"   {label:<62} {med[k]:7.2f}  {[round(x, 2) for x in rates[k]]}")
    for k in contenders:
        if k != "baseline":
            print(f"   ratio {k + ' / baseline:':<24} {med[k] / med['baseline']:5.2f}x   (target >= 5x on a CPU)")
    flops = step_flops(cfg)
    peaks = {"float32": matmul_peak(args.device, torch.float32), "bf16": matmul_peak(args.device, torch.bfloat16)}
    print(f"   one step is {flops / 1e9:.2f} GFLOP (counted); matmul peak {peaks['float32'] / 1e9:.1f} GFLOP/s float32, "
          f"{peaks['bf16'] / 1e9:.1f} bf16; MFU: single float32 {100 * med['single'] * flops / peaks['float32']:.0f}% "
          f"of the float32 peak, bf16 {100 * med['bf16'] * flops / peaks['bf16']:.0f}% of the bf16 peak")
    t0 = time.perf_counter()
    train_many([with_train(cfg, steps=n, eval_every=n, checkpoint_every=None)], None, progress=False,
               threads=args.threads)
    print(f"   end to end train_many, {n} steps with 2 evaluations of all {cfg.task.p ** 2} pairs: "
          f"{n / (time.perf_counter() - t0):.2f} steps/s (includes building the task and model)")


def part2(args, S: int) -> None:
    k = args.seed_steps
    cfgs = [with_train(build_run_config(args.preset, seed=s), device=args.device, dtype=args.dtype) for s in range(S)]
    at_once = theorylab_stepper(cfgs, "stacked", chunk=0, device=args.device)
    one_pass = theorylab_stepper(cfgs, "stacked", chunk=None, device=args.device)
    plains = [theorylab_stepper([c], "single", device=args.device) for c in cfgs]
    at_once(1)  # measures its chunk on the first step (the default on a CPU)
    one_pass(1)
    for f in plains:
        f(1)
    t_a, t_p, t_s = [], [], []
    for r in range(args.rounds):
        order = [("a", at_once), ("p", one_pass), ("s", None)]
        for name, f in (order if r % 2 == 0 else list(reversed(order))):
            if name == "s":
                t_s.append(sum(timed(g, k) for g in plains))
            else:
                (t_a if name == "a" else t_p).append(timed(f, k))
    a, p1, s1 = (statistics.median(x) for x in (t_a, t_p, t_s))
    chunk = at_once.stepper.chunk
    print(f"\n2. {S} seeds x {k} steps ({args.dtype}), wall seconds (median of rounds; all rounds)")
    print(f"   {S} at once, stacked, default chunk ({'all' if chunk is None else chunk} seeds per pass):"
          f" {a:8.2f}  {[round(x, 2) for x in t_a]}")
    print(f"   {S} at once, one pass over all seeds (vmap):            {p1:8.2f}  {[round(x, 2) for x in t_p]}")
    print(f"   {S} in sequence, single stepper:                       {s1:8.2f}  {[round(x, 2) for x in t_s]}")
    print(f"   sequence / at once: {s1 / a:.2f}x (default chunk), {s1 / p1:.2f}x (one pass)   "
          f"(target >= 1.5x on a CPU, >= 10x for 8 seeds on an H200)")
    flops = step_flops(cfgs[0]) * S * k
    peak = matmul_peak(args.device, torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    print(f"   in sequence the seeds run at {100 * flops / s1 / peak:.0f}% of the {args.dtype} matmul peak: at most "
          f"{peak * s1 / flops:.2f}x is left for any way of running them at once on this device")


def part3(args, S: int) -> None:
    cfgs = [with_train(build_run_config(args.preset, seed=s), device=args.device, dtype=args.dtype,
                       stepper="stacked", early_stop_metric="test/accuracy", early_stop_value=0.99,
                       checkpoint_every=None, checkpoint_minutes=None)
            for s in range(S)]
    t0 = time.perf_counter()
    res = train_many(cfgs, None, progress=False, threads=args.threads)
    wall = time.perf_counter() - t0
    steps = sorted(r.step for r in res)
    print(f"\n3. {S} mainline seeds ({args.dtype}, stacked) to 99% test accuracy: {wall:.1f} s wall; "
          f"{sum(r.early_stopped for r in res)}/{S} reached it; steps min {steps[0]} median "
          f"{steps[len(steps) // 2]} max {steps[-1]}   (targets on an H200: 8 within 15 s, 64 within 60 s)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", default="8,32,64", help="group sizes for part 2, comma-separated")
    ap.add_argument("--seed-steps", type=int, default=2, help="steps per seed in part 2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preset", default="grokking")
    ap.add_argument("--dtype", default="float32", help="train.dtype of parts 2 and 3")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-compile", action="store_true", help="leave the compiled contenders out of part 1")
    ap.add_argument("--to-99", default=None, help="part 3 group sizes (default: 8,64 on CUDA, none on a CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    part1(args)
    for S in (int(x) for x in args.seeds.split(",") if x):
        part2(args, S)
    to99 = args.to_99 if args.to_99 is not None else ("8,64" if args.device.startswith("cuda") else "")
    for S in (int(x) for x in to99.split(",") if x):
        part3(args, S)
    if not to99:
        print("\n3. time to 99% test accuracy: not run on a CPU by default (minutes per seed); "
              "--to-99 8 runs it")


if __name__ == "__main__":
    main()
