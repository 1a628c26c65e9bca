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
The optional ``gate:`` section holds the regression tolerances (see ``gate/regression.py``), the optional
``controls:`` section what a foundation model no better than a control does (``gate/controls.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import SpecError
from ..results.cell import CellResult, CellSpec

if TYPE_CHECKING:  # type-only: the task catalog is imported when a thresholds file names a task
    from ..data.tasks.spec import TaskSpec


@dataclass(frozen=True, slots=True)
class Floors:
    tasks: dict[str, float] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "<none>"

    @classmethod
    def load(cls, path: Path) -> Floors:
        """The floors of ``path`` (none when it does not exist); anything a reader could mistype is a
        one-line :class:`SpecError` naming the file and key, since a mistyped key would silently leave a
        cell without its floor and an impossible floor (2.0 on AUROC) would fail every cell."""
        path = Path(path)
        if not path.exists():
            return cls(source=str(path))
        raw = load_thresholds_yaml(path)
        if raw.get("schema_version") != 1:
            raise SpecError("expected a mapping with schema_version: 1", path)
        # gate: tolerances (regression.py); controls: what a model below a control does (controls.py)
        unknown = set(raw) - {"schema_version", "tasks", "models", "gate", "controls"}
        if unknown:
            raise SpecError(f"unknown keys {sorted(unknown, key=str)} (allowed: schema_version, tasks, models, gate, "
                            "controls)", path)
        tasks = _mapping(raw.get("tasks"), path, "tasks", "task ids to floors")
        models = _mapping(raw.get("models"), path, "models", "model ids to {task: floor}")
        for task, value in tasks.items():
            _floor(value, str(task), path, f"tasks.{task}")
        for model, per_task in models.items():
            for task, value in _mapping(per_task, path, f"models.{model}", "task ids to floors").items():
                if isinstance(value, dict):
                    _task(str(task), path, f"models.{model}.{task}")
                    for level, v in value.items():
                        _level(level, path, f"models.{model}.{task}.{level}")
                        _floor(v, str(task), path, f"models.{model}.{task}.{level}")
                else:
                    _floor(value, str(task), path, f"models.{model}.{task}")
        return cls(tasks=dict(tasks), models={m: dict(v or {}) for m, v in models.items()}, source=str(path))

    def floor_for(self, cell: CellSpec) -> float | None:
        override = self.models.get(cell.model, {}).get(cell.task)
        if isinstance(override, dict):
            if cell.scarcity in override:
                return float(override[cell.scarcity])
        elif override is not None:
            return float(override)
        value = self.tasks.get(cell.task)
        return None if value is None else float(value)


def load_thresholds_yaml(path: Path) -> dict[Any, Any]:
    """``thresholds.yml`` as a mapping; invalid YAML or a repeated key is a one-line SpecError naming the file."""
    from .baselines import StrictLoader, yaml_problem

    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read ({type(exc).__name__}: {exc})", path) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {yaml_problem(exc)}", path) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"expected a mapping, found {type(raw).__name__}", path)
    return raw


def thresholds_section(path: Path, key: str) -> Any:
    """One top-level section of a thresholds file (None when the file or the section is absent)."""
    return load_thresholds_yaml(path).get(key) if Path(path).exists() else None


def section_mapping(section: Any, path: Path | str, name: str, allowed: tuple[str, ...]) -> dict[Any, Any]:
    """A section that must be a mapping of known keys; anything else is a one-line SpecError naming the file."""
    if not isinstance(section, dict):
        raise SpecError(f"{name}: must be a mapping of {', '.join(allowed)}", path)
    unknown = sorted(set(section) - set(allowed), key=str)
    if unknown:
        raise SpecError(f"{name}: unknown keys {unknown} (allowed: {', '.join(allowed)})", path)
    return section


def _mapping(value: Any, path: Path, where: str, what: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{where} must map {what}, got {value!r}", path)
    return value


def _task(task: str, path: Path, where: str) -> TaskSpec:
    """The task spec of a key (SpecError naming the key, with close matches, for an unknown task id)."""
    from ..data.tasks import TASKS

    try:
        return TASKS.get(task)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc.reason}", path) from None


def _level(level: Any, path: Path, where: str) -> None:
    from ..data.scarcity import parse_level

    try:
        parse_level(str(level))
    except SpecError as exc:
        raise SpecError(f"{where}: {exc.reason}", path) from None


def _floor(value: Any, task: str, path: Path, where: str) -> None:
    """A floor must be a finite number within the range of the task's main metric."""
    from ..metrics import METRICS

    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise SpecError(f"{where} must be a finite number, got {value!r}", path)
    metric = _task(task, path, where).main_metric
    info = METRICS.get(metric)
    if not info.in_range(float(value)):
        raise SpecError(f"{where}: floor {value!r} is outside the range of {task}'s main metric {metric} "
                        f"[{info.low:g}, {info.high:g}]", path)


def check_cell(result: CellResult, floor: float | None) -> list[str]:
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
