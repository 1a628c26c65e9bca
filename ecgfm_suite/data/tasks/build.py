"""Turn a TaskSpec plus loaded dataset indexes into arrays, groups and a fixed split.

Classes too rare to evaluate (fewer than ``min_positives`` records in any split; for multilabel
also too few negatives) are dropped with a logged reason and the split is redone without them;
a task left with nothing to evaluate raises ``TaskSkip`` naming the counts.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataError, SpecError, TaskSkip
from ...registry import resolve
from ..records import RECORD_COLUMNS, DatasetIndex
from ..splits import (
    DEFAULT_FRACTIONS,
    SPLIT_NAMES,
    Split,
    check_split,
    official_split,
    record_groups,
    stratified_split,
)
from .catalog import TASKS
from .labels import Unlabelled
from .spec import TaskSpec

log = logging.getLogger(__name__)

#: quantile bins a regression target is stratified on
REGRESSION_BINS = 5
#: classes named in a "too few records" skip reason (the rest are counted)
SHOWN_SHORTFALLS = 3


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class TaskData:
    task: TaskSpec
    #: record keys, sorted; every array below is aligned with them
    keys: np.ndarray
    #: int (N,) class index for binary/multiclass, int8 (N, C) for multilabel, float32 (N,) for regression
    y: np.ndarray
    #: evaluated classes (the declared ones minus ``dropped_classes``)
    classes: tuple[str, ...]
    dropped_classes: dict[str, str]
    dataset: np.ndarray
    #: country; for multi-source datasets "country/source" (each Challenge source is its own region)
    region: np.ndarray
    source: np.ndarray
    #: patient-level group ids (duplicates of one signal share a group)
    groups: np.ndarray
    #: "train"/"val"/"test"
    split: np.ndarray
    #: split → class → records (positives for multilabel; "records" for regression)
    counts: dict[str, dict[str, int]]
    #: reason → records left out (unlabelled, or of a dropped class)
    excluded: dict[str, int]
    #: dataset id → version of the datasets that contributed records
    dataset_versions: dict[str, str]
    #: dataset versions + sha256 of the ordered record keys, e.g. "ludb@1.0.1 sha256:…"
    version: str
    #: the index rows (RECORD_COLUMNS) of the task's records, aligned with ``keys``, for reading signals
    records: pd.DataFrame = field(repr=False)
    #: datasets of the task that were loaded but skipped by the labeler (dataset → reason)
    skipped_datasets: dict[str, str] = field(default_factory=dict)

    def indices(self, split: str) -> np.ndarray:
        if split not in SPLIT_NAMES:
            raise SpecError(f"unknown split {split!r} (one of {', '.join(SPLIT_NAMES)})")
        return np.flatnonzero(self.split == split)

    def n(self, split: str) -> int:
        return int((self.split == split).sum())


def build_task(task: TaskSpec | str, indexes: Mapping[str, DatasetIndex], *, seed: int = 0,
               fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> TaskData:
    """Label, pool, group and split the records of ``task`` found in ``indexes`` (dataset id → index)."""
    spec = TASKS.get(task) if isinstance(task, str) else task
    pooled, skipped = _label(spec, indexes)
    excluded = Counter(f"{ds}: {lab.reason}" for ds, lab in zip(pooled["dataset"], pooled["label"], strict=True)
                       if isinstance(lab, Unlabelled))
    frame = pooled[[not isinstance(lab, Unlabelled) for lab in pooled["label"]]]
    frame = frame.sort_values("key", kind="stable").reset_index(drop=True)
    if frame["key"].duplicated().any():
        dup = frame.loc[frame["key"].duplicated(), "key"].iloc[0]
        raise SpecError(f"task {spec.id}: record key {dup!r} appears twice in the loaded indexes")
    if len(frame) < 3:
        why = ", ".join(f"{reason} {n}" for reason, n in excluded.most_common())
        raise TaskSkip(f"only {len(frame)} labelled records" + (f" (unlabelled: {why})" if why else ""), task=spec.id)
    y_all = _encode(spec, frame["label"])
    groups_all = record_groups(frame)
    region_all = np.array([r if s == d else f"{r}/{s}" for r, s, d in
                           zip(frame["region"].astype(str), frame["source"].astype(str), frame["dataset"],
                               strict=True)],
                          dtype=object)

    rows, active, split, dropped, rare = _split_evaluable(spec, frame, y_all, groups_all, region_all,
                                                         seed=seed, fractions=fractions)
    excluded.update(rare)
    y = _select(spec, y_all, rows, active)
    classes = tuple(spec.classes[c] for c in active)
    keys = frame["key"].to_numpy(dtype=object)[rows]
    versions = {ds: str(indexes[ds].version) for ds in spec.datasets if ds in set(frame["dataset"].iloc[rows])}
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    records = frame.iloc[rows][[c for c in (*RECORD_COLUMNS, "dataset") if c in frame.columns]].reset_index(drop=True)
    return TaskData(
        task=spec, keys=keys, y=y, classes=classes, dropped_classes=dropped,
        dataset=frame["dataset"].to_numpy(dtype=object)[rows], region=region_all[rows],
        source=frame["source"].astype(str).to_numpy(dtype=object)[rows], groups=groups_all[rows],
        split=split.assign, counts=_counts(spec, y, split.assign, classes), excluded=dict(excluded),
        dataset_versions=versions,
        version=f"{'+'.join(f'{ds}@{v}' for ds, v in versions.items())} sha256:{digest}",
        records=records, skipped_datasets=skipped,
    )


def _split_evaluable(spec: TaskSpec, frame: pd.DataFrame, y_all: np.ndarray, groups: np.ndarray,
                     region: np.ndarray, *, seed: int, fractions: tuple[float, float, float],
                     ) -> tuple[np.ndarray, list[int], Split, dict[str, str], Counter[str]]:
    """Split, drop the classes that fall short of ``min_positives`` in some split, split again.

    Returns the kept rows and classes, the split, the dropped classes with reasons, and the
    records left out with their class (multiclass). Raises TaskSkip when nothing evaluable is left.
    """
    active = list(range(len(spec.classes)))
    rows = np.arange(len(frame))
    dropped: dict[str, str] = {}
    rare: Counter[str] = Counter()
    m = spec.min_positives
    while True:
        if len(rows) < 3:
            raise TaskSkip(f"only {len(rows)} labelled records", task=spec.id)
        y = _select(spec, y_all, rows, active)
        require, columns = _requirements(spec, y, active)
        if spec.split == "official":
            if "strat_fold" not in frame.columns:
                raise DataError(f"task {spec.id} uses the official split, but the index has no strat_fold column")
            split = check_split(require, official_split(frame["strat_fold"].to_numpy()[rows]), m)
        else:
            strat = np.hstack([_strata(spec, y, active), _one_hot(region[rows])])
            split = stratified_split(strat, groups[rows], require=require, min_count=m, fractions=fractions,
                                     seed=seed)
        if not split.short:
            return rows, active, split, dropped, rare
        short = _shortfalls(split, columns, m)
        left = len(active) - len(short)
        # a multiclass or multilabel task needs two evaluable classes (one left is a binary task in disguise)
        if spec.type in ("binary", "regression") or left < 2:
            reasons = [f"{spec.classes[c] if c >= 0 else 'records'}: {why}" for c, why in short.items()]
            detail = "; ".join(reasons[:SHOWN_SHORTFALLS])
            if len(reasons) > SHOWN_SHORTFALLS:  # a skip reason is one line of pytest's summary, not a table
                detail += f"; and {len(reasons) - SHOWN_SHORTFALLS} more classes short"
            evaluable = (f"{left} of {len(active)} classes evaluable, 2 needed; "
                         if spec.type in ("multiclass", "multilabel") else "")
            raise TaskSkip(f"too few records to evaluate ({evaluable}{detail})", task=spec.id)
        for c, why in short.items():
            dropped[spec.classes[c]] = why
            log.info("task %s: class %s dropped: %s", spec.id, spec.classes[c], why)
        active = [c for c in active if c not in short]
        if spec.type == "multiclass":
            keep = np.isin(y_all[rows], active)
            rare.update(f"class {spec.classes[c]} dropped (too rare)" for c in y_all[rows][~keep].tolist())
            rows = rows[keep]


def _label(spec: TaskSpec, indexes: Mapping[str, DatasetIndex]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Pool the task's datasets with their labels; a labeler's TaskSkip skips only its dataset."""
    present = [ds for ds in spec.datasets if ds in indexes]
    if not present:
        raise TaskSkip(f"needs dataset {' or '.join(spec.datasets)}; none is loaded", task=spec.id)
    labeler = resolve(spec.labeler)
    frames, skipped = [], {}
    for ds in present:
        index = indexes[ds]
        try:
            if index.records.empty and index.missing_label_files:  # a release found without its record table
                raise TaskSkip(f"{ds} has no records: its label table {Path(index.missing_label_files[0]).name} "
                               "is missing", index.missing_label_files[0])
            labels = labeler(index)
        except TaskSkip as skip:
            if len(present) == 1:
                raise TaskSkip(skip.reason, skip.path, task=spec.id) from None
            skipped[ds] = str(skip)
            log.info("task %s: dataset %s skipped: %s", spec.id, ds, skip)
            continue
        if len(labels) != len(index.records):
            raise SpecError(f"labeler {spec.labeler} returned {len(labels)} labels for {len(index.records)} records")
        cols = [c for c in (*RECORD_COLUMNS, "strat_fold", "signal_hash") if c in index.records.columns]
        part = index.records[cols].reset_index(drop=True).copy()
        part["dataset"] = ds
        part["label"] = list(labels)
        frames.append(part)
    if not frames:
        raise TaskSkip("; ".join(skipped.values()), task=spec.id)
    return pd.concat(frames, ignore_index=True), skipped


