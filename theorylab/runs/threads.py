"""Torch's CPU threads for a run: chosen from the work of one training step and the cores that are free.

Why.  torch's default uses one intra-op thread per core.  Each operation of a step is then split across
the threads and ends at a barrier where the threads wait for each other; when another process is busy
on one of the cores, the thread that shares that core is descheduled for a scheduler slice (ms) and
every other thread waits at every barrier.  A small model (``modular``: about 10 ms per step, hundreds
of operations) then ran 24x slower with 2 threads than with 1 on a 2-core machine with one other busy
process.  On free cores a small model gains little from a second thread (each operation is too short
to split), while a large one (``grokking``, ``lm`` with long contexts) gains up to the number of cores.

So :func:`choose_threads` gives one thread per :data:`FLOPS_PER_THREAD` of work per step, at most the
cores this process may use, and at most the cores that are idle right now (sampled from ``/proc/stat``
for :data:`SAMPLE_SECONDS`; ``os.getloadavg`` where there is no ``/proc``).  The idle sample is taken
only when the work asks for more than one thread, so small runs start at once.

A user's choice wins: ``threads=`` (``--threads``), else the ``OMP_NUM_THREADS`` environment variable
(the one torch itself reads at start-up).  :func:`set_threads` calls ``torch.set_num_threads`` for the
whole process and leaves it so (torch has no per-call thread count); the training loop calls it once
per training, never during one.

Numbers.  A thread count is not part of a run's identity, and for most models it does not change the
numbers (``modular`` and ``grokking`` runs are bit-identical with 1 and 2 threads, torch 2.13), but it
can: a reduction split across threads adds in another order (``lm``, ``induction`` and ``alpine`` runs'
parameters differ by up to 1e-4, 1e-6 and 1e-6 after 60, 30 and 30 steps with 1 vs 2 threads).  Runs are bit-identical for the same config, seed and thread
count; the count used is stored in the run's summary (``threads``) and returned in ``RunResult``.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from theorylab.errors import ConfigError

ENV_VAR = "OMP_NUM_THREADS"
# One thread per 2 GFLOP of estimated work per training step.  The modular preset (1.1e9 by the
# estimate below, ~10 ms per step) gets one thread; the grokking mainline (1.6e10) gets as many as are
# free.  Set where a second thread's gain on free cores outweighs the risk of a neighbour arriving:
# see benchmarks/bench_threads.py.
FLOPS_PER_THREAD = 2e9
SAMPLE_SECONDS = 0.1  # /proc/stat counts in 10 ms ticks: 10 ticks per core per sample
FREE_MARGIN = 0.25  # a core counts as free when at least 75% of it was idle in the sample


def check_threads(threads: Any, name: str = "threads") -> int | None:
    """``threads`` as a positive int (or None); one ConfigError line for anything else."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"{name}: expected a positive number of threads (1, 2, ...); got {threads!r}")
    return threads


