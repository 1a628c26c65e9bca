"""Batched encoding: raw records → model-ready windows → per-window embeddings → one vector per record."""

from __future__ import annotations

import ctypes
import functools
import math
import mmap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import sparse

from ..data.preprocess import InputSpec, RecordWindows, WindowPolicy, lead_sources
from ..data.records import STD_LEADS, Signal, canonical_lead, validate_signal
from ..errors import DataError, SpecError
from ..models.protocol import Encoder


def _check_aggregate(how: str) -> None:
    """Only the mean pools windows so far (``InputSpec.aggregate``); another name is a spec this code cannot honour."""
    if how != "mean":
        raise ValueError(f"unknown window aggregation {how!r}")


def aggregate_windows(emb: np.ndarray, offsets: np.ndarray, how: str = "mean") -> np.ndarray:
    """Pool per-window embeddings to records; ``offsets`` (n_records + 1) delimit each record's windows.

    The sums are one sparse (records × windows) 0/1 matrix product: ``np.add.reduceat`` along axis 0
    takes ~20× longer (2.6 s vs 0.13 s for 60,000 × 1024 windows, 3 per record), which a fast model feels.
    """
    _check_aggregate(how)
    offsets = np.asarray(offsets)
    counts = np.diff(offsets)
    pool = sparse.csr_array((np.ones(len(emb), emb.dtype), np.arange(len(emb)), offsets), shape=(len(counts), len(emb)))
    return ((pool @ emb) / counts[:, None]).astype(np.float32)


@dataclass(frozen=True, slots=True)
class RawInput:
    """Raw ECGs checked for ``embed_array``: float32 (N, leads, samples) in mV, their canonical lead names, and
    what the caller should tell the user about them (records whose few non-finite samples become 0)."""

    x: np.ndarray
    leads: tuple[str, ...]
    notes: tuple[str, ...]


def check_raw_input(x: np.ndarray, fs: float, leads: Sequence[str] | None, spec: InputSpec, *, pad: bool = False,
                    source: str = "input") -> RawInput:
    """Validate raw ECGs at the ``embed`` boundary, where a bad array would otherwise give embeddings quietly
    (all-NaN input encodes to zeros) or a scipy traceback. ``source`` names the array in errors.

    Each record must pass the checks the benchmark applies to every record it reads (``validate_signal``:
    not all-NaN/inf nor over 5 % of samples, not all flat, a plausible mV amplitude); a record with fewer
    non-finite samples is kept with them set to 0, as the benchmark does, and reported in ``notes``. A record
    shorter than the model's window is refused unless ``pad``: then it is zero-padded, as the benchmark pads
    its short records. Lead names must be canonical ECG leads, and at least one must be a lead the model reads.
    """
    if not (isinstance(fs, (int, float)) and math.isfinite(fs) and fs > 0):
        raise SpecError(f"the sampling rate must be a finite number > 0 Hz, got {fs}", "--fs")
    if x.dtype.kind not in "iuf":
        raise DataError(f"holds {x.dtype} values; expected real numbers (N, leads, samples) in mV", source)
    if x.ndim != 3 or 0 in x.shape:
        raise DataError(f"expected an array (N, leads, samples) with N, leads, samples > 0, got shape {x.shape}",
                        source)
    names = _lead_names(leads, x.shape[1], source)
    if all(i is None for i in lead_sources(names, spec.leads, spec.lead_fallbacks)):
        raise SpecError(f"the model reads leads {', '.join(spec.leads)}; the input's leads {', '.join(names)} "
                        "include none of them", "--leads")
    n_model = round(x.shape[2] * spec.fs / fs)
    if n_model < spec.window and not pad:
        raise DataError(f"records of {x.shape[2]} samples at {fs:g} Hz ({x.shape[2] / fs:.3g} s) are shorter than "
                        f"the model's window of {spec.window / spec.fs:g} s ({spec.window} samples at {spec.fs:g} Hz); "
                        "pass --pad to zero-pad them as the benchmark pads short records", source)
    x = np.asarray(x, dtype=np.float32)
    for i, record in enumerate(x):
        reason = validate_signal(Signal(record, float(fs), names))
        if reason is not None:
            raise DataError(f"record {i}: {reason} (the benchmark excludes such records)", source)
    partly = int((~np.isfinite(x)).any(axis=(1, 2)).sum())
    notes = (f"{partly} record(s) have a few NaN/inf samples, set to 0 as the benchmark does",) if partly else ()
    return RawInput(x, names, notes)


def _lead_names(leads: Sequence[str] | None, n_leads: int, source: str) -> tuple[str, ...]:
    """Canonical names of the input's leads (default: the first ``n_leads`` standard leads); an unknown or
    repeated name is refused, since a lead read as another would embed the wrong signal."""
    if leads is None:
        if n_leads > len(STD_LEADS):
            raise SpecError(f"{source} has {n_leads} leads, more than the {len(STD_LEADS)} standard ones: name them",
                            "--leads")
        return STD_LEADS[:n_leads]
    names = tuple(canonical_lead(name) for name in leads)
    unknown = [name for name in names if name not in STD_LEADS]
    if unknown:
        raise SpecError(f"unknown lead name(s) {', '.join(map(repr, unknown))} (known: {', '.join(STD_LEADS)})",
                        "--leads")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise SpecError(f"lead(s) {', '.join(repeated)} named more than once", "--leads")
    if len(names) != n_leads:
        raise SpecError(f"names {len(names)} leads but {source} has {n_leads}", "--leads")
    return names


