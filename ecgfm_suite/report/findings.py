"""The report's opening summary: short sentences generated from the run's own numbers, each with its evidence.

Every sentence carries a number with its 95 % CI and links to the element of the report that holds it
(``anchor_id``: the same ids the templates give those elements). Nothing here is recomputed: the best
model and the models not significantly different from it come from the comparison analysis (its
verdict, corrected p-values where it stores them), transfer drops from the transfer analysis,
label efficiency from its curves, regressions from ``gate.json`` and failed cell tests, and subgroup
gaps, calibration and robustness from the flat rows of the analyses that have a table, found by their
columns (``gap``/``ece``/``drop`` with their CI bounds) so a new analysis needs no code here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..metrics import METRICS

#: sentences per topic that ranks (transfer drops, subgroup gaps, calibration, robustness)
TOP = 3
#: the controls every foundation model must beat, when the model registry does not say
DEFAULT_CONTROLS = ("handcrafted", "random_cnn")
_PLAIN = re.compile(r"[^A-Za-z0-9_.-]")


def anchor_id(kind: str, *parts: str) -> str:
    """An HTML id for a piece of evidence: readable where the names are plain, made unique by a short digest
    where a name (a model id from a user's YAML) has characters an id or a URL fragment should not carry."""
    raw = "-".join((kind, *parts))
    plain = _PLAIN.sub("_", raw)
    if plain == raw:
        return plain
    return f"{plain}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One sentence (plain text, escaped where rendered) and the href of its evidence."""

    topic: str
    text: str
    href: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """What the findings read: plain data of one run (the report's rows and the stored analysis payloads)."""

    #: ``tables.cell_rows``: one row per cell that ran
    cells: Sequence[Mapping[str, Any]]
    #: ``task-level`` → comparison payload
    comparisons: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    label_efficiency: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    transfer: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``gate.json`` as written by the gate (None: no gate ran)
    gate: Mapping[str, Any] | None = None
    #: analysis name → its flat table rows (``AnalysisSpec.rows``)
    analysis_rows: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    controls: frozenset[str] = frozenset(DEFAULT_CONTROLS)
    #: (kind, *parts) → href; the default links an element of the same page
    href: Callable[..., str] = lambda kind, *parts: "#" + anchor_id(kind, *parts)


def num(value: float | None, signed: bool = False) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def with_ci(value: float | None, low: float | None, high: float | None, signed: bool = False) -> str:
    return f"{num(value, signed)} [{num(low, signed)}, {num(high, signed)}]"


def higher_is_better(metric: str) -> bool:
    return METRICS.get(metric).higher_is_better if metric in METRICS else True


def headline(levels: Iterable[str]) -> str:
    from ..analysis.inputs import headline_level

    return headline_level(sorted(set(levels)))


def pair(payload: Mapping[str, Any], a: str, b: str) -> dict[str, float | None] | None:
    """The stored comparison of ``a`` and ``b`` oriented as a − b (diff, CI, p; corrected p where stored)."""
    for key, sign in ((f"{a}|{b}", 1.0), (f"{b}|{a}", -1.0)):
        p = payload.get("pairs", {}).get(key)
        if p is None:
            continue
        lo, hi = p.get("ci_low"), p.get("ci_high")
        bounds = (lo, hi) if sign > 0 else (None if hi is None else -hi, None if lo is None else -lo)
        return {"diff": None if p.get("diff") is None else sign * p["diff"], "ci_low": bounds[0],
                "ci_high": bounds[1], "p": p.get("p_adjusted", p.get("p_value"))}
    return None


def _significant(payload: Mapping[str, Any], d: Mapping[str, float | None]) -> bool:
    p = d.get("p")
    return p is not None and p < float(payload.get("alpha", 0.05))


def _columns(cells: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    out: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for c in cells:
        out.setdefault((c["task"], c["scarcity"]), []).append(c)
    return out


def _headline_columns(ev: Evidence) -> list[tuple[str, str, list[Mapping[str, Any]]]]:
    """(task, headline level, its cells with a finite value), per task in name order."""
    columns = _columns(ev.cells)
    out = []
    for task in sorted({t for t, _ in columns}):
        level = headline(lv for t, lv in columns if t == task)
        members = [c for c in columns[(task, level)] if c["value"] is not None and c["value"] == c["value"]]
        if members:
            out.append((task, level, members))
    return out


def best_models(ev: Evidence) -> list[Finding]:
    """Per task (headline level): the best model with its CI, those not significantly different, and the rest."""
    out = []
    for task, level, members in _headline_columns(ev):
        metric = members[0]["metric"]
        by_model = {c["model"]: c for c in members}
        comparison = ev.comparisons.get(f"{task}-{level}")
        stored = comparison.get("best") if comparison else None
        pick = max if higher_is_better(metric) else min
        fallback = pick(members, key=lambda c: (c["value"], c["model"]))["model"]
        best = str(stored) if stored in by_model else str(fallback)
        top = by_model[best]
        text = f"{task} ({metric}, {level}): {best} is best at {with_ci(top['value'], top['ci_low'], top['ci_high'])}"
        if comparison is None or len(by_model) < 2:
            text += "; no comparison with another model ran." if len(by_model) > 1 else " (the only model)."
            out.append(Finding(topic="best", text=text, href=ev.href("column", task, level)))
            continue
        tied: list[str] = []
        worse: list[str] = []
        for model in sorted(by_model):
            d = pair(comparison, model, best) if model != best else None
            if d is None:
                continue
            part = f"{model} {with_ci(d['diff'], d['ci_low'], d['ci_high'], signed=True)}"
            (worse if _significant(comparison, d) else tied).append(part + (f", p = {d['p']:.3f}"
                                                                            if d["p"] is not None else ""))
        if tied:
            text += f"; not significantly different (difference from the best): {'; '.join(tied)}"
            text += f"; significantly worse: {'; '.join(worse)}" if worse else ""
        elif worse:
            text += f"; every other model is significantly worse (difference from the best): {'; '.join(worse)}"
        out.append(Finding(topic="best", text=text + ".", href=ev.href("column", task, level)))
    return out


def controls_unbeaten(ev: Evidence) -> list[Finding]:
    """Tasks (headline level) where no foundation model is significantly better than the best control."""
    out = []
    for task, level, members in _headline_columns(ev):
        metric = members[0]["metric"]
        higher = higher_is_better(metric)
        pick = max if higher else min
        controls = [c for c in members if c["model"] in ev.controls]
        fms = [c for c in members if c["model"] not in ev.controls]
        comparison = ev.comparisons.get(f"{task}-{level}")
        if not controls or not fms or comparison is None:
            continue
        control = pick(controls, key=lambda c: c["value"])
        beaten = False
        for fm in fms:
            d = pair(comparison, fm["model"], control["model"])
            if d is not None and d["diff"] is not None and (d["diff"] > 0) == higher and _significant(comparison, d):
                beaten = True
        if beaten:
            continue
        fm = pick(fms, key=lambda c: c["value"])
        d = pair(comparison, fm["model"], control["model"])
        if d is None:
            continue
        out.append(Finding(topic="controls", text=(
            f"{task} ({metric}, {level}): no foundation model beats the controls: the best, {fm['model']} "
            f"{with_ci(fm['value'], fm['ci_low'], fm['ci_high'])}, differs from {control['model']} "
            f"{with_ci(control['value'], control['ci_low'], control['ci_high'])} by "
            f"{with_ci(d['diff'], d['ci_low'], d['ci_high'], signed=True)}{'' if higher else ' (lower is better)'}"
            + (f" (p = {d['p']:.3f})." if d["p"] is not None else ".")), href=ev.href("column", task, level)))
    return out


def transfer_drops(ev: Evidence, top: int = TOP) -> list[Finding]:
    """The largest drops from in-region to another region's test split, with both values' CIs."""
    drops = []
    for payload in ev.transfer.values():
        cells = payload.get("cells", {})
        for a, row in cells.items():
            home = row.get(a) or {}
            for b, cell in row.items():
                if a != b and cell.get("drop") is not None and home.get("value") is not None:
                    drops.append((cell["drop"], payload, a, b, home, cell))
    out = []
    for drop, payload, a, b, home, cell in sorted(drops, key=lambda d: -d[0])[:top]:
        if drop <= 0:
            break
        out.append(Finding(topic="transfer", text=(
            f"{payload['model']} on {payload['task']}: trained in {a}, {payload['metric']} worsens by {num(drop)} on "
            f"{b}'s test split: {with_ci(cell['value'], cell.get('ci_low'), cell.get('ci_high'))} against "
            f"{with_ci(home['value'], home.get('ci_low'), home.get('ci_high'))} in {a}."),
            href=ev.href("transfer", payload["model"], payload["task"])))
    return out


def label_efficiency(ev: Evidence) -> list[Finding]:
    """Per task: the model that reaches the reference control's full-data score with the least training data."""
    out = []
    for task, payload in sorted(ev.label_efficiency.items()):
        models = payload.get("models", {})
        ref_model = payload.get("reference_model")
        reference = payload.get("reference")
        reached = [(c["reach"], m, c) for m, c in models.items() if m != ref_model and c.get("reach") is not None]
        ref_curve = models.get(ref_model) if ref_model else None
        if not reached or reference is None or ref_curve is None or not ref_curve.get("points"):
            continue
        reach, model, curve = min(reached, key=lambda r: (r[0], r[1]))
        if reach >= 1.0:
            continue
        full = max(ref_curve["points"], key=lambda p: p["fraction"])
        point = min((p for p in curve["points"] if p["fraction"] >= reach - 1e-12), key=lambda p: p["fraction"])
        at = "at most " if curve.get("reached_at_smallest") else ""
        measured = "" if abs(point["fraction"] - reach) < 1e-9 or at else "interpolated; next level measured, "
        out.append(Finding(topic="efficiency", text=(
            f"{task} ({curve['metric']}): {model} reaches {ref_model}'s full-data score "
            f"{with_ci(full['value'], full.get('ci_low'), full.get('ci_high'))} with {at}{reach:.0%} of the training "
            f"data ({measured}{point['level']}: "
            f"{with_ci(point['value'], point.get('ci_low'), point.get('ci_high'))})."),
            href=ev.href("efficiency", task)))
    return out


def pretraining_overlap(ev: Evidence) -> list[Finding]:
    """Per model: the headline cells whose test data comes from datasets the model was pretrained on."""
    flagged: dict[str, list[Mapping[str, Any]]] = {}
    for _, _, members in _headline_columns(ev):
        for c in members:
            if c.get("pretraining_overlap"):
                flagged.setdefault(c["model"], []).append(c)
    out = []
    for model, cells in sorted(flagged.items()):
        shown = "; ".join(f"{c['task']} {with_ci(c['value'], c['ci_low'], c['ci_high'])} "
                          f"({c['pretraining_overlap']})" for c in cells[:4])
        more = f"; and {len(cells) - 4} more tasks" if len(cells) > 4 else ""
        out.append(Finding(topic="overlap", text=(
            f"{model} was pretrained on data these test sets come from, so its scores there may be optimistic: "
            f"{shown}{more}."), href=ev.href("cell", cells[0]["cell_id"])))
    return out


def regressions(ev: Evidence) -> list[Finding]:
    """Cells the gate found regressed against their baseline, and cells that failed their floor."""
    by_id = {c["cell_id"]: c for c in ev.cells}
    out = []
    for cell_id, g in sorted(((ev.gate or {}).get("cells") or {}).items()):
        if g.get("status") != "regressed" or not g.get("baseline"):
            continue
        c = by_id.get(cell_id, {})
        base = g["baseline"]
        out.append(Finding(topic="gate", text=(
            f"{cell_id} regressed: {g['metric']} {with_ci(g['value'], c.get('ci_low'), c.get('ci_high'))} against "
            f"the baseline {with_ci(base['value'], base.get('ci_low'), base.get('ci_high'))} (change "
            f"{num(g.get('change'), signed=True)}, tolerance {num(g.get('allowed'))})."),
            href=ev.href("gate", cell_id)))
    for c in ev.cells:
        if c.get("outcome") == "failed" and c.get("failure"):
            out.append(Finding(topic="gate", text=(
                f"{c['cell_id']} failed its test at {c['metric']} {with_ci(c['value'], c['ci_low'], c['ci_high'])}: "
                f"{c['failure']}."), href=ev.href("cell", c["cell_id"])))
    return out


#: topic → (value column, its CI columns, how a large value reads, ranking: largest |value| or largest value)
RANKED = {
    "subgroup": ("gap", "gap_ci_low", "gap_ci_high", "subgroup gap", True),
    "calibration": ("ece", "ece_ci_low", "ece_ci_high", "expected calibration error", False),
    "robustness": ("drop", "drop_ci_low", "drop_ci_high", "drop under perturbation", False),
}
#: columns that say which cell, group or perturbation a row is about, in the order a sentence names them
_WHAT = ("model", "task", "scarcity", "attribute", "group", "group_a", "group_b", "perturbation", "severity",
         "class", "output")


def _ranked_rows(ev: Evidence, topic: str) -> list[Finding]:
    value, low, high, label, absolute = RANKED[topic]
    candidates = []
    for name, rows in sorted(ev.analysis_rows.items()):
        for row in rows:
            if not all(k in row for k in (value, low, high)) or (topic == "subgroup" and "attribute" not in row):
                continue
            if topic == "robustness" and "perturbation" not in row:
                continue
            v = row[value]
            if v is None or v != v or (topic == "subgroup" and row.get("gap_excludes_zero") is False):
                continue
            candidates.append((abs(v) if absolute else v, name, row))
    out = []
    for _, name, row in sorted(candidates, key=lambda c: -c[0])[:TOP]:
        what = ", ".join(f"{k} {row[k]}" for k in _WHAT if row.get(k) not in (None, ""))
        out.append(Finding(topic=topic, text=(
            f"Largest {label}: {with_ci(row[value], row[low], row[high], signed=topic == 'subgroup')} ({what})."),
            href=ev.href("analysis", name)))
    return out


#: topic → heading of the findings list, in page order
TOPICS = {
    "gate": "Regressions and failures", "best": "Best model per task", "controls": "Where the controls are not beaten",
    "efficiency": "Label efficiency", "transfer": "Largest cross-region transfer drops",
    "overlap": "Pretraining overlap", "subgroup": "Largest subgroup gaps", "calibration": "Worst calibration",
    "robustness": "Largest robustness drops",
}


def findings(ev: Evidence) -> list[Finding]:
    """Every finding of the run, in ``TOPICS`` order."""
    found = [*regressions(ev), *best_models(ev), *controls_unbeaten(ev), *label_efficiency(ev),
             *transfer_drops(ev), *pretraining_overlap(ev), *(f for t in RANKED for f in _ranked_rows(ev, t))]
    order = list(TOPICS)
    return sorted(found, key=lambda f: order.index(f.topic))
