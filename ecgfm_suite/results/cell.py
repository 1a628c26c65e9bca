"""Cells: ``CellSpec``, the (model, task, scarcity) unit of the benchmark, and ``CellResult``, what one cell
produced, versioned so stored runs stay readable."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .. import __version__
from ..errors import SpecError

#: 2: ``excluded_records`` (each record the cell's datasets left out, with file and reason);
#: 3: ``per_class`` (each class's AUROC/AUPRC and prevalences); 1 and 2 are still read (``per_class`` empty)
SCHEMA_VERSION = 3

#: matched with ``fullmatch``: ``$`` alone also matches before a trailing newline
_PART = re.compile(r"[a-z0-9_.]+")


def is_id_part(value: object) -> bool:
    """A valid model, task or scarcity id: the parts of a cell id."""
    return isinstance(value, str) and _PART.fullmatch(value) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class CellSpec:
    model: str
    task: str
    scarcity: str

    def __post_init__(self) -> None:
        for name in ("model", "task", "scarcity"):
            value = getattr(self, name)
            if not is_id_part(value):
                raise SpecError(f"cell {name} {value!r} must match [a-z0-9_.]+ (it is part of the cell id)")

    @property
    def id(self) -> str:
        """``{model}-{task}-{scarcity}``: the pytest id, results key, baseline key and report row."""
        return f"{self.model}-{self.task}-{self.scarcity}"

    @classmethod
    def from_id(cls, cell_id: str) -> CellSpec:
        parts = cell_id.split("-")
        if len(parts) != 3:
            raise SpecError(f"cell id {cell_id!r} is not model-task-scarcity")
        return cls(model=parts[0], task=parts[1], scarcity=parts[2])


def exclusion_counts(without_embedding: int, excluded: Sequence[Mapping[str, str]]) -> dict[str, int]:
    """A cell's ``exclusions``: its task's records without an embedding, and the records its datasets left out
    (``excluded``, rows of ``excluded_records``) in all, at indexing and while preparing the model's input."""
    stages = Counter(e["stage"] for e in excluded)
    return {"records_without_embedding": int(without_embedding), "dataset_exclusions": len(excluded),
            "index_exclusions": stages["index"], "prepare_exclusions": stages["prepare"]}


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSummary:
    """One metric of a cell: point value over the seed-averaged run, bootstrap CI and SE, seed spread."""

    value: float
    ci_low: float
    ci_high: float
    se: float
    seed_mean: float
    seed_std: float
    per_seed: tuple[float, ...]

    def is_finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.value, self.ci_low, self.ci_high))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricSummary:
        return cls(**{**d, "per_seed": tuple(d["per_seed"])})

    @classmethod
    def over_seeds(cls, per_seed: Sequence[Any]) -> MetricSummary:
        """One metric's estimate per seed (``metrics.MetricCI``: value, CI, SE) → its summary.

        ``value`` is the mean over seeds; the CI and SE are the per-seed stratified-bootstrap CIs (test-set
        sampling uncertainty) averaged over seeds; ``seed_std`` reports the training-subset variability. One
        rule for the macro metrics and the per-class ones, so the two read the same way.
        """
        values = np.array([m.value for m in per_seed], dtype=float)
        return cls(
            value=float(values.mean()),
            ci_low=float(np.mean([m.ci_low for m in per_seed])),
            ci_high=float(np.mean([m.ci_high for m in per_seed])),
            se=float(np.mean([m.se for m in per_seed])),
            seed_mean=float(values.mean()),
            seed_std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            per_seed=tuple(float(v) for v in values),
        )