def _encode(spec: TaskSpec, labels: pd.Series) -> np.ndarray:
    """Labels → int (N,) class index, int8 (N, C) indicators, or float32 (N,)."""
    if spec.type == "regression":
        return labels.astype(np.float32).to_numpy()
    lookup = {c: i for i, c in enumerate(spec.classes)}

    def index_of(c: object) -> int:
        if c not in lookup:
            raise SpecError(f"labeler {spec.labeler} returned class {c!r}, not declared by task {spec.id} "
                            f"({', '.join(spec.classes)})")
        return lookup[c]

    if spec.type == "multilabel":
        y = np.zeros((len(labels), len(spec.classes)), dtype=np.int8)
        for i, found in enumerate(labels):
            y[i, [index_of(c) for c in found]] = 1
        return y
    return np.array([index_of(c) for c in labels], dtype=np.int64)


def _select(spec: TaskSpec, y_all: np.ndarray, rows: np.ndarray, active: list[int]) -> np.ndarray:
    """Rows and active classes of the full label array; multiclass indices re-numbered 0..K-1."""
    if spec.type == "multilabel":
        return y_all[np.ix_(rows, np.asarray(active, dtype=np.intp))]
    if spec.type == "regression":
        return y_all[rows]
    renumber = np.full(len(spec.classes), -1, dtype=np.int64)
    renumber[active] = np.arange(len(active))
    return renumber[y_all[rows]]


