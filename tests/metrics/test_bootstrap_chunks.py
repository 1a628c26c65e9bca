"""The bootstrap drawn and scored in chunks of resamples: the numbers of one full draw, in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecgfm_suite.metrics import draw_indices, evaluate_classes, strata
from ecgfm_suite.metrics.bootstrap import draw_resamples, row_chunks


def _full_draw(codes: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """The whole index matrix in one go, stratum by stratum: how the bootstrap drew before it was chunked."""
    idx = np.empty((n_boot, len(codes)), dtype=np.intp)
    for code in np.unique(codes):
        members = np.flatnonzero(codes == code)
        idx[:, members] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
    return idx


def _labels(task_type: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if task_type == "binary":
        return (rng.random(n) < 0.2).astype(int)
    if task_type == "multiclass":
        return rng.integers(0, 5, n)
    if task_type == "multilabel":
        return (rng.random((n, 4)) < [0.5, 0.1, 0.02, 0.3]).astype(int)
    return rng.normal(size=n)


@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.Philox, np.random.MT19937])
@pytest.mark.parametrize("task_type", ["binary", "multiclass", "multilabel", "regression"])
def test_chunked_resamples_are_the_full_draw_and_leave_the_generator_where_it_would(task_type, bit_generator):
    y = _labels(task_type, 700, np.random.default_rng(1))
    codes = strata(task_type, y)
    n_boot = 97
    expected_rng = np.random.Generator(bit_generator(5))
    expected = _full_draw(codes, n_boot, expected_rng)
    rng = np.random.Generator(bit_generator(5))
    resamples = draw_resamples(codes, n_boot, rng)
    for budget in (700, 7 * 700 + 3, 10**9):  # one resample per chunk, uneven chunks, one chunk
        chunks = list(resamples.chunks(budget))
        assert [len(c) for c in chunks] == [s.stop - s.start for s in row_chunks(n_boot, 700, budget)]
        np.testing.assert_array_equal(np.concatenate(chunks), expected)
    np.testing.assert_array_equal(draw_indices(codes, n_boot, np.random.Generator(bit_generator(5))), expected)
    # the paired comparison's permutations come from the same generator, after the resamples
    np.testing.assert_array_equal(rng.random(50), expected_rng.random(50))


def test_a_stratum_of_one_record_draws_nothing_and_stays_put():
    codes = np.array([0, 1, 1, 1, 2])
    idx = draw_indices(codes, 40, np.random.default_rng(0))
    assert (idx[:, 0] == 0).all() and (idx[:, 4] == 4).all()
    np.testing.assert_array_equal(idx, _full_draw(codes, 40, np.random.default_rng(0)))


def test_an_evaluation_spanning_several_chunks_scores_the_full_draws_resamples():
    rng = np.random.default_rng(2)
    n, n_boot, seed = 30_000, 120, 4
    assert len(row_chunks(n_boot, n)) > 1
    y = (rng.random(n) < 0.3).astype(int)
    scores = y + rng.normal(0, 1.5, n)
    got = evaluate_classes("binary", y, scores, n_boot=n_boot, seed=seed).metrics["auroc"]
    idx = _full_draw(strata("binary", y), n_boot, np.random.default_rng(seed))
    per_resample = np.array([roc_auc_score(y[i], scores[i]) for i in idx])
    assert got.ci_low == pytest.approx(np.percentile(per_resample, 2.5), abs=1e-12)
    assert got.ci_high == pytest.approx(np.percentile(per_resample, 97.5), abs=1e-12)
    assert got.se == pytest.approx(np.std(per_resample, ddof=1), abs=1e-12)


def test_the_bootstrap_never_holds_the_whole_index_matrix():
    rng = np.random.default_rng(3)
    n, n_boot = 200_000, 200
    y = rng.normal(size=n)
    estimate = y + rng.normal(0, 0.5, n)
    full_matrix_bytes = n_boot * n * np.dtype(np.intp).itemsize
    tracemalloc.start()
    try:
        evaluate_classes("regression", y, estimate, n_boot=n_boot, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a chunk's indices, their offsets, counts and weights take a few ROW_BUDGET × 8 bytes (16 MB), whatever n_boot is
    assert peak < full_matrix_bytes / 3, (peak, full_matrix_bytes)
