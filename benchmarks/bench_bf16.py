"""Mixed precision: tokens/s and model-FLOPs utilisation (MFU) of ``train.dtype=bf16`` against float32, same process.

The step is the training loop's own (``theorylab.runs.steppers`` with ``theorylab.runs.devices.precision``)
on the ``lm`` task, a GPT-2-shaped causal language model.  Rounds alternate float32 and bf16 so machine
noise hits both alike.  The FLOPs of a step are 6 N + 12 L T d per token (N non-embedding parameters,
L layers, T context, d width: Kaplan et al. 2020, section 2.1, and the attention term of Chowdhery et al.
2022, appendix B); MFU is achieved FLOP/s over the matmul peak of the same dtype measured on the same
device in the same run (float32 for the float32 run, bfloat16 for the bf16 run).

    python benchmarks/bench_bf16.py [--device cuda] [--size small|gpt2] [--steps 5] [--rounds 3]

``--size gpt2``: 6 layers, d_model 384, 6 heads, context 256 (nanoGPT's shakespeare_char), batch 64 (the
default on CUDA); ``small``: 2 layers, d_model 128, context 64, batch 16 (the default on a CPU, where
bfloat16 matmuls are emulated on most processors and bf16 is expected to be slower: the ratio there
says what a CPU user loses, the GPU figure is the one the option exists for).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

SIZES = {"small": dict(d=128, layers=2, heads=4, T=64, batch=16),
         "gpt2": dict(d=384, layers=6, heads=6, T=256, batch=64)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int = 10) -> float:
    """FLOP/s of an n x n matmul in ``dtype`` (the best of three timings)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(3):
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=sorted(SIZES), default=None)
    ap.add_argument("--steps", type=int, default=5, help="timed optimizer steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    size = SIZES[args.size or ("gpt2" if device.type == "cuda" else "small")]

    from theorylab.runs import build, build_run_config
    from theorylab.runs.steppers import make_optimizer, make_stepper

    def setup(dtype: str):
        cfg = build_run_config("lm", [f"task.seq_len={size['T']}", f"model.d_model={size['d']}",
                                      f"model.n_layers={size['layers']}", f"model.n_heads={size['heads']}",
                                      f"model.n_ctx={size['T'] + 1}", f"train.batch_size={size['batch']}",
                                      f"train.dtype={dtype}", f"train.device={device}"])
        task, model = build(cfg, device)
        stepper = make_stepper("single", cfg, [0], [task], [model], [make_optimizer(cfg.train, model.parameters())])
        return cfg, task, model, stepper

    runs = {name: setup(name) for name in ("float32", "bf16")}
    cfg, task, model, _ = runs["float32"]
    n_params = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    T, L, d = size["T"], size["layers"], size["d"]
    flops_per_token = 6 * n_params + 12 * L * T * d
    tokens_per_step = size["batch"] * T

    def timed(name: str) -> float:
        cfg, task, _, stepper = runs[name]
        batches = [task.train_batch(s, cfg.train.batch_size).to(device, torch.float32) for s in range(args.steps)]
        sync(device)
        t = time.perf_counter()
        for s, b in enumerate(batches):
            stepper.forward_backward([b], s)
            stepper.apply(cfg.train.lr)
        sync(device)
        return args.steps * tokens_per_step / (time.perf_counter() - t)

    for name in runs:  # warm-up (allocator, kernels)
        timed(name)
    tps: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name in runs:
            tps[name].append(timed(name))
    n_mm = 4096 if device.type == "cuda" else 512
    peaks = {"float32": matmul_peak(device, torch.float32, n_mm), "bf16": matmul_peak(device, torch.bfloat16, n_mm)}

    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"lm {L} layers d_model {d} context {T} batch {size['batch']}, {n_params / 1e6:.2f}M non-embedding "
          f"parameters, {flops_per_token / 1e6:.2f} MFLOP per token")
    print(f"matmul peak: float32 {peaks['float32'] / 1e12:.3f} TFLOP/s, bf16 {peaks['bf16'] / 1e12:.3f} TFLOP/s")
    med = {name: statistics.median(v) for name, v in tps.items()}
    for name in runs:
        mfu = med[name] * flops_per_token / peaks[name]
        print(f"{name:8s} {med[name]:12.0f} tokens/s (rounds: {', '.join(f'{v:.0f}' for v in tps[name])})  "
              f"MFU {mfu:.1%} of the {name} peak")
    print(f"ratio bf16 / float32 tokens/s: {med['bf16'] / med['float32']:.2f}x")


if __name__ == "__main__":
    main()
