"""Versioned cell results and the run directory they are written to."""

from .cell import SCHEMA_VERSION, CellResult, MetricSummary
from .run import RunDir, environment, git_commit

__all__ = ["SCHEMA_VERSION", "CellResult", "MetricSummary", "RunDir", "environment", "git_commit"]
