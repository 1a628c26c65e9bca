"""Validation of label and score arrays, shared by metrics and probes.

Arrays cross a boundary here (from probes, caches or users), so a malformed one fails
with a ``DataError`` naming the array and what is wrong, never deep inside numpy.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .table import check_task_type


def check_targets(task_type: str, y: object, *, name: str = "y", n_classes: int | None = None) -> np.ndarray:
    """Labels as the task type expects: int (N,) in 0..C-1, 0/1 (N, C), or finite float (N,)."""
    check_task_type(task_type)
    arr = np.asarray(y)
    want_ndim = 2 if task_type == "multilabel" else 1
    if arr.ndim != want_ndim:
        raise DataError(f"{task_type} targets must be {want_ndim}-D, got shape {arr.shape}", name)
    if len(arr) == 0:
        raise DataError("no records", name)
    if task_type == "regression":
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
            raise DataError("regression targets must be finite numbers", name)
        return arr.astype(np.float64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "biu":
        raise DataError(f"{task_type} targets must be integers, got dtype {arr.dtype}", name)
    top = 2 if task_type in ("binary", "multilabel") else n_classes
    bad = (arr < 0) | (arr >= top) if top is not None else arr < 0
    if np.any(bad):
        allowed = "0/1" if top == 2 else f"0..{top - 1}" if top is not None else ">= 0"
        found = np.unique(arr[bad])[:5].tolist()
        raise DataError(f"{task_type} targets must be {allowed}; found {found}", name)
    return arr.astype(np.int8 if task_type == "multilabel" else np.int64)


def check_scores(task_type: str, scores: object, n_records: int, *, name: str = "scores",
                 n_classes: int | None = None) -> np.ndarray:
    """Scores as probes emit them: (N,) for binary/regression, (N, C) for multiclass/multilabel."""
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"scores must be numeric: {exc}", name) from None
    if task_type in ("binary", "regression"):
        want: tuple[int, ...] = (n_records,)
    elif arr.ndim != 2 or arr.shape[1] < 1:
        raise DataError(f"{task_type} scores must be 2-D (N, C), got shape {arr.shape}", name)
    else:
        want = (n_records, n_classes or arr.shape[1])
    if arr.shape != want:
        raise DataError(f"{task_type} scores must have shape {want}, got {arr.shape}", name)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{int(np.sum(~np.isfinite(arr)))} non-finite scores", name)
    return arr
