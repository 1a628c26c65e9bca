"""Read one indexed record into a :class:`Signal` (mV, float32, canonical lead names).

wfdb does the decoding; this module adds the checks wfdb leaves out: it names the file
in every error, refuses a header without a sampling rate (wfdb silently assumes 250 Hz),
and compares the signal file size with the header's sample count *before* decoding
(wfdb fails on a short file with a bare reshape error and ignores extra bytes).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import wfdb
from wfdb.io import _header, _signal
from wfdb.io._signal import BYTES_PER_SAMPLE, COMPRESSED_FMTS
from wfdb.io.header import HeaderSyntaxError, parse_header_content, rx_record, rx_signal

from ..errors import RecordError
from .challenge_mat import read_challenge_mat
from .records import Signal, record_leads, to_millivolts, validate_signal

#: factor from a header's ``units`` field to mV


def header_path(record_path: str | Path) -> Path:
    """``…/rec`` → ``…/rec.hea`` (record paths in the index carry no extension)."""
    record_path = Path(record_path)
    return record_path.with_name(record_path.name + ".hea")


def read_header(record_path: str | Path) -> wfdb.Record:
    """Parse ``record_path + '.hea'`` into the ``wfdb.Record`` that ``wfdb.rdheader`` returns; errors name the file.

    Uses wfdb's own line grammar (``rx_record``, ``rx_signal``) and read defaults, but casts the
    fields with plain dicts: ``wfdb.rdheader`` spends ~1 ms per header in pandas lookups, which
    makes a 345k-record dataset take minutes (``tests/data/test_reader.py`` checks field-for-field,
    type-for-type equality with ``wfdb.rdheader`` on the real headers and on edge cases). Raises :class:`RecordError` for a
    missing or unparsable header, a multi-segment header, and a record line without sampling
    rate or sample count (wfdb would default fs to 250 Hz).
    """
    hea = header_path(record_path)
    try:
        text = hea.read_bytes().decode("ascii", errors="ignore")  # as wfdb.rdheader reads it
    except OSError as exc:
        raise RecordError(f"cannot read header: {exc.strerror or exc}", hea) from None
    lines, comments = parse_header_content(text)
    if not lines:
        raise RecordError("header has no record line", hea)
    fields = lines[0].split()
    if len(fields) < 3:
        raise RecordError(f"record line {lines[0]!r} has no sampling rate", hea)
    if len(fields) < 4:
        raise RecordError(f"record line {lines[0]!r} has no sample count", hea)
    try:
        header = _parse_header_lines(lines, comments)
    except (ValueError, TypeError, IndexError) as exc:  # wfdb's HeaderSyntaxError is a ValueError
        raise RecordError(f"unparsable header: {exc}", hea) from None
    if header is None:
        raise RecordError("multi-segment records are not supported", hea)
    if header.fs is None or not np.isfinite(header.fs) or header.fs <= 0:
        raise RecordError(f"unknown or invalid sampling rate {header.fs!r}", hea)
    if not header.n_sig or not header.file_name:
        raise RecordError("header lists no signals", hea)
    if len(header.file_name) != header.n_sig:
        raise RecordError(f"record line says {header.n_sig} signals, {len(header.file_name)} signal lines", hea)
    return header


@functools.cache
def _spec_table(kind: str) -> dict[str, tuple[Any, Any]]:
    """wfdb's ``RECORD_SPECS``/``SIGNAL_SPECS`` as ``field → (allowed_types, read_default)`` (read once)."""
    specs = _header.RECORD_SPECS if kind == "record" else _header.SIGNAL_SPECS
    return {f: (specs.loc[f, "allowed_types"], specs.loc[f, "read_default"]) for f in specs.index}


@functools.lru_cache(maxsize=4096)
def _parse_date(value: str) -> datetime.date:
    """A header's ``base_date`` (few distinct values per dataset; ``strptime`` is a tenth of a header's parse)."""
    return datetime.datetime.strptime(value, "%d/%m/%Y").date()


def _parse_header_lines(lines: list[str], comments: list[str]) -> wfdb.Record | None:
    """wfdb's ``rdheader`` field parsing without pandas in the loop; None for a multi-segment header."""
    match = rx_record.match(lines[0])
    if match is None:
        raise HeaderSyntaxError("invalid syntax in record line")
    rec: dict[str, Any] = match.groupdict()
    if rec.pop("n_seg"):
        return None
    for name, (types, default) in _spec_table("record").items():
        if name == "n_seg":
            continue
        value = rec[name]
        if value == "":
            rec[name] = default
        elif types == _header.int_types:
            rec[name] = int(value)
        elif types == _header.float_types:
            rec[name] = float(value)
            if name == "fs" and round(rec[name], 8) == float(int(rec[name])):
                rec[name] = int(rec[name])
        elif name == "base_time":
            rec[name] = _header.wfdb_strptime(value)
        elif name == "base_date":
            rec[name] = _parse_date(value)
    sig_specs = _spec_table("signal")
    sig: dict[str, list[Any]] = {name: [] for name in sig_specs}
    for line in lines[1:]:
        m = rx_signal.match(line)
        if m is None:
            raise HeaderSyntaxError("invalid syntax in signal line")
        raw = m.groupdict()
        for name, (types, default) in sig_specs.items():
            value = raw[name]
            if value == "":
                value = int(raw["adc_zero"]) if name == "baseline" and raw["adc_zero"] != "" else default
            elif types is _header.int_types:
                value = int(value)
            elif types is _header.float_types:
                value = float(value)
                if name == "adc_gain" and value == 0:
                    value = 200.0  # WFDB: a gain of 0 means 200
            sig[name].append(value)
    record = wfdb.Record(**rec, **sig, comments=[c.strip(" \t#") for c in comments])
    if rec["base_date"] and rec["base_time"]:
        record.base_datetime = datetime.datetime.combine(rec["base_date"], rec["base_time"])
    return record


