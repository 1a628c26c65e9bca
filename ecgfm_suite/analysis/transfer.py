"""Cross-continental transfer: fit the probe on one region, test it on every region.

For a pooled task (records from several datasets, each tagged with its country) the linear
probe is fitted on the training split of region A (C chosen on A's validation split) and
scored on the test split of region B. The diagonal is in-region performance; the drop of
A → B is how much worse B's test set is scored than by a probe fitted on B itself,
oriented so that a positive drop is always a loss (for MAE: the increase).

A region takes part as a training region when its training split has ``MIN_TRAIN`` records
(and two classes for classification), as a test region when its test split has
``MIN_TEST`` records; pairs whose metric is undefined (e.g. one class in B's test split) are
reported with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import AnalysisSkip, DataError
from ..metrics import METRICS, evaluate
from ..probes import fit_probe
from .inputs import AnalysisOptions, ModelTaskData, Output, is_pooled

MIN_TRAIN = 20
MIN_TEST = 10


def country(region: str) -> str:
    """Task regions are "country" or "country/source" (multi-source datasets): the country part."""
    return str(region).split("/", 1)[0]


def _classes_present(task_type: str, y: np.ndarray) -> int:
    if task_type == "regression":
        return 2
    if task_type == "multilabel":
        return int((y.any(axis=0) & ~y.all(axis=0)).sum()) + 1
    return len(np.unique(y))


def transfer_matrix(task_type: str, X: np.ndarray, y: np.ndarray, split: np.ndarray, region: np.ndarray, *,
                    metric: str, n_classes: int | None, seed: int, n_boot: int) -> dict[str, Any]:
    """Metric of every (training region → test region) pair, with bootstrap CIs and drops vs in-region."""
    X, y, split = np.asarray(X), np.asarray(y), np.asarray(split)
    region = np.array([country(r) for r in region], dtype=object)
    if not len(X) == len(y) == len(split) == len(region):
        raise DataError(f"arrays of different lengths: X {len(X)}, y {len(y)}, split {len(split)}, "
                        f"region {len(region)}", "transfer")
    regions = sorted(set(region.tolist()))
    rows = {(r, s): np.flatnonzero((region == r) & (split == s)) for r in regions for s in ("train", "val", "test")}
    sizes = {r: {s: int(len(rows[r, s])) for s in ("train", "val", "test")} for r in regions}
    train_ok = {r: len(rows[r, "train"]) >= MIN_TRAIN and len(rows[r, "val"]) > 0
                and _classes_present(task_type, y[rows[r, "train"]]) >= 2 for r in regions}
    test_ok = {r: len(rows[r, "test"]) >= MIN_TEST for r in regions}
    train_regions = [r for r in regions if train_ok[r]]
    test_regions = [r for r in regions if test_ok[r]]
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for a in train_regions:
        tr, va = rows[a, "train"], rows[a, "val"]
        probe = fit_probe("linear", task_type, X[tr], y[tr], X[va], y[va], seed=seed, n_classes=n_classes)
        cells[a] = {}
        for b in test_regions:
            te = rows[b, "test"]
            try:
                m = evaluate(task_type, y[te], probe.predict_scores(X[te]), n_boot=n_boot, seed=seed)[metric]
            except DataError as exc:
                cells[a][b] = {"value": None, "reason": exc.reason}
                continue
            cells[a][b] = {"value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "reason": None}
    sign = 1.0 if METRICS.get(metric).higher_is_better else -1.0
    for a in cells:
        for b, cell in cells[a].items():
            home = cells.get(b, {}).get(b, {}).get("value")
            cell["drop"] = None if cell["value"] is None or home is None else sign * (home - cell["value"])
    return {
        "metric": metric, "regions": regions, "train_regions": train_regions, "test_regions": test_regions,
        "sizes": sizes, "cells": cells,
        "left_out": {r: _why_left_out(r, sizes[r], train_ok[r], test_ok[r]) for r in regions
                     if not (train_ok[r] and test_ok[r])},
    }


def _why_left_out(region: str, size: dict[str, int], as_train: bool, as_test: bool) -> str:
    parts = []
    if not as_train:
        parts.append(f"not a training region (train {size['train']} records, val {size['val']}; needs >= {MIN_TRAIN} "
                     "training records with 2 classes and a validation split)")
    if not as_test:
        parts.append(f"not a test region (test {size['test']} records; needs >= {MIN_TEST})")
    return "; ".join(parts)


def mean_drop(result: dict[str, Any]) -> float | None:
    """Mean drop over the off-diagonal pairs that have one (a single number for the report)."""
    drops = [c["drop"] for a, row in result["cells"].items() for b, c in row.items()
             if a != b and c.get("drop") is not None]
    return float(np.mean(drops)) if drops else None


# --------------------------------------------------------------------------- on a benchmark run

def run(data: ModelTaskData, options: AnalysisOptions) -> Output:
    """Train on one region, test on every region (see ``transfer``); pooled tasks only."""
    if not is_pooled(data.task.task):
        raise AnalysisSkip(f"task {data.task.task.id} is not a pooled cross-continental task")
    every = np.flatnonzero(data.have)
    result = transfer_matrix(data.task_type, data.X[every], data.y[every], np.asarray(data.task.split)[every],
                                np.asarray(data.task.region)[every], metric=data.task.task.main_metric,
                                n_classes=data.n_classes, seed=data.seeds[0], n_boot=data.n_boot)
    if not result["cells"]:
        raise AnalysisSkip(f"no region has enough records to train on ({result['left_out']})")
    return Output({"model": data.model, "task": data.task.task.id, **result, "mean_drop": mean_drop(result)})


def problems(p: Mapping[str, Any]) -> list[str]:
    """Every pair has a value or a reason; in-region drops are 0."""
    found = []
    for a, row in p["cells"].items():
        for b, cell in row.items():
            if cell["value"] is None and not cell["reason"]:
                found.append(f"{a} -> {b}: no value and no reason")
            if a == b and cell["drop"] not in (0.0, None):
                found.append(f"{a} -> {a}: in-region drop {cell['drop']}")
    return found
