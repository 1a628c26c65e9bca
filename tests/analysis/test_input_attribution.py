"""SHAP over lead × segment groups: masking, the resolution plan, exact values for an additive model."""

from __future__ import annotations

import numpy as np
import pytest

from ecgfm_suite.analysis import input_attribution as ia
from ecgfm_suite.errors import DataError

LEADS = ("I", "II", "V1", "V2")


def test_segment_bounds_cover_the_record():
    assert ia.segment_bounds(10, 3).tolist() == [0, 3, 7, 10]
    with pytest.raises(DataError):
        ia.segment_bounds(5, 6)


def test_plan_resolution_takes_the_finest_grid_that_fits():
    fine = ia.plan_resolution(12, 4, 0.001, 10.0)
    assert fine.n_segments == 10 and fine.permutations == ia.MAX_PERMUTATIONS
    # 4 records × (2·12·S + 1) evals × 0.02 s: S=5 costs 9.7 s, S=10 19.3 s → 5 segments, one permutation
    mid = ia.plan_resolution(12, 4, 0.02, 10.0)
    assert (mid.n_segments, mid.permutations, mid.evals_per_record) == (5, 1, 121)
    floor = ia.plan_resolution(12, 4, 5.0, 1.0)
    assert (floor.n_segments, floor.permutations) == (1, 1)
    with pytest.raises(DataError):
        ia.plan_resolution(0, 4, 0.1, 1.0)


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
        means = np.stack([batch[:, :, a:b].mean(axis=2) for a, b in zip(bounds[:-1], bounds[1:])], axis=2)
        return np.c_[(means * weights).sum(axis=(1, 2)), -(means * weights).sum(axis=(1, 2))]

    players = [0, 1, 3]  # the model reads I, II and V2, not V1
    resolution = ia.Resolution(n_segments=3, permutations=2, evals_per_record=2 * (2 * 9 + 1))
    att = ia.explain_record(predict, record, players, resolution, seed=0, cache_dir=analysis_cache_dir)
    medians = np.median(record, axis=1)
    seg_means = np.stack([record[:, a:b].mean(axis=1) for a, b in zip(bounds[:-1], bounds[1:])], axis=1)
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
