"""Label-efficiency curves: log-fraction AUC and the point where a curve reaches the control."""

from __future__ import annotations

import numpy as np
import pytest

from ecgfm_suite.analysis.label_efficiency import CurvePoint, efficiency
from ecgfm_suite.errors import DataError


def _points(*pairs: tuple[int, float]) -> list[CurvePoint]:
    return [CurvePoint(level=f"p{n}", n_train=n, value=v) for n, v in pairs]


def test_auc_is_the_mean_height_over_log_fraction():
    out = efficiency(_points((10, 0.6), (100, 0.8)), n_full=100, higher_is_better=True)
    assert out["auc"] == pytest.approx(0.7) and out["fraction_range"] == [0.1, 1.0]
    # uneven spacing: trapezoids over log10 fractions -1, log10(0.3), 0, divided by the span of 1
    three = efficiency(_points((1, 0.5), (3, 0.5), (10, 0.8)), n_full=10, higher_is_better=True)
    x1 = np.log10(0.3)
    assert three["auc"] == pytest.approx(0.5 * (x1 + 1) + (0.5 + 0.8) / 2 * (0 - x1))
    assert efficiency(_points((50, 0.9)), n_full=100, higher_is_better=True)["auc"] == 0.9


def test_reach_interpolates_in_log_fraction():
    out = efficiency(_points((10, 0.6), (100, 0.8)), n_full=100, higher_is_better=True, reference=0.7)
    assert out["reach"] == pytest.approx(10 ** -0.5) and not out["reached_at_smallest"]
    early = efficiency(_points((10, 0.6), (100, 0.8)), n_full=100, higher_is_better=True, reference=0.5)
    assert early["reach"] == pytest.approx(0.1) and early["reached_at_smallest"]
    never = efficiency(_points((10, 0.6), (100, 0.8)), n_full=100, higher_is_better=True, reference=0.9)
    assert never["reach"] is None


def test_lower_is_better_metrics_reach_by_going_down():
    out = efficiency(_points((10, 10.0), (100, 6.0)), n_full=100, higher_is_better=False, reference=8.0)
    assert out["reach"] == pytest.approx(10 ** -0.5)
    assert efficiency(_points((10, 10.0), (100, 9.0)), n_full=100, higher_is_better=False,
                      reference=8.0)["reach"] is None


def test_levels_on_the_same_size_are_averaged_and_nan_points_dropped():
    out = efficiency([CurvePoint(level="shot10", n_train=100, value=0.7), CurvePoint(level="frac100", n_train=100,
                      value=0.9), CurvePoint(level="frac10", n_train=10, value=float("nan"))],
                     n_full=100, higher_is_better=True)
    assert out["auc"] == pytest.approx(0.8) and len(out["points"]) == 2
    with pytest.raises(DataError):
        efficiency([], n_full=100, higher_is_better=True)
