"""Record-level contract shared by every dataset loader.

A dataset is indexed into one pandas DataFrame (one row per usable record) instead of
one Python object per record, so a 20k-record dataset stays cheap. Signals are read on
demand, always returned in mV as float32 ``(leads, samples)`` in canonical lead names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import RecordError

#: Canonical 12-lead order ("std" order in fm-specs.md).
STD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

_LEAD_ALIASES = {name.lower(): name for name in STD_LEADS}


def canonical_lead(name: str) -> str:
    """``'avr'``/``'AVR'``/``'aVR'`` → ``'aVR'``; unknown names are returned stripped."""
    key = name.strip()
    return _LEAD_ALIASES.get(key.lower(), key)


def record_leads(names: Iterable[str | None], path: str | Path) -> tuple[str, ...]:
    """A record's lead names, canonical; :class:`RecordError` naming ``path`` if one is unknown or repeated.

    A garbled signal line still parses, with its garbage as the lead name: accepted, it would leave the
    real lead missing, zero-filled by every model that reads it, a silent wrong answer.
    """
    leads = []
    for i, name in enumerate(names, start=1):
        lead = canonical_lead(name) if isinstance(name, str) else ""
        if lead not in STD_LEADS:
            raise RecordError(f"signal {i} names an unknown lead {name!r} (expected one of {', '.join(STD_LEADS)})",
                              path)
        leads.append(lead)
    repeated = sorted({lead for lead in leads if leads.count(lead) > 1}, key=STD_LEADS.index)
    if repeated:
        raise RecordError(f"lead {', '.join(repeated)} named more than once ({', '.join(leads)})", path)
    return tuple(leads)


#: Columns every loader's ``DatasetIndex.records`` must have (dataset label columns come on top).
RECORD_COLUMNS: tuple[str, ...] = (
    "key",          # "{dataset}/{record_id}", unique across the suite
    "record_id",    # unique within the dataset (Challenge: "{source}/{name}")
    "path",         # absolute path of the record without extension
    "format",       # "wfdb" or "challenge_mat" (header parsed by us, signal via scipy.io.loadmat)
    "fs",           # float, Hz
    "n_samples",    # int
    "leads",        # str, canonical lead names joined by ","
    "region",       # country, e.g. "Russia", "China", "USA", "Germany", "Brazil", "Spain"
    "source",       # sub-source, e.g. "cpsc_2018"; equals dataset id for single-source datasets
    "patient_id",   # str or None
    "age",          # float years, NaN if unknown
    "sex",          # "M", "F" or None
    "content_hash", # sha256 of the signal file bytes (duplicate detection across names/sources)
)


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A record left out, with the file and the reason (reported, never silent)."""

    record: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"record": self.record, "reason": self.reason}


@dataclass(slots=True)
class DatasetIndex:
    """What a loader returns for one dataset root."""

    dataset: str
    version: str
    root: Path
    records: pd.DataFrame
    excluded: list[Exclusion] = field(default_factory=list)
    #: label files the loader looked for and did not find (e.g. Brugada-HUCA metadata.csv)
    missing_label_files: list[str] = field(default_factory=list)
    #: dataset-level observations worth reporting (e.g. SNOMED codes missing from the mapping tables)
    notes: list[str] = field(default_factory=list)


def excluded_records(index: DatasetIndex, prepared: Iterable[Mapping[str, str]] = ()) -> list[dict[str, str]]:
    """Every record of a dataset left out, with its file and reason (what a cell's result lists and the report
    shows): at indexing (``index.excluded``) and, given a prepared set's exclusions (``{"record": key,
    "reason"}``), while preparing a model's input."""
    rows = [{"dataset": index.dataset, "stage": "index", "record": ex.record, "file": str(index.root / ex.record),
             "reason": ex.reason} for ex in index.excluded]
    prepared = list(prepared)
    if prepared:
        paths = dict(zip(index.records["key"], index.records["path"], strict=True))
        rows += [{"dataset": index.dataset, "stage": "prepare", "record": str(ex["record"]),
                  "file": str(paths.get(ex["record"], "")), "reason": str(ex["reason"])} for ex in prepared]
    return rows


@dataclass(frozen=True, slots=True)
class Signal:
    """One record's samples in mV, ``data`` float32 (leads, samples)."""

    data: np.ndarray
    fs: float
    leads: tuple[str, ...]


#: plausible ECG amplitude range in mV (median peak-to-peak over leads); outside it the gain is wrong
PLAUSIBLE_PTP_MV: tuple[float, float] = (0.05, 20.0)


def validate_signal(sig: Signal) -> str | None:
    """Return why a decoded record is unusable, or None. Flat single leads are allowed (masked later)."""
    data = sig.data
    if data.ndim != 2 or data.shape[1] == 0:
        return f"signal has shape {data.shape}, expected (leads, samples > 0)"
    if sig.fs <= 0 or not np.isfinite(sig.fs):
        return f"unknown or invalid sampling rate {sig.fs!r}"
    finite = np.isfinite(data)
    if not finite.all():
        bad = [sig.leads[i] for i in np.flatnonzero(~finite.all(axis=1))]
        if len(bad) == len(sig.leads) or (~finite).mean() > 0.05:
            return f"NaN/inf samples in leads {', '.join(bad)}"
    ptp = np.nanmax(data, axis=1) - np.nanmin(data, axis=1)
    live = ptp[ptp > 0]
    if live.size == 0:
        return "all leads are flat (constant)"
    median_ptp = float(np.median(live))
    lo, hi = PLAUSIBLE_PTP_MV
    if not lo <= median_ptp <= hi:
        return f"implausible amplitude: median peak-to-peak {median_ptp:.4g} mV (wrong gain?), expected {lo}–{hi} mV"
    return None


_TO_MV: dict[str, float] = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}


def to_millivolts(p_signal: np.ndarray, units: list[str], path: str | Path) -> np.ndarray:
    """Scale wfdb's physical ``(samples, leads)`` array to mV per lead, from each lead's ``units``."""
    factors = []
    for unit in units:
        factor = _TO_MV.get((unit or "mV").strip().lower())
        if factor is None:
            raise RecordError(f"unknown signal units {unit!r} (expected mV, uV or V)", path)
        factors.append(factor)
    return p_signal * np.asarray(factors, dtype=np.float64)


def comment_fields(comments: Iterable[str]) -> dict[str, str]:
    """``["<age>: 51", "Sex: F"]`` → ``{"age": "51", "sex": "F"}``: keys lower-cased, ``<>`` and spaces stripped.

    Lines without ``:`` are skipped; the first occurrence of a key wins.
    """
    out: dict[str, str] = {}
    for line in comments:
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip().strip("<>").strip().lower(), value.strip())
    return out
