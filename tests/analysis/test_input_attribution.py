"""SHAP over lead × segment groups: masking, the fixed resolution, exact values for an additive model, each masked
record scored once and in batches, the same values whatever the clock, the time profile and the table rows."""

from __future__ import annotations

import dataclasses
import hashlib
import time

import numpy as np
import pytest

from ecgfm_suite.analysis import input_attribution as ia
from ecgfm_suite.analysis.inputs import AnalysisOptions
from ecgfm_suite.errors import DataError, SpecError

LEADS = ("I", "II", "V1", "V2")


def test_segment_bounds_cover_the_record():
    assert ia.segment_bounds(10, 3).tolist() == [0, 3, 7, 10]
    with pytest.raises(DataError):
        ia.segment_bounds(5, 6)


def test_the_resolution_is_the_options_and_a_single_lead_model_gets_the_time_grid():
    options = AnalysisOptions(input_segments_per_lead=3, input_time_segments=12, input_permutations=2)
    assert ia.resolution_for(12, options) == ia.Resolution(n_segments=3, permutations=2)
    assert ia.resolution_for(1, options) == ia.Resolution(n_segments=12, permutations=2)
    assert ia.Resolution(n_segments=3, permutations=2).max_evals(24) == 2 * 49
    with pytest.raises(SpecError, match="input_permutations"):
        ia.resolution_for(12, dataclasses.replace(options, input_permutations=0))
    with pytest.raises(SpecError, match="input_max_records"):
        ia.resolution_for(1, dataclasses.replace(options, input_max_records=0))


def test_masked_batch_sets_masked_cells_to_the_lead_median():
    rng = np.random.default_rng(0)
    record = rng.normal(size=(4, 100)).astype(np.float32)
    bounds = ia.segment_bounds(100, 2)
    coalitions = np.array([[1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 1, 0]])  # players: (lead 0, 2) × 2 segments
    out = ia.masked_batch(record, [0, 2], bounds, coalitions)
    np.testing.assert_array_equal(out[0], record)
    assert np.all(out[1, 0, :50] == np.median(record[0])) and np.array_equal(out[1, 0, 50:], record[0, 50:])
    assert np.all(out[2, 2, 50:] == np.median(record[2])) and np.array_equal(out[2, 1], record[1])
    np.testing.assert_array_equal(np.delete(out[1], 0, axis=0), np.delete(record, 0, axis=0))


@pytest.mark.slow  # shap's masked-model kernel compiles (~4 s) in the first process that uses the cache dir
def test_additive_model_gets_its_exact_shapley_values(analysis_cache_dir):
    """For f = Σ_l Σ_s w_ls · mean(x[l, segment s]) each cell's Shapley value is its own contribution
    w_ls · (mean − median), whatever the permutation order; the lead the model ignores gets nothing."""
    rng = np.random.default_rng(1)
    record = rng.normal(0.2, 1.0, size=(4, 60)).astype(np.float32)
    bounds = ia.segment_bounds(60, 3)
    weights = rng.normal(size=(4, 3))
    weights[1] = 0.0  # lead II is read but does not matter

    def predict(batch: np.ndarray) -> np.ndarray:
        means = np.stack([batch[:, :, a:b].mean(axis=2) for a, b in zip(bounds[:-1], bounds[1:], strict=True)], axis=2)
        return np.c_[(means * weights).sum(axis=(1, 2)), -(means * weights).sum(axis=(1, 2))]

    players = [0, 1, 3]  # the model reads I, II and V2, not V1
    resolution = ia.Resolution(n_segments=3, permutations=2)
    att = ia.explain_record(predict, record, players, resolution, seed=0, cache_dir=analysis_cache_dir)
    medians = np.median(record, axis=1)
    seg_means = np.stack([record[:, a:b].mean(axis=1) for a, b in zip(bounds[:-1], bounds[1:], strict=True)], axis=1)
    expected = weights * (seg_means - medians[:, None])
    np.testing.assert_allclose(att.values[:, :, 0], expected[players], atol=1e-5)
    np.testing.assert_allclose(att.values[:, :, 1], -expected[players], atol=1e-5)
    assert att.additivity_error < 1e-5
    importance = ia.lead_importance([att], LEADS, ["up", "down"])
    share = importance["up"]["share"]
    assert share["V1"] == 0.0 and share["II"] == 0.0 and sum(share.values()) == pytest.approx(1.0)
    assert importance["up"]["precordial_share"] == pytest.approx(share["V2"])
    assert importance["up"]["signed"]["I"] == pytest.approx(expected[0].sum(), abs=1e-5)


