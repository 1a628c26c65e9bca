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
from . import overview, tables
from .findings import DEFAULT_CONTROLS, TOPICS, Evidence, anchor_id, findings

if TYPE_CHECKING:  # type-only: jinja2 and the analysis store are imported when a report is written
    import jinja2

    from ..analysis.store import AnalysisStore
    from ..results.cell import CellResult

log = logging.getLogger(__name__)

REPORT_NAME = "index.html"
PAGES_DIR = "pages"
#: rows of a table shown inline; a longer table goes to pages of this many rows (and the main page aggregates)
PAGE_ROWS = 1000
#: figures of one kind on one task page (a run of hundreds of models links the rest in ``analysis/``)
FIGURES_PER_PAGE = 40
#: more tasks or models than this: a page per task and per model, the main page keeps the overview
HANDFUL = 4
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


#: sorts a ``table.sortable`` by the header clicked (numbers as numbers, "–" last), filters it with the
#: ``input[data-filter]`` naming it, opens the collapsed section a link's target is in, and opens every
#: section for printing; event listeners only (the CSP allows no inline handler)
TABLES_JS = """(function () {
  function key(cell) {
    var text = cell ? cell.textContent.trim() : "";
    var n = parseFloat(text.replace(/^[^0-9+\\-.]+/, ""));
    return isNaN(n) ? [1, 0, text.toLowerCase()] : [0, n, text.toLowerCase()];
  }
  function compare(a, b) { return a[0] - b[0] || a[1] - b[1] || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0); }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var down = th.getAttribute("aria-sort") === "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    var keyed = rows.map(function (row, i) { return [key(row.cells[col]), i, row]; });
    keyed.sort(function (a, b) { return (down ? -1 : 1) * compare(a[0], b[0]) || a[1] - b[1]; });
    keyed.forEach(function (k) { body.appendChild(k[2]); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", down ? "descending" : "ascending");
  }
  function reveal() {
    var id = decodeURIComponent(location.hash.slice(1));
    var node = id && document.getElementById(id);
    for (var el = node; el; el = el.parentElement) { if (el.tagName === "DETAILS") { el.open = true; } }
    if (node) { node.scrollIntoView(); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
      if (!table.tHead || !table.tBodies.length) { return; }
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "sort";
        button.textContent = th.textContent;
        button.title = "sort by " + th.textContent;
        th.textContent = "";
        th.appendChild(button);
        button.addEventListener("click", function () { sortBy(table, col, th); });
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll("input[data-filter]"), function (input) {
      var table = document.getElementById(input.getAttribute("data-filter"));
      input.addEventListener("input", function () {
        var query = input.value.trim().toLowerCase();
        Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
          row.hidden = query !== "" && row.textContent.toLowerCase().indexOf(query) < 0;
        });
      });
    });
    reveal();
  });
  window.addEventListener("hashchange", reveal);
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });
  });
})();"""
#: the page's one script (allowed by its hash)
PAGE_JS = DIAGNOSTICS_JS + "\n" + TABLES_JS


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


