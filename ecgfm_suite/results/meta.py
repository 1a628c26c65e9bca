"""``RunMeta``: what ``run.json`` says about a run, versioned like ``CellResult``; written and read only here.

``run.json`` is written last, so its presence marks a finished run (a run in object storage is read only
once it exists). A run written before the schema was versioned (no ``schema_version``) reads as version 1.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from ..errors import DataError
from .cell import CellResult
from .run import RUN_META, RunDir

META_SCHEMA_VERSION = 1

#: where a run's per-task analyses (CKA, label efficiency, comparisons) ran: in the pytest session, on the
#: xdist controller after the workers, at ``ecgfm-suite merge``, or not yet (a shard run, before its merge)
TaskAnalyses = Literal["session", "controller", "merge", "deferred"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardMeta:
    """A shard run's place in the split and the cells assigned to it: what ``merge`` checks."""

    index: int
    count: int
    split_sha256: str
    cells: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunMeta:
    """A run's metadata. Only ``run_id`` is required to read one: the report completes the rest from the cells'
    results, so a hand-made or partial ``run.json`` still reads."""

    run_id: str
    cells: int = 0
    exitstatus: int = 0
    seeds: tuple[int, ...] = ()
    probes: tuple[str, ...] = ()
    n_boot: int | None = None
    models: dict[str, str | None] = field(default_factory=dict)
    dataset_versions: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    shard: ShardMeta | None = None
    task_analyses: TaskAnalyses = "session"
    #: a merged run: the runs it joined, and the cells the split expected that none produced
    merged_from: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    schema_version: int = META_SCHEMA_VERSION

    @classmethod
    def of(cls, run_id: str, results: list[CellResult], *, exitstatus: int, seeds: tuple[int, ...],
           probes: tuple[str, ...], n_boot: int | None, environment: dict[str, Any], git_commit: str | None,
           **rest: Any) -> RunMeta:
        """The metadata of a run whose cells produced ``results`` (models and dataset versions come from them)."""
        return cls(run_id=run_id, cells=len(results), exitstatus=exitstatus, seeds=tuple(seeds), probes=tuple(probes),
                   n_boot=n_boot, models={r.model: r.checkpoint_sha256 for r in results},
                   dataset_versions={k: v for r in results for k, v in r.dataset_versions.items()},
                   environment=environment, git_commit=git_commit, **rest)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | str = RUN_META) -> RunMeta:
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or version > META_SCHEMA_VERSION:
            raise DataError(f"run.json schema version {version!r} is newer than this suite reads "
                            f"({META_SCHEMA_VERSION}); upgrade ecgfm-suite", path)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            shard = values.pop("shard", None)
            return cls(**{**values, "seeds": tuple(values.get("seeds") or ()),
                          "probes": tuple(values.get("probes") or ()),
                          "merged_from": tuple(values.get("merged_from") or ()),
                          "missing": tuple(values.get("missing") or ()),
                          "shard": None if shard is None else ShardMeta(**{**shard, "cells": tuple(shard["cells"])})})
        except (TypeError, KeyError) as exc:
            raise DataError(f"run.json is not a run's metadata: {exc}", path) from None

    def write(self, run_dir: RunDir) -> None:
        """Write ``run.json`` of a ``RunDir`` (atomically; call it last)."""
        run_dir.write_meta(self.to_dict())

    @classmethod
    def read(cls, run_path: Path) -> RunMeta | None:
        """The run's metadata, or None where ``run.json`` is absent (an unfinished run)."""
        path = Path(run_path) / RUN_META
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"run.json is not valid JSON: {exc}", path) from None
        if not isinstance(data, dict):
            raise DataError("run.json is not a JSON object", path)
        return cls.from_dict(data, path)

