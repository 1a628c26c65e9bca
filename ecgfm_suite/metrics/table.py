"""The metric table: what each metric means, which way is better and its valid range.

Cells assert values against ``low``/``high``; gating reads ``higher_is_better`` to decide
whether a drop or a rise is a regression. Task types are fixed here because metrics
are the first layer that branches on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import SpecError
from ..registry import Registry

TASK_TYPES = ("binary", "multiclass", "multilabel", "regression")
CLASSIFICATION = ("binary", "multiclass", "multilabel")


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSpec:
    id: str
    higher_is_better: bool
    #: valid closed range of the metric's value
    low: float
    high: float
    task_types: tuple[str, ...]
    #: binary/multilabel predictions need a decision threshold, tuned on validation scores
    thresholded: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.low < self.high:
            raise SpecError(f"metric {self.id}: low {self.low} must be < high {self.high}")
        unknown = set(self.task_types) - set(TASK_TYPES)
        if unknown:
            raise SpecError(f"metric {self.id}: unknown task types {sorted(unknown)}")

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"

    def in_range(self, value: float) -> bool:
        return math.isfinite(value) and self.low <= value <= self.high

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b


_SPECS = (
    MetricSpec(id="auroc", higher_is_better=True, low=0.0, high=1.0, task_types=CLASSIFICATION,
               description="area under the ROC curve; macro one-vs-rest mean over classes present in the "
                           "test set (binary: of the positive class)"),
    MetricSpec(id="auprc", higher_is_better=True, low=0.0, high=1.0, task_types=CLASSIFICATION,
               description="average precision (step-wise area under the precision-recall curve, as "
                           "scikit-learn); macro over classes present in the test set"),
    MetricSpec(id="f1", higher_is_better=True, low=0.0, high=1.0, task_types=CLASSIFICATION, thresholded=True,
               description="F1; binary: of the positive class at the validation-tuned threshold; multilabel: "
                           "macro over classes, each at its own validation-tuned threshold; multiclass: macro "
                           "over classes present in the test set, predictions by argmax"),
    MetricSpec(id="balanced_accuracy", higher_is_better=True, low=0.0, high=1.0, task_types=CLASSIFICATION,
               thresholded=True,
               description="binary: (sensitivity + specificity) / 2 at the threshold maximising it on "
                           "validation; multiclass: mean recall over test classes (argmax); multilabel: macro "
                           "mean of per-class balanced accuracy"),
    MetricSpec(id="mae", higher_is_better=False, low=0.0, high=math.inf, task_types=("regression",),
               description="mean absolute error, in the target's unit"),
    MetricSpec(id="r2", higher_is_better=True, low=-math.inf, high=1.0, task_types=("regression",),
               description="coefficient of determination on the test set"),
)
METRICS: Registry[MetricSpec] = Registry("metric")
for _spec in _SPECS:
    METRICS.register(_spec.id, _spec)

#: the metric that selects probe hyper-parameters, ranks models and is gated by default
MAIN_METRIC = MappingProxyType(
    {"binary": "auroc", "multiclass": "auroc", "multilabel": "auroc", "regression": "mae"}
)


def check_task_type(task_type: str) -> str:
    if task_type not in TASK_TYPES:
        raise SpecError(f"unknown task type {task_type!r} (known: {', '.join(TASK_TYPES)})", "task_type")
    return task_type


def metrics_for(task_type: str) -> tuple[str, ...]:
    """Metric ids that ``evaluate`` reports for a task type, in table order."""
    check_task_type(task_type)
    return tuple(spec.id for spec in _SPECS if task_type in spec.task_types)
