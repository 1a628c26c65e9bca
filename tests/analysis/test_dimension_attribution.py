"""SHAP over embedding dimensions: exact values, concentration, Gini, top-k stability."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ecgfm_suite.analysis import dimension_attribution as da
from ecgfm_suite.errors import DataError
from ecgfm_suite.probes import fit_probe


def _known_probe(X: np.ndarray, coef: np.ndarray, intercept: float) -> Pipeline:
    """A fitted standardise → logistic pipeline with hand-set weights."""
    scaler = StandardScaler().fit(X)
    model = LogisticRegression()
    model.coef_, model.intercept_, model.classes_ = coef[None, :], np.array([intercept]), np.array([0, 1])
    return Pipeline([("scale", scaler), ("probe", model)])


def test_linear_shap_matches_the_closed_form_and_stays_on_the_used_dims(analysis_cache_dir):
    rng = np.random.default_rng(0)
    X_bg, X = rng.normal(2.0, 3.0, (300, 12)), rng.normal(2.0, 3.0, (50, 12))
    coef = np.zeros(12)
    coef[:3] = [1.5, -2.0, 0.7]
    probe = _known_probe(X_bg, coef, 0.3)
    values = da.linear_shap(probe, X_bg, X, cache_dir=analysis_cache_dir)
    assert values.shape == (50, 12, 1)
    z, z_bg = probe["scale"].transform(X), probe["scale"].transform(X_bg)
    np.testing.assert_allclose(values[:, :, 0], coef * (z - z_bg.mean(axis=0)), atol=1e-10)
    # efficiency: values sum to the margin minus the background's mean margin
    margin, margin_bg = probe.decision_function(X), probe.decision_function(X_bg)
    np.testing.assert_allclose(values[:, :, 0].sum(axis=1), margin - margin_bg.mean(), atol=1e-10)
    mass = da.attribution_mass(values)[:, 0]
    assert np.all(mass[3:] == 0) and set(da.top_dims(mass, 3).tolist()) == {0, 1, 2}
    assert da.concentration(mass).dims_90 <= 3


def test_a_fitted_probe_attributes_to_the_informative_dims(analysis_cache_dir):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 20))
    y = (X[:, 0] + X[:, 1] - X[:, 2] + 0.3 * rng.normal(size=600) > 0).astype(int)
    probe = fit_probe("linear", "binary", X[:400], y[:400], X[400:500], y[400:500], seed=0)
    values = da.linear_shap(probe.estimator, X[:400], X[500:], cache_dir=analysis_cache_dir)
    mass = da.attribution_mass(values)[:, 0]
    assert set(da.top_dims(mass, 3).tolist()) == {0, 1, 2}
    assert mass[[0, 1, 2]].sum() / mass.sum() > 0.6


def test_multiclass_has_one_output_per_class_and_sums_to_each_logit(analysis_cache_dir):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 6))
    y = np.argmax(X[:, :3], axis=1)
    probe = fit_probe("linear", "multiclass", X[:200], y[:200], X[200:250], y[200:250], seed=0, n_classes=3)
    values = da.linear_shap(probe.estimator, X[:200], X[250:], cache_dir=analysis_cache_dir)
    assert values.shape == (50, 6, 3)
    logits, logits_bg = probe.estimator.decision_function(X[250:]), probe.estimator.decision_function(X[:200])
    np.testing.assert_allclose(values.sum(axis=1), logits - logits_bg.mean(axis=0), atol=1e-8)


def test_linear_parts_rejects_a_non_linear_probe():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(60, 4)), np.r_[np.zeros(30), np.ones(30)].astype(int)
    knn = fit_probe("knn", "binary", X[:40], y[:40], X[40:], y[40:], seed=0)
    with pytest.raises(DataError, match="not a standardised linear probe"):
        da.linear_parts(knn.estimator)


def _pairwise_gini(x: np.ndarray) -> float:
    """Gini as mean absolute difference over all pairs / (2 · mean): the definition, independently."""
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean()))


@pytest.mark.parametrize("mass", [np.ones(10), np.eye(10)[3], np.arange(1.0, 21.0),
                                  np.random.default_rng(4).exponential(size=50)])
def test_gini_matches_the_pairwise_definition(mass):
    assert da.gini(mass) == pytest.approx(_pairwise_gini(mass), abs=1e-12)


def test_concentration_of_uniform_and_one_hot_mass():
    uniform = da.concentration(np.ones(10))
    assert (uniform.dims_50, uniform.dims_90, uniform.gini) == (5, 9, pytest.approx(0.0))
    single = da.concentration(np.eye(8)[5] * 3.0)
    assert (single.dims_50, single.dims_90) == (1, 1) and single.gini == pytest.approx(1 - 1 / 8)
    half = da.concentration(np.array([5.0, 3.0, 1.0, 1.0]))
    assert (half.dims_50, half.dims_90) == (1, 3)
    with pytest.raises(DataError):
        da.concentration(np.array([1.0, -1.0]))


def test_jaccard_and_mean_pairwise():
    assert da.jaccard([1, 2, 3], [2, 3, 4]) == pytest.approx(2 / 4)
    assert da.jaccard([], []) == 1.0
    assert da.mean_pairwise_jaccard([[1, 2], [1, 2], [3, 4]]) == pytest.approx((1 + 0 + 0) / 3)
    assert da.mean_pairwise_jaccard([[1]]) is None


def test_top_dims_come_from_validation_not_test():
    rng = np.random.default_rng(5)
    test_values = np.zeros((30, 40, 1))
    test_values[:, :5, 0] = rng.normal(size=(30, 5))  # test attribution on dims 0-4
    val_values = np.zeros((20, 40, 1))
    val_values[:, 5:10, 0] = rng.normal(size=(20, 5))  # validation attribution on dims 5-9
    test_mass, val_mass = da.attribution_mass(test_values), da.attribution_mass(val_values)
    out = da.summarise_level([test_mass, test_mass], [val_mass, val_mass], ["pos"], k=5)
    summary = out["outputs"]["pos"]
    assert sorted(summary["top_dims"]) == [5, 6, 7, 8, 9]
    assert summary["val_test_overlap"] == 0.0 and summary["top_k_test_share"] == 0.0
    assert summary["seed_stability"] == 1.0
    assert summary["concentration"]["dims_90"] <= 5


def test_level_stability_pairs_levels():
    a = np.arange(30.0)[:, None]
    stable = da.level_stability({"frac10": a, "frac100": a * 2}, ["pos"], k=5)
    assert stable["pos"]["mean"] == 1.0
    moved = da.level_stability({"frac10": a, "frac100": a[::-1].copy()}, ["pos"], k=5)
    assert moved["pos"]["pairs"] == {"frac10|frac100": 0.0}
