"""Metrics of probe scores on test records: point values, stratified-bootstrap CIs, comparisons.

``METRICS`` says which way each metric is better and its valid range; ``evaluate`` returns
one ``MetricCI`` per metric; ``paired_bootstrap`` compares two models on the same records.
"""

from .arrays import check_scores, check_targets
from .bootstrap import count_matrix, draw_indices, strata
from .evaluation import (
    MetricCI, PairedComparison, aggregate_seeds, evaluate, infer_task_type, paired_bootstrap, point_estimate,
)
from .table import MAIN_METRIC, METRICS, TASK_TYPES, MetricSpec, check_task_type, metrics_for
from .thresholds import tune_thresholds

__all__ = [
    "MAIN_METRIC", "METRICS", "TASK_TYPES", "MetricCI", "MetricSpec", "PairedComparison", "aggregate_seeds",
    "check_scores", "check_targets", "check_task_type", "count_matrix", "draw_indices", "evaluate",
    "infer_task_type", "metrics_for", "paired_bootstrap", "point_estimate", "strata", "tune_thresholds",
]
