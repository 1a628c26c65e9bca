"""Error hierarchy: every error names the file (or option) and the reason.

Each class also subclasses a builtin so that callers' existing ``except ValueError``
clauses keep working (scikit-learn's ``InvalidParameterError`` pattern).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class EcgfmError(Exception):
    """Base class. ``path`` is the offending file/option, ``reason`` the human cause."""

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)

    def __reduce__(self) -> tuple[Callable[..., EcgfmError], tuple[str | None, ...]]:
        """Keep reason and path across processes (a worker's error re-raised in the parent)."""
        return type(self), (self.reason, self.path)


class SpecError(EcgfmError, ValueError):
    """An invalid spec, option or configuration value."""


class DataError(EcgfmError, ValueError):
    """A dataset-level problem (missing folder, missing label table)."""


class RecordError(DataError):
    """One record cannot be used (truncated, NaN leads, implausible gain, ...)."""


class CheckpointError(EcgfmError, ValueError):
    """A checkpoint that is missing, unsafe, or does not match the architecture."""


class CacheError(EcgfmError, OSError):
    """A corrupt or unwritable cache entry."""


class BaselineError(EcgfmError, ValueError):
    """A corrupt, hand-broken or incomparable baseline file."""


class Skip(EcgfmError):
    """Not an error: something that does not apply to the data or weights at hand. The engine turns it
    into a pytest skip (and a listed reason in the report) whose message names what is missing."""


class CellSkip(Skip):
    """A cell cannot run here (data or weights absent, an empty split after exclusions)."""


class TaskSkip(Skip):
    """A task cannot be evaluated on the data at hand (missing label file, too few records)."""

    def __init__(self, reason: str, path: str | Path | None = None, *, task: str | None = None) -> None:
        self.task = task
        super().__init__(reason, path)
        if task:
            self.args = (f"{task}: {self.args[0]}",)

    def __reduce__(self) -> tuple[Callable[..., EcgfmError], tuple[str | None, ...]]:
        return _task_skip, (self.reason, self.path, self.task)


def _task_skip(reason: str, path: str | None, task: str | None) -> TaskSkip:
    return TaskSkip(reason, path, task=task)


class AnalysisSkip(Skip):
    """An analysis that does not apply here (e.g. transfer on a single-region task); the reason says why."""


class EcgfmWarning(UserWarning):
    """Something was wrong but the run could go on (a torn last line skipped); the message names the file."""


class CacheWarning(EcgfmWarning):
    """A cache entry could not be trusted, read or written: it costs a recompute, never a wrong answer."""
