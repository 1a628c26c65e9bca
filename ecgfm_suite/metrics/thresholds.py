"""Decision thresholds tuned on validation scores (never on test).

A record is called positive when its score is >= the threshold. Each class gets the
threshold that maximises the objective on the validation split; ties go to the
highest threshold. A class with no validation positives gets ``+inf`` (never called
positive); for balanced accuracy a class with no validation negatives gets ``-inf``.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError

OBJECTIVES = ("f1", "balanced_accuracy")


def _column_threshold(pos: np.ndarray, score: np.ndarray, objective: str) -> float:
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    if n_pos == 0:
        return np.inf
    if n_neg == 0 and objective == "balanced_accuracy":
        return -np.inf
    order = np.argsort(-score, kind="stable")
    s, p = score[order], pos[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    tp = np.cumsum(p)[ends]
    fp = ends + 1 - tp
    if objective == "f1":
        value = 2 * tp / (tp + fp + n_pos)
    else:
        value = 0.5 * (tp / n_pos + (n_neg - fp) / n_neg) if n_neg else tp / n_pos
    return float(s[ends[int(np.argmax(value))]])


def tune_thresholds(y_val: np.ndarray, scores_val: np.ndarray, objective: str = "f1") -> np.ndarray:
    """One threshold per class from validation labels (N,) or (N, C) and matching scores → (C,)."""
    if objective not in OBJECTIVES:
        raise SpecError(f"unknown threshold objective {objective!r} (known: {', '.join(OBJECTIVES)})", "objective")
    pos = np.asarray(y_val).astype(bool).reshape(len(y_val), -1)
    score = np.asarray(scores_val, dtype=np.float64).reshape(len(scores_val), -1)
    if pos.shape != score.shape:
        raise SpecError(f"validation labels {pos.shape} and scores {score.shape} differ in shape", "scores_val")
    return np.array([_column_threshold(pos[:, k], score[:, k], objective) for k in range(pos.shape[1])])
