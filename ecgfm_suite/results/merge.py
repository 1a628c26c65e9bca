"""Merge the run directories of shard jobs into one run: results, per-cell scores, gate verdicts, run.json.

Runs merge only when they measured the same thing: same suite version, same dataset versions, same
seeds, probes and bootstrap count, and (for shard runs) the same split. A cell in two runs is an
error; cells the split (or a given plan) expected but no run produced are named as missing.
Runs and the output may be fsspec URLs (``s3://bucket/runs/shard-1``): a run in object storage is
read only once its ``run.json`` exists, and a URL output is uploaded with ``run.json`` last.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_open
from ..errors import DataError, SpecError
from ..storage import StorePath, location
from .cell import CellResult
from .meta import RunMeta
from .run import RunDir, fetch_run, staged_run

Location = str | os.PathLike[str] | StorePath

#: run.json settings that must agree for cells to be comparable
SAME_SETTINGS = ("seeds", "probes", "n_boot")
#: the bootstrap count of runs whose run.json does not say (the suite's default)
DEFAULT_N_BOOT = 1000
_SHOWN = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class MergedRun:
    path: Path | StorePath
    results: tuple[CellResult, ...]
    #: cells expected (by the shards' split or the given plan) that no run produced
    missing: tuple[str, ...]
    sources: tuple[Path | StorePath, ...]


@dataclass(frozen=True, slots=True)
class _Source:
    run: RunDir
    #: its run.json (None: a run that did not finish)
    meta: RunMeta | None
    results: list[CellResult]
    #: where the run came from (a path, or the URL it was downloaded from): named in errors and run.json
    origin: Path | StorePath


def _load(where: Location, scratch: Path) -> _Source:
    """A run from a path, or downloaded from a URL into the fresh dir ``scratch``."""
    origin = location(where)
    if isinstance(origin, StorePath):
        run = fetch_run(origin, scratch / origin.name)
    else:
        run = RunDir.open(origin)
        origin = run.path
    if not run.results_path.exists():
        raise DataError("not a run directory: results.jsonl is missing", str(origin))
    return _Source(run, RunMeta.read(run.path), run.results(), origin)


def _read_json(path: Path) -> dict[str, Any]:
    """A run's JSON object file (``run.json``, ``gate.json``); unreadable or not an object: a DataError naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"unreadable ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(value, dict):
        raise DataError(f"expected a JSON object, found {type(value).__name__}", path)
    return value


def _names(items: Iterable[str]) -> str:
    items = sorted(items)
    more = f" … and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def _check_compatible(sources: Sequence[_Source]) -> None:
    """Refuse runs whose numbers are not comparable, naming both runs and the difference."""
    first = sources[0]

    def differ(what: str, a: _Source, va: object, b: _Source, vb: object) -> SpecError:
        return SpecError(f"cannot merge: {what} differ: {a.origin} has {va!r}, {b.origin} has {vb!r}", str(b.origin))

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
            if first.meta is not None and src.meta is not None and getattr(first.meta, name) != getattr(src.meta, name):
                raise differ(name, first, getattr(first.meta, name), src, getattr(src.meta, name))
    if len(suite) > 1:
        (va, a), (vb, b) = sorted(suite.items())[:2]
        raise differ("suite versions", a, va, b, vb)
    shards = [(src, src.meta.shard) for src in sources if src.meta is not None and src.meta.shard is not None]
    for src, other in shards[1:]:
        one = shards[0][1]
        if (one.count, one.split_sha256) != (other.count, other.split_sha256):
            raise differ("shard splits (the jobs planned different matrices or costs)", shards[0][0],
                         f"{one.count} shards {one.split_sha256[:12]}", src,
                         f"{other.count} shards {other.split_sha256[:12]}")


def _expected(sources: Sequence[_Source], plan: Iterable[str] | None) -> set[str] | None:
    if plan is not None:
        return set(plan)
    shards = [src.meta.shard for src in sources if src.meta is not None and src.meta.shard is not None]
    if not shards or len(shards) != len(sources):
        return None
    indices = sorted(s.index for s in shards)
    absent = sorted(set(range(1, shards[0].count + 1)) - set(indices))
    if absent:
        count = shards[0].count
        raise SpecError(f"cannot merge: shard run(s) {', '.join(f'{k}/{count}' for k in absent)} not given "
                        "(their cells would silently be missing)")
    return {cell for s in shards for cell in s.cells}


def _merge_gate(sources: Sequence[_Source]) -> dict[str, Any] | None:
    merged: dict[str, Any] = {}
    found = False
    for src in sources:
        path = src.run.path / "gate.json"
        if not path.exists():
            continue
        found = True
        for key, value in _read_json(path).items():
            if isinstance(value, dict):
                merged.setdefault(key, {}).update(value)
            elif isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            elif merged.get(key) is None:
                merged[key] = value
    return merged if found else None


#: runs the per-task analyses (CKA, label efficiency, comparisons) on the merged run, with the runs' bootstrap
#: count, before its run.json
Analyse = Callable[[RunDir, int], None]


