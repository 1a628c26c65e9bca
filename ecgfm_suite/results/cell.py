"""CellResult: what one benchmark cell produced, versioned so stored runs stay readable."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .. import __version__
from ..errors import SpecError

SCHEMA_VERSION = 1


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
    exclusions: dict[str, int] = field(default_factory=dict)
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
        for name in ("seeds", "classes", "probe_params", "pretraining_overlap"):
            if name in d:
                d[name] = tuple(d[name])
        return cls(**d)
