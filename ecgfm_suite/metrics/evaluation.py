"""Test-set metrics with stratified-bootstrap CIs, seed aggregation and paired model comparison.

Thresholds for binary/multilabel F1 and balanced accuracy come from validation scores
only (``thresholds.tune_thresholds``); without validation arrays those metrics are left
out rather than computed at an arbitrary threshold. Macro averages run over the classes
present in the test set (multilabel: with at least one positive and one negative there),
which is also what the bootstrap strata preserve.

``evaluate_classes`` also reports each class's AUROC and AUPRC (multiclass and multilabel):
the per-class values are the rows the macro averages, computed in the same kernel pass on
the same resamples, so they cost no extra sort and agree with the macro by construction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ..errors import DataError, SpecError
from . import kernels
from .arrays import check_scores, check_targets
from .bootstrap import count_matrix, draw_resamples, percentile_ci, row_chunks, strata
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


#: the metrics reported per class, in the order ``kernels.ranking_from_groups`` returns them: they need no
#: threshold, so a class's value means the same in every cell
PER_CLASS_METRICS = ("auroc", "auprc")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassMetrics:
    """One class of a multiclass or multilabel task on the test set: its ranking metrics with bootstrap CIs.

    A class without both a positive and a negative test record has no AUROC or AUPRC: ``metrics`` is
    empty and ``undefined`` says why, so a reader never mistakes it for a chance-level (0.5) class.
    """

    #: the class's index (multiclass label, multilabel column)
    index: int
    n_positive: int
    #: positives / test records
    prevalence: float
    #: ``PER_CLASS_METRICS`` → value and CI; empty where undefined
    metrics: Mapping[str, MetricCI]
    undefined: str | None = None


class Evaluation(NamedTuple):
    """``evaluate_classes``' result: the macro metrics and, for multiclass/multilabel tasks, every class's."""

    metrics: dict[str, MetricCI]
    #: one per class of the task in class order; () for binary and regression tasks (the macro is the class)
    classes: tuple[ClassMetrics, ...]


def class_positives(task_type: str, y: npt.ArrayLike, n_classes: int) -> np.ndarray:
    """Records that are positive for each class: (n_classes,) counts of multiclass labels or multilabel columns.

    Shared by the test prevalence here and the training-subset prevalence of a cell's seeds.
    """
    arr = np.asarray(y)
    if task_type == "multiclass":
        return np.bincount(arr.astype(np.int64).ravel(), minlength=n_classes)[:n_classes]
    if task_type == "multilabel":
        return arr.reshape(len(arr), -1).astype(bool).sum(axis=0)[:n_classes]
    raise SpecError(f"{task_type} tasks have no per-class counts", "task_type")


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
    #: multiclass/multilabel: the class index of each evaluated column, and the task's number of classes
    classes: np.ndarray | None = None
    n_classes: int = 0

    @property
    def n(self) -> int:
        rows = self.target if self.pos is None else self.pos
        assert rows is not None  # regression columns hold a target, classification ones pos
        return len(rows)

    def classification(self) -> tuple[np.ndarray, np.ndarray, Mapping[str, np.ndarray]]:
        """(pos, score, pred) of classification columns."""
        assert self.pos is not None and self.score is not None and self.pred is not None, "not classification"
        return self.pos, self.score, self.pred

    def regression(self) -> tuple[np.ndarray, np.ndarray]:
        """(target, estimate) of regression columns."""
        assert self.target is not None and self.estimate is not None, "not regression"
        return self.target, self.estimate

    def metric_ids(self) -> tuple[str, ...]:
        ids = metrics_for(self.task_type)
        return tuple(m for m in ids if not METRICS.get(m).thresholded or m in (self.pred or {}))

    def values(self, W: np.ndarray, which: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """Metrics (all, or those in ``which``) for each weight row: metric id → (B,)."""
        return self.values_by_class(W, which)[0]

    def values_by_class(self, W: np.ndarray, which: Collection[str] | None = None
                        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``values``, and the per-class rows that its ranking metrics average: metric id → (K, B), one row per
        evaluated column (returned, not recomputed: the ranking kernels are the bootstrap's main cost)."""
        wanted = set(self.metric_ids() if which is None else which)
        out: dict[str, np.ndarray] = {}
        by_class: dict[str, np.ndarray] = {}
        if self.pos is None:
            target, estimate = self.regression()
            for metric, kernel in (("mae", kernels.mae), ("r2", kernels.r2)):
                if metric in wanted:
                    out[metric] = kernel(target, estimate, W)
            return out, by_class
        pos, score, pred = self.classification()
        if wanted & set(PER_CLASS_METRICS):
            per_class = [kernels.ranking_from_groups(*kernels.score_groups(pos[:, k], score[:, k], W))
                         for k in range(pos.shape[1])]
            for i, metric in enumerate(PER_CLASS_METRICS):
                if metric in wanted:
                    by_class[metric] = np.array([values[i] for values in per_class])
                    out[metric] = by_class[metric].mean(axis=0)
        if "f1" in wanted:
            out["f1"] = kernels.f1(*kernels.confusion(pos, pred["f1"], W)[:3]).mean(axis=1)
        if "balanced_accuracy" in wanted:
            counts = kernels.confusion(pos, pred["balanced_accuracy"], W)
            ba = kernels.balanced_accuracy(*counts, recall_only=self.task_type == "multiclass")
            out["balanced_accuracy"] = ba.mean(axis=1)
        return out, by_class

    def ranked(self) -> _Columns:
        """Scores replaced by mid-ranks / n per class: same ranking metrics, comparable across models."""
        if self.pos is None:
            return self
        from scipy.stats import rankdata

        return dataclasses.replace(self, score=rankdata(self.score, axis=0) / self.n)

    def stack(self, other: _Columns) -> _Columns:
        """Both models' records one after the other (2n virtual records) for the permutation test."""
        if self.pos is None:
            (target, estimate), (other_target, other_estimate) = self.regression(), other.regression()
            return _Columns(self.task_type, target=np.r_[target, other_target],
                            estimate=np.r_[estimate, other_estimate])
        (pos, score, pred), (other_pos, other_score, other_pred) = self.classification(), other.classification()
        return _Columns(self.task_type, np.r_[pos, other_pos], np.r_[score, other_score],
                        {m: np.r_[pred[m], other_pred[m]] for m in pred})


