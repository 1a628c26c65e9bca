"""Calibration scores with known answers: a calibrated predictor, an over-confident one, a constant one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from ecgfm_suite.metrics import count_matrix, draw_indices, strata
from ecgfm_suite.metrics.bootstrap import percentile_ci
from ecgfm_suite.metrics.calibration import (
    EXACT_LIMIT,
    apply_temperature,
    brier,
    calibration_samples,
    clipped_logit,
    ece,
    ece_consistency,
    ece_interval,
    equal_mass_bins,
    fit_temperature,
    recalibration,
    reliability,
)

ONE = np.ones((1, 4))


def _calibrated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    return (rng.random(n) < p).astype(int), p


def _scores(y: np.ndarray, p: np.ndarray, n_boot: int = 500, seed: int = 1) -> dict[str, tuple[float, np.ndarray]]:
    idx = draw_indices(strata("binary", y), n_boot, np.random.default_rng(seed))
    return calibration_samples(y, [(p, equal_mass_bins(p, 10))], idx)[0]


def test_a_calibrated_predictor_has_ece_near_0_within_its_ci_slope_1_and_intercept_0():
    """Over 8 draws of calibrated outcomes, each check a statistical test at 5 %: each passes nearly always."""
    passed = []
    for seed in range(8):
        y, p = _calibrated(3000, seed)
        out = _scores(y, p)
        low, high = ece_interval(*out["ece"])
        floor, p_value = ece_consistency(y, p, equal_mass_bins(p, 10), 1000, np.random.default_rng(seed))
        slope_low, slope_high = percentile_ci(out["slope"][1])[:2]
        icpt_low, icpt_high = percentile_ci(out["intercept"][1])[:2]
        # plug-in ECE is above 0 by sampling noise alone (floor ~0.027 here): its interval reaches down to ~0
        assert low < 0.02 < floor < 0.03 and high < 0.05
        passed.append((p_value > 0.05, slope_low < 1 < slope_high, icpt_low < 0 < icpt_high))
        t, bias = fit_temperature(y, p, softmax_output=False)
        assert t == pytest.approx(1.0, abs=0.15) and bias[0] == pytest.approx(0.0, abs=0.15)
    assert all(sum(test) >= 6 for test in zip(*passed, strict=True)), passed


def test_an_over_confident_predictor_is_told_apart_and_fixed_by_its_temperature():
    y, p = _calibrated(3000)
    sharp = expit(3 * logit(p))  # logits tripled: right ranking, over-confident probabilities
    out = _scores(y, sharp)
    assert out["slope"][0] == pytest.approx(1 / 3, abs=0.05) and percentile_ci(out["slope"][1])[1] < 0.5
    assert ece_interval(*out["ece"])[0] > 0.05
    assert ece_consistency(y, sharp, equal_mass_bins(sharp, 10), 1000, np.random.default_rng(2))[1] < 0.01
    t, bias = fit_temperature(y, sharp, softmax_output=False)
    assert t == pytest.approx(3.0, rel=0.15)
    fixed = _scores(y, apply_temperature(sharp, t, bias, softmax_output=False))
    assert fixed["slope"][0] == pytest.approx(1.0, abs=0.1) and fixed["ece"][0] < out["ece"][0] / 2


def test_softmax_temperature_and_biases_recover_a_distortion_of_the_logits():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4000, 4)) * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p])
    shift = np.array([0.0, 1.0, -0.5, 0.3])
    distorted = apply_temperature(p, 0.4, shift, softmax_output=True)  # logits / 0.4 + shift
    np.testing.assert_allclose(distorted.sum(axis=1), 1.0)
    t, bias = fit_temperature(y, distorted, softmax_output=True)
    assert t == pytest.approx(1 / 0.4, rel=0.1)
    np.testing.assert_allclose(apply_temperature(distorted, t, bias, softmax_output=True), p, atol=0.05)


def test_a_shrunk_sigmoid_needs_its_bias_not_only_a_temperature():
    """A strongly regularised probe: logit = 0.1 · true logit + 0.3 (its unpenalised intercept). T alone would
    scale the 0.3 up with the slope; T with a bias recovers the calibrated probabilities."""
    y, p = _calibrated(3000, seed=9)
    shrunk = expit(0.1 * logit(p) + 0.3)
    t, bias = fit_temperature(y, shrunk, softmax_output=False)
    assert t == pytest.approx(0.1, rel=0.15) and bias[0] == pytest.approx(-3.0, rel=0.2)
    assert _scores(y, apply_temperature(shrunk, t, bias, softmax_output=False))["ece"][0] < 0.035


def test_slope_matches_scikit_learn_and_a_separable_sample_has_none():
    y, p = _calibrated(500, seed=4)
    slope, _ = recalibration(y, p, np.ones((1, len(y))))
    reference = LogisticRegression(C=np.inf, tol=1e-10).fit(clipped_logit(p)[:, None], y).coef_[0, 0]
    assert slope[0] == pytest.approx(reference, rel=1e-6)
    separable_y = np.r_[np.zeros(20), np.ones(20)]
    separable_p = np.r_[np.full(20, 0.2), np.full(20, 0.8)]
    assert np.isnan(recalibration(separable_y, separable_p, np.ones((1, 40)))[0]).all()


def test_one_newton_step_per_resample_agrees_with_refitting_each():
    y, p = _calibrated(800, seed=5)
    sharp = expit(2 * logit(p) + 0.3)
    idx = draw_indices(strata("binary", y), 300, np.random.default_rng(6))
    W = count_matrix(idx, len(y))
    assert W.size > EXACT_LIMIT
    one_step = recalibration(y, sharp, W, exact=False)
    refitted = recalibration(y, sharp, W, exact=True)
    for approx, exact in zip(one_step, refitted, strict=True):
        assert np.abs(np.percentile(approx, [2.5, 97.5]) - np.percentile(exact, [2.5, 97.5])).max() < 0.03


def test_brier_ece_and_bins_on_hand_computed_cases():
    y, p = np.array([0, 1, 0, 1]), np.array([0.2, 0.6, 0.2, 0.6])
    assert brier(y, p, ONE)[0] == pytest.approx((0.04 + 0.16) * 2 / 4)
    bins = equal_mass_bins(p, 2)
    assert sorted(set(bins.tolist())) == [0, 1]
    assert ece(y, p, bins, ONE)[0] == pytest.approx(0.5 * 0.2 + 0.5 * 0.4)
    constant = np.full(4, 0.3)
    one_bin = equal_mass_bins(constant, 10)
    assert set(one_bin.tolist()) == {0}  # ties stay together: a constant predictor has one bin
    assert ece(y, constant, one_bin, ONE)[0] == pytest.approx(abs(0.5 - 0.3))
    diagram = reliability(y, p, bins)
    assert diagram == {"mean_predicted": [0.2, 0.6], "observed": [0.0, 1.0], "n": [2, 2]}


def test_exact_resample_fits_equal_scikit_learn_refits():
    y, p = _calibrated(60, seed=7)
    idx = draw_indices(strata("binary", y), 20, np.random.default_rng(8))
    slopes, _ = recalibration(y, p, count_matrix(idx, len(y)), exact=True)
    refits = [LogisticRegression(C=np.inf, tol=1e-12, max_iter=1000).fit(clipped_logit(p[rows])[:, None],
                                                                          y[rows]).coef_[0, 0] for rows in idx]
    np.testing.assert_allclose(slopes, refits, rtol=1e-6)
