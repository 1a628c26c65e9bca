"""The gate of a benchmark session: per-cell verdicts inside the test, baseline files written once at the end.

``Gate.check`` runs in whichever process ran the cell (an xdist worker included) and only reads files.
``Gate.finish`` runs once, on the controller, over the cells that ran in this session (read back from
the shared ``results.jsonl``): it recomputes the same pure decisions, then rewrites ``<model>.yml``
(``--ecgfm-update-baselines``) and ``<model>.obtained.yml`` — so parallel workers never race on a file.
A cell is compared with its entry for the data it ran on; ``strict`` (the user named the baselines to gate
against) makes a cell whose data has no entry fail instead of passing as "no baseline for this data".
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import write_atomic
from ..errors import BaselineError
from ..results.cell import CellResult, CellSpec
from .baselines import (
    OBTAINED_BANNER,
    Baseline,
    BaselineEntry,
    BaselineStore,
    digest_test_records,
)
from .controls import ControlsRule, ControlsVerdict, judge_comparisons, judge_run
from .floors import Floors, check_cell
from .regression import Comparison, GateConfig, Status, decide

UPDATE_MODES = ("all", "new-only")


@dataclass(frozen=True, slots=True, kw_only=True)
class CellVerdict:
    """Floor and regression outcome of one cell; ``failures`` empty means the cell passes."""

    cell_id: str
    floor_failures: tuple[str, ...] = ()
    comparison: Comparison | None = None
    baseline_error: str | None = None
    baseline_path: Path | None = None
    update: str | None = None

    @property
    def failures(self) -> list[str]:
        out = list(self.floor_failures)
        if self.baseline_error is not None:
            out.append(f"baseline unreadable: {self.baseline_error}")
        c = self.comparison
        # --ecgfm-update-baselines (all) accepts the new values: a regression is reported, not failed
        if c is not None and c.failed and self.update != "all":
            out.append(f"{c.message()}\nbaseline file: {self.baseline_path}; if the change is intended, accept it "
                       f"with: pytest benchmarks -k '{self.cell_id}' --ecgfm-update-baselines=all")
        return out

    @property
    def status(self) -> str:
        if self.baseline_error is not None:
            return "error"
        return str(self.comparison.status) if self.comparison is not None else "unchecked"

    def properties(self) -> list[tuple[str, str]]:
        """Gate outcome as JUnit XML properties (``record_property``)."""
        props = [("ecgfm_gate", self.status)]
        c = self.comparison
        if c is not None and c.base is not None:
            b = c.base
            props.append(("ecgfm_gate_baseline",
                          json.dumps({"value": b.value, "ci_low": b.ci_low, "ci_high": b.ci_high, "se": b.se})))
        if c is not None and c.allowed is not None:
            props += [("ecgfm_gate_change", f"{c.change:.6f}"), ("ecgfm_gate_allowed", f"{c.allowed:.6f}")]
        if c is not None and c.new.test_sha256 is not None:
            props.append(("ecgfm_test_records_sha256", c.new.test_sha256))
        if c is not None and (c.notes or c.problems):
            props.append(("ecgfm_gate_notes", "; ".join((*c.problems, *c.notes))))
        if self.baseline_error is not None:
            props.append(("ecgfm_gate_notes", self.baseline_error))
        return props


@dataclass(frozen=True, slots=True, kw_only=True)
class GateSummary:
    """What the gate decided and wrote for a session (terminal lines and ``gate.json``)."""

    update: str | None = None
    #: a cell whose data has no baseline entry failed (True) or passed as "no baseline for this data"
    strict: bool = False
    comparisons: tuple[Comparison, ...] = ()
    #: model → why its baseline could not be read or written (nothing was written for it)
    errors: dict[str, str] = field(default_factory=dict)
    #: baseline files rewritten, and the cells whose entries were added or replaced
    written: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    #: ``<model>.obtained.yml`` files written (cells without a baseline entry) or removed (all accepted)
    obtained: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    #: cell → why its result was not recorded (failed its floor)
    refused: dict[str, str] = field(default_factory=dict)
    #: the foundation models against the controls over the run's stored comparisons (None: not judged here)
    controls: ControlsVerdict | None = None

    def by_status(self, status: Status) -> list[Comparison]:
        return [c for c in self.comparisons if c.status is status]

    def lines(self) -> list[str]:
        out = []
        for model, reason in sorted(self.errors.items()):
            out.append(f"nothing written for {model}: {reason}")
        regressed = self.by_status(Status.REGRESSED)
        if regressed:
            verb = "regressed, accepted by --ecgfm-update-baselines" if self.update == "all" else "REGRESSED"
            out.append(f"{verb} ({len(regressed)}):")
            out += [_change_line(c) for c in regressed]
        incomparable = self.by_status(Status.INCOMPARABLE)
        if incomparable:
            out.append(f"not comparable with the baseline ({len(incomparable)}):")
            out += [f"  {c.cell_id}: {'; '.join(c.problems)}" for c in incomparable]
        improved = self.by_status(Status.IMPROVED)
        if improved and self.update != "all":
            out.append(f"stale baselines, improved beyond tolerance ({len(improved)}; accept with "
                       "--ecgfm-update-baselines):")
            out += [_change_line(c) for c in improved]
        other_data = self.by_status(Status.NO_BASELINE_FOR_DATA)
        if other_data:
            out.append(f"no baseline for this data ({len(other_data)}; passed, results in the obtained file; "
                       "a strict gate fails them):")
            out += [f"  {c.cell_id}: {c.new.data_label()}; {'; '.join(c.problems)}" for c in other_data]
        new = self.by_status(Status.NEW)
        if new and not self.update:
            out.append(f"no baseline entry ({len(new)}): {', '.join(c.cell_id for c in new)}")
        for cell_id, reason in sorted(self.refused.items()):
            out.append(f"not recorded: {cell_id} ({reason})")
        if self.updated:
            out.append(f"baseline entries written ({len(self.updated)}): {', '.join(self.updated)}")
        out += [f"wrote {path}" for path in self.written]
        out += [f"wrote {path} (results without a baseline entry, for review)" for path in self.obtained]
        out += [f"removed {path} (all its entries are in the baseline now)" for path in self.removed]
        passed = len(self.by_status(Status.PASS))
        if passed:
            out.append(f"{passed} cell(s) within tolerance of their baseline")
        if self.controls is not None:
            out += self.controls.lines()
        if self.comparisons:
            out.append(self.counts_line())
        return out

    def counts(self) -> dict[str, int]:
        """Cells compared with a baseline entry for their data, and the other outcomes, by name."""
        n = {status: len(self.by_status(status)) for status in Status}
        return {"compared": n[Status.PASS] + n[Status.IMPROVED] + n[Status.REGRESSED],
                "regressed": n[Status.REGRESSED], "improved": n[Status.IMPROVED], "within_tolerance": n[Status.PASS],
                "no_baseline_for_data": n[Status.NO_BASELINE_FOR_DATA], "no_baseline_entry": n[Status.NEW],
                "not_comparable": n[Status.INCOMPARABLE]}

    def counts_line(self) -> str:
        c = self.counts()
        line = (f"gate: {c['compared']} cell(s) compared with their baseline ({c['regressed']} regressed, "
                f"{c['improved']} improved, {c['within_tolerance']} within tolerance); {c['no_baseline_for_data']} "
                f"without a baseline for their data; {c['no_baseline_entry']} without a baseline entry")
        if c["not_comparable"]:
            line += f"; {c['not_comparable']} not comparable"
        return line + (" (strict gate)" if self.strict else "")

    def to_dict(self) -> dict[str, Any]:
        cells = {}
        for c in self.comparisons:
            cells[c.cell_id] = {
                "status": str(c.status), "metric": c.metric, "value": c.new.value, "se": c.new.se,
                "baseline": None if c.base is None else {"value": c.base.value, "se": c.base.se,
                                                         "ci_low": c.base.ci_low, "ci_high": c.base.ci_high},
                "change": c.change, "allowed": c.allowed, "notes": list(c.notes), "problems": list(c.problems),
                "test_records_sha256": c.new.test_sha256, "data": c.new.data_label(),
            }
        return {"update": self.update, "strict": self.strict, "counts": self.counts(), "cells": cells,
                "errors": self.errors, "written": list(self.written),
                "updated": list(self.updated), "obtained": list(self.obtained), "removed": list(self.removed),
                "refused": self.refused, "controls": None if self.controls is None else self.controls.to_dict()}

    def write(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_dict(), sort_keys=True, indent=1))


def _change_line(c: Comparison) -> str:
    base = c.base.value if c.base is not None else math.nan
    return (f"  {c.cell_id}: {c.metric} {c.new.value:.4f} vs baseline {base:.4f} "
            f"(change {c.change:+.4f}, tolerance {c.allowed:.4f})")


class Gate:
    """Floors (thresholds.yml), tolerances (its ``gate:`` section) and the baselines directory."""

    def __init__(self, *, thresholds: Path, baselines_dir: Path, update: str | None = None,
                 strict: bool = False) -> None:
        """``strict``: the user asked to gate against these baselines (named the directory, or a strict
        gate), so a cell whose data has no entry fails as not comparable instead of passing."""
        if update not in (None, *UPDATE_MODES):
            raise ValueError(f"update must be one of {UPDATE_MODES} or None, got {update!r}")
        self.floors = Floors.load(thresholds)
        self.config = GateConfig.load(thresholds)
        self.controls = ControlsRule.load(thresholds)
        self.store = BaselineStore(baselines_dir)
        self.update = update
        self.strict = strict

    def validate(self, models: Iterable[str]) -> None:
        """Read the baselines of these models now: a broken file is an error before any cell runs."""
        for model in sorted(set(models)):
            self.store.load(model)

    def compare(self, result: CellResult, test_sha256: str | None) -> Comparison:
        """Decision for a result against its committed entry (BaselineError if the file is broken)."""
        baseline = self.store.load(result.model)
        entries = baseline.for_cell(result.cell_id) if baseline is not None else ()
        candidate = BaselineEntry.from_result(result, test_sha256=test_sha256, decimals=None)
        return decide(candidate, entries, self.config.for_task(result.task), strict=self.strict)

    def check(self, cell: CellSpec, result: CellResult, test_keys: Iterable[object] | None = None) -> CellVerdict:
        """Verdict of a cell that just ran, given the keys of the records it was tested on."""
        floor_failures = tuple(check_cell(result, self.floors.floor_for(cell)))
        verdict = CellVerdict(cell_id=cell.id, floor_failures=floor_failures, baseline_path=self.store.path(cell.model),
                              update=self.update)
        sha = None if test_keys is None else digest_test_records(test_keys)
        try:
            return dataclasses.replace(verdict, comparison=self.compare(result, sha))
        except BaselineError as exc:
            return dataclasses.replace(verdict, baseline_error=str(exc))

    def judge_controls(self, kind: str, payload: Mapping[str, Any]) -> ControlsVerdict | None:
        """The ``controls:`` rule on one stored analysis payload: a column comparison's verdict (None for any
        other analysis). The comparison's test records ``.properties()``, and fails (``fail``) or xfails
        (``xfail``) with ``.reason()`` when the verdict says so."""
        return judge_comparisons(self.controls, [payload]) if kind == "comparison" else None

    def with_controls(self, summary: GateSummary, run_path: Path) -> GateSummary:
        """``summary`` with the ``controls:`` rule judged over every comparison stored in the run (at the end of
        the run, once the per-column analyses ran wherever they run)."""
        return dataclasses.replace(summary, controls=judge_run(self.controls, run_path))

    def finish(self, results: Iterable[CellResult], test_shas: Mapping[str, str] | None = None) -> GateSummary:
        """Decisions for the cells that ran; write baselines (update mode) and obtained files.

        ``test_shas``: cell id → digest of its test records, as the cells' verdicts reported them.
        """
        test_shas = test_shas or {}
        per_model: dict[str, list[CellResult]] = defaultdict(list)
        for r in results:
            per_model[r.model].append(r)
        comparisons: list[Comparison] = []
        errors: dict[str, str] = {}
        refused: dict[str, str] = {}
        written, updated, obtained, removed = [], [], [], []
        for model, model_results in sorted(per_model.items()):
            try:
                baseline = self.store.load(model)
            except BaselineError as exc:
                errors[model] = str(exc)
                continue
            accepted = []
            for r in sorted(model_results, key=lambda r: r.cell_id):
                sha = test_shas.get(r.cell_id)
                comparisons.append(self.compare(r, sha))
                if check_cell(r, self.floors.floor_for(CellSpec.from_id(r.cell_id))):
                    refused[r.cell_id] = "failed its floor or has an invalid metric"
                    continue
                entry = BaselineEntry.from_result(r, test_sha256=sha)
                if not entry.is_finite():
                    refused[r.cell_id] = "its main metric or SE is not finite"
                    continue
                accepted.append(entry)
            current = baseline or Baseline(model=model, path=self.store.path(model))
            if self.update:
                new = current.with_entries(accepted, only_missing=self.update == "new-only")
                changed = sorted(c for c, e in new.entries.items() if current.for_cell(c) != e)
                if changed:
                    new.write(self.store.path(model))
                    written.append(str(self.store.path(model)))
                    updated += changed
                current = new
            action = self._obtained(model, current, [e for e in accepted if current.match(e) is None])
            if action == "written":
                obtained.append(str(self.store.obtained_path(model)))
            elif action == "removed":
                removed.append(str(self.store.obtained_path(model)))
        return GateSummary(update=self.update, strict=self.strict, comparisons=tuple(comparisons), errors=errors,
                           written=tuple(written), updated=tuple(updated), obtained=tuple(obtained),
                           removed=tuple(removed), refused=refused)

    def _obtained(self, model: str, baseline: Baseline, fresh: list[BaselineEntry]) -> str | None:
        """Keep ``<model>.obtained.yml`` = results still missing from the baseline (earlier runs' too)."""
        path = self.store.obtained_path(model)
        try:
            previous = self.store.load_obtained(model)
        except BaselineError:
            previous = None  # a scratch file for review: a broken one is replaced, never merged
        pending = (previous or Baseline(model=model, path=path)).with_entries(fresh).without_matches(baseline)
        if pending.entries:
            pending.write(path, OBTAINED_BANNER)
            return "written"
        if path.exists():
            path.unlink()
            return "removed"
        return None
