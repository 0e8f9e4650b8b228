"""The claims verbs: ``claims``, ``check``, ``report``."""

from __future__ import annotations

import sys
import time

import typer

from theorylab.cli.app import (
    CLAIMS,
    DEVICE_HELP,
    JSON_OPT,
    SEEDS_HELP,
    app,
    console,
    emit,
    parse_seeds,
    parse_threads,
    store,
)
from theorylab.errors import ConfigError, RunFailedError, TheoryLabError


@app.command("claims", rich_help_panel=CLAIMS)
def claims_cmd(as_json: bool = JSON_OPT) -> None:
    """List claims: id, citation, statement, tiers and the last verdict."""
    from theorylab.claims import claim_ids, get_claim
    from theorylab.claims.engine import results

    last: dict[str, object] = {}
    for r in results(store()):
        if r.claim_id not in last or r.created > last[r.claim_id].created:  # type: ignore[attr-defined]
            last[r.claim_id] = r
    rows = []
    for cid in claim_ids():
        c = get_claim(cid)
        r = last.get(cid)
        rows.append({"id": cid, "title": c.title, "citation": c.citation.short(), "arxiv": c.citation.arxiv,
                     "statement": c.statement, "tiers": list(c.tiers), "seeds": dict(c.seeds),
                     "rule": c.rule.describe(),
                     "last_verdict": None if r is None else r.verdict,  # type: ignore[attr-defined]
                     "last_tier": None if r is None else r.tier})  # type: ignore[attr-defined]

    def human():
        from rich.markup import escape
        from rich.table import Table

        t = Table("id", "citation", "statement", "tiers", "last verdict", show_lines=True)
        for x in rows:
            lv = "" if x["last_verdict"] is None else f"{x['last_verdict']} ({x['last_tier']})"
            t.add_row(*(escape(v) for v in (x["id"], x["citation"], x["statement"], " ".join(x["tiers"]), lv)))
        console().print(t)

    emit({"claims": rows}, as_json, human)


