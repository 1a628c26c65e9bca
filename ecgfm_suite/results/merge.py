"""Merge the run directories of shard jobs into one run: results, per-cell scores, gate verdicts, run.json.

Runs merge only when they measured the same thing: same suite version, same dataset versions, same
seeds, probes and bootstrap count, and (for shard runs) the same split. A cell in two runs is an
error; cells the split (or a given plan) expected but no run produced are named as missing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_open
from ..errors import DataError, SpecError
from .cell import CellResult
from .run import RunDir

#: run.json settings that must agree for cells to be comparable
SAME_SETTINGS = ("seeds", "probes", "n_boot")
_SHOWN = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class MergedRun:
    path: Path
    results: tuple[CellResult, ...]
    #: cells expected (by the shards' split or the given plan) that no run produced
    missing: tuple[str, ...]
    sources: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class _Source:
    run: RunDir
    meta: dict[str, Any]
    results: list[CellResult]


def _load(path: Path) -> _Source:
    run = RunDir.open(path)
    if not run.results_path.exists():
        raise DataError("not a run directory: results.jsonl is missing", run.path)
    meta_path = run.path / "run.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return _Source(run, meta, run.results())


def _names(items: Iterable[str]) -> str:
    items = sorted(items)
    more = f" … and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def _check_compatible(sources: Sequence[_Source]) -> None:
    """Refuse runs whose numbers are not comparable, naming both runs and the difference."""
    first = sources[0]

    def differ(what: str, a: _Source, va: Any, b: _Source, vb: Any) -> SpecError:
        return SpecError(f"cannot merge: {what} differ: {a.run.path} has {va!r}, {b.run.path} has {vb!r}", b.run.path)

    seen_versions: dict[str, tuple[str, _Source]] = {}
    suite: dict[str, _Source] = {}
    seeds: tuple[list[int], _Source] | None = None
    for src in sources:
        for r in src.results:
            suite.setdefault(r.suite_version, src)
            for dataset, version in r.dataset_versions.items():
                known = seen_versions.setdefault(dataset, (version, src))
                if known[0] != version:
                    raise differ(f"dataset versions of {dataset}", known[1], known[0], src, version)
            seeds = seeds or (list(r.seeds), src)
            if list(r.seeds) != seeds[0]:
                raise differ("seeds", seeds[1], seeds[0], src, list(r.seeds))
        for name in SAME_SETTINGS:
            if name in first.meta and name in src.meta and first.meta[name] != src.meta[name]:
                raise differ(name, first, first.meta[name], src, src.meta[name])
    if len(suite) > 1:
        (va, a), (vb, b) = sorted(suite.items())[:2]
        raise differ("suite versions", a, va, b, vb)
    shards = [src for src in sources if "shard" in src.meta]
    for src in shards[1:]:
        a, b = shards[0].meta["shard"], src.meta["shard"]
        if (a["count"], a["split_sha256"]) != (b["count"], b["split_sha256"]):
            raise differ("shard splits (the jobs planned different matrices or costs)", shards[0],
                         f"{a['count']} shards {a['split_sha256'][:12]}", src, f"{b['count']} shards {b['split_sha256'][:12]}")


def _expected(sources: Sequence[_Source], plan: Iterable[str] | None) -> set[str] | None:
    if plan is not None:
        return set(plan)
    shards = [src.meta["shard"] for src in sources if "shard" in src.meta]
    if not shards or len(shards) != len(sources):
        return None
    indices = sorted(s["index"] for s in shards)
    absent = sorted(set(range(1, shards[0]["count"] + 1)) - set(indices))
    if absent:
        count = shards[0]["count"]
        raise SpecError(f"cannot merge: shard run(s) {', '.join(f'{k}/{count}' for k in absent)} not given "
                        "(their cells would silently be missing)")
    return {cell for s in shards for cell in s["cells"]}


def _merge_gate(sources: Sequence[_Source]) -> dict[str, Any] | None:
    merged: dict[str, Any] = {}
    found = False
    for src in sources:
        path = src.run.path / "gate.json"
        if not path.exists():
            continue
        found = True
        for key, value in json.loads(path.read_text()).items():
            if isinstance(value, dict):
                merged.setdefault(key, {}).update(value)
            elif isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif merged.get(key) is None:
                merged[key] = value
    return merged if found else None


def merge_runs(run_dirs: Sequence[Path], output: Path, *, plan: Iterable[str] | None = None) -> MergedRun:
    """Merge ``run_dirs`` into a new run directory ``output`` (which must not hold a run yet)."""
    if not run_dirs:
        raise SpecError("nothing to merge: give at least one run directory")
    sources = [_load(Path(p)) for p in run_dirs]
    _check_compatible(sources)
    owner: dict[str, list[Path]] = {}
    for src in sources:
        for r in src.results:
            owner.setdefault(r.cell_id, []).append(src.run.path)
    duplicated = {cell: paths for cell, paths in owner.items() if len(paths) > 1}
    if duplicated:
        runs = sorted({str(p) for paths in duplicated.values() for p in paths})
        raise SpecError(f"cannot merge: {len(duplicated)} cell(s) appear in several runs ({', '.join(runs)}): "
                        f"{_names(duplicated)}")
    expected = _expected(sources, plan)
    missing = tuple(sorted(expected - set(owner))) if expected is not None else ()

    out = RunDir(Path(output))
    if out.results_path.exists():
        raise SpecError("merge output already holds a run; choose a new directory", out.path)
    out.path.mkdir(parents=True, exist_ok=True)
    results = [r for src in sources for r in sorted(src.results, key=lambda r: r.cell_id)]
    with atomic_open(out.results_path) as fh:
        for r in results:
            fh.write(json.dumps(r.to_dict(), sort_keys=True, default=str) + "\n")
    for src in sources:
        for npz in sorted((src.run.path / "cells").glob("*.npz")):
            with open(npz, "rb") as fin, atomic_open(out.path / "cells" / npz.name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    gate = _merge_gate(sources)
    if gate is not None:
        with atomic_open(out.path / "gate.json") as fh:
            json.dump(gate, fh, sort_keys=True, indent=1)
    out.write_csv(results)
    first = sources[0].meta
    out.write_meta({
        "run_id": out.path.name, "cells": len(results),
        "exitstatus": max((int(s.meta.get("exitstatus", 0)) for s in sources), default=0),
        **{name: first[name] for name in SAME_SETTINGS if name in first},
        "models": {r.model: r.checkpoint_sha256 for r in results},
        "dataset_versions": {k: v for r in results for k, v in r.dataset_versions.items()},
        "environment": first.get("environment", {}), "git_commit": first.get("git_commit"),
        "merged_from": [str(s.run.path) for s in sources], "missing": list(missing),
    })
    out.link_latest()
    return MergedRun(path=out.path, results=tuple(results), missing=missing,
                     sources=tuple(s.run.path for s in sources))
