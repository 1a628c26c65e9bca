"""``write_report(run_dir)``: a self-contained ``index.html`` (plus pages when long) and CSV tables for a run.

The page is assembled from what the run directory holds, nothing is recomputed: the cells'
``results.jsonl``, ``run.json``, ``outcomes.jsonl`` (each cell test's outcome: passed, failed with
the gate's message, skipped with the reason, error) and the analysis stage's JSON and PNG files
under ``analysis/``. Images are embedded as base64 data URIs, there is no external resource, and a
Content-Security-Policy allows nothing but data-URI images, inline styles and the page's own
diagnostics script (by hash), so the file opens offline and an injected name cannot run. Every
name reaches the page through Jinja2 autoescaping.

A run of more than ``PAGE_ROWS`` cells (a sharded matrix of 100,000) keeps the main page small:
outcome counts, a per-task summary and the models × tasks leaderboard at each task's headline
level; every long table (cells, comparisons, …) and figure list goes to static pages
``pages/<table>-NNN.html`` linked from it, each as self-contained as the main page.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from .._io import write_atomic
from ..errors import DataError
from ..results.meta import RunMeta
from . import tables

if TYPE_CHECKING:  # type-only: jinja2 and the analysis store are imported when a report is written
    import jinja2

    from ..analysis.store import AnalysisStore
    from ..results.cell import CellResult

log = logging.getLogger(__name__)

REPORT_NAME = "index.html"
PAGES_DIR = "pages"
#: rows of a table shown inline; a longer table goes to pages of this many rows (and the main page aggregates)
PAGE_ROWS = 1000
#: cells of the models × columns leaderboard on one page (the rest: more pages of models)
PIVOT_CELLS = 10_000
FIGURES_PER_PAGE = 40
FIGURE_SECTIONS = (("label_efficiency", "Label-efficiency curves", "efficiency"),
                   ("transfer", "Transfer matrices", "transfer"),
                   ("input_attribution", "SHAP over the input", "shap-input"),
                   ("projection", "UMAP maps", "umap"), ("cka", "CKA between models", "representation"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ANALYSIS_KINDS = ("dimension_attribution", "input_attribution", "projection", "representation", "transfer", "cka",
                  "label_efficiency", "comparison", "tasks", "skipped", "plan")
#: records a test of the page in a browser reads: script errors and whether every image decoded
DIAGNOSTICS_JS = """(function () {
  var errors = [];
  var root = document.documentElement;
  function note(message) { errors.push(String(message)); root.setAttribute("data-errors", JSON.stringify(errors)); }
  window.addEventListener("error", function (e) {
    var t = e.target;
    note(t && t.tagName ? "failed to load " + t.tagName.toLowerCase() : (e.message || "error"));
  }, true);
  window.addEventListener("unhandledrejection", function (e) { note("unhandled rejection: " + e.reason); });
  document.addEventListener("securitypolicyviolation", function (e) { note("csp: " + e.violatedDirective); });
  var consoleError = console.error;
  console.error = function () {
    note(Array.prototype.join.call(arguments, " "));
    consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    var images = Array.prototype.map.call(document.images, function (img) {
      return img.complete && img.naturalWidth > 0 ? 1 : 0;
    });
    root.setAttribute("data-images", JSON.stringify(images));
    root.setAttribute("data-errors", JSON.stringify(errors));
    root.setAttribute("data-loaded", "1");
  });
})();"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    title: str
    caption: str
    uri: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    """One page of a long section: ``pages/<name>``, rows ``first`` … ``first + len(rows) - 1``."""

    number: int
    name: str
    first: int
    label: str
    rows: Sequence[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """A table (or list of figures) of the report: inline when short, else split over pages of its own.

    ``macro`` names the macro of ``_tables.html.j2`` that renders rows (with ``extra`` keyword arguments),
    so a page and the inline table are the same markup.
    """

    key: str
    macro: str
    title: str
    anchor: str
    rows: Sequence[Any]
    unit: str = "rows"
    page_rows: int = 0
    pages: tuple[Page, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def data_uri(path: Path) -> str:
    """A PNG file as a ``data:image/png;base64`` URI (anything that is not a PNG is refused)."""
    raw = Path(path).read_bytes()
    if not raw.startswith(PNG_SIGNATURE):
        raise DataError("not a PNG image", path)
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def _row_label(row: Any) -> str:
    if isinstance(row, Figure):
        return row.title
    parts = [str(row[k]) for k in ("task", "scarcity", "model", "cell_id", "analysis") if row.get(k) is not None]
    return " ".join(parts[:3])


def section(key: str, title: str, rows: Sequence[Any], *, anchor: str, page_rows: int, macro: str | None = None,
            unit: str = "rows", extra: Mapping[str, Any] | None = None) -> Section:
    """``rows`` inline when there are at most ``page_rows``, else pages ``<key>-001.html`` … of ``page_rows``."""
    pages: list[Page] = []
    if len(rows) > page_rows:
        for k, first in enumerate(range(0, len(rows), page_rows), start=1):
            chunk = rows[first:first + page_rows]
            head, tail = _row_label(chunk[0]), _row_label(chunk[-1])
            pages.append(Page(number=k, name=f"{key}-{k:03d}.html", first=first, rows=chunk,
                              label=head if head == tail else f"{head} … {tail}"))
    return Section(key=key, macro=macro or key, title=title, anchor=anchor, rows=rows, unit=unit,
                   page_rows=page_rows, pages=tuple(pages), extra=dict(extra or {}))


def _figures(store: AnalysisStore, kind: str, key: str, note: str = "") -> list[Figure]:
    figures = []
    for png in store.figures(kind, key):
        title = f"{key} · {png.stem.split('.', 1)[-1]}"
        try:
            figures.append(Figure(title=title, caption=title + note, uri=data_uri(png)))
        except DataError as exc:
            log.warning("report: %s", exc)
    return figures


def _metadata(results: Sequence[CellResult], run_meta: RunMeta | None) -> dict[str, Any]:
    """Run metadata from run.json, completed from the cells' results where run.json is absent or partial."""
    meta = run_meta.to_dict() if run_meta is not None else {}
    models: dict[str, dict[str, Any]] = {}
    for r in results:  # windows per record differ by task: the cell table shows them, the model its policy
        model = models.setdefault(r.model, {
            "checkpoint_sha256": r.checkpoint_sha256, "random_init": r.random_init, "window_policies": set(),
            "preprocessing": json.dumps({k: v for k, v in r.preprocessing.items() if k != "windows_per_record"},
                                        sort_keys=True)})
        model["window_policies"].add(tables.window_policy(r.preprocessing))
    for model in models.values():
        model["window_policies"] = ", ".join(sorted(model["window_policies"]))
    versions = dict(meta.get("dataset_versions") or {})
    for r in results:
        versions.update(r.dataset_versions)
    first = results[0] if results else None
    return {
        "run_id": meta.get("run_id"), "models": dict(sorted(models.items())),
        "dataset_versions": dict(sorted(versions.items())),
        "seeds": meta.get("seeds") or (list(first.seeds) if first else []),
        "probes": meta.get("probes") or (sorted({r.probe for r in results})),
        "n_boot": meta.get("n_boot"), "exitstatus": meta.get("exitstatus"),
        "environment": dict(sorted((meta.get("environment") or (first.environment if first else {})).items())),
        "git_commit": meta.get("git_commit") or (first.git_commit if first else None),
        "suite_version": first.suite_version if first else None,
        "task_analyses": meta.get("task_analyses"),
    }


def collect(run_dir: Path, *, page_rows: int = PAGE_ROWS) -> dict[str, Any]:
    """Everything the page shows, read from the run directory; sections longer than ``page_rows`` are paged."""
    from ..analysis.store import AnalysisStore
    from ..results import RunDir

    run = RunDir.open(run_dir)
    results = run.results()
    meta = RunMeta.read(run.path)
    outcomes = run.outcomes()
    store = AnalysisStore(run.path)
    analysis = {kind: store.entries(kind) for kind in ANALYSIS_KINDS}
    comparisons = analysis["comparison"]
    rows = tables.cell_rows(results, comparisons, outcomes)
    planned = (analysis["plan"].get("cells") or {}).get("cells", [])
    skips = analysis["skipped"].values()
    cell_skips = {s["what"]: s["reason"] for s in skips if s["analysis"] == "cells"}
    cells = tables.cell_outcomes(planned, results, outcomes, cell_skips)
    csv_tables = {
        "leaderboard": rows,
        "per_class": tables.class_rows(results),
        "cell_outcomes": cells,
        "skipped_cells": tables.skipped_cells(cells),
        "skipped_analyses": [{"analysis": s["analysis"], "what": s["what"], "reason": s["reason"]}
                             for s in skips if s["analysis"] != "cells"],
        "label_efficiency": tables.efficiency_rows(analysis["label_efficiency"]),
        "transfer": tables.transfer_rows(analysis["transfer"]),
        "embedding_attribution": tables.dimension_rows(analysis["dimension_attribution"]),
        "lead_importance": tables.lead_rows(analysis["input_attribution"]),
        "projection": tables.projection_rows(analysis["projection"]),
        "representation": tables.representation_rows(analysis["representation"]),
        "cka": tables.cka_rows(analysis["cka"]),
        "comparison": tables.comparison_rows(comparisons),
        "exclusions": tables.excluded_record_rows(results),
        "cell_exclusions": tables.cell_exclusion_rows(results),
    }
    # past a page of cells the main page aggregates: each task at its headline level, every cell on pages
    aggregated = len(rows) > page_rows
    headline = tables.headline_rows(rows) if aggregated else rows
    columns, pivot = tables.pivot(headline)
    sections = {
        "pivot": section("pivot", "Leaderboard: models × tasks", pivot, anchor="leaderboard", unit="models",
                         page_rows=max(10, PIVOT_CELLS // max(1, len(columns))), extra={"columns": columns}),
        "task_summary": section("task_summary", "Per task", tables.task_rows(cells, headline), anchor="tasks",
                                unit="tasks", page_rows=page_rows),
        "leaderboard": section("leaderboard", "Cells", rows, anchor="leaderboard", unit="cells", page_rows=page_rows),
        "per_class": section("per_class", "Per-class metrics", csv_tables["per_class"], anchor="per-class",
                             unit="class rows", page_rows=page_rows),
        "skipped_cells": section("skipped_cells", "Cells without a result", csv_tables["skipped_cells"],
                                 anchor="exclusions", unit="cells", page_rows=page_rows),
        **{name: section(name, title, csv_tables[name], anchor=anchor, page_rows=page_rows) for name, title, anchor in (
            ("label_efficiency", "Label efficiency", "efficiency"),
            ("embedding_attribution", "SHAP over embedding dimensions", "shap-dims"),
            ("lead_importance", "SHAP over the input: lead importance", "shap-input"),
            ("projection", "UMAP scores", "umap"), ("representation", "Representation statistics", "representation"),
            ("comparison", "Model comparisons", "comparison"), ("skipped_analyses", "Skipped analyses", "exclusions"),
            ("exclusions", "Records left out", "exclusions"),
            ("cell_exclusions", "Cells with records left out", "exclusions"))},
    }
    for kind, title, anchor in FIGURE_SECTIONS:
        figures = [f for key in sorted(analysis[kind]) for f in _figures(store, kind, key, _figure_note(kind, key,
                                                                                                   analysis))]
        sections[f"figures_{kind}"] = section(f"figures_{kind}", title, figures, anchor=anchor, macro="figures",
                                              unit="figures", page_rows=FIGURES_PER_PAGE)
    return {
        "run_dir": run.path, "results": results, "meta": _metadata(results, meta), "tables": csv_tables,
        "sections": sections, "aggregated": aggregated, "analysis": analysis,
        "outcome_counts": tables.outcome_counts(cells), "n_cells": len(cells),
        "n_figures": sum(len(sections[f"figures_{kind}"].rows) for kind, _, _ in FIGURE_SECTIONS),
    }


def _figure_note(kind: str, key: str, analysis: Mapping[str, Mapping[str, Any]]) -> str:
    if kind == "transfer":
        return f" · mean drop {_fmt(analysis['transfer'][key].get('mean_drop'))}"
    return ""


def write_tables(target: Path, csv_tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, str]:
    """Each table as ``<name>.csv`` in ``target`` (atomic); returns table → file name."""
    import pandas as pd

    names = {}
    for name, rows in csv_tables.items():
        file_name = f"{name}.csv"
        write_atomic(target / file_name, pd.DataFrame(list(rows)).to_csv(index=False))
        names[name] = file_name
    return names


def _fmt(value: object, digits: int = 3) -> str:
    """A value for the page; what it makes of numbers needs no escaping (Markup: a large page renders
    faster), anything else stays a plain string that autoescaping escapes."""
    if value is None:
        return Markup("–")
    if isinstance(value, bool):
        return Markup("yes" if value else "no")
    if isinstance(value, float):
        return Markup("–" if value != value else f"{value:.{digits}f}")
    if isinstance(value, int):
        return Markup(value)
    return str(value)


def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("ecgfm_suite.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    return env


def render(context: Mapping[str, Any]) -> dict[str, str]:
    """``index.html`` and every section page (``pages/<key>-NNN.html``): relative path → HTML."""
    env = _environment()
    common = {
        "run_dir": context["run_dir"], "diagnostics_js": DIAGNOSTICS_JS, "report_name": REPORT_NAME,
        "script_hash": base64.b64encode(hashlib.sha256(DIAGNOSTICS_JS.encode()).digest()).decode(),
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    page_template = env.get_template("page.html.j2")
    out = {f"{PAGES_DIR}/{p.name}": page_template.render(**common, section=s, page=p)
           for s in context["sections"].values() for p in s.pages}
    out[REPORT_NAME] = env.get_template("report.html.j2").render({**context, **common})
    return out


def html_link(run_dir_path: Path, from_dir: Path | None = None) -> str:
    """An HTML snippet linking the run's report, for pytest-html's summary (``pytest_html_results_summary``).

    With ``from_dir`` (the folder of the page that links) the link is relative, so the two reports
    still link when a CI job uploads them together; else it is a ``file://`` URI.
    """
    import os
    from urllib.parse import quote

    from markupsafe import escape

    target = Path(run_dir_path).resolve() / REPORT_NAME
    href = target.as_uri()
    if from_dir is not None:
        with contextlib.suppress(ValueError):  # another drive (Windows): no relative path
            href = quote(Path(os.path.relpath(target, Path(from_dir).resolve())).as_posix())
    return f'<p>ecgfm-suite report: <a href="{escape(href)}">{escape(str(target))}</a></p>'


def write_report(run_dir_path: Path, *, page_rows: int = PAGE_ROWS) -> Path:
    """Write ``index.html``, its pages and the CSV tables into the run directory; returns the page's path.

    Pages of an earlier report of the same run that this one does not have are removed; ``index.html``
    is written last, so it never links a page that is not there yet.
    """
    run_dir = Path(run_dir_path)
    if not run_dir.is_dir():
        raise DataError("run directory not found", run_dir)
    context = collect(run_dir, page_rows=page_rows)
    csv_names = write_tables(run_dir, context["tables"])
    documents = render({**context, "csv": csv_names})
    index = documents.pop(REPORT_NAME)
    for name, html in documents.items():
        write_atomic(run_dir / name, html)
    pages = run_dir / PAGES_DIR
    if pages.is_dir():
        for stale in pages.glob("*.html"):
            if f"{PAGES_DIR}/{stale.name}" not in documents:
                stale.unlink()
    target = run_dir / REPORT_NAME
    write_atomic(target, index)
    return target
