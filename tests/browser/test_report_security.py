"""report.html with hostile user strings, opened in a real browser: nothing runs, everything renders.

Builds an audit through ``cliplab audit`` (a randomly initialised cliplab-tiny, 77 synthetic train
images of 32 px) whose every user-controlled string is an XSS payload: class names, a template,
the flagged category, the audit's name and description, a retrieval query, the values of both
group-by columns (so also the intersection groups), and file names (an audited image named
``x<script>.png``, an undecodable one and a missing one whose names hold markup, which the report
lists as skipped). Each payload, if it ran, would set ``window.__xss``.

Checks, first on the file: every payload is absent raw and present escaped; the page has no script at
all (its charts are static SVG); no ``src=``/``href=`` points at http(s) or ``//``. Then in
headless chromium (file://, every http(s) request aborted and recorded): after load, hovering the
hostile table cells, ticks and bars, tabbing through the page and scrolling, ``window.__xss`` is
undefined, no dialog opened, no script error, no element has an ``on*`` or ``autofocus``
attribute, the payloads show as literal text (in the tables and in the charts' SVG labels), every
chart drew its bars, and the disparity table is there. Screenshot: test-artifacts/report-security.png.

Needs /usr/bin/chromium and the ``playwright`` package (never downloads a browser): skipped without
them, failed instead when CLIPLAB_BROWSER_TESTS=1, like tests/browser/test_jupyterlab.py.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from chromium import ARTIFACTS, launch, require_browser

# label set
CLS_SCRIPT = "<script>window.__xss=1</script>"
CLS_IMG = '<img src=x onerror="window.__xss=2">'
CLS_SVG = '"><svg onload=window.__xss=3>'
TEMPLATE = "<b onmouseover=window.__xss=4>a photo of a person holding a {}</b>"
CATEGORY = '<i onmouseover=window.__xss=8>crime</i> & "harm"'
NAME = "<svg/onload=window.__xss=9>audit"
DESCRIPTION = "</p><script>window.__xss=10</script><p>"
QUERY = '<img src=x onerror="window.__xss=11;alert(11)"> a photo of a thief.'
# metadata values (group-by columns): tone light/medium/dark, age child/adult
TONE = {"dark": "<img src=x onerror=window.__xss=5>", "medium": "' onfocus='window.__xss=6' autofocus='",
        "light": "light & <b>co</b>"}
AGE = {"child": "</td></tr></table><h1 id=pwned>child", "adult": "adult</script><script>window.__xss=12</script>"}
# file names
EVIL_IMAGE = "x<script>.png"  # a real image: audited
BROKEN_IMAGE = "bad<img src=x onerror=window.__xss=7>.png"  # not an image: skipped while embedding
MISSING_IMAGE = "gone\"&'<b>.png"  # a metadata row without its file: skipped

CLASSES = ["kite", "guitar", "book", "flower", "ball", "cup", "key", "phone", CLS_SCRIPT, CLS_IMG, CLS_SVG]
PAYLOADS = [CLS_SCRIPT, CLS_IMG, CLS_SVG, TEMPLATE, CATEGORY, NAME, DESCRIPTION, QUERY, *TONE.values(), *AGE.values(),
            BROKEN_IMAGE, MISSING_IMAGE]  # each shown in the report (escaped); x<script>.png only as a thumbnail



def _hostile_data(root: Path) -> Path:
    """Synthetic images whose metadata and file names carry the payloads; returns metadata.csv."""
    from cliplab.synth import SynthConfig, synthesize

    meta_path = synthesize(root, SynthConfig(world="legacy", n=96, seed=0))
    meta = pd.read_csv(meta_path, dtype=str, keep_default_na=False)
    meta["tone"] = meta["tone"].map(TONE)
    meta["age"] = meta["age"].map(AGE)
    first = meta.index[meta["split"] == "train"][0]
    evil = Path(meta.at[first, "image"]).with_name(EVIL_IMAGE)
    (root / meta.at[first, "image"]).rename(root / evil)
    meta.at[first, "image"] = evil.as_posix()
    (root / evil.with_name(BROKEN_IMAGE)).write_bytes(b"this is not a PNG file\n" * 4)
    extra = pd.DataFrame([meta.loc[first]] * 2).assign(image=[evil.with_name(BROKEN_IMAGE).as_posix(),
                                                               evil.with_name(MISSING_IMAGE).as_posix()])
    pd.concat([meta, extra], ignore_index=True).to_csv(meta_path, index=False)
    return meta_path


def _audit_file(path: Path) -> Path:
    audit = {"name": NAME, "description": DESCRIPTION,
             "classes": CLASSES[:-1] + [{"name": CLS_SVG, "prompts": [f"a photo of {CLS_SVG}."]}],
             "templates": [TEMPLATE], "flagged": {CATEGORY: [CLS_SCRIPT, CLS_IMG]}, "truth": {"column": "label"},
             "group_by": ["tone", "age"], "where": {"split": "train"}, "min_group_size": 5, "top_k": 2,
             "n_boot": 200, "retrieval": {"queries": [QUERY], "k": 20}}
    path.write_text(yaml.safe_dump(audit, allow_unicode=True, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """report.html of the hostile audit, made by ``cliplab audit`` (the CLI's whole path)."""
    from cliplab.cli import main

    tmp = tmp_path_factory.mktemp("report-security")
    meta = _hostile_data(tmp / "data")
    audit = _audit_file(tmp / "hostile.yaml")
    out = tmp / "out"
    code = main(["audit", "--labels", str(audit), "--images", str(meta), "--model", "cliplab-tiny", "--random-init",
                 "--device", "cpu",
                 "--no-cache", "--quiet", "--workers", "0", "--thumbnails", "12", "--out", str(out)])
    assert code == 0, f"cliplab audit exited with {code}"
    return out / "report.html"


def _page(report: Path) -> str:
    """The page's text, after checking that it holds no script (static SVG charts, no plotly.js)."""
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"<script\b", text, re.I), "report.html has a script"
    return text


