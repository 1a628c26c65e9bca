"""Subgroup performance: a constant signal has no gap, a model blind in one sex has one, and nothing is dropped."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ecgfm_suite.analysis import subgroups as sg
from ecgfm_suite.errors import AnalysisSkip
from ecgfm_suite.metrics import point_estimate
from ecgfm_suite.report.figures import figures_for

from .pair_data import pair, task_data

ROW_KEYS = {"model", "task", "scarcity", "attribute", "classes", "subgroup", "n", "metric", "value", "ci_low",
            "ci_high", "gap", "gap_ci_low", "gap_ci_high", "gap_excludes_zero", "reason"}


def _sexes(n: int) -> list[str]:
    return ["M" if i % 2 else "F" for i in range(n)]


def test_age_bands_and_implausible_ages():
    assert [sg.age_band(a) for a in (18, 39.9, 40, 59.99, 60, 79, 80, 119)] == [
        "<40", "<40", "40-59", "40-59", "60-79", "60-79", ">=80", ">=80"]
    assert sg.age_band(300) is None and sg.age_band(float("nan")) is None and sg.age_band(None) is None
    assert sg.age_band("71") == "60-79"


def test_a_constant_signal_has_the_same_metric_in_every_subgroup_and_zero_gap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    out = sg.subgroup_table("binary", "auroc", y, np.full(400, 0.3), _sexes(400), classes=["a", "b"], n_boot=200,
                            seed=0)
    assert [s["value"] for s in out["subgroups"]] == [0.5, 0.5]
    gap = out["gap"]
    assert gap["gap"] == 0.0 and gap["ci_low"] == 0.0 == gap["ci_high"] and not gap["excludes_zero"]


def test_a_model_blind_for_one_subgroup_has_a_gap_whose_ci_excludes_zero():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 600)
    sexes = np.array(_sexes(600))
    scores = np.where(sexes == "F", y + rng.normal(0, 0.5, 600), rng.random(600))
    out = sg.subgroup_table("binary", "auroc", y, scores, list(sexes), classes=["a", "b"], n_boot=300, seed=0)
    by_name = {s["subgroup"]: s for s in out["subgroups"]}
    assert by_name["F"]["value"] > 0.8 and abs(by_name["M"]["value"] - 0.5) < 0.1
    assert by_name["F"]["ci_low"] <= by_name["F"]["value"] <= by_name["F"]["ci_high"]
    gap = out["gap"]
    assert (gap["best"], gap["worst"]) == ("F", "M") and gap["excludes_zero"] and gap["ci_low"] > 0.2


def test_mae_gap_is_oriented_better_minus_worse():
    rng = np.random.default_rng(2)
    y = rng.normal(50, 10, 300)
    bands = ["<40" if i % 2 else ">=80" for i in range(300)]
    estimate = y + np.where(np.array(bands) == "<40", 1.0, 8.0) * rng.normal(size=300)
    out = sg.subgroup_table("regression", "mae", y, estimate, bands, classes=[], n_boot=200, seed=0)
    assert out["gap"]["best"] == "<40" and out["gap"]["gap"] > 3 and out["gap"]["excludes_zero"]


def test_small_subgroups_missing_classes_and_unrecorded_values_are_listed_with_reasons():
    y = np.array([0, 1] * 20 + [1] * 12)
    labels: list[str | None] = ["a"] * 40 + ["b"] * 12  # b: one class only
    labels[:4] = ["tiny"] * 4
    labels[4:8] = [None] * 4
    out = sg.subgroup_table("binary", "auroc", y, np.linspace(0, 1, len(y)), labels, classes=["neg", "pos"],
                            n_boot=50, seed=0)
    reasons = {s["subgroup"]: s["reason"] for s in out["subgroups"]}
    assert reasons["a"] is None
    assert "fewer than 2 records of class(es) the test split has: neg 0" in reasons["b"]
    assert "4 records (needs >= 10)" in reasons["tiny"]
    assert reasons["unknown"] == "attribute not recorded for these records"
    assert out["gap"]["gap"] is None and "1 evaluated subgroup" in out["gap"]["reason"]


def test_multilabel_subgroups_share_the_labels_evaluable_in_every_subgroup():
    rng = np.random.default_rng(3)
    y = (rng.random((300, 3)) < 0.4).astype(np.int8)
    sexes = _sexes(300)
    y[np.array(sexes) == "M", 2] = 0  # label 2 has no positive among men: left out for every subgroup
    out = sg.subgroup_table("multilabel", "auroc", y, rng.random((300, 3)), sexes, classes=["x", "y", "z"],
                            n_boot=50, seed=0)
    assert out["classes"] == ["x", "y"] and all(s["value"] is not None for s in out["subgroups"])


def test_multiclass_subgroups_are_scored_on_the_classes_every_subgroup_has():
    """A pooled rhythm task: one source has no bradycardia. Its sources are compared on the other classes, by
    the macro one-vs-rest AUROC the cell's own metric is."""
    rng = np.random.default_rng(5)
    sources = np.array(["cinc2017", "ptbxl"] * 200)
    y = rng.integers(0, 3, 400)
    y[(sources == "cinc2017") & (y == 2)] = 0
    scores = rng.dirichlet(np.ones(3), 400)
    out = sg.subgroup_table("multiclass", "auroc", y, scores, list(sources), classes=["sinus", "af", "brady"],
                            n_boot=50, seed=0)
    assert out["classes"] == ["sinus", "af"] and all(s["reason"] is None for s in out["subgroups"])
    ptbxl = np.flatnonzero(sources == "ptbxl")
    expected = np.mean([point_estimate("auroc", "binary", (y[ptbxl] == k).astype(int), scores[ptbxl, k])
                        for k in (0, 1)])
    assert next(s for s in out["subgroups"] if s["subgroup"] == "ptbxl")["value"] == pytest.approx(expected)


