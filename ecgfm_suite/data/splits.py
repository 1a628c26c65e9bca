"""Leak-free train/val/test splits, fixed per task so every model and seed sees the same test set.

Rows are first merged into groups (a patient, or byte-identical copies of one signal under several
names/sources) and whole groups are assigned, so no patient or duplicate straddles two splits.
Assignment uses iterative stratification (Sechidis et al. 2011, ``iterstrat``) over the groups'
aggregated label indicators in one three-way pass, then a deterministic repair moves whole groups
so every required column (class positives, and negatives for multilabel) reaches ``min_count`` in
each split where the totals allow it. Columns that still fall short are reported, not hidden.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import IterativeStratification
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import DataError, SpecError

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.6, 0.2, 0.2)
#: PTB-XL's recommended folds (patient-wise, label-stratified by the authors)
PTBXL_FOLDS: dict[str, tuple[int, ...]] = {"train": (1, 2, 3, 4, 5, 6, 7, 8), "val": (9,), "test": (10,)}


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Split:
    #: "train"/"val"/"test" per row
    assign: np.ndarray
    #: (3, R) rows per split (train, val, test) for each required column
    counts: np.ndarray
    #: required columns with fewer than ``min_count`` rows in some split
    short: tuple[int, ...]


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and str(value) != ""


#: Challenge 2021 "HR<ecg_id>" records are PTB-XL recordings (the Challenge resampled copy of ecg_id)
_CHALLENGE_PTBXL = re.compile(r"^ptbxl/HR0*(\d+)$")


def _links(dataset: str, row: dict) -> list[tuple[int, str]]:
    """(priority, label) of what ties a record to others: patient 0, file hash 1, sample hash 2, alias 3."""
    out: list[tuple[int, str]] = []
    if _present(row.get("patient_id")):
        out.append((0, f"{dataset}/{row.get('source') or dataset}:{row['patient_id']}"))
    if _present(row.get("content_hash")):
        out.append((1, f"sha256:{row['content_hash']}"))
    if _present(row.get("signal_hash")):
        out.append((2, f"samples:{row['signal_hash']}"))
    record_id = str(row.get("record_id", ""))
    if dataset == "ptbxl":
        out.append((3, f"ptbxl_ecg:{record_id}"))
    elif dataset == "challenge2021" and (match := _CHALLENGE_PTBXL.match(record_id)):
        out.append((3, f"ptbxl_ecg:{int(match.group(1))}"))
    return out


def record_groups(records: pd.DataFrame) -> np.ndarray:
    """Group id per row, so that no patient or duplicate straddles two splits.

    Rows are linked, transitively, when they share a patient (within one dataset source), the
    bytes of the signal file (``content_hash``), the decoded samples (``signal_hash``, where the
    loader provides it), or are the same PTB-XL recording (native ``ecg_id`` and the Challenge's
    ``HR<ecg_id>``). A group is named by its patient, else its content hash, else the record key.
    """
    n = len(records)
    if n == 0:
        return np.array([], dtype=object)
    keys = records["key"].astype(str).to_numpy()
    names: list[tuple[int, str]] = []
    rows: list[int] = []
    labels: list[str] = []
    for i, row in enumerate(records.to_dict("records")):
        links = _links(keys[i].split("/", 1)[0], row)
        rows.extend(i for _ in links)
        labels.extend(label for _, label in links)
        named = [link for link in links if link[0] < 3]
        names.append(min(named) if named else (4, f"record:{keys[i]}"))
    codes, uniques = pd.factorize(pd.Series(labels, dtype=object))
    size = n + len(uniques)
    graph = coo_matrix((np.ones(len(rows)), (np.asarray(rows, dtype=np.int64), n + codes)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    frame = pd.DataFrame({"component": component[:n], "priority": [p for p, _ in names],
                          "name": [nm for _, nm in names]})
    best = frame.sort_values(["priority", "name"]).groupby("component")["name"].first()
    return frame["component"].map(best).to_numpy(dtype=object)


def split_counts(require: np.ndarray, assign: np.ndarray) -> np.ndarray:
    """(3, R) sums of ``require`` per split, in ``SPLIT_NAMES`` order."""
    require = _as_2d(require).astype(np.int64)
    return np.stack([require[assign == name].sum(axis=0) for name in SPLIT_NAMES])


def check_split(require: np.ndarray, assign: np.ndarray, min_count: int) -> Split:
    counts = split_counts(require, assign)
    short = tuple(int(k) for k in np.flatnonzero(counts.min(axis=0, initial=np.iinfo(np.int64).max) < min_count))
    return Split(assign=np.asarray(assign, dtype=object), counts=counts, short=short)


def official_split(strat_fold: np.ndarray | pd.Series, *, path: str | None = None) -> np.ndarray:
    """PTB-XL's split: ``strat_fold`` 1-8 train, 9 val, 10 test."""
    folds = pd.to_numeric(pd.Series(strat_fold), errors="coerce").to_numpy()
    fold_split = {fold: name for name, folds_ in PTBXL_FOLDS.items() for fold in folds_}
    bad = sorted({str(f) for f in folds if f not in fold_split})
    if bad:
        raise DataError(f"strat_fold values outside 1-10: {', '.join(bad[:5])}", path)
    return np.array([fold_split[int(f)] for f in folds], dtype=object)


