"""The report: one self-contained HTML page (figures embedded, no network) and a
Markdown summary next to it, built from stored claim results.

A report reads results; it never recomputes a verdict.

    from theorylab.report import write_report
    paths = write_report("report.html")          # also writes report.md
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from theorylab.errors import ConfigError
from theorylab.store import Store


def collect(store: Store | None = None, tier: str | None = None) -> tuple[list[Any], list[Any]]:
    """The latest stored result per claim (and tier), and the registered claims never checked."""
    from theorylab.claims import TIERS, claim_ids, get_claim
    from theorylab.claims.engine import results

    if tier is not None and tier not in TIERS:
        raise ConfigError(f"tier: {tier!r} is not allowed; allowed: {', '.join(TIERS)}")
    rs = results(store, tier=tier)
    order = {t: i for i, t in enumerate(TIERS)}
    rs.sort(key=lambda r: (r.claim_id, order.get(r.tier, 9)))
    checked = {r.claim_id for r in rs}
    unchecked = [get_claim(c) for c in claim_ids() if c not in checked]
    return rs, unchecked


def write_report(out: str | Path = "report.html", store: Store | None = None, tier: str | None = None,
                 markdown: bool = True) -> dict[str, Any]:
    """Write the HTML report to ``out`` and the Markdown summary beside it (``.md``)."""
    from theorylab.report.html import render_html
    from theorylab.report.markdown import render_markdown

    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"out: {str(out)!r} must end in .html (the Markdown summary goes beside it as .md)")
    if out.exists() and out.is_dir():
        raise ConfigError(f"out: {str(out)!r} is a directory; give a file name ending in .html")
    store = store if store is not None else Store()
    rs, unchecked = collect(store, tier)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(rs, unchecked, store), encoding="utf-8")
    paths: dict[str, Any] = {"html": str(out.resolve())}
    if markdown:
        md = out.with_suffix(".md")
        md.write_text(render_markdown(rs, unchecked, html_name=out.name), encoding="utf-8")
        paths["markdown"] = str(md.resolve())
    paths["results"] = len(rs)
    paths["verdicts"] = {f"{r.claim_id} [{r.tier}]": r.verdict for r in rs}
    paths["not_checked"] = [c.id for c in unchecked]
    return paths


__all__ = ["collect", "write_report"]