def _columns(task_type: str, y_true: npt.ArrayLike, scores: npt.ArrayLike, y_val: npt.ArrayLike | None = None,
             scores_val: npt.ArrayLike | None = None, *, name: str = "scores") -> tuple[_Columns, np.ndarray]:
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
        return _Columns(task_type, pos, s[:, present], {"f1": argmax, "balanced_accuracy": argmax},
                        classes=present, n_classes=s.shape[1]), y
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
    classes = np.flatnonzero(keep) if task_type == "multilabel" else None
    columns = _Columns(task_type, labels[:, keep], score[:, keep], pred, classes=classes, n_classes=labels.shape[1])
    return columns, y


def _distributions(models: Sequence[_Columns], chunks: Iterable[np.ndarray], which: Collection[str] | None = None
                   ) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Each metric on each resample, per model scored on the same resamples, a chunk of (rows, n) resample
    indices at a time (memory stays bounded by the chunk): per model, id → (B,) and the per-class ranking
    metrics id → (K, B)."""
    parts: list[list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]] = [[] for _ in models]
    for idx in chunks:
        weights = count_matrix(idx, models[0].n)
        for columns, out in zip(models, parts, strict=True):
            out.append(columns.values_by_class(weights, which))
    return [({m: np.concatenate([p[0][m] for p in out]) for m in out[0][0]},
             {m: np.concatenate([p[1][m] for p in out], axis=1) for m in out[0][1]}) for out in parts]


def _distribution(columns: _Columns, idx: np.ndarray, which: Collection[str] | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``_distributions`` of one model on the rows of an index matrix (B, n) drawn by the caller."""
    return _distributions([columns], (idx[rows] for rows in row_chunks(len(idx), columns.n)), which)[0]


def _metric_ci(value: float, samples: np.ndarray) -> MetricCI:
    low, high, se, n_ok = percentile_ci(samples)
    return MetricCI(value=float(value), ci_low=low, ci_high=high, se=se, n_boot=n_ok)


def _class_metrics(columns: _Columns, y: np.ndarray, point: Mapping[str, np.ndarray],
                   boot: Mapping[str, np.ndarray]) -> tuple[ClassMetrics, ...]:
    """Every class of the task (evaluated columns from ``point``/``boot`` rows, the others undefined with why)."""
    if columns.classes is None:
        return ()
    positives = class_positives(columns.task_type, y, columns.n_classes)
    row = {int(k): i for i, k in enumerate(columns.classes)}
    out = []
    for k, n_pos in enumerate(positives.tolist()):
        undefined = None
        metrics: dict[str, MetricCI] = {}
        if k in row:
            metrics = {m: _metric_ci(point[m][row[k], 0], boot[m][row[k]]) for m in point}
        elif n_pos == 0:
            whose = "record of this class" if columns.task_type == "multiclass" else "positive record of this class"
            undefined = f"no {whose} in the test split: AUROC and AUPRC are undefined"
        else:
            undefined = "every test record is positive for this class (no negative): AUROC and AUPRC are undefined"
        out.append(ClassMetrics(index=k, n_positive=int(n_pos), prevalence=n_pos / len(y), metrics=metrics,
                                undefined=undefined))
    return tuple(out)


