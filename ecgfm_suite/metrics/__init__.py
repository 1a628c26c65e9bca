"""Metrics of probe scores on test records: point values, stratified-bootstrap CIs, comparisons.

``METRICS`` says which way each metric is better and its valid range; ``evaluate`` returns
one ``MetricCI`` per metric (``evaluate_classes`` adds each class's AUROC/AUPRC); ``paired_bootstrap``
compares two models on the same records.
"""

from .arrays import check_scores, check_targets
from .bootstrap import count_matrix, draw_indices, strata
from .evaluation import (
    PER_CLASS_METRICS,
    ClassMetrics,
    Evaluation,
    MetricCI,
    PairedComparison,
    aggregate_seeds,
    class_positives,
    evaluate,
    evaluate_classes,
    infer_task_type,
    paired_bootstrap,
    point_estimate,
)
from .table import MAIN_METRIC, METRICS, TASK_TYPES, MetricSpec, check_task_type, metrics_for
from .thresholds import tune_thresholds

__all__ = [
    "MAIN_METRIC", "METRICS", "PER_CLASS_METRICS", "TASK_TYPES", "ClassMetrics", "Evaluation", "MetricCI",
    "MetricSpec", "PairedComparison", "aggregate_seeds", "check_scores", "check_targets", "check_task_type",
    "class_positives", "count_matrix", "draw_indices", "evaluate", "evaluate_classes", "infer_task_type",
    "metrics_for", "paired_bootstrap", "point_estimate", "strata", "tune_thresholds",
]
