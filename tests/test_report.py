"""The report: self-contained valid HTML, escaped user text, Markdown summary, headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import theorylab.claims.engine as engine  # noqa: E402
from theorylab.claims import CLAIMS, Citation, Claim, Criterion, Tier, all_of, claim_ids, register_claim  # noqa: E402
from theorylab.claims.statistics import fitted  # noqa: E402
from theorylab.cli import main  # noqa: E402
from theorylab.errors import ConfigError  # noqa: E402
from theorylab.report import write_report  # noqa: E402
from theorylab.store import Store  # noqa: E402

EVIL = "<script>alert('pwned')</script> & <img src=x onerror=alert(1)> | `tick` [link](http://evil.example)"


class _Evil(Claim):
    id = "evil2024.escaping"
    title = f"Title {EVIL}"
    citation = Citation(f"Mallory {EVIL} and Eve", 2024, f"Paper {EVIL}", venue="Venue \"quoted\"",
                        arxiv="2401.0<b>1</b>")
    statement = f"Statement {EVIL}"
    rule = all_of(Criterion("x", ">=", 0.5, why=f"because {EVIL}"))
    tiers = {"smoke": Tier()}
    seeds = {"smoke": 3}
    decides = f"decided by {EVIL}"

    def measure(self, tier, seed, runs):
        return {"x": [0.9, 0.2, 0.7][seed], "y<z>": 1.0 + seed}

    def figures(self, evidence):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot(evidence.seeds, evidence.values("x"))
        ax.set_xlabel("seed")
        ax.set_ylabel("x (units)")
        return {f"fig {EVIL}": fig}


class _Good(_Evil):
    id = "good2024.plain"
    title = "A plain claim"
    citation = Citation("Ada Lovelace", 2024, "Plain", arxiv="2401.00002")
    statement = "x is at least 0.5."
    rule = all_of(Criterion("x", ">=", 0.5, why="half"),
                  premises=[fitted("fit", 0.95, why="the model must fit first")])
    decides = "more seeds"
    deviations = {"optimizer": "Adam instead of the paper's SGD"}
    tiers = {"smoke": Tier(faithful=True, statement="x is at least 0.5 at smoke size.")}

    def measure(self, tier, seed, runs):
        return {"x": 0.8 + 0.01 * seed, "fit": 0.99}

    def figures(self, evidence):
        return {}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    register_claim(_Evil)
    register_claim(_Good)
    try:
        store = Store(root / "store")
        bad = engine.check(_Evil.id, tier="smoke", backend="inprocess", store=store)
        good = engine.check(_Good.id, tier="smoke", backend="inprocess", store=store)
        paths = write_report(root / "out" / "report.html", store)
        yield {"paths": paths, "html": Path(paths["html"]).read_text(), "md": Path(paths["markdown"]).read_text(),
               "results": [bad, good], "store": store, "root": root}
    finally:
        CLAIMS.pop(_Evil.id, None)
        CLAIMS.pop(_Good.id, None)


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Checker(HTMLParser):
    """Well-formedness: every element closed in order; collects tags, attributes, ids and text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.ids: list[str] = []
        self.text: list[str] = []
        self.doctype = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.append(a["id"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Checker:
    c = _Checker()
    c.feed(html)
    c.close()
    return c


def test_report_is_valid_html(report):
    c = _parse(report["html"])
    assert c.doctype and c.doctype.lower() == "doctype html"
    assert c.errors == [] and c.stack == []
    names = [t for t, _ in c.tags]
    for once in ("html", "head", "body", "title", "main"):
        assert names.count(once) == 1, once
    assert len(c.ids) == len(set(c.ids)), "ids are unique"
    assert ("meta", {"charset": "utf-8"}) in c.tags
    # every in-page link points at an existing anchor
    for t, a in c.tags:
        if t == "a" and a.get("href", "").startswith("#"):
            assert a["href"][1:] in c.ids


def test_report_is_self_contained(report):
    html = report["html"]
    c = _parse(html)
    imgs = [a for t, a in c.tags if t == "img"]
    assert len(imgs) == 1 and imgs[0]["src"].startswith("data:image/png;base64,")
    import base64

    assert base64.b64decode(imgs[0]["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for t, a in c.tags:
        assert t not in ("script", "link", "iframe", "object", "embed"), t
        for attr in ("src", "srcset", "data", "poster"):
            if attr in a:
                assert a[attr].startswith("data:"), (t, attr, a[attr][:60])
        assert not any(k.startswith("on") for k in a), (t, a)  # no event handlers
    assert "url(" not in html and "@import" not in html
    # the only network addresses are plain links to the cited papers
    hrefs = [a["href"] for t, a in c.tags if t == "a" and not a.get("href", "#").startswith("#")]
    assert hrefs and all(h.startswith("https://arxiv.org/abs/") for h in hrefs)


def test_user_text_is_escaped(report):
    html = report["html"]
    assert "<script" not in html.lower()
    assert "<img src=x" not in html and "<b>1</b>" not in html
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html
    text = "".join(_parse(html).text)
    for piece in (f"Statement {EVIL}", f"because {EVIL}", f"decided by {EVIL}", f"Title {EVIL}"):
        assert piece in text, piece  # shown verbatim as text
    assert "y<z>" in text and "2401.0<b>1</b>" in text


def test_report_content(report):
    html, (bad, good) = report["html"], report["results"]
    c = _parse(html)
    text = "".join(c.text)
    assert bad.verdict == "inconclusive" and good.verdict == "supported"
    # summary table: one row per result and per registered claim never checked
    summary = html.split('<table id="summary">', 1)[1].split("</table>", 1)[0]
    rows = summary.count("<tr>") - 1
    assert rows == 2 + len([c for c in claim_ids() if c not in (_Evil.id, _Good.id)])
    assert "not run" in summary
    st = good.stat("x")
    for piece in (f"{st.mean:.4g}", f"[{st.lo:.4g}, {st.hi:.4g}]", "half", "mean over seeds, Student-t 95% interval",
                  "Ada Lovelace (2024)", good.run_ids and "" or "No training runs", "python", "torch", good.device,
                  "What would decide it", "smoke (faithful)", "smoke (proxy)", "the model fitted its training data",
                  "fit >= 0.95", "the model must fit first", "Adam instead of the paper's SGD",
                  "x is at least 0.5 at smoke size.", "1 of 1 met", "none declared"):
        assert piece in text, piece
    assert report["paths"]["verdicts"] == {f"{_Evil.id} [smoke]": "inconclusive", f"{_Good.id} [smoke]": "supported"}


def test_markdown_summary(report):
    md = report["md"]
    assert report["paths"]["markdown"].endswith("report.md")
    assert "| claim | citation | tier | seeds | premises | verdict | wall time |" in md
    assert "premise met: the model fitted its training data" in md and "deviation, optimizer" in md
    assert f"| `{_Good.id}` |" in md and "**supported**" in md and "**inconclusive**" in md
    assert "<script" not in md and "&lt;script&gt;" in md
    for line in md.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            assert len(cells) in (2, 7), line  # escaped pipes never split a cell


def test_report_cli_json_and_errors(report, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("THEORYLAB_HOME", str(report["store"].root))
    out = tmp_path / "r" / "rep.html"
    register_claim(_Good)
    register_claim(_Evil)
    try:
        assert main(["report", "--out", str(out), "--json"]) == 0
    finally:
        CLAIMS.pop(_Evil.id, None)
        CLAIMS.pop(_Good.id, None)
    d = json.loads(capsys.readouterr().out)
    assert d["html"] == str(out.resolve()) and Path(d["markdown"]).is_file() and d["results"] == 2
    assert main(["report", "--out", str(tmp_path / "rep.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("theorylab: error: out:") and ".html" in err and not (tmp_path / "rep.txt").exists()
    with pytest.raises(ConfigError, match="out"):
        write_report(tmp_path / "x.pdf", report["store"])
    with pytest.raises(ConfigError, match="tier"):
        write_report(tmp_path / "x.html", report["store"], tier="huge")


def test_report_of_an_empty_store(tmp_path):
    paths = write_report(tmp_path / "empty.html", Store(tmp_path / "none"))
    html = Path(paths["html"]).read_text()
    c = _parse(html)
    assert c.errors == [] and paths["results"] == 0 and "no results yet" in html


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr",
                  "--v=0"]


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _open(path: Path, profile: Path) -> tuple[str, list[str]]:
    exe = _browser()
    proc = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", path.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln or "Failed to load resource" in ln]
    return proc.stdout, console


@pytest.mark.slow
@pytest.mark.skipif(_browser() is None, reason="no headless browser installed (apt-get install chromium); CI "
                                               "installs one")
def test_report_renders_in_headless_chromium(report, tmp_path):
    # the harness sees console errors when there are some ...
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>'
                   '<script>console.error("boom")</script></body></html>')
    _, console = _open(bad, tmp_path / "profile-bad")
    assert any("boom" in ln for ln in console)
    # ... and the report renders its summary table with none
    dom, console = _open(Path(report["paths"]["html"]), tmp_path / "profile")
    assert console == [], console
    c = _parse(dom)
    assert c.errors == []
    assert '<table id="summary">' in dom
    summary = dom.split('<table id="summary">', 1)[1].split("</table>", 1)[0]
    assert summary.count("<tr>") >= 3 and "supported" in summary and "inconclusive" in summary
    assert "<script" not in dom.lower()


def test_a_violated_criterion_of_a_proxy_tier_is_not_called_refuted():
    from theorylab.report.html import _criterion_verdict

    assert _criterion_verdict({"verdict": "refuted"}, faithful=False) == "violated (a proxy tier cannot refute)"
    assert _criterion_verdict({"verdict": "refuted"}, faithful=True) == "refuted"
    assert _criterion_verdict({"verdict": "supported"}, faithful=False) == "supported"


def test_markdown_code_spans_hold_raw_text():
    from theorylab.report.markdown import code

    assert code("control_change >= 0.001") == "`control_change >= 0.001`"  # no &gt; inside a code span
    assert code("a|b`c") == "`a\\|b'c`"