def test_hostile_strings_reach_the_report_escaped(report):
    text = _page(report)
    assert EVIL_IMAGE not in text
    for payload in PAYLOADS:
        assert payload not in text, f"raw payload in report.html: {payload!r}"
        assert html.escape(payload, quote=True) in text, f"payload not shown (escaped) in report.html: {payload!r}"
    # the hostile groups were charted (the disparity table lists only rows that test something: none here)
    charts = text[text.index("<h2>Rates by group</h2>"):]
    for value in (TONE["dark"], TONE["medium"], f"{TONE['dark']} & {AGE['child']}"):
        assert f">{html.escape(value)}</text>" in charts, value
    assert html.escape(f"predicted as {CATEGORY} (top-1)") in charts
    # the image named x<script>.png was audited; the broken and the missing file are listed as skipped
    preds = pd.read_parquet(report.parent / "predictions.parquet")
    assert preds["path"].str.endswith(EVIL_IMAGE).sum() == 1
    skipped = pd.read_csv(report.parent / "skipped.csv")
    assert {Path(p).name for p in skipped["path"]} == {BROKEN_IMAGE, MISSING_IMAGE}


def test_report_is_self_contained(report):
    text = _page(report)
    remote = re.findall(r"""\b(?:src|href|srcset|action|poster|data)\s*=\s*(?:\\?["'])?\s*((?:https?:)?//[^\s"'<>]*)""",
                        text, re.I)
    assert not remote, f"report.html links outside itself: {remote[:5]}"
    assert not re.search(r"<link\b|@import|url\(\s*['\"]?\s*(?:https?:)?//", text, re.I)
    assert '<svg class="cliplab-chart"' in text and 'src="data:image/png;base64,' in text


FIND_HANDLERS = """() => [...document.querySelectorAll('*')]
    .filter(el => [...el.attributes].some(a => a.name.startsWith('on') || a.name === 'autofocus'))
    .map(el => el.outerHTML.slice(0, 160))"""
