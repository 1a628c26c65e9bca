"""Test-set metrics with stratified-bootstrap CIs, seed aggregation and paired model comparison.

Thresholds for binary/multilabel F1 and balanced accuracy come from validation scores
only (``thresholds.tune_thresholds``); without validation arrays those metrics are left
out rather than computed at an arbitrary threshold. Macro averages run over the classes
present in the test set (multilabel: with at least one positive and one negative there),
which is also what the bootstrap strata preserve.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..errors import DataError, SpecError
from . import kernels
from .arrays import check_scores, check_targets
from .bootstrap import count_matrix, draw_indices, percentile_ci, row_chunks, strata
from .table import METRICS, check_task_type, metrics_for
from .thresholds import tune_thresholds


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricCI:
    """A point estimate on the full test set with its percentile bootstrap CI and standard error."""

    value: float
    ci_low: float
    ci_high: float
    se: float
    #: resamples that gave a finite value (R² is undefined on a resample with constant targets)
    n_boot: int

    def to_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "se": self.se,
                "n_boot": self.n_boot}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricCI:
        unknown = set(data) - {"value", "ci_low", "ci_high", "se", "n_boot"}
        if unknown:
            raise SpecError(f"unknown MetricCI keys {sorted(unknown)}", "metrics")
        return cls(value=float(data["value"]), ci_low=float(data["ci_low"]), ci_high=float(data["ci_high"]),
                   se=float(data["se"]), n_boot=int(data["n_boot"]))


@dataclass(frozen=True, slots=True)
class _Columns:
    """A task's test arrays reduced to what the kernels need, one column per evaluated class."""

    task_type: str
    #: classification: (n, K) positives and scores of the evaluated classes
    pos: np.ndarray | None = None
    score: np.ndarray | None = None
    #: metric id → (n, K) predicted-positive masks (thresholded or argmax)
    pred: Mapping[str, np.ndarray] | None = None
    #: regression: targets and estimates (n,)
    target: np.ndarray | None = None
    estimate: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.target if self.pos is None else self.pos)

    def metric_ids(self) -> tuple[str, ...]:
        ids = metrics_for(self.task_type)
        return tuple(m for m in ids if not METRICS.get(m).thresholded or m in (self.pred or {}))

    def values(self, W: np.ndarray, which: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """Metrics (all, or those in ``which``) for each weight row: metric id → (B,)."""
        wanted = set(self.metric_ids() if which is None else which)
        out: dict[str, np.ndarray] = {}
        if self.pos is None:
            for metric, kernel in (("mae", kernels.mae), ("r2", kernels.r2)):
                if metric in wanted:
                    out[metric] = kernel(self.target, self.estimate, W)
            return out
        if wanted & {"auroc", "auprc"}:
            per_class = [kernels.ranking_from_groups(*kernels.score_groups(self.pos[:, k], self.score[:, k], W))
                         for k in range(self.pos.shape[1])]
            for i, metric in enumerate(("auroc", "auprc")):
                if metric in wanted:
                    out[metric] = np.mean([values[i] for values in per_class], axis=0)
        if "f1" in wanted:
            out["f1"] = kernels.f1(*kernels.confusion(self.pos, self.pred["f1"], W)[:3]).mean(axis=1)
        if "balanced_accuracy" in wanted:
            counts = kernels.confusion(self.pos, self.pred["balanced_accuracy"], W)
            ba = kernels.balanced_accuracy(*counts, recall_only=self.task_type == "multiclass")
            out["balanced_accuracy"] = ba.mean(axis=1)
        return out

    def ranked(self) -> _Columns:
        """Scores replaced by mid-ranks / n per class: same ranking metrics, comparable across models."""
        if self.pos is None:
            return self
        from scipy.stats import rankdata

        return _Columns(self.task_type, self.pos, rankdata(self.score, axis=0) / self.n, self.pred)

    def stack(self, other: _Columns) -> _Columns:
        """Both models' records one after the other (2n virtual records) for the permutation test."""
        if self.pos is None:
            return _Columns(self.task_type, target=np.r_[self.target, other.target],
                            estimate=np.r_[self.estimate, other.estimate])
        return _Columns(self.task_type, np.r_[self.pos, other.pos], np.r_[self.score, other.score],
                        {m: np.r_[self.pred[m], other.pred[m]] for m in self.pred})


def _columns(task_type: str, y_true: Any, scores: Any, y_val: Any = None, scores_val: Any = None, *,
             name: str = "scores") -> tuple[_Columns, np.ndarray]:
    """Validate the arrays and build the evaluated columns; also returns the checked labels."""
    check_task_type(task_type)
    n_classes = np.shape(scores)[1] if task_type == "multiclass" and np.ndim(scores) == 2 else None
    y = check_targets(task_type, y_true, name="y_true", n_classes=n_classes)
    s = check_scores(task_type, scores, len(y), name=name,
                     n_classes=y.shape[1] if task_type == "multilabel" else None)
    if task_type == "regression":
        if len(y) < 2:
            raise DataError("regression needs at least 2 test records", "y_true")
        return _Columns(task_type, target=y, estimate=s), y
    if task_type == "multiclass":
        present = np.unique(y)
        if len(present) < 2:
            raise DataError(f"test set has a single class ({present.tolist()})", "y_true")
        pos = y[:, None] == present[None, :]
        argmax = np.argmax(s, axis=1)[:, None] == present[None, :]
        return _Columns(task_type, pos, s[:, present], {"f1": argmax, "balanced_accuracy": argmax}), y
    labels = y.reshape(len(y), -1).astype(bool)
    score = s.reshape(len(y), -1)
    keep = labels.any(axis=0) & ~labels.all(axis=0)
    if not keep.any():
        raise DataError("no class has both a positive and a negative test record", "y_true")
    pred: dict[str, np.ndarray] = {}
    if y_val is not None and scores_val is not None:
        yv = check_targets(task_type, y_val, name="y_val")
        sv = check_scores(task_type, scores_val, len(yv), name="scores_val",
                          n_classes=score.shape[1] if task_type == "multilabel" else None)
        for metric in ("f1", "balanced_accuracy"):
            thresholds = tune_thresholds(yv, sv, metric)
            pred[metric] = (score >= thresholds[None, :])[:, keep]
    return _Columns(task_type, labels[:, keep], score[:, keep], pred), y


def _distribution(columns: _Columns, idx: np.ndarray, which: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """Each metric on each resample (rows of ``idx``), in memory-bounded chunks: id → (B,)."""
    parts = [columns.values(count_matrix(idx[rows], columns.n), which) for rows in row_chunks(len(idx), columns.n)]
    return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}


def _check_n_boot(n_boot: int) -> None:
    if not isinstance(n_boot, int | np.integer) or n_boot < 2:
        raise SpecError(f"n_boot must be an integer >= 2, got {n_boot!r}", "n_boot")


def evaluate(task_type: str, y_true: Any, scores: Any, *, y_val: Any = None, scores_val: Any = None,
             n_boot: int = 1000, seed: int = 0) -> dict[str, MetricCI]:
    """Every metric of the task type on the test arrays, each with a stratified-bootstrap 95% CI."""
    _check_n_boot(n_boot)
    columns, y = _columns(task_type, y_true, scores, y_val, scores_val)
    point = columns.values(np.ones((1, columns.n)))
    idx = draw_indices(strata(task_type, y), n_boot, np.random.default_rng(seed))
    boot = _distribution(columns, idx)
    out = {}
    for metric in columns.metric_ids():
        low, high, se, n_ok = percentile_ci(boot[metric])
        out[metric] = MetricCI(value=float(point[metric][0]), ci_low=low, ci_high=high, se=se, n_boot=n_ok)
    return out


def point_estimate(metric: str, task_type: str, y_true: Any, scores: Any, *, y_val: Any = None,
                   scores_val: Any = None) -> float:
    """One metric on the full arrays, no bootstrap (probes use it to select hyper-parameters)."""
    columns, _ = _columns(task_type, y_true, scores, y_val, scores_val)
    if metric not in columns.metric_ids():
        raise SpecError(f"metric {metric!r} is not available for {task_type} (thresholded metrics need "
                        "validation arrays)", "metric")
    return float(columns.values(np.ones((1, columns.n)), [metric])[metric][0])


class PairedComparison(NamedTuple):
    """Model A minus model B on one metric: point difference, bootstrap 95% CI, permutation p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float


def infer_task_type(metric: str, y_true: Any, scores: Any) -> str:
    """The task type implied by a metric and array shapes (multilabel: 2-D labels)."""
    if "regression" in METRICS.get(metric).task_types:
        return "regression"
    if np.ndim(y_true) == 2:
        return "multilabel"
    return "multiclass" if np.ndim(scores) == 2 else "binary"


def paired_bootstrap(metric: str, y_true: Any, scores_a: Any, scores_b: Any, *, n_boot: int = 1000,
                     seed: int = 0, task_type: str | None = None, y_val: Any = None, scores_val_a: Any = None,
                     scores_val_b: Any = None) -> PairedComparison:
    """Compare two models on the same test records.

    The CI resamples test indices (stratified as in ``evaluate``) and applies the same
    indices to both models. The two-sided p-value is a permutation test: each record's
    scores are swapped between the models with probability 1/2 (``n_boot`` permutations;
    for ranking metrics scores are first mapped to within-model ranks so that swapping
    is fair between differently calibrated models); p = (1 + #|d*| >= |d|) / (1 + n_boot).
    """
    _check_n_boot(n_boot)
    task_type = task_type or infer_task_type(metric, y_true, scores_a)
    if task_type not in METRICS.get(metric).task_types:
        raise SpecError(f"metric {metric!r} does not apply to {task_type} tasks", "metric")
    col_a, y = _columns(task_type, y_true, scores_a, y_val, scores_val_a, name="scores_a")
    col_b, _ = _columns(task_type, y_true, scores_b, y_val, scores_val_b, name="scores_b")
    for col in (col_a, col_b):
        if metric not in col.metric_ids():
            raise SpecError(f"{metric} needs y_val and validation scores for both models", "metric")
    if task_type == "multiclass" and col_a.pos.shape != col_b.pos.shape:
        raise DataError("the two models' scores have different numbers of classes", "scores_b")
    rng = np.random.default_rng(seed)
    ones = np.ones((1, col_a.n))
    diff = float(col_a.values(ones, [metric])[metric][0] - col_b.values(ones, [metric])[metric][0])
    idx = draw_indices(strata(task_type, y), n_boot, rng)
    boot = _distribution(col_a, idx, [metric])[metric] - _distribution(col_b, idx, [metric])[metric]
    low, high, _, _ = percentile_ci(boot)

    stacked = col_a.ranked().stack(col_b.ranked()) if metric in ("auroc", "auprc") else col_a.stack(col_b)
    swap = rng.random((n_boot, col_a.n)) < 0.5
    null = np.concatenate([
        stacked.values(np.c_[~swap[rows], swap[rows]].astype(np.float64), [metric])[metric]
        - stacked.values(np.c_[swap[rows], ~swap[rows]].astype(np.float64), [metric])[metric]
        for rows in row_chunks(n_boot, 2 * col_a.n)
    ])
    extreme = np.abs(null) >= abs(diff) - 1e-12
    return PairedComparison(diff, low, high, float((1 + extreme.sum()) / (1 + n_boot)))


def aggregate_seeds(results: Sequence[Mapping[str, MetricCI | float]]) -> dict[str, tuple[float, float]]:
    """Mean and sample standard deviation (ddof=1) of each metric's point value across seeds.

    With a single seed the standard deviation is NaN: spread across seeds is unknown, not zero.
    """
    if not results:
        raise SpecError("no per-seed results to aggregate", "results")
    keys = set(results[0])
    for i, res in enumerate(results[1:], start=1):
        if set(res) != keys:
            raise SpecError(f"seed result {i} has metrics {sorted(res)}, seed 0 has {sorted(keys)}", "results")
    out = {}
    for metric in sorted(keys):
        vals = np.array([r[metric].value if isinstance(r[metric], MetricCI) else float(r[metric]) for r in results])
        out[metric] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else math.nan)
    return out
