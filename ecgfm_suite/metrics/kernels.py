"""Metric kernels over weighted records, vectorised across resamples.

Every kernel takes a weight matrix ``W`` (B, n): row b gives how often each test record
occurs in resample b (a bootstrap's counts, a permutation's 0/1 membership, or a row
of ones for the point estimate). Weighting by counts equals evaluating the resampled
arrays, so one sort of the scores serves all B resamples, and there is no Python loop
over resamples. Results match scikit-learn on the resampled arrays (see tests).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def score_groups(pos: np.ndarray, score: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per distinct score, scores ascending: two (B, G) arrays.

    A sparse (2G, n) indicator sums the weights of each (score group, class) in one
    product, instead of permuting the (B, n) weights.
    """
    distinct, group = np.unique(score, return_inverse=True)
    n_groups = len(distinct)
    group = group.reshape(-1)
    if len(W) == 1:  # a point estimate (probes' validation walk): two bincounts, no sparse product
        positive = np.asarray(pos, dtype=bool)
        return (np.bincount(group, weights=np.where(positive, W[0], 0.0), minlength=n_groups)[None],
                np.bincount(group, weights=np.where(positive, 0.0, W[0]), minlength=n_groups)[None])
    indicator = sparse.csr_matrix(
        (np.ones(len(score)), (2 * group + pos, np.arange(len(score)))), shape=(2 * n_groups, len(score))
    )
    sums = np.asarray((indicator @ W.T).T)
    return sums[:, 1::2], sums[:, 0::2]


def ranking_from_groups(P: np.ndarray, N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC (Mann-Whitney, ties count one half) and average precision (sum over thresholds
    of recall step × precision) from ``score_groups``: two (B,) arrays sharing two cumsums.

    Row sums are ``einsum`` dot products (no (B, G) temporaries), and precision is computed only at the
    score groups that hold a positive (elsewhere its recall step is 0): with B = 1000 resamples the
    arrays are megabytes, and each pass over them counts.
    """
    cum_p, cum_n = np.cumsum(P, axis=1), np.cumsum(N, axis=1)
    n_pos, n_neg = cum_p[:, -1], cum_n[:, -1]
    cols = np.flatnonzero(P.any(axis=0))
    P_at = P[:, cols]
    tp = n_pos[:, None] - cum_p[:, cols] + P_at  # positives scoring at or above each such score
    called = tp + n_neg[:, None] - cum_n[:, cols] + N[:, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc_ = (np.einsum("bg,bg->b", P, cum_n) - 0.5 * np.einsum("bg,bg->b", P, N)) / (n_pos * n_neg)
        precision = np.divide(tp, called, out=np.zeros_like(tp), where=P_at > 0)
        return auroc_, np.einsum("bg,bg->b", P_at, precision) / n_pos


def auroc(pos: np.ndarray, score: np.ndarray, W: np.ndarray) -> np.ndarray:
    return ranking_from_groups(*score_groups(pos, score, W))[0]


def average_precision(pos: np.ndarray, score: np.ndarray, W: np.ndarray) -> np.ndarray:
    return ranking_from_groups(*score_groups(pos, score, W))[1]


def confusion(pos: np.ndarray, pred: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted TP, FP, FN, TN per resample and column: four (B, K) arrays from (n, K) masks."""
    pos_f, pred_f = pos.astype(np.float64), pred.astype(np.float64)
    tp = W @ (pos_f * pred_f)
    pos_w = W @ pos_f
    pred_w = W @ pred_f
    total = W.sum(axis=1, keepdims=True)
    fp, fn = pred_w - tp, pos_w - tp
    return tp, fp, fn, total - tp - fp - fn


def f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 per column; 0 where there are no positives and no predicted positives (scikit-learn's default)."""
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def balanced_accuracy(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray, *,
                      recall_only: bool) -> np.ndarray:
    """Per-column (sensitivity + specificity) / 2, or sensitivity alone (multiclass mean recall)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = tp / (tp + fn)
        return sensitivity if recall_only else 0.5 * (sensitivity + tn / (tn + fp))


def mae(target: np.ndarray, estimate: np.ndarray, W: np.ndarray) -> np.ndarray:
    return (W @ np.abs(target - estimate)) / W.sum(axis=1)


def r2(target: np.ndarray, estimate: np.ndarray, W: np.ndarray) -> np.ndarray:
    """1 - SS_res / SS_tot per resample; NaN where the resampled targets are constant."""
    mean = (W @ target) / W.sum(axis=1)
    ss_tot = (W * (target[None, :] - mean[:, None]) ** 2).sum(axis=1)
    ss_res = W @ (target - estimate) ** 2
    constant = ss_tot <= 1e-12 * (W @ target**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(constant, np.nan, 1.0 - ss_res / ss_tot)