@pytest.fixture()
def constant_pair(tmp_path):
    rng = np.random.default_rng(4)
    n = 1000
    y = rng.integers(0, 2, n)
    td = task_data("ludb_lvh", y, ("no_lvh", "lvh"), sex=_sexes(n), age=rng.uniform(20, 95, n).tolist())
    return pair(td, np.ones((n, 4)), tmp_path)


def test_run_on_a_constant_signal_gives_zero_gaps_and_flat_rows(constant_pair):
    payload = sg.run(constant_pair, sg.AnalysisOptions()).payload
    assert payload["scarcity"] == "frac100" and payload["n_test"] == 200
    assert payload["attributes"]["source"]["reason"] == "a single source: no source subgroups"
    for attribute in ("sex", "age_band"):
        gap = payload["attributes"][attribute]["gap"]
        assert gap["gap"] == 0.0 and not gap["excludes_zero"]
    assert sg.problems(payload) == []
    rows = sg.rows(constant_pair.key, payload)
    assert all(set(r) == ROW_KEYS for r in rows)
    assert {r["subgroup"] for r in rows if r["attribute"] == "age_band"} >= {"<40", "40-59", "60-79", ">=80"}
    assert any(r["attribute"] == "sex" and r["gap"] == 0.0 and r["gap_excludes_zero"] is False for r in rows)
    assert figures_for("subgroups", payload)["subgroups"].startswith(b"\x89PNG")


def test_a_task_without_sex_age_or_sources_is_a_skip_naming_each(constant_pair):
    td = constant_pair.task
    bare = dataclasses.replace(td, records=td.records.assign(sex=None, age=np.nan))
    with pytest.raises(AnalysisSkip, match="no subgroup attribute is recorded.*sex: no record.*age_band: no record"):
        sg.run(dataclasses.replace(constant_pair, task=bare), sg.AnalysisOptions())
    without_column = dataclasses.replace(td, records=td.records.drop(columns=["sex", "age"]))
    with pytest.raises(AnalysisSkip, match="no subgroup attribute"):
        sg.run(dataclasses.replace(constant_pair, task=without_column), sg.AnalysisOptions())