def env_threads() -> int | None:
    """The thread count ``OMP_NUM_THREADS`` asks for (a positive integer), else None."""
    raw = os.environ.get(ENV_VAR, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a container's CPU quota (cgroup v2
    ``cpu.max`` or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, rounded up)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPU quota in cores, None when there is none (or no cgroup file to read)."""
    def read(path: str) -> str | None:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return None

    try:
        v2 = read(f"{root}/cpu.max")
        if v2 is not None:
            quota, period = v2.split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        q, p = read(f"{root}/cpu/cpu.cfs_quota_us"), read(f"{root}/cpu/cpu.cfs_period_us")
        if q is not None and p is not None and int(q) > 0:
            return int(q) / int(p)
    except ValueError:
        pass
    return None


def _cpu_ticks(cpus: set[int]) -> tuple[int, int]:
    """(idle, total) clock ticks of ``cpus`` so far, from ``/proc/stat``; idle includes iowait."""
    idle = total = 0
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            name, *fields = line.split()
            if int(name[3:]) not in cpus:
                continue
            v = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
            idle += v[3] + v[4]
            total += sum(v)
    return idle, total


def _own_cpu() -> float:
    """CPU seconds this process (all its threads) has used."""
    t = os.times()
    return t.user + t.system


def free_cores(seconds: float = SAMPLE_SECONDS) -> float:
    """Cores idle right now, in cores (0.0 .. :func:`usable_cores`): the idle share of this process's
    cores over ``seconds`` of ``/proc/stat``, plus what this process itself used meanwhile (its main
    thread sleeps, but torch's threads may still be spinning after their last operation: they are not
    a neighbour); without ``/proc``, the cores less the 1-minute load average."""
    cores = usable_cores()
    try:
        cpus = os.sched_getaffinity(0)
        i0, t0 = _cpu_ticks(cpus)
        w0, own0 = time.perf_counter(), _own_cpu()
        time.sleep(seconds)
        w1, own1 = time.perf_counter(), _own_cpu()
        i1, t1 = _cpu_ticks(cpus)
        if t1 > t0:
            own = (own1 - own0) / max(w1 - w0, 1e-9)
            return min(float(cores), len(cpus) * (i1 - i0) / (t1 - t0) + own)
    except (OSError, AttributeError, ValueError):
        pass
    try:
        return max(0.0, cores - os.getloadavg()[0])
    except OSError:  # pragma: no cover
        return float(cores)


def step_flops(model: Any, batch: Any) -> float:
    """Estimated FLOPs of one training step (forward and backward) of ``model`` on ``batch``: per token,
    6 x parameters + 6 x layers x context x d_model (Kaplan et al. 2020, Table 1, times 3 for the
    backward pass).  Tokens are the batch's ``[B, T]``."""
    x = batch.tokens if batch.tokens is not None else batch.inputs
    b, t = int(x.shape[0]), int(x.shape[1]) if x.dim() > 1 else 1
    n_params = sum(p.numel() for p in model.parameters())
    cfg = getattr(model, "cfg", None)
    attn = 6 * getattr(cfg, "n_layers", 0) * t * getattr(cfg, "d_model", 0)
    return float(b * t * (6 * n_params + attn))


def config_step_flops(cfg: Any) -> float:
    """:func:`step_flops` of a RunConfig's model (built on the meta device: no memory, no init) on
    ``train.batch_size`` sequences of the model's full context, or, for full-batch training, on the
    task's training set (the only case that builds the task)."""
    import torch

    from theorylab.models import Transformer
    from theorylab.tasks import Batch, make_task

    with torch.device("meta"):
        model = Transformer(cfg.model)
        if cfg.train.batch_size is not None:
            batch = Batch(tokens=torch.empty(cfg.train.batch_size, cfg.model.n_ctx, dtype=torch.long))
    if cfg.train.batch_size is None:
        batch = make_task(cfg.task, cfg.seed).train_batch(0, None)
    return step_flops(model, batch)


def _flops(work: Any) -> float:
    if isinstance(work, (int, float)) and not isinstance(work, bool):
        return float(work)
    if isinstance(work, (list, tuple)):
        return max((_flops(w) for w in work), default=0.0)
    return config_step_flops(work)


def choose_threads(work: Any, requested: int | None = None, *, free: float | None = None,
                   cores: int | None = None) -> int:
    """The intra-op thread count for a training whose step costs ``work``.

    ``work``: estimated FLOPs per training step (a number, see :func:`step_flops`), a RunConfig (then
    :func:`config_step_flops`) or a list of them (the largest counts); a config is only built when no count
    was requested.  ``requested`` (a positive int) is returned as is; else ``OMP_NUM_THREADS``
    when set.  Otherwise one thread per :data:`FLOPS_PER_THREAD` of work, at least 1, at most ``cores``
    (default :func:`usable_cores`) and at most the cores free now (``free``, default :func:`free_cores`,
    read only when the work asks for more than one thread; a core counts when 75% of it is idle).
    """
    req = check_threads(requested)
    if req is not None:
        return req
    env = env_threads()
    if env is not None:
        return env
    flops = _flops(work)
    want = min(max(1, int(flops // FLOPS_PER_THREAD)), cores if cores is not None else usable_cores())
    if want <= 1:
        return 1
    idle = free_cores() if free is None else free
    return max(1, min(want, math.floor(idle + FREE_MARGIN)))


def set_threads(work: Any, requested: int | None = None) -> int:
    """:func:`choose_threads`, then ``torch.set_num_threads`` with it for this process (left so); returns it."""
    import torch

    n = choose_threads(work, requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


__all__ = ["ENV_VAR", "FLOPS_PER_THREAD", "check_threads", "choose_threads", "config_step_flops", "env_threads",
           "free_cores", "set_threads", "step_flops", "usable_cores"]
