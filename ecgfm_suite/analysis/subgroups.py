"""Subgroup performance: the main metric per sex, age band and source on the test split, and the largest gap.

At the pair's headline level the seed-mean test scores (``ensemble``) are split by each attribute of the
records: sex (``M``/``F``), age band (< 40, 40–59, 60–79, >= 80 years) and, for a task pooling datasets
(or one dataset of several sources), the source. Each subgroup gets the main metric with a stratified
bootstrap CI and its n. The largest gap is between the best and the worst evaluated subgroup, oriented so
that it is >= 0 (better minus worse, in the metric's units); its CI comes from resampling within each of
the two subgroups independently. A subgroup with fewer than ``MIN_RECORDS`` records (binary: or fewer than
``MIN_PER_CLASS`` of a class) is listed with that reason, as are the records whose attribute is not
recorded; none is silently dropped. Multiclass and multilabel subgroups are scored on the classes with
``MIN_PER_CLASS`` positives and negatives in every subgroup of the attribute (listed in ``classes``), so
their values compare: a pooled task's sources do not all have every rhythm. A multiclass macro AUROC is the
mean of its one-vs-rest AUROCs, so it is scored as the one-hot multilabel task on those classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..data.tasks.demographics import AGE_RANGE
from ..errors import AnalysisSkip, DataError
from ..metrics import METRICS, draw_indices, strata
from ..metrics.bootstrap import percentile_ci
from ..metrics.resampled import metric_samples
from .ensemble import headline_scores
from .inputs import AnalysisOptions, ModelTaskData, Output, source_column

MIN_RECORDS = 10
MIN_PER_CLASS = 2
#: (lower bound inclusive, upper bound exclusive, label), years
AGE_BANDS: tuple[tuple[float, float, str], ...] = ((0, 40, "<40"), (40, 60, "40-59"), (60, 80, "60-79"),
                                                   (80, np.inf, ">=80"))
SEX = {"M": "male", "F": "female"}
UNKNOWN = "unknown"


def age_band(age: object) -> str | None:
    """The band of an age in years; None where it is missing or outside the plausible range (a code)."""
    value = pd.to_numeric(pd.Series([age]), errors="coerce").iloc[0]
    if pd.isna(value) or not AGE_RANGE[0] <= value <= AGE_RANGE[1]:
        return None
    return next(label for low, high, label in AGE_BANDS if low <= value < high)


def attribute_values(records: pd.DataFrame, source: tuple[str | None, np.ndarray | None]) -> dict[str, Any]:
    """Attribute → per-record subgroup labels (None: not recorded), or the reason it is not available."""
    out: dict[str, Any] = {}
    sex = [SEX.get(str(v)) if v is not None and not pd.isna(v) else None
           for v in (records["sex"] if "sex" in records else [None] * len(records))]
    out["sex"] = sex if any(sex) else "no record of the task's test split has its sex recorded"
    ages = [age_band(v) for v in (records["age"] if "age" in records else [None] * len(records))]
    out["age_band"] = ages if any(ages) else "no record of the task's test split has its age recorded"
    name, values = source
    out["source"] = list(values) if values is not None else "a single source: no source subgroups"
    return out


def _shortfall(task_type: str, y: np.ndarray, classes: list[str]) -> str | None:
    """Why a subgroup's metric is not evaluable (too few records, or of a binary class), None where it is."""
    if len(y) < MIN_RECORDS:
        return f"{len(y)} records (needs >= {MIN_RECORDS})"
    if task_type == "binary":
        counts = np.bincount(y.astype(np.int64), minlength=len(classes))
        short = [f"{classes[k]} {counts[k]}" for k in range(len(classes)) if counts[k] < MIN_PER_CLASS]
        if short:
            return f"fewer than {MIN_PER_CLASS} records of class(es) the test split has: {', '.join(short)}"
    return None


