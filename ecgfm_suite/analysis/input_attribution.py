"""SHAP over the input: how much each lead × time segment of a record moves the model-plus-probe output.

The players are groups of samples: every (lead, segment) cell of a grid over the leads the
model reads and ``n_segments`` equal time segments. A coalition keeps its cells and replaces
the others by the lead's median (its isoelectric level, so masking adds no step or offset);
the full pipeline (the model's own preprocessing → encoder → window pooling → probe) scores
every masked record. shap's ``PermutationExplainer`` (antithetic permutations) estimates the
Shapley values of that game; every permutation is exactly efficient, so the values of a
record sum to f(record) − f(fully masked record) whatever the number of permutations.

This works for any encoder (torch or not). Leads the model does not read are not players:
their attribution is zero by construction and is reported as such. The cost is one pipeline
call per evaluated coalition, ``2 · players + 1`` per permutation; ``plan_resolution`` picks
the finest grid whose cost fits a time budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AnalysisSkip, DataError, RecordError
from .inputs import (
    AnalysisOptions,
    ModelTaskData,
    Output,
    headline_level,
    probe_runs,
    score_outputs,
)
from .projection import label_groups

if TYPE_CHECKING:
    from ..data.tasks.build import TaskData

#: candidate segment counts, finest first
SEGMENT_CHOICES: tuple[int, ...] = (10, 5, 2, 1)
MAX_PERMUTATIONS = 8
PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")

#: a batch of records (n, leads, samples) in mV → scores (n, K)
Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    n_segments: int
    permutations: int
    evals_per_record: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordAttribution:
    """Shapley values of one record: ``values[l, s, k]`` for lead ``players_leads[l]``, segment s, output k."""

    values: np.ndarray
    base: np.ndarray  # f(fully masked record), (K,)
    output: np.ndarray  # f(record), (K,)
    lead_index: tuple[int, ...]  # row of each player lead in the record
    bounds: np.ndarray  # segment boundaries in samples, (n_segments + 1,)

    @property
    def additivity_error(self) -> float:
        return float(np.max(np.abs(self.values.sum(axis=(0, 1)) - (self.output - self.base))))


def segment_bounds(n_samples: int, n_segments: int) -> np.ndarray:
    if not 1 <= n_segments <= n_samples:
        raise DataError(f"cannot cut {n_samples} samples into {n_segments} segments", "n_segments")
    return np.linspace(0, n_samples, n_segments + 1).round().astype(np.int64)


def plan_resolution(n_leads: int, n_records: int, seconds_per_eval: float, budget_s: float,
                    choices: Sequence[int] = SEGMENT_CHOICES, max_permutations: int = MAX_PERMUTATIONS) -> Resolution:
    """The finest segment count whose single permutation fits the budget, then as many permutations as fit.

    Falls back to the coarsest choice with one permutation when nothing fits.
    """
    if n_leads < 1 or n_records < 1 or seconds_per_eval < 0 or budget_s <= 0:
        raise DataError(f"bad resolution request: leads={n_leads} records={n_records} "
                        f"s/eval={seconds_per_eval} budget={budget_s}", "input attribution")

    def cost(n_segments: int) -> float:
        return n_records * (2 * n_leads * n_segments + 1) * seconds_per_eval

    n_segments = next((s for s in choices if cost(s) <= budget_s), choices[-1])
    one = cost(n_segments)
    permutations = max(1, min(max_permutations, int(budget_s // one) if one > 0 else max_permutations))
    return Resolution(n_segments=n_segments, permutations=permutations,
                      evals_per_record=(2 * n_leads * n_segments + 1) * permutations)


def masked_batch(record: np.ndarray, lead_index: Sequence[int], bounds: np.ndarray,
                 coalitions: np.ndarray) -> np.ndarray:
    """Records for each coalition (rows of 0/1 over lead × segment players, lead-major); masked cells → the
    lead's median."""
    record = np.asarray(record, dtype=np.float32)
    n_seg = len(bounds) - 1
    coalitions = np.asarray(coalitions).reshape(len(coalitions), len(lead_index), n_seg)
    fill = np.median(record, axis=1)
    out = np.repeat(record[None], len(coalitions), axis=0)
    for li, lead in enumerate(lead_index):
        for s in range(n_seg):
            off = np.flatnonzero(coalitions[:, li, s] == 0)
            if len(off):
                out[off, lead, bounds[s]:bounds[s + 1]] = fill[lead]
    return out


