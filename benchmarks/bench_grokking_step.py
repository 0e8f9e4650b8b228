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
2. 8 seeds trained at once (stacked parameters, one optimizer) against the same 8 seeds
   trained one after another.

Rounds alternate between the contenders and the median is reported, so a neighbour's
load hits all alike.

    python benchmarks/bench_grokking_step.py [--steps 20] [--rounds 3] [--seeds 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def baseline_stepper(cfg):
    """The baseline loop: the obvious PyTorch training step of the same model."""
    from theorylab.tasks import make_task

    task = make_task(cfg.task, cfg.seed)
    m = cfg.model
    model = PlainTransformer(m.d_vocab, m.vocab_out, m.n_ctx, m.d_model, m.n_heads, m.mlp_dim, m.init_std,
                             torch.Generator().manual_seed(cfg.seed))
    tc = cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
    tokens, targets = task.train_set.tokens, task.train_set.targets[:, -1]

    def run(n: int) -> None:
        for _ in range(n):
            logits = model(tokens)[:, -1]
            loss = F.cross_entropy(logits, targets)
            opt.zero_grad()
            loss.backward()
            opt.step()

    return run


def theorylab_stepper(cfgs, kind="single", chunk=0):
    """theorylab's training step for these seeds as the loop runs it: lr, forward/backward (each seed's
    gradient clipped and its norm read), optimizer step, with the stepper ``kind``."""
    import torch as _torch

    from theorylab.runs import build, lr_at, make_optimizer
    from theorylab.runs.steppers import default_seed_chunk, make_stepper

    built = [build(c) for c in cfgs]
    tasks, models = [t for t, _ in built], [m for _, m in built]
    tc = cfgs[0].train
    ch = default_seed_chunk(_torch.device("cpu")) if chunk == 0 else chunk
    st = make_stepper(kind, cfgs[0], [c.seed for c in cfgs], tasks, models,
                      [make_optimizer(tc, m.parameters()) for m in models], chunk=ch)
    state = {"step": 0}

    def run(n: int) -> None:
        for _ in range(n):
            step = state["step"]
            st.forward_backward([t.train_batch(step, tc.batch_size) for t in tasks], step)
            st.apply(lr_at(tc, step))
            state["step"] += 1

    return run


def timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--seed-steps", type=int, default=4, help="steps per seed in the multi-seed comparison")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preset", default="grokking")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = args.steps
    cfg = build_run_config(args.preset, seed=0)
    print(f"preset {args.preset}: p={cfg.task.p}, train pairs={round(cfg.task.train_fraction * cfg.task.p ** 2)}, "
          f"d_model={cfg.model.d_model}, d_mlp={cfg.model.mlp_dim}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    base = baseline_stepper(cfg)
    fast = theorylab_stepper([cfg], "stacked")
    plain = theorylab_stepper([cfg], "single")
    for f in (base, fast, plain):  # warm-up
        f(2)
    rates: dict[str, list[float]] = {"baseline": [], "vectorised": [], "train": []}
    for _ in range(args.rounds):
        rates["baseline"].append(n / timed(base, n))
        rates["vectorised"].append(n / timed(fast, n))
        rates["train"].append(n / timed(plain, n))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print("\n1. mainline full-batch training step, steps/s (median of rounds; all rounds)")
    for k, label in (("baseline", "baseline: plain float32 nn.Module, all positions, torch AdamW"),
                     ("vectorised", "theorylab stacked stepper, 1 seed"),
                     ("train", "theorylab single stepper (what train() runs)")):
        print(f"   {label:<62} {med[k]:7.2f}  {[round(x, 2) for x in rates[k]]}")
    print(f"   ratio stacked stepper / baseline: {med['vectorised'] / med['baseline']:.2f}x")
    print(f"   ratio single stepper / baseline:  {med['train'] / med['baseline']:.2f}x")
    t0 = time.perf_counter()
    train_many([cfg.model_copy(update={"train": cfg.train.model_copy(
        update={"steps": n, "eval_every": n, "checkpoint_every": None})})], None, progress=False,
        threads=args.threads)
    print(f"   end to end train_many, {n} steps with 2 evaluations of all {cfg.task.p ** 2} pairs: "
          f"{n / (time.perf_counter() - t0):.2f} steps/s (includes building the task and model)")

    S, k = args.seeds, args.seed_steps
    cfgs = [build_run_config(args.preset, seed=s) for s in range(S)]
    at_once = theorylab_stepper(cfgs, "stacked")
    one_pass = theorylab_stepper(cfgs, "stacked", chunk=None)
    singles = [theorylab_stepper([c], "stacked") for c in cfgs]
    plains = [theorylab_stepper([c], "single") for c in cfgs]
    at_once(1)
    one_pass(1)
    for f in singles + plains:
        f(1)
    t_a, t_p, t_s, t_t = [], [], [], []
    for _ in range(args.rounds):
        t_a.append(timed(at_once, k))
        t_p.append(timed(one_pass, k))
        t_s.append(sum(timed(f, k) for f in singles))
        t_t.append(sum(timed(f, k) for f in plains))
    a, p1, s1, s2 = (statistics.median(x) for x in (t_a, t_p, t_s, t_t))
    print(f"\n2. {S} seeds x {k} steps, wall seconds (median of rounds; all rounds)")
    print(f"   {S} at once (stacked, default seed chunk on CPU = 1): {a:7.2f}  {[round(x, 2) for x in t_a]}")
    print(f"   {S} at once in one pass (vmap over all seeds):       {p1:7.2f}  {[round(x, 2) for x in t_p]}")
    print(f"   {S} in sequence, stacked stepper, 1 seed each:       {s1:7.2f}  {[round(x, 2) for x in t_s]}")
    print(f"   {S} in sequence, single stepper:                    {s2:7.2f}  {[round(x, 2) for x in t_t]}")
    print(f"   sequence / at once: {s1 / a:.2f}x (same stepper), {s2 / a:.2f}x (vs the single stepper); one pass: "
          f"{s1 / p1:.2f}x")


if __name__ == "__main__":
    main()
