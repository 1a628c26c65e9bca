"""Stratified bootstrap resampling of test records.

Strata, by task type:

* binary / multiclass: the class. Each resample keeps every class's count, so every class
  present in the test set is present in every resample.
* multilabel: the label combination (label powerset). Records sharing a combination are
  interchangeable, so resampling within it keeps every class's positive and negative count.
  Combinations seen once would never vary, so those records are pooled into one stratum,
  except that for a class whose positives (or negatives) all sit in such singleton
  combinations one carrier record stays a stratum of its own. Hence every class that has
  a positive and a negative in the test set keeps at least one of each in every resample,
  without rejecting resamples.
* regression: one stratum (a plain bootstrap).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: elements (resamples × records) of one chunk of index, weight or per-resample arrays
ROW_BUDGET = 2_000_000


def strata(task_type: str, y: np.ndarray) -> np.ndarray:
    """Integer stratum code per test record (see module docstring)."""
    if task_type in ("binary", "multiclass"):
        return np.asarray(y, dtype=np.int64)
    if task_type == "regression":
        return np.zeros(len(y), dtype=np.int64)
    labels = np.asarray(y).astype(bool)
    _, codes, counts = np.unique(labels, axis=0, return_inverse=True, return_counts=True)
    codes = codes.reshape(-1)
    single = counts[codes] == 1
    fixed = np.zeros(len(labels), dtype=bool)
    for carriers in (labels, ~labels):  # keep a positive, then a negative, of every class
        covered = carriers[~single | fixed].any(axis=0)
        for k in np.flatnonzero(~covered & carriers.any(axis=0)):
            if not carriers[fixed, k].any():
                fixed[np.flatnonzero(single & carriers[:, k])[0]] = True
    return np.where(single & ~fixed, -1, codes)


@dataclass(frozen=True, slots=True)
class Resamples:
    """A stratified bootstrap's (n_boot, n) record indices, handed out in chunks of resamples.

    The full matrix takes n_boot × n × 8 bytes (0.55 GB at n_boot = 1000 for CODE-15%'s test split, in every
    worker process), so it is never held: each stratum's random stream is saved where it starts and replayed
    row chunk by row chunk. The numbers are the ones a single draw of the whole matrix gives (stratum by stratum,
    in code order, row-major), so a seed keeps its CIs whatever the chunking.
    """

    n_boot: int
    n: int
    #: record indices of each stratum, in code order
    members: tuple[np.ndarray, ...]
    #: the generator as it stood when each stratum's block was drawn (copies, never advanced)
    starts: tuple[np.random.Generator, ...]

    def chunks(self, budget: int = ROW_BUDGET) -> Iterator[np.ndarray]:
        """(rows, n) index blocks over ``row_chunks(n_boot, n, budget)``; position j draws from record j's stratum."""
        streams = [copy.deepcopy(start) for start in self.starts]
        for rows in row_chunks(self.n_boot, self.n, budget):
            idx = np.empty((rows.stop - rows.start, self.n), dtype=np.intp)
            for members, stream in zip(self.members, streams, strict=True):
                idx[:, members] = members[stream.integers(0, len(members), size=(len(idx), len(members)))]
            yield idx


def draw_resamples(codes: np.ndarray, n_boot: int, rng: np.random.Generator) -> Resamples:
    """Stratified resamples of records with stratum ``codes``; ``rng`` is left where a full draw would leave it.

    Each stratum's stream is run through once here (in bounded chunks, values dropped) to find where the next
    stratum's starts: drawing costs twice, far below scoring the resamples.
    """
    members, starts = [], []
    for code in np.unique(codes):
        stratum = np.flatnonzero(codes == code)
        members.append(stratum)
        starts.append(copy.deepcopy(rng))
        for rows in row_chunks(n_boot, len(stratum)):
            rng.integers(0, len(stratum), size=(rows.stop - rows.start, len(stratum)))
    return Resamples(n_boot, len(codes), tuple(members), tuple(starts))


def draw_indices(codes: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The whole (n_boot, n) index matrix of ``draw_resamples`` (small test sets and tests only)."""
    return np.concatenate(list(draw_resamples(codes, n_boot, rng).chunks()))


def count_matrix(idx: np.ndarray, n_records: int) -> np.ndarray:
    """How often each record occurs in each resample: (B, n) float64 weights."""
    rows = np.arange(len(idx))[:, None] * n_records
    return np.bincount((idx + rows).ravel(), minlength=len(idx) * n_records).reshape(len(idx), n_records).astype(
        np.float64
    )


def row_chunks(n_rows: int, n_records: int, budget: int = ROW_BUDGET) -> list[slice]:
    """Slices of resample rows whose (rows × records) arrays stay within ``budget`` elements."""
    step = max(1, budget // max(n_records, 1))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float, float, int]:
    """(low, high, standard error, n finite) of a bootstrap distribution; NaN resamples are dropped."""
    finite = samples[np.isfinite(samples)]
    if len(finite) < 2:
        return np.nan, np.nan, np.nan, len(finite)
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high), float(np.std(finite, ddof=1)), len(finite)
