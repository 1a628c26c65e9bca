"""Probe contract: fit on frozen train embeddings, select on validation, score any split.

Every probe is a scikit-learn pipeline (``StandardScaler`` then the model) fitted on the
training split only; the validation split selects hyper-parameters (and stops MLP
training); the test split is never seen here. Degenerate training labels do not crash:
a binary/multiclass training set with one class gets a prior-only ``DummyClassifier``,
and a multilabel column that is constant in training gets its training prevalence as a
constant score (the other columns are fitted as usual).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import DataError, SpecError
from ..metrics import MAIN_METRIC, METRICS, check_targets, check_task_type, point_estimate
from ..registry import Registry, resolve

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeSpec:
    id: str
    #: "module:attr" of ``fit(task_type, X_train, y_train, X_val, y_val, *, seed, n_classes)``
    #: returning ``(estimator, params)``; ``seed`` matters to stochastic probes (MLP) only
    fitter: str
    description: str = ""


PROBES: Registry[ProbeSpec] = Registry("probe")
for _spec in (
    ProbeSpec(id="linear", fitter="ecgfm_suite.probes.linear:fit",
              description="standardise + logistic regression (ridge for regression), C/alpha chosen on validation"),
    ProbeSpec(id="knn", fitter="ecgfm_suite.probes.knn:fit",
              description="standardise + k-nearest neighbours (Euclidean, uniform votes), k chosen on validation"),
    ProbeSpec(id="mlp", fitter="ecgfm_suite.probes.mlp:fit",
              description="standardise + one-hidden-layer MLP, early stopping on the validation split"),
):
    PROBES.register(_spec.id, _spec)


def check_embeddings(X: npt.ArrayLike, *, name: str, n_records: int | None = None,
                     n_features: int | None = None) -> np.ndarray:
    """Embeddings as float32 (N, D), finite, with the expected row/feature counts."""
    arr = np.asarray(X)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"embeddings must be a numeric (N, D) array, got shape {arr.shape} dtype {arr.dtype}", name)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if n_records is not None and len(arr) != n_records:
        raise DataError(f"{len(arr)} embeddings for {n_records} labels", name)
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(f"{arr.shape[1]} features, the probe was fitted on {n_features}", name)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise DataError(f"{int(bad.sum())} records with non-finite embeddings (first rows {rows})", name)
    return arr


def scores_from(model: Any, task_type: str, X: np.ndarray, n_outputs: int) -> np.ndarray:
    """A fitted model's output in the metrics layer's score layout (see ``FittedProbe.predict_scores``)."""
    if task_type == "regression":
        return np.asarray(model.predict(X), dtype=np.float64)
    proba = model.predict_proba(X)
    if task_type == "multilabel":
        # k-NN returns one (N, 2) array per label, MLP and the labelwise logistic an (N, L) array
        cols = [p[:, 1] for p in proba] if isinstance(proba, list) else list(np.asarray(proba).T)
        return np.column_stack(cols).astype(np.float64)
    out = np.zeros((len(X), n_outputs))
    out[:, np.asarray(model.classes_, dtype=np.intp)] = proba
    return out[:, 1] if task_type == "binary" else out


@dataclass(frozen=True, slots=True, kw_only=True)
class FittedProbe:
    kind: str
    task_type: str
    #: scaler + model pipeline (what SHAP explains); None if every multilabel column was constant in training
    estimator: Any
    #: chosen hyper-parameters and the validation curve that chose them (json-able)
    params: Mapping[str, Any]
    n_features: int
    #: classes (multiclass/multilabel); 2 for binary, 1 for regression
    n_outputs: int
    #: multilabel: label columns the estimator models, and the constant score of every other column
    fitted_labels: tuple[int, ...] = ()
    constant_scores: Mapping[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "constant_scores", MappingProxyType(dict(self.constant_scores)))

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (a probe fitted in a worker process comes back to the parent); mapping proxies are not."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return _rebuild, (type(self), {**values, "params": dict(self.params),
                                       "constant_scores": dict(self.constant_scores)})

    def predict_scores(self, X: npt.ArrayLike) -> np.ndarray:
        """Scores in the layout ``metrics.evaluate`` expects.

        binary: (N,) P(class 1); multiclass: (N, C) probabilities (a class absent from training
        scores 0); multilabel: (N, C) per-label probabilities; regression: (N,) predictions.
        """
        X = check_embeddings(X, name="X", n_features=self.n_features)
        return _single_threaded(self._scores)(X)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        if self.task_type != "multilabel":
            return scores_from(self.estimator, self.task_type, X, self.n_outputs)
        out = np.empty((len(X), self.n_outputs))
        for k, value in self.constant_scores.items():
            out[:, k] = value
        if self.fitted_labels:
            layout = "binary" if len(self.fitted_labels) == 1 else "multilabel"
            out[:, list(self.fitted_labels)] = scores_from(self.estimator, layout, X, 2).reshape(len(X), -1)
        return out


@dataclass(frozen=True, slots=True)
class SeedProbe:
    """A cell's probe for one seed and the training rows it was fitted on (the analyses explain the linear one)."""

    seed: int
    train_rows: np.ndarray
    probe: FittedProbe

    @property
    def nbytes(self) -> int:
        estimator = self.probe.estimator
        weights = getattr(getattr(estimator, "named_steps", {}).get("probe"), "coef_", None)
        return int(self.train_rows.nbytes + (np.asarray(weights).nbytes * 2 if weights is not None else 0))


def _rebuild(cls: type, values: dict[str, Any]) -> Any:
    return cls(**values)


