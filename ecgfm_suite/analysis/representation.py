"""Representation statistics: effective rank (RankMe) and linear CKA between models.

RankMe (Garrido et al., ICML 2023): ``exp(H(p))`` with ``p_k = σ_k / Σσ`` the normalised
singular values of the embedding matrix; it is the number of directions the embedding
really uses (k for k equal singular values, near 1 for a collapsed representation).

Linear CKA (Kornblith et al., ICML 2019) between two models' embeddings of the same
records: ``‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F)`` on column-centred matrices. It is 1 for
representations equal up to rotation and isotropic scale, and near 0 for unrelated ones.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import DataError

EPS = 1e-7


def rankme(X: np.ndarray) -> float:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or min(X.shape) == 0 or not np.isfinite(X).all():
        raise DataError(f"RankMe needs a finite, non-empty (N, D) matrix, got shape {X.shape}", "X")
    sigma = np.linalg.svd(X, compute_uv=False)
    if sigma.sum() == 0:
        return 0.0
    p = sigma / sigma.sum() + EPS
    return float(np.exp(-np.sum(p * np.log(p))))


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y) or len(X) < 2:
        raise DataError(f"CKA needs two (N, D) matrices of the same records, got {X.shape} and {Y.shape}", "X")
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    denominator = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    if denominator == 0:
        return float("nan")
    return float(np.linalg.norm(Y.T @ X) ** 2 / denominator)


def cka_matrix(embeddings: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Linear CKA between every two models (rows of each matrix are the same records, same order)."""
    names = sorted(embeddings)
    out = np.eye(len(names))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            out[i, j] = out[j, i] = linear_cka(embeddings[a], embeddings[names[j]])
    return names, out