@app.command("check", rich_help_panel=CLAIMS)
def check_cmd(
    ids: list[str] | None = typer.Argument(None, help="claim ids (see `theorylab claims`)"),
    all_: bool = typer.Option(False, "--all", help="check every registered claim"),
    tier: str = typer.Option("quick", "--tier", help="smoke | quick | full"),
    seeds: str | None = typer.Option(None, "--seeds", help=SEEDS_HELP + " (default: the claim's count for the tier)"),
    backend: str = typer.Option("local", "--backend", help="inprocess | local | ray"),
    workers: int | None = typer.Option(None, "--workers", help="local pool size (default: cores)"),
    threads: str | None = typer.Option(None, "--threads", help="torch CPU threads of each pool or Ray worker (default "
                                       "1), of this process with inprocess and for measuring (default: chosen); a "
                                       "positive integer"),
    stack: str = typer.Option("auto", "--stack", help="stack each run's seeds in one pass: auto (on CUDA) | yes | no"),
    force: bool = typer.Option(False, "--force", help="retrain the runs even if finished ones are stored"),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    as_json: bool = JSON_OPT,
) -> None:
    """Run claims at a tier over seeds and store each verdict."""
    from theorylab.claims import TIERS, claim_ids, get_claim
    from theorylab.claims.engine import BACKENDS, check

    if all_ and ids:
        raise ConfigError("ids: give claim ids or --all, not both")
    if not all_ and not ids:
        raise ConfigError("ids: give one or more claim ids, or --all (see `theorylab claims`)")
    if tier not in TIERS:
        raise ConfigError(f"--tier: {tier!r} is not allowed; allowed: {', '.join(TIERS)}")
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: {backend!r} is not allowed; allowed: {', '.join(BACKENDS)}")
    seed_list = parse_seeds(seeds)
    n_threads = parse_threads(threads)
    stacking = {"auto": "auto", "yes": True, "no": False}.get(stack)
    if stacking is None:
        raise ConfigError(f"--stack: {stack!r} is not allowed; allowed: auto, yes, no")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: {workers} is not allowed; give a count >= 1")
    if device is not None:
        from theorylab.sweep import on_device

        on_device([], device)  # a device this machine lacks is one line before anything runs
    todo = claim_ids() if all_ else list(dict.fromkeys(ids or []))
    for cid in todo:  # validate everything before anything runs
        get_claim(cid).params(tier)
    out = []
    failed: dict[str, str] = {}
    t0 = time.perf_counter()
    show = not as_json  # results are printed unless --json; --quiet only drops progress
    shared = None
    if len(todo) > 1:  # every claim's runs in one sweep first: the workers stay busy across claims
        from theorylab.claims.engine import train_claims

        if show and not quiet:
            print(f"training the runs of {len(todo)} claims [{tier}] ...", file=sys.stderr, flush=True)
        shared = train_claims(todo, tier, seed_list, backend, store(), force, progress=show and not quiet,
                              workers=workers, stack=stacking, device=device, threads=n_threads)
        force = False  # trained (again) just now
    for cid in todo:
        if show and not quiet:
            print(f"checking {cid} [{tier}] ...", file=sys.stderr, flush=True)
        try:
            r = check(cid, tier=tier, seeds=seed_list, backend=backend, workers=workers, force=force,
                      progress=show and not quiet, stack=stacking, device=device, threads=n_threads,
                      trained_by=shared)
        except (TheoryLabError, RunFailedError) as err:
            if len(todo) == 1:
                raise
            # one claim's failure does not lose the others' results; the command exits 1 at the end
            failed[cid] = str(err)
            print(f"theorylab: error: {err}", file=sys.stderr, flush=True)
            continue
        out.append(r)
        if show:
            _print_result(r)
    total = time.perf_counter() - t0
    if show and len(out) > 1:
        counts: dict[str, int] = {}
        for r in out:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        console().print(f"{len(out)} claims in {total:.1f}s: "
                        + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    emit({"results": [r.to_dict() for r in out], "errors": failed, "wall_seconds": total}, as_json)
    if failed:
        raise typer.Exit(1)


def _print_result(r) -> None:
    c = console()
    color = {"supported": "green", "refuted": "red", "inconclusive": "yellow"}.get(r.verdict, "white")
    from rich.markup import escape

    c.print(f"[bold]{escape(r.claim_id)}[/bold] {escape(f'[{r.tier}, {len(r.seeds)} seeds]')}: "
            f"[{color}]{r.verdict}[/{color}] "
            f"({r.wall_seconds:.1f}s; {r.runs_trained} runs trained, {r.runs_reused} reused)", highlight=False)
    for q in r.stats:
        c.print(f"  {q:32s} {r.stat(q).fmt()}", highlight=False, markup=False)
    for why in r.reasons:
        c.print(f"  - {why}", highlight=False, markup=False)


@app.command("report", rich_help_panel=CLAIMS)
def report_cmd(
    out: str = typer.Option("report.html", "--out", help="HTML file to write (the Markdown summary goes beside it)"),
    tier: str | None = typer.Option(None, "--tier", help="only results of this tier"),
    as_json: bool = JSON_OPT,
) -> None:
    """Write a self-contained HTML report (and a Markdown summary) of stored claim results."""
    from theorylab.report import write_report

    paths = write_report(out, store(), tier=tier)
    emit(paths, as_json, f"wrote {paths['html']} and {paths.get('markdown')} ({paths['results']} results, "
                         f"{len(paths['not_checked'])} claims not run)")


@app.command("results", rich_help_panel=CLAIMS)
def results_cmd(
    page: str = typer.Option("docs/RESULTS.md", "--page", help="the results page to write (Markdown)"),
    readme: str = typer.Option("README.md", "--readme",
                               help="README whose verdict table (between <!-- results:begin --> and "
                                    "<!-- results:end -->) is rewritten; 'none' leaves it alone"),
    tier: str | None = typer.Option(None, "--tier", help="only results of this tier"),
    as_json: bool = JSON_OPT,
) -> None:
    """Write the results page and the README's verdict table from the stored claim results, stamped with
    the commit that computed each."""
    from theorylab.report.results import write_results

    out = write_results(page, None if readme == "none" else readme, store(), tier=tier)
    emit(out, as_json, f"wrote {out['page']}" + (f" and the verdict table of {out['readme']}" if "readme" in out else "")
         + f" ({out['results']} results)")
