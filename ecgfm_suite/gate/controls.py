"""The controls as a threshold that holds on any data: what happens when a foundation model is not better
than ``random_cnn`` or ``handcrafted`` on the same test records.

Absolute floors need data whose difficulty is known; a control needs none. Each column's comparison
(``analysis.comparison``) sets every foundation model against each control (paired bootstrap CI,
permutation p-value corrected over the column's pairs) with a verdict: ``better`` (significantly),
``not better``, or ``worse`` (significantly). The ``controls:`` section of ``thresholds.yml`` says what a
verdict below the bar does::

    controls:
      action: report              # report (default) | xfail | fail
      against: [random_cnn, handcrafted]   # the controls that count (default: both)
      when: not_better            # not_better (default: anything but significantly better) | worse

``report`` marks the cell in the gate summary, ``gate.json`` and the comparison test's JUnit properties;
``xfail`` also marks the column's comparison test as an expected failure; ``fail`` fails that test and
the run (a CI gate that must reject a checkpoint no better than random). The verdicts exist only once both
cells of a column ran, so they are decided where the column's comparison runs (the session, the xdist
controller at session end, or ``ecgfm-suite merge``), never inside a cell test: in a sharded or parallel
run the control's cell of the same column may not have run yet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.comparison import CONTROLS
from ..errors import SpecError

ACTIONS = ("report", "xfail", "fail")
WHEN = ("not_better", "worse")
#: the verdicts each ``when`` counts as below the bar
BELOW = {"not_better": ("not better", "worse"), "worse": ("worse",)}
#: findings the terminal's gate summary lists (all of them: gate.json, the failure message and the report)
SHOWN_FINDINGS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlFinding:
    """One foundation model cell that is not above a control's bar."""

    cell_id: str
    model: str
    control: str
    verdict: str
    metric: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    p_corrected: float
    method: str

    def message(self) -> str:
        return (f"{self.cell_id}: {self.verdict} than {self.control} ({self.metric} difference {self.diff:+.4f}, "
                f"95% CI {self.ci_low:+.4f} to {self.ci_high:+.4f}, p {self.p_value:.4f}, {self.method}-corrected "
                f"{self.p_corrected:.4f})")

    def to_dict(self) -> dict[str, Any]:
        return {"cell_id": self.cell_id, "model": self.model, "control": self.control, "verdict": self.verdict,
                "metric": self.metric, "diff": self.diff, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "p_value": self.p_value, "p_corrected": self.p_corrected, "method": self.method}


@dataclass(frozen=True, slots=True)
class ControlsRule:
    """The ``controls:`` section of a thresholds file."""

    action: str = ACTIONS[0]
    against: tuple[str, ...] = CONTROLS
    when: str = WHEN[0]
    source: str = "<defaults>"

    @classmethod
    def load(cls, path: Path) -> ControlsRule:
        from .floors import thresholds_section

        return cls.from_mapping(thresholds_section(Path(path), "controls"), path)

    @classmethod
    def from_mapping(cls, section: Any, path: Path | str = "<controls>") -> ControlsRule:
        """The rule of a ``controls:`` mapping; a mistyped key or value is a one-line SpecError naming it."""
        from .floors import section_mapping

        if section is None:
            return cls(source=str(path))
        section = section_mapping(section, path, "controls", ("action", "against", "when"))
        action = section.get("action", ACTIONS[0])
        if action not in ACTIONS:
            raise SpecError(f"controls.action must be one of {', '.join(ACTIONS)}, got {action!r}", path)
        when = section.get("when", WHEN[0])
        if when not in WHEN:
            raise SpecError(f"controls.when must be one of {', '.join(WHEN)}, got {when!r}", path)
        against = section.get("against", list(CONTROLS))
        if isinstance(against, str):
            against = [against]
        if not isinstance(against, list) or not against or any(c not in CONTROLS for c in against):
            raise SpecError(f"controls.against must list controls among {', '.join(CONTROLS)}, got {against!r}",
                            path)
        return cls(action=action, against=tuple(dict.fromkeys(against)), when=when, source=str(path))

    def judge(self, comparison: Mapping[str, Any]) -> list[ControlFinding]:
        """The cells of a stored column comparison that are below the bar of a control this rule counts."""
        found = []
        for model, against in sorted((comparison.get("controls") or {}).items()):
            for control, c in sorted(against.items()):
                if control in self.against and c["verdict"] in BELOW[self.when]:
                    found.append(ControlFinding(
                        cell_id=comparison["cells"][model], model=model, control=control, verdict=c["verdict"],
                        metric=comparison["metric"], diff=c["diff"], ci_low=c["ci_low"], ci_high=c["ci_high"],
                        p_value=c["p_value"], p_corrected=c["p_corrected"], method=c["method"]))
        return found


