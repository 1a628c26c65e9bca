"""Probes: learn on separable data, chance on noise, select on validation only, deterministic, robust."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgfm_suite.errors import DataError, SpecError
from ecgfm_suite.metrics import MAIN_METRIC, evaluate, point_estimate
from ecgfm_suite.probes import PROBES, FittedProbe, fit_probe
from ecgfm_suite.probes.linear import PATIENCE
from ecgfm_suite.probes.mlp import MIN_DELTA as MLP_MIN_DELTA
from ecgfm_suite.registry import resolve

KINDS = ("linear", "knn", "mlp")
TASKS = (("binary", None), ("multiclass", 4), ("multilabel", 3), ("regression", None))
D = 24


def synthetic(task_type: str, n: int, rng: np.random.Generator, *, n_classes: int | None = None,
              informative: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings whose first dimensions carry the labels (or carry nothing, ``informative=False``)."""
    latent = rng.normal(size=(n, 4))
    X = rng.normal(size=(n, D)).astype(np.float32)
    if informative:
        X[:, :4] += 4.0 * latent.astype(np.float32)
    if task_type == "binary":
        y = (latent[:, 0] > 0).astype(int)
    elif task_type == "multiclass":
        y = np.argmax(latent[:, :n_classes] if n_classes <= 4 else latent, axis=1)
    elif task_type == "multilabel":
        y = (latent[:, :n_classes] > 0.3).astype(np.int8)
    else:
        y = 40.0 + 5.0 * latent.sum(axis=1)
    return X, y


def splits(task_type: str, n_classes: int | None, seed: int = 0, *, informative: bool = True, n: int = 400):
    rng = np.random.default_rng(seed)
    return [synthetic(task_type, m, rng, n_classes=n_classes, informative=informative) for m in (n, 200, 300)]


def main_value(task_type: str, y: np.ndarray, scores: np.ndarray) -> float:
    return point_estimate(MAIN_METRIC[task_type], task_type, y, scores)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task_type,n_classes", TASKS)
def test_probe_learns_separable_data(kind, task_type, n_classes):
    (Xtr, ytr), (Xva, yva), (Xte, yte) = splits(task_type, n_classes)
    probe = fit_probe(kind, task_type, Xtr, ytr, Xva, yva, seed=0, n_classes=n_classes)
    scores = probe.predict_scores(Xte)
    if task_type == "regression":
        # k-NN on 400 records suffers from the 20 uninformative dimensions, but still clearly beats R² = 0
        assert scores.shape == (len(Xte),)
        assert r2_score(yte, scores) > (0.4 if kind == "knn" else 0.8)
    else:
        assert main_value(task_type, yte, scores) > 0.9
        assert scores.shape == ((len(Xte),) if task_type == "binary" else (len(Xte), n_classes))
        assert np.all((scores >= 0) & (scores <= 1))
    if task_type == "multiclass":
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)
    json.dumps(dict(probe.params))  # params are json-able


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("task_type,n_classes", TASKS)
def test_probe_is_near_chance_on_noise(kind, task_type, n_classes):
    (Xtr, ytr), (Xva, yva), (Xte, yte) = splits(task_type, n_classes, seed=1, informative=False, n=300)
    rng = np.random.default_rng(2)
    Xte = rng.normal(size=(1500, D)).astype(np.float32)
    yte = synthetic(task_type, 1500, rng, n_classes=n_classes)[1]
    scores = fit_probe(kind, task_type, Xtr, ytr, Xva, yva, seed=0, n_classes=n_classes).predict_scores(Xte)
    if task_type == "regression":
        assert r2_score(yte, scores) < 0.05
    else:
        assert abs(main_value(task_type, yte, scores) - 0.5) < 0.06


@pytest.mark.parametrize("kind", KINDS)
def test_test_set_changes_nothing_in_params(kind):
    (Xtr, ytr), (Xva, yva), (Xte, _) = splits("binary", None)
    a = fit_probe(kind, "binary", Xtr, ytr, Xva, yva, seed=0)
    a.predict_scores(Xte)
    b = fit_probe(kind, "binary", Xtr, ytr, Xva, yva, seed=0)
    b.predict_scores(np.random.default_rng(9).normal(size=(50, D)))  # a different "test set"
    assert dict(a.params) == dict(b.params)
    np.testing.assert_array_equal(a.predict_scores(Xva), b.predict_scores(Xva))


