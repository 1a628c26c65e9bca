"""Cells: the (model, task, scarcity) unit of the benchmark, and the matrix selection."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SpecError

_PART = re.compile(r"^[a-z0-9_.]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class CellSpec:
    model: str
    task: str
    scarcity: str

    def __post_init__(self) -> None:
        for name in ("model", "task", "scarcity"):
            value = getattr(self, name)
            if not _PART.match(value):
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
