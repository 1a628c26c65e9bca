"""Batched encoding: raw records → model-ready windows → per-window embeddings → one vector per record."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from ..models.protocol import Encoder


def aggregate_windows(emb: np.ndarray, offsets: np.ndarray, how: str = "mean") -> np.ndarray:
    """Pool per-window embeddings to records; ``offsets`` (n_records + 1) delimit each record's windows.

    The sums are one sparse (records × windows) 0/1 matrix product: ``np.add.reduceat`` along axis 0
    takes ~20× longer (2.6 s vs 0.13 s for 60,000 × 1024 windows, 3 per record), which a fast model feels.
    """
    if how != "mean":
        raise ValueError(f"unknown window aggregation {how!r}")
    offsets = np.asarray(offsets)
    counts = np.diff(offsets)
    pool = sparse.csr_array((np.ones(len(emb), emb.dtype), np.arange(len(emb)), offsets), shape=(len(counts), len(emb)))
    return ((pool @ emb) / counts[:, None]).astype(np.float32)


def embed_array(
    encoder: Encoder, x: np.ndarray, fs: float, leads: Sequence[str], *, batch_windows: int = 256
) -> np.ndarray:
    """Embed raw ECGs ``x`` (N, leads, samples) in mV with the model's own preprocessing → (N, D)."""
    prepared = [encoder.prepare(np.asarray(rec, dtype=np.float32), fs, leads) for rec in x]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in prepared])])
    windows = np.concatenate(prepared) if prepared else np.zeros((0,), np.float32)
    emb = np.concatenate(
        [encoder.encode(windows[i : i + batch_windows]) for i in range(0, len(windows), batch_windows)]
    ) if len(windows) else np.zeros((0, encoder.embed_dim), np.float32)
    return aggregate_windows(emb, offsets, encoder.input_spec.aggregate)


def encode_prepared(
    encoder: Encoder, windows: np.ndarray, offsets: np.ndarray, *, batch_windows: int = 64, desc: str = "encode"
) -> np.ndarray:
    """Encode prepared windows (possibly a memmap) in batches with a records/s progress bar → (n_records, D)."""
    from tqdm.auto import tqdm

    n_records = len(offsets) - 1
    out = np.zeros((len(windows), encoder.embed_dim), dtype=np.float32)
    record_of_window = np.repeat(np.arange(n_records), np.diff(offsets))
    with tqdm(total=n_records, desc=desc, unit="rec", leave=False, disable=None) as bar:
        done = 0
        for i in range(0, len(windows), batch_windows):
            chunk = np.asarray(windows[i : i + batch_windows], dtype=np.float32)
            out[i : i + len(chunk)] = encoder.encode(chunk)
            finished = int(record_of_window[i + len(chunk) - 1]) + 1 if len(chunk) else done
            bar.update(finished - done)
            done = finished
    return aggregate_windows(out, np.asarray(offsets), encoder.input_spec.aggregate)
