"""The findings generator on synthetic runs whose correct sentences are known: a model significantly best, no
foundation model beating the controls, a regression, and the ranked rows of analyses with a table."""

from __future__ import annotations

from typing import Any

from ecgfm_suite.report.findings import Evidence, anchor_id, findings, pair

ALPHA = 0.05


def _cell(model: str, value: float, lo: float, hi: float, *, task: str = "ludb_lvh", level: str = "frac100",
          best: bool = False, **extra: Any) -> dict[str, Any]:
    return {"cell_id": f"{model}-{task}-{level}", "model": model, "task": task, "scarcity": level, "metric": "auroc",
            "value": value, "ci_low": lo, "ci_high": hi, "best": best, "not_worse": None, "outcome": "passed",
            "failure": None, "failing": False, "pretraining_overlap": "", **extra}


def _comparison(best: str, pairs: dict[tuple[str, str], tuple[float, float, float, float]],
                task: str = "ludb_lvh", level: str = "frac100") -> dict[str, Any]:
    return {"task": task, "scarcity": level, "alpha": ALPHA, "best": best, "metric": "auroc",
            "pairs": {f"{a}|{b}": {"a": a, "b": b, "diff": d, "ci_low": lo, "ci_high": hi, "p_value": p}
                      for (a, b), (d, lo, hi, p) in pairs.items()}}


def _by_topic(ev: Evidence) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in findings(ev):
        out.setdefault(f.topic, []).append(f.text)
    return out


def test_a_model_significantly_best_is_named_with_its_ci_and_each_others_difference():
    cells = [_cell("fm", 0.90, 0.85, 0.94, best=True), _cell("handcrafted", 0.70, 0.62, 0.78),
             _cell("random_cnn", 0.66, 0.58, 0.74)]
    comparison = _comparison("fm", {("fm", "handcrafted"): (0.20, 0.12, 0.28, 0.001),
                                    ("fm", "random_cnn"): (0.24, 0.15, 0.31, 0.001)})
    topics = _by_topic(Evidence(cells=cells, comparisons={"ludb_lvh-frac100": comparison}))
    assert topics["best"] == [
        "ludb_lvh (auroc, frac100): fm is best at 0.900 [0.850, 0.940]; every other model is significantly worse "
        "(difference from the best): handcrafted -0.200 [-0.280, -0.120], p = 0.001; random_cnn -0.240 "
        "[-0.310, -0.150], p = 0.001."]
    assert "controls" not in topics  # the FM beats both controls significantly


def test_no_foundation_model_beating_the_controls_says_by_how_much():
    cells = [_cell("fm", 0.72, 0.64, 0.80), _cell("handcrafted", 0.75, 0.68, 0.82, best=True),
             _cell("random_cnn", 0.60, 0.50, 0.70)]
    comparison = _comparison("handcrafted", {("fm", "handcrafted"): (-0.03, -0.09, 0.04, 0.41),
                                             ("fm", "random_cnn"): (0.12, 0.03, 0.20, 0.01),
                                             ("handcrafted", "random_cnn"): (0.15, 0.06, 0.22, 0.002)})
    ev = Evidence(cells=cells, comparisons={"ludb_lvh-frac100": comparison})
    topics = _by_topic(ev)
    assert topics["controls"] == [
        "ludb_lvh (auroc, frac100): no foundation model beats the controls: the best, fm 0.720 [0.640, 0.800], "
        "differs from handcrafted 0.750 [0.680, 0.820] by -0.030 [-0.090, +0.040] (p = 0.410)."]
    assert "not significantly different (difference from the best): fm -0.030 [-0.090, +0.040], p = 0.410" in \
        topics["best"][0]
    assert "significantly worse: random_cnn -0.150 [-0.220, -0.060], p = 0.002" in topics["best"][0]
    # each sentence links to its evidence: the leaderboard row of the column
    assert {f.href for f in findings(ev) if f.topic in ("best", "controls")} == {
        "#" + anchor_id("column", "ludb_lvh", "frac100")}


