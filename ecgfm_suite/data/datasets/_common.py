"""Helpers every dataset loader shares: one directory walk, header rows, exclusions, the index.

A loader's ``scan`` is then mostly its label table::

    result = RecordScan(root, strict)
    for rec in record_paths:
        result.add(rec, lambda rec=rec: {**wfdb_row(...), "label": ...})
    return result.index(dataset="x", version="1", label_columns=("label",))

``find_roots(data_dir, tree=None)`` takes an optional :func:`list_tree` result so that
:func:`ecgfm_suite.data.discovery.discover` walks the data dir once for all datasets.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import wfdb

from ...errors import DataError, RecordError
from ..reader import check_signal_length, header_path, read_header, signal_files
from ..records import (  # noqa: F401 - re-exported to the dataset loaders
    RECORD_COLUMNS,
    DatasetIndex,
    Exclusion,
    comment_fields,
    record_leads,
)

#: directory → names of the files directly in it (what :func:`list_tree` returns)
Tree = Mapping[Path, tuple[str, ...]]


def list_tree(data_dir: str | Path) -> dict[Path, tuple[str, ...]]:
    """Walk ``data_dir`` once: directory → sorted file names.

    Symlinked folders are followed (datasets often live on another disk), each real folder
    once, so link cycles end; hidden folders are skipped. Raises :class:`DataError` naming
    ``data_dir`` when it is not a directory.
    """
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise DataError("data directory does not exist" if not data_dir.exists() else "not a directory", data_dir)
    tree: dict[Path, tuple[str, ...]] = {}
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(data_dir.resolve(), followlinks=True):
        seen.add(os.path.realpath(dirpath))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and os.path.realpath(os.path.join(dirpath, d)) not in seen)
        tree[Path(dirpath)] = tuple(sorted(filenames))
    return tree


def dirs_containing(tree: Tree, name: str) -> list[Path]:
    """Directories of ``tree`` holding a file called ``name`` (sorted)."""
    return sorted(d for d, files in tree.items() if name in files)


def read_table(path: Path, required: Iterable[str] = (), **read_csv: Any) -> pd.DataFrame:
    """``pandas.read_csv`` whose failures (and missing ``required`` columns) are :class:`DataError` naming ``path``."""
    try:
        frame = pd.read_csv(path, **read_csv)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot parse label table: {exc}", path) from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"label table lacks columns {', '.join(missing)} (has {', '.join(map(str, frame.columns))})",
                        path)
    return frame


def csv_columns(path: Path) -> list[str]:
    """The header row of a CSV file (cheap content check for finders); [] if unreadable."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            first = fh.readline()
    except OSError:
        return []
    return [c.strip().strip('"') for c in first.rstrip("\r\n").split(",")]


def peek_header(directory: Path, files: Iterable[str], tries: int = 3) -> wfdb.Record | None:
    """The first readable of the first ``tries`` ``.hea`` files among ``files`` (a finder's content check)."""
    names = [n for n in files if n.endswith(".hea")][:tries]
    for name in names:
        try:
            return read_header(directory / name[: -len(".hea")])
        except RecordError:
            continue
    return None


