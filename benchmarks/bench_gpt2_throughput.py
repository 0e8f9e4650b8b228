"""Training throughput: theorylab's Transformer vs transformers.GPT2LMHeadModel, same process.

The model is GPT-2 shaped at the nanoGPT shakespeare_char size (6 layers, d_model 384,
6 heads, context 256, vocabulary 65).  Both models start from the same weights (the HF
one is made with ``to_hf``), see the same batches and use the same AdamW.  Rounds
alternate between the two so that machine noise hits both alike.  Prints tokens/s for
each, the ratio (theorylab / HF; the target is >= 1.0) and the model-FLOPs utilisation
against a float32 matmul peak measured in the same run.

Both models get the same loss: predicting tokens 1..255 of each row from those before.
The first loss of each is printed as a check that they compute the same function.

    python benchmarks/bench_gpt2_throughput.py [--steps 3] [--rounds 3] [--batch 4] [--threads 1] [--device cpu]

On a CPU the default is one thread (the machine may be shared); the matmul peak is
measured with the same thread count, before and after the timed rounds (the larger counts).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def matmul_peak(device: torch.device, n: int = 1024, reps: int = 20) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3, help="timed optimizer steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    peak = matmul_peak(device)

    from theorylab.models import TransformerConfig, build_model
    from theorylab.models.hf import to_hf

    cfg = TransformerConfig(d_vocab=65, n_ctx=256, d_model=384, n_heads=6, n_layers=6, act="gelu_tanh",
                            positional="learned", norm="layernorm", tied_embeddings=True, dropout=0.0)
    ours = build_model(cfg, seed=0).to(device).train()
    theirs = to_hf(ours, attn_implementation="sdpa").to(device).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 65, (args.batch, 257), generator=g).to(device)
    inp = x[:, :-1]

    first: dict[str, float] = {}

    def step_ours(opt):
        logits = ours(inp)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 65), inp[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        first.setdefault("theorylab", loss.item())

    def step_hf(opt):
        loss = theirs(input_ids=inp, labels=inp).loss  # HF shifts the labels itself
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        first.setdefault("hf", loss.item())

    opts = {"theorylab": torch.optim.AdamW(ours.parameters(), lr=1e-4),
            "hf": torch.optim.AdamW(theirs.parameters(), lr=1e-4)}
    steps = {"theorylab": step_ours, "hf": step_hf}
    for name in steps:  # warm-up
        for _ in range(2):
            steps[name](opts[name])
    times: dict[str, list[float]] = {n: [] for n in steps}
    for r in range(args.rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in order:
            sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                steps[name](opts[name])
            sync(device)
            times[name].append(time.perf_counter() - t)
    tokens = args.batch * 256 * args.steps
    tps = {n: tokens / statistics.median(v) for n, v in times.items()}
    spread = {n: (tokens / max(v), tokens / min(v)) for n, v in times.items()}
    ratios = [a / b for a, b in zip(times["hf"], times["theorylab"], strict=True)]  # per round
    n_params = sum(p.numel() for p in ours.parameters())
    # 6 N per token for the weights' forward and backward, plus attention's 12 L d T (PaLM's estimate)
    flops_per_token = 6 * n_params + 12 * cfg.n_layers * cfg.d_model * 256
    peak = max(peak, matmul_peak(device))
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch} x 256, "
          f"{n_params / 1e6:.2f}M params, {args.rounds} rounds of {args.steps} steps")
    print(f"first loss: theorylab {first['theorylab']:.6f}, hf {first['hf']:.6f} (same weights, same batch)")
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s (float32, 1024^3, best of two measurements)")
    for n in steps:
        mfu = tps[n] * flops_per_token / peak
        print(f"{n:10s} {tps[n]:10.0f} tokens/s (rounds {spread[n][0]:.0f}..{spread[n][1]:.0f})   MFU {100 * mfu:5.1f}%")
    print(f"ratio theorylab / hf = {tps['theorylab'] / tps['hf']:.3f} (per round {min(ratios):.3f}..{max(ratios):.3f};"
          " target >= 1.0)")


if __name__ == "__main__":
    main()