def test_a_gate_regression_and_a_failed_floor_are_reported_first():
    cells = [_cell("fm", 0.70, 0.62, 0.77, best=True),
             _cell("random_cnn", 0.51, 0.45, 0.58, outcome="failed", failure="auroc 0.51 below floor 0.60")]
    gate = {"cells": {"fm-ludb_lvh-frac100": {
        "status": "regressed", "metric": "auroc", "value": 0.70, "change": -0.12, "allowed": 0.05,
        "baseline": {"value": 0.82, "ci_low": 0.76, "ci_high": 0.88}}}}
    found = findings(Evidence(cells=cells, gate=gate))
    assert [f.topic for f in found[:2]] == ["gate", "gate"]
    assert found[0].text == ("fm-ludb_lvh-frac100 regressed: auroc 0.700 [0.620, 0.770] against the baseline "
                             "0.820 [0.760, 0.880] (change -0.120, tolerance 0.050).")
    assert found[0].href == "#gate-fm-ludb_lvh-frac100"
    assert found[1].text.startswith("random_cnn-ludb_lvh-frac100 failed its test at auroc 0.510 [0.450, 0.580]")


def test_ranked_analysis_rows_transfer_and_efficiency_give_the_largest_with_ci():
    subgroups = [{"model": "fm", "task": "sex", "attribute": "age_band", "gap": g, "gap_ci_low": g - 0.05,
                  "gap_ci_high": g + 0.05, "gap_excludes_zero": abs(g) > 0.05} for g in (0.02, -0.30, 0.10, 0.20, 0.15)]
    calibration = [{"model": m, "task": "sex", "ece": e, "ece_ci_low": e / 2, "ece_ci_high": 2 * e}
                   for m, e in (("fm", 0.04), ("random_cnn", 0.12))]
    transfer = {"fm-sex": {"model": "fm", "task": "sex", "metric": "auroc", "cells": {
        "Germany": {"Germany": {"value": 0.80, "ci_low": 0.75, "ci_high": 0.85, "drop": 0.0},
                    "China": {"value": 0.65, "ci_low": 0.58, "ci_high": 0.71, "drop": 0.15}}}}}
    efficiency = {"sex": {"reference_model": "random_cnn", "reference": 0.70, "models": {
        "random_cnn": {"metric": "auroc", "reach": 1.0, "points": [
            {"level": "frac100", "fraction": 1.0, "value": 0.70, "ci_low": 0.66, "ci_high": 0.74}]},
        "fm": {"metric": "auroc", "reach": 0.25, "reached_at_smallest": False, "points": [
            {"level": "frac10", "fraction": 0.1, "value": 0.66, "ci_low": 0.6, "ci_high": 0.72},
            {"level": "frac25", "fraction": 0.25, "value": 0.70, "ci_low": 0.65, "ci_high": 0.75}]}}}}
    ev = Evidence(cells=[], transfer=transfer, label_efficiency=efficiency,
                  analysis_rows={"subgroups": subgroups, "calibration": calibration})
    topics = _by_topic(ev)
    assert [t.split(":")[1].strip().split(" (")[0] for t in topics["subgroup"]] == [
        "-0.300 [-0.350, -0.250]", "+0.200 [+0.150, +0.250]", "+0.150 [+0.100, +0.200]"]  # |gap|, CI excluding 0
    assert topics["calibration"][0] == ("Largest expected calibration error: 0.120 [0.060, 0.240] "
                                        "(model random_cnn, task sex).")
    assert topics["transfer"] == ["fm on sex: trained in Germany, auroc worsens by 0.150 on China's test split: "
                                  "0.650 [0.580, 0.710] against 0.800 [0.750, 0.850] in Germany."]
    assert topics["efficiency"] == ["sex (auroc): fm reaches random_cnn's full-data score 0.700 [0.660, 0.740] "
                                    "with 25% of the training data (frac25: 0.700 [0.650, 0.750])."]
    assert "robustness" not in topics  # no table with perturbation drops in this run
    assert {f.href for f in findings(ev) if f.topic == "subgroup"} == {"#analysis-subgroups"}


def test_pair_is_oriented_and_prefers_a_corrected_p_value():
    payload = {"pairs": {"a|b": {"diff": 0.1, "ci_low": 0.02, "ci_high": 0.2, "p_value": 0.01, "p_adjusted": 0.04}}}
    assert pair(payload, "b", "a") == {"diff": -0.1, "ci_low": -0.2, "ci_high": -0.02, "p": 0.04}
    assert pair(payload, "a", "c") is None


def test_anchor_ids_of_hostile_names_are_plain_and_distinct():
    hostile = anchor_id("model", "<script>alert(1)</script>")
    assert all(c.isalnum() or c in "_.-" for c in hostile)
    assert hostile != anchor_id("model", "_script_alert_1___script_")
