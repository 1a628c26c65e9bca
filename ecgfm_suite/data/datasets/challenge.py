"""PhysioNet/CinC Challenge 2020/2021 records (``<rec>.hea`` + MATLAB v4 ``<rec>.mat``).

Headers are parsed here, not by wfdb, because wfdb rejects every Georgia header (line 1
names the record ``E00009.mat``: ``HeaderSyntaxError``) and the releases mix header
conventions (units ``mV``/``mv``, gains from 200/mV to a wrong 2,000,000/mV, record lines
with and without date). Samples come from ``scipy.io.loadmat`` (variable ``val``, leads ×
samples, int16), checked against the header's shape, first values and WFDB checksums.

Every record is indexed as ``format="challenge_mat"`` and decoded by :func:`read_challenge_mat`,
also those wfdb could read: one decoder for the whole dataset means the decoding ``scan``
validated is the one tasks get (wfdb would read the ``.mat`` blindly at the header's byte
offset 24). The tests check it against wfdb on every record wfdb accepts. ``scan``
decodes every record once, to exclude implausible gains and to hash the samples:

- ``content_hash``: sha256 of the ``.mat`` bytes (byte-identical copies);
- ``signal_hash``: sha256 of the int16 samples and their shape (the same recording under
  another name, source or file container).

A record with some flat (constant) leads is kept; ``flat_leads`` names them so that tasks
can mask them (a lead-level, not a record-level, defect). The Challenge has no patient
ids (``patient_id`` is None); group duplicates by ``signal_hash``.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import DataError, RecordError
from ..challenge_mat import ChallengeHeader, decode, load_samples, parse_header, read_challenge_mat, signal_hash  # noqa: F401 - re-exported
from ..records import DatasetIndex, validate_signal
from . import DATASETS
from ._common import RecordScan, Tree, hash_files, list_tree, parse_age, parse_sex
from ._header_roots import common_root, dirs_with_comment

log = logging.getLogger(__name__)

DATASET = "challenge2021"

#: record-name prefix (followed by digits) → official source folder of the 2021 release
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("HR", "ptbxl"), ("A", "cpsc_2018"), ("Q", "cpsc_2018_extra"), ("I", "st_petersburg_incart"),
    ("S", "ptb"), ("E", "georgia"),
)
#: Chapman-Shaoxing records are JS00001–JS10646, Ningbo JS10647 onwards
_LAST_CHAPMAN = 10646

REGIONS: dict[str, str] = {
    "cpsc_2018": "China", "cpsc_2018_extra": "China", "st_petersburg_incart": "Russia", "ptb": "Germany",
    "ptbxl": "Germany", "georgia": "USA", "chapman_shaoxing": "China", "ningbo": "China",
}

LABEL_COLUMNS: tuple[str, ...] = ("dx", "dx_abbrev", "signal_hash", "flat_leads")

_DX_TABLES = ("dx_mapping_scored.csv", "dx_mapping_unscored.csv")
#: how far above a root the mapping tables are looked for (``training/`` sits two below the release)
_TABLE_SEARCH_LEVELS = 3



def source_of(record: str) -> str | None:
    """Official source of a Challenge record name (``"JS20006"`` → ``"ningbo"``), or None."""
    if record.startswith("JS") and record[2:].isdigit():
        return "chapman_shaoxing" if int(record[2:]) <= _LAST_CHAPMAN else "ningbo"
    for prefix, source in _PREFIXES:
        if record.startswith(prefix) and record[len(prefix):].isdigit():
            return source
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class DxMapping:
    """SNOMED CT code → abbreviation, from the Challenge's ``dx_mapping_*.csv`` tables."""

    abbrev: dict[str, str]
    tables: tuple[Path, ...]


#: code column name → table year (2021 tables also count Chapman-Shaoxing and Ningbo records)
_CODE_COLUMNS = {"SNOMEDCTCode": 2021, "SNOMED CT Code": 2020}


def _table_year(path: Path) -> int | None:
    try:
        columns = pd.read_csv(path, nrows=0).columns
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    return next((_CODE_COLUMNS[c] for c in columns if c in _CODE_COLUMNS), None)


def _dx_table_places(root: Path) -> list[tuple[int, Path]]:
    """(levels above ``root``, path) of every place a mapping table may sit, existing or not: beside
    ``root``, inside ``evaluation-*`` folders, or up to :data:`_TABLE_SEARCH_LEVELS` levels above it."""
    places = []
    for level, folder in enumerate([root, *list(root.parents)[:_TABLE_SEARCH_LEVELS]]):
        for place in [folder, *sorted(folder.glob("evaluation*"))]:
            places += [(level, place / name) for name in _DX_TABLES]
    return places


def outside_files(root: Path) -> list[Path]:
    """The mapping tables :func:`find_dx_tables` may read above ``root`` (the index cache watches them)."""
    return [path for level, path in _dx_table_places(Path(root)) if level > 0]


def find_dx_tables(root: Path) -> list[Path]:
    """Mapping tables beside, inside ``evaluation-*`` folders of, or up to 3 levels above ``root``.

    2021 tables come first (they cover Chapman-Shaoxing and Ningbo), 2020 ones after as a fallback.
    """
    found: list[tuple[int, int, Path]] = []
    seen: set[Path] = set()
    for level, candidate in _dx_table_places(root):
        path = candidate.resolve()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        year = _table_year(path)
        if year is None:
            log.warning("%s: not a Challenge dx mapping table (no SNOMED code column), ignored", path)
            continue
        found.append((-year, level, path))
    return [path for *_, path in sorted(found)]