def test_lead_importance_needs_attributions():
    with pytest.raises(DataError):
        ia.lead_importance([], LEADS, ["x"])
    with pytest.raises(DataError):
        ia.time_profile([], ["x"])


class CountingPredict:
    """An additive model over segment means that records every masked record it scores (by content) and its
    batch sizes."""

    def __init__(self, weights: np.ndarray, bounds: np.ndarray) -> None:
        self.weights, self.bounds = weights, bounds
        self.seen: list[str] = []
        self.batches: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        self.seen.extend(hashlib.sha256(x.tobytes()).hexdigest() for x in batch)
        spans = zip(self.bounds[:-1], self.bounds[1:], strict=True)
        means = np.stack([batch[:, :, a:b].mean(axis=2) for a, b in spans], axis=2)
        return (means * self.weights).sum(axis=(1, 2))[:, None]


@pytest.mark.slow  # shap's masked-model kernel compiles (~4 s) in the first process that uses the cache dir
def test_each_masked_record_is_scored_once_and_records_of_a_layout_share_batches(analysis_cache_dir):
    """Two records behind one predict: no masked record reaches the model twice, every call but the last is a
    full batch (the records' coalitions are pooled), and shap's second pass asks the memo only."""
    rng = np.random.default_rng(2)
    records = rng.normal(size=(2, 4, 80)).astype(np.float32)
    resolution = ia.Resolution(n_segments=4, permutations=3)
    bounds = ia.segment_bounds(80, 4)
    predict = CountingPredict(rng.normal(size=(4, 4)), bounds)
    games = [ia.make_game(predict, rec, [0, 1, 2, 3], resolution.n_segments) for rec in records]
    atts = ia.explain_records(games, resolution, seed=3, cache_dir=analysis_cache_dir)
    assert len(predict.seen) == len(set(predict.seen)) == sum(a.evaluations for a in atts)
    planned = ia.planned_coalitions(16, resolution, seed=3, cache_dir=analysis_cache_dir)
    assert all(a.evaluations == len(planned) for a in atts)
    # shap asks 2·16 + 1 coalitions per permutation, the empty and the full one in every pass: the memo answers those
    assert all(a.requested == resolution.max_evals(16) + 1 > a.evaluations for a in atts)  # + 1: f(record)
    total = 2 * len(planned)
    assert predict.batches == [ia.EVAL_BATCH] * (total // ia.EVAL_BATCH) + [total % ia.EVAL_BATCH] * bool(
        total % ia.EVAL_BATCH)
    assert max(a.additivity_error for a in atts) < 1e-5


@pytest.mark.slow  # shap's masked-model kernel: see above
def test_the_same_record_and_seed_give_the_same_values_whatever_the_clock(analysis_cache_dir, monkeypatch):
    """Nothing reads the clock: with ``time.perf_counter`` and ``time.time`` jumping by minutes per call (a machine
    under load), the values are identical to the bit; another seed gives other permutations."""
    rng = np.random.default_rng(4)
    record = rng.normal(size=(3, 90)).astype(np.float32)
    bounds = ia.segment_bounds(90, 3)
    weights = rng.normal(size=(3, 3))
    interaction = lambda batch: CountingPredict(weights, bounds)(batch) ** 2  # noqa: E731 - not additive
    resolution = ia.Resolution(n_segments=3, permutations=2)

    def explain(seed: int) -> ia.RecordAttribution:
        return ia.explain_record(interaction, record, [0, 1, 2], resolution, seed=seed, cache_dir=analysis_cache_dir)

    quiet = explain(0)
    clock = iter(range(0, 10**9, 600))
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
    monkeypatch.setattr(time, "time", lambda: float(next(clock)))
    busy = explain(0)
    assert np.array_equal(quiet.values, busy.values) and np.array_equal(quiet.base, busy.base)
    assert (quiet.evaluations, quiet.requested) == (busy.evaluations, busy.requested)
    assert not np.array_equal(explain(1).values, quiet.values)


