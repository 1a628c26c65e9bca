"""Metrics against scikit-learn, bootstrap against a slow per-resample loop, strata guarantees."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

from ecgfm_suite.errors import DataError, SpecError
from ecgfm_suite.metrics import (
    MAIN_METRIC,
    METRICS,
    PER_CLASS_METRICS,
    TASK_TYPES,
    MetricCI,
    aggregate_seeds,
    class_positives,
    count_matrix,
    draw_indices,
    evaluate,
    evaluate_classes,
    metrics_for,
    paired_bootstrap,
    point_estimate,
    strata,
    tune_thresholds,
)
from ecgfm_suite.metrics import evaluation as evaluate_module

HYP = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- independent reference (scikit-learn)

def _binary_cols(y: np.ndarray) -> np.ndarray:
    return y.reshape(len(y), -1).astype(bool)


def reference(task_type: str, y: np.ndarray, s: np.ndarray, y_val=None, s_val=None, *,
              thresholds: dict | None = None) -> dict[str, float]:
    """Every metric computed by scikit-learn on plain arrays (thresholds from validation only)."""
    if task_type == "regression":
        return {"mae": mean_absolute_error(y, s), "r2": r2_score(y, s)}
    if task_type == "multiclass":
        present = np.unique(y)
        pred = np.argmax(s, axis=1)
        return {
            "auroc": np.mean([roc_auc_score(y == c, s[:, c]) for c in present]),
            "auprc": np.mean([average_precision_score(y == c, s[:, c]) for c in present]),
            "f1": f1_score(y, pred, average="macro", labels=present),
            "balanced_accuracy": balanced_accuracy_score(y, pred),
        }
    Y, S = _binary_cols(y), s.reshape(len(y), -1)
    keep = Y.any(0) & ~Y.all(0)
    out = {
        "auroc": np.mean([roc_auc_score(Y[:, k], S[:, k]) for k in np.flatnonzero(keep)]),
        "auprc": np.mean([average_precision_score(Y[:, k], S[:, k]) for k in np.flatnonzero(keep)]),
    }
    if y_val is not None and thresholds is None:
        thresholds = {m: tune_thresholds(y_val, s_val, m) for m in ("f1", "balanced_accuracy")}
    if thresholds is not None:
        for metric, fn in (("f1", f1_score), ("balanced_accuracy", balanced_accuracy_score)):
            pred = thresholds[metric] <= S
            out[metric] = np.mean([fn(Y[:, k], pred[:, k]) for k in np.flatnonzero(keep)])
    return out


def make(task_type: str, n: int, rng: np.random.Generator, *, n_classes: int = 4, signal: float = 1.0,
         decimals: int | None = None):
    """Labels and noisy informative scores; ``decimals`` rounds scores to create ties."""
    if task_type == "binary":
        y = (rng.random(n) < 0.3).astype(int)
        y[:2] = [0, 1]
        s = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(size=n))))
    elif task_type == "multiclass":
        y = rng.integers(0, n_classes, n)
        y[:n_classes] = np.arange(n_classes)
        logits = signal * np.eye(n_classes)[y] + rng.normal(size=(n, n_classes))
        s = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    elif task_type == "multilabel":
        y = (rng.random((n, n_classes)) < np.linspace(0.05, 0.5, n_classes)).astype(np.int8)
        y[0], y[1] = 0, 1
        s = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(size=y.shape))))
    else:
        y = rng.normal(50, 10, n)
        s = y + rng.normal(0, 10 / max(signal, 1e-9), n)
    if decimals is not None:
        s = np.round(s, decimals)
    return y, s


# ---------------------------------------------------------------- point values vs scikit-learn

@pytest.mark.parametrize("task_type", TASK_TYPES)
@pytest.mark.parametrize("decimals", [None, 1])
def test_point_values_match_sklearn(task_type, decimals):
    rng = np.random.default_rng(1)
    y, s = make(task_type, 300, rng, decimals=decimals)
    yv, sv = make(task_type, 200, rng, decimals=decimals)
    got = evaluate(task_type, y, s, y_val=yv, scores_val=sv, n_boot=20)
    want = reference(task_type, y, s, yv, sv)
    assert set(got) == set(metrics_for(task_type)) == set(want)
    for metric, value in want.items():
        assert got[metric].value == pytest.approx(value, abs=1e-12), metric
        assert METRICS.get(metric).in_range(got[metric].value)


@HYP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 60), task=st.sampled_from(TASK_TYPES),
       decimals=st.sampled_from([None, 0, 1]), signal=st.sampled_from([0.0, 1.0, 5.0]))
def test_point_values_match_sklearn_random(seed, n, task, decimals, signal):
    rng = np.random.default_rng(seed)
    y, s = make(task, n, rng, n_classes=3, signal=signal, decimals=decimals)
    yv, sv = make(task, n, rng, n_classes=3, signal=signal, decimals=decimals)
    want = reference(task, y, s, yv, sv)
    got = evaluate(task, y, s, y_val=yv, scores_val=sv, n_boot=2)
    for metric, value in want.items():
        assert got[metric].value == pytest.approx(value, rel=1e-9, abs=1e-10), metric


def test_edge_cases_against_sklearn():
    y = np.array([0, 1, 0, 1, 1, 0])
    for s in (np.full(6, 0.3), np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.3]), np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.7]),
              np.array([0.5, 0.5, 0.1, 0.5, 0.9, 0.1])):
        got = evaluate("binary", y, s, y_val=y, scores_val=s, n_boot=2)
        assert got["auroc"].value == pytest.approx(roc_auc_score(y, s))
        assert got["auprc"].value == pytest.approx(average_precision_score(y, s))
        assert got["f1"].value == pytest.approx(f1_score(y, s >= tune_thresholds(y, s, "f1")[0]))
    # a single positive; constant scores give AUROC 1/2 and AP = prevalence
    y1 = np.array([0, 0, 0, 0, 1])
    got = evaluate("binary", y1, np.zeros(5), n_boot=2)
    assert got["auroc"].value == 0.5 and got["auprc"].value == pytest.approx(0.2)
    # regression: perfect predictions
    t = np.arange(5.0)
    got = evaluate("regression", t, t, n_boot=2)
    assert got["mae"].value == 0.0 and got["r2"].value == 1.0


def test_thresholded_metrics_need_validation():
    rng = np.random.default_rng(0)
    y, s = make("binary", 100, rng)
    assert set(evaluate("binary", y, s, n_boot=2)) == {"auroc", "auprc"}
    y, s = make("multiclass", 100, rng)
    assert set(evaluate("multiclass", y, s, n_boot=2)) == set(metrics_for("multiclass"))  # argmax, no threshold


def test_multiclass_auroc_equals_sklearn_ovr_with_all_classes():
    y, s = make("multiclass", 400, np.random.default_rng(3))
    got = evaluate("multiclass", y, s, n_boot=2)
    assert got["auroc"].value == pytest.approx(roc_auc_score(y, s, multi_class="ovr", average="macro"))


def test_multilabel_macro_skips_classes_without_both_labels_in_test():
    rng = np.random.default_rng(4)
    y, s = make("multilabel", 200, rng)
    y[:, 2] = 0
    got = evaluate("multilabel", y, s, n_boot=5)
    keep = [0, 1, 3]
    assert got["auroc"].value == pytest.approx(roc_auc_score(y[:, keep], s[:, keep], average="macro"))
    assert got["auprc"].value == pytest.approx(average_precision_score(y[:, keep], s[:, keep], average="macro"))


# ---------------------------------------------------------------- thresholds

def test_thresholds_maximise_validation_objective():
    rng = np.random.default_rng(5)
    y, s = make("binary", 80, rng, decimals=2)
    for metric, fn in (("f1", f1_score), ("balanced_accuracy", balanced_accuracy_score)):
        t = tune_thresholds(y, s, metric)[0]
        best = max(fn(y, s >= c) for c in np.r_[np.unique(s), np.inf])
        assert fn(y, s >= t) == pytest.approx(best)
    assert tune_thresholds(np.zeros(4), np.arange(4.0))[0] == np.inf
    assert tune_thresholds(np.ones(4), np.arange(4.0), "balanced_accuracy")[0] == -np.inf
    with pytest.raises(SpecError, match="objective"):
        tune_thresholds(y, s, "accuracy")


@pytest.mark.parametrize("task_type", ["binary", "multilabel"])
def test_thresholds_never_see_test_arrays(task_type, monkeypatch):
    rng = np.random.default_rng(6)
    y, s = make(task_type, 200, rng)
    yv, sv = make(task_type, 150, rng)
    seen = []
    original = evaluate_module.tune_thresholds

    def spy(y_arg, s_arg, objective):
        seen.append((np.asarray(y_arg).copy(), np.asarray(s_arg).copy(), original(y_arg, s_arg, objective)))
        return seen[-1][2]

    monkeypatch.setattr(evaluate_module, "tune_thresholds", spy)
    first = evaluate(task_type, y, s, y_val=yv, scores_val=sv, n_boot=5)
    perturbed = np.clip(s + rng.normal(0, 0.3, s.shape), 0, 1)
    evaluate(task_type, y, perturbed, y_val=yv, scores_val=sv, n_boot=5)
    assert len(seen) == 4
    for y_arg, s_arg, _ in seen:
        np.testing.assert_array_equal(y_arg, yv)
        np.testing.assert_array_equal(s_arg, sv)
    np.testing.assert_array_equal(seen[0][2], seen[2][2])
    # the reported F1 is the test F1 at those validation thresholds
    Y, S = _binary_cols(y), s.reshape(len(y), -1)
    pred = seen[0][2] <= S
    assert first["f1"].value == pytest.approx(np.mean([f1_score(Y[:, k], pred[:, k]) for k in range(Y.shape[1])]))


# ---------------------------------------------------------------- bootstrap

@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_vectorised_bootstrap_equals_slow_loop(task_type):
    rng = np.random.default_rng(7)
    y, s = make(task_type, 120, rng, decimals=2)
    yv, sv = make(task_type, 80, rng)
    n_boot, seed = 15, 11
    got = evaluate(task_type, y, s, y_val=yv, scores_val=sv, n_boot=n_boot, seed=seed)
    idx = draw_indices(strata(task_type, y), n_boot, np.random.default_rng(seed))
    thresholds = None if task_type in ("multiclass", "regression") else {
        m: tune_thresholds(yv, sv, m) for m in ("f1", "balanced_accuracy")}
    loop = [reference(task_type, y[i], s[i], thresholds=thresholds) for i in idx]  # scikit-learn per resample
    for metric in got:
        values = np.array([r[metric] for r in loop])
        assert got[metric].ci_low == pytest.approx(np.percentile(values, 2.5), abs=1e-10)
        assert got[metric].ci_high == pytest.approx(np.percentile(values, 97.5), abs=1e-10)
        assert got[metric].se == pytest.approx(np.std(values, ddof=1), abs=1e-10)
        assert got[metric].n_boot == n_boot


def test_count_matrix_counts_occurrences():
    idx = np.array([[0, 0, 2], [1, 2, 2]])
    np.testing.assert_array_equal(count_matrix(idx, 3), [[2, 0, 1], [0, 1, 2]])


@pytest.mark.parametrize("task_type", ["binary", "multiclass", "multilabel", "regression"])
def test_ci_contains_estimate_and_narrows_with_n(task_type):
    widths = []
    for n in (100, 1600):
        y, s = make(task_type, n, np.random.default_rng(n))
        yv, sv = make(task_type, 200, np.random.default_rng(n + 1))
        res = evaluate(task_type, y, s, y_val=yv, scores_val=sv, n_boot=300, seed=0)
        for metric, ci in res.items():
            assert ci.ci_low <= ci.value <= ci.ci_high, (metric, ci)
            assert ci.se > 0
        main = res[MAIN_METRIC[task_type]]
        widths.append(main.ci_high - main.ci_low)
    assert widths[1] < 0.5 * widths[0]  # width ~ 1/sqrt(n): 16x the records, about a quarter the width


def test_bootstrap_is_seeded():
    y, s = make("binary", 200, np.random.default_rng(8))
    a, b, c = (evaluate("binary", y, s, n_boot=50, seed=k) for k in (3, 3, 4))
    assert a == b and a != c


def test_class_strata_keep_every_class_count():
    y = np.array([0] * 50 + [1] * 3 + [2] * 1)
    idx = draw_indices(strata("multiclass", y), 200, np.random.default_rng(0))
    for row in idx:
        np.testing.assert_array_equal(np.bincount(y[row], minlength=3), [50, 3, 1])


@HYP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 40), n_labels=st.integers(1, 6),
       prevalence=st.floats(0.02, 0.98))
def test_multilabel_strata_keep_a_positive_and_negative_of_every_class(seed, n, n_labels, prevalence):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < prevalence).astype(np.int8)
    idx = draw_indices(strata("multilabel", y), 100, rng)
    evaluable = y.any(0) & ~y.all(0)
    pos = count_matrix(idx, n) @ y
    neg = count_matrix(idx, n) @ (1 - y)
    assert np.all(pos[:, evaluable] >= 1) and np.all(neg[:, evaluable] >= 1)


def test_multilabel_strata_pool_singleton_combinations():
    # every combination unique: without pooling nothing would vary
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 0], [1, 1, 1]])
    codes = strata("multilabel", y)
    assert (codes == -1).sum() >= 4
    idx = draw_indices(codes, 200, np.random.default_rng(0))
    assert len({tuple(row) for row in idx}) > 1


def test_r2_drops_resamples_with_constant_targets():
    y = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    res = evaluate("regression", y, y + 0.1, n_boot=200, seed=0)
    assert 0 < res["r2"].n_boot < 200 and res["mae"].n_boot == 200


# ---------------------------------------------------------------- paired comparison

def test_paired_bootstrap_identical_models():
    y, s = make("binary", 200, np.random.default_rng(9))
    res = paired_bootstrap("auroc", y, s, s, n_boot=200, seed=0)
    assert res.diff == 0 and res.ci_low == 0 and res.ci_high == 0 and res.p_value == 1.0


def test_paired_bootstrap_detects_a_better_model():
    rng = np.random.default_rng(10)
    y, good = make("binary", 400, rng, signal=2.0)
    bad = good + rng.normal(0, 1.0, 400)
    res = paired_bootstrap("auroc", y, good, bad, n_boot=500, seed=0)
    assert res.diff == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, bad))
    assert res.ci_low > 0 and res.p_value < 0.01
    swapped = paired_bootstrap("auroc", y, bad, good, n_boot=500, seed=0)
    assert swapped.diff == pytest.approx(-res.diff) and swapped.ci_high < 0


def test_paired_bootstrap_matches_slow_loop():
    """Same resample indices for both models; permutation swaps whole records between models."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(12)
    y, a = make("binary", 80, rng)
    b = np.clip(a + rng.normal(0, 0.3, 80), 0, 1)
    n_boot, seed = 30, 5
    res = paired_bootstrap("auroc", y, a, b, n_boot=n_boot, seed=seed)
    gen = np.random.default_rng(seed)
    idx = draw_indices(strata("binary", y), n_boot, gen)
    diffs = [roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]) for i in idx]
    assert res.ci_low == pytest.approx(np.percentile(diffs, 2.5))
    assert res.ci_high == pytest.approx(np.percentile(diffs, 97.5))
    swap = gen.random((n_boot, 80)) < 0.5
    ra, rb = rankdata(a) / 80, rankdata(b) / 80
    null = [roc_auc_s - roc_auc_t for roc_auc_s, roc_auc_t in
            ((roc_auc_score(y, np.where(w, rb, ra)), roc_auc_score(y, np.where(w, ra, rb))) for w in swap)]
    observed = roc_auc_score(y, a) - roc_auc_score(y, b)
    expected_p = (1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (1 + n_boot)
    assert res.p_value == pytest.approx(expected_p)


@pytest.mark.parametrize("task_type,metric", [("multilabel", "f1"), ("multiclass", "balanced_accuracy"),
                                              ("regression", "mae"), ("multiclass", "auprc")])
def test_paired_bootstrap_point_difference(task_type, metric):
    rng = np.random.default_rng(13)
    y, a = make(task_type, 150, rng)
    _, b = make(task_type, 150, rng, signal=0.5)
    yv, sva = make(task_type, 100, rng)
    res = paired_bootstrap(metric, y, a, b, n_boot=50, seed=0, y_val=yv, scores_val_a=sva, scores_val_b=sva)
    ref_a = reference(task_type, y, a, yv, sva)[metric]
    ref_b = reference(task_type, y, b, yv, sva)[metric]
    assert res.diff == pytest.approx(ref_a - ref_b)
    assert res.ci_low <= res.ci_high and 0 < res.p_value <= 1


def test_paired_bootstrap_thresholded_metric_needs_validation():
    y, s = make("binary", 50, np.random.default_rng(0))
    with pytest.raises(SpecError, match="y_val"):
        paired_bootstrap("f1", y, s, s, n_boot=10, seed=0)


# ---------------------------------------------------------------- table, containers, bad input

def test_metric_table_directions_and_ranges():
    assert METRICS.get("mae").direction == "lower" and METRICS.get("auroc").direction == "higher"
    assert METRICS.get("r2").in_range(-3.0) and not METRICS.get("auroc").in_range(1.2)
    assert not METRICS.get("auroc").in_range(math.nan)
    for task_type, metric in MAIN_METRIC.items():
        assert metric in metrics_for(task_type)


def test_metric_ci_round_trip():
    ci = MetricCI(value=0.8, ci_low=0.7, ci_high=0.9, se=0.05, n_boot=1000)
    assert MetricCI.from_dict(ci.to_dict()) == ci
    with pytest.raises(SpecError, match="unknown"):
        MetricCI.from_dict({**ci.to_dict(), "extra": 1})


def test_aggregate_seeds():
    runs = [{"auroc": MetricCI(value=v, ci_low=0, ci_high=1, se=0.1, n_boot=10), "f1": v / 2} for v in (0.7, 0.8, 0.9)]
    agg = aggregate_seeds(runs)
    assert agg["auroc"] == pytest.approx((0.8, np.std([0.7, 0.8, 0.9], ddof=1)))
    assert agg["f1"] == pytest.approx((0.4, np.std([0.35, 0.4, 0.45], ddof=1)))
    assert math.isnan(aggregate_seeds(runs[:1])["auroc"][1])
    with pytest.raises(SpecError, match="metrics"):
        aggregate_seeds([{"auroc": 0.5}, {"f1": 0.5}])


@pytest.mark.parametrize("args,error,match", [
    (("binary", [0, 1, 1], [0.1, np.nan, 0.3]), DataError, "non-finite"),
    (("binary", [0, 1, 2], [0.1, 0.2, 0.3]), DataError, "0/1"),
    (("binary", [0, 1, 1], [0.1, 0.2]), DataError, "shape"),
    (("binary", [1, 1, 1], [0.1, 0.2, 0.3]), DataError, "positive and a negative"),
    (("multiclass", [0, 3, 1], np.ones((3, 3))), DataError, "0..2"),
    (("multiclass", [1, 1, 1], np.ones((3, 3))), DataError, "single class"),
    (("multilabel", [0, 1, 1], np.ones((3, 1))), DataError, "2-D"),
    (("multiclass", [0, 1, 1], [0.1, 0.2, 0.3]), DataError, r"2-D \(N, C\)"),
    (("multilabel", [[0, 1], [1, 0]], np.ones((2, 3))), DataError, r"shape \(2, 2\)"),
    (("regression", [1.0], [1.0]), DataError, "at least 2"),
    (("survival", [0, 1], [0.1, 0.2]), SpecError, "unknown task type"),
])
def test_bad_input_is_a_clear_error(args, error, match):
    with pytest.raises(error, match=match):
        evaluate(*args, n_boot=10)


def test_bad_n_boot():
    with pytest.raises(SpecError, match="n_boot"):
        evaluate("binary", [0, 1], [0.1, 0.2], n_boot=1)


def test_point_estimate_matches_evaluate():
    y, s = make("multilabel", 100, np.random.default_rng(14))
    assert point_estimate("auroc", "multilabel", y, s) == evaluate("multilabel", y, s, n_boot=2)["auroc"].value
    with pytest.raises(SpecError, match="thresholded"):
        point_estimate("f1", "multilabel", y, s)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 60))
