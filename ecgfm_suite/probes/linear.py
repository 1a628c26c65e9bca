"""Linear probe: standardise, then logistic regression (ridge for regression).

C (alpha) runs over a log grid from strong to weak regularisation, each fit warm-started
from the previous solution (lbfgs converges to the same optimum, only faster), and the
value best on the validation split's main metric wins; ties keep the stronger
regularisation. The walk stops once ``PATIENCE`` further values have not beaten the best
(validation curves over C rise then fall or flatten, and the weakly regularised fits are
the slowest); the validation curve in ``params`` lists the values tried. The kept model
is the one fitted on the training split at the chosen value; it is not refitted on
train + validation, so a scarcity cell's label budget is exactly its training split.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge

from .base import ValidationTracker, pipeline, scaled, scores_from

C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 7))
ALPHA_GRID = tuple(float(a) for a in np.logspace(5, -1, 7))
MAX_ITER = 1000
#: lbfgs stopping tolerance (scikit-learn's default); at 1e-6 the default matrix's main metrics stay inside their
#: CIs (``benchmarks/bench_engine.py::test_probe_optimiser_tolerance``), at about 40 % more fitting time
TOL = 1e-4
PATIENCE = 2
#: grid position used when validation cannot rank the values (C = 1, alpha = 100)
DEFAULT_INDEX = 4


class LabelwiseLogistic(ClassifierMixin, BaseEstimator):
    """One binary logistic regression per label column sharing one C (multilabel one-vs-rest).

    Unlike ``OneVsRestClassifier`` it keeps each label's solution between fits for warm
    starts and exposes stacked ``coef_`` (L, D) / ``intercept_`` (L,) for SHAP's LinearExplainer.
    """

    def __init__(self, C: float = 1.0, max_iter: int = MAX_ITER, warm_start: bool = False) -> None:
        self.C, self.max_iter, self.warm_start = C, max_iter, warm_start

    def fit(self, X: np.ndarray, Y: np.ndarray) -> LabelwiseLogistic:
        Y = np.asarray(Y)
        if not (self.warm_start and hasattr(self, "estimators_")):
            self.estimators_ = [LogisticRegression(max_iter=self.max_iter, tol=TOL, warm_start=self.warm_start)
                                for _ in range(Y.shape[1])]
        for est, column in zip(self.estimators_, Y.T, strict=True):
            est.set_params(C=self.C).fit(X, column)
        self.coef_ = np.vstack([est.coef_ for est in self.estimators_])
        self.intercept_ = np.concatenate([est.intercept_ for est in self.estimators_])
        self.classes_ = np.arange(Y.shape[1])
        self.n_iter_ = np.concatenate([est.n_iter_ for est in self.estimators_])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, L) probability that each label is present."""
        return expit(self.decision_function(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X) >= 0.5).astype(np.int8)


def fit(task_type: str, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
        seed: int, n_classes: int) -> tuple[Any, dict[str, Any]]:
    scaler, X_tr, X_va = scaled(X_train, X_val)
    if task_type == "regression":
        grid, name = ALPHA_GRID, "alpha"
        model: Any = Ridge()
    else:
        grid, name = C_GRID, "C"
        model = (LabelwiseLogistic(warm_start=True) if task_type == "multilabel"
                 else LogisticRegression(max_iter=MAX_ITER, tol=TOL, warm_start=True))
    tracker = ValidationTracker(task_type, y_val)
    with warnings.catch_warnings():
        # non-convergence at weak regularisation is recorded in params (n_iter == max_iter), not printed
        warnings.simplefilter("ignore", ConvergenceWarning)
        iterations = []
        for value in grid:
            model.set_params(**{name: value}).fit(X_tr, y_train)
            n_iter = getattr(model, "n_iter_", None)  # None for ridge's direct solver
            iterations.append(0 if n_iter is None else int(np.max(n_iter)))
            tracker.update(model, scores_from(model, task_type, X_va, n_classes))
            if tracker.best_index is not None and len(tracker.curve) - 1 - tracker.best_index >= PATIENCE:
                break
    index = tracker.chosen(DEFAULT_INDEX)
    if tracker.best_index is None:
        best = model.set_params(**{name: grid[index]}).fit(X_tr, y_train)
    else:
        best = tracker.best_model
    params = {name: grid[index], f"{name}_grid": list(grid), "max_iter_hit": iterations[index] >= MAX_ITER,
              **tracker.summary()}
    return pipeline(scaler, best), params
