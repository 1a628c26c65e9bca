"""k-NN probe: standardise, then k nearest training records (Euclidean, uniform votes).

k is chosen on the validation split from ``K_GRID`` (values above the training size
dropped). Selection queries the k_max nearest neighbours once and forms the vote of every
smaller k from that list, which is what ``KNeighbors*.predict_proba`` computes for that k
(up to the order of exactly equidistant neighbours); the returned pipeline is scikit-learn's
estimator with the chosen k.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from .base import ValidationTracker, pipeline, scaled

K_GRID = (1, 3, 5, 11, 21, 51, 101)
#: grid position used when validation cannot rank the values (k = 11, or the largest k allowed)
DEFAULT_INDEX = 3


def _votes(task_type: str, y_train: np.ndarray, n_outputs: int) -> np.ndarray:
    """What each training record contributes to a vote: (n_train, outputs) in the score layout."""
    if task_type in ("binary", "multiclass"):
        onehot = np.eye(n_outputs)[y_train]
        return onehot[:, 1:] if task_type == "binary" else onehot
    return np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)


def fit(task_type: str, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
        seed: int, n_classes: int) -> tuple[Any, dict[str, Any]]:
    scaler, X_tr, X_va = scaled(X_train, X_val)
    grid = tuple(k for k in K_GRID if k <= len(X_tr))
    cls = KNeighborsRegressor if task_type == "regression" else KNeighborsClassifier
    model = cls(n_neighbors=grid[-1], algorithm="brute").fit(X_tr, y_train)
    neighbours = model.kneighbors(X_va, return_distance=False)
    # running vote sums over the neighbour list: cum[:, k-1] is the sum over the k nearest
    cum = np.cumsum(_votes(task_type, y_train, n_classes)[neighbours], axis=1)
    tracker = ValidationTracker(task_type, y_val)
    for k in grid:
        scores = cum[:, k - 1] / k
        tracker.update(None, scores[:, 0] if task_type in ("binary", "regression") else scores)
    index = tracker.chosen(min(DEFAULT_INDEX, len(grid) - 1))
    final = cls(n_neighbors=grid[index], algorithm="brute").fit(X_tr, y_train)
    return pipeline(scaler, final), {"k": grid[index], "k_grid": list(grid), "metric": "euclidean",
                                     **tracker.summary()}