def test_a_single_weight_row_sums_groups_as_the_resampled_path_does(seed, n):
    """The point-estimate shortcut of ``score_groups`` (one weight row: bincounts) gives bit for bit what the
    sparse product of the bootstrap path gives for that row, ties and boolean labels included."""
    from ecgfm_suite.metrics import kernels

    rng = np.random.default_rng(seed)
    pos = rng.random(n) < 0.4
    score = rng.integers(0, max(2, n // 3), n) / 7.0  # many ties
    W = rng.integers(0, 4, (2, n)).astype(np.float64)
    single = kernels.score_groups(pos, score, W[:1])
    both = kernels.score_groups(pos, score, W)
    for one, many in zip(single, both, strict=True):
        assert one.shape == (1, many.shape[1]) and np.array_equal(one[0], many[0])


# ---------------------------------------------------------------- per-class metrics

def _class_labels(task_type: str, y: np.ndarray, k: int) -> np.ndarray:
    return y == k if task_type == "multiclass" else y[:, k].astype(bool)


@HYP
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(6, 60), task=st.sampled_from(["multiclass", "multilabel"]),
       n_classes=st.integers(2, 5), decimals=st.sampled_from([None, 0, 1]), hole=st.sampled_from([None, 0, 1]))
def test_per_class_values_match_sklearn_and_undefined_classes_say_why(seed, n, task, n_classes, decimals, hole):
    """Each class's AUROC/AUPRC is scikit-learn's on that class's column; a class without both labels in the test
    split (``hole``: multiclass absent, multilabel all-negative or all-positive) is undefined, never 0.5; the
    macro is the plain mean of the defined classes."""
    rng = np.random.default_rng(seed)
    y, s = make(task, n, rng, n_classes=n_classes, decimals=decimals)
    last = n_classes - 1
    if hole is not None and task == "multiclass" and n_classes > 2:
        y[y == last] = 0  # the last class is absent from the test split
    elif hole is not None and task == "multilabel":
        y[:, last] = hole  # no positive (0) or no negative (1) for the last class
    result = evaluate_classes(task, y, s, n_boot=3, seed=seed % 7)
    assert [c.index for c in result.classes] == list(range(n_classes))
    defined = []
    for c in result.classes:
        labels = _class_labels(task, y, c.index)
        assert c.n_positive == labels.sum() and c.prevalence == pytest.approx(labels.mean())
        if labels.all() or not labels.any():
            assert c.metrics == {} and "undefined" in c.undefined
            assert ("no negative" if labels.all() else "no ") in c.undefined
            continue
        assert c.undefined is None and set(c.metrics) == set(PER_CLASS_METRICS)
        assert c.metrics["auroc"].value == pytest.approx(roc_auc_score(labels, s[:, c.index]), abs=1e-12)
        assert c.metrics["auprc"].value == pytest.approx(average_precision_score(labels, s[:, c.index]), abs=1e-12)
        defined.append(c)
    for metric in PER_CLASS_METRICS:
        macro = np.mean([c.metrics[metric].value for c in defined])
        assert result.metrics[metric].value == pytest.approx(macro, rel=1e-12, abs=1e-15)
    assert result.metrics == evaluate(task, y, s, n_boot=3, seed=seed % 7)


@pytest.mark.parametrize("task_type", ["multiclass", "multilabel"])
def test_per_class_cis_come_from_the_macros_resamples(task_type):
    """A class's CI is the percentile interval of scikit-learn's value on each resample the macro CI uses (the same
    ``draw_indices``), and contains the class's point estimate."""
    rng = np.random.default_rng(21)
    y, s = make(task_type, 150, rng, decimals=2)
    n_boot, seed = 200, 5
    result = evaluate_classes(task_type, y, s, n_boot=n_boot, seed=seed)
    idx = draw_indices(strata(task_type, y), n_boot, np.random.default_rng(seed))
    for c in result.classes:
        labels = _class_labels(task_type, y, c.index)
        for metric, fn in (("auroc", roc_auc_score), ("auprc", average_precision_score)):
            values = np.array([fn(labels[i], s[i, c.index]) for i in idx])
            ci = c.metrics[metric]
            assert ci.ci_low == pytest.approx(np.percentile(values, 2.5), abs=1e-10)
            assert ci.ci_high == pytest.approx(np.percentile(values, 97.5), abs=1e-10)
            assert ci.se == pytest.approx(np.std(values, ddof=1), abs=1e-10) and ci.n_boot == n_boot
            assert ci.ci_low <= ci.value <= ci.ci_high, (c.index, metric, ci)


@pytest.mark.parametrize("task_type", ["binary", "regression"])
def test_binary_and_regression_have_no_per_class_block(task_type):
    y, s = make(task_type, 120, np.random.default_rng(22))
    result = evaluate_classes(task_type, y, s, n_boot=20)
    assert result.classes == () and result.metrics == evaluate(task_type, y, s, n_boot=20)


def test_class_positives_count_labels_and_columns():
    np.testing.assert_array_equal(class_positives("multiclass", [0, 2, 2, 0, 0], 4), [3, 0, 2, 0])
    np.testing.assert_array_equal(class_positives("multilabel", [[1, 0, 1], [1, 0, 0]], 3), [2, 0, 1])
    with pytest.raises(SpecError, match="per-class"):
        class_positives("binary", [0, 1], 2)
