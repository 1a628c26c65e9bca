"""Cells: ``CellSpec``, the (model, task, scarcity) unit of the benchmark, and ``CellResult``, what one cell
produced, versioned so stored runs stay readable."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .. import __version__
from ..errors import SpecError

#: 2: ``excluded_records`` (each record the cell's datasets left out, with file and reason); 1 is still read
SCHEMA_VERSION = 2

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
            raise SpecError(f"cell result schema {version} is newer than this suite's {SCHEMA_VERSION}; upgrade ecgfm-suite")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"cell result {d.get('cell_id')!r} has unknown keys: {', '.join(unknown)}")
        d = dict(d)
        d["metrics"] = {k: MetricSummary.from_dict(v) for k, v in d["metrics"].items()}
        d["other_probes"] = {p: {k: MetricSummary.from_dict(v) for k, v in m.items()}
                             for p, m in d.get("other_probes", {}).items()}
        for name in ("seeds", "classes", "probe_params", "pretraining_overlap", "excluded_records"):
            if name in d:
                d[name] = tuple(d[name])
        return cls(**d)
