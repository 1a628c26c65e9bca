"""What ``ecgfm-suite datasets`` shows: per dataset found, what loaded, what was left out and why,
and each task's label counts after harmonisation (the pooled tasks' share of this dataset too)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, TaskSkip
from ..registry import resolve
from .discovery import discover, load_index
from .records import DatasetIndex
from .tasks import TASKS, TaskSpec
from .tasks.labels import Unlabelled

UNLABELLED = "unlabelled"


def summarise(data_dir: str | Path, strict: bool = False, cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per dataset found below ``data_dir`` (see module docstring); ``cache_dir``: the
    dataset-index cache to reuse and fill."""
    out = []
    for dataset_id in discover(data_dir):
        try:
            index = load_index(dataset_id, data_dir, strict=strict, cache_dir=cache_dir)
        except DataError as exc:
            if strict:
                raise
            out.append(_failed(dataset_id, exc))
            continue
        out.append(summarise_index(index))
    return out


def summarise_index(index: DatasetIndex) -> dict[str, Any]:
    records = index.records
    tasks: dict[str, dict[str, int | float]] = {}
    skipped: dict[str, str] = {}
    for task_id, spec in TASKS.items():
        if index.dataset not in spec.datasets:
            continue
        try:
            labels = resolve(spec.labeler)(index)
        except TaskSkip as skip:
            skipped[task_id] = f"{skip.path}: {skip.reason}" if skip.path else skip.reason
            continue
        counts = label_counts(spec, labels)
        tasks[task_id] = counts
        if len(spec.datasets) == 1 and counts.get(UNLABELLED, 0) == len(labels):
            skipped[task_id] = f"no labelled records ({len(labels)} unlabelled)"
    entry: dict[str, Any] = {
        "dataset": index.dataset,
        "version": index.version,
        "root": str(index.root),
        "records": int(len(records)),
        "excluded": [e.to_dict() for e in index.excluded],
        "regions": sorted(records["region"].dropna().astype(str).unique().tolist()),
        "sampling_rates": sorted({_number(fs) for fs in records["fs"].dropna()}),
        "tasks": tasks,
        "missing_label_files": [str(p) for p in index.missing_label_files],
        "skipped_tasks": skipped,
    }
    sources = records["source"].astype(str)
    if (sources != index.dataset).any():
        entry["sources"] = {s: int(n) for s, n in sorted(Counter(sources).items())}
    return entry


def label_counts(spec: TaskSpec, labels: pd.Series) -> dict[str, int | float]:
    """Class → records (multilabel: positives, and records with none); regression: records and
    min/median/max; plus unlabelled. Zero counts are left out."""
    values = [v for v in labels if not isinstance(v, Unlabelled)]
    unlabelled = len(labels) - len(values)
    counts: dict[str, int | float]
    if spec.type == "regression":
        y = np.asarray(values, dtype=float)
        counts = {"records": int(len(y))}
        if len(y):
            counts |= {"min": float(y.min()), "median": float(np.median(y)), "max": float(y.max())}
    else:
        found = Counter(c for v in values for c in (v if spec.type == "multilabel" else (v,)))
        counts = {c: int(found[c]) for c in spec.classes if found[c]}
        if spec.type == "multilabel" and (empty := sum(1 for v in values if not v)):
            counts["no positive class"] = empty
    if unlabelled:
        counts[UNLABELLED] = unlabelled
    return counts


def _number(value: Any) -> int | float:
    value = float(value)
    return int(value) if math.isfinite(value) and value.is_integer() else value


def _failed(dataset_id: str, exc: DataError) -> dict[str, Any]:
    return {"dataset": dataset_id, "records": 0, "excluded": [{"record": exc.path or dataset_id, "reason": exc.reason}],
            "regions": [], "sampling_rates": [], "tasks": {}, "missing_label_files": [], "skipped_tasks": {}}
