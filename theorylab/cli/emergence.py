"""The emergence verbs: is a metric's rise over a scale axis sharp or smooth, and is a jump made by the metric?

    theorylab emergence fit FILE.csv [--x N] [--metric exact_match] [--continuous accuracy,edit_distance]
                                     [--per-token accuracy --length 8] [--holdout 2] [--bootstrap 200] [--json]
    theorylab emergence giant [--c 2] [--parts 900,17800]
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from theorylab.cli.app import JSON_OPT, MEASURES, Group, app, console, emit
from theorylab.errors import ConfigError

emergence_app = typer.Typer(cls=Group, help="Emergence: fit | giant.", no_args_is_help=True,
                            context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(emergence_app, name="emergence", rich_help_panel=MEASURES)


def _names(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _fit_dict(f) -> dict:
    return f.to_dict() | {"smooth_aic": f.smooth.aic, "sharp_aic": f.sharp.aic}


@emergence_app.command("fit")
def fit_cmd(
    path: Path = typer.Argument(..., help="CSV with a header row: the scale axis and one column per metric"),
    x: str = typer.Option("N", "--x", help="the scale column (parameters, tokens, steps; > 0)"),
    metric: str = typer.Option("exact_match", "--metric", help="the metric whose rise is judged"),
    continuous: str | None = typer.Option(None, "--continuous", help="continuous re-scorings of the same outputs, "
                                          "comma-separated columns (e.g. accuracy,edit_distance,answer_log_prob): "
                                          "each judged the same way"),
    per_token: str | None = typer.Option(None, "--per-token", help="per-token accuracy column: with --length, test "
                                         "whether exact match is p^L (Schaeffer et al. 2023)"),
    length: int | None = typer.Option(None, "--length", help="answer length L in tokens, for --per-token"),
    tol: float = typer.Option(0.05, "--tol", help="with --per-token: largest |metric - p^L| still 'predicted'"),
    holdout: int = typer.Option(2, "--holdout", help="largest-x points held out of the extrapolation test"),
    bootstrap: int = typer.Option(200, "--bootstrap", help="resamples for the transition point's interval (0: none; "
                                  "else at least 20)"),
    min_step: float = typer.Option(0.0, "--min-step", help="smallest rise (in the metric's units) that can be called a "
                                   "step, e.g. a few standard errors of an accuracy"),
    seed: int = typer.Option(0, "--seed", help="seed of the bootstrap's generator"),
    as_json: bool = JSON_OPT,
) -> None:
    """Smooth against sharp (a line in log x or a power-law approach, against a logistic step in log x) for a
    metric over a scale axis, with the transition point's bootstrap interval; optionally the same for
    continuous re-scorings and Schaeffer et al.'s p^L test."""
    from theorylab.measures.emergence import MIN_BOOTSTRAP, compare_fits, mirage, read_columns

    if (per_token is None) != (length is None):
        raise ConfigError("--per-token and --length go together: the p^L test needs the per-token accuracy column "
                          "and the answer length")
    if length is not None and length < 1:
        raise ConfigError(f"--length: a positive number of tokens (got {length})")
    if holdout < 1:
        raise ConfigError(f"--holdout: at least 1 (got {holdout})")
    if bootstrap < 0 or 0 < bootstrap < MIN_BOOTSTRAP:
        raise ConfigError(f"--bootstrap: give 0 (no interval) or at least {MIN_BOOTSTRAP} resamples (got {bootstrap})")
    if min_step < 0:
        raise ConfigError(f"--min-step: a size >= 0 in the metric's units (got {min_step})")
    if not 0 < tol < 1:
        raise ConfigError(f"--tol: must lie in (0, 1) (got {tol})")
    cont = _names(continuous)
    for name in (metric, *cont, *([per_token] if per_token else [])):
        if name.strip().lower() == x.strip().lower():
            raise ConfigError(f"{name!r} is the scale axis (--x); judge another column")
    if metric.strip().lower() in [cc.lower() for cc in cont]:
        raise ConfigError(f"--continuous: {metric!r} is the judged metric itself; list its re-scorings")
    cols = read_columns(path, list(dict.fromkeys([x, metric, *cont, *([per_token] if per_token else [])])))
    xs = cols[x]
    out: dict = {"file": str(path), "x": x, "n_points": int(xs.size), "metric": metric,
                 "fit": _fit_dict(compare_fits(xs, cols[metric], holdout=holdout, bootstrap=bootstrap, seed=seed,
                                                min_step=min_step))}
    out["continuous"] = {c: _fit_dict(compare_fits(xs, cols[c], holdout=holdout, bootstrap=0, min_step=min_step))
                         for c in cont}
    if per_token:
        r = mirage(xs, cols[per_token], cols[metric], int(length), tol=tol, holdout=holdout, bootstrap=0)
        out["mirage"] = {"metric_induced": r.metric_induced, "predicted_error": r.predicted_error,
                         "per_token_sharp": r.per_token.sharp_wins, "length": length, "tol": tol}
    emit(out, as_json, lambda: _show(out))