def _multilabel_columns(y: np.ndarray, groups: Mapping[str, np.ndarray]) -> np.ndarray:
    """Labels with MIN_PER_CLASS positives and negatives in every group (the shared label set)."""
    ok = np.ones(y.shape[1], dtype=bool)
    for rows in groups.values():
        positives = y[rows].sum(axis=0)
        ok &= (positives >= MIN_PER_CLASS) & (len(rows) - positives >= MIN_PER_CLASS)
    return np.flatnonzero(ok)


def subgroup_table(task_type: str, metric: str, y: np.ndarray, scores: np.ndarray, labels: list[str | None], *,
                   classes: list[str], n_boot: int, seed: int) -> dict[str, Any]:
    """Every subgroup of one attribute (value, CI, n or the reason it has none) and the largest gap."""
    if task_type == "multiclass":  # macro one-vs-rest AUROC = the one-hot multilabel task's macro AUROC
        y, task_type = np.eye(len(classes), dtype=np.int8)[np.asarray(y, dtype=np.intp)], "multilabel"
    labels_arr = np.array([UNKNOWN if v is None else str(v) for v in labels], dtype=object)
    names = sorted(set(labels_arr.tolist()) - {UNKNOWN})
    rows = {g: np.flatnonzero(labels_arr == g) for g in names}
    table: dict[str, dict[str, Any]] = {}
    for g in names:
        reason = _shortfall(task_type, y[rows[g]], classes)
        table[g] = {"subgroup": g, "n": int(len(rows[g])), "value": None, "ci_low": None, "ci_high": None,
                    "reason": reason}
    evaluable = {g: rows[g] for g in names if table[g]["reason"] is None}
    columns: np.ndarray | None = None
    if task_type == "multilabel" and evaluable:
        columns = _multilabel_columns(y, evaluable)
        if len(columns) == 0:
            for g in evaluable:
                table[g]["reason"] = (f"no class has >= {MIN_PER_CLASS} positives and negatives in every "
                                      "subgroup of this attribute")
            evaluable = {}
    samples: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for g, members in evaluable.items():
        y_g = y[members] if columns is None else y[members][:, columns]
        s_g = scores[members] if columns is None else scores[members][:, columns]
        try:
            idx = draw_indices(strata(task_type, y_g), n_boot, rng)
            value, samples[g] = metric_samples(metric, task_type, y_g, s_g, idx)
        except DataError as exc:
            table[g]["reason"] = exc.reason
            continue
        low, high, _, _ = percentile_ci(samples[g])
        table[g].update(value=value, ci_low=low, ci_high=high)
    unknown = int((labels_arr == UNKNOWN).sum())
    if unknown:
        table[UNKNOWN] = {"subgroup": UNKNOWN, "n": unknown, "value": None, "ci_low": None, "ci_high": None,
                          "reason": "attribute not recorded for these records"}
    return {"subgroups": list(table.values()), "gap": _gap(metric, table, samples),
            "classes": None if columns is None else [classes[k] for k in columns]}