def _controls(models: Sequence[str]) -> frozenset[str]:
    """The models registered as controls (random CNN, handcrafted features) among ``models``."""
    from ..models import catalog  # noqa: F401  (registers the built-in models)
    from ..models.spec import MODELS

    known = {m for m in models if m in MODELS and MODELS.get(m).control}
    return frozenset(known or (set(models) & set(DEFAULT_CONTROLS)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis:
    """A registered analysis with a ``table``, rendered generically: its rows, figures and any unreadable key."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: Sequence[Mapping[str, Any]]
    #: task (None: not about one task) → its figures
    figures: Mapping[str | None, Sequence[Figure]]
    problems: tuple[str, ...] = ()


def generic_analyses(store: AnalysisStore, own: Sequence[str]) -> list[Analysis]:
    """Every registered analysis with a ``table`` that the report does not lay out itself, in registry order."""
    from ..analysis.registry import ANALYSES

    out = []
    for name, spec in ANALYSES.registered():
        if spec.table is None or name in own:
            continue
        rows: list[dict[str, Any]] = []
        problems = []
        figures: dict[str | None, list[Figure]] = {}
        for key, payload in store.entries(name).items():
            try:
                rows += spec.rows(key, payload)
            except (KeyError, TypeError, ValueError, IndexError, DataError) as exc:  # an older payload layout
                problems.append(f"{key}: its rows could not be read ({type(exc).__name__}: {exc})")
            task = payload.get("task")
            figures.setdefault(task if isinstance(task, str) else None, []).extend(_figures(store, name, key))
        columns = tuple(dict.fromkeys(k for row in rows for k in row))
        out.append(Analysis(name=name, title=spec.title or name.replace("_", " "), columns=columns, rows=rows,
                            figures=figures, problems=tuple(problems)))
    return out


def _projection_note(payload: Mapping[str, Any]) -> str:
    s, sep = payload.get("scores") or {}, (payload.get("separability") or {}).get("auroc")
    return (f" · silhouette {_num(s.get('silhouette'))} · kNN accuracy {_num(s.get('knn_accuracy'))} (chance "
            f"{_num(s.get('knn_chance'))}) · trustworthiness {_num(s.get('trustworthiness'))} · source AUROC "
            f"{_num(sep)}")


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}"


def _task_block(task: str, ctx: Mapping[str, Any], store: AnalysisStore, page_rows: int) -> dict[str, Any]:
    """Everything the report shows about one task (its page, or its section of a small run's page)."""
    analysis = ctx["analysis"]
    rows = [r for r in ctx["rows"] if r["task"] == task]

    def figures(kind: str, keys: Sequence[str], note: Any = None) -> list[Figure]:
        found = [f for key in keys for f in _figures(store, kind, key, note(analysis[kind][key]) if note else "")]
        return found[:FIGURES_PER_PAGE]

    pairs = sorted(key for key, p in analysis["projection"].items() if p.get("task") == task)
    forest_png = overview.forest(rows) if rows else None
    return {
        "task": task, "anchor": anchor_id("task", task), "page": anchor_id("task", task) + ".html",
        "name": (analysis["tasks"].get(task) or {}).get("name"), "summary": analysis["tasks"].get(task),
        "columns": tables.column_rows(rows), "cells": rows if len(rows) <= page_rows else [],
        "n_cells": len(rows),
        "forest": None if forest_png is None else Figure(
            title=f"{task}: forest plot", caption=f"{task}: main metric and 95 % CI of every model at every level",
            uri="data:image/png;base64," + base64.b64encode(forest_png).decode("ascii")),
        "comparison": [r for r in ctx["tables"]["comparison"] if r["task"] == task],
        "efficiency": [r for r in ctx["tables"]["label_efficiency"] if r["task"] == task],
        "efficiency_figures": figures("label_efficiency", [task] if task in analysis["label_efficiency"] else []),
        "transfer_figures": figures("transfer", sorted(k for k, p in analysis["transfer"].items()
                                                       if p.get("task") == task),
                                    lambda p: f" · mean drop {_fmt(p.get('mean_drop'))}"),
        "projection_figures": figures("projection", pairs, _projection_note),
        "projection": [r for r in ctx["tables"]["projection"] if r["task"] == task],
        "input_figures": figures("input_attribution", sorted(k for k, p in analysis["input_attribution"].items()
                                                             if p.get("task") == task)),
        "leads": [r for r in ctx["tables"]["lead_importance"] if r["task"] == task],
        "cka_figures": figures("cka", [task] if task in analysis["cka"] else []),
        "dimensions": [r for r in ctx["tables"]["embedding_attribution"] if r["task"] == task],
        "dimension_summary": [r for r in ctx["dimension_summary"] if r["task"] == task],
        "per_class": [r for r in ctx["tables"]["per_class"] if r["task"] == task],
        "analyses": [(a, [r for r in a.rows if r.get("task") == task], a.figures.get(task, []))
                     for a in ctx["generic"]],
    }


def _model_block(model: str, ctx: Mapping[str, Any], page_rows: int) -> dict[str, Any]:
    rows = [r for r in ctx["rows"] if r["model"] == model]
    return {
        "model": model, "anchor": anchor_id("model", model), "page": anchor_id("model", model) + ".html",
        "cells": rows if len(rows) <= page_rows else [], "n_cells": len(rows),
        "best": sum(1 for r in rows if r["best"]),
        "not_worse": sum(1 for r in rows if r["not_worse"] and not r["best"]),
        "failing": sum(1 for r in rows if r["failing"]), "tasks": sorted({r["task"] for r in rows}),
        "info": ctx["meta"]["models"].get(model, {}), "control": model in ctx["controls"],
        "representation": [r for r in ctx["tables"]["representation"] if r["model"] == model],
        "projection": [r for r in ctx["tables"]["projection"] if r["model"] == model],
        "dimension_summary": [r for r in ctx["dimension_summary"] if r["model"] == model],
        "transfer": [r for r in ctx["transfer_summary"] if r["model"] == model],
    }


def transfer_summary(entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, task): the mean drop and the largest drop from in-region to another region."""
    out = []
    for payload in entries.values():
        worst = max(((cell["drop"], a, b) for a, row in payload["cells"].items() for b, cell in row.items()
                     if a != b and cell.get("drop") is not None), default=None)
        out.append({"model": payload["model"], "task": payload["task"], "metric": payload["metric"],
                    "regions": len(payload.get("train_regions", [])), "mean_drop": payload.get("mean_drop"),
                    "largest_drop": None if worst is None else worst[0],
                    "largest_drop_pair": None if worst is None else f"{worst[1]} → {worst[2]}"})
    return sorted(out, key=lambda r: (r["task"], r["model"]))


def collect(run_dir: Path, *, page_rows: int = PAGE_ROWS) -> dict[str, Any]:
    """Everything the pages show, read from the run directory; sections longer than ``page_rows`` are paged."""
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
    models = sorted({r["model"] for r in rows})
    dimensions = tables.dimension_rows(analysis["dimension_attribution"], tables.dimension_names(models))
    generic = generic_analyses(store, ANALYSIS_KINDS)
    csv_tables = {
        "leaderboard": rows,
        "per_class": tables.class_rows(results),
        "cell_outcomes": cells,
        "skipped_cells": tables.skipped_cells(cells),
        "skipped_analyses": [{"analysis": s["analysis"], "what": s["what"], "reason": s["reason"]}
                             for s in skips if s["analysis"] != "cells"],
        "label_efficiency": tables.efficiency_rows(analysis["label_efficiency"]),
        "transfer": tables.transfer_rows(analysis["transfer"]),
        "embedding_attribution": dimensions,
        "lead_importance": tables.lead_rows(analysis["input_attribution"]),
        "projection": tables.projection_rows(analysis["projection"]),
        "representation": tables.representation_rows(analysis["representation"]),
        "cka": tables.cka_rows(analysis["cka"]),
        "comparison": tables.comparison_rows(comparisons),
        "exclusions": tables.excluded_record_rows(results),
        "cell_exclusions": tables.cell_exclusion_rows(results),
        **{a.name: a.rows for a in generic},
    }
    # past a page of cells the main page aggregates: each task at its headline level, every cell on pages
    aggregated = len(rows) > page_rows
    headline = tables.headline_rows(rows) if aggregated else rows
    board_models, board = tables.column_rows(headline)
    gate = _read_json(run.path / "gate.json")
    controls = _controls(models)
    tasks = sorted({r["task"] for r in rows})
    paged = len(tasks) > HANDFUL or len(models) > HANDFUL
    single_lead = sorted({p["model"] for p in analysis["input_attribution"].values() if tables.reads_one_lead(p)})
    ctx: dict[str, Any] = {
        "run_dir": run.path, "results": results, "meta": _metadata(results, meta), "tables": csv_tables,
        "rows": rows, "analysis": analysis, "generic": generic, "controls": controls, "gate": gate,
        "dimension_summary": tables.dimension_summary(dimensions),
        "transfer_summary": transfer_summary(analysis["transfer"]),
        "aggregated": aggregated, "paged": paged, "single_lead": single_lead,
        "outcome_counts": tables.outcome_counts(cells), "n_cells": len(cells),
        "board": {"models": board_models, "rows": board},
        "gate_rows": [{"cell_id": k, **v} for k, v in sorted(((gate or {}).get("cells") or {}).items())
                      if v.get("status") not in ("pass", "new")],
    }
    evidence = Evidence(cells=headline, comparisons=comparisons, label_efficiency=analysis["label_efficiency"],
                        transfer=analysis["transfer"], gate=gate, controls=controls,
                        analysis_rows={a.name: a.rows for a in generic},
                        href=lambda kind, *parts: "#" + anchor_id("column" if kind == "cell" and aggregated else kind,
                                                                  *(_column_of(parts[0], rows) if kind == "cell"
                                                                    and aggregated else parts)))
    ctx["findings"] = findings(evidence)
    ctx["topics"] = TOPICS
    ctx["overview"] = [f for f in (
        _drawn("Leaderboard heatmap", "Models × tasks at each scarcity level: colour is the main metric minus the best "
               "control's (brighter is better), each cell gives the value and ± half its 95 % CI; ★ best, ≈ not "
               "significantly worse than the best", overview.heatmap(headline, controls)),
    ) if f is not None]
    ctx["efficiency_overview"] = _drawn(
        "Label-efficiency curves", "Main metric against the fraction of the training split, every task and every "
        "level that ran; dashed: the reference control's full-data score", overview.efficiency(
            analysis["label_efficiency"]))
    ctx["sections"] = {
        "leaderboard": section("leaderboard", "Cells", rows, anchor="cells", unit="cells", page_rows=page_rows),
        "skipped_cells": section("skipped_cells", "Cells without a result", csv_tables["skipped_cells"],
                                 anchor="exclusions", unit="cells", page_rows=page_rows),
        **{name: section(name, title, csv_tables[name], anchor=anchor, page_rows=page_rows) for name, title, anchor in (
            ("comparison", "Model comparisons", "comparison"), ("skipped_analyses", "Skipped analyses", "exclusions"),
            ("exclusions", "Records left out", "exclusions"),
            ("cell_exclusions", "Cells with records left out", "exclusions"))},
    }
    ctx["task_blocks"] = [_task_block(t, ctx, store, page_rows) for t in tasks]
    ctx["model_blocks"] = [_model_block(m, ctx, page_rows) for m in models]
    return ctx


def leaderboard_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The cell rows of a run directory with their best / not-significantly-worse marks (from its stored
    comparisons): what the compact leaderboard, the terminal and the paper tables print."""
    from ..analysis.store import AnalysisStore
    from ..results import RunDir

    run = RunDir.open(run_dir)
    return tables.cell_rows(run.results(), AnalysisStore(run.path).entries("comparison"), run.outcomes())


def _column_of(cell_id: str, rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The (task, headline level) column a cell's finding links to on an aggregated main page."""
    task = next(r["task"] for r in rows if r["cell_id"] == cell_id)
    return task, next(iter(tables.headline_rows([r for r in rows if r["task"] == task])))["scarcity"]


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("report: %s: not readable JSON (%s)", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _drawn(title: str, caption: str, png: bytes | None) -> Figure | None:
    if png is None:
        return None
    return Figure(title=title, caption=caption, uri="data:image/png;base64," + base64.b64encode(png).decode("ascii"))


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
    env.globals["anchor_id"] = anchor_id
    return env


def render(context: Mapping[str, Any]) -> dict[str, str]:
    """``index.html``, each section page (``pages/<key>-NNN.html``) and, past a handful of tasks or models, a
    page per task and per model (``pages/task-<task>.html``, ``pages/model-<model>.html``): path → HTML."""
    env = _environment()
    common = {
        "run_dir": context["run_dir"], "diagnostics_js": PAGE_JS, "report_name": REPORT_NAME,
        "script_hash": base64.b64encode(hashlib.sha256(PAGE_JS.encode()).digest()).decode(),
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "csv": context["csv"],
    }
    page_template = env.get_template("page.html.j2")
    out = {f"{PAGES_DIR}/{p.name}": page_template.render(**common, section=s, page=p)
           for s in context["sections"].values() for p in s.pages}
    if context["paged"]:
        task_template, model_template = env.get_template("task.html.j2"), env.get_template("model.html.j2")
        blocks = {"task_blocks": context["task_blocks"], "model_blocks": context["model_blocks"]}
        for block in context["task_blocks"]:
            out[f"{PAGES_DIR}/{block['page']}"] = task_template.render(**common, **blocks, b=block)
        for block in context["model_blocks"]:
            out[f"{PAGES_DIR}/{block['page']}"] = model_template.render(**common, **blocks, b=block)
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
