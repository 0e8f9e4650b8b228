"""The scaling verbs: fit scaling laws to a table of runs, and run a scaling sweep.

    theorylab scaling fit FILE.csv [--approach 3|2|kaplan|all] [--budgets 6e18,1e19,...] [--drop-highest 5] [--json]
    theorylab scaling sweep [--task lm|markov] [--sizes 1.5e3:1e5:5] [--tokens 6e4:1e6:4] [--budgets ...] [--out DIR]
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from theorylab.cli.app import DEVICE_HELP, JSON_OPT, MEASURES, Group, app, console, emit, parse_threads, store
from theorylab.errors import ConfigError, RunFailedError

scaling_app = typer.Typer(cls=Group, help="Scaling laws: fit | sweep.", no_args_is_help=True,
                          context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(scaling_app, name="scaling", rich_help_panel=MEASURES)

APPROACHES = ("3", "2", "kaplan", "all")


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated numbers such as 6e18,1e19 (got {text!r})") from None
    if not vals or any(not (math.isfinite(v) and v > 0) for v in vals):
        raise ConfigError(f"{option}: every value must be a positive finite number (got {text!r})")
    return vals


def _check_bootstrap(bootstrap: int) -> None:
    from theorylab.measures.scaling import MIN_BOOTSTRAP  # imported here: scipy is slow to load at start-up

    if bootstrap < 0 or 0 < bootstrap < MIN_BOOTSTRAP:
        raise ConfigError(f"--bootstrap: give 0 (no intervals) or at least {MIN_BOOTSTRAP} resamples (got {bootstrap})")


def _value(raw: str):
    """A JSON value (number, list, true/false), else the text itself."""
    import json

    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _range(text: str, option: str) -> tuple[float, float, int]:
    """``lo:hi:count`` (log-spaced)."""
    parts = text.split(":")
    try:
        lo, hi, k = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise ConfigError(f"{option}: expected lo:hi:count, e.g. 1.5e3:1e5:5 (got {text!r})") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi and k >= 1):
        raise ConfigError(f"{option}: need 0 < lo <= hi and count >= 1 (got {text!r})")
    return lo, hi, k


def fits(p, approach: str, budgets: list[float] | None, bootstrap: int, seed: int, tol: float,
         keep_going: bool = False) -> dict:
    """The requested fits of the points ``p`` as plain dicts.  With ``keep_going`` a fit that cannot be made
    (e.g. Approach 2 when every budget's parabola opens downward) is reported as ``{"error": ...}`` and the
    others still run; without it, its ConfigError propagates."""
    from theorylab.measures.scaling import fit_approach2, fit_approach3, fit_kaplan_n, fit_kaplan_nd

    def approach3() -> dict:
        f3 = fit_approach3(p, bootstrap=bootstrap, seed=seed)
        d = f3.to_dict()
        try:
            d["allocation"] = [{"C": c, "N_opt": float(n), "D_opt": float(dd), "tokens_per_parameter": float(dd / n)}
                               for c in _allocation_budgets(p)
                               for n, dd in [tuple(x.item() for x in f3.optimal_allocation(c))]]
        except ConfigError as err:  # an exponent at 0: the loss does not fall with N or D; the fit still stands
            d["allocation_error"] = str(err)
        return d

    makers = {"approach3": approach3,
              "approach2": lambda: fit_approach2(p, budgets=budgets, tol=tol, bootstrap=bootstrap, seed=seed).to_dict(),
              "kaplan": lambda: fit_kaplan_nd(p, bootstrap=min(bootstrap, 200), seed=seed).to_dict(),
              # Kaplan's L(N) reads loss against N alone: meant for runs not limited by data (Kaplan et al. eq. 1.1)
              "kaplan_n": lambda: fit_kaplan_n(p.N, p.loss, bootstrap=min(bootstrap, 200), seed=seed).to_dict()}
    keys = {"3": ["approach3"], "2": ["approach2"], "kaplan": ["kaplan", "kaplan_n"], "all": list(makers)}[approach]
    out: dict = {"n_points": len(p)}
    for key in keys:
        try:
            out[key] = makers[key]()
        except ConfigError as err:
            if not keep_going:
                raise
            out[key] = {"error": str(err)}
    if approach == "3" and "error" not in out["approach3"]:  # the flat keys for the main approach
        out.update({k: out["approach3"][k] for k in ("E", "A", "B", "alpha", "beta")})
    elif approach == "2" and "error" not in out["approach2"]:
        out.update({k: out["approach2"][k] for k in ("a", "b")})
        out["n_points"] = out["approach2"]["n_points"]  # the points the fit kept (snapped to a budget)
    return out


def _allocation_budgets(p) -> list[float]:
    import numpy as np

    c = float(np.max(p.C))
    return sorted({c, 10 * c, 100 * c} | ({5.76e23} if c > 1e18 else set()))


def _show(out: dict) -> None:
    from rich.table import Table

    c = console()
    c.print(f"{out['n_points']} points")
    for key, title in (("approach3", "Approach 3: L = E + A/N^alpha + B/D^beta (Huber delta 1e-3 on log L)"),
                       ("approach2", "Approach 2 (IsoFLOP): N* ~ C^a, D* ~ C^b"),
                       ("kaplan", "Kaplan et al. 2020: L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D"),
                       ("kaplan_n", "Kaplan et al. 2020: L(N) = (N_c/N)^alpha_N (every point, whatever its D)")):
        f = out.get(key)
        if not f:
            continue
        if "error" in f:
            c.print(f"{title}: not fitted: {f['error']}" + (f"; {f['hint']}" if f.get("hint") else ""))
            continue
        t = Table("parameter", "value", "95% CI", title=title)
        for k, v in f.items():
            if isinstance(v, dict) and "value" in v:
                ci = v.get("ci") or [None, None]
                ci_s = "" if ci[0] is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]"
                t.add_row(k, f"{v['value']:.6g}", ci_s)
        c.print(t)
        if key == "approach2":
            c.print(f"  grouping: {f.get('grouping', '')}")
            for v in f.get("vertices", []):
                c.print(f"  budget {v['C']:.3g}: N* {v['N_star']:.4g}, D* {v['D_star']:.4g} ({v['n_points']} points)")
        if key == "approach3":
            if f.get("allocation_error"):
                c.print(f"  no compute-optimal allocation: {f['allocation_error']}")
            for a in f.get("allocation", []):
                c.print(f"  C = {a['C']:.3g} FLOP: N_opt {a['N_opt']:.4g}, D_opt {a['D_opt']:.4g}, "
                        f"{a['tokens_per_parameter']:.4g} tokens per parameter")


@scaling_app.command("fit")
def fit_cmd(
    path: Path = typer.Argument(..., help="CSV with columns N, loss and D or C (C = 6ND); the public Chinchilla "
                                          "file's `Model Size` / `Training FLOP` columns are read as N / C; "
                                          "`chinchilla` (when no such file is here) = the public points theorylab "
                                          "ships"),
    approach: str = typer.Option("3", "--approach", help="3 (parametric fit), 2 (IsoFLOP), kaplan (L(N, D) and L(N)), "
                                 "or all"),
    budgets: str | None = typer.Option(None, "--budgets", help="Approach 2: compute budgets (FLOP), comma-separated; "
                                       "points within --tol of one are snapped to it; none = group by compute"),
    tol: float = typer.Option(0.10, "--tol", help="Approach 2: relative distance within which C snaps to a budget"),
    drop_highest: int = typer.Option(0, "--drop-highest", help="drop the k highest-loss rows first (Besiroglu et "
                                     "al. drop 5 of the public Chinchilla points)"),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="bootstrap resamples for the intervals (0 = none)"),
    seed: int = typer.Option(0, "--seed", help="seed of the bootstrap's generator"),
    as_json: bool = JSON_OPT,
) -> None:
    """Fit scaling laws (Hoffmann et al. 2022 Approaches 2 and 3; Kaplan et al. 2020) to a CSV of runs."""
    from theorylab.measures.scaling import CHINCHILLA_CSV, drop_highest_loss, read_points

    if approach not in APPROACHES:
        raise ConfigError(f"--approach: {approach!r} is not allowed; allowed: {', '.join(APPROACHES)}")
    if budgets is not None and approach not in ("2", "all"):
        raise ConfigError("--budgets: the budgets are Approach 2's (--approach 2 or all); Approach 3 and Kaplan's "
                          "law fit every point")
    _check_bootstrap(bootstrap)
    if drop_highest < 0:
        raise ConfigError(f"--drop-highest: must be >= 0 (got {drop_highest})")
    if not 0 < tol < 1:
        raise ConfigError(f"--tol: must lie in (0, 1) (got {tol})")
    b = _floats(budgets, "--budgets")
    if str(path) == "chinchilla" and not path.exists():
        path = CHINCHILLA_CSV
    rows = read_points(path)
    p = drop_highest_loss(rows, drop_highest)
    out = fits(p, approach, b, bootstrap, seed, tol)
    out.update({"file": str(path), "n_rows": len(rows), "dropped": len(rows) - len(p)})
    emit(out, as_json, lambda: _show(out))


@scaling_app.command("sweep")
def sweep_cmd(
    task: str = typer.Option("lm", "--task", help="the source: lm (the PCFG corpus) or markov (an order-2 chain)"),
    sizes: str | None = typer.Option(None, "--sizes", help="grid: parameter counts lo:hi:count (log-spaced; the "
                                     "nearest models of the ladder; default 1.5e3:1.1e5:5)"),
    tokens: str | None = typer.Option(None, "--tokens", help="grid: token budgets lo:hi:count (log-spaced; default "
                                      "3.2e4:2e6:5)"),
    budgets: str | None = typer.Option(None, "--budgets", help="IsoFLOP design instead of the grid: compute budgets "
                                       "(FLOP, 6ND), comma-separated, e.g. 1e11,3e11,1e12"),
    per_budget: int = typer.Option(5, "--per-budget", help="IsoFLOP: sizes per budget"),
    width: float = typer.Option(4.0, "--width", help="IsoFLOP: sizes within N0/width..N0*width of N0 = "
                                "sqrt(C/(6*tokens-per-param))"),
    tokens_per_param: float = typer.Option(20.0, "--tokens-per-param", help="IsoFLOP: the guess of D/N at the "
                                           "optimum that centres the sizes (Chinchilla's 20)"),
    task_set: list[str] | None = typer.Option(None, "--set", help="a field of the source, task.FIELD=VALUE "
                                              "(repeatable; e.g. --set task.vocab=8 for markov); see `theorylab "
                                              "tasks lm|markov`"),
    seed: int = typer.Option(0, "--seed", help="the runs' seed"),
    batch_size: int = typer.Option(8, "--batch-size", help="windows per step (fewer for small token budgets, "
                                   "so that every run takes at least --min-steps steps)"),
    min_steps: int = typer.Option(500, "--min-steps", help="the fewest optimizer steps a run may take (fewer "
                                  "only where one window a step already exceeds the tokens)"),
    lr: float = typer.Option(3e-3, "--lr", help="peak learning rate (AdamW; warmup 5%, cosine to 10% at D)"),
    n_test: int = typer.Option(512, "--n-test", help="held-out windows each run is evaluated on"),
    out_dir: Path | None = typer.Option(None, "--out", help="write points.csv, fit.json and the figures here"),
    bootstrap: int = typer.Option(200, "--bootstrap", help="bootstrap resamples for the fits' intervals"),
    backend: str = typer.Option("local", "--backend", help="inprocess | local | ray"),
    workers: int | None = typer.Option(None, "--workers", help="pool size (default: cores)"),
    threads: str | None = typer.Option(None, "--threads", help="torch CPU threads of each worker (default 1)"),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    force: bool = typer.Option(False, "--force", help="retrain runs even if finished ones are stored"),
    plan_only: bool = typer.Option(False, "--plan", help="print the plan (sizes, tokens, FLOP) and train nothing"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    as_json: bool = JSON_OPT,
) -> None:
    """Train a scaling sweep on a source with a known entropy rate and fit it (Approach 3, and Approach 2 for
    an IsoFLOP design)."""
    from theorylab.sweep import BACKENDS
    from theorylab.sweep.scaling import Training, collect, grid_plan, isoflop_plan, run_plan, task_config

    if backend not in BACKENDS:
        raise ConfigError(f"--backend: {backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: {workers} is not allowed; give a count >= 1")
    for name, v in (("--batch-size", batch_size), ("--n-test", n_test), ("--min-steps", min_steps)):
        if v < 1:
            raise ConfigError(f"{name}: must be >= 1 (got {v})")
    if not lr > 0:
        raise ConfigError(f"--lr: must be positive (got {lr})")
    _check_bootstrap(bootstrap)
    n_threads = parse_threads(threads)
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out: {out_dir} exists and is not a directory")
    if out_dir is not None and not plan_only:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)  # before training: a bad folder is bad input, not a lost sweep
        except OSError as err:
            raise ConfigError(f"--out: cannot create {out_dir} ({err.strerror or err})") from None
    tr = Training(batch_size=batch_size, lr=lr, device=device or "cpu", min_steps=min_steps)
    fields = {"n_test": n_test}
    for item in task_set or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.startswith("task.") or len(key) <= 5:
            raise ConfigError(f"--set: expected task.FIELD=VALUE (got {item!r})")
        fields[key[5:]] = _value(raw)
    tcfg = task_config(task, **fields)
    b = _floats(budgets, "--budgets")
    if b is not None and (sizes is not None or tokens is not None):
        raise ConfigError("--budgets: an IsoFLOP design picks the sizes and tokens itself (--per-budget, --width, "
                          "--tokens-per-param); leave out --sizes and --tokens, or --budgets for a grid")
    if b is not None:
        plan = isoflop_plan(tcfg, b, per_budget=per_budget, width=width, tokens_per_param=tokens_per_param,
                            seed=seed, training=tr)
    else:
        plan = grid_plan(tcfg, _range(sizes or "1.5e3:1.1e5:5", "--sizes"), _range(tokens or "3.2e4:2e6:5", "--tokens"),
                         seed=seed, training=tr)
    if device is not None:
        from theorylab.sweep import on_device

        on_device(plan.configs()[:1], device)  # a device this machine lacks: one line, before anything runs
    if plan_only:
        rows = [r.row() for r in plan.runs]
        out = {"design": plan.design, "budgets": plan.budgets, "runs": rows, "notes": plan.notes,
               "total_flop_6ND": sum(r["C"] for r in rows)}

        def human_plan():
            from rich.table import Table

            t = Table("run", "N", "N non-emb.", "D", "C = 6ND", "C exact", title=f"{plan.design} plan")
            for r in rows:
                t.add_row(r["name"], f"{r['N']:,}", f"{r['N_non_embedding']:,}", f"{r['D']:,}", f"{r['C']:.3g}",
                          f"{r['C_exact']:.3g}")
            console().print(t)
            console().print(f"{len(rows)} runs, {out['total_flop_6ND']:.3g} FLOP (6ND) in all")
            for n in plan.notes:
                console().print(f"note: {n}")

        emit(out, as_json, human_plan)
        return
    st = store()
    res = run_plan(plan, st, backend=backend, workers=workers, progress=not quiet and not as_json, force=force,
                   threads=n_threads)
    by_name = dict(zip([r.name for r in plan.runs], res.config_run_ids))
    losses = {name: res.metrics.get(rid, {}).get("test/loss", math.nan) for name, rid in by_name.items()}
    from theorylab.sweep.scaling import floor_of

    floor = rate = None
    for m in res.metrics.values():
        f, h = floor_of(m)
        if math.isfinite(f):
            floor, rate = f, h
            break
    p, rows = collect(plan, losses)
    for r in rows:
        r["run_id"] = by_name[r["name"]]
    out = fits(p, "all" if plan.design == "isoflop" else "3", plan.budgets or None, bootstrap, seed, 0.10,
               keep_going=True) if len(p) >= 6 else {"n_points": len(p), "note": "fewer than 6 finished runs: no fit"}
    out.update({"design": plan.design, "task": task, "floor": floor, "entropy_rate": rate, "runs": rows,
                "notes": plan.notes,
                "trained": len(res.trained), "reused": len(res.reused), "wall_seconds": res.wall_seconds})
    if "error" in out.get("approach2", {}):
        out["approach2"]["hint"] = ("a budget whose parabola opens downward or has its vertex outside the sizes "
                                    "tried has its optimum elsewhere: centre the sizes with --tokens-per-param "
                                    "(the fitted Approach 3 allocation suggests a value) or widen --width")
    if "value" in out.get("approach3", {}).get("E", {}) and floor is not None:
        out["E_minus_floor"] = out["approach3"]["E"]["value"] - floor
    if out_dir is not None:
        _write_outputs(out_dir, rows, out, p, plan, floor)
        out["out"] = str(out_dir)

    def human():
        from rich.table import Table

        t = Table("run", "N", "D", "C = 6ND", "test loss", title=f"{plan.design} sweep on {task}")
        for r in rows:
            t.add_row(r["name"], f"{r['N']:,}", f"{r['D']:,}", f"{r['C']:.3g}", f"{r['loss']:.4f}")
        console().print(t)
        console().print(f"{len(rows)} runs ({len(res.trained)} trained, {len(res.reused)} reused) in "
                        f"{res.wall_seconds:.1f}s")
        if floor is not None:
            console().print(f"the source's floor for these windows {floor:.4f} nats/token (entropy rate {rate:.4f})")
        if "n_points" in out and ("approach3" in out or "approach2" in out):
            _show(out)
        if "E_minus_floor" in out:
            console().print(f"fitted E - floor = {out['E_minus_floor']:+.4f} nats")
        if out_dir is not None:
            console().print(f"wrote {out_dir}/points.csv, fit.json and figures")

    emit(out, as_json, human)
    if not res.ok:
        raise RunFailedError("runs failed: " + "; ".join(f"{k}: {v}" for k, v in res.errors.items()))


def _write_outputs(out_dir: Path, rows, out, p, plan, floor) -> None:
    import json

    from theorylab.cli.app import _finite
    from theorylab.figures.scaling import loss_vs_compute, loss_vs_params, residuals
    from theorylab.sweep.scaling import write_csv

    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "points.csv")
    (out_dir / "fit.json").write_text(json.dumps(_finite({k: v for k, v in out.items() if k != "runs"}), indent=1,
                                                 default=str))
    predict = allocation = None
    if "E" in out.get("approach3", {}):
        from theorylab.measures.scaling import law_functions

        predict, allocation = law_functions(*(out["approach3"][k]["value"] for k in ("E", "A", "B", "alpha", "beta")))
    budgets = [r["budget"] for r in rows if r["kept"]] if plan.budgets else None
    figs = {"loss_vs_compute": loss_vs_compute(p.N, p.D, p.loss, budgets=budgets, predict=predict,
                                               allocation=allocation, floor=floor)}
    if plan.design == "grid":
        figs["loss_vs_params"] = loss_vs_params(p.N, p.D, p.loss, predict=predict, floor=floor)
    if predict is not None:
        figs["residuals"] = residuals(p.N, p.D, p.loss, predict)
    import matplotlib.pyplot as plt

    for name, fig in figs.items():
        fig.savefig(out_dir / f"{name}.png", dpi=110)
        plt.close(fig)
