"""Benchmark tasks: the TaskSpec registry, per-dataset and harmonised labelers, and ``build_task``.

``TASKS``/``TaskSpec``/``TaskSkip`` import only the stdlib; ``build_task``/``TaskData`` (numpy,
pandas, iterstrat) are imported on first access.
"""

from __future__ import annotations

from typing import Any

from ...errors import TaskSkip
from .catalog import TASKS
from .spec import TASK_TYPES, TaskSpec, register

__all__ = ["TASKS", "TASK_TYPES", "TaskData", "TaskSkip", "TaskSpec", "Unlabelled", "build_task", "register"]

_LAZY = {"build_task": ".build", "TaskData": ".build", "Unlabelled": ".labels"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