def _check_n_boot(n_boot: int) -> None:
    if not isinstance(n_boot, int | np.integer) or n_boot < 2:
        raise SpecError(f"n_boot must be an integer >= 2, got {n_boot!r}", "n_boot")


def evaluate(task_type: str, y_true: npt.ArrayLike, scores: npt.ArrayLike, *, y_val: npt.ArrayLike | None = None,
             scores_val: npt.ArrayLike | None = None, n_boot: int = 1000, seed: int = 0) -> dict[str, MetricCI]:
    """Every metric of the task type on the test arrays, each with a stratified-bootstrap 95% CI."""
    return evaluate_classes(task_type, y_true, scores, y_val=y_val, scores_val=scores_val, n_boot=n_boot,
                            seed=seed).metrics


def evaluate_classes(task_type: str, y_true: npt.ArrayLike, scores: npt.ArrayLike, *,
                     y_val: npt.ArrayLike | None = None, scores_val: npt.ArrayLike | None = None, n_boot: int = 1000,
                     seed: int = 0) -> Evaluation:
    """``evaluate``'s metrics plus, for multiclass and multilabel tasks, each class's AUROC and AUPRC.

    A class's CI comes from the very resamples of the macro CI (a class-level and the macro interval
    describe the same resampled test sets), and the macro is the plain mean of the defined classes'
    values. Every class of the task is listed, the undefined ones with the reason (see ``ClassMetrics``).
    """
    _check_n_boot(n_boot)
    columns, y = _columns(task_type, y_true, scores, y_val, scores_val)
    point, point_classes = columns.values_by_class(np.ones((1, columns.n)))
    resamples = draw_resamples(strata(task_type, y), n_boot, np.random.default_rng(seed))
    [(boot, boot_classes)] = _distributions([columns], resamples.chunks())
    metrics = {metric: _metric_ci(point[metric][0], boot[metric]) for metric in columns.metric_ids()}
    return Evaluation(metrics, _class_metrics(columns, y, point_classes, boot_classes))


def point_estimate(metric: str, task_type: str, y_true: npt.ArrayLike, scores: npt.ArrayLike, *,
                   y_val: npt.ArrayLike | None = None, scores_val: npt.ArrayLike | None = None) -> float:
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


def infer_task_type(metric: str, y_true: npt.ArrayLike, scores: npt.ArrayLike) -> str:
    """The task type implied by a metric and array shapes (multilabel: 2-D labels)."""
    if "regression" in METRICS.get(metric).task_types:
        return "regression"
    if np.ndim(y_true) == 2:
        return "multilabel"
    return "multiclass" if np.ndim(scores) == 2 else "binary"


def paired_bootstrap(metric: str, y_true: npt.ArrayLike, scores_a: npt.ArrayLike, scores_b: npt.ArrayLike, *,
                     n_boot: int = 1000, seed: int = 0, task_type: str | None = None,
                     y_val: npt.ArrayLike | None = None, scores_val_a: npt.ArrayLike | None = None,
                     scores_val_b: npt.ArrayLike | None = None) -> PairedComparison:
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
    if task_type == "multiclass" and col_a.classification()[0].shape != col_b.classification()[0].shape:
        raise DataError("the two models' scores have different numbers of classes", "scores_b")
    rng = np.random.default_rng(seed)
    ones = np.ones((1, col_a.n))
    diff = float(col_a.values(ones, [metric])[metric][0] - col_b.values(ones, [metric])[metric][0])
    resamples = draw_resamples(strata(task_type, y), n_boot, rng)
    (boot_a, _), (boot_b, _) = _distributions([col_a, col_b], resamples.chunks(), [metric])
    boot = boot_a[metric] - boot_b[metric]
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


def _point(m: MetricCI | float) -> float:
    return m.value if isinstance(m, MetricCI) else float(m)


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
        vals = np.array([_point(r[metric]) for r in results])
        out[metric] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else math.nan)
    return out
