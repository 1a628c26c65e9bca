"""Paired model comparison: a model against itself, a clearly better model, alignment by record key."""

from __future__ import annotations

import numpy as np
import pytest

from ecgfm_suite.analysis.comparison import align, compare
from ecgfm_suite.errors import DataError


def _cell(keys, y, scores) -> dict[str, np.ndarray]:
    return {"keys": np.asarray(keys, dtype=str), "y_test": np.asarray(y), "scores": np.asarray(scores)}


def test_a_model_against_itself_differs_by_nothing():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    s = rng.random(80)
    out = compare("auroc", "binary", y, {"a": s, "b": s.copy()}, {"a": 0.6, "b": 0.6}, n_boot=200, seed=0)
    pair = out["pairs"]["a|b"]
    assert pair["diff"] == 0.0 and pair["ci_low"] == 0.0 == pair["ci_high"] and pair["p_value"] == 1.0
    assert sorted(out["not_worse"]) == ["a", "b"]


def test_a_clearly_better_model_is_best_and_the_other_significantly_worse():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    good = y + 0.3 * rng.random(120)
    noise = rng.random(120)
    out = compare("auroc", "binary", y, {"good": good, "noise": noise}, {"good": 1.0, "noise": 0.5},
                  n_boot=300, seed=0)
    assert out["best"] == "good" and out["not_worse"] == ["good"]
    verdict = out["verdict"]["noise"]
    assert verdict["significantly_worse"] and verdict["vs_best"] < -0.3 and verdict["p_value"] < 0.01
    pair = out["pairs"]["good|noise"]
    assert pair["ci_low"] > 0


def test_lower_is_better_metric_picks_the_smallest_error():
    rng = np.random.default_rng(2)
    y = rng.normal(size=100)
    out = compare("mae", "regression", y, {"close": y + 0.01 * rng.normal(size=100), "far": y + rng.normal(size=100)},
                  {"close": 0.01, "far": 0.8}, n_boot=200, seed=0)
    assert out["best"] == "close" and out["verdict"]["far"]["significantly_worse"]


def test_align_matches_records_by_key_and_averages_seeds():
    a = _cell(["r1", "r2", "r3"], [0, 1, 1], [[0.1, 0.9, 0.8], [0.3, 0.7, 0.6]])
    b = _cell(["r3", "r1", "r4"], [1, 0, 0], [[0.5, 0.2, 0.9]])
    keys, y, scores = align({"a": a, "b": b})
    assert keys.tolist() == ["r1", "r3"] and y.tolist() == [0, 1]
    np.testing.assert_allclose(scores["a"], [0.2, 0.7])
    np.testing.assert_allclose(scores["b"], [0.2, 0.5])
    with pytest.raises(DataError, match="different labels"):
        align({"a": a, "b": _cell(["r1"], [1], [[0.5]])})
    with pytest.raises(DataError, match="no test records"):
        align({"a": a, "b": _cell(["x"], [1], [[0.5]])})
