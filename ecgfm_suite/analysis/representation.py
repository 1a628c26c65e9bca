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
from typing import Any

import numpy as np

from ..errors import AnalysisSkip, DataError
from .inputs import AnalysisOptions, ModelTaskData, Output, TaskInputs, within

EPS = 1e-7


#: records per chunk of a Gram matrix: float64 copies of a chunk, never of every record
GRAM_CHUNK = 8192


def gram(X: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """``XᵀX`` (D, D) in float64 over ``rows`` of X (default all), summed a chunk of records at a time."""
    rows = np.arange(len(X)) if rows is None else np.asarray(rows)
    out = np.zeros((X.shape[1], X.shape[1]))
    for start in range(0, len(rows), GRAM_CHUNK):
        chunk = np.asarray(X[rows[start : start + GRAM_CHUNK]], dtype=np.float64)
        if not np.isfinite(chunk).all():
            raise DataError(f"RankMe needs finite embeddings; records {start}..{start + len(chunk) - 1} of the "
                            f"{len(rows)} hold NaN or inf", "X")
        out += chunk.T @ chunk
    return out


def rankme(X: np.ndarray, rows: np.ndarray | None = None) -> float:
    """RankMe of ``rows`` of X (default all records).

    The singular values are the square roots of the D × D Gram matrix's eigenvalues, so memory holds D × D
    numbers and one chunk of records, whatever the number of records. Eigenvalues within round-off of zero
    (below ``D · eps · λ_max``, the tolerance ``numpy.linalg.matrix_rank`` uses) count as zero, as the SVD's
    singular values of a rank-deficient matrix do."""
    X = np.asarray(X)
    n = len(X) if rows is None else len(rows)
    if X.ndim != 2 or n == 0 or X.shape[1] == 0:
        raise DataError(f"RankMe needs a finite, non-empty (N, D) matrix, got shape {(n, *X.shape[1:])}", "X")
    # the SVD of an (n, D) matrix has min(n, D) singular values: the Gram's other eigenvalues are zeros it lacks
    eigenvalues = np.linalg.eigvalsh(gram(X, rows))[::-1][: min(n, X.shape[1])]
    top = eigenvalues[0]
    if top <= 0:
        return 0.0
    sigma = np.sqrt(np.where(eigenvalues > top * len(eigenvalues) * np.finfo(np.float64).eps, eigenvalues, 0.0))
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


# --------------------------------------------------------------------------- on a benchmark run

def run(data: ModelTaskData, options: AnalysisOptions) -> Output:
    """RankMe of the model's embeddings of the task's records; extra: the test (keys, embeddings) for CKA."""
    every, test = np.flatnonzero(data.have), data.rows("test")
    return Output({
        "model": data.model, "task": data.task.task.id, "embed_dim": int(data.X.shape[1]),
        "rankme": rankme(data.X, every), "rankme_test": rankme(data.X, test), "n_records": int(len(every)),
        "n_test": int(len(test)), "records_without_embedding": int((~data.have).sum()),
        "excluded": dict(sorted(data.excluded.items())),
    }, test_embeddings=(np.asarray(data.task.keys)[test], data.X[test]))



def run_cka(inputs: TaskInputs) -> Output:
    """Linear CKA between every two models on the test records all of them embedded."""
    task_id = inputs.task
    stored = inputs.store.task_embeddings(task_id)
    if len(stored) < 2:
        raise AnalysisSkip(f"CKA needs test embeddings of two models for {task_id}, found {sorted(stored)}")
    common = set.intersection(*(set(keys.tolist()) for keys, _ in stored.values()))
    order = sorted(common)
    if len(order) < 2:
        raise AnalysisSkip(f"the models of {task_id} share {len(order)} embedded test records")
    aligned = {}
    for model, (keys, X) in stored.items():
        position = {k: i for i, k in enumerate(keys.tolist())}
        aligned[model] = X[[position[k] for k in order]]
    names, matrix = cka_matrix(aligned)
    return Output({"task": task_id, "models": names, "cka": matrix, "n_records": len(order)})


def problems(p: Mapping[str, Any]) -> list[str]:
    """RankMe lies between 1 and the smaller of records and dimensions."""
    if 1 - 1e-6 <= p["rankme"] <= min(p["n_records"], p["embed_dim"]) + 1e-6:
        return []
    return [f"RankMe {p['rankme']} outside [1, min({p['n_records']}, {p['embed_dim']})]"]


def cka_problems(p: Mapping[str, Any]) -> list[str]:
    """A CKA matrix has a unit diagonal and values in [0, 1]."""
    return [f"row {p['models'][i]}: {row}" for i, row in enumerate(p["cka"])
            if abs(row[i] - 1) >= 1e-6 or not all(within(v, 0, 1) for v in row)]
