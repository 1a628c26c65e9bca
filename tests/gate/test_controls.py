"""The ``controls:`` section: parsed strictly, judged on the stored column comparisons, reported or failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ecgfm_suite.analysis.store import AnalysisStore
from ecgfm_suite.errors import SpecError
from ecgfm_suite.gate.controls import ControlsRule, judge_comparisons
from ecgfm_suite.gate.floors import Floors
from ecgfm_suite.gate.session import Gate, GateSummary


def _against(verdict: str, diff: float) -> dict:
    return {"diff": diff, "ci_low": diff - 0.05, "ci_high": diff + 0.05, "p_value": 0.01 if verdict != "not better"
            else 0.4, "p_corrected": 0.02 if verdict != "not better" else 0.5, "method": "bh", "verdict": verdict}


COMPARISON: dict[str, Any] = {
    "task": "ludb_lvh", "scarcity": "frac100", "metric": "auroc",
    "cells": {"fm_a": "fm_a-ludb_lvh-frac100", "fm_b": "fm_b-ludb_lvh-frac100"},
    "controls": {"fm_a": {"random_cnn": _against("better", 0.2), "handcrafted": _against("not better", 0.01)},
                 "fm_b": {"random_cnn": _against("worse", -0.1), "handcrafted": _against("worse", -0.2)}},
}


def _thresholds(tmp_path: Path, controls: str) -> Path:
    path = tmp_path / "thresholds.yml"
    path.write_text(f"schema_version: 1\ncontrols: {controls}\n")
    return path


def test_the_default_rule_reports_every_cell_not_significantly_better_than_a_control():
    verdict = judge_comparisons(ControlsRule(), [COMPARISON])
    assert [(f.cell_id, f.control, f.verdict) for f in verdict.findings] == [
        ("fm_a-ludb_lvh-frac100", "handcrafted", "not better"), ("fm_b-ludb_lvh-frac100", "handcrafted", "worse"),
        ("fm_b-ludb_lvh-frac100", "random_cnn", "worse")]
    assert not verdict.failed and not verdict.xfailed and verdict.columns == 1
    props = dict(verdict.properties()[:2])
    assert props == {"ecgfm_controls_action": "report", "ecgfm_controls_below": "3"}
    finding = json.loads(verdict.properties()[2][1])
    assert finding["cell_id"] == "fm_a-ludb_lvh-frac100" and finding["p_corrected"] == 0.5
    assert "reported" in verdict.lines()[0] and "not better than handcrafted" in verdict.lines()[3]


def test_fail_against_random_only_when_significantly_worse(tmp_path):
    rule = ControlsRule.load(_thresholds(tmp_path, "{action: fail, against: random_cnn, when: worse}"))
    verdict = judge_comparisons(rule, [COMPARISON])
    assert [(f.model, f.control) for f in verdict.findings] == [("fm_b", "random_cnn")]
    assert verdict.failed and "fm_b-ludb_lvh-frac100: worse than random_cnn" in verdict.reason()
    xfail = judge_comparisons(ControlsRule(action="xfail"), [COMPARISON])
    assert xfail.xfailed and not xfail.failed
    clean = judge_comparisons(ControlsRule(action="fail", against=("random_cnn",)),
                              [{**COMPARISON, "controls": {"fm_a": COMPARISON["controls"]["fm_a"]}}])
    assert not clean.failed and clean.lines() == ["controls: every foundation-model cell is above random_cnn "
                                                  "(1 column(s) compared)"]


@pytest.mark.parametrize(("section", "message"), [
    ("{action: reject}", "controls.action must be one of report, xfail, fail, got 'reject'"),
    ("{when: always}", "controls.when must be one of not_better, worse"),
    ("{against: [resnet]}", "controls.against must list controls among random_cnn, handcrafted"),
    ("{actoin: fail}", "controls: unknown keys ['actoin']"),
    ("fail", "controls: must be a mapping"),
])
def test_a_mistyped_controls_section_is_one_line_naming_the_key(tmp_path, section, message):
    path = _thresholds(tmp_path, section)
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        ControlsRule.load(path)
    assert str(path) in str(err.value)
    Floors.load(path)  # the floors reader accepts the section it does not read


def test_the_gate_judges_a_column_test_and_the_whole_run(tmp_path):
    AnalysisStore(tmp_path).write("comparison", "ludb_lvh-frac100", COMPARISON)
    gate = Gate(thresholds=_thresholds(tmp_path, "{action: fail}"), baselines_dir=tmp_path / "baselines")
    column = gate.judge_controls("comparison", COMPARISON)
    assert column is not None and column.failed and gate.judge_controls("cka", {}) is None
    summary = gate.with_controls(GateSummary(), tmp_path)
    assert summary.controls is not None and summary.controls.failed
    lines = summary.lines()
    assert any(line.startswith("controls: 3 cell comparison(s) not above a control (FAILED") for line in lines)
    assert summary.to_dict()["controls"]["findings"][0]["control"] == "handcrafted"


def test_the_terminal_lists_the_worst_findings_first_and_counts_the_rest():
    from ecgfm_suite.gate.controls import SHOWN_FINDINGS, ControlFinding, ControlsRule, ControlsVerdict

    def finding(i: int, verdict: str) -> ControlFinding:
        return ControlFinding(cell_id=f"fm-t-frac{i}", model="fm", control="random_cnn", verdict=verdict,
                              metric="auroc", diff=-0.01 * i, ci_low=-0.1, ci_high=0.05, p_value=0.01 * i,
                              p_corrected=0.02 * i, method="bh")

    findings = [finding(i, "not better") for i in range(1, 9)] + [finding(9, "worse")]
    lines = ControlsVerdict(ControlsRule(), tuple(findings), 9).lines()
    assert lines[0].startswith("controls: 9 cell comparison(s)") and len(lines) == 1 + SHOWN_FINDINGS + 1
    assert "fm-t-frac9" in lines[1] and "fm-t-frac1" in lines[2]  # worse first, then by corrected p
    assert lines[-1] == f"  … and {9 - SHOWN_FINDINGS} more (gate.json, the report's comparisons)"