class ValidationTracker:
    """Keeps the best model seen on the validation split by the task's main metric.

    Ties (and gains of at most ``min_delta``) keep the earlier model. A validation split that cannot rank models
    (e.g. one class only) gives NaN values, and then no model is ever "best": callers fall back to
    a documented default.
    """

    def __init__(self, task_type: str, y_val: np.ndarray, *, min_delta: float = 0.0) -> None:
        self.task_type, self.y_val, self.min_delta = task_type, y_val, min_delta
        self.metric = MAIN_METRIC[task_type]
        self._spec = METRICS.get(self.metric)
        self.curve: list[float | None] = []
        self.best_index: int | None = None
        self.best_value = math.nan
        self.best_model: Any = None

    def update(self, model: Any, val_scores: np.ndarray) -> None:
        """Score one candidate; keep a copy of it if it is the best so far."""
        try:
            value = point_estimate(self.metric, self.task_type, self.y_val, val_scores)
        except DataError:
            value = math.nan
        self.curve.append(None if math.isnan(value) else round(value, 6))
        gain = (value - self.best_value) * (1 if self._spec.higher_is_better else -1)
        if not math.isnan(value) and (math.isnan(self.best_value) or gain > self.min_delta):
            self.best_index, self.best_value, self.best_model = len(self.curve) - 1, value, copy.deepcopy(model)

    def chosen(self, default: int) -> int:
        return default if self.best_index is None else self.best_index

    def summary(self) -> dict[str, Any]:
        return {"selected_on": f"validation {self.metric}", f"val_{self.metric}": self.curve,
                "val_rankable": self.best_index is not None}


def fit_probe(kind: str, task_type: str, X_train: npt.ArrayLike, y_train: npt.ArrayLike, X_val: npt.ArrayLike,
              y_val: npt.ArrayLike, *, seed: int, n_classes: int | None = None) -> FittedProbe:
    """Fit probe ``kind`` on the training split, choosing its hyper-parameters on the validation split."""
    spec = PROBES.get(kind)
    check_task_type(task_type)
    if n_classes is not None and (task_type in ("binary", "regression") or n_classes < 2):
        raise SpecError(f"n_classes={n_classes} does not fit a {task_type} task", "n_classes")
    y_tr = check_targets(task_type, y_train, name="y_train", n_classes=n_classes)
    y_va = check_targets(task_type, y_val, name="y_val", n_classes=n_classes)
    X_tr = check_embeddings(X_train, name="X_train", n_records=len(y_tr))
    X_va = check_embeddings(X_val, name="X_val", n_records=len(y_va), n_features=X_tr.shape[1])
    n_outputs = _n_outputs(task_type, y_tr, y_va, n_classes)
    fit = _single_threaded(resolve(spec.fitter))
    common = {"kind": kind, "task_type": task_type, "n_features": X_tr.shape[1], "n_outputs": n_outputs}
    if task_type == "multilabel":
        if y_va.shape[1] != y_tr.shape[1]:
            raise DataError(f"{y_va.shape[1]} label columns, training has {y_tr.shape[1]}", "y_val")
        prevalence = y_tr.mean(axis=0)
        varying = tuple(int(k) for k in np.flatnonzero((prevalence > 0) & (prevalence < 1)))
        constant = {int(k): float(prevalence[k]) for k in range(n_outputs) if k not in varying}
        estimator, params = None, {}
        if len(varying) == 1:  # scikit-learn reads a one-column label matrix as a binary target
            estimator, params = fit("binary", X_tr, y_tr[:, varying[0]], X_va, y_va[:, varying[0]], seed=seed,
                                    n_classes=2)
        elif varying:
            estimator, params = fit(task_type, X_tr, y_tr[:, varying], X_va, y_va[:, varying], seed=seed,
                                    n_classes=len(varying))
        params = {**params, "constant_labels": sorted(constant)}
        return FittedProbe(**common, estimator=estimator, params=params, fitted_labels=varying,
                           constant_scores=constant)
    if task_type != "regression" and len(np.unique(y_tr)) < 2:
        return FittedProbe(**common, estimator=_prior_only(X_tr, y_tr), params={"constant": True})
    estimator, params = fit(task_type, X_tr, y_tr, X_va, y_va, seed=seed, n_classes=n_outputs)
    return FittedProbe(**common, estimator=estimator, params=params)


def _single_threaded(func: Callable[P, T]) -> Callable[P, T]:
    """Run ``func`` with one BLAS/OpenMP thread.

    Probe problems are small (thousands × hundreds) and cells run in parallel across
    pytest-xdist workers; multi-threaded BLAS then mostly contends for cores (measured on
    2 shared cores: 7 warm-started logistic fits 8.8 s with 2 threads, 0.45 s with 1).
    """
    from .._threads import one_thread

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with one_thread():
            return func(*args, **kwargs)

    return run


def _n_outputs(task_type: str, y_tr: np.ndarray, y_va: np.ndarray, n_classes: int | None) -> int:
    if task_type == "regression":
        return 1
    if task_type == "binary":
        return 2
    if task_type == "multilabel":
        return y_tr.shape[1]
    return n_classes if n_classes is not None else int(max(y_tr.max(), y_va.max())) + 1


def _prior_only(X: np.ndarray, y: np.ndarray) -> Any:
    """A training split with one class: predict its prior, i.e. a constant score."""
    from sklearn.dummy import DummyClassifier
    from sklearn.preprocessing import StandardScaler

    return pipeline(StandardScaler().fit(X), DummyClassifier(strategy="prior").fit(X, y))


def scaled(X_train: np.ndarray, X_val: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    """A StandardScaler fitted on training embeddings, with both splits transformed."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train)
    return scaler, scaler.transform(X_train), scaler.transform(X_val)


def pipeline(scaler: Any, model: Any) -> Any:
    from sklearn.pipeline import Pipeline

    return Pipeline([("scale", scaler), ("probe", model)])
