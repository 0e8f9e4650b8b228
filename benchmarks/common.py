"""What the benchmarks share: the device sync and the matmul peak each MFU is measured against."""

from __future__ import annotations

import time

import torch


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued kernels (a no-op on a CPU), so that a timer reads finished work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device | str, dtype: torch.dtype, n: int = 1024, reps: int = 10) -> float:
    """FLOP/s of an ``n x n`` by ``n x n`` matmul in ``dtype`` on ``device`` (2 n^3 per product; the best of three
    timings of ``reps`` products after a warm-up): the peak an MFU is a fraction of."""
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
