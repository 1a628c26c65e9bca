"""The run directory: ``reports/<run-id>/results.jsonl`` (+ csv, run.json), ``reports/latest`` link.

A run is always written locally (append under a file lock, atomic replaces); a run bound for object
storage is staged locally and uploaded when finished, ``run.json`` last (``upload_run``), so a
reader of ``s3://…/<run-id>/`` sees a run only once it is complete (``fetch_run``).

An append is a whole line or nothing (a full disk mid-line is truncated back), but a power loss or a
killed process can still leave a torn last line: readers skip it with a warning naming the file and
line, so merge, the report and compare still read the rest; a bad line elsewhere is an error naming both.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from .. import __version__
from .._io import append_line, atomic_open, fsync_dir, write_atomic
from ..errors import DataError, EcgfmError, EcgfmWarning, SpecError
from ..storage import StorePath, download_tree, location, upload_tree
from .cell import CellResult

if TYPE_CHECKING:  # numpy is imported where scores are saved or read
    import numpy as np
    import numpy.typing as npt

#: written last: its presence marks a finished run, locally and in object storage
RUN_META = "run.json"


@functools.cache
def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the suite's checkout, once per process (the code that runs is the code imported; every cell
    asked again through a subprocess)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).resolve().parent, check=False,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Versions that change numbers: python, platform, numpy, sklearn, torch (if already imported)."""
    import numpy
    import sklearn

    env: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "suite": __version__,
        "numpy": numpy.__version__, "sklearn": sklearn.__version__, "cpu_count": os.cpu_count(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["cuda"] = bool(torch.cuda.is_available())
    return env


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


class RunDir:
    """Append-only results of one run; safe for several xdist workers (file lock per append)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.results_path = self.path / "results.jsonl"

    @classmethod
    def create(cls, reports_dir: Path, run_id: str | None = None) -> RunDir:
        run = cls(Path(reports_dir) / (run_id or new_run_id()))
        run.path.mkdir(parents=True, exist_ok=True)
        return run

    @classmethod
    def open(cls, path: Path) -> RunDir:
        path = Path(path)
        if path.is_file():  # a results.jsonl given directly
            path = path.parent
        return cls(path)

    def append(self, result: CellResult) -> None:
        _append_line(self.results_path, json.dumps(result.to_dict(), sort_keys=True, default=str))

    @property
    def outcomes_path(self) -> Path:
        return self.path / "outcomes.jsonl"

    def append_outcome(self, outcome: dict[str, Any]) -> None:
        """One cell test's outcome (``cell_id``, ``outcome``, ``reason``, ``duration_s``…) as a line of
        ``outcomes.jsonl``; written by whichever process ran the test, under a lock like ``append``."""
        _append_line(self.outcomes_path, json.dumps(outcome, sort_keys=True, default=str))

    def outcomes(self) -> dict[str, dict[str, Any]]:
        """Cell id → its latest test outcome (a rerun supersedes); {} when no test recorded one."""
        latest: dict[str, dict[str, Any]] = {}
        for n, outcome in read_jsonl(self.outcomes_path):
            if not isinstance(outcome, dict):
                raise DataError(f"line {n} is not a JSON object", self.outcomes_path)
            if outcome.get("cell_id"):
                latest[str(outcome["cell_id"])] = outcome
        return latest

    def save_scores(self, cell_id: str, **arrays: npt.ArrayLike) -> Path:
        """Per-record test scores of a cell (``cells/<cell_id>.npz``, no pickle) for paired comparisons."""
        import numpy as np

        target = self.path / "cells" / f"{cell_id}.npz"
        with atomic_open(target, "wb") as fh:
            # object arrays (record keys) would need pickle: store strings as fixed-width unicode
            named = {k: np.asarray(v, dtype=str) if np.asarray(v).dtype == object else np.asarray(v)
                     for k, v in arrays.items()}
            # numpy's stub lets a **dict fill savez's allow_pickle: bool too; these keys are array names
            np.savez(fh, **named)  # type: ignore[arg-type]
        return target

    def load_scores(self, cell_id: str) -> dict[str, np.ndarray]:
        import numpy as np

        with np.load(self.path / "cells" / f"{cell_id}.npz", allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    def results(self) -> list[CellResult]:
        """Latest result per cell id (a rerun of a cell supersedes the earlier line)."""
        latest: dict[str, CellResult] = {}
        for n, data in read_jsonl(self.results_path):
            try:
                result = CellResult.from_dict(data)
            except (EcgfmError, ValueError, TypeError, KeyError, AttributeError) as exc:
                reason = exc.reason if isinstance(exc, EcgfmError) else f"{type(exc).__name__}: {exc}"
                raise DataError(f"line {n} is not a cell result ({reason})", self.results_path) from None
            latest[result.cell_id] = result
        return list(latest.values())

    def write_csv(self, results: Iterable[CellResult]) -> Path:
        """``results.csv``: one row per cell, each macro metric as ``<metric>``, ``_ci_low``, ``_ci_high``,
        ``_seed_std``, and per class of a multiclass/multilabel cell the same four as ``<metric>[<class>]…`` plus
        ``train_prevalence[<class>]``, ``test_prevalence[<class>]`` and ``undefined[<class>]`` (why a class has
        no value; empty where it has one), so a class's columns sit under one name pattern whatever its task."""
        import pandas as pd

        from .cell import summary_columns

        rows = []
        for r in results:
            row: dict[str, Any] = {
                "cell_id": r.cell_id, "model": r.model, "task": r.task, "scarcity": r.scarcity, "probe": r.probe,
                "random_init": r.random_init, "n_train": r.n_train, "n_val": r.n_val, "n_test": r.n_test,
                "main_metric": r.main_metric}
            for name, m in r.metrics.items():
                row.update(summary_columns(name, m))
            for c in r.per_class:
                for name, cm in c.metrics.items():
                    row.update(summary_columns(f"{name}[{c.label}]", cm))
                row.update({f"train_prevalence[{c.label}]": c.train_prevalence,
                            f"test_prevalence[{c.label}]": c.test_prevalence, f"undefined[{c.label}]": c.undefined})
            rows.append(row)
        target = self.path / "results.csv"
        write_atomic(target, pd.DataFrame(rows).to_csv(index=False))
        return target

    def write_meta(self, meta: dict[str, Any]) -> None:
        """``run.json`` is written last: its presence marks a finished run."""
        write_atomic(self.path / RUN_META, json.dumps(meta, sort_keys=True, indent=1, default=str))

    def link_latest(self) -> None:
        latest = self.path.parent / "latest"
        tmp = self.path.parent / f".latest.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(self.path.name, tmp)
        os.replace(tmp, latest)
        fsync_dir(self.path.parent)


def _append_line(path: Path, line: str) -> None:
    """Append one JSON line, whole or not at all, under a file lock: every xdist worker appends to the same file."""
    with FileLock(str(path) + ".lock"):
        append_line(path, line)


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSON-lines file; nothing when it does not exist.

    A last line without its newline that is not JSON is torn (a crash mid-append): skipped with an
    ``EcgfmWarning`` naming the file and line. Any other bad line is a ``DataError`` naming both.
    """
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror or exc})", path) from None
    lines = text.split("\n")  # the part after the last newline is "" unless the last line is torn
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines):
                warnings.warn(f"{path}: skipped line {n}, torn by an interrupted write ({len(line)} characters, no "
                              "newline)", EcgfmWarning, stacklevel=3)
                return
            raise DataError(f"line {n} is not JSON ({exc.msg})", path) from None
        yield n, value


def upload_run(run: RunDir, target: str | StorePath) -> StorePath:
    """Copy a finished run to ``target`` (an fsspec URL), ``run.json`` last; lock files stay behind."""
    store = location(target)
    if not isinstance(store, StorePath):
        raise SpecError("upload_run needs an object-storage URL", str(target))
    return upload_tree(run.path, store, commit=RUN_META, skip=("*.lock",))


def fetch_run(source: StorePath, into: Path) -> RunDir:
    """Download a finished run (one with ``run.json``) from object storage into the new dir ``into``."""
    return RunDir(download_tree(source, into, commit=RUN_META))


@contextmanager
def staged_run(output: str | os.PathLike[str] | StorePath) -> Iterator[Path]:
    """The local directory to write a run to: ``output`` itself, or for a URL a temp dir uploaded on success."""
    target = location(output)
    if isinstance(target, Path):
        yield target
        return
    if (target / "results.jsonl").exists() or (target / RUN_META).exists():
        raise SpecError("output already holds a run; choose a new directory", target.url)
    with tempfile.TemporaryDirectory(prefix="ecgfm-run-") as tmp:
        local = Path(tmp) / target.name
        yield local
        upload_run(RunDir(local), target)
