"""The report's cell outcomes and its paging: a small run stays one page, a large one aggregates and pages.

Synthetic cell results (real schema, seeded numbers) and outcome lines written through ``RunDir``; the
expected rows, counts and leaderboard values are computed here from those inputs, not read back
from the report's own tables.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgfm_suite.analysis.store import AnalysisStore
from ecgfm_suite.report import html_link, write_report
from ecgfm_suite.report.build import PAGE_JS
from ecgfm_suite.results import RunDir
from ecgfm_suite.results.synthetic import synthetic_matrix, synthetic_result
from tests.report.html import parse

SEEDS = (0, 1)
FLOOR = "main metric auroc 0.512 is below the floor 0.6000 for cell {}"


def _run(root: Path, cells, *, outcomes: dict[str, tuple[str, str | None]] = {}, missing=(), planned=(),
         append: bool = True) -> RunDir:
    """Results for ``cells`` but ``missing``; an outcome line per entry of ``outcomes`` (through
    ``RunDir.append_outcome``, or written in one go when not ``append``); ``planned`` cell ids."""
    run = RunDir.create(root, "run")
    rng = np.random.default_rng(0)
    lines = [json.dumps(synthetic_result(c, SEEDS, rng).to_dict()) for c in cells if c.id not in missing]
    run.results_path.write_text("\n".join(lines) + "\n")
    lines = []
    for cell_id, (outcome, reason) in outcomes.items():
        line = {"cell_id": cell_id, "outcome": outcome, "reason": reason, "duration_s": 0.5}
        if append:
            run.append_outcome(line)
        else:
            lines.append(json.dumps(line))
    if lines:
        run.outcomes_path.write_text("\n".join(lines) + "\n")
    if planned:
        AnalysisStore(run.path).write("plan", "cells", {"cells": list(planned)})
    return run


@pytest.fixture
def small(tmp_path):
    """12 cells: 9 passed, one failed its floor, one result without a test outcome; one skipped, one errored
    before writing a result, one planned and never run."""
    cells = synthetic_matrix(3, 2, 2)
    ids = [c.id for c in cells]
    failed, no_outcome, skipped, errored = ids[0], ids[1], ids[2], ids[3]
    outcomes = dict.fromkeys(ids[4:], ("passed", None))
    outcomes[failed] = ("failed", FLOOR.format(failed))
    outcomes[skipped] = ("skipped", "no checkpoint for model000: expected /weights/m.pt")
    outcomes[errored] = ("error", "ecgfm-suite: baselines/model.yml: not valid YAML")
    run = _run(tmp_path, cells, outcomes=outcomes, missing=(skipped, errored),
               planned=[*ids, "model009-task000-frac1"])
    return run, {"failed": failed, "no_outcome": no_outcome, "skipped": skipped, "errored": errored}


def test_every_cells_outcome_reaches_the_page_and_the_csv(small):
    run, which = small
    path = write_report(run.path)
    html = path.read_text()
    page = parse(html)
    ran = {r.cell_id for r in run.results()}
    assert sorted(page.cell_rows) == sorted(ran)  # the leaderboard: one row per cell that ran
    assert sorted(page.skipped_rows) == sorted([which["skipped"], which["errored"], "model009-task000-frac1"])
    expected = {"passed": 8, "failed": 1, "error": 1, "skipped": 1, "no outcome recorded": 1, "not run": 1}
    assert {k: int(v.split()[0]) for k, v in page.outcomes.items()} == expected
    assert "13 cells:" in html
    assert FLOOR.format(which["failed"]) in html
    assert "no checkpoint for model000: expected /weights/m.pt" in html and "not valid YAML" in html
    table = pd.read_csv(run.path / "cell_outcomes.csv").set_index("cell_id")
    assert Counter(table["outcome"]) == expected
    assert table.loc[which["failed"], "reason"] == FLOOR.format(which["failed"])
    assert table.loc[which["skipped"], "duration_s"] == 0.5 and not table.loc[which["skipped"], "result"]
    assert table.loc["model009-task000-frac1", "reason"].startswith("no result recorded")
    board = pd.read_csv(run.path / "leaderboard.csv").set_index("cell_id")
    assert board.loc[which["failed"], "failing"] and board.loc[which["failed"], "outcome"] == "failed"
    assert board.loc[which["no_outcome"], "outcome"] == "no outcome recorded"
    skipped = pd.read_csv(run.path / "skipped_cells.csv")
    assert dict(zip(skipped["cell_id"], skipped["outcome"])) == {
        which["skipped"]: "skipped", which["errored"]: "error", "model009-task000-frac1": "not run"}


def test_a_rerun_cells_latest_outcome_counts(small):
    run, which = small
    run.append_outcome({"cell_id": which["failed"], "outcome": "passed", "reason": None, "duration_s": 1.0})
    assert run.outcomes()[which["failed"]]["outcome"] == "passed"
    write_report(run.path)
    table = pd.read_csv(run.path / "cell_outcomes.csv").set_index("cell_id")
    assert table.loc[which["failed"], "outcome"] == "passed"


def test_a_small_run_is_one_self_contained_page(small):
    run, _ = small
    path = write_report(run.path)
    page = parse(path.read_text())
    assert not (run.path / "pages").exists()
    assert all(link.startswith("#") for link in page.links), page.links
    # the full models × (task, level) leaderboard, one value per cell that ran
    assert sorted(page.pivot) == sorted(r.cell_id for r in run.results())


LARGE = synthetic_matrix(5, 4, 3)  # 60 cells: paged at 7 rows a page


@pytest.fixture
def large(tmp_path):
    run = _run(tmp_path, LARGE, outcomes={c.id: ("passed", None) for c in LARGE}, append=False)
    return run, write_report(run.path, page_rows=7)


def test_a_large_run_aggregates_the_main_page(large):
    run, path = large
    html = path.read_text()
    page = parse(html)
    assert page.cell_rows == []  # no per-cell table on the main page
    results = run.results()
    # the leaderboard: each task at its headline level (here the largest fraction), one value per model
    headline = {t: max((r.scarcity for r in results if r.task == t), key=lambda lv: int(lv[4:]))
                for t in {r.task for r in results}}
    at_headline = {r.cell_id: r for r in results if r.scarcity == headline[r.task]}
    assert sorted(page.pivot) == sorted(at_headline) and len(at_headline) == 5 * 4
    for cell_id, text in page.pivot.items():
        assert text.startswith(f"{at_headline[cell_id].main.value:.3f} ")
        best = max((r for r in at_headline.values() if r.task == at_headline[cell_id].task), key=lambda r: r.main.value)
        assert text.endswith("★") == (cell_id == best.cell_id)
    assert page.outcomes == {"passed": "60 passed"}
    task_list = re.search(r"<table id=\"task-list\".*?</table>", html, re.S).group(0)
    assert task_list.count("<tr") == 1 + 4  # more than a handful of models: one page per task, linked
    assert sorted({link for link in page.links if link.startswith("pages/task-")}) == sorted(
        f"pages/task-{t}.html" for t in {r.task for r in results})


def test_a_large_runs_cells_are_on_linked_pages_that_cover_every_cell_once(large):
    run, path = large
    links = [link for link in parse(path.read_text()).links if link.startswith("pages/leaderboard-")]
    assert len(links) == -(-60 // 7) == len(list((run.path / "pages").glob("leaderboard-*.html")))
    seen: list[str] = []
    digest = base64.b64encode(hashlib.sha256(PAGE_JS.encode()).digest()).decode()
    for k, link in enumerate(links, start=1):
        html = (run.path / link).read_text()
        page = parse(html)
        assert len(page.cell_rows) == (7 if k < len(links) else 60 - 7 * (len(links) - 1))
        seen += page.cell_rows
        assert f"script-src 'sha256-{digest}'" in html and page.scripts == 1  # as self-contained as the main page
        for target in page.links:  # back to the report, neighbours and every other page: all exist
            assert (run.path / link).parent.joinpath(target.split("#")[0]).resolve().exists(), target
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html)
    assert sorted(seen) == sorted(c.id for c in LARGE)  # every cell exactly once


def test_pages_a_rebuild_no_longer_has_are_removed(large):
    run, _ = large
    def section_pages() -> list[str]:
        return sorted(p.name for p in (run.path / "pages").iterdir() if not p.name.startswith(("task-", "model-")))

    write_report(run.path, page_rows=30)
    assert section_pages() == ["leaderboard-001.html", "leaderboard-002.html"]
    write_report(run.path, page_rows=100)
    assert section_pages() == []
    assert len(list((run.path / "pages").glob("task-*.html"))) == 4  # the task and model pages stay


def test_html_link_is_relative_to_the_linking_page_and_escaped(tmp_path):
    run = tmp_path / "reports" / "run <b>"
    link = html_link(run, from_dir=tmp_path / "html")
    assert 'href="../reports/run%20%3Cb%3E/index.html"' in link and "&lt;b&gt;" in link and "<b>" not in link
    assert (tmp_path / "html" / "../reports/run <b>/index.html").resolve() == (run / "index.html").resolve()
    assert html_link(run).startswith('<p>ecgfm-suite report: <a href="file://')


@pytest.mark.slow
def test_paged_report_in_headless_chromium(large, tmp_path):
    """The main page and a page of cells load from disk with no console error; the cell rows are in the DOM."""
    from tests.report.html import chromium, headless

    run, path = large
    binary = chromium()
    for target, rows in ((path, 0), (run.path / "pages" / "leaderboard-002.html", 7)):
        dom = headless(binary, tmp_path / "profile", "--dump-dom", target.as_uri())
        assert dom.returncode == 0, dom.stderr[-2000:]
        page = parse(dom.stdout)
        assert page.root.get("data-loaded") == "1" and json.loads(page.root["data-errors"]) == [], target
        assert [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line] == []
        assert len(page.cell_rows) == rows
