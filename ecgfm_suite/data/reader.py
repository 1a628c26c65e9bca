"""Read one indexed record into a :class:`Signal` (mV, float32, canonical lead names).

wfdb does the decoding; this module adds the checks wfdb leaves out: it names the file
in every error, refuses a header without a sampling rate (wfdb silently assumes 250 Hz),
and compares the signal file size with the header's sample count *before* decoding
(wfdb fails on a short file with a bare reshape error and ignores extra bytes).

One use of wfdb's private internals is kept, for a measured reason: :func:`decode_samples` runs
``wfdb.rdrecord``'s single-segment path itself (``wfdb.io._signal._rd_segment``, then
``Record._arrange_fields``) on the header :func:`read_header` already parsed, because the public
``wfdb.rdrecord`` always parses the header again with ``wfdb.rdheader``, which looks up every field of
every signal line in a pandas table. Measured 2026-12-07 23:49 UTC (wfdb 4.3.1, 2-core machine at load
4.5–5 from other sessions, min of 3 passes), per record, header + length check + decode:
CinC 2017 (1 lead, 600 records) 0.67 ms with ``decode_samples`` vs 2.68 ms with ``rdrecord``; PTB-XL
(12 leads, 300) 0.77 vs 8.47 ms; LUDB (12 leads, 200) 1.26 vs 9.06 ms. For scale, the README's cold
read + prepare of CinC 2017 is 489 rec/s in one process, 2.0 ms per record in all. Headers alone:
:func:`read_header` 0.15 / 0.21 ms vs ``wfdb.rdheader`` 1.67 / 7.86 ms (CinC 2017 / PTB-XL), which is
why headers are parsed here, with wfdb's public line grammar (``wfdb.io.header``).

``tests/test_upstream_internals.py`` pins the private names (signatures, and samples and fields
identical to ``rdrecord`` on records wfdb writes); a wfdb release that changes them fails there, saying
what to re-check. The header field table and the signal-format sizes below are this module's own (from
the WFDB header and signal specifications), checked against ``wfdb.rdheader`` and ``wfdb.wrsamp`` by
the same tests, so they need no private wfdb names.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import wfdb
from wfdb.io import _signal  # private: _rd_segment, see the module docstring
from wfdb.io.header import HeaderSyntaxError, parse_header_content, rx_record, rx_signal, wfdb_strptime

from ..errors import RecordError
from .challenge_mat import read_challenge_mat
from .records import Signal, record_leads, to_millivolts, validate_signal

#: bytes per sample of each WFDB signal format (WFDB ``signal(5)``); formats 212, 310 and 311 pack
#: 2 or 3 samples into 3 or 4 bytes
BYTES_PER_SAMPLE: dict[str, float] = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2,
                                      "212": 1.5, "310": 4 / 3, "311": 4 / 3}
#: FLAC-compressed formats: a file's size says nothing about its sample count
COMPRESSED_FMTS = frozenset({"508", "516", "524"})


def header_path(record_path: str | Path) -> Path:
    """``…/rec`` → ``…/rec.hea`` (record paths in the index carry no extension)."""
    record_path = Path(record_path)
    return record_path.with_name(record_path.name + ".hea")


def read_header(record_path: str | Path) -> wfdb.Record:
    """Parse ``record_path + '.hea'`` into the ``wfdb.Record`` that ``wfdb.rdheader`` returns; errors name the file.

    Uses wfdb's own line grammar (``rx_record``, ``rx_signal``) and read defaults, but casts the
    fields with plain dicts instead of ``wfdb.rdheader``'s pandas lookups (several times faster, see
    the module docstring; a 345k-record dataset would otherwise take minutes).
    ``tests/data/test_reader.py`` checks field-for-field, type-for-type equality with
    ``wfdb.rdheader`` on the real headers and on edge cases. Raises :class:`RecordError` for a
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


@functools.lru_cache(maxsize=4096)
def _parse_date(value: str) -> datetime.date:
    """A header's ``base_date`` (few distinct values per dataset; ``strptime`` is a tenth of a header's parse)."""
    return datetime.datetime.strptime(value, "%d/%m/%Y").date()


#: record-line fields (but ``n_seg``) → (cast, value when absent), as ``wfdb.rdheader`` reads them
_RECORD_FIELDS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "record_name": (str, None), "n_sig": (int, None), "fs": (float, 250), "counter_freq": (float, None),
    "base_counter": (float, None), "sig_len": (int, None), "base_time": (wfdb_strptime, None),
    "base_date": (_parse_date, None),
}
#: signal-line fields → (cast, value when absent), as ``wfdb.rdheader`` reads them (a missing baseline
#: is the ADC zero when that is given)
_SIGNAL_FIELDS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "file_name": (str, None), "fmt": (str, None), "samps_per_frame": (int, 1), "skew": (int, None),
    "byte_offset": (int, None), "adc_gain": (float, 200.0), "baseline": (int, 0), "units": (str, "mV"),
    "adc_res": (int, None), "adc_zero": (int, None), "init_value": (int, None), "checksum": (int, None),
    "block_size": (int, None), "sig_name": (str, None),
}


def _parse_header_lines(lines: list[str], comments: list[str]) -> wfdb.Record | None:
    """wfdb's ``rdheader`` field parsing without pandas in the loop; None for a multi-segment header."""
    match = rx_record.match(lines[0])
    if match is None:
        raise HeaderSyntaxError("invalid syntax in record line")
    raw_rec = match.groupdict()
    if raw_rec["n_seg"]:
        return None
    rec: dict[str, Any] = {}
    for name, (cast, default) in _RECORD_FIELDS.items():
        value = raw_rec[name]
        rec[name] = default if value == "" else cast(value)
    if isinstance(rec["fs"], float) and round(rec["fs"], 8) == float(int(rec["fs"])):
        rec["fs"] = int(rec["fs"])
    sig: dict[str, list[Any]] = {name: [] for name in _SIGNAL_FIELDS}
    for line in lines[1:]:
        m = rx_signal.match(line)
        if m is None:
            raise HeaderSyntaxError("invalid syntax in signal line")
        raw = m.groupdict()
        for name, (cast, default) in _SIGNAL_FIELDS.items():
            value = raw[name]
            if value == "":
                parsed = int(raw["adc_zero"]) if name == "baseline" and raw["adc_zero"] != "" else default
            else:
                parsed = cast(value)
                if name == "adc_gain" and parsed == 0:
                    parsed = 200.0  # WFDB: a gain of 0 means 200
            sig[name].append(parsed)
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

    ``wfdb.rdrecord`` parses the header again with ``rdheader`` (most of a record's read time, see the
    module docstring); this runs the rest of its single-segment path — wfdb's private ``_rd_segment``
    decoder and ``Record._arrange_fields`` (frame smoothing), then ``dac`` — on the header we already
    parsed. ``tests/data/test_reader.py`` checks the result is identical to ``wfdb.rdrecord`` (fields
    and samples, bit for bit) on real records and on every sample layout wfdb writes;
    ``tests/test_upstream_internals.py`` pins the private names.
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
    if fmt == "hdf5":  # CODE-15%'s Zenodo release: one exam's row of an HDF5 part
        from .code15_hdf5 import read_hdf5_record

        return read_hdf5_record(row)
    if fmt != "wfdb":
        raise RecordError(f"unknown record format {fmt!r} (expected 'wfdb', 'challenge_mat' or 'hdf5')", path)
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
