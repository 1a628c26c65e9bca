"""RankMe from the D × D Gram matrix: the SVD's value, a chunk of records in memory at a time."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from ecgfm_suite.analysis import representation as rp
from ecgfm_suite.errors import DataError


def _svd_rankme(X: np.ndarray) -> float:
    """RankMe from the singular values of a float64 copy of every record: how it was computed before."""
    sigma = np.linalg.svd(np.asarray(X, dtype=np.float64), compute_uv=False)
    p = sigma / sigma.sum() + rp.EPS
    return float(np.exp(-np.sum(p * np.log(p))))


def _matrices() -> dict[str, tuple[np.ndarray, float]]:
    """name → (embeddings, relative tolerance against the SVD)."""
    rng = np.random.default_rng(0)
    scales = np.geomspace(1.0, 1e-4, 48)
    return {
        "isotropic": (rng.normal(size=(500, 64)), 1e-10),
        "decaying spectrum": (rng.normal(size=(3000, 48)) * scales, 1e-10),
        "low rank and noise": (rng.normal(size=(400, 5)) @ rng.normal(size=(5, 80)) + 1e-3 * rng.normal(size=(400, 80)),
                               1e-10),
        # exact rank 3: the SVD's zero singular values are round-off either way
        "rank 3": (rng.normal(size=(300, 3)) @ rng.normal(size=(3, 40)), 1e-6),
        "more records than a chunk, float32": ((rng.normal(size=(3 * rp.GRAM_CHUNK + 5, 32)) * np.linspace(3, .1, 32)
                                                + 2.0).astype(np.float32), 1e-10),
        "fewer records than dimensions": (rng.normal(size=(20, 64)), 1e-10),
    }


@pytest.mark.parametrize("name", list(_matrices()))
def test_rankme_from_the_gram_matrix_equals_the_svds(name):
    X, rel = _matrices()[name]
    assert rp.rankme(X) == pytest.approx(_svd_rankme(X), rel=rel)


def test_rankme_of_rows_is_rankme_of_those_records():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2 * rp.GRAM_CHUNK + 100, 24)).astype(np.float32) * np.linspace(1, 5, 24)
    rows = np.sort(rng.choice(len(X), rp.GRAM_CHUNK + 77, replace=False))
    assert rp.rankme(X, rows) == pytest.approx(_svd_rankme(X[rows]), rel=1e-10)
    assert rp.rankme(X, rows) != pytest.approx(rp.rankme(X), rel=1e-6)


def test_a_non_finite_record_in_a_later_chunk_is_refused():
    X = np.ones((rp.GRAM_CHUNK + 10, 4))
    X[rp.GRAM_CHUNK + 3, 2] = np.inf
    with pytest.raises(DataError, match="finite"):
        rp.rankme(X)
    with pytest.raises(DataError, match="non-empty"):
        rp.rankme(X, np.array([], dtype=int))


def test_rankme_never_copies_every_record_to_float64():
    X = np.random.default_rng(2).normal(size=(150_000, 64)).astype(np.float32)
    float64_copy = X.size * 8
    tracemalloc.start()
    try:
        rp.rankme(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < float64_copy / 4, (peak, float64_copy)
