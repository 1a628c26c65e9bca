"""Splits: group-level leak freedom, coverage, stratification, determinism (hypothesis), the
PTB-XL official split and duplicate/patient grouping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecgfm_suite.data.splits import (
    SPLIT_NAMES,
    check_split,
    official_split,
    record_groups,
    split_counts,
    stratified_split,
)
from ecgfm_suite.errors import DataError, SpecError

FAST = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def labelled_groups(draw, multilabel: bool):
    """(indicators (N, C), groups (N,)) with N rows in G groups."""
    n = draw(st.integers(10, 160))
    n_classes = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    weights = rng.dirichlet(np.ones(n_classes))
    if multilabel:
        y = (rng.random((n, n_classes)) < weights * 1.5).astype(bool)
    else:
        y = np.eye(n_classes, dtype=bool)[rng.choice(n_classes, size=n, p=weights)]
    n_groups = draw(st.integers(max(3, n // 4), n))
    groups = np.array([f"g{g}" for g in rng.integers(0, n_groups, size=n)], dtype=object)
    return y, groups


def assert_valid(split, groups, n):
    assign = split.assign
    assert len(assign) == n and set(assign) <= set(SPLIT_NAMES)  # covers all rows, each in one split
    per_group = pd.Series(assign).groupby(groups).nunique()
    assert per_group.max() == 1  # no group on two sides


@FAST
@given(data=labelled_groups(multilabel=False), seed=st.integers(0, 3), min_count=st.integers(1, 3))
def test_single_label_splits_are_leak_free_deterministic_and_cover_classes(data, seed, min_count):
    y, groups = data
    split = stratified_split(y, groups, min_count=min_count, seed=seed)
    assert_valid(split, groups, len(y))
    again = stratified_split(y, groups, min_count=min_count, seed=seed)
    assert again.assign.tolist() == split.assign.tolist()
    assert np.array_equal(split.counts, split_counts(y, split.assign))
    # with one record per group a class is short only when the totals make it impossible
    if len(set(groups)) == len(groups):
        impossible = {k for k in range(y.shape[1]) if y[:, k].sum() < 3 * min_count}
        assert set(split.short) == impossible
    for k in set(range(y.shape[1])) - set(split.short):
        assert split.counts[:, k].min() >= min_count


@FAST
@given(data=labelled_groups(multilabel=True), seed=st.integers(0, 3))
def test_multilabel_group_splits_report_every_shortfall(data, seed):
    y, groups = data
    require = np.hstack([y, ~y]).astype(int)
    split = stratified_split(y, groups, require=require, min_count=1, seed=seed)
    assert_valid(split, groups, len(y))
    counts = split_counts(require, split.assign)
    assert set(split.short) == {k for k in range(require.shape[1]) if counts[:, k].min() < 1}
    # positive groups spread over >= 3 groups with plenty of rows are always satisfiable
    for k in range(y.shape[1]):
        if len(set(groups[y[:, k]])) >= 6 and len(set(groups[~y[:, k]])) >= 6 and y.shape[1] <= 2:
            assert k not in split.short


def test_stratification_within_tolerance_and_fractions():
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=1000, p=[0.6, 0.25, 0.1, 0.05])
    y = np.eye(4, dtype=bool)[labels]
    groups = np.arange(1000).astype(str)
    split = stratified_split(y, groups, seed=0)
    sizes = pd.Series(split.assign).value_counts()
    assert abs(sizes["train"] - 600) <= 3 and abs(sizes["val"] - 200) <= 3 and abs(sizes["test"] - 200) <= 3
    for k in range(4):
        total = y[:, k].sum()
        for s, frac in zip(range(3), (0.6, 0.2, 0.2)):
            assert abs(split.counts[s, k] - frac * total) <= 1.5
    other = stratified_split(y, groups, seed=1)
    assert other.assign.tolist() != split.assign.tolist()
    custom = stratified_split(y, groups, fractions=(0.8, 0.1, 0.1), seed=0)
    assert abs((custom.assign == "train").sum() - 800) <= 3


def test_repair_brings_rare_classes_into_val_and_test():
    # 6 positives: plain iterative stratification puts ~4 in train; the repair must reach 2/2/2
    y = np.zeros((60, 2), dtype=bool)
    y[:6, 1] = True
    y[6:, 0] = True
    split = stratified_split(y, np.arange(60).astype(str), min_count=2, seed=0)
    assert split.short == () and split.counts[:, 1].tolist() == [2, 2, 2]


def test_split_bad_arguments():
    y = np.ones((5, 1), dtype=bool)
    with pytest.raises(SpecError, match="fractions"):
        stratified_split(y, np.arange(5), fractions=(0.5, 0.5, 0.5))
    with pytest.raises(SpecError, match="differ in length"):
        stratified_split(y, np.arange(4))
    with pytest.raises(SpecError, match="tries"):
        stratified_split(y, np.arange(5), tries=0)
    assert stratified_split(np.zeros((0, 2), dtype=bool), np.array([])).assign.tolist() == []


def test_official_split():
    folds = np.arange(1, 11).repeat(3)
    assign = official_split(folds)
    assert assign.tolist() == ["train"] * 24 + ["val"] * 3 + ["test"] * 3
    with pytest.raises(DataError, match="strat_fold values outside 1-10: 11"):
        official_split([1, 11], path="ptbxl_database.csv")
    split = check_split(np.ones((30, 1), dtype=int), assign, 4)
    assert split.short == (0,) and split.counts[:, 0].tolist() == [24, 3, 3]


def frame(rows):
    base = {"source": None, "patient_id": None, "content_hash": None}
    out = []
    for r in rows:
        row = base | r
        row["source"] = row["source"] or row["key"].split("/")[0]
        row.setdefault("record_id", row["key"].split("/", 1)[1])
        out.append(row)
    return pd.DataFrame(out)


def test_record_groups_link_patients_hashes_and_ptbxl_copies():
    records = frame([
        {"key": "ludb/1", "patient_id": "1", "content_hash": "h1"},
        {"key": "ludb/2", "patient_id": "1", "content_hash": "h2"},          # same patient as ludb/1
        {"key": "code15/9", "patient_id": "1", "content_hash": "h3"},        # patient "1" of another dataset
        {"key": "code15/10", "patient_id": "7", "content_hash": "h2"},       # byte copy of ludb/2 → joins ludb/1
        {"key": "challenge2021/georgia/E1", "source": "georgia", "content_hash": "h9", "signal_hash": "s1"},
        {"key": "challenge2021/ningbo/JS1", "source": "ningbo", "content_hash": "h8", "signal_hash": "s1"},
        {"key": "challenge2021/ptbxl/HR00042", "source": "ptbxl", "content_hash": "h7", "signal_hash": "s2"},
        {"key": "ptbxl/42", "patient_id": "555", "content_hash": "h6"},      # the native copy of HR00042
        {"key": "cinc2017/A1"},
        {"key": "cinc2017/A2"},
    ])
    g = dict(zip(records["key"], record_groups(records)))
    assert g["ludb/1"] == g["ludb/2"] == g["code15/10"] == "code15/code15:7"  # smallest patient name
    assert g["code15/9"] != g["ludb/1"]
    assert g["challenge2021/georgia/E1"] == g["challenge2021/ningbo/JS1"]
    assert g["challenge2021/ptbxl/HR00042"] == g["ptbxl/42"] == "ptbxl/ptbxl:555"
    assert g["cinc2017/A1"] == "record:cinc2017/A1" != g["cinc2017/A2"]
    assert len(set(g.values())) == 6
