"""The Challenge 2020/2021 record format: a WFDB-like ``.hea`` parsed without wfdb and a MATLAB v4 ``.mat``.

Headers are parsed here, not by wfdb, because wfdb rejects every Georgia header (line 1 names the
record ``E00009.mat``) and the releases mix header conventions (units ``mV``/``mv``, gains from
200/mV to a wrong 2,000,000/mV). Samples come from ``scipy.io.loadmat`` (variable ``val``, leads ×
samples, int16), checked against the header's shape, first values and WFDB checksums. A format of
the reader (``format="challenge_mat"``); the dataset loader ``datasets.challenge`` indexes with it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RecordError
from .records import Signal, comment_fields, record_leads, to_millivolts

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FMT = re.compile(r"^(?P<fmt>\d+)(?:x\d+)?(?::\d+)?(?:\+\d+)?$")
_GAIN = re.compile(rf"^(?P<gain>{_NUMBER})(?:\((?P<baseline>[-+]?\d+)\))?(?:/(?P<units>\S+))?$")


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
        leads.append(" ".join(parts[8:]))
    if len(set(files)) != 1 or files[0] != f"{hea.stem}.mat":
        raise RecordError(f"signal lines name {sorted(set(files))}, expected only {hea.stem}.mat", hea)
    leads = list(record_leads(leads, hea))
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
