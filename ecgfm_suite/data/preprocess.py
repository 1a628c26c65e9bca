"""Model-ready tensors: resampling, lead mapping, filters, normalisation, windows.

``InputSpec`` declares what a model expects; the primitives below are what the published
pipelines are built from. A model family whose official order of operations differs
composes its own ``prepare`` from these primitives (see ``ecgfm_suite.models``).

Every primitive takes and returns float32 arrays with time on the last axis, works on
``(leads, samples)`` and on stacks of them, and raises :class:`SpecError` for a bad option.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike
from scipy import signal as sps

from ..errors import SpecError
from .records import canonical_lead

Normalisation = Literal["none", "zscore_lead", "minmax_lead", "zscore_global", "minmax_global"]
Resampler = Literal["poly", "fft", "linear"]
MissingLeads = Literal["zero", "refuse"]
WindowMode = Literal["first", "all", "crops"]
#: record-level window policy: which windows of a record are embedded (see :class:`RecordWindows`)
WindowPolicy = Literal["cover", "official", "first"]
Aggregate = Literal["mean"]

NORMALISATIONS: tuple[str, ...] = get_args(Normalisation)
RESAMPLERS: tuple[str, ...] = get_args(Resampler)
MISSING_LEADS: tuple[str, ...] = get_args(MissingLeads)
WINDOW_MODES: tuple[str, ...] = get_args(WindowMode)
WINDOW_POLICIES: tuple[str, ...] = get_args(WindowPolicy)
#: the policy of a spec that names none (``InputSpec.window_policy`` None), as ``--ecgfm-windows`` defaults
DEFAULT_WINDOW_POLICY: WindowPolicy = "cover"
AGGREGATES: tuple[str, ...] = get_args(Aggregate)

#: Bump whenever a primitive's output changes for the same input: prepared-array caches key on it.
PIPELINE_VERSION = 2

#: Largest polyphase up/down factor used as is; a rate pair needing more (e.g. 499.7 → 500 Hz) is
#: approximated to this denominator, which keeps the filter short (its length grows with the factor).
MAX_POLY_FACTOR = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class InputSpec:
    """What one model consumes; also part of the embedding-cache key."""

    fs: float
    leads: tuple[str, ...]
    window: int  # samples per window at ``fs``
    window_mode: WindowMode = "first"  # "all": non-overlapping windows; "crops": ``n_crops`` evenly spaced
    n_crops: int = 1
    #: which windows of a record are embedded: ``cover`` (tiles over the whole record), ``official`` (the
    #: family's test-time protocol: ``window_mode``), ``first``; None: the run's ``--ecgfm-windows``
    window_policy: WindowPolicy | None = None
    aggregate: Aggregate = "mean"  # how per-window embeddings become one per record
    bandpass: tuple[float, float] | None = None
    notch: float | None = None
    normalisation: Normalisation = "none"
    resampler: Resampler = "poly"
    missing_leads: MissingLeads = "zero"
    #: (wanted, substitute) lead pairs for records that lack the wanted lead (lead-agnostic models)
    lead_fallbacks: tuple[tuple[str, str], ...] = ()
    #: free-text name of the official pipeline when the family overrides the generic order
    pipeline: str = "generic"

    def __post_init__(self) -> None:
        # YAML and JSON give lists; the spec is hashed and compared, so store tuples
        object.__setattr__(self, "leads", tuple(self.leads))
        object.__setattr__(self, "lead_fallbacks", tuple(tuple(pair) for pair in self.lead_fallbacks))
        if any(len(pair) != 2 for pair in self.lead_fallbacks):
            raise SpecError(f"lead_fallbacks must be (wanted, substitute) pairs, got {self.lead_fallbacks}",
                            "InputSpec.lead_fallbacks")
        if self.bandpass is not None:
            object.__setattr__(self, "bandpass", tuple(float(f) for f in self.bandpass))
        if not self.fs > 0:
            raise SpecError(f"fs must be > 0, got {self.fs}", "InputSpec.fs")
        if self.window <= 0:
            raise SpecError(f"window must be > 0 samples, got {self.window}", "InputSpec.window")
        if not self.leads:
            raise SpecError("leads must not be empty", "InputSpec.leads")
        canonical = [canonical_lead(name) for name in self.leads]
        if len(set(canonical)) != len(canonical):
            raise SpecError(f"leads repeat a lead: {list(self.leads)}", "InputSpec.leads")
        for name, value, allowed in (
            ("window_mode", self.window_mode, WINDOW_MODES),
            *([("window_policy", self.window_policy, WINDOW_POLICIES)] if self.window_policy is not None else []),
            ("aggregate", self.aggregate, AGGREGATES),
            ("normalisation", self.normalisation, NORMALISATIONS),
            ("resampler", self.resampler, RESAMPLERS),
            ("missing_leads", self.missing_leads, MISSING_LEADS),
        ):
            _check_option(name, value, allowed, "InputSpec")
        if self.n_crops < 1:
            raise SpecError(f"n_crops must be >= 1, got {self.n_crops}", "InputSpec.n_crops")
        if self.bandpass is not None:
            low, high = self.bandpass  # a wrong arity fails here with Python's own message
            if not 0 <= low < high:
                raise SpecError(f"bandpass must be (low, high) with 0 <= low < high, got {self.bandpass}",
                                "InputSpec.bandpass")
        if self.notch is not None and not self.notch > 0:
            raise SpecError(f"notch must be > 0 Hz, got {self.notch}", "InputSpec.notch")

    @property
    def policy(self) -> WindowPolicy:
        """The window policy in force: the spec's own, else the default (``cover``)."""
        return self.window_policy or DEFAULT_WINDOW_POLICY

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict`; an unknown key is a typo and fails, naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown InputSpec keys {unknown} (known: {sorted(known)})", "InputSpec")
        return cls(**data)


def _check_option(name: str, value: object, allowed: tuple[str, ...], owner: str) -> None:
    if value not in allowed:
        raise SpecError(f"{name} must be one of {allowed}, got {value!r}", f"{owner}.{name}")


def _rate_ratio(fs_in: float, fs_out: float) -> Fraction:
    """fs_out/fs_in as a fraction, exact for rates given to 1e-6 Hz (300 → 500 Hz = 5/3)."""
    exact = Fraction(fs_out).limit_denominator(10**6) / Fraction(fs_in).limit_denominator(10**6)
    if max(exact.numerator, exact.denominator) <= MAX_POLY_FACTOR:
        return exact
    return exact.limit_denominator(MAX_POLY_FACTOR)


@lru_cache(maxsize=64)
def _poly_filter(up: int, down: int) -> np.ndarray:
    """The anti-aliasing FIR ``resample_poly`` designs by default (Kaiser β=5, 20·max(up, down) + 1 taps),
    designed once per rate pair instead of once per record."""
    max_rate = max(up, down)
    taps = sps.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)
    taps.flags.writeable = False  # shared between calls; scipy copies it before scaling
    return taps


def resample(x: np.ndarray, fs_in: float, fs_out: float, method: Resampler = "poly") -> np.ndarray:
    """Resample along the last axis to exactly ``round(n · fs_out / fs_in)`` samples, float32.

    ``poly``: polyphase FIR (``scipy.signal.resample_poly``, the anti-aliasing default of most
    published pipelines); ``fft``: ``scipy.signal.resample`` (periodic, as HuBERT-ECG, ST-MEM and
    ECG-JEPA use); ``linear``: linear interpolation on the time grid (ECG-FM's ``interp1d``).
    """
    _check_option("method", method, RESAMPLERS, "resample")
    if not (fs_in > 0 and fs_out > 0 and np.isfinite(fs_in) and np.isfinite(fs_out)):
        raise SpecError(f"sampling rates must be finite and > 0, got {fs_in} → {fs_out}", "resample")
    x = np.asarray(x, dtype=np.float32)
    if fs_in == fs_out:
        return x
    n_in = x.shape[-1]
    n_out = round(n_in * fs_out / fs_in)
    if n_in == 0 or n_out == 0:
        return np.zeros((*x.shape[:-1], n_out), dtype=np.float32)
    if method == "poly":
        ratio = _rate_ratio(fs_in, fs_out)
        up, down = ratio.numerator, ratio.denominator
        y = sps.resample_poly(x, up, down, axis=-1, window=_poly_filter(up, down))
        if y.shape[-1] < n_out:  # only when the ratio was approximated: hold the last sample
            y = np.concatenate([y, np.repeat(y[..., -1:], n_out - y.shape[-1], axis=-1)], axis=-1)
        y = y[..., :n_out]
    elif method == "fft":
        y = sps.resample(x, n_out, axis=-1)
    else:
        pos = np.arange(n_out) * (fs_in / fs_out)  # output instants in input-sample units
        i0 = np.minimum(pos.astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        frac = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
        y = x[..., i0] * (1.0 - frac) + x[..., i1] * frac
    return np.ascontiguousarray(y, dtype=np.float32)


def lead_sources(leads_in: Sequence[str], leads_out: Sequence[str], fallbacks: tuple[tuple[str, str], ...] = (),
                 *, path: str | None = None) -> list[int | None]:
    """For each of ``leads_out``, the index of the record lead (``leads_in``) it is read from, its fallback
    substitute's where the record lacks it, or None: which of a record's leads a model reads."""
    index: dict[str, int] = {}
    for i, name in enumerate(leads_in):
        lead = canonical_lead(name)
        if lead in index:
            raise SpecError(f"lead {lead!r} appears twice in the record's leads {list(leads_in)}", path)
        index[lead] = i
    substitute = {canonical_lead(a): canonical_lead(b) for a, b in fallbacks}
    sources: list[int | None] = []
    for name in leads_out:
        lead = canonical_lead(name)
        own = index.get(lead)
        sources.append(index.get(substitute.get(lead, "")) if own is None else own)
    return sources


def select_leads(
    x: np.ndarray,
    leads_in: tuple[str, ...] | list[str],
    leads_out: tuple[str, ...],
    missing: MissingLeads = "zero",
    *,
    path: str | None = None,
    fallbacks: tuple[tuple[str, str], ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Reorder ``x`` (leads, samples) to ``leads_out`` by canonical name; returns (array, present-mask).

    ``fallbacks`` pairs (wanted, substitute): a lead-agnostic single-lead model reading lead II takes
    lead I from a record that has no lead II (e.g. CinC 2017's AliveCor recordings).
    A lead the record lacks is zero-filled with mask False (``missing="zero"``) or refused with a
    :class:`SpecError` naming the absent leads and the record's leads (``"refuse"``). NaN/inf
    samples become 0; a lead that is then constant (flat, all-NaN, disconnected) is masked False
    but keeps its value, as the official pipelines feed it (the normalisations map it to 0).
    ``path`` names the record in errors.
    """
    _check_option("missing", missing, MISSING_LEADS, "select_leads")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != len(leads_in):
        raise SpecError(f"signal of shape {x.shape} does not match {len(leads_in)} lead names {list(leads_in)}",
                        path)
    source = lead_sources(leads_in, leads_out, fallbacks, path=path)
    absent = [name for name, i in zip(leads_out, source, strict=True) if i is None]
    if absent and missing == "refuse":
        raise SpecError(f"record lacks leads {absent} (has {list(leads_in)}); missing-lead policy is 'refuse'", path)
    present = np.array([i is not None for i in source], dtype=bool)
    out = np.zeros((len(leads_out), x.shape[-1]), dtype=np.float32)
    out[present] = x[[i for i in source if i is not None]]
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0, copy=False)
    if out.shape[-1]:
        present &= out.max(axis=-1) > out.min(axis=-1)
    return out, present


@lru_cache(maxsize=64)
def _butter_sos(order: int, low: float, high: float, fs: float) -> np.ndarray:
    if low > 0:
        return sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    return sps.butter(order, high, btype="lowpass", fs=fs, output="sos")


def _padlen(n: int, default: int) -> int | None:
    """scipy's default edge padding, shortened for records shorter than it (scipy would raise)."""
    return None if n > default else max(n - 1, 0)


def bandpass(x: np.ndarray, fs: float, low: float, high: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass (second-order sections); ``low=0`` gives a low-pass.

    ``high`` is capped at 0.45·fs (a 47 Hz edge on 100 Hz data becomes 45 Hz): a Butterworth
    edge at or above Nyquist cannot be designed.
    """
    if not 0 <= low < high or order < 1:
        raise SpecError(f"band-pass needs 0 <= low < high and order >= 1, got ({low}, {high}), order {order}",
                        "bandpass")
    high = min(high, 0.45 * fs)
    if high <= low:
        raise SpecError(f"band-pass low edge {low} Hz is above 0.45·fs = {0.45 * fs:g} Hz", "bandpass")
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] < 2:
        return x
    sos = _butter_sos(int(order), float(low), float(high), float(fs))
    padlen = _padlen(x.shape[-1], 3 * (2 * len(sos) + 1))
    return np.asarray(sps.sosfiltfilt(sos, x, axis=-1, padlen=padlen), dtype=np.float32)


@lru_cache(maxsize=16)
def _notch_ba(freq: float, quality: float, fs: float) -> tuple[np.ndarray, np.ndarray]:
    return sps.iirnotch(freq, quality, fs=fs)


def notch(x: np.ndarray, fs: float, freq: float, quality: float = 30.0) -> np.ndarray:
    """Zero-phase IIR notch (``iirnotch`` + ``filtfilt``, as ECGFounder); a no-op at or above Nyquist."""
    if not freq > 0 or not quality > 0:
        raise SpecError(f"notch needs freq > 0 and quality > 0, got {freq} Hz, Q={quality}", "notch")
    x = np.asarray(x, dtype=np.float32)
    if freq >= fs / 2 or x.shape[-1] < 2:
        return x
    b, a = _notch_ba(float(freq), float(quality), float(fs))
    padlen = _padlen(x.shape[-1], 3 * max(len(a), len(b)))
    return np.asarray(sps.filtfilt(b, a, x, axis=-1, padlen=padlen), dtype=np.float32)


def normalise(x: np.ndarray, kind: Normalisation, eps: float = 1e-8) -> np.ndarray:
    """Scale each lead (``*_lead``) or each (leads, samples) array (``*_global``).

    z-score → mean 0, sd 1; ``minmax_lead`` → [-1, 1] (HuBERT-ECG); ``minmax_global`` → [0, 1]
    (MERL). A constant lead/array maps to 0 instead of dividing by ~0. On a stack of windows
    ``(n, leads, samples)`` the ``*_global`` kinds scale each window on its own (ST-MEM per crop).
    """
    _check_option("kind", kind, NORMALISATIONS, "normalise")
    x = np.asarray(x, dtype=np.float32)
    if kind == "none" or x.size == 0:
        return x
    axis: int | tuple[int, int] = -1 if kind.endswith("_lead") or x.ndim == 1 else (-2, -1)
    lo = x.min(axis=axis, keepdims=True)
    hi = x.max(axis=axis, keepdims=True)
    varying = hi > lo  # exact test: float32 std of a constant need not be exactly 0
    if kind.startswith("zscore"):
        mu = x.mean(axis=axis, keepdims=True, dtype=np.float64)
        sd = x.std(axis=axis, keepdims=True, dtype=np.float64)
        y = (x - mu) / (sd + eps)
    elif kind == "minmax_lead":
        y = 2.0 * (x - lo) / (hi - lo + eps) - 1.0
    else:
        y = (x - lo) / (hi - lo + eps)
    return np.where(varying, y, 0.0).astype(np.float32)


def windows(x: np.ndarray, length: int, mode: WindowMode = "first", n_crops: int = 1) -> np.ndarray:
    """Cut (..., samples) into (n_windows, ..., length).

    ``first``: the first window; ``all``: every non-overlapping window from the start (a tail
    shorter than ``length`` is dropped); ``crops``: ``n_crops`` windows with evenly spaced starts
    from the first to the last possible one. A record shorter than ``length`` gives one window,
    zero-padded at the end.
    """
    _check_option("mode", mode, WINDOW_MODES, "windows")
    if length <= 0 or n_crops < 1:
        raise SpecError(f"windows needs length > 0 and n_crops >= 1, got {length}, {n_crops}", "windows")
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[-1]
    if n <= length:
        pad = [(0, 0)] * (x.ndim - 1) + [(0, length - n)]
        return np.pad(x, pad)[None]
    if mode == "first":
        return np.ascontiguousarray(x[None, ..., :length])
    if mode == "all":
        k = n // length
        stacked = x[..., : k * length].reshape(*x.shape[:-1], k, length)
        return np.ascontiguousarray(np.moveaxis(stacked, -2, 0))
    starts = np.linspace(0, n - length, n_crops).round().astype(int)
    return np.stack([x[..., s : s + length] for s in starts])


def prepare(x: np.ndarray, fs: float, leads: tuple[str, ...] | list[str], spec: InputSpec) -> np.ndarray:
    """Generic pipeline: leads (NaN → 0) → notch, band-pass (native fs) → resample → normalise → windows.

    Normalisation is over the whole record, before windowing (ECG-FM's per-lead z-score).
    """
    y, _ = select_leads(x, leads, spec.leads, spec.missing_leads, fallbacks=spec.lead_fallbacks)
    if spec.notch is not None:
        y = notch(y, fs, spec.notch)
    if spec.bandpass is not None:
        y = bandpass(y, fs, *spec.bandpass)
    y = resample(y, fs, spec.fs, spec.resampler)
    y = normalise(y, spec.normalisation)
    return windows(y, spec.window, spec.window_mode, spec.n_crops)


# -- record-level window policy ------------------------------------------------------------------

#: ``(data (leads, samples) mV, fs, leads) -> windows (n_windows, *window_shape)``, e.g. ``encoder.prepare``
PrepareFn = Callable[[np.ndarray, float, Sequence[str]], np.ndarray]


def tile_count(n: ArrayLike, length: ArrayLike) -> np.ndarray:
    """Windows of ``length`` samples that ``cover`` puts on ``n`` samples: ⌈n / length⌉, at least 1 (a
    record shorter than a window is one padded window); elementwise, so a whole index is counted at once."""
    return np.maximum(1, -(-np.asarray(n, dtype=np.int64) // np.asarray(length, dtype=np.int64)))


def tile_starts(n: int, length: int) -> np.ndarray:
    """Starts of the ``cover`` windows of ``length`` samples on ``n`` samples: 0, length, 2·length, … and the
    last aligned to the record's end (overlapping its neighbour), so that no tail is dropped; an exact
    multiple gives disjoint tiles, a record no longer than a window gives one window at 0."""
    if length <= 0:
        raise SpecError(f"tile length must be > 0 samples, got {length}", "tile_starts")
    starts = np.arange(int(tile_count(n, length)), dtype=np.int64) * length
    starts[-1] = max(n - length, 0)
    return starts


def native_length(fs: float, spec: InputSpec) -> int:
    """Samples at the record's rate ``fs`` whose resampling gives at least one window at ``spec.fs``.

    A ``cover`` tile is cut at the record's own rate and handed to the family's pipeline whole, as a
    record of one window's duration, so that every official order of operations (filter or normalise
    before or after resampling) stays as it is. Families size their output ``round`` or ``int`` of
    ``n · fs_out / fs_in`` (either float order): the smallest ``n`` satisfying all of them, so no tile
    comes back a sample short and zero-padded (one sample longer than ``window · fs / spec.fs`` at most).
    """
    if fs == spec.fs:
        return spec.window
    n = max(1, math.ceil(spec.window * fs / spec.fs - 1e-9))
    while min(int(n * spec.fs / fs), int(n * (spec.fs / fs))) < spec.window:
        n += 1
    return n


def expected_window_counts(n_samples: np.ndarray, fs: np.ndarray, spec: InputSpec) -> np.ndarray | None:
    """Windows per record under ``spec.policy`` from the records' lengths and rates alone (no signal read),
    for cache keys; None for ``official``, whose count only the family's own pipeline knows."""
    if spec.policy == "official":
        return None
    n_samples, fs = np.asarray(n_samples, dtype=np.int64), np.asarray(fs, dtype=float)
    if spec.policy == "first":
        return np.ones(len(n_samples), dtype=np.int64)
    lengths = {rate: native_length(rate, spec) for rate in np.unique(fs).tolist()}
    return tile_count(n_samples, [lengths[rate] for rate in fs.tolist()])


@dataclass(frozen=True, slots=True)
class RecordWindows:
    """A family's ``prepare`` (its official test-time protocol) under the record-level ``spec.policy``.

    ``official``: ``prepare`` as it is (ST-MEM's 3 crops, ECG-FM's and ECG-CPC's non-overlapping windows,
    the first window for the others); ``first``: its first window only; ``cover``: the record cut into
    :func:`tile_starts` tiles of one window's duration at the record's own rate (:func:`native_length`),
    each prepared by the family as a record of its own (its first window), so every model sees the whole
    record however long, through its own official per-window pipeline. The record's embedding is the
    mean over its windows either way (``InputSpec.aggregate``).
    """

    prepare: PrepareFn
    spec: InputSpec

    @property
    def __wrapped__(self) -> PrepareFn:
        """The family's ``prepare``: what a prepared-array cache key names as the code (the policy is in the spec)."""
        return self.prepare

    def __call__(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        policy = self.spec.policy
        if policy == "official":
            return self.prepare(x, fs, leads)
        if policy == "first":
            return self.prepare(x, fs, leads)[:1]
        x = np.asarray(x)
        length = native_length(fs, self.spec)
        if x.shape[-1] <= length:
            return self.prepare(x, fs, leads)[:1]
        return np.concatenate([self.prepare(x[..., s : s + length], fs, leads)[:1]
                               for s in tile_starts(x.shape[-1], length)])
