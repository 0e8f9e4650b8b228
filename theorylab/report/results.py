"""The results page and the README's verdict table, generated from the store (``theorylab results``).

No measured number in the README is typed by hand: the verdict table between the README's markers

    <!-- results:begin -->
    <!-- results:end -->

and the page ``docs/RESULTS.md`` are written by :func:`write_results` from the stored claim results (the
latest per claim and tier) and the stored runs of the presets, each stamped with the commit of the code
that computed it, the machine and the date.  Run ``make demo`` (or any ``theorylab check``) and then
``theorylab results`` to refresh both.
"""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path
from typing import Any

from theorylab.errors import ConfigError
from theorylab.report.html import num, tier_label
from theorylab.report.markdown import code, md
from theorylab.store import Store

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _commit_of(r: Any) -> str:
    v = getattr(r, "versions", None) or {}
    c = v.get("git_commit") or "unknown"
    return c[:10] + ("+dirty" if v.get("git_dirty") else "")


def _premises(r: Any) -> str:
    ps = getattr(r, "premises", None) or []
    bad = [p for p in ps if not p.get("met")]
    if not ps:
        return "none declared"
    if not bad:
        return f"all {len(ps)} met"
    return "; ".join(f"NOT met: {p.get('name')} ({', '.join(num(v, 3) for v in (p.get('values') or {}).values())})"
                     for p in bad)


def _decided_by(r: Any) -> str:
    """What decided the verdict: the failed premises, the criteria that were not supported (violated at a
    proxy tier: absent at proxy scale), or that every criterion holds."""
    reasons = list(r.reasons or [])
    if reasons and reasons[0].startswith("premise not met"):
        return "; ".join(x for x in reasons if x.startswith("premise not met"))
    if r.verdict == "supported":
        n = len(r.criteria)
        return "the criterion holds" if n == 1 else f"all {n} criteria hold"
    open_ = [c for c in r.criteria if c.get("verdict") != "supported"]
    lead = "absent at proxy scale (a proxy tier cannot refute): " if reasons and reasons[0].startswith("absent") else ""
    return lead + "; ".join(str(c.get("reason", "")) for c in open_)