def _show(out: dict) -> None:
    from rich.table import Table

    c = console()
    t = Table("metric", "judged", "ΔAIC", "extrap. error", "smooth fit", "step x0 [95% CI]", "width",
              title=f"{out['file']}: {out['n_points']} points over {out['x']}",
              caption="ΔAIC = AIC(smooth) - AIC(step), > 10 favours the step; extrap. error: the smooth fit of the "
                      "smaller x at the held-out larger x; width in decades of x")

    notes = []

    def row(name: str, f: dict) -> None:
        ci = f.get("x0_ci") or [math.nan, math.nan]
        ci_s = f" [{ci[0]:.4g}, {ci[1]:.4g}]" if all(math.isfinite(v) for v in ci) else ""
        step = f["sharp_wins"]  # a midpoint and a width describe a step; for a smooth metric they mean nothing
        t.add_row(name, "step" if step else "smooth", f"{f['delta_aic']:.1f}", f"{f['holdout_error_smooth']:.4g}",
                  f["smooth"]["kind"], f"{f['x0']:.4g}{ci_s}" if step else "-",
                  f"{f['width_decades']:.3g}" if step else "-")
        notes.extend(f"{name}: {n}" for n in f.get("notes", []))

    row(out["metric"], out["fit"])
    for name, f in out["continuous"].items():
        row(name, f)
    c.print(t)
    for n in notes:
        c.print(f"  note: {n}")
    m = out.get("mirage")
    if m:
        verdict = "predicts" if m["predicted_error"] <= m["tol"] else "does NOT predict"
        c.print(f"p^{m['length']} {verdict} {out['metric']}: largest difference {m['predicted_error']:.4f} "
                f"(tolerance {m['tol']}); per-token accuracy judged {'a step' if m['per_token_sharp'] else 'smooth'}: "
                f"{'metric-induced' if m['metric_induced'] else 'not shown to be metric-induced'}")


@emergence_app.command("giant")
def giant_cmd(
    c: list[float] = typer.Option([], "--c", help="mean degree of an Erdős–Rényi graph (repeatable)"),
    parts: str | None = typer.Option(None, "--parts", help="bipartite part sizes a,b (e.g. 900,17800: Lubana et "
                                     "al.'s entities and property values)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Random-graph thresholds: the giant-component fraction S of G(n, c/n) (S = 1 - exp(-cS)) and the critical
    edge density 1/sqrt(ab) of a bipartite random graph."""
    from theorylab.measures.emergence import bipartite_critical_density, er_giant_fraction

    if not c and parts is None:
        raise ConfigError("give --c (a mean degree) or --parts a,b (bipartite part sizes)")
    out: dict = {"giant": [{"c": float(v), "S": er_giant_fraction(float(v))} for v in c]}
    if parts is not None:
        try:
            a, b = (int(v) for v in parts.split(","))
        except ValueError:
            raise ConfigError(f"--parts: two whole numbers a,b (got {parts!r})") from None
        p_c = bipartite_critical_density(a, b)
        out["bipartite"] = {"parts": [a, b], "critical_density": p_c, "critical_edges": p_c * a * b}

    def show() -> None:
        con = console()
        for g in out["giant"]:
            con.print(f"c = {g['c']:g}: giant component fraction S = {g['S']:.6f}")
        if "bipartite" in out:
            bp = out["bipartite"]
            con.print(f"bipartite {bp['parts'][0]} x {bp['parts'][1]}: critical density {bp['critical_density']:.4g} "
                      f"({bp['critical_edges']:.4g} edges)")

    emit(out, as_json, show)
