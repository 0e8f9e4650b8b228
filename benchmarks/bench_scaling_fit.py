"""Scaling-law fits on the public Chinchilla points: seconds for the CLI's default fit, against refining all
4,500 grid starts as Besiroglu et al. (2024, arXiv 2404.10102, section 2) did.

Data: the 245 points of epoch-research/analyzing-chinchilla ``data/svg_extracted_data.csv`` (Besiroglu et al.
2024; shipped as ``theorylab/measures/data/chinchilla_svg_extracted_data.csv``), Approach 3 on the 240 left after dropping the 5 highest losses, Approach 2 on the 123 that snap to the
9 Chinchilla budgets.  Timed (``theorylab.measures.scaling``):

- point fit: ``fit_approach3`` scoring the 4,500-start grid at once (numpy) and refining the best 64 starts
  (L-BFGS-B, analytic gradient, tight tolerances); median of 3;
- bootstrap: ``DEFAULT_BOOTSTRAP`` resamples (each refit from the full-data optimum), seconds per resample;
- Approach 2 with the same number of within-budget resamples; the whole CLI-like run (read, both fits with
  their bootstraps);
- baselines, same run: refining every grid start (a) with our analytic gradient and tolerances and (b) as
  Epoch's notebook did (scipy L-BFGS-B, finite-difference gradient, default tolerances).  Both are timed on a
  random (seeded) subset of starts and extrapolated to 4,500 (``--full`` refines all 4,500 with (a) and also
  checks that it reaches the best-64 optimum).

    python benchmarks/bench_scaling_fit.py [--csv PATH] [--subset 300] [--full]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from theorylab.measures import scaling as S


def find_csv(arg: str | None) -> Path:
    return Path(arg or os.environ.get("THEORYLAB_CHINCHILLA_CSV") or S.CHINCHILLA_CSV)


def timed(fn, reps: int = 1):
    out, times = None, []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", default=None)
    ap.add_argument("--subset", type=int, default=300, help="grid starts timed for the all-starts baseline")
    ap.add_argument("--epoch-subset", type=int, default=100, help="starts timed for the Epoch-style baseline")
    ap.add_argument("--full", action="store_true", help="refine all 4,500 starts (about 30-70 s on 2 cores)")
    args = ap.parse_args()
    path = find_csv(args.csv)
    nb = S.DEFAULT_BOOTSTRAP
    p = S.read_points(path, drop_highest=5)
    lN, lD, lL = np.log(p.N), np.log(p.D), np.log(p.loss)

    fit, t_point = timed(lambda: S.fit_approach3(p), reps=3)
    boot, t_boot = timed(lambda: S.fit_approach3(p, bootstrap=nb, seed=0))
    per_resample = (t_boot - t_point) / nb
    p_all = S.read_points(path)
    a2, t_a2 = timed(lambda: S.fit_approach2(p_all, S.CHINCHILLA_BUDGETS, bootstrap=nb, seed=0))

    def cli_like():
        q = S.read_points(path)
        return (S.fit_approach3(S.drop_highest_loss(q, 5), bootstrap=nb, seed=0),
                S.fit_approach2(q, S.CHINCHILLA_BUDGETS, bootstrap=nb, seed=0))

    _, t_cli = timed(cli_like)

    grid = S.approach3_grid()
    rng = np.random.default_rng(0)
    sub = grid[rng.choice(len(grid), size=min(args.subset, len(grid)), replace=False)]
    (_, sub_best), t_sub = timed(lambda: S._refine(sub, lN, lD, lL, 1e-3))
    t_all = t_sub * len(grid) / len(sub)

    def epoch_style():
        best = np.inf
        for x0 in grid[rng.choice(len(grid), size=args.epoch_subset, replace=False)]:
            r = minimize(S.huber_objective, x0, args=(lN, lD, lL, 1e-3), method="L-BFGS-B")
            best = min(best, r.fun)
        return best

    epoch_best, t_ep = timed(epoch_style)
    t_epoch = t_ep * len(grid) / args.epoch_subset

    print(f"data {path.name}: {len(p)} points for Approach 3 (5 highest losses dropped), {a2.n_points} for Approach 2")
    print(f"Approach 3 fit (best 64 of 4,500 starts refined): E {fit.E:.4f} A {fit.A:.1f} B {fit.B:.1f} "
          f"alpha {fit.alpha:.4f} beta {fit.beta:.4f} objective {fit.objective:.6e}; "
          f"D/N {float(fit.tokens_per_parameter(5.76e23)):.1f} at 5.76e23 FLOP")
    print(f"  bootstrap {nb} resamples, SE: " + ", ".join(f"{k} {v:.3g}" for k, v in boot.se.items()))
    print(f"Approach 2: a {a2.a:.4f} (95% CI {a2.ci['a'][0]:.3f}-{a2.ci['a'][1]:.3f}), b {a2.b:.4f}")
    print(f"point fit {t_point:.2f} s; bootstrap {t_boot:.1f} s for {nb} resamples ({per_resample * 1e3:.1f} ms each); "
          f"Approach 2 + {nb} resamples {t_a2:.2f} s; whole CLI-like run {t_cli:.1f} s")
    print(f"baseline (a) all 4,500 starts, analytic gradient: {t_sub:.1f} s for a random {len(sub)} "
          f"(best objective there {sub_best:.6e}) -> ~{t_all:.0f} s extrapolated; "
          f"ratio baseline / point fit: {t_all / t_point:.0f}x")
    print(f"baseline (b) Epoch-style (finite-difference gradient, default tolerances): {t_ep:.1f} s for a random "
          f"{args.epoch_subset} (best objective there {epoch_best:.6e}) -> ~{t_epoch:.0f} s for 4,500; "
          f"ratio baseline / point fit: {t_epoch / t_point:.0f}x")
    if args.full:
        full, t_full = timed(lambda: S.fit_approach3(p, refine=None))
        same = abs(full.objective - fit.objective) <= 1e-9 * fit.objective
        print(f"all 4,500 starts refined: {t_full:.1f} s, objective {full.objective:.9e} "
              f"({'the same optimum' if same else 'DIFFERENT optimum'} as the best 64: alpha {full.alpha:.6f} "
              f"beta {full.beta:.6f}); ratio {t_full / t_point:.0f}x")


if __name__ == "__main__":
    main()
