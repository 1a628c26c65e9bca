"""Calibration of a pair's probe: every output scored before and after temperature scaling; bad input skips."""

from __future__ import annotations

import types

import numpy as np
import pytest

from ecgfm_suite.analysis import calibration as cal
from ecgfm_suite.errors import AnalysisSkip
from ecgfm_suite.report.figures import figures_for

from .pair_data import pair, task_data

SCORES = ("ece", "brier", "slope", "intercept")
ROW_KEYS = {"model", "task", "scarcity", "output", "n", "positives", "bins", "temperature", "reason",
            *(f"{p}{s}{e}" for p in ("", "ts_") for s in SCORES for e in ("", "_ci_low", "_ci_high")),
            *(f"{p}ece_{e}" for p in ("", "ts_") for e in ("noise_floor", "p_value"))}


def _informative(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    X = np.eye(n_classes)[y] * 1.5 + rng.normal(size=(n, n_classes))
    return y, np.c_[X, rng.normal(size=(n, 3))]


def test_an_under_confident_probe_is_fixed_by_temperature_scaling_and_every_row_is_flat(tmp_path):
    """The probe's C is chosen on validation AUROC, which is blind to calibration: on these well-separated
    classes it picks the strongest regularisation, whose probabilities hug the prevalence (slope > 1).
    One temperature fitted on validation makes them calibrated within sampling noise."""
    y, X = _informative(2000, 2, 0)
    data = pair(task_data("ludb_lvh", y, ("no_lvh", "lvh")), X, tmp_path)
    payload = cal.run(data, cal.AnalysisOptions()).payload
    assert list(payload["outputs"]) == ["lvh"] and payload["bins_target"] == 10
    out = payload["outputs"]["lvh"]
    assert out["bins"] == 10 and out["n"] == 400
    assert out["ece"]["ci_low"] > out["ece"]["noise_floor"] and out["ece"]["p_value"] < 0.01
    assert out["slope"]["ci_low"] > 1 and out["temperature"] < 1
    assert out["ts_ece"]["value"] <= out["ts_ece"]["noise_floor"] and out["ts_ece"]["p_value"] > 0.05
    assert out["ts_slope"]["ci_low"] < 1 < out["ts_slope"]["ci_high"]
    assert out["ts_brier"]["value"] < out["brier"]["value"]
    assert cal.problems(payload) == []
    rows = cal.rows(data.key, payload)
    assert len(rows) == 1 and set(rows[0]) == ROW_KEYS and rows[0]["scarcity"] == "frac100"
    assert figures_for("calibration", payload)["reliability"].startswith(b"\x89PNG")


def test_multiclass_has_one_vs_rest_outputs_and_the_top_label(tmp_path):
    y, X = _informative(1500, 3, 1)
    classes = ("sinus", "afib", "other")
    payload = cal.run(pair(task_data("ludb_rhythm", y, classes), X, tmp_path), cal.AnalysisOptions()).payload
    assert list(payload["outputs"]) == [*classes, cal.TOP_LABEL]
    temperatures = {o["temperature"] for o in payload["outputs"].values()}
    assert len(temperatures) == 1  # one T for the softmax
    top = payload["outputs"][cal.TOP_LABEL]
    assert 0 < top["positives"] < top["n"] and top["ts_ece"]["value"] <= top["ece"]["value"] + 0.02
    assert cal.problems(payload) == []


def test_an_output_without_a_positive_test_record_says_why(tmp_path):
    rng = np.random.default_rng(2)
    y = (rng.random((1000, 2)) < 0.3).astype(np.int8)
    y[np.arange(1000) % 5 == 4, 1] = 0  # label 1 has no positive in the test split
    X = np.c_[y * 1.0, rng.normal(size=(1000, 3))]
    payload = cal.run(pair(task_data("ludb_conduction", y, ("irbbb", "lah")), X, tmp_path),
                      cal.AnalysisOptions()).payload
    assert payload["outputs"]["irbbb"]["reason"] is None
    assert payload["outputs"]["lah"]["reason"] == "no test record is positive: calibration is undefined"
    assert cal.problems(payload) == []


def test_scores_that_are_not_probabilities_or_a_regression_are_skips():
    with pytest.raises(AnalysisSkip, match="not probabilities"):
        cal.check_probabilities("binary", np.array([0.2, 1.4]), "test")
    with pytest.raises(AnalysisSkip, match="do not sum to 1"):
        cal.check_probabilities("multiclass", np.array([[0.2, 0.2], [0.5, 0.5]]), "test")
    regression = types.SimpleNamespace(task_type="regression", task=types.SimpleNamespace(
        task=types.SimpleNamespace(id="ludb_age")))
    with pytest.raises(AnalysisSkip, match="regression: its probe gives no probabilities"):
        cal.run(regression, cal.AnalysisOptions())  # type: ignore[arg-type]  # only what the skip reads


def test_a_perfect_ranking_has_no_slope_and_says_why():
    y = np.r_[np.zeros(30), np.ones(3)].astype(int)
    p = np.r_[np.full(30, 0.01), np.full(3, 0.4)]
    out = cal.output_calibration(y, p, p, bins=3, n_boot=50, seed=0)
    assert np.isnan(out["slope"]["value"]) and "separate the outcomes" in out["note"]
    assert out["ece"]["value"] == pytest.approx((3 * 0.6 + 30 * 0.01) / 33)
