"""Benchmark: training steps/s against torch's CPU thread count, with and without a busy neighbour.

For each config (the ``modular`` preset, and the ``grokking`` mainline as the larger one) and each
condition (``idle``: nothing started by this benchmark; ``busy``: one other process spinning on one
core, a Python loop or a one-thread matmul loop), ``theorylab.runs.train`` runs with 1, 2, ... threads
(up to the cores this process may use; the largest is torch's own default on most machines) and with
the default (``threads=None``: :func:`theorylab.runs.threads.choose_threads`, which reads the free cores
at that moment).  Rounds alternate between the thread counts and the median is reported, so a
neighbour's load hits all alike.  Steps/s are the loop's own (``RunResult.steps_per_second``: the
steps and the final evaluation, not building the task and model); each measurement runs about
``--seconds`` at the rate a short pilot of that thread count showed.

Target: in each condition the default is within 1.5x of the best thread count (default/best >= 0.67).

    python benchmarks/bench_threads.py [--configs modular grokking] [--rounds 3] [--seconds 2] [--busy python]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time

import torch

from theorylab.runs import build_run_config, train
from theorylab.runs.threads import ENV_VAR, free_cores, usable_cores

TARGET = 1.5


def spin(kind: str, stop) -> None:
    """The busy neighbour: one core's worth of work until ``stop`` is set."""
    if kind == "matmul":
        torch.set_num_threads(1)
        a = torch.randn(256, 256)
        while not stop.is_set():
            for _ in range(50):
                a = torch.tanh(a @ a)
    else:
        x = 0
        while not stop.is_set():
            for i in range(100_000):
                x += i


def config(name: str, steps: int):
    """The preset with ``steps`` steps, evaluated only at the end, no early stop."""
    return build_run_config(name, [f"train.steps={steps}", f"train.eval_every={steps}", "train.checkpoint_every=null",
                                   "train.early_stop_metric=null", "train.early_stop_value=null"], seed=0)


def rate(name: str, steps: int, threads: int | None) -> tuple[float, int]:
    r = train(config(name, steps), None, progress=False, threads=threads)
    return r.steps_per_second, r.threads


def measure(name: str, settings: list[int | None], rounds: int, seconds: float) -> dict:
    """Median steps/s per setting; the thread counts the default chose."""
    steps = {}
    for t in settings:  # pilot: how many steps make ``seconds`` at this thread count
        r, _ = rate(name, 3, t)
        steps[t] = max(3, min(500, round(r * seconds)))
    rates: dict[int | None, list[float]] = {t: [] for t in settings}
    chosen: list[int] = []
    for _ in range(rounds):
        for t in settings:
            r, n = rate(name, steps[t], t)
            rates[t].append(r)
            if t is None:
                chosen.append(n)
    return {"median": {t: statistics.median(v) for t, v in rates.items()}, "all": rates, "chosen": chosen}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", nargs="+", default=["modular", "grokking"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="target seconds per measurement")
    ap.add_argument("--busy", choices=["python", "matmul"], default="python", help="the neighbour's loop")
    ap.add_argument("--max-threads", type=int, default=0, help="largest thread count tried (0: the usable cores)")
    args = ap.parse_args()
    if os.environ.pop(ENV_VAR, None) is not None:
        print(f"note: {ENV_VAR} removed from this process's environment so that the default chooses")
    cores = usable_cores()
    counts = list(range(1, (args.max_threads or cores) + 1))
    settings: list[int | None] = [*counts, None]
    print(f"torch {torch.__version__}, {cores} usable cores, torch's default {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}; busy neighbour: {args.busy} loop")
    rows = []
    ctx = mp.get_context("spawn")
    for condition in ("idle", "busy"):
        stop, proc = ctx.Event(), None
        if condition == "busy":
            proc = ctx.Process(target=spin, args=(args.busy, stop), daemon=True)
            proc.start()
            time.sleep(1.0)
        try:
            for name in args.configs:
                free = free_cores(0.5)
                m = measure(name, settings, args.rounds, args.seconds)
                rows.append((condition, name, free, m))
                med = m["median"]
                best = max(med[t] for t in counts)
                print(f"  {condition:4s} {name:9s} free {free:.2f}: "
                      + ", ".join(f"{t} thr {med[t]:.1f}" for t in counts)
                      + f", default ({'/'.join(map(str, m['chosen']))} thr) {med[None]:.1f} steps/s; "
                      f"default/best {med[None] / best:.2f}", flush=True)
        finally:
            stop.set()
            if proc is not None:
                proc.join(5)
                if proc.is_alive():
                    proc.terminate()

    head = ["condition", "config", "free cores", *(f"{t} thread{'s' if t > 1 else ''}" for t in counts),
            "default (chose)", "default/best"]
    print("\nsteps/s, median of rounds (all rounds in brackets)\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    ok = True
    for condition, name, free, m in rows:
        med = m["median"]
        best = max(med[t] for t in counts)
        ratio = med[None] / best
        ok &= ratio >= 1 / TARGET
        cells = [f"{med[t]:.1f} [{', '.join(f'{x:.1f}' for x in m['all'][t])}]" for t in counts]
        print(f"| {condition} | {name} | {free:.2f} | " + " | ".join(cells)
              + f" | {med[None]:.1f} ({'/'.join(map(str, m['chosen']))}) | {ratio:.2f} |")
    print(f"\ndefault within {TARGET}x of the best thread count in every condition: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
