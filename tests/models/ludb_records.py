"""Read LUDB records (500 Hz, 12 leads, mV) and their per-lead wave annotations for model tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgfm_suite.data.records import canonical_lead

LUDB_FS = 500.0


def read_ludb(data_dir: Path, record: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """(leads, samples) float32 in mV and canonical lead names, read with wfdb."""
    import wfdb

    rec = wfdb.rdrecord(str(Path(data_dir) / "ludb" / "data" / str(record)))
    return rec.p_signal.T.astype(np.float32), tuple(canonical_lead(n) for n in rec.sig_name)


def annotated_intervals(data_dir: Path, record: int, lead: str = "ii") -> dict[str, float]:
    """Cardiologists' lead annotations → mean HR (bpm) and median QRS, PR, QT (ms).

    LUDB marks each wave as ``(``, peak symbol (``p``, ``N``, ``t``), ``)``; PR runs from the P
    onset to the QRS onset, QT from the QRS onset to the T offset of the same beat.
    """
    import wfdb

    ann = wfdb.rdann(str(Path(data_dir) / "ludb" / "data" / str(record)), lead)
    sym, at = np.asarray(ann.symbol), np.asarray(ann.sample)
    to_ms = 1000.0 / LUDB_FS
    qrs, pr, qt = [], [], []
    beats = np.flatnonzero(sym == "N")
    for k in beats:
        if not (0 < k < len(sym) - 1 and sym[k - 1] == "(" and sym[k + 1] == ")"):
            continue
        qrs.append((at[k + 1] - at[k - 1]) * to_ms)
        if k >= 4 and sym[k - 3] == "p" and sym[k - 4] == "(":
            pr.append((at[k - 1] - at[k - 4]) * to_ms)
        if k + 4 < len(sym) and sym[k + 3] == "t" and sym[k + 4] == ")":
            qt.append((at[k + 4] - at[k - 1]) * to_ms)

    def median(values: list[float]) -> float:
        return float(np.median(values)) if values else np.nan

    hr = 60.0 * LUDB_FS / np.diff(at[beats]).mean() if len(beats) > 1 else np.nan
    return {"hr": float(hr), "qrs": median(qrs), "pr": median(pr), "qt": median(qt)}