def merge_runs(run_dirs: Sequence[Location], output: Location, *, plan: Iterable[str] | None = None,
               analyse: Analyse | None = None) -> MergedRun:
    """Merge ``run_dirs`` (paths or URLs) into a new run directory ``output`` (which must not hold a run yet).

    The shards' analyses (each ran its own (model, task) pairs) are joined; ``analyse`` then runs the
    analyses across models, which need every shard's cells, before ``run.json`` marks the run finished.
    """
    if not run_dirs:
        raise SpecError("nothing to merge: give at least one run directory")
    target = location(output)
    if isinstance(target, StorePath):
        with staged_run(target) as local:
            return dataclasses.replace(merge_runs(run_dirs, local, plan=plan, analyse=analyse), path=target)
    with tempfile.TemporaryDirectory(prefix="ecgfm-merge-") as scratch:  # runs downloaded from URLs
        return _merge([_load(p, Path(scratch) / str(i)) for i, p in enumerate(run_dirs)], target, plan, analyse)


def _copy_analyses(sources: Sequence[_Source], out: RunDir) -> None:
    """Every shard's ``analysis/`` files; the same file from two shards must be the same (a task's summary),
    else the shards analysed the same pair; ``plan/cells.json`` becomes the union of the shards' cells."""
    origin: dict[Path, _Source] = {}
    planned: list[str] = []
    for src in sources:
        root = src.run.path / "analysis"
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock")):
            relative = path.relative_to(root)
            if relative == Path("plan/cells.json"):
                planned += json.loads(path.read_text(encoding="utf-8")).get("cells", [])
                continue
            target = out.path / "analysis" / relative
            if relative in origin:
                if target.read_bytes() != path.read_bytes():
                    raise SpecError(f"cannot merge: analysis/{relative.as_posix()} differs between "
                                    f"{origin[relative].origin} and {src.origin}", str(src.origin))
                continue
            origin[relative] = src
            with open(path, "rb") as fin, atomic_open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    if planned:
        with atomic_open(out.path / "analysis" / "plan" / "cells.json") as fh:
            json.dump({"kind": "plan", "key": "cells", "cells": list(dict.fromkeys(planned))}, fh, sort_keys=True)


def _merge(sources: list[_Source], output: Path, plan: Iterable[str] | None, analyse: Analyse | None) -> MergedRun:
    _check_compatible(sources)
    owner: dict[str, list[Path | StorePath]] = {}
    for src in sources:
        for r in src.results:
            owner.setdefault(r.cell_id, []).append(src.origin)
    duplicated = {cell: paths for cell, paths in owner.items() if len(paths) > 1}
    if duplicated:
        runs = sorted({str(p) for paths in duplicated.values() for p in paths})
        raise SpecError(f"cannot merge: {len(duplicated)} cell(s) appear in several runs ({', '.join(runs)}): "
                        f"{_names(duplicated)}")
    expected = _expected(sources, plan)
    missing = tuple(sorted(expected - set(owner))) if expected is not None else ()

    out = RunDir(output)
    if out.results_path.exists():
        raise SpecError("merge output already holds a run; choose a new directory", out.path)
    out.path.mkdir(parents=True, exist_ok=True)
    results = [r for src in sources for r in sorted(src.results, key=lambda r: r.cell_id)]
    with atomic_open(out.results_path) as fh:
        for r in results:
            fh.write(json.dumps(r.to_dict(), sort_keys=True, default=str) + "\n")
    outcomes = [o for src in sources for _, o in sorted(src.run.outcomes().items())]
    if outcomes:  # each shard's test outcomes (a cell that failed its floor or was skipped there)
        with atomic_open(out.outcomes_path) as fh:
            fh.writelines(json.dumps(o, sort_keys=True, default=str) + "\n" for o in outcomes)
    for src in sources:
        for npz in sorted((src.run.path / "cells").glob("*.npz")):
            with open(npz, "rb") as fin, atomic_open(out.path / "cells" / npz.name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    gate = _merge_gate(sources)
    if gate is not None:
        with atomic_open(out.path / "gate.json") as fh:
            json.dump(gate, fh, sort_keys=True, indent=1)
    out.write_csv(results)
    _copy_analyses(sources, out)
    metas = [s.meta for s in sources if s.meta is not None]
    first = metas[0] if metas else None
    if analyse is not None:
        analyse(out, first.n_boot if first is not None and first.n_boot else DEFAULT_N_BOOT)
    RunMeta.of(out.path.name, results, exitstatus=max((m.exitstatus for m in metas), default=0),
               seeds=first.seeds if first else (results[0].seeds if results else ()),
               probes=first.probes if first else (), n_boot=first.n_boot if first else None,
               environment=first.environment if first else {}, git_commit=first.git_commit if first else None,
               task_analyses="merge" if analyse is not None else "deferred",
               merged_from=tuple(str(s.origin) for s in sources), missing=missing).write(out)
    out.link_latest()
    return MergedRun(path=out.path, results=tuple(results), missing=missing,
                     sources=tuple(s.origin for s in sources))