def _gap(metric: str, table: Mapping[str, Mapping[str, Any]], samples: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Best minus worst evaluated subgroup (>= 0 in the better direction), CI from independent resamples."""
    if len(samples) < 2:
        return {"gap": None, "reason": f"{len(samples)} evaluated subgroup(s); a gap needs 2"}
    sign = 1.0 if METRICS.get(metric).higher_is_better else -1.0
    ranked = sorted(samples, key=lambda g: (sign * table[g]["value"], g))
    worst, best = ranked[0], ranked[-1]
    diff = sign * (samples[best] - samples[worst])
    low, high, _, _ = percentile_ci(diff)
    gap = sign * (table[best]["value"] - table[worst]["value"])
    return {"gap": gap, "ci_low": low, "ci_high": high, "best": best, "worst": worst,
            "excludes_zero": bool(low > 0 or high < 0), "reason": None}


# --------------------------------------------------------------------------- on a benchmark run

def run(data: ModelTaskData, options: AnalysisOptions) -> Output:
    """Main metric per subgroup of each attribute at the headline level (see the module docstring)."""
    level, scores = headline_scores(data)
    test = data.rows("test")
    td = data.task
    source_name, source = source_column(td)
    records = td.records.iloc[test].reset_index(drop=True)
    values = attribute_values(records, (source_name, None if source is None else source[test]))
    metric = td.task.main_metric
    classes = list(td.classes) if data.task_type in ("binary", "multiclass", "multilabel") else []
    attributes: dict[str, dict[str, Any]] = {}
    for attribute, labels in values.items():
        if isinstance(labels, str):
            attributes[attribute] = {"subgroups": [], "gap": None, "classes": None, "reason": labels}
            continue
        table = subgroup_table(data.task_type, metric, data.y[test], scores["test"], labels, classes=classes,
                               n_boot=data.n_boot, seed=options.seed)
        attributes[attribute] = {**table, "reason": None}
    if all(a["reason"] is not None for a in attributes.values()):
        raise AnalysisSkip(f"task {td.task.id}: no subgroup attribute is recorded ("
                           + "; ".join(f"{k}: {a['reason']}" for k, a in attributes.items()) + ")")
    return Output({"model": data.model, "task": td.task.id, "scarcity": level, "metric": metric,
                   "n_test": int(len(test)), "source_by": source_name, "scores": "mean over seeds",
                   "attributes": attributes})


def rows(key: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per attribute: one row per subgroup (value and CI, or the reason it has none), then its gap row."""
    base = {"model": payload["model"], "task": payload["task"], "scarcity": payload["scarcity"],
            "metric": payload["metric"]}
    empty = {"subgroup": None, "n": None, "value": None, "ci_low": None, "ci_high": None, "gap": None,
             "gap_ci_low": None, "gap_ci_high": None, "gap_excludes_zero": None, "reason": None}
    out = []
    for attribute, a in payload["attributes"].items():
        head = {**base, "attribute": attribute, "classes": None if a["classes"] is None else ", ".join(a["classes"])}
        if a["reason"] is not None:
            out.append({**head, **empty, "reason": a["reason"]})
            continue
        out += [{**head, **empty, **{k: s[k] for k in ("subgroup", "n", "value", "ci_low", "ci_high", "reason")}}
                for s in a["subgroups"]]
        gap = a["gap"]
        if gap["gap"] is None:
            out.append({**head, **empty, "subgroup": "largest gap", "reason": gap["reason"]})
        else:
            out.append({**head, **empty, "subgroup": f"{gap['best']} vs {gap['worst']}", "gap": gap["gap"],
                        "gap_ci_low": gap["ci_low"], "gap_ci_high": gap["ci_high"],
                        "gap_excludes_zero": gap["excludes_zero"]})
    return out


def problems(p: Mapping[str, Any]) -> list[str]:
    """A subgroup has a value within the metric's range, or a reason; a gap is >= 0 with an ordered CI."""
    spec = METRICS.get(p["metric"])
    found = []
    for attribute, a in p["attributes"].items():
        for s in a["subgroups"]:
            if s["value"] is None and not s["reason"]:
                found.append(f"{attribute}/{s['subgroup']}: no value and no reason")
            if s["value"] is not None and not spec.in_range(s["value"]):
                found.append(f"{attribute}/{s['subgroup']}: {p['metric']} {s['value']} out of range")
        gap = a.get("gap") or {}
        if gap.get("gap") is not None:
            if gap["gap"] < -1e-12:
                found.append(f"{attribute}: negative gap {gap['gap']}")
            if None not in (gap["ci_low"], gap["ci_high"]) and gap["ci_low"] > gap["ci_high"] + 1e-12:
                found.append(f"{attribute}: gap CI {gap['ci_low']} > {gap['ci_high']}")
    return found
