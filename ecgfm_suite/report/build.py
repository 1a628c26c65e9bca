"""``write_report(run_dir)``: one self-contained ``index.html`` plus CSV tables for a run directory.

The page is assembled from what the run directory holds, nothing is recomputed: the cells'
``results.jsonl``, ``run.json``, the optional ``outcomes.jsonl`` (one JSON object per test:
``cell_id``, ``outcome`` passed/failed/skipped, ``reason``) and the analysis stage's JSON and
PNG files under ``analysis/``. Images are embedded as base64 data URIs, there is no external
resource, and a Content-Security-Policy allows nothing but data-URI images, inline styles and
the page's own diagnostics script (by hash), so the file opens offline and an injected name
cannot run. Every name reaches the page through Jinja2 autoescaping.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import write_atomic
from ..errors import DataError
from . import tables

log = logging.getLogger(__name__)

REPORT_NAME = "index.html"
OUTCOMES_NAME = "outcomes.jsonl"
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
    uri: str


def data_uri(path: Path) -> str:
    """A PNG file as a ``data:image/png;base64`` URI (anything that is not a PNG is refused)."""
    raw = Path(path).read_bytes()
    if not raw.startswith(PNG_SIGNATURE):
        raise DataError("not a PNG image", path)
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"line {n} is not JSON ({exc.msg})", path) from None
    return out


def _figures(store: Any, kind: str, key: str, title: str) -> list[Figure]:
    figures = []
    for png in store.figures(kind, key):
        try:
            figures.append(Figure(title=f"{title} · {png.stem.split('.', 1)[-1]}", uri=data_uri(png)))
        except DataError as exc:
            log.warning("report: %s", exc)
    return figures


def _metadata(results: Sequence[Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Run metadata from run.json, completed from the cells' results where run.json is absent or partial."""
    models: dict[str, dict[str, Any]] = {}
    for r in results:
        models.setdefault(r.model, {"checkpoint_sha256": r.checkpoint_sha256, "random_init": r.random_init,
                                    "preprocessing": json.dumps(r.preprocessing, sort_keys=True)})
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
    }


def collect(run_dir: Path) -> dict[str, Any]:
    """Everything the page shows, read from the run directory."""
    from ..analysis.stage import AnalysisStore
    from ..results import RunDir

    run = RunDir.open(run_dir)
    results = run.results()
    meta = json.loads((run.path / "run.json").read_text()) if (run.path / "run.json").exists() else {}
    outcomes = {o["cell_id"]: o for o in _read_jsonl(run.path / OUTCOMES_NAME) if o.get("cell_id")}
    store = AnalysisStore(run.path)
    analysis = {kind: store.entries(kind) for kind in ANALYSIS_KINDS}
    comparisons = analysis["comparison"]
    rows = tables.cell_rows(results, comparisons, outcomes)
    columns, pivot = tables.pivot(rows)
    planned = (analysis["plan"].get("cells") or {}).get("cells", [])
    skips = analysis["skipped"].values()
    cell_skips = {s["what"]: s["reason"] for s in skips if s["analysis"] == "cells"}
    csv_tables = {
        "leaderboard": rows,
        "skipped_cells": tables.skipped_cells(planned, results, outcomes, cell_skips),
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
    }
    figures = {kind: {key: _figures(store, kind, key, key) for key in sorted(analysis[kind])}
               for kind in ("input_attribution", "projection", "transfer", "cka", "label_efficiency")}
    return {
        "run_dir": run.path, "results": results, "meta": _metadata(results, meta), "columns": columns,
        "pivot": pivot, "tables": csv_tables, "figures": figures, "analysis": analysis,
        "n_figures": sum(len(f) for per_kind in figures.values() for f in per_kind.values()),
    }


def write_tables(target: Path, csv_tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, str]:
    """Each table as ``<name>.csv`` in ``target`` (atomic); returns table → file name."""
    import pandas as pd

    names = {}
    for name, rows in csv_tables.items():
        file_name = f"{name}.csv"
        write_atomic(target / file_name, pd.DataFrame(list(rows)).to_csv(index=False))
        names[name] = file_name
    return names


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "–" if value != value else f"{value:.{digits}f}"
    return str(value)


def render(context: Mapping[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("ecgfm_suite.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    script_hash = base64.b64encode(hashlib.sha256(DIAGNOSTICS_JS.encode()).digest()).decode()
    return env.get_template("report.html.j2").render(
        **context, diagnostics_js=DIAGNOSTICS_JS, script_hash=script_hash,
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


def html_link(run_dir_path: Path) -> str:
    """An HTML snippet linking the run's report, for pytest-html's summary (``pytest_html_results_summary``)."""
    from markupsafe import escape

    target = Path(run_dir_path).resolve() / REPORT_NAME
    return f'<p>ecgfm-suite report: <a href="{escape(target.as_uri())}">{escape(str(target))}</a></p>'


def write_report(run_dir_path: Path) -> Path:
    """Write ``index.html`` and the CSV tables into the run directory; returns the page's path."""
    run_dir = Path(run_dir_path)
    if not run_dir.is_dir():
        raise DataError("run directory not found", run_dir)
    context = collect(run_dir)
    csv_names = write_tables(run_dir, context["tables"])
    html = render({**context, "csv": csv_names})
    target = run_dir / REPORT_NAME
    write_atomic(target, html)
    return target