def hash_files(paths: Iterable[Path], chunk: int = 1 << 20) -> str:
    """sha256 over the bytes of ``paths`` in order (a record's signal files → its ``content_hash``)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def parse_age(text: Any) -> float:
    """``"51"``/``51.0`` → 51.0; empty, ``Unknown``, ``NaN`` or non-numeric (``">89"``) → NaN."""
    try:
        age = float(str(text).strip())
    except (TypeError, ValueError):
        return math.nan
    return age if math.isfinite(age) and age >= 0 else math.nan


def parse_sex(text: Any) -> str | None:
    """``"F"``/``"female"``/``"Male "`` → ``"F"``/``"M"``; anything else → None."""
    value = str(text).strip().lower() if text is not None else ""
    return {"m": "M", "male": "M", "f": "F", "female": "F"}.get(value)


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as a posix string (the ``Exclusion.record`` form)."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def wfdb_row(
    *,
    dataset: str,
    record_id: str,
    record_path: Path,
    region: str,
    header: wfdb.Record | None = None,
    leads: tuple[str, ...] | None = None,
    source: str | None = None,
    patient_id: str | None = None,
    age: float = math.nan,
    sex: str | None = None,
) -> dict[str, Any]:
    """The :data:`RECORD_COLUMNS` of one WFDB record, after the cheap checks.

    Reads the header (unless given), checks the signal files' sizes against it and hashes
    them; raises :class:`RecordError` (naming the file) for anything unusable. ``leads``
    overrides the header's names; either must be known leads, each once (:func:`record_leads`).
    """
    header = header if header is not None else read_header(record_path)
    check_signal_length(header, record_path)
    names = record_leads(leads if leads is not None else header.sig_name, header_path(record_path))
    if len(names) != header.n_sig:
        raise RecordError(f"{len(names)} lead names for {header.n_sig} signals", record_path)
    return {
        "key": f"{dataset}/{record_id}",
        "record_id": record_id,
        "path": str(record_path),
        "format": "wfdb",
        "fs": float(header.fs),
        "n_samples": int(header.sig_len),
        "leads": ",".join(names),
        "region": region,
        "source": source or dataset,
        "patient_id": patient_id,
        "age": age,
        "sex": sex,
        "content_hash": hash_files(signal_files(header, Path(record_path).parent)),
    }


@dataclass(slots=True)
class RecordScan:
    """Collects index rows and exclusions for one dataset root.

    ``strict=True`` turns the first unusable record into a raised :class:`RecordError`;
    otherwise it becomes an :class:`Exclusion` (record path relative to ``root``) and the scan goes on.
    """

    root: Path
    strict: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)

    def exclude(self, record: str | Path, reason: str, file: str | Path | None = None) -> None:
        """Leave ``record`` out for ``reason`` (``file``: the offending file, named when strict raises)."""
        if self.strict:
            raise RecordError(reason, file if file is not None else record)
        self.excluded.append(Exclusion(record=relative(Path(record), self.root), reason=reason))

    def add(self, record: str | Path, build: Callable[[], dict[str, Any]]) -> None:
        """Append ``build()``'s row; a :class:`RecordError` from it excludes ``record``."""
        try:
            row = build()
        except RecordError as exc:
            if self.strict:
                raise
            name = Path(exc.path).name if exc.path else ""
            self.exclude(record, f"{name}: {exc.reason}" if name else exc.reason)
            return
        self.rows.append(row)

    def index(
        self,
        *,
        dataset: str,
        version: str,
        label_columns: tuple[str, ...],
        missing_label_files: Iterable[str | Path] = (),
    ) -> DatasetIndex:
        """The :class:`DatasetIndex`: ``RECORD_COLUMNS`` + ``label_columns``, rows in the order added."""
        return build_index(dataset=dataset, version=version, root=self.root, rows=self.rows,
                           label_columns=label_columns, excluded=self.excluded,
                           missing_label_files=missing_label_files)


def build_index(
    *,
    dataset: str,
    version: str,
    root: Path,
    rows: list[dict[str, Any]],
    label_columns: tuple[str, ...],
    excluded: list[Exclusion] | None = None,
    missing_label_files: Iterable[str | Path] = (),
) -> DatasetIndex:
    """Rows → ``DatasetIndex`` with exactly ``RECORD_COLUMNS + label_columns`` (missing → NaN); keys must be unique."""
    columns = list(RECORD_COLUMNS) + [c for c in label_columns if c not in RECORD_COLUMNS]
    frame = pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    if not frame.empty:
        dup = frame["key"][frame["key"].duplicated()]
        if not dup.empty:
            raise DataError(f"duplicate record keys {', '.join(dup.head(5))}", root)
        frame = frame.astype({"fs": float, "n_samples": int, "age": float})
    return DatasetIndex(dataset=dataset, version=version, root=Path(root), records=frame,
                        excluded=list(excluded or []), missing_label_files=[str(p) for p in missing_label_files])
