"""Training throughput of the GPT-2 shape: theorylab's step against transformers.GPT2LMHeadModel, same process.

The model is GPT-2 shaped at the nanoGPT shakespeare_char size (6 layers, d_model 384, 6 heads, context 256,
vocabulary 65).  Both models start from the same weights (the HF one is made with ``to_hf``), see the same
batch and use AdamW.  Contenders, each timed over the same rounds, alternating order so that machine noise hits
all alike (the median round is reported):

* ``theorylab float32`` / ``theorylab bf16``: the training loop's step in ``train.dtype=float32`` and ``bf16``
  (``theorylab.runs.devices.precision``: bfloat16 autocast over float32 master weights, the loss in float32);
* ``... compiled``: the same with ``train.compile=true`` (``theorylab.runs.steppers.compiled``: torch.compile of
  forward, loss and backward, a fused AdamW; CUDA graphs on a GPU); ``--no-compile`` leaves them out;
* ``hf float32`` / ``hf bf16``: ``GPT2LMHeadModel`` (SDPA attention) with torch's AdamW, in float32 and under
  the same bfloat16 autocast.

Prints tokens/s, the ratios against HF (float32 and bf16) and compiled against eager, and the model-FLOPs
utilisation (MFU) against the float32 and bfloat16 matmul peaks measured in the same run.  FLOPs per token:
6 N + 12 L d T (N parameters, L layers, d width, T context: Kaplan et al. 2020 §2.1 and the attention term of
Chowdhery et al. 2022 appendix B).  The first loss of each contender is printed: the same function, so equal in
float32 and within bf16 rounding.

    python benchmarks/bench_gpt2_throughput.py [--batch 4] [--steps 3] [--rounds 3] [--threads 1]
                                               [--device cpu|cuda] [--no-compile]

``--batch`` takes a list (``64,256``: the issue's GPU sizes, the default on CUDA; 4 on a CPU, where one step
of batch 64 takes about 15 s).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import matmul_peak, sync

D_VOCAB, T = 65, 256






def cpu_bf16_instructions() -> str:
    """The bfloat16 instructions this CPU advertises (from /proc/cpuinfo), or 'none'."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        return "unknown"
    have = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return ", ".join(have) or "none"


def contenders(batch: int, device: torch.device, compile_too: bool):
    """name -> (step function, first-loss holder)."""
    from theorylab.models import TransformerConfig, build_model
    from theorylab.models.hf import to_hf
    from theorylab.runs.config import TrainConfig
    from theorylab.runs.devices import precision
    from theorylab.runs.steppers import compiled, make_optimizer

    cfg = TransformerConfig(d_vocab=D_VOCAB, n_ctx=T, d_model=384, n_heads=6, n_layers=6, act="gelu_tanh",
                            positional="learned", norm="layernorm", tied_embeddings=True, dropout=0.0)
    g = torch.Generator().manual_seed(0)
    inp = torch.randint(0, D_VOCAB, (batch, T), generator=g).to(device)
    out: dict = {}

    def ours(dtype: str, comp: bool):
        model = build_model(cfg, seed=0).to(device).train()
        opt = make_optimizer(TrainConfig(lr=1e-4, compile=comp), model.parameters())

        class Loss(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x):
                logits = self.model(x)
                return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, D_VOCAB), x[:, 1:].reshape(-1))

        loss_of = compiled(Loss(), device, 1) if comp else Loss()

        def step():
            opt.zero_grad(set_to_none=True)
            with precision(dtype, device):
                loss = loss_of(inp)
            loss.backward()
            opt.step()
            return loss

        return step, model

    def hf(dtype: str):
        model = to_hf(build_model(cfg, seed=0), attn_implementation="sdpa").to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            with precision(dtype, device):
                loss = model(input_ids=inp, labels=inp).loss  # HF shifts the labels itself
            loss.backward()
            opt.step()
            return loss

        return step, model

    out["theorylab float32"] = ours("float32", False)
    out["theorylab bf16"] = ours("bf16", False)
    if compile_too:
        out["theorylab float32 compiled"] = ours("float32", True)
        out["theorylab bf16 compiled"] = ours("bf16", True)
    out["hf float32"] = hf("float32")
    out["hf bf16"] = hf("bf16")
    n_params = sum(p.numel() for p in out["theorylab float32"][1].parameters())
    return {k: v[0] for k, v in out.items()}, n_params, cfg


