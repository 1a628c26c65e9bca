"""MLP probe: standardise, then one hidden layer trained epoch by epoch with ``partial_fit``.

Early stopping watches OUR validation split (scikit-learn's own ``early_stopping`` would
carve a random slice out of the training split instead): after every epoch the main
metric is computed on validation, the best epoch's weights are kept, and training stops
after ``PATIENCE`` epochs without an improvement larger than ``MIN_DELTA``. Regression targets are standardised for
training and the scale is folded back into the output layer, so the returned pipeline
predicts in the target's unit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neural_network import MLPClassifier, MLPRegressor

from .base import ValidationTracker, pipeline, scaled, scores_from

HIDDEN = 256
ALPHA = 1e-3
LEARNING_RATE = 1e-3
#: mini-batch size; small (few-shot) training splits use smaller batches so an epoch still takes ~10 steps
BATCH = 128
MIN_BATCH = 16
MAX_EPOCHS = 200
PATIENCE = 10
#: smallest gain in the validation metric that counts as an improvement (AUROC; for MAE, in target SDs)
MIN_DELTA = 1e-3


def fit(task_type: str, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
        seed: int, n_classes: int) -> tuple[Any, dict[str, Any]]:
    scaler, X_tr, X_va = scaled(X_train, X_val)
    settings = {"hidden_layer_sizes": (HIDDEN,), "alpha": ALPHA, "learning_rate_init": LEARNING_RATE,
                "batch_size": min(len(X_tr), max(MIN_BATCH, min(BATCH, len(X_tr) // 10))), "random_state": seed}
    regression = task_type == "regression"
    if regression:
        model: Any = MLPRegressor(**settings)
        mean, scale = float(y_train.mean()), float(y_train.std()) or 1.0
        target, extra = (y_train - mean) / scale, {}
    else:
        model = MLPClassifier(**settings)
        mean, scale = 0.0, 1.0
        target, extra = y_train, {"classes": np.arange(n_classes)}
    tracker = ValidationTracker(task_type, y_val, min_delta=MIN_DELTA * scale)
    for epoch in range(MAX_EPOCHS):
        model.partial_fit(X_tr, target, **extra)
        scores = scores_from(model, task_type, X_va, n_classes)
        tracker.update(model, scores * scale + mean if regression else scores)
        if epoch - tracker.chosen(epoch) >= PATIENCE:
            break
    best = tracker.best_model if tracker.best_index is not None else model
    if regression:
        best.coefs_[-1] *= scale
        best.intercepts_[-1] = best.intercepts_[-1] * scale + mean
    params = {"hidden": HIDDEN, "alpha": ALPHA, "learning_rate": LEARNING_RATE, "batch_size": settings["batch_size"],
              "epochs": tracker.chosen(len(tracker.curve) - 1) + 1, "epochs_run": len(tracker.curve),
              "patience": PATIENCE, "min_delta": MIN_DELTA, **tracker.summary()}
    return pipeline(scaler, best), params
