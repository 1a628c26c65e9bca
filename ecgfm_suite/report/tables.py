"""The report's tables as plain rows (dicts): one source for the HTML page and the CSV files beside it."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..data.scarcity import parse_level
from ..errors import SpecError
from ..metrics import METRICS
from ..results.cell import CellResult, CellSpec, summary_columns

#: top dimensions the page lists per cell and class (the CSV has all k)
TOP_SHOWN = 8


@functools.cache  # called per row of 100,000-cell runs, on a handful of distinct levels
def level_order(level: str) -> tuple[int, int]:
    spec = parse_level(level)
    return (0 if spec.kind == "frac" else 1, spec.amount)


#: a cell's test outcome, as ``outcomes.jsonl`` records it, plus two the report infers: a result without a
#: recorded test (a merged or library-written run) and a planned cell with neither
OUTCOMES = ("passed", "failed", "error", "skipped", "no outcome recorded", "not run")
FAILED = ("failed", "error")
NO_RESULT = "no result recorded (not run, or failed before writing a result)"


def cell_rows(results: Sequence[CellResult], comparisons: Mapping[str, Mapping[str, Any]],
              outcomes: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell that ran, with the best/not-significantly-worse marks of its (task, scarcity) column.

    ``comparisons`` maps ``"task-scarcity"`` to the stored comparison; ``outcomes`` maps a cell id to
    its test outcome (``{"outcome": "passed"|"failed"|..., "reason": ...}``) when the run recorded them.
    """
    columns: dict[tuple[str, str], list[Any]] = {}
    for r in results:
        columns.setdefault((r.task, r.scarcity), []).append(r)
    rows = []
    for (task, level), members in sorted(columns.items(), key=lambda kv: (kv[0][0], level_order(kv[0][1]))):
        finite = [r for r in members if r.main.is_finite()]
        best = None
        if finite:
            higher = METRICS.get(finite[0].main_metric).higher_is_better
            best = (max if higher else min)(finite, key=lambda r: (r.main.value, r.model)).model
        comparison = comparisons.get(f"{task}-{level}")
        for r in sorted(members, key=lambda r: r.model):
            outcome = outcomes.get(r.cell_id, {})
            status = outcome.get("outcome") or "no outcome recorded"
            verdict = (comparison or {}).get("verdict", {}).get(r.model) if comparison else None
            rows.append({
                "cell_id": r.cell_id, "model": r.model, "task": r.task, "scarcity": r.scarcity,
                "metric": r.main_metric, "value": r.main.value, "ci_low": r.main.ci_low, "ci_high": r.main.ci_high,
                "seed_std": r.main.seed_std, "n_train": r.n_train, "n_test": r.n_test,
                "best": r.model == best,
                "not_worse": None if verdict is None else not verdict["significantly_worse"],
                "p_vs_best": None if verdict is None else verdict.get("p_value"),
                "outcome": status,
                "failing": status in FAILED or not r.main.is_finite(),
                "failure": outcome.get("reason") if status in FAILED
                else (None if r.main.is_finite() else "main metric is not finite"),
                "random_init": r.random_init, "checkpoint_sha256": r.checkpoint_sha256,
                "pretraining_overlap": ", ".join(r.pretraining_overlap),
                "window_policy": window_policy(r.preprocessing),
                "windows_per_record": windows_per_record(r.preprocessing),
            })
    return rows


def window_policy(preprocessing: Mapping[str, Any]) -> str:
    """The record-level window policy that produced a cell's embeddings. A result written before the policies
    existed has none: then every model embedded its official test-time windows."""
    return str(preprocessing.get("window_policy") or "official")


def windows_per_record(preprocessing: Mapping[str, Any]) -> float | None:
    """Mean windows per record over the cell's datasets (their records pooled), None where not recorded."""
    per_dataset = (preprocessing.get("windows_per_record") or {}).values()
    records = sum(d.get("records", 0) for d in per_dataset)
    return sum(d.get("windows", 0) for d in per_dataset) / records if records else None