BROKEN_FIGURES = """() => [...document.querySelectorAll('svg.cliplab-chart')]
    .filter(el => el.querySelectorAll('rect').length === 0 || el.getBoundingClientRect().width < 100)
    .map(el => el.getAttribute('aria-label'))"""


def test_report_in_chromium_runs_no_payload(playwright_api, report):
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-security.png"
    dialogs, console, page_errors, remote = [], [], [], []
    with playwright_api() as pw:
        browser = launch(pw)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.route(re.compile(r"^(?:https?|wss?|ftp)://"),
                      lambda route: (remote.append(route.request.url), route.abort()))
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("dialog", lambda d: (dialogs.append(f"{d.type}: {d.message}"), d.dismiss()))
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        try:
            page.goto(report.as_uri(), wait_until="load", timeout=30_000)
            page.locator("svg.cliplab-chart").first.wait_for(timeout=15_000)
            page.wait_for_timeout(500)
            assert page.evaluate("typeof window.__xss") == "undefined", "a payload ran on load"

            # interact: hover the hostile cells, a code item, tick labels and bars; tab through; scroll
            for cell in page.locator("td", has_text="window.__xss").all()[:8]:
                cell.scroll_into_view_if_needed()
                cell.hover()
            page.locator("li code").first.hover()
            for fig in page.locator("svg.cliplab-chart").all()[:3]:
                fig.scroll_into_view_if_needed()
                fig.locator("text").nth(1).hover(force=True)
                fig.locator("rect").first.hover(force=True)
                page.wait_for_timeout(100)
            for _ in range(15):
                page.keyboard.press("Tab")
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            page.mouse.wheel(0, -2500)
            page.wait_for_timeout(300)

            assert page.evaluate("typeof window.__xss") == "undefined", "a payload ran (hover, focus or scroll)"
            assert dialogs == [], f"dialogs opened: {dialogs}"
            assert page.evaluate(FIND_HANDLERS) == [], "an element got an inline event handler"
            assert page.evaluate("document.getElementById('pwned')") is None
            assert page.locator("body > h1").count() == 1
            n_figures = page.locator("svg.cliplab-chart").count()
            assert page.evaluate("document.scripts.length") == 0

            # it rendered: every chart the page holds (one per metric x tone, age, tone & age) drew its bars
            assert n_figures >= 9 and n_figures == report.read_text().count('<svg class="cliplab-chart"')
            assert page.evaluate(BROKEN_FIGURES) == []
            assert re.search(r"\d+ comparison\(s\) where both rates are 0% or both 100%", page.inner_text("body"))
            # the payloads are text on the page: in the tables ...
            body = page.inner_text("body")
            for payload in (CLS_SCRIPT, CLS_IMG, CLS_SVG, TEMPLATE, CATEGORY, DESCRIPTION, QUERY, TONE["dark"],
                            TONE["medium"], *AGE.values(), BROKEN_IMAGE, MISSING_IMAGE):
                assert payload in body, f"not shown as text: {payload!r}"
            assert page.title() == f"cliplab audit: {NAME}"
            # ... and in the charts' SVG labels, shown literally (not double-escaped, not parsed)
            svg_text = page.evaluate("() => [...document.querySelectorAll('svg.cliplab-chart text')]"
                                     ".map(t => t.textContent)")
            for label in (*TONE.values(), *AGE.values(), f"{TONE['dark']} & {AGE['child']}"):
                assert label in svg_text, f"chart label not shown literally: {label!r}"
            assert not any("&lt;" in t or "&amp;" in t for t in svg_text)
        finally:
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
    assert page_errors == [], f"script errors: {page_errors}"
    assert not [m for m in console if m.startswith("error")], f"console errors: {console}"
    assert remote == [], f"the report tried to reach the network: {remote}"
    assert shot.stat().st_size > 10_000


@pytest.fixture(scope="module")
def playwright_api():
    return require_browser()
