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

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...errors import DataError, RecordError
from ..reader import to_millivolts
from ..records import DatasetIndex, Signal, canonical_lead, validate_signal
from . import DATASETS
from ._common import RecordScan, Tree, comment_fields, hash_files, list_tree, parse_age, parse_sex
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

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FMT = re.compile(r"^(?P<fmt>\d+)(?:x\d+)?(?::\d+)?(?:\+\d+)?$")
_GAIN = re.compile(rf"^(?P<gain>{_NUMBER})(?:\((?P<baseline>[-+]?\d+)\))?(?:/(?P<units>\S+))?$")


def source_of(record: str) -> str | None:
    """Official source of a Challenge record name (``"JS20006"`` → ``"ningbo"``), or None."""
    if record.startswith("JS") and record[2:].isdigit():
        return "chapman_shaoxing" if int(record[2:]) <= _LAST_CHAPMAN else "ningbo"
    for prefix, source in _PREFIXES:
        if record.startswith(prefix) and record[len(prefix):].isdigit():
            return source
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeHeader:
    """What one Challenge ``.hea`` says, parsed without wfdb."""

    path: Path                       # the .hea file
    record: str                      # record name on line 1, without a ``.mat`` suffix
    fs: float
    n_samples: int
    signal_file: str                 # the one ``.mat`` every signal line names
    leads: tuple[str, ...]           # canonical names
    gains: tuple[float, ...]         # ADC units per physical unit
    baselines: tuple[int, ...]
    units: tuple[str, ...]
    initial_values: tuple[int, ...]
    checksums: tuple[int, ...]
    comments: dict[str, str]


def _field(parse: Callable[[str], Any], text: str, what: str, line: str, hea: Path) -> Any:
    try:
        return parse(text)
    except ValueError:
        raise RecordError(f"{what} {text!r} is not a number in line {line!r}", hea) from None


def parse_header(hea: str | Path) -> ChallengeHeader:
    """Parse a Challenge header; :class:`RecordError` names the file and the bad line."""
    hea = Path(hea)
    try:
        text = hea.read_text(encoding="latin-1")
    except OSError as exc:
        raise RecordError(f"cannot read header: {exc.strerror or exc}", hea) from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    body = [ln for ln in lines if not ln.startswith("#")]
    comments = comment_fields(ln[1:] for ln in lines if ln.startswith("#"))
    if not body:
        raise RecordError("header has no record line", hea)
    record_line, signal_lines = body[0], body[1:]
    tokens = record_line.split()
    name = tokens[0]
    if "/" in name:
        raise RecordError(f"multi-segment record line {record_line!r} is not a Challenge record", hea)
    record = name.removesuffix(".mat")
    if record != hea.stem:
        raise RecordError(f"record line names {name!r}, expected {hea.stem!r}", hea)
    if len(tokens) < 3:
        raise RecordError(f"record line {record_line!r} gives no sampling rate", hea)
    if len(tokens) < 4:
        raise RecordError(f"record line {record_line!r} gives no sample count", hea)
    n_sig = _field(int, tokens[1], "signal count", record_line, hea)
    fs = _field(float, re.split(r"[/(]", tokens[2])[0], "sampling rate", record_line, hea)
    n_samples = _field(int, tokens[3], "sample count", record_line, hea)
    if not (np.isfinite(fs) and fs > 0):
        raise RecordError(f"unknown or invalid sampling rate {tokens[2]!r}", hea)
    if n_sig < 1 or n_samples < 1:
        raise RecordError(f"record line {record_line!r} declares no samples", hea)
    if len(signal_lines) != n_sig:
        raise RecordError(f"record line declares {n_sig} signals, header has {len(signal_lines)} signal lines", hea)

    files, leads, gains, baselines, units, initial, checksums = [], [], [], [], [], [], []
    for line in signal_lines:
        parts = line.split()
        if len(parts) < 9:
            raise RecordError(f"signal line {line!r} has {len(parts)} fields, expected 9", hea)
        fmt, gain = _FMT.match(parts[1]), _GAIN.match(parts[2])
        if fmt is None or fmt["fmt"] != "16":
            raise RecordError(f"signal format {parts[1]!r} in line {line!r} is not 16 (int16 .mat)", hea)
        if gain is None:
            raise RecordError(f"ADC gain {parts[2]!r} is malformed in line {line!r}", hea)
        adc_gain = float(gain["gain"]) or 200.0  # WFDB: a gain of 0 means the default 200/unit
        if not (np.isfinite(adc_gain) and adc_gain > 0):
            raise RecordError(f"ADC gain {parts[2]!r} is not positive in line {line!r}", hea)
        adc_zero = _field(int, parts[4], "ADC zero", line, hea)
        files.append(parts[0])
        gains.append(adc_gain)
        baselines.append(int(gain["baseline"]) if gain["baseline"] is not None else adc_zero)
        units.append(gain["units"] or "mV")
        initial.append(_field(int, parts[5], "initial value", line, hea))
        checksums.append(_field(int, parts[6], "checksum", line, hea))
        leads.append(canonical_lead(" ".join(parts[8:])))
    if len(set(files)) != 1 or files[0] != f"{hea.stem}.mat":
        raise RecordError(f"signal lines name {sorted(set(files))}, expected only {hea.stem}.mat", hea)
    if len(set(leads)) != len(leads):
        raise RecordError(f"duplicate lead names {leads}", hea)
    return ChallengeHeader(
        path=hea, record=record, fs=fs, n_samples=n_samples,
        signal_file=files[0], leads=tuple(leads), gains=tuple(gains), baselines=tuple(baselines),
        units=tuple(units), initial_values=tuple(initial), checksums=tuple(checksums), comments=comments,
    )


