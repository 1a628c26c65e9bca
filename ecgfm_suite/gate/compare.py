"""Gate stored results without re-running: ``ecgfm-suite compare RUN_A RUN_B``.

Each side is a run directory, a ``results.jsonl`` file or a baseline file (``<model>.yml``); cells are
matched by id and B (the candidate) is judged against A (the reference) with the same decision as a
strict in-test gate (:func:`ecgfm_suite.gate.regression.decide`): naming the reference is asking to gate
against it, so a cell measured on other data than every entry of A is not comparable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..results.cell import CellSpec
from .baselines import Baseline, BaselineEntry
from .regression import Comparison, GateConfig, Status, decide


def load_entries(path: Path) -> dict[str, tuple[BaselineEntry, ...]]:
    """Cell id → its entries (a run: one; a baseline file: one per data) from a run directory, a results.jsonl
    or a baseline YAML file."""
    from ..results import RunDir

    path = Path(path)
    if path.is_file() and path.suffix in (".yml", ".yaml"):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read ({type(exc).__name__}: {exc})", path) from None
        return dict(Baseline.parse(text, path).entries)
    if path.is_dir() and not (path / "results.jsonl").is_file():
        raise SpecError("no results.jsonl in this directory (expected a run directory reports/<run-id>)", path)
    if not path.exists():
        raise SpecError("no such run directory, results file or baseline file", path)
    if path.is_file() and path.name != "results.jsonl":
        raise SpecError("expected a run directory, its results.jsonl or a baseline <model>.yml", path)
    run = RunDir.open(path)
    try:
        results = run.results()
    except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError; SpecError too
        raise SpecError(f"unreadable results ({type(exc).__name__}: {exc})", run.results_path) from None
    shas = _test_shas(run.path / "gate.json")
    return {r.cell_id: (BaselineEntry.from_result(r, test_sha256=shas.get(r.cell_id), decimals=None),)
            for r in results}


def _test_shas(path: Path) -> dict[str, str]:
    """Cell → test-record digest from a run's ``gate.json`` (absent: none known, test sets not compared)."""
    if not path.exists():
        return {}
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return {c: v["test_records_sha256"] for c, v in cells.items() if v.get("test_records_sha256")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SpecError(f"unreadable gate summary ({type(exc).__name__}: {exc})", path) from None


@dataclass(frozen=True, slots=True)
class RunComparison:
    comparisons: tuple[Comparison, ...]
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]

    @property
    def failed(self) -> bool:
        return any(c.failed for c in self.comparisons)

    def count(self, status: Status) -> int:
        return sum(c.status is status for c in self.comparisons)

    def table(self) -> str:
        header = ["cell", "metric", "A [95% CI]", "B [95% CI]", "change", "tolerance", "status"]
        rows = [header]
        for c in self.comparisons:
            rows.append([c.cell_id, c.metric, _cell(c.base), _cell(c.new),
                         "-" if c.change is None else f"{c.change:+.4f}",
                         "-" if c.allowed is None else f"{c.allowed:.4f}", str(c.status)])
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for c in self.comparisons:
            if c.status is not Status.PASS and (c.problems or c.notes):
                lines.append(f"{c.cell_id}: {'; '.join((*c.problems, *c.notes))}")
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        parts = [f"{len(self.comparisons)} cells compared: {self.count(Status.PASS)} within tolerance",
                 f"{self.count(Status.IMPROVED)} improved beyond tolerance",
                 f"{self.count(Status.REGRESSED)} regressed", f"{self.count(Status.INCOMPARABLE)} not comparable"]
        if self.only_a:
            parts.append(f"only in A: {_listing(self.only_a)}")
        if self.only_b:
            parts.append(f"only in B: {_listing(self.only_b)}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cells": {c.cell_id: {"status": str(c.status), "metric": c.metric, "a": _entry_dict(c.base),
                                  "b": _entry_dict(c.new), "change": c.change, "allowed": c.allowed,
                                  "notes": list(c.notes), "problems": list(c.problems)} for c in self.comparisons},
            "only_a": list(self.only_a), "only_b": list(self.only_b), "failed": self.failed,
        }


def _listing(cells: tuple[str, ...], limit: int = 6) -> str:
    """The first few cell ids and how many more (``--json`` lists them all)."""
    more = f" and {len(cells) - limit} more" if len(cells) > limit else ""
    return f"{len(cells)} ({', '.join(cells[:limit])}{more})"


def _cell(e: BaselineEntry | None) -> str:
    return "-" if e is None else f"{e.value:.4f} [{e.ci_low:.4f}, {e.ci_high:.4f}]"


def _entry_dict(e: BaselineEntry | None) -> dict[str, float] | None:
    return None if e is None else {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "se": e.se}


def compare_runs(a: Mapping[str, Sequence[BaselineEntry]], b: Mapping[str, Sequence[BaselineEntry]],
                 config: GateConfig) -> RunComparison:
    """B judged against A, cell by cell (each entry of B against A's entry for the same data); cells present
    on one side only are listed, not judged."""
    common = sorted(set(a) & set(b))
    comparisons = tuple(decide(new, a[c], config.for_task(CellSpec.from_id(c).task), strict=True)
                        for c in common for new in b[c])
    return RunComparison(comparisons, tuple(sorted(set(a) - set(b))), tuple(sorted(set(b) - set(a))))


def compare_paths(run_a: Path, run_b: Path, thresholds: Path) -> RunComparison:
    result = compare_runs(load_entries(run_a), load_entries(run_b), GateConfig.load(thresholds))
    if not result.comparisons:
        raise SpecError(f"no cell in common between {run_a} and {run_b} (cells are matched by id "
                        "model-task-scarcity)")
    return result


def dumps(result: RunComparison) -> str:
    return json.dumps(result.to_dict(), indent=1, sort_keys=True)
