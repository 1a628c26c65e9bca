"""Absolute floors of a cell's main metric, from ``benchmarks/thresholds.yml``.

File format (schema 1)::

    schema_version: 1
    tasks:              # default floor of the task's main metric
      ludb_sex: 0.6
    models:             # overrides per model, per task, optionally per scarcity
      random_cnn:
        ludb_sex: 0.55
        ptbxl_superdiag: {frac10: 0.6, frac100: 0.65}

For a lower-is-better metric (MAE) the "floor" is a ceiling. A cell with no floor passes and records.
The optional ``gate:`` section holds the regression tolerances (see ``gate/regression.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import SpecError
from ..plan import CellSpec


@dataclass(frozen=True, slots=True)
class Floors:
    tasks: dict[str, float] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "<none>"

    @classmethod
    def load(cls, path: Path) -> Floors:
        path = Path(path)
        if not path.exists():
            return cls(source=str(path))
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SpecError(f"not valid YAML: {exc}", path) from None
        if not isinstance(raw, dict) or raw.get("schema_version") != 1:
            raise SpecError("expected a mapping with schema_version: 1", path)
        unknown = set(raw) - {"schema_version", "tasks", "models", "gate"}  # gate: tolerances (regression.py)
        if unknown:
            raise SpecError(f"unknown keys {sorted(unknown)}", path)
        tasks = raw.get("tasks") or {}
        models = raw.get("models") or {}
        for task, value in tasks.items():
            _number(value, path, f"tasks.{task}")
        for model, per_task in models.items():
            if not isinstance(per_task, dict):
                raise SpecError(f"models.{model} must map task ids to floors", path)
            for task, value in per_task.items():
                if isinstance(value, dict):
                    for level, v in value.items():
                        _number(v, path, f"models.{model}.{task}.{level}")
                else:
                    _number(value, path, f"models.{model}.{task}")
        return cls(tasks=dict(tasks), models=dict(models), source=str(path))

    def floor_for(self, cell: CellSpec) -> float | None:
        override = self.models.get(cell.model, {}).get(cell.task)
        if isinstance(override, dict):
            if cell.scarcity in override:
                return float(override[cell.scarcity])
        elif override is not None:
            return float(override)
        value = self.tasks.get(cell.task)
        return None if value is None else float(value)


def _number(value: Any, path: Path, where: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise SpecError(f"{where} must be a finite number, got {value!r}", path)


def check_cell(result: Any, floor: float | None) -> list[str]:
    """Failure messages for a cell result: non-finite or out-of-range metrics, main metric below floor."""
    from ..metrics import METRICS

    failures = []
    for name, m in result.metrics.items():
        info = METRICS.get(name)
        if not m.is_finite():
            failures.append(f"{name} is not finite: {m.value} [{m.ci_low}, {m.ci_high}]")
            continue
        if not info.in_range(m.value):
            failures.append(f"{name} = {m.value:.4f} outside its range [{info.low}, {info.high}]")
    if floor is not None:
        main = result.main
        info = METRICS.get(result.main_metric)
        if info.better(floor, main.value):
            relation = "below the floor" if info.higher_is_better else "above the ceiling"
            failures.append(
                f"{result.main_metric} = {main.value:.4f} (95% CI {main.ci_low:.4f}–{main.ci_high:.4f}) is "
                f"{relation} {floor:.4f} for cell {result.cell_id}"
            )
    return failures
