"""The Markdown summary: a verdict table and each claim's measured values, for papers
and READMEs.  Text from claims and configs is escaped so it cannot break the table or
inject HTML into a renderer that passes HTML through."""

from __future__ import annotations

import time
from typing import Any

from theorylab.report.html import num, premises_line, tier_label

_MD_SPECIAL = {"\\": "\\\\", "|": "\\|", "`": "\\`", "*": "\\*", "[": "\\[", "]": "\\]", "<": "&lt;",
               ">": "&gt;", "&": "&amp;"}


def code(x: Any) -> str:
    """``x`` as a Markdown code span: inside one nothing is an escape (``&gt;`` would show literally), so only
    a backtick (which would end it) becomes ``'`` and a ``|`` is escaped for tables."""
    s = " ".join(("" if x is None else str(x)).split())
    return "`" + s.replace("`", "'").replace("|", "\\|") + "`"


def md(x: Any) -> str:
    s = " ".join(("" if x is None else str(x)).split())  # no newlines inside a table cell
    return "".join(_MD_SPECIAL.get(ch, ch) for ch in s)


def _stat(s: dict[str, Any]) -> str:
    if int(s.get("n", 0)) <= 1:
        return f"{num(s.get('mean'))} (1 seed)"
    return f"{num(s.get('mean'))} ± {num(s.get('sd'))} [95% CI {num(s.get('lo'))}, {num(s.get('hi'))}]"


def render_markdown(rs: list[Any], unchecked: list[Any], html_name: str = "report.html") -> str:
    out = ["# theorylab report", "",
           f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; figures, configs and environment are in "
           f"{code(html_name)}. Verdicts are decided by rules declared before the runs: premises checked in "
           "every seed first, then each criterion with its declared statistic; only a faithful tier may refute.", "",
           "| claim | citation | tier | seeds | premises | verdict | wall time |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rs:
        flag = " \\*" if getattr(r, "seeds_after_inconclusive", False) else ""
        out.append(f"| {code(r.claim_id)} | {md(r.citation.get('short', ''))} | {md(tier_label(r))} | "
                   f"{len(r.seeds)}{flag} | {md(premises_line(r))} | **{md(r.verdict)}** | {num(r.wall_seconds, 3)} s |")
    for c in unchecked:
        out.append(f"| {code(c.id)} | {md(c.citation.short())} |  |  |  | not run |  |")
    if any(getattr(r, "seeds_after_inconclusive", False) for r in rs):
        out += ["", "\\* seeds were added after an inconclusive result at this tier."]
    for r in rs:
        out += ["", f"## {code(r.claim_id)} [{md(tier_label(r))}]: {md(r.verdict)}", "", md(r.statement), ""]
        if getattr(r, "tier_statement", ""):
            out += [f"As this tier tests it: {md(r.tier_statement)}", ""]
        out += [f"Rule: {md(r.rule)}", ""]
        for p in getattr(r, "premises", None) or []:
            vals = ", ".join(f"{s}: {num(v)}" for s, v in sorted((p.get("values") or {}).items()))
            cond = code(f"{p.get('quantity')} {p.get('op')} {num(p.get('bound'))}")
            out.append(f"- premise {'met' if p.get('met') else 'NOT met'}: {md(p.get('name'))} ({cond}; {md(vals)})")
        for k, v in (getattr(r, "deviations", None) or {}).items():
            out.append(f"- deviation, {md(k)}: {md(v)}")
        out.append("")
        rule_q = [c.get("quantity") for c in r.criteria]
        out += ["| quantity | mean ± sd [95% CI] |", "| --- | --- |"]
        for q in sorted(r.stats, key=lambda q: (q not in rule_q, q)):
            out.append(f"| {code(q)}{' (rule)' if q in rule_q else ''} | {md(_stat(r.stats[q]))} |")
        out.append("")
        out += [f"- {md(x)}" for x in r.reasons]
        if r.verdict == "inconclusive" and r.decides:
            out.append(f"- what would decide it: {md(r.decides)}")
        for name, tab in (getattr(r, "tables", None) or {}).items():
            cols = tab.get("columns", [])
            out += ["", f"**{md(name)}**" + (f": {md(tab['note'])}" if tab.get("note") else ""), "",
                    "| " + " | ".join(md(c) for c in cols) + " |", "|" + " --- |" * len(cols)]
            out += ["| " + " | ".join(md(x) for x in row) + " |" for row in tab.get("rows", [])]
    return "\n".join(out) + "\n"
