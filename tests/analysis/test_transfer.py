"""Cross-region transfer: in-region diagonal, drop sign, orientation for MAE, regions left out."""

from __future__ import annotations

import numpy as np
import pytest

from ecgfm_suite.analysis import transfer as tr


def _regions(rules: dict[str, float], n: int = 150, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Per region, y = [slope · x0 > 0]; the slope's sign is what transfers or not."""
    rng = np.random.default_rng(seed)
    X, y, split, region = [], [], [], []
    for name, slope in rules.items():
        x = rng.normal(size=(n, 6))
        X.append(x)
        y.append((slope * x[:, 0] + 0.2 * rng.normal(size=n) > 0).astype(int))
        split.append(np.array(["train", "val", "test"])[np.arange(n) % 3])
        region.append(np.full(n, name, dtype=object))
    return np.vstack(X), np.concatenate(y), np.concatenate(split), np.concatenate(region)


def test_a_flipped_region_drops_and_an_alike_region_does_not():
    X, y, split, region = _regions({"Russia": 1.0, "Germany/ptbxl": 1.0, "China/cpsc_2018": -1.0})
    out = tr.transfer_matrix("binary", X, y, split, region, metric="auroc", n_classes=None, seed=0, n_boot=50)
    assert out["regions"] == ["China", "Germany", "Russia"]  # countries, sources folded in
    cells = out["cells"]
    for r in out["regions"]:
        assert cells[r][r]["value"] > 0.9 and cells[r][r]["drop"] == 0.0
    assert cells["Russia"]["Germany"]["drop"] == pytest.approx(0.0, abs=0.05)
    assert cells["Russia"]["China"]["value"] < 0.1 and cells["Russia"]["China"]["drop"] > 0.8
    flipped = cells["Russia"]["China"]
    assert flipped["ci_low"] <= flipped["value"] <= flipped["ci_high"]
    assert tr.mean_drop(out) > 0.3


def test_mae_drop_is_positive_when_error_grows():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    offset = np.r_[np.zeros(150), np.full(150, 20.0)]  # Brazil's targets sit 20 units higher
    y = (3 * X[:, 0] + offset + rng.normal(size=300)).astype(np.float32)
    split = np.array(["train", "val", "test"])[np.arange(300) % 3]
    region = np.r_[["Russia"] * 150, ["Brazil"] * 150]
    out = tr.transfer_matrix("regression", X, y, split, region, metric="mae", n_classes=None, seed=0, n_boot=20)
    assert out["cells"]["Russia"]["Brazil"]["value"] > 15
    assert out["cells"]["Russia"]["Brazil"]["drop"] > 10  # positive = worse, although MAE went up


def test_small_regions_are_left_out_with_a_reason():
    X, y, split, region = _regions({"Russia": 1.0, "USA": 1.0})
    keep = (region == "Russia") | (np.arange(len(region)) % 25 == 0)
    out = tr.transfer_matrix("binary", X[keep], y[keep], split[keep], region[keep], metric="auroc",
                             n_classes=None, seed=0, n_boot=20)
    assert out["train_regions"] == ["Russia"] and "USA" in out["left_out"]
    assert "not a training region" in out["left_out"]["USA"]


def test_country_of_a_source_region():
    assert tr.country("China/cpsc_2018") == "China" and tr.country("Russia") == "Russia"
