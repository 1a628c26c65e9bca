"""Model-ready tensors: resampling, lead mapping, filters, normalisation, windows.

``InputSpec`` declares what a model expects; the primitives below are what the published
pipelines are built from. A model family whose official order of operations differs
composes its own ``prepare`` from these primitives (see ``ecgfm_suite.models``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
from scipy import signal as sps

from ..errors import SpecError
from .records import canonical_lead

Normalisation = Literal["none", "zscore_lead", "minmax_lead", "zscore_global", "minmax_global"]
Resampler = Literal["poly", "fft", "linear"]
MissingLeads = Literal["zero", "refuse"]
WindowMode = Literal["first", "all", "crops"]

NORMALISATIONS: tuple[str, ...] = ("none", "zscore_lead", "minmax_lead", "zscore_global", "minmax_global")


@dataclass(frozen=True, slots=True, kw_only=True)
class InputSpec:
    """What one model consumes; also part of the embedding-cache key."""

    fs: float
    leads: tuple[str, ...]
    window: int  # samples per window at ``fs``
    window_mode: WindowMode = "first"  # "all": non-overlapping windows; "crops": ``n_crops`` evenly spaced
    n_crops: int = 1
    aggregate: Literal["mean"] = "mean"  # how per-window embeddings become one per record
    bandpass: tuple[float, float] | None = None
    notch: float | None = None
    normalisation: Normalisation = "none"
    resampler: Resampler = "poly"
    missing_leads: MissingLeads = "zero"
    #: free-text name of the official pipeline when the family overrides the generic order
    pipeline: str = "generic"

    def __post_init__(self) -> None:
        if self.fs <= 0:
            raise SpecError(f"fs must be > 0, got {self.fs}")
        if self.window <= 0:
            raise SpecError(f"window must be > 0 samples, got {self.window}")
        if self.normalisation not in NORMALISATIONS:
            raise SpecError(f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        if not self.leads:
            raise SpecError("leads must not be empty")

    def to_dict(self) -> dict:
        return asdict(self)


def resample(x: np.ndarray, fs_in: float, fs_out: float, method: Resampler = "poly") -> np.ndarray:
    """Resample along the last axis. ``poly`` = polyphase (scipy.signal.resample_poly)."""
    if fs_in <= 0 or fs_out <= 0:
        raise SpecError(f"sampling rates must be > 0 (got {fs_in} → {fs_out})")
    if fs_in == fs_out:
        return np.asarray(x, dtype=np.float32)
    n_in = x.shape[-1]
    n_out = int(round(n_in * fs_out / fs_in))
    if method == "poly":
        frac = Fraction(fs_out / fs_in).limit_denominator(1000)
        y = sps.resample_poly(x, frac.numerator, frac.denominator, axis=-1)
        y = y[..., :n_out]
    elif method == "fft":
        y = sps.resample(x, n_out, axis=-1)
    elif method == "linear":
        t_in = np.arange(n_in) / fs_in
        t_out = np.arange(n_out) / fs_out
        y = np.stack([np.interp(t_out, t_in, row) for row in x.reshape(-1, n_in)]).reshape(*x.shape[:-1], n_out)
    else:
        raise SpecError(f"unknown resampler {method!r}")
    return np.asarray(y, dtype=np.float32)


def select_leads(
    x: np.ndarray, leads_in: tuple[str, ...] | list[str], leads_out: tuple[str, ...], missing: MissingLeads = "zero"
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder ``x`` (leads, samples) to ``leads_out``; returns (array, present-mask)."""
    index = {canonical_lead(name): i for i, name in enumerate(leads_in)}
    out = np.zeros((len(leads_out), x.shape[-1]), dtype=np.float32)
    mask = np.zeros(len(leads_out), dtype=bool)
    absent = []
    for j, name in enumerate(leads_out):
        i = index.get(canonical_lead(name))
        if i is None:
            absent.append(name)
            continue
        out[j] = x[i]
        mask[j] = True
    if absent and missing == "refuse":
        raise SpecError(f"record lacks leads {absent} (has {list(leads_in)}); missing-lead policy is 'refuse'")
    return out, mask


def bandpass(x: np.ndarray, fs: float, low: float, high: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass (second-order sections)."""
    high = min(high, 0.45 * fs)
    sos = sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    return np.asarray(sps.sosfiltfilt(sos, x, axis=-1), dtype=np.float32)


def notch(x: np.ndarray, fs: float, freq: float, quality: float = 30.0) -> np.ndarray:
    if freq >= fs / 2:
        return np.asarray(x, dtype=np.float32)
    b, a = sps.iirnotch(freq, quality, fs=fs)
    return np.asarray(sps.filtfilt(b, a, x, axis=-1), dtype=np.float32)


def normalise(x: np.ndarray, kind: Normalisation, eps: float = 1e-8) -> np.ndarray:
    """Per-lead or whole-array z-score / min-max ([-1, 1] per lead, [0, 1] global)."""
    x = np.asarray(x, dtype=np.float32)
    if kind == "none":
        return x
    axis = -1 if kind.endswith("_lead") else None
    if kind.startswith("zscore"):
        mu = x.mean(axis=axis, keepdims=True)
        sd = x.std(axis=axis, keepdims=True)
        return np.where(sd > 0, (x - mu) / (sd + eps), 0.0).astype(np.float32)
    lo = x.min(axis=axis, keepdims=True)
    hi = x.max(axis=axis, keepdims=True)
    if kind == "minmax_lead":
        return (2.0 * (x - lo) / (hi - lo + eps) - 1.0).astype(np.float32)
    if kind == "minmax_global":
        return ((x - lo) / (hi - lo + eps)).astype(np.float32)
    raise SpecError(f"unknown normalisation {kind!r}")


def windows(x: np.ndarray, length: int, mode: WindowMode = "first", n_crops: int = 1) -> np.ndarray:
    """Cut (leads, samples) into (n_windows, leads, length); short records are zero-padded."""
    n = x.shape[-1]
    if n < length:
        pad = np.zeros((*x.shape[:-1], length - n), dtype=np.float32)
        return np.concatenate([x, pad], axis=-1)[None].astype(np.float32)
    if mode == "first":
        starts = [0]
    elif mode == "all":
        starts = list(range(0, n - length + 1, length))
    elif mode == "crops":
        starts = [int(s) for s in np.linspace(0, n - length, n_crops).round()]
    else:
        raise SpecError(f"unknown window mode {mode!r}")
    return np.stack([x[..., s : s + length] for s in starts]).astype(np.float32)


def prepare(x: np.ndarray, fs: float, leads: tuple[str, ...] | list[str], spec: InputSpec) -> np.ndarray:
    """Generic pipeline: leads → filters (native fs) → resample → normalise → windows."""
    y, _ = select_leads(x, leads, spec.leads, spec.missing_leads)
    y = np.nan_to_num(y, nan=0.0)
    if spec.notch is not None:
        y = notch(y, fs, spec.notch)
    if spec.bandpass is not None:
        y = bandpass(y, fs, *spec.bandpass)
    y = resample(y, fs, spec.fs, spec.resampler)
    y = normalise(y, spec.normalisation)
    return windows(y, spec.window, spec.window_mode, spec.n_crops)