@dataclass(frozen=True, slots=True)
class ControlsVerdict:
    """What the rule decides for one column's comparison (or a whole run's): the findings and the action."""

    rule: ControlsRule
    findings: tuple[ControlFinding, ...] = ()
    #: columns judged (comparisons read)
    columns: int = 0

    @property
    def failed(self) -> bool:
        return self.rule.action == "fail" and bool(self.findings)

    @property
    def xfailed(self) -> bool:
        return self.rule.action == "xfail" and bool(self.findings)

    def reason(self) -> str:
        """One paragraph naming every finding (the test's failure or xfail message)."""
        head = (f"{len(self.findings)} foundation-model cell comparison(s) not above a control "
                f"(controls: action {self.rule.action}, when {self.rule.when}, in {self.rule.source})")
        return "\n".join([head, *(f"  {f.message()}" for f in self.findings)])

    def properties(self) -> list[tuple[str, str]]:
        """JUnit properties: the action and every finding."""
        props = [("ecgfm_controls_action", self.rule.action), ("ecgfm_controls_below", str(len(self.findings)))]
        return props + [("ecgfm_controls_finding", json.dumps(f.to_dict(), sort_keys=True)) for f in self.findings]

    def lines(self) -> list[str]:
        """The gate summary's lines (nothing when no finding)."""
        if not self.findings:
            return [f"controls: every foundation-model cell is above {', '.join(self.rule.against)} "
                    f"({self.columns} column(s) compared)"] if self.columns else []
        verb = {"report": "reported", "xfail": "expected failures", "fail": "FAILED"}[self.rule.action]
        # significantly worse first, then by p-value: the terminal shows the few that matter, gate.json every one
        ranked = sorted(self.findings, key=lambda f: (f.verdict != "worse", f.p_corrected))
        shown = [f"  {f.message()}" for f in ranked[:SHOWN_FINDINGS]]
        if len(ranked) > SHOWN_FINDINGS:
            shown.append(f"  … and {len(ranked) - SHOWN_FINDINGS} more (gate.json, the report's comparisons)")
        return [f"controls: {len(self.findings)} cell comparison(s) not above a control ({verb}; "
                f"{self.columns} column(s) compared):", *shown]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.rule.action, "when": self.rule.when, "against": list(self.rule.against),
                "columns": self.columns, "failed": self.failed, "findings": [f.to_dict() for f in self.findings]}


def judge_comparisons(rule: ControlsRule, comparisons: Iterable[Mapping[str, Any]]) -> ControlsVerdict:
    """The rule over several stored column comparisons."""
    payloads = list(comparisons)
    return ControlsVerdict(rule, tuple(f for p in payloads for f in rule.judge(p)), len(payloads))


def judge_run(rule: ControlsRule, run_path: Path) -> ControlsVerdict:
    """The rule over every column comparison stored in a run directory (``analysis/comparison/*.json``)."""
    from ..analysis.store import AnalysisStore

    return judge_comparisons(rule, AnalysisStore(run_path).entries("comparison").values())

