"""Error hierarchy: every error names the file (or option) and the reason.

Each class also subclasses a builtin so that callers' existing ``except ValueError``
clauses keep working (scikit-learn's ``InvalidParameterError`` pattern).
"""

from __future__ import annotations

from pathlib import Path


class EcgfmError(Exception):
    """Base class. ``path`` is the offending file/option, ``reason`` the human cause."""

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
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