def stratified_split(strat: np.ndarray, groups: np.ndarray, *, require: np.ndarray | None = None,
                     min_count: int = 1, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
                     seed: int = 0, tries: int = 8) -> Split:
    """Assign whole groups to train/val/test, stratified on ``strat`` (N, S) indicators.

    ``require`` (N, R) counts what each split must hold at least ``min_count`` of (default: ``strat``).
    Attempts differ only in the seeded tie-breaking; the first attempt whose shortfalls are all
    impossible by the totals wins, else the attempt with the fewest shortfalls.
    """
    strat = _as_2d(strat).astype(bool)
    require = strat.astype(np.int64) if require is None else _as_2d(require).astype(np.int64)
    ratios = _check_fractions(fractions)
    if tries < 1:
        raise SpecError(f"tries must be >= 1, got {tries}")
    if not (len(strat) == len(require) == len(groups)):
        raise SpecError(f"strat ({len(strat)}), require ({len(require)}) and groups ({len(groups)}) differ in length")
    if len(groups) == 0:
        return check_split(require, np.array([], dtype=object), min_count)
    codes, _ = pd.factorize(pd.Series(groups, dtype=object), sort=True)
    n_groups = int(codes.max()) + 1
    group_strat = np.zeros((n_groups, strat.shape[1]), dtype=np.int64)
    np.add.at(group_strat, codes, strat.astype(np.int64))
    group_require = np.zeros((n_groups, require.shape[1]), dtype=np.int64)
    np.add.at(group_require, codes, require)
    sizes = np.bincount(codes, minlength=n_groups)
    hopeless = set(np.flatnonzero((group_require.sum(axis=0) < 3 * min_count)
                                  | ((group_require > 0).sum(axis=0) < 3)).tolist())
    best: Split | None = None
    for attempt in range(tries):
        rng = np.random.RandomState(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])
        perm = rng.permutation(n_groups)
        fold = np.empty(n_groups, dtype=np.int64)
        fold[perm] = IterativeStratification(labels=group_strat[perm] > 0, r=ratios, random_state=rng)
        rank = np.empty(n_groups, dtype=np.int64)
        rank[perm] = np.arange(n_groups)
        _repair(fold, group_require, sizes, rank, min_count, hopeless)
        split = check_split(require, np.array(SPLIT_NAMES, dtype=object)[fold[codes]], min_count)
        if set(split.short) <= hopeless:
            return split
        if best is None or len(split.short) < len(best.short):
            best = split
    return best  # type: ignore[return-value]  # tries >= 1


def _repair(fold: np.ndarray, require: np.ndarray, sizes: np.ndarray, rank: np.ndarray, min_count: int,
            hopeless: set[int]) -> None:
    """Move whole groups (in place) until each feasible column has ``min_count`` in every split.

    A move never takes a donor split below ``min_count`` for any column it satisfied; donors are
    tried train first, then by the donor's surplus, small groups first, then the seeded order.
    """
    counts = np.stack([require[fold == s].sum(axis=0) for s in range(3)])
    for k in np.argsort(require.sum(axis=0), kind="stable"):
        if k in hopeless:
            continue
        for s in (2, 1, 0):
            while counts[s, k] < min_count:
                cand = np.flatnonzero((require[:, k] > 0) & (fold != s))
                donor = fold[cand]
                after = counts[donor] - require[cand]
                ok = ~np.any((counts[donor] >= min_count) & (after < min_count), axis=1)
                ok &= after[:, k] >= min_count
                if not ok.any():
                    break
                cand, donor = cand[ok], donor[ok]
                pick = cand[np.lexsort((rank[cand], sizes[cand], -counts[donor, k], donor != 0))[0]]
                counts[fold[pick]] -= require[pick]
                counts[s] += require[pick]
                fold[pick] = s


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.reshape(-1, 1) if a.ndim == 1 else a


def _check_fractions(fractions: tuple[float, float, float]) -> np.ndarray:
    ratios = np.asarray(fractions, dtype=float)
    if ratios.shape != (3,) or np.any(ratios <= 0) or not np.isclose(ratios.sum(), 1.0):
        raise SpecError(f"split fractions must be three positive numbers summing to 1, got {fractions!r}")
    return ratios
