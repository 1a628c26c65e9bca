"""Regression decision of one cell against its baseline entry, and the tolerances it uses.

A cell regresses when its main metric is worse than the baseline, in the metric's better-direction,
by more than ``max(abs_tol, z × sqrt(se_new² + se_base²))``; a gain beyond the same tolerance passes
and marks the baseline stale. A cell is compared with the entry measured on its own data (dataset
versions and test records, :func:`decide`); with none, it passes as *no baseline for this data*, unless
the gate is strict (the user named the baselines to gate against), where it is *incomparable* and fails
like a regression. A different main metric is always incomparable.

Tolerances live in the ``gate:`` section of ``benchmarks/thresholds.yml``::

    gate:
      abs_tol: 0.01        # default, in the main metric's units (AUROC)
      z: 1.96              # default
      tasks:               # per-task overrides of either
        ludb_age: {abs_tol: 0.5}   # MAE in years
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError
from .baselines import BaselineEntry, match_entry

DEFAULT_ABS_TOL = 0.01
DEFAULT_Z = 1.96
#: how a user asks for a strict gate (named in messages)
STRICT_HINT = "baselines dir named with --ecgfm-baselines-dir, or --ecgfm-strict-baselines"
_SHORT = 12  # hex digits of a sha256 shown in messages


@dataclass(frozen=True, slots=True, kw_only=True)
class Tolerance:
    abs_tol: float = DEFAULT_ABS_TOL
    z: float = DEFAULT_Z

    def combined_se(self, se_new: float, se_base: float) -> float:
        return math.hypot(se_new, se_base)

    def allowed(self, se_new: float, se_base: float) -> float:
        """The largest change in the worse direction that still passes."""
        return max(self.abs_tol, self.z * self.combined_se(se_new, se_base))


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Default tolerance and per-task overrides, from the ``gate:`` section of thresholds.yml."""

    default: Tolerance = Tolerance()
    tasks: dict[str, Tolerance] = field(default_factory=dict)
    source: str = "<defaults>"

    def for_task(self, task: str) -> Tolerance:
        return self.tasks.get(task, self.default)

    @classmethod
    def load(cls, path: Path) -> GateConfig:
        """The ``gate:`` section of a thresholds file (defaults when the file or the section is absent)."""
        from .floors import thresholds_section

        return cls.from_mapping(thresholds_section(Path(path), "gate"), path)

    @classmethod
    def from_mapping(cls, section: Any, path: Path | str = "<gate>") -> GateConfig:
        from .floors import section_mapping

        if section is None:
            return cls(source=str(path))
        section = section_mapping(section, path, "gate", ("abs_tol", "z", "tasks"))
        default = _tolerance(section, Tolerance(), "gate", path)
        tasks_raw = section.get("tasks") or {}
        if not isinstance(tasks_raw, dict):
            raise SpecError("gate.tasks must map task ids to {abs_tol, z}", path)
        from ..data.tasks import TASKS

        tasks = {}
        for task, override in tasks_raw.items():
            try:
                TASKS.get(str(task))
            except SpecError as exc:
                raise SpecError(f"gate.tasks: {exc.reason}", path) from None
            if not isinstance(override, dict):
                raise SpecError(f"gate.tasks.{task} must be a mapping of abs_tol and/or z", path)
            bad = sorted(set(override) - {"abs_tol", "z"}, key=str)
            if bad:
                raise SpecError(f"gate.tasks.{task}: unknown keys {bad} (allowed: abs_tol, z)", path)
            tasks[str(task)] = _tolerance(override, default, f"gate.tasks.{task}", path)
        return cls(default=default, tasks=tasks, source=str(path))


def _tolerance(raw: Mapping[str, Any], base: Tolerance, where: str, path: Path | str) -> Tolerance:
    values = {"abs_tol": base.abs_tol, "z": base.z}
    for key in values:
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise SpecError(f"{where}.{key} must be a finite number >= 0, got {v!r}", path)
            values[key] = float(v)
    return Tolerance(**values)