@pytest.mark.parametrize("kind", KINDS)
def test_validation_drives_selection(kind):
    (Xtr, ytr), (Xva, yva), _ = splits("binary", None)
    probe = fit_probe(kind, "binary", Xtr, ytr, Xva, yva, seed=0)
    curve = probe.params["val_auroc"]
    # the kept model is the one the curve chose, and the curve is the maximum
    name = {"linear": "C", "knn": "k"}.get(kind)
    chosen = probe.params["epochs"] - 1 if kind == "mlp" else probe.params[f"{name}_grid"].index(probe.params[name])
    tolerance = MLP_MIN_DELTA if kind == "mlp" else 0.0  # the MLP needs a gain > MIN_DELTA to move on
    assert curve[chosen] >= max(c for c in curve if c is not None) - tolerance
    if kind == "mlp":  # stopped PATIENCE epochs after the kept one
        assert probe.params["epochs_run"] - probe.params["epochs"] == probe.params["patience"]
    assert main_value("binary", yva, probe.predict_scores(Xva)) == pytest.approx(curve[chosen], abs=1e-6)
    # different validation labels give a different validation curve
    shuffled = fit_probe(kind, "binary", Xtr, ytr, Xva, np.random.default_rng(0).permutation(yva), seed=0)
    assert shuffled.params["val_auroc"] != curve


def test_linear_c_matches_cold_start_grid_search():
    """Independent check: fresh scikit-learn pipelines per C, scored on validation with scikit-learn."""
    (Xtr, ytr), (Xva, yva), _ = splits("binary", None, seed=3, n=250)
    yva = np.where(np.random.default_rng(4).random(len(yva)) < 0.25, 1 - yva, yva)  # noisy validation labels
    probe = fit_probe("linear", "binary", Xtr, ytr, Xva, yva, seed=0)
    grid = probe.params["C_grid"]
    curve = [roc_auc_score(yva, make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
                           .fit(Xtr, ytr).predict_proba(Xva)[:, 1]) for c in grid]
    tried = len(probe.params["val_auroc"])
    np.testing.assert_allclose(probe.params["val_auroc"], curve[:tried], atol=1e-3)
    chosen = grid.index(probe.params["C"])
    assert curve[chosen] >= max(curve[:tried]) - 1e-3
    # the walk over C stops only after PATIENCE values that did not beat the chosen one
    assert tried == len(grid) or tried - 1 - chosen == PATIENCE


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_by_seed(kind):
    (Xtr, ytr), (Xva, yva), (Xte, _) = splits("multiclass", 4, n=200)
    runs = [fit_probe(kind, "multiclass", Xtr, ytr, Xva, yva, seed=s, n_classes=4).predict_scores(Xte)
            for s in (5, 5, 6)]
    np.testing.assert_array_equal(runs[0], runs[1])
    if kind == "mlp":  # the only stochastic probe
        assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("kind", KINDS)
def test_multilabel_constant_training_column(kind):
    (Xtr, ytr), (Xva, yva), (Xte, yte) = splits("multilabel", 3)
    ytr = ytr.copy()
    ytr[:, 1] = 0  # absent in this small training subset
    ytr[:, 2] = 1  # present in every training record
    probe = fit_probe(kind, "multilabel", Xtr, ytr, Xva, yva, seed=0)
    scores = probe.predict_scores(Xte)
    assert np.all(scores[:, 1] == 0.0) and np.all(scores[:, 2] == 1.0)
    assert probe.params["constant_labels"] == [1, 2] and probe.fitted_labels == (0,)
    assert roc_auc_score(yte[:, 0], scores[:, 0]) > 0.9
    res = evaluate("multilabel", yte, scores, y_val=yva, scores_val=probe.predict_scores(Xva), n_boot=20)
    assert res["auroc"].value == pytest.approx((roc_auc_score(yte[:, 0], scores[:, 0]) + 0.5 + 0.5) / 3)