def explain_record(predict: Predict, record: np.ndarray, lead_index: Sequence[int], resolution: Resolution, *,
                   seed: int, cache_dir: Path) -> RecordAttribution:
    """Shapley values of ``predict`` over the lead × segment grid of one record (leads, samples)."""
    from ._jit_cache import import_shap

    shap = import_shap(cache_dir)
    record = np.asarray(record, dtype=np.float32)
    if record.ndim != 2 or not lead_index:
        raise DataError(f"need a (leads, samples) record and at least one player lead, got {record.shape}", "record")
    bounds = segment_bounds(record.shape[1], resolution.n_segments)
    n_players = len(lead_index) * resolution.n_segments

    def game(coalitions: np.ndarray) -> np.ndarray:
        scores = np.asarray(predict(masked_batch(record, lead_index, bounds, coalitions)), dtype=np.float64)
        return scores.reshape(len(coalitions), -1)

    masker = shap.maskers.Independent(np.zeros((1, n_players)), max_samples=1)
    explainer = shap.PermutationExplainer(game, masker, seed=seed)
    everything = np.ones((1, n_players))
    result = explainer(everything, max_evals=resolution.evals_per_record, silent=True)
    values = np.asarray(result.values[0], dtype=np.float64).reshape(n_players, -1)
    base = np.asarray(result.base_values, dtype=np.float64).reshape(-1)
    output = game(everything)[0]
    return RecordAttribution(values=values.reshape(len(lead_index), resolution.n_segments, -1), base=base,
                             output=output, lead_index=tuple(int(i) for i in lead_index), bounds=bounds)