def bench(batch: int, args, device: torch.device, peaks: dict[str, float]) -> None:
    import transformers

    transformers.logging.set_verbosity_error()  # its loss_type notice is not a result
    steps, n_params, cfg = contenders(batch, device, not args.no_compile)
    first, warm = {}, {}
    for name, fn in steps.items():  # warm-up (and compilation)
        t = time.perf_counter()
        first[name] = float(fn().detach())
        fn()
        sync(device)
        warm[name] = time.perf_counter() - t
    times: dict[str, list[float]] = {n: [] for n in steps}
    for r in range(args.rounds):
        for name in (list(steps) if r % 2 == 0 else list(reversed(steps))):
            sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                steps[name]()
            sync(device)
            times[name].append(time.perf_counter() - t)
    tokens = batch * T * args.steps
    tps = {n: tokens / statistics.median(v) for n, v in times.items()}
    flops_per_token = 6 * n_params + 12 * cfg.n_layers * cfg.d_model * T
    print(f"\nbatch {batch} x {T}, {n_params / 1e6:.2f}M params, {args.rounds} rounds of {args.steps} steps, "
          f"{flops_per_token / 1e6:.1f} MFLOP per token")
    print(f"{'contender':28s} {'tokens/s':>10s}  {'MFU fp32 peak':>13s}  {'MFU bf16 peak':>13s}  first loss  "
          f"warm-up s")
    for n in steps:
        achieved = tps[n] * flops_per_token
        print(f"{n:28s} {tps[n]:10.0f}  {100 * achieved / peaks['float32']:12.1f}%  "
              f"{100 * achieved / peaks['bfloat16']:12.1f}%  {first[n]:.6f}  {warm[n]:8.1f}")
    hf32, hf16 = tps["hf float32"], tps["hf bf16"]
    print("ratios (median rounds):")
    for n in steps:
        if n.startswith("theorylab"):
            print(f"  {n:28s} / hf float32 {tps[n] / hf32:5.2f}x   / hf bf16 {tps[n] / hf16:5.2f}x")
    if not args.no_compile:
        for dt in ("float32", "bf16"):
            print(f"  compiled / eager, {dt:7s}        {tps[f'theorylab {dt} compiled'] / tps[f'theorylab {dt}']:5.2f}x")
    best = max((n for n in steps if n.startswith("theorylab")), key=tps.get)
    if device.type == "cuda":
        print(f"  best theorylab ({best}) / hf bf16: {tps[best] / hf16:.2f}x (GPU target >= 1.5x; and >= 40% MFU at "
              f"batch 256)")
    else:
        print(f"  best theorylab ({best}) / hf float32: {tps[best] / hf32:.2f}x (CPU target >= 1.3x where bf16 "
              f"instructions exist); / hf bf16: {tps[best] / hf16:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3, help="timed optimizer steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", default=None, help="batch sizes, comma-separated (default: 4 on CPU, 64,256 on CUDA)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled contenders")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in (args.batch or ("64,256" if device.type == "cuda" else "4")).split(",")]
    n = 4096 if device.type == "cuda" else 1024
    peaks = {"float32": matmul_peak(device, torch.float32, n), "bfloat16": matmul_peak(device, torch.bfloat16, n)}
    where = torch.cuda.get_device_name(0) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} thread(s), bf16 instructions: {cpu_bf16_instructions()}"
    print(f"device {device} ({where}), torch {torch.__version__}")
    print(f"matmul peak ({n}^3, best of three): float32 {peaks['float32'] / 1e9:.1f} GFLOP/s, "
          f"bfloat16 {peaks['bfloat16'] / 1e9:.1f} GFLOP/s")
    for b in batches:
        bench(b, args, device, peaks)


if __name__ == "__main__":
    main()
