"""The HTML report: one file, inline CSS, figures as base64 PNG, no scripts, no network.

Every piece of text that comes from a claim, a config or the store passes through
:func:`esc` (``html.escape`` with quotes), so a statement containing ``<script>`` is
shown as text, never run.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import time
from pathlib import Path
from typing import Any

from theorylab import __version__
from theorylab.errors import StoreError
from theorylab.store import lineage_text

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1150px;
padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2.2rem;border-top:1px solid #ddd;
padding-top:1rem}h3{font-size:1.02rem;margin:1.1rem 0 .4rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d5d5d5;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict{font-weight:600;padding:.05rem .45rem;border-radius:.3rem;white-space:nowrap}
.supported{background:#d8f3dc;color:#1b4332}.refuted{background:#ffd6d6;color:#7a1212}
.inconclusive{background:#fff3bf;color:#5c4400}.not-run{background:#eee;color:#555}
.meta{color:#555;font-size:.88rem}code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;
font-size:.82rem}pre{background:#f7f7f7;padding:.6rem;overflow-x:auto;max-height:28rem}
figure{margin:.6rem 0 1.2rem}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}details{margin:.3rem 0 .8rem}summary{cursor:pointer}
ul.reasons{margin:.2rem 0 .8rem}
"""


def esc(x: Any) -> str:
    """Escape any value for HTML text and attribute contexts."""
    return html.escape("" if x is None else str(x), quote=True)


def anchor(claim_id: str, tier: str) -> str:
    return "claim-" + re.sub(r"[^A-Za-z0-9_-]+", "-", f"{claim_id}-{tier}")


def num(x: Any, digits: int = 4) -> str:
    if x is None:
        return ""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return esc(x)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}g}"


def verdict_badge(v: str) -> str:
    cls = v if v in ("supported", "refuted", "inconclusive") else "not-run"
    return f'<span class="verdict {cls}">{esc(v)}</span>'


