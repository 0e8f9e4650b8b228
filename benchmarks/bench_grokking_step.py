"""Benchmark: the mainline grokking step (Nanda et al. 2023) on this machine.

Measures in one process:

1. steps/s of theorylab's training step at the ``grokking`` preset (p=113, 30% of
   pairs, full batch of 3,830 examples) against the baseline: a plain float32 PyTorch
   loop of the same model written the obvious way (an ``nn.Module`` that computes every
   position through attention, MLP and unembedding, then takes the last position's
   logits; ``torch.optim.AdamW`` with default implementation flags).  theorylab is timed
   twice: the vectorised trainer (:func:`theorylab.train.multiseed.train_many` with one
   seed, the path claims use) and the single-seed :func:`theorylab.train.train`.
2. 8 seeds trained at once (one stacked process) against the same 8 seeds trained one
   after another.

Rounds alternate between the contenders and the median per-round rate is reported, so a
neighbour's load hits both alike.  Evaluation is off during timing (eval_every > steps).

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

from theorylab.train import build_run_config, train
from theorylab.train.multiseed import train_many


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


def baseline_rate(cfg, steps: int) -> float:
    from theorylab.tasks import make_task

    task = make_task(cfg.task, cfg.seed)
    m = cfg.model
    model = PlainTransformer(m.d_vocab, m.vocab_out, m.n_ctx, m.d_model, m.n_heads, m.mlp_dim, m.init_std,
                             torch.Generator().manual_seed(cfg.seed))
    tc = cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=tuple(tc.betas), weight_decay=tc.weight_decay)
    batch = task.train_set
    tokens, targets = batch.tokens, batch.targets[:, -1]
    t0 = time.perf_counter()
    for _ in range(steps):
        logits = model(tokens)[:, -1]
        loss = F.cross_entropy(logits, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def run_rate(fn, steps: int) -> float:
    t0 = time.perf_counter()
    fn()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--seed-steps", type=int, default=8, help="steps per seed in the multi-seed comparison")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--preset", default="grokking")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = args.steps
    timing = [f"train.steps={n}", f"train.eval_every={n + 1}", "train.checkpoint_every=null"]
    cfg = build_run_config(args.preset, timing, seed=0)
    print(f"preset {args.preset}: p={cfg.task.p}, train pairs={round(cfg.task.train_fraction * cfg.task.p ** 2)}, "
          f"d_model={cfg.model.d_model}, d_mlp={cfg.model.mlp_dim}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    # warm-up
    baseline_rate(cfg, 2)
    train_many([cfg.model_copy(update={"train": cfg.train.model_copy(update={"steps": 2})})], None, progress=False)
    rates: dict[str, list[float]] = {"baseline": [], "multiseed": [], "train": []}
    for _ in range(args.rounds):
        rates["baseline"].append(baseline_rate(cfg, n))
        rates["multiseed"].append(run_rate(lambda: train_many([cfg], None, progress=False), n))
        rates["train"].append(run_rate(lambda: train(cfg, None, progress=False), n))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print("\n1. mainline full-batch step, steps/s (median of rounds; all rounds)")
    for k, label in (("baseline", "baseline: plain float32 nn.Module, all positions, torch AdamW"),
                     ("multiseed", "theorylab vectorised trainer (train_many, 1 seed)"),
                     ("train", "theorylab train() (single-seed trainer, Transformer.forward)")):
        print(f"   {label:<62} {med[k]:7.2f}  {[round(x, 2) for x in rates[k]]}")
    print(f"   ratio vectorised trainer / baseline: {med['multiseed'] / med['baseline']:.2f}x (target >= 3x)")
    print(f"   ratio train() / baseline:            {med['train'] / med['baseline']:.2f}x")

    S, k = args.seeds, args.seed_steps
    tk = [f"train.steps={k}", f"train.eval_every={k + 1}", "train.checkpoint_every=null"]
    cfgs = [build_run_config(args.preset, tk, seed=s) for s in range(S)]
    t_at_once, t_seq, t_seq_plain = [], [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        train_many(cfgs, None, progress=False)
        t_at_once.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for c in cfgs:
            train_many([c], None, progress=False)
        t_seq.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for c in cfgs:
            train(c, None, progress=False)
        t_seq_plain.append(time.perf_counter() - t0)
    a, s1, s2 = statistics.median(t_at_once), statistics.median(t_seq), statistics.median(t_seq_plain)
    print(f"\n2. {S} seeds x {k} steps, wall seconds (median of rounds)")
    print(f"   {S} at once (stacked):                          {a:7.2f}  {[round(x, 2) for x in t_at_once]}")
    print(f"   {S} in sequence, vectorised trainer 1 seed each: {s1:7.2f}  {[round(x, 2) for x in t_seq]}")
    print(f"   {S} in sequence, train():                        {s2:7.2f}  {[round(x, 2) for x in t_seq_plain]}")
    print(f"   sequence / at once: {s1 / a:.2f}x (same step code), {s2 / a:.2f}x (vs train()); "
          "target on CPU >= 1.0x")


if __name__ == "__main__":
    main()
