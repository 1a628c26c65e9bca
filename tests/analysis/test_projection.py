"""UMAP and its structure scores: silhouette, k-NN accuracy, trustworthiness, source separability."""

from __future__ import annotations

import numpy as np
import pytest

from ecgfm_suite.analysis import projection as pj
from ecgfm_suite.errors import DataError


def _blobs(n: int = 120, d: int = 16, gap: float = 8.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1, 2], n // 3)
    centres = rng.normal(size=(3, d)) * gap
    return centres[labels] + rng.normal(size=(len(labels), d)), labels


def test_label_groups_per_task_type():
    groups, names = pj.label_groups("binary", np.array([0, 1, 1]), ("neg", "pos"))
    assert groups.tolist() == [0, 1, 1] and names == ["neg", "pos"]
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 1]])
    groups, names = pj.label_groups("multilabel", y, ("a", "b", "c"))
    assert names == ["a", "b", "c", "none"] and groups.tolist() == [1, 0, 3, 2]  # rarest positive class
    groups, names = pj.label_groups("regression", np.arange(100.0), ())
    assert np.bincount(groups).tolist() == [20] * 5 and len(names) == 5


def test_separated_clusters_score_high_and_shuffled_labels_do_not():
    X, labels = _blobs()
    assert pj.silhouette(X, labels) > 0.7
    assert pj.knn_accuracy(X, labels) == 1.0
    shuffled = np.random.default_rng(1).permutation(labels)
    assert abs(pj.silhouette(X, shuffled)) < 0.1
    assert pj.knn_accuracy(X, shuffled) < 0.6
    assert pj.silhouette(X, np.zeros(len(X), dtype=int)) is None
    assert pj.knn_accuracy(X, np.r_[np.zeros(len(X) - 1), 1].astype(int)) is None


def test_trustworthiness_of_a_faithful_and_a_scrambled_map():
    rng = np.random.default_rng(2)
    X = np.c_[rng.normal(size=(80, 2)) * 10, rng.normal(size=(80, 3)) * 0.01]
    assert pj.trustworthiness(X, X[:, :2]) > 0.99
    assert pj.trustworthiness(X, rng.permutation(X[:, :2])) < 0.7


def test_source_separability_sees_a_site_offset_and_nothing_else():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 10))
    source = np.array(["ludb"] * 150 + ["ptbxl"] * 150 + ["tiny"] * 0)
    assert pj.source_separability(X, source)["auroc"] == pytest.approx(0.5, abs=0.1)
    shifted = X + (source == "ptbxl")[:, None] * 2.0
    result = pj.source_separability(np.r_[shifted, X[:3]], np.r_[source, ["tiny"] * 3])
    assert result["auroc"] > 0.95 and result["left_out"] == {"tiny": 3}
    three = pj.source_separability(np.r_[shifted, X[:60] - 2.0], np.r_[source, ["code15"] * 60])
    assert three["auroc"] > 0.95 and set(three["sources"]) == {"code15", "ludb", "ptbxl"}
    assert pj.source_separability(X, np.array(["ludb"] * 300))["auroc"] is None


def test_umap_needs_enough_records(analysis_cache_dir):
    with pytest.raises(DataError, match="too few"):
        pj.umap_2d(np.zeros((5, 3)), seed=0, cache_dir=analysis_cache_dir)


@pytest.mark.slow  # first run compiles umap-learn's kernels into the cache (later runs load them)
def test_umap_keeps_clusters_apart_and_is_reproducible(analysis_cache_dir):
    X, labels = _blobs(n=150)
    Y = pj.umap_2d(X, seed=0, cache_dir=analysis_cache_dir)
    assert Y.shape == (150, 2)
    np.testing.assert_allclose(Y, pj.umap_2d(X, seed=0, cache_dir=analysis_cache_dir))
    scores = pj.structure_scores(X, Y, labels)
    assert scores["silhouette_map"] > 0.5 and scores["knn_accuracy_map"] == 1.0
    assert scores["trustworthiness"] > 0.8 and scores["knn_chance"] == pytest.approx(1 / 3)