def _img(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _stat_cells(s: dict[str, Any]) -> str:
    n = int(s.get("n", 0))
    if n <= 1:
        spread, ci = "(1 seed)", "unbounded with one seed"
    else:
        spread = f"± {num(s.get('sd'))}"
        ci = f"[{num(s.get('lo'))}, {num(s.get('hi'))}]"
    values = ", ".join(num(v) for v in s.get("values", []))
    return (f'<td class="num">{num(s.get("mean"))} {esc(spread)}</td><td class="num">{esc(ci)}</td>'
            f'<td class="num">{n}</td><td class="num">{esc(values)}</td>')


def tier_label(r: Any) -> str:
    """``quick (proxy)`` / ``full (faithful)``."""
    return f"{r.tier} ({'faithful' if getattr(r, 'tier_faithful', False) else 'proxy'})"


def premises_line(r: Any) -> str:
    """``2 of 2 met`` / ``1 of 2 met`` / ``none declared``."""
    ps = getattr(r, "premises", None) or []
    if not ps:
        return "none declared"
    return f"{sum(1 for p in ps if p.get('met'))} of {len(ps)} met"


def _summary(rs: list[Any], unchecked: list[Any]) -> str:
    rows = []
    for r in rs:
        cit = r.citation.get("short", "")
        flag = " *" if getattr(r, "seeds_after_inconclusive", False) else ""
        rows.append(
            f'<tr><td><a href="#{anchor(r.claim_id, r.tier)}"><code>{esc(r.claim_id)}</code></a></td>'
            f"<td>{esc(r.title)}</td><td>{esc(cit)}</td><td>{esc(tier_label(r))}</td>"
            f'<td class="num">{len(r.seeds)}{esc(flag)}</td><td>{esc(premises_line(r))}</td>'
            f'<td>{verdict_badge(r.verdict)}</td><td class="num">{num(r.wall_seconds, 3)} s</td></tr>')
    for c in unchecked:
        rows.append(f"<tr><td><code>{esc(c.id)}</code></td><td>{esc(c.title)}</td><td>{esc(c.citation.short())}</td>"
                    f'<td></td><td></td><td></td><td>{verdict_badge("not run")}</td><td></td></tr>')
    counts: dict[str, int] = {}
    for r in rs:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    tally = ", ".join(f"{n} {esc(v)}" for v, n in sorted(counts.items())) or "no results yet"
    flagged = any(getattr(r, "seeds_after_inconclusive", False) for r in rs)
    note = ('<p class="meta">* seeds were added after an inconclusive result at this tier.</p>' if flagged else "")
    return (f'<p class="meta">{len(rs)} result(s): {tally}; {len(unchecked)} claim(s) not run.</p>'
            '<table id="summary"><thead><tr><th>claim</th><th>title</th><th>citation</th><th>tier</th>'
            "<th>seeds</th><th>premises</th><th>verdict</th><th>wall time</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>" + note)


def _lineage(store: Any, run_id: str, cfg: dict[str, Any] | None) -> str:
    """A run's lineage as ``theorylab show`` prints it (``a -> b (from step 10) -> c (dpo)``), read from the store;
    without a store (or when the run is gone from it) the parent its config names; empty for a run trained from
    scratch."""
    if store is not None:
        try:
            chain = store.lineage(run_id)
        except StoreError:  # a run missing from this store: fall back to its config
            chain = None
        if chain is not None:
            return lineage_text(chain) if len(chain) > 1 else ""
    parent = (cfg or {}).get("parent")
    if not parent:
        return ""
    step = (cfg or {}).get("parent_step")
    return f"{parent}{f' (from step {step})' if step is not None else ''} -> {run_id}"


def _criterion_verdict(c: dict[str, Any], faithful: bool) -> str:
    """A criterion's own verdict as the report shows it: on a proxy tier a violated criterion is not a
    refutation (the claim's verdict is inconclusive), so it reads "violated (a proxy tier cannot refute)"."""
    v = str(c.get("verdict", ""))
    return "violated (a proxy tier cannot refute)" if v == "refuted" and not faithful else v


def _claim_section(r: Any, store: Any = None) -> str:
    parts = [f'<section id="{anchor(r.claim_id, r.tier)}">',
             f"<h2><code>{esc(r.claim_id)}</code> [{esc(r.tier)}] {verdict_badge(r.verdict)}</h2>",
             f"<p><strong>{esc(r.title)}</strong></p>",
             f"<p>{esc(r.statement)}</p>"]
    cit = r.citation or {}
    line = esc(cit.get("full", ""))
    if cit.get("arxiv"):
        a = esc(cit["arxiv"])
        line += f' <a href="https://arxiv.org/abs/{a}">arXiv:{a}</a>'
    parts.append(f'<p class="meta">Citation: {line}</p>')
    faithful = getattr(r, "tier_faithful", False)
    parts.append(f"<p><strong>Tier:</strong> {esc(tier_label(r))}: "
                 + ("meets the paper's stated conditions, so it may refute." if faithful else
                    "does not meet the paper's stated conditions; it may support but never refute.") + "</p>")
    if getattr(r, "tier_statement", ""):
        parts.append(f"<p><strong>The statement as this tier tests it:</strong> {esc(r.tier_statement)}</p>")
    if getattr(r, "seeds_after_inconclusive", False):
        parts.append("<p><strong>Flag:</strong> seeds were added after an inconclusive result at this tier "
                     f"(declared seeds: {esc(', '.join(str(x) for x in r.seeds_default))}).</p>")
    devs = getattr(r, "deviations", None) or {}
    if devs:
        parts.append("<h3>Deviations from the paper</h3><table><tbody>")
        parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in devs.items()]
        parts.append("</tbody></table>")

    parts.append("<h3>Verdict rule (declared before the run)</h3>")
    parts.append(f"<p><code>{esc(r.rule)}</code></p>")
    premises = getattr(r, "premises", None) or []
    if premises:
        parts.append("<h4>Premises (checked in every seed first; a failed one makes the verdict inconclusive)</h4>"
                     "<table><thead><tr><th>premise</th><th>condition</th><th>per seed</th><th>met</th>"
                     "<th>why</th></tr></thead><tbody>")
        for p in premises:
            vals = ", ".join(f"{esc(s)}: {num(v)}" for s, v in sorted((p.get("values") or {}).items()))
            parts.append(f"<tr><td>{esc(p.get('name'))}</td><td><code>{esc(p.get('quantity'))} {esc(p.get('op'))} "
                         f"{num(p.get('bound'))}</code></td><td>{vals}</td><td>{'yes' if p.get('met') else 'NO'}</td>"
                         f"<td>{esc(p.get('why'))}</td></tr>")
        parts.append("</tbody></table>")
    if r.criteria:
        parts.append("<h4>Criteria</h4><table><thead><tr><th>quantity</th><th>condition</th><th>statistic</th>"
                     "<th>estimate</th><th>95% interval</th><th>seeds satisfying</th><th>verdict</th>"
                     "<th>why this threshold</th></tr></thead><tbody>")
        for c in r.criteria:
            k = c.get("k")
            count = "" if k is None else f"{k} of {c.get('n')}"
            interval = "" if c.get("lo") is None else f"[{num(c.get('lo'))}, {num(c.get('hi'))}]"
            parts.append(f"<tr><td><code>{esc(c.get('quantity'))}</code></td>"
                         f"<td>{esc(c.get('op'))} {num(c.get('threshold'))}</td><td>{esc(c.get('statistic', ''))}</td>"
                         f"<td class=\"num\">{num(c.get('estimate'))}</td><td class=\"num\">{esc(interval)}</td>"
                         f"<td class=\"num\">{esc(count)}</td><td>{esc(_criterion_verdict(c, faithful))}</td>"
                         f"<td>{esc(c.get('why'))}</td></tr>")
        parts.append("</tbody></table>")
    parts.append("<h3>Outcome</h3><ul class=\"reasons\">")
    parts += [f"<li>{esc(x)}</li>" for x in r.reasons]
    parts.append("</ul>")
    if r.verdict == "inconclusive" and r.decides:
        parts.append(f"<p><em>What would decide it:</em> {esc(r.decides)}</p>")

    parts.append("<h3>Measured values (over seeds)</h3>")
    rule_q = [c.get("quantity") for c in r.criteria]
    names = sorted(r.stats, key=lambda q: (q not in rule_q, rule_q.index(q) if q in rule_q else 0, q))
    parts.append("<table><thead><tr><th>quantity</th><th>mean ± sd</th><th>95% interval of the mean</th>"
                 "<th>seeds</th><th>per seed</th></tr></thead><tbody>")
    for q in names:
        mark = " (rule)" if q in rule_q else ""
        parts.append(f"<tr><td><code>{esc(q)}</code>{esc(mark)}</td>{_stat_cells(r.stats[q])}</tr>")
    parts.append("</tbody></table>")

    for name, tab in (getattr(r, "tables", None) or {}).items():
        parts.append(f"<h3>Table: {esc(name)}</h3>")
        if tab.get("note"):
            parts.append(f'<p class="meta">{esc(tab["note"])}</p>')
        head = "".join(f"<th>{esc(c)}</th>" for c in tab.get("columns", []))
        body = "".join("<tr>" + "".join(f"<td>{esc(x)}</td>" for x in row) + "</tr>" for row in tab.get("rows", []))
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    if r.figures:
        parts.append("<h3>Figures</h3>")
        for name, path in r.figures.items():
            src = _img(path)
            if src is None:
                parts.append(f"<p class=\"meta\">figure {esc(name)}: file missing ({esc(path)})</p>")
                continue
            parts.append(f'<figure><img alt="{esc(name)}" src="{src}"><figcaption>{esc(name)}</figcaption></figure>')

    parts.append("<h3>Runs and configs</h3>")
    if r.run_ids and any(r.run_ids.values()):
        parts.append("<table><thead><tr><th>seed</th><th>run</th><th>run id</th><th>lineage (fine-tuned from)</th>"
                     "</tr></thead><tbody>")
        for s in sorted(r.run_ids):
            for name, rid in r.run_ids[s].items():
                parts.append(f'<tr><td class="num">{esc(s)}</td><td>{esc(name)}</td><td><code>{esc(rid)}</code></td>'
                             f"<td>{esc(_lineage(store, rid, (r.configs.get(s) or {}).get(name)))}</td></tr>")
        parts.append("</tbody></table>")
        first = min(r.configs) if r.configs else None
        for name, cfg in (r.configs.get(first) or {}).items():
            body = json.dumps(cfg, indent=2, sort_keys=True, default=str)
            parts.append(f"<details><summary>config of run <code>{esc(name)}</code> (seed {esc(first)}; other "
                         f"seeds differ in <code>seed</code>)</summary><pre>{esc(body)}</pre></details>")
    else:
        parts.append("<p class=\"meta\">No training runs (a data-free claim).</p>")

    parts.append("<h3>Environment</h3><table><tbody>")
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(r.created)) if r.created else ""
    env = [("checked", when), ("wall time", f"{num(r.wall_seconds, 4)} s"), ("device", r.device),
           ("backend", r.backend), ("seeds", ", ".join(str(s) for s in r.seeds)),
           ("runs trained / reused", f"{r.runs_trained} / {r.runs_reused}")]
    env += [(k, v) for k, v in sorted((r.versions or {}).items())]
    parts += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in env]
    parts.append("</tbody></table></section>")
    return "\n".join(parts)


def render_html(rs: list[Any], unchecked: list[Any], store: Any = None) -> str:
    made = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    where = f" from the store at {esc(store.root)}" if store is not None else ""
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>theorylab report</title>",
        f"<style>{CSS}</style></head><body>",
        "<header><h1>theorylab report</h1>",
        f'<p class="meta">Generated {esc(made)} by theorylab {esc(__version__)}{where}. Each verdict is '
        "decided by a rule declared in code before the run: its premises are checked in every seed first (a "
        "failed premise makes the verdict inconclusive), then each criterion is judged over seeds with the "
        "statistic it declares (an interval of the mean, an exact count of seeds, or the best seed as the "
        "paper reports it). Only a tier faithful to the paper's conditions may refute.</p></header>",
        "<main><h2>Summary</h2>",
        _summary(rs, unchecked),
    ]
    body += [_claim_section(r, store) for r in rs]
    body.append("</main></body></html>")
    return "\n".join(body) + "\n"