class Status(enum.StrEnum):
    PASS = "pass"
    #: better than the baseline beyond the tolerance: passes, the baseline is stale
    IMPROVED = "improved"
    REGRESSED = "regressed"
    #: no baseline entry: passes and records
    NEW = "new"
    #: entries for the cell, none measured on this data (dataset versions, test records): passes and records
    NO_BASELINE_FOR_DATA = "no_baseline_for_data"
    #: a different metric, or (strict gate) no entry for this data: refusing to compare fails the cell
    INCOMPARABLE = "incomparable"


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    cell_id: str
    metric: str
    status: Status
    new: BaselineEntry
    base: BaselineEntry | None = None
    tolerance: Tolerance | None = None
    #: new − base (raw, not direction-adjusted); None without a comparable baseline
    change: float | None = None
    #: the tolerance in effect: max(abs_tol, z × combined SE)
    allowed: float | None = None
    #: differences named in messages (checkpoint, preprocessing, suite version, seeds, test-set size)
    notes: tuple[str, ...] = ()
    #: why the cell could not be compared
    problems: tuple[str, ...] = ()
    #: entries of the cell in the baseline (for NO_BASELINE_FOR_DATA and strict INCOMPARABLE: none for this data)
    n_entries: int = 0

    @property
    def failed(self) -> bool:
        return self.status in (Status.REGRESSED, Status.INCOMPARABLE)

    def message(self) -> str:
        """One paragraph a reviewer can act on, naming the numbers and every difference in provenance."""
        n, b = self.new, self.base
        if self.status is Status.NEW:
            text = f"{self.cell_id}: no baseline entry; {self.metric} = {_ci(n)}"
        elif self.status is Status.NO_BASELINE_FOR_DATA:
            text = (f"{self.cell_id}: no baseline for this data ({n.data_label()}; {self.n_entries} entries for "
                    f"other data: {'; '.join(self.problems)}); {self.metric} = {_ci(n)}")
        elif self.status is Status.INCOMPARABLE and self.n_entries:
            text = (f"{self.cell_id}: not compared with the baseline: {'; '.join(self.problems)}. None of its "
                    f"{self.n_entries} entries was measured on this data ({n.data_label()}), and the gate is "
                    f"strict ({STRICT_HINT}): record an entry for this data with --ecgfm-update-baselines=new-only, "
                    "or gate against baselines of this data")
        elif self.status is Status.INCOMPARABLE:
            text = (f"{self.cell_id}: not compared with the baseline: {'; '.join(self.problems)}. Accept the "
                    "change with --ecgfm-update-baselines")
        else:
            assert b is not None and self.tolerance is not None and self.allowed is not None
            worse = "worse" if self.status is Status.REGRESSED else "better" if self.status is Status.IMPROVED \
                else "within tolerance"
            text = (f"{self.cell_id}: {self.metric} {_ci(n)} vs baseline {_ci(b)}: change {self.change:+.4f} "
                    f"({worse}; tolerance {self.allowed:.4f} = max(abs_tol {self.tolerance.abs_tol:g}, "
                    f"z {self.tolerance.z:g} × combined SE {self.tolerance.combined_se(n.se, b.se):.4f}))")
            if self.status is Status.REGRESSED:
                text = f"regression: {text}"
            elif self.status is Status.IMPROVED:
                text += "; the baseline is stale (accept with --ecgfm-update-baselines)"
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text


def _ci(e: BaselineEntry) -> str:
    return f"{e.value:.4f} (95% CI {e.ci_low:.4f}–{e.ci_high:.4f}, SE {e.se:.4f})"


def _sha(value: str | None) -> str:
    return "none (random/control)" if value is None else value[:_SHORT]


def provenance_notes(new: BaselineEntry, base: BaselineEntry) -> tuple[str, ...]:
    """Differences that do not prevent a comparison but must be named when it fails."""
    notes = []
    if new.checkpoint_sha256 != base.checkpoint_sha256:
        notes.append(f"checkpoint differs from the baseline's (sha256 {_sha(new.checkpoint_sha256)} here, "
                     f"{_sha(base.checkpoint_sha256)} in the baseline)")
    if new.preprocessing_sha256 != base.preprocessing_sha256:
        notes.append(f"preprocessing spec differs from the baseline's (InputSpec sha256 "
                     f"{_sha(new.preprocessing_sha256)} here, {_sha(base.preprocessing_sha256)} in the baseline)")
    if new.suite_version != base.suite_version:
        notes.append(f"suite version {new.suite_version} here, {base.suite_version} in the baseline")
    if new.seeds != base.seeds:
        notes.append(f"seeds {_seeds(new.seeds)} here, {_seeds(base.seeds)} in the baseline")
    if new.n_test != base.n_test:
        notes.append(f"{new.n_test} test records here, {base.n_test} in the baseline")
    return tuple(notes)


