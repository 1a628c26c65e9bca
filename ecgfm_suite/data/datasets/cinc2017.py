"""PhysioNet/CinC Challenge 2017 (AF): single-lead AliveCor records, 300 Hz, 9–61 s.

Recognised by ``REFERENCE.csv`` beside single-lead 300 Hz headers (CPSC 2018 also ships a
``REFERENCE.csv``, beside 12-lead 500 Hz records). ``REFERENCE.csv`` has no header row;
some copies add ``data_source,class``, which is skipped. Records are ``<rec>.hea`` +
``<rec>.mat`` (MATLAB v4 ``val`` at byte offset 24), read by wfdb like any format-16 file.
The lead, named ``ECG`` in the headers, is indexed as ``I`` (the AliveCor lead-I equivalent).
"""

from __future__ import annotations

import functools
from pathlib import Path

from ...errors import DataError, RecordError
from ..reader import read_header
from ..records import DatasetIndex
from ._common import RecordScan, Tree, list_tree, peek_header, read_table, wfdb_row

DATASET = "cinc2017"
VERSION = "1.0.0"
REFERENCE = "REFERENCE.csv"
LABELS: tuple[str, ...] = ("N", "A", "O", "~")
LABEL_COLUMNS: tuple[str, ...] = ("af_label",)
FS = 300.0
LEADS: tuple[str, ...] = ("I",)
#: what the headers call that lead (upper-cased); anything else is a garbled signal line, not lead I
HEADER_LEAD_NAMES = ("ECG", "I")
#: first line of some redistributed copies (not in PhysioNet's file)
_EXTRA_HEADER = ("data_source", "class")


def find_roots(data_dir: Path, tree: Tree | None = None) -> list[Path]:
    """Folders holding ``REFERENCE.csv`` whose first readable header is one lead at 300 Hz."""
    tree = tree if tree is not None else list_tree(data_dir)
    roots = []
    for d, files in sorted(tree.items()):
        if REFERENCE in files:
            header = peek_header(d, files)
            if header is not None and header.n_sig == 1 and float(header.fs) == FS:
                roots.append(d)
    return roots


def read_reference(path: Path) -> list[tuple[str, str]]:
    """``REFERENCE.csv`` → ``[(record, label), ...]``, stripped, without the optional header line."""
    table = read_table(path, header=None, dtype=str, keep_default_na=False, skipinitialspace=True)
    if table.shape[1] != 2:
        raise DataError(f"expected 2 columns (record,label), found {table.shape[1]}", path)
    pairs = [(str(a).strip(), str(b).strip()) for a, b in table.itertuples(index=False)]
    if pairs and pairs[0] == _EXTRA_HEADER:
        pairs = pairs[1:]
    return pairs


def scan(root: Path, strict: bool = False) -> DatasetIndex:
    """Index the records listed in ``root/REFERENCE.csv``; headers not listed there are excluded."""
    root = Path(root)
    reference_path = root / REFERENCE
    reference = read_reference(reference_path)
    result = RecordScan(root, strict)
    listed: set[str] = set()
    for record_id, label in reference:
        path = root / record_id
        if record_id in listed:
            result.exclude(path, f"{record_id} is listed twice in {REFERENCE} (first row kept)", reference_path)
            continue
        listed.add(record_id)
        if label not in LABELS:
            result.exclude(path, f"label {label!r} in {REFERENCE} is not one of {', '.join(LABELS)}", reference_path)
            continue
        result.add(path, functools.partial(_row, path, record_id, label))
    for hea in sorted(root.glob("*.hea")):
        if hea.stem not in listed:
            result.exclude(hea.with_suffix(""), f"missing label: {hea.stem} has no row in {REFERENCE}", reference_path)
    return result.index(dataset=DATASET, version=VERSION, label_columns=LABEL_COLUMNS)


def _row(path: Path, record_id: str, label: str) -> dict:
    header = read_header(path)
    if header.n_sig != 1:
        raise RecordError(f"{header.n_sig} signals, CinC 2017 records have one lead", path.with_suffix(".hea"))
    name = header.sig_name[0]
    if not isinstance(name, str) or name.strip().upper() not in HEADER_LEAD_NAMES:
        raise RecordError(f"signal 1 names lead {name!r}, CinC 2017 headers name it ECG (a garbled signal line?)",
                          path.with_suffix(".hea"))
    row = wfdb_row(dataset=DATASET, record_id=record_id, record_path=path, header=header, region="USA",
                   leads=LEADS)
    row["af_label"] = label
    return row