def load_samples(header: ChallengeHeader) -> np.ndarray:
    """The raw ``val`` array (leads × samples), checked against the header.

    Checks shape, first sample and WFDB checksum (16-bit sum) of every lead, so a
    truncated, swapped or altered ``.mat`` is caught before it is decoded.
    """
    import scipy.io  # lazy: only needed when a signal is read

    mat = header.path.with_name(header.signal_file)
    try:
        content = scipy.io.loadmat(mat, variable_names=["val"])
    except FileNotFoundError:
        raise RecordError("signal file is missing", mat) from None
    except (ValueError, TypeError, OSError, EOFError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise RecordError(f"cannot read MATLAB file: {exc}", mat) from None
    if "val" not in content:
        raise RecordError("MATLAB file has no variable 'val'", mat)
    val = content["val"]
    expected = (len(header.leads), header.n_samples)
    if val.ndim != 2 or val.shape != expected:
        raise RecordError(f"'val' has shape {val.shape}, header says {expected} (leads, samples)", mat)
    if not np.issubdtype(val.dtype, np.number):
        raise RecordError(f"'val' has non-numeric dtype {val.dtype}", mat)
    if np.issubdtype(val.dtype, np.integer):
        sums = ((val.astype(np.int64).sum(axis=1) + 32768) % 65536) - 32768
        for i, lead in enumerate(header.leads):
            if sums[i] != header.checksums[i] or val[i, 0] != header.initial_values[i]:
                raise RecordError(
                    f"lead {lead}: samples do not match the header (checksum {int(sums[i])} vs {header.checksums[i]},"
                    f" first value {int(val[i, 0])} vs {header.initial_values[i]})", mat)
    return val


def decode(header: ChallengeHeader, val: np.ndarray) -> Signal:
    """Raw ``val`` → mV float32: ``(val - baseline) / gain`` per lead, then units → mV."""
    physical = (val.astype(np.float64) - np.asarray(header.baselines, dtype=np.float64)[:, None]) \
        / np.asarray(header.gains, dtype=np.float64)[:, None]
    data = to_millivolts(physical.T, list(header.units), header.path).T.astype(np.float32)
    return Signal(data=np.ascontiguousarray(data), fs=header.fs, leads=header.leads)


def read_challenge_mat(path: str | Path) -> Signal:
    """Read a Challenge record from its path without extension (header parsed here, samples via loadmat)."""
    path = Path(path)
    header = parse_header(path.with_name(path.name + ".hea"))
    return decode(header, load_samples(header))


def signal_hash(val: np.ndarray) -> str:
    """sha256 of a record's samples with their dtype and shape (independent of the file container)."""
    arr = np.ascontiguousarray(val)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


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


def find_dx_tables(root: Path) -> list[Path]:
    """Mapping tables beside, inside ``evaluation-*`` folders of, or up to 3 levels above ``root``.

    2021 tables come first (they cover Chapman-Shaoxing and Ningbo), 2020 ones after as a fallback.
    """
    found: list[tuple[int, int, Path]] = []
    seen: set[Path] = set()
    for level, folder in enumerate([root, *list(root.parents)[:_TABLE_SEARCH_LEVELS]]):
        for place in [folder, *sorted(folder.glob("evaluation*"))]:
            for name in _DX_TABLES:
                path = (place / name).resolve()
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
            records.add(path, lambda p=path: _row(parse_header(p.with_name(p.name + ".hea")), p, mapping))
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