def verdict_table(rs: list[Any]) -> list[str]:
    """Markdown lines: one row per stored result (claim, tier, seeds, premises, verdict, what decided it, runs
    trained and reused, commit)."""
    out = ["| claim | tier | seeds | premises | verdict | what decided it | runs | commit |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rs:
        flag = " \\*" if getattr(r, "seeds_after_inconclusive", False) else ""
        out.append(f"| {code(r.claim_id)} | {md(tier_label(r))} | {len(r.seeds)}{flag} | {md(_premises(r))} | "
                   f"**{md(r.verdict)}** | {md(_decided_by(r))} | {r.runs_trained} trained, {r.runs_reused} reused | "
                   f"{code(_commit_of(r))} |")
    return out


def _run_rows(store: Store) -> list[str]:
    """The stored runs of each preset exactly as ``theorylab train PRESET`` makes them (seed 0, no
    overrides): the runs behind the README's examples."""
    from theorylab.runs.config import build_run_config, preset_names

    out = ["| command | run | status | stopped at step | final test metrics | wall | steps/s | commit |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = 0
    for preset in preset_names():
        try:
            rec = store.get_run(build_run_config(preset).run_id())
        except Exception:  # a preset this machine cannot build (memory) has no run to show
            continue
        if rec is None or rec.status not in ("finished", "diverged"):
            continue
        m = (rec.summary or {}).get("metrics") or {}
        shown = ", ".join(f"{k.split('/', 1)[1]} {num(v, 4)}" for k, v in sorted(m.items()) if k.startswith("test/"))
        sps = (rec.summary or {}).get("steps_per_second")
        cmd = code(f"theorylab train {preset}")
        out.append(f"| {cmd} | {code(rec.id)} | {md(rec.status)} | {rec.step} | {md(shown)} | "
                   f"{num(rec.wall_seconds, 3)} s | {num(sps, 3)} | {code((rec.git_commit or 'unknown')[:10])} |")
        rows += 1
    return out if rows else []


def render_results(rs: list[Any], unchecked: list[Any], store: Store, stamp: str) -> str:
    """The results page (Markdown)."""
    out = ["# theorylab results", "", stamp, "",
           "Each verdict is the claim's rule applied to its stored per-seed values: premises first (a failed "
           "one makes it inconclusive), then each criterion with its declared statistic; a proxy tier cannot "
           "refute.  `theorylab report` has the figures, per-seed values and configs.", "",
           "## Verdicts", ""]
    out += verdict_table(rs)
    if unchecked:
        out += ["", "Not run: " + ", ".join(f"{code(c.id)}" for c in unchecked) + "."]
    if any(getattr(r, "seeds_after_inconclusive", False) for r in rs):
        out += ["", "\\* seeds were added after an inconclusive result at this tier."]
    for r in rs:
        out += ["", f"### {code(r.claim_id)} [{md(tier_label(r))}]: {md(r.verdict)}", ""]
        rule_q = [c.get("quantity") for c in r.criteria]
        out += ["| quantity | mean ± sd [95% CI] | per seed |", "| --- | --- | --- |"]
        for q in sorted(r.stats, key=lambda q: (q not in rule_q, q)):
            s = r.stats[q]
            per = ", ".join(num(v.get(q), 4) for _, v in sorted(r.per_seed.items()) if q in v)
            est = f"{num(s.get('mean'))}" if int(s.get("n", 0)) <= 1 else \
                f"{num(s.get('mean'))} ± {num(s.get('sd'))} [{num(s.get('lo'))}, {num(s.get('hi'))}]"
            out.append(f"| {code(q)}{' (rule)' if q in rule_q else ''} | {md(est)} | {md(per)} |")
        out += [""] + [f"- {md(x)}" for x in r.reasons]
    runs = _run_rows(store)
    if runs:
        out += ["", "## Runs of the presets", "", "Each preset's run as `theorylab train PRESET` makes it, where the "
                "store holds one.", ""] + runs
    return "\n".join(out) + "\n"


def stamp_line(store: Store) -> str:
    from theorylab.claims.engine import versions

    v = versions()
    commit = (v.get("git_commit") or "unknown")[:10] + ("+dirty" if v.get("git_dirty") else "")
    return (f"Generated by `theorylab results` on {time.strftime('%Y-%m-%d %H:%M %Z')} at commit `{commit}` "
            f"from the store `{store.root}` ({platform.machine()}, torch {v.get('torch', '?')}); each row names "
            "the commit of the code that computed it.")


def write_results(page: str | Path = "docs/RESULTS.md", readme: str | Path | None = "README.md",
                  store: Store | None = None, tier: str | None = None) -> dict[str, Any]:
    """Write the results page ``page`` and replace the verdict table between the markers of ``readme``
    (None: leave the README alone).  Raises ConfigError when the README lacks the markers or the store holds
    no claim result."""
    from theorylab.report import collect

    store = store if store is not None else Store()
    rs, unchecked = collect(store, tier)
    if not rs:
        raise ConfigError("results: the store holds no claim results; run `theorylab check ...` (or make demo) first")
    stamp = stamp_line(store)
    page = Path(page)
    if page.suffix.lower() != ".md":
        raise ConfigError(f"page: {str(page)!r} must end in .md")
    out: dict[str, Any] = {}
    if readme is not None:
        readme = Path(readme)
        text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
        m = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), text, re.S)
        if m is None:
            raise ConfigError(f"readme: {str(readme)!r} has no {BEGIN} ... {END} markers to write the table between")
        link = page.resolve().relative_to(readme.resolve().parent) if page.resolve().is_relative_to(
            readme.resolve().parent) else page
        block = "\n".join([BEGIN, "", stamp + f" Per-seed values: [`{link}`]({link}).", "", *verdict_table(rs), "",
                           END])
        readme.write_text(text[:m.start()] + block + text[m.end():], encoding="utf-8")
        out["readme"] = str(readme.resolve())
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render_results(rs, unchecked, store, stamp), encoding="utf-8")
    out.update(page=str(page.resolve()), results=len(rs), not_checked=[c.id for c in unchecked])
    return out


__all__ = ["BEGIN", "END", "render_results", "verdict_table", "write_results"]