def _requirements(spec: TaskSpec, y: np.ndarray, active: list[int]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """What each split must hold ``min_positives`` of, and which (class, kind) each column is."""
    if spec.type == "regression":
        return np.ones((len(y), 1), dtype=np.int64), [(-1, "records")]
    if spec.type == "multilabel":
        cols = [(c, "positives") for c in active] + [(c, "negatives") for c in active]
        return np.hstack([y, 1 - y]).astype(np.int64), cols
    return np.eye(len(active), dtype=np.int64)[y], [(c, "records") for c in active]


def _strata(spec: TaskSpec, y: np.ndarray, active: list[int]) -> np.ndarray:
    if spec.type == "multilabel":
        return y.astype(bool)
    if spec.type == "regression":
        bins = pd.qcut(pd.Series(y).rank(method="first"), q=min(REGRESSION_BINS, max(len(y), 1)), labels=False)
        return _one_hot(bins.to_numpy())
    return np.eye(len(active), dtype=bool)[y]


def _one_hot(values: np.ndarray) -> np.ndarray:
    """Indicators of a categorical column (no columns when it has a single value)."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), sort=True)
    if len(uniques) < 2:
        return np.zeros((len(values), 0), dtype=bool)
    return np.eye(len(uniques), dtype=bool)[codes]


def _shortfalls(split: Split, columns: list[tuple[int, str]], m: int) -> dict[int, str]:
    """Class → reason for every class with a short column (the first short column names the reason)."""
    out: dict[int, str] = {}
    for k in split.short:
        c, kind = columns[k]
        if c in out:
            continue
        per = ", ".join(f"{name} {int(n)}" for name, n in zip(SPLIT_NAMES, split.counts[:, k], strict=True))
        out[c] = f"{kind} per split {per}; needs >= {m} in each ({int(split.counts[:, k].sum())} in total)"
    return out


def _counts(spec: TaskSpec, y: np.ndarray, assign: np.ndarray, classes: tuple[str, ...]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name in SPLIT_NAMES:
        part = y[assign == name]
        if spec.type == "regression":
            out[name] = {"records": int(len(part))}
        elif spec.type == "multilabel":
            out[name] = {c: int(n) for c, n in zip(classes, part.sum(axis=0), strict=True)}
        else:
            out[name] = {c: int(n) for c, n in zip(classes, np.bincount(part, minlength=len(classes)), strict=True)}
    return out
