"""Mixed precision: tokens/s and model-FLOPs utilisation (MFU) of ``train.dtype=bf16`` against float32, same process.

The step is the training loop's own (``theorylab.runs.steppers`` with ``theorylab.runs.devices.precision``)
on the ``lm`` task, a GPT-2-shaped causal language model.  Rounds alternate float32 and bf16 so machine
noise hits both alike.  The FLOPs of a step are 6 N + 12 L T d per token (N non-embedding parameters,
L layers, T context, d width: Kaplan et al. 2020, section 2.1, and the attention term of Chowdhery et al.
2022, appendix B); MFU is achieved FLOP/s over the matmul peak of the same dtype measured on the same
device in the same run (float32 for the float32 run, bfloat16 for the bf16 run).

    python benchmarks/bench_bf16.py [--device cuda] [--size small|gpt2] [--steps 5] [--rounds 3]

``--size gpt2``: 6 layers, d_model 384, 6 heads, context 256 (nanoGPT's shakespeare_char), batch 64 (the
default on CUDA); ``small``: 2 layers, d_model 128, context 64, batch 16 (the default on a CPU; on a CPU
without bfloat16 instructions the matmuls are emulated and bf16 is expected to be slower, while on one
with AVX512-BF16 or AMX they run at about twice the float32 rate).

A third contender, ``bf16 weights``, is the other way to train in bfloat16 (Micikevicius et al. 2018 §3.1,
with bf16 in place of fp16): the model's weights held in bfloat16, so no cast happens inside the step,
float32 master weights in the optimizer, gradients copied to them and the updated masters rounded back
each step, the loss in float32.  It is written here, not in the training loop: the loop adopts it only
where it is measured faster than autocast (``train.dtype=bf16``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import matmul_peak, sync

SIZES = {"small": dict(d=128, layers=2, heads=4, T=64, batch=16),
         "gpt2": dict(d=384, layers=6, heads=6, T=256, batch=64)}






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
    from theorylab.tasks import token_cross_entropy

    def setup(dtype: str):
        cfg = build_run_config("lm", [f"task.seq_len={size['T']}", f"model.d_model={size['d']}",
                                      f"model.n_layers={size['layers']}", f"model.n_heads={size['heads']}",
                                      f"model.n_ctx={size['T'] + 1}", f"train.batch_size={size['batch']}",
                                      f"train.dtype={dtype}", f"train.device={device}"])
        task, model = build(cfg, device)
        stepper = make_stepper("single", cfg, [0], [task], [model], [make_optimizer(cfg.train, model.parameters())])
        return cfg, task, model, stepper

    class Bf16Weights:
        """bf16 weights with float32 masters: the stepper interface the timing loop calls."""

        def __init__(self, cfg, task, model):
            self.task, self.model = task, model.to(torch.bfloat16)
            self.master = [p.detach().float().clone().requires_grad_(True) for p in self.model.parameters()]
            self.opt = make_optimizer(cfg.train, self.master)

        def forward_backward(self, batches, step):
            for p in self.model.parameters():
                p.grad = None
            out = self.task.forward(self.model, batches[0])
            loss = token_cross_entropy(out.float(), batches[0].targets)  # the lm task's loss, in float32
            loss.backward()
            with torch.no_grad():
                for m, p in zip(self.master, self.model.parameters()):
                    m.grad = p.grad.float()

        def apply(self, lr):
            self.opt.step()
            with torch.no_grad():
                for m, p in zip(self.master, self.model.parameters()):
                    p.copy_(m)

    runs = {name: setup(name) for name in ("float32", "bf16")}
    c, t, m, _ = setup("float32")
    runs["bf16 weights"] = (c, t, m, Bf16Weights(c, t, m))
    cfg, task, model, _ = runs["bf16"]
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
        peak = "float32" if name == "float32" else "bf16"
        mfu = med[name] * flops_per_token / peaks[peak]
        print(f"{name:12s} {med[name]:12.0f} tokens/s (rounds: {', '.join(f'{v:.0f}' for v in tps[name])})  "
              f"MFU {mfu:.1%} of the {peak} peak")
    print(f"ratio bf16 (autocast) / float32 tokens/s: {med['bf16'] / med['float32']:.2f}x")
    print(f"ratio bf16 weights / bf16 autocast tokens/s: {med['bf16 weights'] / med['bf16']:.2f}x (the loop adopts "
          f"bf16 weights where this is clearly above 1)")


if __name__ == "__main__":
    main()
