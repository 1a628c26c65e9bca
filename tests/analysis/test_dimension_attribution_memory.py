"""Dimension attribution in chunks of records, and the memory-bound analyses unchanged on the shared data."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecgfm_suite.analysis import dimension_attribution as da
from ecgfm_suite.analysis import representation as rp
from ecgfm_suite.probes import fit_probe


def _full_shap(estimator: Any, X_background: np.ndarray, X: np.ndarray, cache_dir: Any) -> np.ndarray:
    """(n, D, K) SHAP values with every background record in shap's masker: how they were computed before."""
    from ecgfm_suite.analysis._jit_cache import import_shap

    shap = import_shap(cache_dir)
    scaler, coef, intercept = da.linear_parts(estimator)
    background = scaler.transform(np.asarray(X_background, dtype=np.float64))
    explainer = shap.LinearExplainer((coef, intercept),
                                     shap.maskers.Independent(background, max_samples=len(background)))
    values = explainer.shap_values(scaler.transform(np.asarray(X, dtype=np.float64)))
    return np.asarray(values, dtype=np.float64).reshape(len(X), coef.shape[1], coef.shape[0])


@pytest.mark.parametrize("task_type", ["binary", "multiclass"])
def test_chunked_mass_equals_the_mass_of_every_records_values(task_type, analysis_cache_dir):
    rng = np.random.default_rng(0)
    n, d = 2 * da.SHAP_CHUNK + 123, 16
    X = (rng.normal(size=(n, d)) * np.linspace(0.5, 3, d) + 1.0).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(int) if task_type == "binary" else np.argmax(X[:, :3], axis=1)
    train, rows = np.arange(600), np.arange(700, n)
    probe = fit_probe("linear", task_type, X[train], y[train], X[600:700], y[600:700], seed=0,
                      n_classes=None if task_type == "binary" else 3)
    mass = da.linear_shap_mass(probe.estimator, X, rows, background_rows=train, cache_dir=analysis_cache_dir)
    expected = da.attribution_mass(_full_shap(probe.estimator, X[train], X[rows], analysis_cache_dir))
    assert mass.shape == expected.shape == (d, 1 if task_type == "binary" else 3)
    np.testing.assert_allclose(mass, expected, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(da.linear_shap(probe.estimator, X[train], X[rows[:50]], cache_dir=analysis_cache_dir),
                               _full_shap(probe.estimator, X[train], X[rows[:50]], analysis_cache_dir),
                               rtol=1e-10, atol=1e-13)


def test_the_mass_never_holds_values_for_every_record(analysis_cache_dir):
    rng = np.random.default_rng(1)
    n, d, k = 60_000, 64, 5
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.argmax(X[:, :k], axis=1)
    probe = fit_probe("linear", "multiclass", X[:800], y[:800], X[800:1000], y[800:1000], seed=0, n_classes=k)
    every_value = n * d * k * 8
    da.linear_shap_mass(probe.estimator, X, np.arange(100), background_rows=np.arange(100),
                        cache_dir=analysis_cache_dir)  # shap imported and compiled outside the traced call
    tracemalloc.start()
    try:
        da.linear_shap_mass(probe.estimator, X, np.arange(n), background_rows=np.arange(n),
                            cache_dir=analysis_cache_dir)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < every_value / 4, (peak, every_value)


def _close(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two JSON-like payloads differ beyond float round-off."""
    if isinstance(a, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(a)} vs {sorted(b)}"]
        return [d for key in a for d in _close(a[key], b[key], f"{path}/{key}")]
    if isinstance(a, list | tuple | np.ndarray):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _close(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return [] if same else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


@pytest.mark.slow
@pytest.mark.real_data
def test_shared_ptbxl_payloads_are_those_of_the_whole_array_computations(data_dir, tmp_path, analysis_cache_dir,
                                                                          monkeypatch):
    """random_cnn on the shared PTB-XL superclasses (multilabel, 5 outputs), two seeds: the dimension attribution
    payload equals the one from every record's SHAP values, RankMe equals the SVD's, and the cell's bootstrap CI
    is the one scikit-learn gives on the full index matrix drawn in one go."""
    from ecgfm_suite.engine.analyses import AnalysisStage
    from ecgfm_suite.engine.runner import Runner, run_cell
    from ecgfm_suite.engine.settings import resolve
    from ecgfm_suite.metrics import evaluate_classes, strata
    from ecgfm_suite.results import RunDir
    from ecgfm_suite.results.cell import CellSpec

    from ..metrics.test_bootstrap_chunks import _full_draw

    task = "ptbxl_superdiag"
    settings = resolve({"data_dir": str(data_dir), "cache_dir": str(analysis_cache_dir), "models": "random_cnn",
                        "tasks": task, "scarcity": "frac100", "seeds": "2", "n_boot": "200"}, env={})
    runner = Runner(settings)
    session = AnalysisStage(runner, RunDir.create(tmp_path, "run"), runner.plan())
    out = run_cell(runner, CellSpec(model="random_cnn", task=task, scarcity="frac100"), session.encoder("random_cnn"))
    data = session.data("random_cnn", task)
    options = da.AnalysisOptions()

    payload = da.run(data, options).payload
    cache = data.cache_dir

    def whole_array_mass(estimator: Any, X: np.ndarray, rows: np.ndarray, *, background_rows: np.ndarray,
                         cache_dir: Any) -> np.ndarray:
        return da.attribution_mass(_full_shap(estimator, X[background_rows], X[rows], cache))

    monkeypatch.setattr(da, "linear_shap_mass", whole_array_mass)
    reference = da.run(data, options).payload
    assert payload["cells"][f"random_cnn-{task}-frac100"]["seeds"] == [0, 1]
    assert _close(payload, reference) == []

    representation = rp.run(data, options).payload
    every, test = np.flatnonzero(data.have), data.rows("test")
    from .test_representation_gram import _svd_rankme

    assert representation["rankme"] == pytest.approx(_svd_rankme(data.X[every]), rel=1e-9)
    assert representation["rankme_test"] == pytest.approx(_svd_rankme(data.X[test]), rel=1e-9)

    y, scores = data.y[test], out.test_scores[0]
    auroc = evaluate_classes("multilabel", y, scores, n_boot=200, seed=3).metrics["auroc"]
    keep = y.any(axis=0) & ~y.all(axis=0)
    idx = _full_draw(strata("multilabel", y), 200, np.random.default_rng(3))
    per_resample = [roc_auc_score(y[i][:, keep], scores[i][:, keep], average="macro") for i in idx]
    assert auroc.ci_low == pytest.approx(np.percentile(per_resample, 2.5), abs=1e-12)
    assert auroc.ci_high == pytest.approx(np.percentile(per_resample, 97.5), abs=1e-12)
