"""Scarcity levels: parsing, nested stratified subsets (hypothesis), shots, default levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecgfm_suite.data.scarcity import LEVELS, ScarcitySpec, default_levels, parse_level, subset
from ecgfm_suite.data.tasks import build_task
from ecgfm_suite.errors import SpecError

from .factories import binary_index, make_index

FAST = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
FRACS = [lv for lv in LEVELS if lv.startswith("frac")]
SHOTS = [lv for lv in LEVELS if lv.startswith("shot")]


def test_parse_levels():
    assert [parse_level(lv).id for lv in LEVELS] == list(LEVELS)
    assert parse_level("frac10") == ScarcitySpec(kind="frac", amount=10) and parse_level("shot5").kind == "shot"
    for bad in ("frac0", "frac101", "shot0", "frac10.5", "", "FRAC10", "frac010", "few", "shot-1"):
        with pytest.raises(SpecError, match="scarcity"):
            parse_level(bad)
    with pytest.raises(SpecError):
        ScarcitySpec(kind="half", amount=5)


@st.composite
def training_labels(draw):
    task_type = draw(st.sampled_from(["binary", "multiclass", "multilabel", "regression"]))
    n = draw(st.integers(5, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if task_type == "regression":
        y = rng.normal(60, 15, size=n).astype(np.float32)
    elif task_type == "multilabel":
        y = (rng.random((n, draw(st.integers(1, 5)))) < rng.uniform(0.05, 0.5)).astype(np.int8)
    else:
        k = 2 if task_type == "binary" else draw(st.integers(3, 6))
        y = rng.choice(k, size=n, p=rng.dirichlet(np.ones(k)))
    groups = None
    if draw(st.booleans()):
        groups = np.array([f"p{g}" for g in rng.integers(0, max(1, n // 2), size=n)], dtype=object)
    return task_type, y, groups


def classes_present(y, task_type, idx):
    """Which indicator columns (classes; multilabel positives and negatives) occur in rows ``idx``."""
    if task_type == "multilabel":
        part = y[idx]
        return {("pos", k) for k in range(y.shape[1]) if part[:, k].any()} | {
            ("neg", k) for k in range(y.shape[1]) if (part[:, k] == 0).any()}
    if task_type == "regression":
        return set()
    return set(np.unique(y[idx]).tolist())


@FAST
@given(data=training_labels(), seed=st.integers(0, 5))
def test_subsets_are_nested_cover_classes_and_deterministic(data, seed):
    task_type, y, groups = data
    n = len(y)
    everything = classes_present(y, task_type, np.arange(n))
    for chain in (FRACS, SHOTS):
        previous: set[int] = set()
        for level in chain:
            idx = subset(y, level, seed, task_type, groups=groups)
            assert np.all(np.diff(idx) > 0) and (len(idx) == 0 or (idx[0] >= 0 and idx[-1] < n))
            assert previous <= set(idx.tolist()), f"{level} is not a superset of the previous level"
            assert len(idx) >= len(previous)
            assert classes_present(y, task_type, idx) == everything  # >= 1 record of every class
            if groups is not None:  # a group enters whole
                chosen = set(groups[idx])
                assert set(np.flatnonzero(np.isin(groups, list(chosen)))) == set(idx.tolist())
            if level.startswith("frac"):
                assert len(idx) >= math.ceil(parse_level(level).amount / 100 * n)
            previous = set(idx.tolist())
            assert np.array_equal(idx, subset(y, level, seed, task_type, groups=groups))
    assert subset(y, "frac100", seed, task_type, groups=groups).tolist() == list(range(n))


def test_frac_sizes_and_stratification():
    rng = np.random.default_rng(1)
    y = rng.choice(3, size=2000, p=[0.7, 0.2, 0.1])
    for level, pct in (("frac5", 5), ("frac10", 10), ("frac25", 25), ("frac50", 50)):
        idx = subset(y, level, 0, "multiclass")
        assert len(idx) == math.ceil(pct / 100 * 2000)
        share = np.bincount(y[idx], minlength=3) / len(idx)
        assert np.abs(share - np.bincount(y) / 2000).max() <= 0.01 + 1 / len(idx)
    a, b = subset(y, "frac10", 0, "multiclass"), subset(y, "frac10", 1, "multiclass")
    assert a.tolist() != b.tolist()


def test_frac1_tops_up_rare_classes():
    y = np.array([0] * 990 + [1] * 10)
    idx = subset(y, "frac1", 0, "binary")
    assert set(y[idx]) == {0, 1} and len(idx) in (10, 11)
    ml = np.zeros((400, 2), dtype=np.int8)
    ml[:3, 0] = 1
    ml[:, 1] = 1
    ml[-1, 1] = 0  # one negative of label 1
    idx = subset(ml, "frac1", 0, "multilabel")
    assert ml[idx, 0].any() and (ml[idx, 1] == 0).any()


def test_shots_take_k_records_per_class():
    y = np.array([0] * 50 + [1] * 30 + [2] * 3)
    for k in (1, 5, 10, 20):
        idx = subset(y, f"shot{k}", 0, "multiclass")
        assert np.bincount(y[idx], minlength=3).tolist() == [k, k, min(k, 3)]
    ml = np.zeros((100, 2), dtype=np.int8)
    ml[:40, 0] = 1
    ml[30:60, 1] = 1
    idx = subset(ml, "shot5", 0, "multilabel")
    assert ml[idx].sum(axis=0).min() >= 5 and (1 - ml[idx]).sum(axis=0).min() >= 5
    reg = np.linspace(20, 90, 100)
    idx = subset(reg, "shot5", 0, "regression")
    assert len(idx) == 25  # 5 per quantile bin
    assert np.histogram(reg[idx], bins=np.quantile(reg, np.linspace(0, 1, 6)))[0].tolist() == [5] * 5


def test_subset_rejects_bad_input():
    with pytest.raises(SpecError, match="1-D"):
        subset(np.zeros((4, 2)), "frac10", 0, "binary")
    with pytest.raises(SpecError, match="task type"):
        subset(np.zeros(4), "frac10", 0, "ordinal")
    with pytest.raises(SpecError, match="groups"):
        subset(np.zeros(4, dtype=int), "frac10", 0, "binary", groups=np.arange(3))
    assert subset(np.zeros(0, dtype=int), "frac10", 0, "binary").tolist() == []


def test_default_levels():
    small = build_task("code15_chagas", {"code15": binary_index(30, 200)})
    assert min(small.counts["train"].values()) < 50
    assert default_levels(small) == ("frac10", "frac100", "shot10")
    large = build_task("code15_chagas", {"code15": binary_index(200, 300)})
    assert min(large.counts["train"].values()) >= 50
    assert default_levels(large) == ("frac10", "frac100")
    ages = make_index("ludb", [{"record_id": str(i), "age": float(20 + i)} for i in range(60)])
    assert default_levels(build_task("ludb_age", {"ludb": ages})) == ("frac10", "frac100")
