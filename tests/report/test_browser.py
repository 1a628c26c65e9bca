"""The report in a real headless Chromium, driven over the DevTools protocol: the main page and a task page load
without a console error, every image decodes, a sortable table reorders when its header is clicked, the filter
box hides rows that do not match, and every findings link resolves; screenshots at 1,400 and 390 px are kept
under ``reports/screenshots/``. The run: a synthetic matrix of more than a handful of models (so the task and
model pages are the layout), one model named like a script, and an analysis with a ``table`` registered here."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecgfm_suite.analysis.registry import ANALYSES, AnalysisSpec
from ecgfm_suite.analysis.store import AnalysisStore
from ecgfm_suite.report import write_report
from ecgfm_suite.results import RunDir
from ecgfm_suite.results.synthetic import synthetic_matrix, synthetic_result
from tests.report.cdp import Browser
from tests.report.html import chromium

pytestmark = pytest.mark.slow

XSS = "<script>alert(1)</script>"
GAPS = (0.31, -0.12, 0.05)


def subgroup_rows(key: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(row) for row in payload["rows"]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    run = RunDir.create(tmp_path_factory.mktemp("browser"), "run")
    rng = np.random.default_rng(3)
    cells = synthetic_matrix(6, 3, 2)
    results = [synthetic_result(c, (0, 1), rng) for c in cells]
    results[0] = dataclasses.replace(results[0], model=XSS)  # a hostile name from a user's ModelSpec YAML
    run.results_path.write_text("\n".join(json.dumps(r.to_dict()) for r in results) + "\n")
    store = AnalysisStore(run.path)
    for t in range(3):
        store.write("test_subgroups", f"task{t:03d}", {"task": f"task{t:03d}", "rows": [
            {"model": XSS if g > 0.3 else "model001", "task": f"task{t:03d}", "attribute": "sex", "gap": g,
             "gap_ci_low": g - 0.04, "gap_ci_high": g + 0.04, "gap_excludes_zero": abs(g) > 0.04} for g in GAPS]})
    spec = AnalysisSpec(name="test_subgroups", scope="task", run="tests.report.test_browser:subgroup_rows",
                        problems="tests.report.test_browser:subgroup_rows", inputs=("results",),
                        title="Subgroup gaps <by sex>", table="tests.report.test_browser:subgroup_rows")
    ANALYSES.register(spec.name, spec)
    try:
        write_report(run.path)
    finally:
        ANALYSES.unregister(spec.name)
    return run


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    b = Browser(chromium(), tmp_path_factory.mktemp("profile"))
    yield b
    b.close()


def _check_page(browser: Browser, path: Path) -> None:
    browser.load(path.as_uri())
    assert browser.console_errors() == []
    assert json.loads(browser.evaluate("document.documentElement.getAttribute('data-errors')")) == []
    decoded = browser.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert decoded and all(decoded), "an image failed to decode"
    assert browser.evaluate("Array.from(document.images).every(i => i.alt.length > 0)")
    levels = browser.evaluate("Array.from(document.querySelectorAll('h1,h2,h3,h4,h5')).map(h => +h.tagName[1])")
    assert levels[0] == 1 and all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False)), levels
    # sorting the leaderboard by a model's column orders its rows by that column's value
    column = "Array.from(document.querySelectorAll('#board tbody tr')).map(r => parseFloat(r.cells[5].textContent))"
    browser.evaluate("document.querySelectorAll('#board thead th')[5].querySelector('button').click()")
    up = browser.evaluate(column)
    assert up == sorted(up) and len(up) > 1
    browser.evaluate("document.querySelectorAll('#board thead th')[5].querySelector('button').click()")
    assert browser.evaluate(column) == sorted(up, reverse=True)
    # the filter box hides the rows that do not contain its text
    browser.evaluate("var f = document.querySelector('input[data-filter=board]'); f.value = 'frac2';"
                     "f.dispatchEvent(new Event('input'))")
    shown = browser.evaluate("Array.from(document.querySelectorAll('#board tbody tr')).filter(r => !r.hidden)"
                             ".map(r => r.cells[1].textContent)")
    assert shown and set(shown) == {"frac2"}
    assert browser.evaluate("document.querySelectorAll('#board tbody tr[hidden]').length") == len(up) - len(shown)


def test_main_page_findings_sorting_filtering_and_screenshots(run, browser, request):
    index = run.path / "index.html"
    _check_page(browser, index)
    hrefs = browser.evaluate("Array.from(document.querySelectorAll('.findings a')).map(a => a.getAttribute('href'))")
    assert hrefs and all(h.startswith("#") for h in hrefs)
    missing = browser.evaluate(f"{json.dumps(hrefs)}.filter(h => !document.getElementById(h.slice(1)))")
    assert missing == []
    findings = browser.evaluate("document.querySelector('.findings').parentElement.textContent")
    assert f"+0.310 [+0.270, +0.350] (model {XSS}, task task000, attribute sex)" in findings  # as text
    assert browser.evaluate("document.querySelectorAll('script').length") == 1  # the page's own, by hash
    # the analysis with a table: a collapsed, sortable section whose link opens it
    browser.evaluate("location.hash = '#analysis-test_subgroups'")
    assert browser.evaluate("document.getElementById('analysis-test_subgroups').textContent") == \
        "Subgroup gaps <by sex>"
    kept = Path(request.config.rootpath) / "reports" / "screenshots"
    kept.mkdir(parents=True, exist_ok=True)
    for width in (1400, 390):
        browser.load(index.as_uri(), width=width)
        browser.screenshot(kept / f"report-{width}.png", width)
        assert (kept / f"report-{width}.png").read_bytes().startswith(b"\x89PNG")
    assert (run.path / "test_subgroups.csv").read_text().count("\n") == 1 + 3 * len(GAPS)


def test_task_page_loads_sorts_and_filters(run, browser, request):
    page = run.path / "pages" / "task-task001.html"
    _check_page(browser, page)
    assert browser.evaluate("document.querySelector('h1').textContent") == "Task task001"
    links = browser.evaluate("Array.from(document.querySelectorAll('nav a')).map(a => a.getAttribute('href'))")
    assert all((page.parent / link.split("#")[0]).exists() for link in links)
    kept = Path(request.config.rootpath) / "reports" / "screenshots"
    for width in (1400, 390):
        browser.load(page.as_uri(), width=width)
        browser.screenshot(kept / f"task-page-{width}.png", width)
    shutil.copyfile(kept / "task-page-1400.png", run.path / "task-page-1400.png")