def class_rows(results: Sequence[CellResult]) -> list[dict[str, Any]]:
    """One row per class of each multiclass/multilabel cell (its headline probe), by task, level, model and class
    order: the per-class values its macro metric averages, with the class's prevalences and, for a class without
    both labels in the test split, why it has none. Binary and regression cells have no rows."""
    rows = []
    for r in sorted((r for r in results if r.per_class), key=lambda r: (r.task, level_order(r.scarcity), r.model)):
        for c in r.per_class:
            row = {"cell_id": r.cell_id, "model": r.model, "task": r.task, "scarcity": r.scarcity, "class": c.label,
                   "train_prevalence": c.train_prevalence, "test_prevalence": c.test_prevalence,
                   "n_test_positive": c.n_test_positive}
            for name, m in c.metrics.items():
                row.update(summary_columns(name, m))
            rows.append({**row, "undefined": c.undefined})
    return rows


def headline_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The cell rows at each task's headline level (the most training data): the aggregated leaderboard."""
    from ..analysis.inputs import headline_level

    levels: dict[str, set[str]] = {}
    for r in rows:
        levels.setdefault(r["task"], set()).add(r["scarcity"])
    headline = {task: headline_level(sorted(found)) for task, found in levels.items()}
    return [r for r in rows if r["scarcity"] == headline[r["task"]]]


def _spec(cell_id: str, result: CellResult | None, outcome: Mapping[str, Any] | None) -> tuple[str | None, ...]:
    """(model, task, scarcity) of a cell from its result or outcome, else parsed from the id."""
    if result is not None:
        return result.model, result.task, result.scarcity
    if outcome and outcome.get("task"):
        return outcome.get("model"), outcome["task"], outcome.get("scarcity")
    try:
        spec = CellSpec.from_id(cell_id)
    except SpecError:
        return None, None, None
    return spec.model, spec.task, spec.scarcity


def cell_outcomes(planned: Sequence[str], results: Sequence[CellResult], outcomes: Mapping[str, Mapping[str, Any]],
                  analysis_skips: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per cell the run knows of (planned, tested or with a result): its test outcome and why.

    A cell without a result gets the best reason known: its test's (skip reason, failure or error
    message), else the reason the analysis stage met for the same (model, task), else "no result recorded".
    """
    by_id = {r.cell_id: r for r in results}
    rows = []
    for cell_id in dict.fromkeys([*planned, *outcomes, *by_id]):
        outcome, result = outcomes.get(cell_id), by_id.get(cell_id)
        model, task, level = _spec(cell_id, result, outcome)
        status = (outcome or {}).get("outcome") or ("no outcome recorded" if result else "not run")
        reason = (outcome or {}).get("reason")
        if not reason and result is None:
            reason = analysis_skips.get(cell_id.rsplit("-", 1)[0]) or NO_RESULT
        rows.append({"cell_id": cell_id, "model": model, "task": task, "scarcity": level, "outcome": status,
                     "reason": reason, "duration_s": (outcome or {}).get("duration_s"),
                     "result": result is not None})
    return sorted(rows, key=lambda r: (r["task"] or "", level_order(r["scarcity"]) if r["scarcity"] else (9, 0),
                                       r["model"] or "", r["cell_id"]))


def outcome_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Cells per outcome, in ``OUTCOMES`` order (unknown outcomes after), zero counts left out."""
    counts = Counter(r["outcome"] for r in rows)
    return {o: counts[o] for o in [*OUTCOMES, *sorted(set(counts) - set(OUTCOMES))] if counts[o]}