def test_multilabel_all_columns_constant():
    (Xtr, ytr), (Xva, yva), (Xte, _) = splits("multilabel", 3)
    probe = fit_probe("linear", "multilabel", Xtr, np.zeros_like(ytr), Xva, yva, seed=0)
    assert probe.estimator is None and np.all(probe.predict_scores(Xte) == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_single_class_training_gives_constant_scores(kind):
    (Xtr, ytr), (Xva, yva), (Xte, _) = splits("binary", None)
    probe = fit_probe(kind, "binary", Xtr, np.zeros_like(ytr), Xva, yva, seed=0)
    assert np.all(probe.predict_scores(Xte) == 0) and probe.params["constant"]


@pytest.mark.parametrize("kind", KINDS)
def test_multiclass_class_absent_from_training(kind):
    (Xtr, ytr), (Xva, yva), (Xte, _) = splits("multiclass", 4)
    keep = ytr != 3
    probe = fit_probe(kind, "multiclass", Xtr[keep], ytr[keep], Xva, yva, seed=0, n_classes=4)
    scores = probe.predict_scores(Xte)
    assert scores.shape == (len(Xte), 4)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)
    if kind != "mlp":  # the MLP's output layer knows all classes and learns a low score instead
        assert np.all(scores[:, 3] == 0)


def test_linear_estimator_is_an_explainable_pipeline():
    (Xtr, ytr), (Xva, yva), (Xte, _) = splits("multilabel", 3)
    probe = fit_probe("linear", "multilabel", Xtr, ytr, Xva, yva, seed=0)
    assert isinstance(probe.estimator, Pipeline)
    clf = probe.estimator[-1]
    assert clf.coef_.shape == (3, D) and clf.intercept_.shape == (3,)
    z = probe.estimator[0].transform(Xte) @ clf.coef_.T + clf.intercept_
    np.testing.assert_allclose(probe.predict_scores(Xte), 1 / (1 + np.exp(-z)), rtol=1e-5)
    (Xtr, ytr), (Xva, yva), (Xte, _) = splits("binary", None)
    binary = fit_probe("linear", "binary", Xtr, ytr, Xva, yva, seed=0)
    np.testing.assert_allclose(binary.predict_scores(Xte), binary.estimator.predict_proba(Xte)[:, 1])


def test_mlp_regression_predicts_in_target_units():
    (Xtr, ytr), (Xva, yva), (Xte, yte) = splits("regression", None)
    probe = fit_probe("mlp", "regression", Xtr, ytr, Xva, yva, seed=0)
    np.testing.assert_allclose(probe.estimator.predict(Xte), probe.predict_scores(Xte), rtol=1e-5)
    assert abs(probe.predict_scores(Xte).mean() - yte.mean()) < 3.0


def test_registry():
    assert list(PROBES) == sorted(KINDS)
    for _, spec in PROBES.items():
        assert callable(resolve(spec.fitter))
    with pytest.raises(SpecError, match="did you mean linear"):
        fit_probe("lineer", "binary", np.zeros((4, 2)), [0, 1, 0, 1], np.zeros((4, 2)), [0, 1, 0, 1], seed=0)


@pytest.mark.parametrize("change,error,match", [
    (lambda a: {**a, "X_train": np.where(np.arange(D) == 0, np.nan, a["X_train"])}, DataError, "X_train.*non-finite"),
    (lambda a: {**a, "y_train": a["y_train"][:-1]}, DataError, "X_train.*labels"),
    (lambda a: {**a, "X_val": a["X_val"][:, :-1]}, DataError, "X_val.*features"),
    (lambda a: {**a, "y_train": a["y_train"] + 1}, DataError, "y_train.*0/1"),
    (lambda a: {**a, "task_type": "ordinal"}, SpecError, "task type"),
    (lambda a: {**a, "n_classes": 3}, SpecError, "n_classes"),
])
def test_bad_input_is_a_clear_error(change, error, match):
    (Xtr, ytr), (Xva, yva), _ = splits("binary", None)
    args = change({"X_train": Xtr, "y_train": ytr, "X_val": Xva, "y_val": yva, "task_type": "binary"})
    with pytest.raises(error, match=match):
        fit_probe("linear", args.pop("task_type"), seed=0, **args)


def test_predict_rejects_wrong_width():
    (Xtr, ytr), (Xva, yva), _ = splits("binary", None)
    probe: FittedProbe = fit_probe("knn", "binary", Xtr, ytr, Xva, yva, seed=0)
    with pytest.raises(DataError, match="features"):
        probe.predict_scores(np.zeros((3, D + 1)))