def test_window_memo_encodes_each_distinct_window_once():
    """Windows seen before (in this batch or an earlier one) come from the memo, in the batch's order."""
    from types import SimpleNamespace

    encoded: list[int] = []

    def encode(batch: np.ndarray) -> np.ndarray:
        encoded.append(len(batch))
        return batch.sum(axis=(1, 2))[:, None] * np.array([1.0, -1.0])

    model = SimpleNamespace(spec=None, input_spec=None, embed_dim=2, checkpoint_sha256=None, prepare=None,
                            encode=encode)
    memo = ia.WindowMemo(model)
    windows = np.arange(4 * 6, dtype=np.float32).reshape(4, 2, 3)
    first = memo.encode(windows[[2, 0, 2, 1]])
    np.testing.assert_array_equal(first, encode(windows[[2, 0, 2, 1]]))
    np.testing.assert_array_equal(memo.encode(windows[[3, 1, 0]]), encode(windows[[3, 1, 0]]))
    assert encoded == [3, 4, 1, 3]  # memo: 3 distinct, then only window 3 (the others are direct checks)


def _att(values: np.ndarray, n_samples: int = 100) -> ia.RecordAttribution:
    values = np.asarray(values, dtype=float)
    return ia.RecordAttribution(values=values, base=np.zeros(values.shape[2]), output=values.sum(axis=(0, 1)),
                                lead_index=tuple(range(values.shape[0])),
                                bounds=ia.segment_bounds(n_samples, values.shape[1]), evaluations=1, requested=1)


def test_time_profile_shares_the_absolute_attribution_over_segments():
    """Segment s of every record pooled (leads summed): |(1, -3)| and |(0, 1)| per record over 2 segments."""
    atts = [_att(np.array([[[1.0], [-3.0]]])), _att(np.array([[[0.0], [1.0]]]), n_samples=50)]
    profile = ia.time_profile(atts, ["af"])["af"]
    np.testing.assert_allclose(profile["share"], [0.5 / 2.5, 2.0 / 2.5])
    np.testing.assert_allclose(profile["signed"], [0.5, -1.0])
    assert profile["top_segment"] == 1
    with pytest.raises(DataError, match="different segment counts"):
        ia.time_profile([atts[0], _att(np.ones((1, 3, 1)))], ["af"])


def test_segment_labels_are_seconds_when_the_records_agree_else_fractions():
    assert ia.segment_labels([[0.0, 5.0, 10.0], [0.0, 5.0, 10.0]]) == ["0.0–5.0 s", "5.0–10.0 s"]
    assert ia.segment_labels([[0.0, 5.0, 10.0], [0.0, 15.0, 30.0]]) == ["0%–50% of the record",
                                                                       "50%–100% of the record"]


EXPLAIN_ONCE = """
import os
from pathlib import Path
import numpy as np
from ecgfm_suite.analysis._jit_cache import import_shap
shap = import_shap(Path(os.environ["NUMBA_CACHE_DIR"]))
masker = shap.maskers.Independent(np.zeros((1, 6)), max_samples=1)
explainer = shap.PermutationExplainer(lambda c: np.c_[c.sum(1), -c.sum(1)].astype(float), masker, seed=0)
print(explainer(np.ones((1, 6)), max_evals=26, silent=True).values[0].sum(axis=0).tolist())
"""


@pytest.mark.slow  # two fresh processes: the first compiles shap's masked-model kernel (~4 s), the second loads it
def test_a_second_process_loads_shaps_masked_model_kernel_from_the_disk_cache(tmp_path):
    """The kernel takes shap's ``link`` dispatcher; with its fixed uuid the cache key is the same in every process,
    so the second process adds no entry (a random uuid made every process compile and add one)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    outputs = [subprocess.run([sys.executable, "-c", EXPLAIN_ONCE], env=env, capture_output=True, text=True,
                              check=True).stdout for _ in range(2)]
    assert outputs[0] == outputs[1] == "[6.0, -6.0]\n"
    entries = sorted(p.name for p in tmp_path.rglob("*_build_fixed_multi_output*.nbc"))
    assert len(entries) == 1, entries


def test_link_kernels_stay_uncached_when_the_links_uuids_cannot_be_fixed():
    from types import SimpleNamespace

    from ecgfm_suite.analysis._jit_cache import _fix_link_uuids

    assert not _fix_link_uuids(SimpleNamespace(identity=SimpleNamespace(_MemoMixin__uuid="random-uuid-4")))
    assert not _fix_link_uuids(SimpleNamespace(identity=object()))  # numba keeps its uuid elsewhere now
    fixed = SimpleNamespace(_MemoMixin__uuid="ecgfm-suite/shap.links.identity")
    assert _fix_link_uuids(SimpleNamespace(identity=fixed, logit=None))