def signal_files(header: wfdb.Record, record_dir: Path) -> list[Path]:
    """The distinct signal files a header names, in first-use order."""
    return [record_dir / name for name in dict.fromkeys(header.file_name)]


def signal_length_problem(header: wfdb.Record, record_dir: Path) -> tuple[Path, str] | None:
    """Compare each signal file's size with the header's sample count; return ``(file, reason)`` or None.

    Cheap (one ``stat`` per file), so scanners run it on every record. Compressed (FLAC)
    formats cannot be sized this way and are left to the decoder.
    """
    for path in signal_files(header, record_dir):
        chans = [i for i, name in enumerate(header.file_name) if name == path.name]
        fmt = header.fmt[chans[0]]
        if fmt in COMPRESSED_FMTS:
            continue
        if fmt not in BYTES_PER_SAMPLE:
            return path, f"unsupported WFDB signal format {fmt!r}"
        try:
            size = path.stat().st_size
        except OSError:
            return path, "signal file is missing"
        offset = header.byte_offset[chans[0]] or 0
        frame = sum((header.samps_per_frame[i] or 1) for i in chans) * BYTES_PER_SAMPLE[fmt]
        held = (size - offset) / frame
        if held != header.sig_len:
            return path, (f"holds {held:g} samples per lead, header says {header.sig_len} "
                          f"({'truncated' if held < header.sig_len else 'extra bytes'})")
    return None


def check_signal_length(header: wfdb.Record, record_path: str | Path) -> None:
    """:func:`signal_length_problem` as a :class:`RecordError` naming the signal file."""
    problem = signal_length_problem(header, Path(record_path).parent)
    if problem is not None:
        raise RecordError(problem[1], problem[0])


def decode_samples(header: wfdb.Record, record_path: str | Path) -> wfdb.Record:
    """Fill ``header`` (from :func:`read_header`, consumed) with ``p_signal`` as ``wfdb.rdrecord(physical=True)`` does.

    ``wfdb.rdrecord`` re-parses the header with ``rdheader`` (~1 ms of pandas lookups, two thirds of
    a CinC 2017 record's read time); this runs the rest of its single-segment path — wfdb's own
    ``_rd_segment`` decoder, frame smoothing and ``dac`` — on the header we already parsed.
    ``tests/data/test_reader.py`` checks the result is identical to ``wfdb.rdrecord`` (fields and
    samples, bit for bit) on real records and on every sample layout wfdb writes.
    """
    channels = list(range(header.n_sig))
    header.check_read_inputs(0, header.sig_len, channels, True, True, 64)
    header.e_d_signal = _signal._rd_segment(
        file_name=header.file_name, dir_name=str(Path(record_path).parent.absolute()), pn_dir=None,
        fmt=header.fmt, n_sig=header.n_sig, sig_len=header.sig_len, byte_offset=header.byte_offset,
        samps_per_frame=header.samps_per_frame, skew=header.skew, init_value=header.init_value,
        sampfrom=0, sampto=header.sig_len, channels=channels, ignore_skew=False, return_res=64,
    )
    header._arrange_fields(channels=channels, sampfrom=0, smooth_frames=True)
    header.dac(expanded=False, return_res=64, inplace=True)
    header.convert_dtype(True, 64, True)
    return header


def _row_get(row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key) if hasattr(row, "get") else None
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def read_signal(row: Mapping[str, Any]) -> Signal:
    """Decode one index row (``path``, ``format``, optional ``leads``/``fs``/``n_samples``) in mV.

    Lead names come from the row (the loader's canonical names, e.g. CinC 2017's ``ECG`` → ``I``)
    when present, else from the header; an unknown or repeated name is a :class:`RecordError`
    (:func:`record_leads`). A header that disagrees with the row means the file changed since the
    scan: :class:`RecordError`.
    """
    path = Path(row["path"])
    fmt = row.get("format", "wfdb")
    if fmt == "challenge_mat":
        return read_challenge_mat(path)
    if fmt != "wfdb":
        raise RecordError(f"unknown record format {fmt!r} (expected 'wfdb' or 'challenge_mat')", path)
    header = read_header(path)
    check_signal_length(header, path)
    hea = header_path(path)
    for key, got in (("fs", float(header.fs)), ("n_samples", int(header.sig_len))):
        want = _row_get(row, key)
        if want is not None and float(want) != float(got):
            raise RecordError(f"header says {key}={got:g}, index says {want} (file changed since the scan?)", hea)
    try:
        record = decode_samples(header, path)
    except (ValueError, OSError, IndexError) as exc:
        raise RecordError(f"cannot decode signal: {exc}", hea) from None
    data = to_millivolts(record.p_signal, record.units, hea).T.astype(np.float32)
    names = _row_get(row, "leads")
    leads = record_leads(names.split(",") if names else record.sig_name, hea)
    if len(leads) != data.shape[0]:
        raise RecordError(f"index lists {len(leads)} leads, header has {data.shape[0]}", hea)
    return Signal(data=np.ascontiguousarray(data), fs=float(record.fs), leads=leads)


def read_and_validate(row: Mapping[str, Any]) -> Signal:
    """:func:`read_signal`, then :func:`validate_signal`; an unusable record raises :class:`RecordError`."""
    sig = read_signal(row)
    reason = validate_signal(sig)
    if reason is not None:
        raise RecordError(reason, header_path(row["path"]) if row.get("format", "wfdb") == "wfdb" else row["path"])
    return sig
