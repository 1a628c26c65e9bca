"""Brugada-HUCA 1.0.0: 12-lead, 100 Hz, 12 s records in ``files/<id>/<id>.{hea,dat}``.

Labels live only in ``metadata.csv`` (``patient_id,basal_pattern,sudden_death,brugada``);
the headers carry no comments. Without that table the records are still indexed, with
NaN labels, and ``DatasetIndex.missing_label_files`` names where it was expected.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from ...errors import RecordError
from ..reader import read_header
from ..records import DatasetIndex
from ._common import RecordScan, Tree, csv_columns, list_tree, peek_header, read_table, wfdb_row

DATASET = "brugada_huca"
VERSION = "1.0.0"
METADATA = "metadata.csv"
LABEL_COLUMNS: tuple[str, ...] = ("brugada", "basal_pattern", "sudden_death")
METADATA_COLUMNS: tuple[str, ...] = ("patient_id", *LABEL_COLUMNS)
#: what the release's headers look like (used to recognise it without metadata.csv)
N_LEADS, FS = 12, 100.0


def _looks_like_brugada(header) -> bool:
    return header is not None and header.n_sig == N_LEADS and float(header.fs) == FS and not header.comments


def find_roots(data_dir: Path, tree: Tree | None = None) -> list[Path]:
    """Folders holding ``metadata.csv`` with the Brugada-HUCA columns, or ``files/<id>/<id>.hea`` records
    whose headers are 12 leads at 100 Hz without comment lines (one header checked per root)."""
    tree = tree if tree is not None else list_tree(data_dir)
    roots = {d for d, files in tree.items()
             if METADATA in files and set(METADATA_COLUMNS) <= set(csv_columns(d / METADATA))}
    candidates: dict[Path, Path] = {}
    for d, files in tree.items():
        if d.parent.name == "files" and f"{d.name}.hea" in files:
            candidates.setdefault(d.parent.parent, d)
    for root, record_dir in candidates.items():
        if root not in roots and _looks_like_brugada(peek_header(record_dir, [f"{record_dir.name}.hea"])):
            roots.add(root)
    return sorted(roots)


def _label(value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]  # any table cell: what float() refuses is caught below
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def scan(root: Path, strict: bool = False) -> DatasetIndex:
    """Index ``root/files/<id>/<id>`` records, labelled from ``root/metadata.csv`` when it exists."""
    root = Path(root)
    metadata_path = root / METADATA
    labels: dict[str, dict[str, float]] | None = None
    if metadata_path.is_file():
        table = read_table(metadata_path, required=METADATA_COLUMNS, dtype=str, keep_default_na=False)
        labels = {str(r["patient_id"]).strip(): {c: _label(r[c]) for c in LABEL_COLUMNS}
                  for _, r in table.iterrows()}
    files_dir = root / "files"
    records = sorted(p.with_suffix("") for p in files_dir.glob("*/*.hea") if p.stem == p.parent.name) \
        if files_dir.is_dir() else []
    result = RecordScan(root, strict)
    for path in records:
        record_id = path.name
        if labels is not None and record_id not in labels:
            result.exclude(path, f"missing label: patient {record_id} has no row in {METADATA}", metadata_path)
            continue
        result.add(path, functools.partial(_row, path, record_id, labels))
    return result.index(dataset=DATASET, version=VERSION, label_columns=LABEL_COLUMNS,
                        missing_label_files=[] if labels is not None else [metadata_path])


def _row(path: Path, record_id: str, labels: dict[str, dict[str, float]] | None) -> dict:
    header = read_header(path)
    if header.n_sig != N_LEADS:
        raise RecordError(f"{header.n_sig} leads, Brugada-HUCA records have {N_LEADS}", path.with_suffix(".hea"))
    row = wfdb_row(dataset=DATASET, record_id=record_id, record_path=path, header=header, region="Spain",
                   patient_id=record_id)
    row.update(labels[record_id] if labels is not None else dict.fromkeys(LABEL_COLUMNS, math.nan))
    return row