def summary_columns(name: str, m: MetricSummary | None) -> dict[str, float | None]:
    """A metric as flat table columns ``name``, ``name_ci_low``, ``name_ci_high``, ``name_seed_std`` (all None
    where it is undefined): one layout for ``results.csv`` and the report's tables."""
    values = (None,) * 4 if m is None else (m.value, m.ci_low, m.ci_high, m.seed_std)
    return dict(zip((name, f"{name}_ci_low", f"{name}_ci_high", f"{name}_seed_std"), values, strict=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassSummary:
    """One class of a multiclass or multilabel cell's headline probe: what its macro metrics average.

    A macro AUROC hides which classes a model gets right; per class, the same summary as the macro
    (seed mean, CI averaged over seeds, seed spread) beside the class's prevalence tells a rare class
    measured on few positives from a common one.
    """

    label: str
    #: positives / records in the seed's training subset (its scarcity level), averaged over the seeds
    train_prevalence: float
    #: positives / records in the test split (the same records for every seed)
    test_prevalence: float
    n_test_positive: int
    #: ``metrics.PER_CLASS_METRICS`` → summary; every value None where the class is undefined
    metrics: dict[str, MetricSummary | None]
    #: why the metrics are undefined (no positive or no negative test record); None where they are defined
    undefined: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClassSummary:
        metrics = {k: None if v is None else MetricSummary.from_dict(v) for k, v in d["metrics"].items()}
        return cls(**{**d, "metrics": metrics})


def summarise_classes(labels: Sequence[str], per_seed: Sequence[Sequence[Any]],
                      train_prevalence: Sequence[Sequence[float]]) -> tuple[ClassSummary, ...]:
    """Each class's summary over seeds, from each seed's ``metrics.ClassMetrics`` (one per class, in class
    order; () for binary and regression cells, which get no per-class block) and training-subset prevalence."""
    from ..metrics import PER_CLASS_METRICS

    if not per_seed or not per_seed[0]:
        return ()
    out = []
    for k, label in enumerate(labels):
        seeds = [classes[k] for classes in per_seed]
        first = seeds[0]  # the test split is the seeds' common one: a class is undefined in all of them or none
        metrics = {m: None if first.undefined else MetricSummary.over_seeds([s.metrics[m] for s in seeds])
                   for m in PER_CLASS_METRICS}
        out.append(ClassSummary(label=str(label), train_prevalence=float(np.mean([p[k] for p in train_prevalence])),
                                test_prevalence=float(first.prevalence), n_test_positive=int(first.n_positive),
                                metrics=metrics, undefined=first.undefined))
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class CellResult:
    cell_id: str
    model: str
    checkpoint_sha256: str | None
    random_init: bool
    task: str
    task_type: str
    dataset_versions: dict[str, str]
    #: dataset versions + sha256 of the task's ordered record keys (which records the cell saw)
    task_version: str = ""
    preprocessing: dict[str, Any]
    scarcity: str
    seeds: tuple[int, ...]
    probe: str
    probe_params: tuple[dict[str, Any], ...]
    n_train: int
    n_val: int
    n_test: int
    classes: tuple[str, ...]
    main_metric: str
    metrics: dict[str, MetricSummary]
    #: other probes fitted on the same cell: {probe: {metric: MetricSummary}}
    other_probes: dict[str, dict[str, MetricSummary]] = field(default_factory=dict)
    #: the headline probe's metrics per class, in ``classes`` order (multiclass and multilabel cells; () for
    #: binary and regression cells, and for results before schema 3)
    per_class: tuple[ClassSummary, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    #: counts (:func:`exclusion_counts`): test records without an embedding, records the datasets left out
    exclusions: dict[str, int] = field(default_factory=dict)
    #: the records the cell's datasets left out: ``{"dataset", "stage" (index|prepare), "record", "file", "reason"}``
    excluded_records: tuple[dict[str, str], ...] = ()
    pretraining_overlap: tuple[str, ...] = ()
    environment: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    suite_version: str = __version__
    schema_version: int = SCHEMA_VERSION

    @property
    def main(self) -> MetricSummary:
        return self.metrics[self.main_metric]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellResult:
        version = d.get("schema_version")
        if not isinstance(version, int):
            raise SpecError(f"cell result without an integer schema_version: {d.get('cell_id')!r}")
        if version > SCHEMA_VERSION:
            raise SpecError(f"cell result schema {version} is newer than this suite's {SCHEMA_VERSION}; "
                            "upgrade ecgfm-suite")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"cell result {d.get('cell_id')!r} has unknown keys: {', '.join(unknown)}")
        d = dict(d)
        d["metrics"] = {k: MetricSummary.from_dict(v) for k, v in d["metrics"].items()}
        d["other_probes"] = {p: {k: MetricSummary.from_dict(v) for k, v in m.items()}
                             for p, m in d.get("other_probes", {}).items()}
        d["per_class"] = tuple(ClassSummary.from_dict(c) for c in d.get("per_class", ()))
        for name in ("seeds", "classes", "probe_params", "pretraining_overlap", "excluded_records"):
            if name in d:
                d[name] = tuple(d[name])
        return cls(**d)