def _seeds(seeds: tuple[int, ...]) -> str:
    return ",".join(map(str, seeds))


def comparability_problems(new: BaselineEntry, base: BaselineEntry) -> tuple[str, ...]:
    problems = []
    if not new.is_finite():
        problems.append(f"this run's {new.metric} or its SE is not finite ({new.value}, SE {new.se})")
    if new.metric != base.metric:
        problems.append(f"main metric is {new.metric} here but {base.metric} in the baseline")
    return (*problems, *data_differences(new, base))


def data_differences(new: BaselineEntry, base: BaselineEntry) -> tuple[str, ...]:
    """How the data of two entries differ (datasets, their versions, test records); () when the same."""
    problems = []
    if set(new.dataset_versions) != set(base.dataset_versions):
        problems.append(f"the cell's records come from {'+'.join(sorted(new.dataset_versions))} here but from "
                        f"{'+'.join(sorted(base.dataset_versions))} in the baseline")
    for dataset in sorted(set(new.dataset_versions) & set(base.dataset_versions)):
        here, there = new.dataset_versions[dataset], base.dataset_versions[dataset]
        if here != there:
            problems.append(f"dataset {dataset} is version {here} here but {there} in the baseline")
    if not problems and None not in (new.test_sha256, base.test_sha256) and new.test_sha256 != base.test_sha256:
        problems.append(f"the cell's test records differ from the baseline's ({new.n_test} here, {base.n_test} in "
                        "the baseline; a data subset, split or exclusion change)")
    return tuple(problems)


def decide(new: BaselineEntry, entries: Sequence[BaselineEntry], tolerance: Tolerance, *,
           strict: bool = False) -> Comparison:
    """Gate decision for one cell against its entries in a baseline: compared with the entry measured on the
    same data; with entries for other data only, *no baseline for this data* (passes), or under ``strict``
    *incomparable* (fails) naming how the data differ from the closest entry."""
    if not entries:
        return compare(new, None, tolerance)
    same = match_entry(entries, new)
    if same is not None:
        return compare(new, same, tolerance)
    closest = min(entries, key=lambda e: (len(data_differences(new, e)), e.metric != new.metric))
    differences = data_differences(new, closest) or (
        "this run's test records are unknown and several entries share its dataset versions",)
    if strict:
        return Comparison(cell_id=new.cell_id, metric=new.metric, status=Status.INCOMPARABLE, new=new, base=closest,
                          tolerance=tolerance, notes=provenance_notes(new, closest),
                          problems=comparability_problems(new, closest) or differences, n_entries=len(entries))
    return Comparison(cell_id=new.cell_id, metric=new.metric, status=Status.NO_BASELINE_FOR_DATA, new=new,
                      tolerance=tolerance, problems=differences, n_entries=len(entries))


def compare(new: BaselineEntry, base: BaselineEntry | None, tolerance: Tolerance) -> Comparison:
    """Gate decision for one cell: ``new`` (the candidate) against ``base`` (the accepted entry)."""
    from ..metrics import METRICS

    if base is None:
        return Comparison(cell_id=new.cell_id, metric=new.metric, status=Status.NEW, new=new)
    notes = provenance_notes(new, base)
    problems = comparability_problems(new, base)
    if problems:
        return Comparison(cell_id=new.cell_id, metric=new.metric, status=Status.INCOMPARABLE, new=new, base=base,
                          tolerance=tolerance, notes=notes, problems=problems)
    info = METRICS.get(new.metric)
    change = new.value - base.value
    gain = change if info.higher_is_better else -change
    allowed = tolerance.allowed(new.se, base.se)
    status = Status.REGRESSED if gain < -allowed else Status.IMPROVED if gain > allowed else Status.PASS
    return Comparison(cell_id=new.cell_id, metric=new.metric, status=status, new=new, base=base,
                      tolerance=tolerance, change=change, allowed=allowed, notes=notes)