def load_dx_mapping(root: Path) -> DxMapping:
    """Merge the tables :func:`find_dx_tables` finds; the first table naming a code wins."""
    abbrev: dict[str, str] = {}
    tables = tuple(find_dx_tables(root))
    for path in tables:
        try:
            frame = pd.read_csv(path, dtype=str)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"unreadable dx mapping table: {exc}", path) from None
        code_col = next(c for c in frame.columns if c in _CODE_COLUMNS)
        for code, ab in zip(frame[code_col], frame.get("Abbreviation", frame[code_col]), strict=True):
            if isinstance(code, str) and code.strip():
                abbrev.setdefault(code.strip(), ab.strip() if isinstance(ab, str) else code.strip())
    return DxMapping(abbrev=abbrev, tables=tables)


def _is_challenge(comments: list[str]) -> bool | None:
    return True if any(re.match(r"dx\s*:", c, re.IGNORECASE) for c in comments) else None


def challenge_dirs(tree: Tree) -> list[Path]:
    """Folders whose first headers carry a ``#Dx:`` comment."""
    return dirs_with_comment(tree, _is_challenge)


def find_roots(data_dir: str | Path, tree: Tree | None = None) -> list[Path]:
    """The folder holding every Challenge-format folder below ``data_dir`` (any nesting), or ``[]``."""
    return common_root(challenge_dirs(tree if tree is not None else list_tree(data_dir)))


def _header_row(record_path: Path, mapping: DxMapping) -> dict[str, Any]:
    """The index row of the record at ``record_path`` (its header parsed here: a RecordError excludes it)."""
    return _row(parse_header(record_path.with_name(record_path.name + ".hea")), record_path, mapping)


def _row(header: ChallengeHeader, record_path: Path, mapping: DxMapping) -> dict[str, Any]:
    if "dx" not in header.comments:
        raise RecordError("header has no #Dx: comment", header.path)
    source = source_of(header.record)
    if source is None:
        log.warning("%s: record name %r has no known Challenge source prefix", header.path, header.record)
    val = load_samples(header)
    sig = decode(header, val)
    reason = validate_signal(sig)
    if reason is not None:
        gains = "/".join(f"{g:.10g}" for g in dict.fromkeys(header.gains))
        raise RecordError(f"{reason}; header ADC gain {gains}/{header.units[0]}", header.path)
    record_id = f"{source or 'unknown'}/{header.record}"
    dx = tuple(c.strip() for c in header.comments["dx"].split(",") if c.strip())
    flat = np.ptp(val, axis=1) == 0
    return {
        "key": f"{DATASET}/{record_id}",
        "record_id": record_id,
        "path": str(record_path),
        "format": "challenge_mat",
        "fs": header.fs,
        "n_samples": header.n_samples,
        "leads": ",".join(header.leads),
        "region": REGIONS.get(source or ""),
        "source": source or "unknown",
        "patient_id": None,
        "age": parse_age(header.comments.get("age")),
        "sex": parse_sex(header.comments.get("sex")),
        "content_hash": hash_files([header.path.with_name(header.signal_file)]),
        "dx": dx,
        "dx_abbrev": tuple(mapping.abbrev.get(c, c) for c in dx),
        "signal_hash": signal_hash(val),
        "flat_leads": tuple(lead for lead, f in zip(header.leads, flat, strict=True) if f),
    }


def scan(root: str | Path, strict: bool = False) -> DatasetIndex:
    """Index every Challenge record below ``root`` (folders with ``#Dx:`` headers, any nesting).

    Unusable records become exclusions (``strict=True`` raises instead); a second record
    with the same source and name is excluded as a duplicate. Codes missing from the
    mapping tables keep their code as abbreviation and are listed in
    ``records.attrs["unmapped_dx"]`` (code → record ids) and the log.
    """
    root = Path(root).expanduser().resolve()
    tree = list_tree(root)
    mapping = load_dx_mapping(root)
    records = RecordScan(root=root, strict=strict)
    seen: dict[str, dict[str, Any]] = {}
    for folder in challenge_dirs(tree):
        for name in (n for n in tree[folder] if n.endswith(".hea")):
            path = folder / name.removesuffix(".hea")
            records.add(path, functools.partial(_header_row, path, mapping))
            row = records.rows[-1] if records.rows else None
            if row is None or row["path"] != str(path):
                continue
            first = seen.setdefault(row["record_id"], row)
            if first is not row:
                records.rows.pop()
                same = "identical samples" if first["signal_hash"] == row["signal_hash"] else "different samples"
                records.exclude(path, f"duplicate record id {row['record_id']} ({same} to {first['path']})",
                                folder / name)
    unmapped: dict[str, list[str]] = {}
    for row in records.rows:
        for code in row["dx"]:
            if code not in mapping.abbrev:
                unmapped.setdefault(code, []).append(row["record_id"])
    if unmapped:
        log.warning("%s: SNOMED codes in no dx mapping table (kept as their code): %s", root,
                    ", ".join(f"{c} ({len(r)} records)" for c, r in sorted(unmapped.items())))
    index = records.index(dataset=DATASET, version=DATASETS.get(DATASET).version, label_columns=LABEL_COLUMNS,
                          missing_label_files=[] if mapping.tables else [root / t for t in _DX_TABLES])
    index.records.attrs["unmapped_dx"] = {c: tuple(r) for c, r in sorted(unmapped.items())}
    index.records.attrs["dx_tables"] = tuple(str(p) for p in mapping.tables)
    return index