def embed_array(
    encoder: Encoder, x: np.ndarray, fs: float, leads: Sequence[str], *, batch_windows: int = 256,
    window_policy: WindowPolicy | None = None,
) -> np.ndarray:
    """Embed raw ECGs ``x`` (N, leads, samples) in mV with the model's own preprocessing → (N, D).

    Windows follow ``window_policy`` (default: the encoder's ``input_spec.policy``, as the benchmark embeds its
    records; ``"official"`` reproduces the family's official protocol, as the parity fixtures do)."""
    spec = encoder.input_spec if window_policy is None else replace(encoder.input_spec, window_policy=window_policy)
    prepare = RecordWindows(encoder.prepare, spec)
    prepared = [prepare(np.asarray(rec, dtype=np.float32), fs, leads) for rec in x]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in prepared])])
    windows = np.concatenate(prepared) if prepared else np.zeros((0,), np.float32)
    emb = np.concatenate(
        [encoder.encode(windows[i : i + batch_windows]) for i in range(0, len(windows), batch_windows)]
    ) if len(windows) else np.zeros((0, encoder.embed_dim), np.float32)
    return aggregate_windows(emb, offsets, encoder.input_spec.aggregate)


#: glibc ``mallopt`` parameters and the defaults restored after encoding
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


@functools.cache
def _glibc() -> Any | None:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None."""
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@contextmanager
def large_buffers_reused() -> Iterator[None]:
    """While encoding on glibc, serve large buffers from the heap and keep them when freed; afterwards restore
    the defaults and hand the memory back (``malloc_trim``).

    A batch's activations are larger than glibc's largest mmap threshold (32 MB; the openecg codec's attention
    maps alone take 4 MB per window), so by default glibc maps them afresh for every batch and the kernel
    zero-fills each page again: 1.4 million page faults per 256 codec windows, measured at 10 ms of system time
    per window (of ~40), 49 → 64 windows/s once the pages are reused. With ``cover`` the encode is most of a
    cold run. Setting any of these also stops glibc adjusting its mmap threshold by itself for the rest of the
    process (it keeps the value reached): a process that encodes is a worker or a run, not a library user's
    long-lived service. Elsewhere than glibc (macOS, musl) nothing changes."""
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


def release_mapped_pages(part: np.ndarray) -> None:
    """Drop a read-only memmap slice's pages from this process's resident set (``madvise(MADV_DONTNEED)``).

    Reading a prepared ``windows.npy`` through its map would otherwise leave every page read resident, so RSS
    climbs towards the file's size: reclaimable page cache, but counted as the process's memory by ``ps``, top
    and schedulers. The pages stay in the page cache (a re-read costs no disk), only the mapping lets go.
    Only whole pages inside the slice are dropped; a writable map (its pages may hold the only copy of the
    data) or an in-memory array is left alone, as is every array off glibc."""
    libc = _glibc()
    if libc is None or not isinstance(part, np.memmap) or part.flags.writeable or not part.flags.c_contiguous:
        return
    page = mmap.PAGESIZE
    start = -(-part.ctypes.data // page) * page
    stop = (part.ctypes.data + part.nbytes) // page * page
    if stop > start:
        libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(stop - start), mmap.MADV_DONTNEED)


def encode_prepared(
    encoder: Encoder, windows: np.ndarray, offsets: np.ndarray, *, batch_windows: int = 64, desc: str = "encode"
) -> np.ndarray:
    """Encode prepared windows (possibly a memmap) in batches → (n_records, D), the mean of each record's windows.

    The cost grows with the windows, not the records (``cover`` puts ~3 on a 30-s record), so the progress
    bar counts windows; each batch is pooled into its records as it comes, so memory holds one vector per
    record, not one per window."""
    from tqdm.auto import tqdm

    _check_aggregate(encoder.input_spec.aggregate)
    offsets = np.asarray(offsets)
    counts = np.diff(offsets)
    out = np.zeros((len(counts), encoder.embed_dim), dtype=np.float32)
    record_of_window = np.repeat(np.arange(len(counts)), counts)
    with tqdm(total=len(windows), desc=f"{desc} ({len(counts)} rec)", unit="win", leave=False,
              disable=None) as bar, large_buffers_reused():
        for i in range(0, len(windows), batch_windows):
            chunk = np.asarray(windows[i : i + batch_windows], dtype=np.float32)
            np.add.at(out, record_of_window[i : i + len(chunk)], encoder.encode(chunk))
            release_mapped_pages(windows[i : i + batch_windows])
            bar.update(len(chunk))
    out /= np.maximum(counts, 1)[:, None]
    return out
