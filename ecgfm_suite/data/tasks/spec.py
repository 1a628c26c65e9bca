"""TaskSpec: frozen declaration of one benchmark task; its labeler is a lazy ``"module:attr"`` string.

Imports only the stdlib (and the dataset registry, itself stdlib-only), so listing tasks is instant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import SpecError
from ...registry import Registry
from ..datasets import DATASETS

_ID = re.compile(r"[a-z0-9_]+")
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")

TASK_TYPES: tuple[str, ...] = ("binary", "multiclass", "multilabel", "regression")
SPLIT_KINDS: tuple[str, ...] = ("official", "stratified")
#: metrics a task may name as its main metric (computed by the metrics layer)
CLASSIFICATION_METRICS: tuple[str, ...] = ("auroc", "auprc", "balanced_accuracy", "f1_macro")
REGRESSION_METRICS: tuple[str, ...] = ("mae", "rmse", "r2")
#: datasets that ship an official, patient-wise split (PTB-XL ``strat_fold``)
OFFICIAL_SPLIT_DATASETS: tuple[str, ...] = ("ptbxl",)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    id: str
    name: str
    #: dataset ids pooled by the task (several for the harmonised cross-continental tasks)
    datasets: tuple[str, ...]
    type: str
    #: declared label set; class 1 of a binary task is the positive class; empty for regression
    classes: tuple[str, ...]
    main_metric: str
    #: "module:attr" of ``labeler(index: DatasetIndex) -> pd.Series`` (label or ``Unlabelled`` per row)
    labeler: str
    #: records a class needs in each of train/val/test to be evaluated (regression: records per split)
    min_positives: int = 2
    regions: tuple[str, ...] = ()
    #: "official" (PTB-XL strat_fold 1-8/9/10) or "stratified" (seeded, group-level, 60/20/20)
    split: str = "stratified"
    description: str = ""

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> SpecError:
            return SpecError(f"task {self.id!r}: field {field!r} {why}")

        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            raise bad("id", "must match [a-z0-9_]+")
        if not self.name:
            raise bad("name", "must not be empty")
        if not isinstance(self.datasets, tuple) or not self.datasets:
            raise bad("datasets", "must be a non-empty tuple of dataset ids")
        unknown = [d for d in self.datasets if d not in DATASETS]
        if unknown or len(set(self.datasets)) != len(self.datasets):
            raise bad("datasets", f"has unknown or repeated ids {self.datasets!r} (known: {', '.join(DATASETS)})")
        if self.type not in TASK_TYPES:
            raise bad("type", f"must be one of {', '.join(TASK_TYPES)}, got {self.type!r}")
        if not isinstance(self.classes, tuple) or len(set(self.classes)) != len(self.classes):
            raise bad("classes", "must be a tuple of distinct class names")
        if any(not isinstance(c, str) or not c for c in self.classes):
            raise bad("classes", "must hold non-empty strings")
        need = {"binary": (2, 2), "multiclass": (3, None), "multilabel": (1, None), "regression": (0, 0)}[self.type]
        lo, hi = need
        if len(self.classes) < lo or (hi is not None and len(self.classes) > hi):
            span = f"exactly {lo}" if lo == hi else f"at least {lo}"
            raise bad("classes", f"must have {span} classes for a {self.type} task, got {len(self.classes)}")
        allowed = REGRESSION_METRICS if self.type == "regression" else CLASSIFICATION_METRICS
        if self.main_metric not in allowed:
            raise bad("main_metric", f"must be one of {', '.join(allowed)} for a {self.type} task, "
                                     f"got {self.main_metric!r}")
        if not isinstance(self.labeler, str) or not _TARGET.fullmatch(self.labeler):
            raise bad("labeler", f"must be 'module:attr', got {self.labeler!r}")
        if not isinstance(self.min_positives, int) or isinstance(self.min_positives, bool) or self.min_positives < 1:
            raise bad("min_positives", f"must be an int >= 1, got {self.min_positives!r}")
        if not isinstance(self.regions, tuple):
            raise bad("regions", "must be a tuple")
        if self.split not in SPLIT_KINDS:
            raise bad("split", f"must be one of {', '.join(SPLIT_KINDS)}, got {self.split!r}")
        if self.split == "official" and (len(self.datasets) != 1 or self.datasets[0] not in OFFICIAL_SPLIT_DATASETS):
            raise bad("split", f"'official' needs exactly one dataset with an official split "
                               f"({', '.join(OFFICIAL_SPLIT_DATASETS)}), got {self.datasets!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "datasets": list(self.datasets), "type": self.type,
            "classes": list(self.classes), "main_metric": self.main_metric, "labeler": self.labeler,
            "min_positives": self.min_positives, "regions": list(self.regions), "split": self.split,
            "description": self.description,
        }


TASKS: Registry[TaskSpec] = Registry("task")


def register(spec: TaskSpec) -> TaskSpec:
    return TASKS.register(spec.id, spec)