def lead_importance(attributions: Sequence[RecordAttribution], record_leads: Sequence[str],
                    outputs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per output: each lead's share of mean |SHAP| over the records (leads the model does not read: 0),
    its mean signed SHAP, and the share held by the precordial leads V1–V6."""
    if not attributions:
        raise DataError("no record attributions to summarise", "attributions")
    leads = list(record_leads)
    absolute = np.zeros((len(attributions), len(leads), len(outputs)))
    signed = np.zeros_like(absolute)
    for r, att in enumerate(attributions):
        for li, lead in enumerate(att.lead_index):
            absolute[r, lead] = np.abs(att.values[li]).sum(axis=0)
            signed[r, lead] = att.values[li].sum(axis=0)
    out = {}
    for k, name in enumerate(outputs):
        mass = absolute[:, :, k].mean(axis=0)
        total = mass.sum()
        share = mass / total if total > 0 else np.zeros_like(mass)
        precordial = [i for i, lead in enumerate(leads) if lead in PRECORDIAL]
        out[name] = {
            "share": {lead: float(share[i]) for i, lead in enumerate(leads)},
            "signed": {lead: float(signed[:, i, k].mean()) for i, lead in enumerate(leads)},
            "precordial_share": float(share[precordial].sum()) if precordial else None,
            "top_lead": leads[int(np.argmax(mass))] if total > 0 else None,
        }
    return out


# --------------------------------------------------------------------------- on a benchmark run

def choose_records(td: TaskData, options: AnalysisOptions) -> list[int]:
    """A fixed, model-independent set of test records: up to ``input_records_per_class`` per label group
    (positives first), ``input_max_records`` in all, chosen by a seeded draw over the sorted keys."""
    test = td.indices("test")
    groups, _ = label_groups(td.task.type, np.asarray(td.y)[test], td.classes)
    rng = np.random.default_rng(options.seed)
    order = sorted(np.unique(groups).tolist(), reverse=td.task.type == "binary")
    pools = {g: test[groups == g][rng.permutation(int((groups == g).sum()))][: options.input_records_per_class]
             for g in order}
    chosen: list[int] = []
    for i in range(options.input_records_per_class):
        chosen.extend(int(pools[g][i]) for g in order if i < len(pools[g]))
    return chosen[: options.input_max_records]


@dataclass(frozen=True, slots=True)
class ExplainedRecord:
    key: str
    data: np.ndarray  # (leads, samples) mV
    fs: float
    leads: tuple[str, ...]


def richest_layout(attributions: Sequence[tuple[ExplainedRecord, Any]],
                   ) -> tuple[list[str], list[tuple[ExplainedRecord, Any]]]:
    """The lead layout with the most leads among the explained records (the first such) and the records in it.

    Lead shares are comparable only within one layout; a pooled task mixes 12-lead records with
    CinC 2017's single lead, whose share would be 1.0 by construction.
    """
    richest = max((rec.leads for rec, _ in attributions), key=len)
    names = list(richest)
    return names, [(rec, att) for rec, att in attributions if list(rec.leads) == names]


def run(data: ModelTaskData, options: AnalysisOptions) -> Output:
    """SHAP of model + probe over lead × segment groups for a few fixed test records (see ``input_attribution``)."""
    from ..data.preprocess import lead_sources
    from ..data.reader import read_signal
    from ..embeddings.encode import embed_array

    level = headline_level(data.levels)
    run = probe_runs(data, level)[0]
    td = data.task
    records, unreadable = [], {}
    for i in choose_records(td, options):
        row = td.records.iloc[i].to_dict()
        try:
            sig = read_signal(row)
        except RecordError as exc:
            unreadable[str(td.keys[i])] = exc.reason
            continue
        records.append((i, ExplainedRecord(str(td.keys[i]), sig.data, float(sig.fs), tuple(sig.leads))))
    if not records:
        raise AnalysisSkip(f"no readable test record to explain ({unreadable})")
    outputs = score_outputs(data)
    encoder = data.encoder
    assert encoder is not None, "input_attribution needs the model (its spec says needs_encoder)"
    spec = encoder.input_spec

    def read_leads(rec: ExplainedRecord) -> list[int]:
        """The record's leads the model reads (its own, or their fallback substitutes): the players."""
        return sorted({i for i in lead_sources(rec.leads, spec.leads, spec.lead_fallbacks) if i is not None})

    def predictor(rec: ExplainedRecord) -> Callable[[np.ndarray], np.ndarray]:
        def predict(batch: np.ndarray) -> np.ndarray:
            scores = run.probe.predict_scores(embed_array(encoder, batch, rec.fs, rec.leads))
            return np.asarray(scores, dtype=np.float64).reshape(len(batch), -1)
        return predict

    first = records[0][1]
    most_players = max(len(read_leads(rec)) for _, rec in records)
    t0 = time.perf_counter()
    predictor(first)(np.repeat(first.data[None], 4, axis=0))
    per_eval = (time.perf_counter() - t0) / 4
    resolution = plan_resolution(max(most_players, 1), len(records), per_eval, options.input_budget_s)
    explained, attributions = [], []
    for i, rec in records:
        leads_here = read_leads(rec)
        if not leads_here:
            unreadable[rec.key] = f"none of the model's leads ({', '.join(spec.leads)}) in the record"
            continue
        att = explain_record(predictor(rec), rec.data, leads_here, resolution, seed=options.seed,
                                cache_dir=data.cache_dir)
        attributions.append((rec, att))
        explained.append({
            "key": rec.key, "label": _label_text(td, i), "fs": rec.fs, "n_samples": int(rec.data.shape[1]),
            "leads": list(rec.leads), "player_leads": [rec.leads[j] for j in att.lead_index],
            "bounds_s": (att.bounds / rec.fs).tolist(), "values": att.values, "base": att.base, "output": att.output,
            "additivity_error": att.additivity_error,
        })
    if not attributions:
        raise AnalysisSkip(f"no explainable record ({unreadable})")
    lead_names, same_layout = richest_layout(attributions)
    return Output({
        "model": data.model, "task": td.task.id, "level": level, "seed": run.seed, "outputs": outputs,
        "explains": "probe scores (probability; prediction for regression) of model + probe",
        "masking": "lead median over the segment", "model_leads": list(spec.leads),
        "lead_fallbacks": [list(pair) for pair in spec.lead_fallbacks],
        "resolution": {"n_segments": resolution.n_segments, "permutations": resolution.permutations,
                       "evals_per_record": resolution.evals_per_record, "seconds_per_eval": per_eval},
        "records": explained, "unexplained": unreadable,
        "lead_importance": lead_importance([att for _, att in same_layout], lead_names, outputs),
        "lead_importance_records": [rec.key for rec, _ in same_layout],
    }, figure_input=[rec for rec, _ in attributions])


def _label_text(td: TaskData, i: int) -> str:
    y = np.asarray(td.y)[i]
    if td.task.type == "regression":
        return f"{float(y):.3g}"
    if td.task.type == "multilabel":
        return ", ".join(c for c, v in zip(td.classes, y, strict=True) if v) or "none"
    return str(td.classes[int(y)])


def problems(p: Mapping[str, Any]) -> list[str]:
    """Invariants a stored payload must satisfy: additivity, players among the leads the model reads, shares."""
    found = []
    read = set(p["model_leads"]) | {substitute for _, substitute in p["lead_fallbacks"]}
    for rec in p["records"]:  # the values of a record sum to f(record) - f(masked record)
        if rec["additivity_error"] > 1e-4 * max(1.0, *map(abs, rec["output"])):
            found.append(f"{rec['key']}: additivity error {rec['additivity_error']}")
        if not set(rec["player_leads"]) <= read:
            found.append(f"{rec['key']}: players {rec['player_leads']} outside the leads the model reads")
    for output, imp in p["lead_importance"].items():
        total = sum(imp["share"].values())
        if abs(total - 1) >= 1e-6 and total != 0:
            found.append(f"{output}: lead shares sum to {total}")
        if any(imp["share"][lead] != 0 for lead in imp["share"] if lead not in read):
            found.append(f"{output}: a lead the model does not read got attribution")
    return found