def skipped_cells(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The cells (rows of ``cell_outcomes``) that left no result, with their outcome and reason."""
    return [{"cell_id": c["cell_id"], "outcome": c["outcome"], "reason": c["reason"]} for c in cells
            if not c["result"]]


#: per-cell exclusion counts (``CellResult.exclusions``), in column order; results before schema 2 lack the last two
EXCLUSION_COUNTS = ("records_without_embedding", "dataset_exclusions", "index_exclusions", "prepare_exclusions")


def cell_exclusion_rows(results: Sequence[CellResult]) -> list[dict[str, Any]]:
    """Cells that lost records: test records without an embedding, records their datasets left out (in all,
    at indexing, while preparing the model's input; None where an older result did not count them)."""
    return [{"cell_id": r.cell_id, **{k: r.exclusions.get(k) for k in EXCLUSION_COUNTS}}
            for r in results if any(r.exclusions.values())]


def excluded_record_rows(results: Sequence[CellResult]) -> list[dict[str, Any]]:
    """Each record left out, once, with its dataset, stage, file and reason, and the models whose cells lost it
    (a record excluded while preparing may fail one model's preprocessing only)."""
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for r in results:
        for e in r.excluded_records:
            key = (e["dataset"], e["stage"], e["record"], e["reason"])
            row = rows.setdefault(key, {**{k: e.get(k) for k in ("dataset", "stage", "record", "file", "reason")},
                                        "models": set(), "cells": 0})
            row["models"].add(r.model)
            row["cells"] += 1
    return [{**row, "models": ", ".join(sorted(row["models"]))} for _, row in sorted(rows.items())]


def dimension_names(models: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Model → the names of its embedding dimensions, for the models whose dimensions are named features (the
    handcrafted control); the others' dimensions are plain indices."""
    from ..models import catalog  # noqa: F401  (registers the built-in models)
    from ..models.controls import feature_names
    from ..models.spec import MODELS

    return {m: feature_names(MODELS.get(m).input_spec.leads) for m in models
            if m in MODELS and MODELS.get(m).family == "handcrafted"}


def _dim(names: Sequence[str] | None, d: int) -> str:
    return names[d] if names is not None and 0 <= d < len(names) else str(d)


def dimension_rows(entries: Mapping[str, Mapping[str, Any]],
                   names: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """One row per cell and output class: concentration, stability and the top dimensions, by name where the
    model's dimensions are named features (``dimension_names``)."""
    rows = []
    for payload in entries.values():
        dims = (names or {}).get(payload["model"])
        stability = payload.get("level_stability", {})
        for cell_id, cell in sorted(payload["cells"].items(), key=lambda kv: level_order(kv[1]["level"])):
            if not cell.get("outputs"):
                rows.append({"cell_id": cell_id, "model": payload["model"], "task": payload["task"],
                             "scarcity": cell["level"], "output": None, "note": cell.get("reason")})
                continue
            for name, out in cell["outputs"].items():
                c = out["concentration"]
                rows.append({
                    "cell_id": cell_id, "model": payload["model"], "task": payload["task"], "scarcity": cell["level"],
                    "output": name, "dims_50": c["dims_50"], "dims_90": c["dims_90"], "n_dims": c["n_dims"],
                    "gini": c["gini"], "top_k_test_share": out["top_k_test_share"],
                    "seed_stability": out["seed_stability"], "val_test_overlap": out["val_test_overlap"],
                    "level_stability": stability.get(name, {}).get("mean"),
                    "top_dims": " ".join(str(d) for d in out["top_dims"]),
                    "top_dim_names": None if dims is None else " ".join(_dim(dims, d) for d in out["top_dims"]),
                    "top_dims_shares": ", ".join(f"{_dim(dims, d)} ({share:.1%})" for d, share in
                                                 zip(out["top_dims"][:TOP_SHOWN],
                                                     out["top_dims_test_share"][:TOP_SHOWN], strict=True)),
                    "note": None,
                })
    return rows


def reads_one_lead(payload: Mapping[str, Any]) -> bool:
    """A model that reads a single lead: its lead importance is trivially that lead's (the report shows the
    time profile over the trace instead)."""
    return len(payload.get("model_leads") or ()) == 1


def lead_rows(entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Lead importance per (model, task, class) of the models that read more than one lead."""
    rows = []
    for payload in entries.values():
        if reads_one_lead(payload):
            continue
        for name, imp in payload.get("lead_importance", {}).items():
            ranked = sorted(imp["share"].items(), key=lambda kv: -kv[1])
            rows.append({
                "model": payload["model"], "task": payload["task"], "output": name, "top_lead": imp["top_lead"],
                "precordial_share": imp["precordial_share"],
                # the records the shares summarise (one lead layout; runs before it was stored: all)
                "records": len(payload.get("lead_importance_records", payload["records"])),
                "segments": payload["resolution"]["n_segments"], "permutations": payload["resolution"]["permutations"],
                "max_additivity_error": max((r["additivity_error"] for r in payload["records"]), default=None),
                "shares": ", ".join(f"{lead} {share:.2f}" for lead, share in ranked if share > 0),
            })
    return rows


def projection_rows(entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for payload in entries.values():
        sep = payload.get("separability") or {}
        rows.append({"model": payload["model"], "task": payload["task"], **payload["scores"],
                     "source_by": sep.get("by"), "source_auroc": sep.get("auroc"),
                     "n_neighbors": payload["params"]["n_neighbors"], "min_dist": payload["params"]["min_dist"]})
    return rows


def representation_rows(entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: p[k] for k in ("model", "task", "embed_dim", "rankme", "rankme_test", "n_records", "n_test",
                                "records_without_embedding")} for p in entries.values()]


def transfer_rows(entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for payload in entries.values():
        for a, row in payload["cells"].items():
            for b, cell in row.items():
                rows.append({"model": payload["model"], "task": payload["task"], "metric": payload["metric"],
                             "train_region": a, "test_region": b, "value": cell.get("value"),
                             "ci_low": cell.get("ci_low"), "ci_high": cell.get("ci_high"), "drop": cell.get("drop"),
                             "note": cell.get("reason")})
    return rows


def efficiency_rows(entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for payload in entries.values():
        for model, curve in payload["models"].items():
            rows.append({"task": payload["task"], "model": model, "metric": curve["metric"], "auc": curve["auc"],
                         "levels": " ".join(p["level"] for p in curve["points"]),
                         "reference": curve["reference"], "reach_fraction": curve["reach"],
                         "reached_at_smallest": curve["reached_at_smallest"],
                         "fraction_range": "–".join(f"{f:.3g}" for f in curve["fraction_range"])})
    return rows


def comparison_rows(entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for payload in entries.values():
        for pair in payload["pairs"].values():
            rows.append({"task": payload["task"], "scarcity": payload["scarcity"], "metric": payload["metric"],
                         "model_a": pair["a"], "model_b": pair["b"], "diff_a_minus_b": pair["diff"],
                         "ci_low": pair["ci_low"], "ci_high": pair["ci_high"], "p_value": pair["p_value"],
                         "n_records": payload["n_records"]})
    return rows


def cka_rows(entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for payload in entries.values():
        names, matrix = payload["models"], np.asarray(payload["cka"], dtype=float)
        for i, a in enumerate(names):
            for j in range(i + 1, len(names)):
                rows.append({"task": payload["task"], "model_a": a, "model_b": names[j], "cka": float(matrix[i, j]),
                             "n_records": payload["n_records"]})
    return rows


def dimension_summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, task, level): the median over output classes of the concentration and stability columns of
    ``dimension_rows`` (the per-class table stays one click away)."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("output") is not None:
            groups.setdefault((r["model"], r["task"], r["scarcity"]), []).append(r)
    out = []
    for (model, task, level), members in sorted(groups.items(), key=lambda kv: (kv[0][1], level_order(kv[0][2]),
                                                                               kv[0][0])):
        def median(key: str, members: Sequence[Mapping[str, Any]] = members) -> float | None:
            values = [m[key] for m in members if m.get(key) is not None]
            return float(np.median(values)) if values else None

        top = Counter(d for m in members for d in (m.get("top_dim_names") or m["top_dims"]).split()[:3])
        out.append({"model": model, "task": task, "scarcity": level, "classes": len(members),
                    "n_dims": members[0]["n_dims"], "dims_50": median("dims_50"), "dims_90": median("dims_90"),
                    "gini": median("gini"), "seed_stability": median("seed_stability"),
                    "level_stability": median("level_stability"), "val_test_overlap": median("val_test_overlap"),
                    "recurring_top_dims": ", ".join(d for d, _ in top.most_common(5))})
    return out


def column_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The compact leaderboard: one row per (task, level), one cell (a row of ``cell_rows``) per model."""
    models = sorted({r["model"] for r in rows})
    columns: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for r in rows:
        columns.setdefault((r["task"], r["scarcity"]), {})[r["model"]] = r
    out = []
    for (task, level), cells in sorted(columns.items(), key=lambda kv: (kv[0][0], level_order(kv[0][1]))):
        out.append({"task": task, "scarcity": level, "metric": next(iter(cells.values()))["metric"],
                    "cells": [cells.get(m) for m in models]})
    return models, out


def _mark(cell: Mapping[str, Any]) -> str:
    return "★" if cell["best"] else ("≈" if cell["not_worse"] else "")


def _cell_text(cell: Mapping[str, Any] | None, style: str, with_ci: bool) -> str:
    if cell is None or cell["value"] is None or cell["value"] != cell["value"]:
        return "–" if style != "latex" else "--"
    value = f"{cell['value']:.3f}"
    ci = f"[{cell['ci_low']:.3f}, {cell['ci_high']:.3f}]" if with_ci and cell["ci_low"] is not None else ""
    if style == "text":
        return " ".join(p for p in (value, ci.replace(", ", ","), _mark(cell) + ("✗" if cell["failing"] else ""))
                        if p)
    if style == "markdown":
        text = f"**{value}**" if cell["best"] else value
        return " ".join(p for p in (text, ci, "≈" if not cell["best"] and cell["not_worse"] else "") if p)
    text = rf"\textbf{{{value}}}" if cell["best"] else value
    tie = r"$^{\approx}$" if not cell["best"] and cell["not_worse"] else ""
    return f"{text}{tie} {ci}".strip()


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                                                      "\\": r"\textbackslash{}"}


def _latex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _markdown(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def format_leaderboard(rows: Sequence[Mapping[str, Any]], style: str = "text", width: int | None = None) -> str:
    """The compact leaderboard (``column_rows``) as plain text (for a terminal: CIs dropped when the table is
    wider than ``width``), a Markdown table or a LaTeX tabular: value [95 % CI], best ★ / in bold,
    not significantly worse than the best ≈."""
    models, columns = column_rows(rows)
    if not columns:
        return "(no cells ran)"
    head = ["task", "level", "metric", *models]

    def table(with_ci: bool) -> list[list[str]]:
        return [[c["task"], c["scarcity"], c["metric"], *(_cell_text(cell, style, with_ci) for cell in c["cells"])]
                for c in columns]

    if style == "markdown":
        body = [[_markdown(x) for x in row[:3]] + row[3:] for row in table(True)]
        lines = ["| " + " | ".join(_markdown(h) for h in head) + " |", "|" + "---|" * 3 + "--:|" * len(models)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines + ["", "Main metric [95 % CI]; **best** per row; ≈ not significantly worse than the "
                                      "best."])
    if style == "latex":
        body = [[_latex(x) for x in row[:3]] + row[3:] for row in table(True)]
        lines = [r"\begin{tabular}{lll" + "r" * len(models) + "}", r"\hline",
                 " & ".join(_latex(h) for h in head) + r" \\", r"\hline"]
        lines += [" & ".join(row) + r" \\" for row in body]
        lines += [r"\hline", r"\end{tabular}",
                  r"% main metric [95 % CI]; best in bold; $^{\approx}$ not significantly worse than the best"]
        return "\n".join(lines)
    if style != "text":
        raise SpecError(f"unknown leaderboard format {style!r} (text, markdown or latex)")
    for with_ci in (True, False):
        body = table(with_ci)
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        if width is None or sum(widths) + 2 * len(widths) <= width or not with_ci:
            break
    lines = ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip() for r in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
