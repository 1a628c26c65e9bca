"""SHAP over the input: how much each lead × time segment of a record moves the model-plus-probe output.

The players are groups of samples: every (lead, segment) cell of a grid over the leads the
model reads and equal time segments. A coalition keeps its cells and replaces the others by
the lead's median (its isoelectric level, so masking adds no step or offset); the full
pipeline (the model's own preprocessing → encoder → window pooling → probe) scores every
masked record. shap's ``PermutationExplainer`` estimates the Shapley values of that game
(each permutation a forward and a backward pass); every pass is exactly efficient, so the
values of a record sum to f(record) − f(fully masked record) whatever the number of passes.

The resolution is fixed, never fitted to a time budget, so two runs explain a record alike
whatever the machine's load: segments per lead, shap permutations and explained records are
``AnalysisOptions`` settings, recorded in every payload. A model that reads one lead gets a
finer time grid (``input_time_segments``) and a time profile (which part of the record drives
its output) instead of lead shares, which would be 1.0 by construction.

Cost is controlled by scoring each masked record once and many per encoder call: shap's
permutations depend only on its seed and the number of players, so a first pass of the
explainer over a recording game lists the coalitions it will ask for (``planned_coalitions``);
every distinct one of every record is then scored in batches of ``EVAL_BATCH`` masked records
(records sharing a layout share the batches), memoised by coalition, and the second pass reads
the memo. A long record is cut into several windows; those a mask leaves unchanged are not encoded
again either (``WindowMemo``). This works for any encoder (torch or not). Leads the model does not
read are not players: their attribution is zero by construction and is reported as such.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AnalysisSkip, DataError, RecordError, SpecError
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
    from ..models.protocol import Encoder

PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")
#: masked records per predict call: large enough that the encoder's per-call cost is shared, small enough that
#: a batch of 60 s records stays a few tens of MB
EVAL_BATCH = 64

#: a batch of records (n, leads, samples) in mV → scores (n, K)
Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    """The grid and sampling of an explanation: equal time segments per player lead, and shap permutations."""

    n_segments: int
    permutations: int

    def __post_init__(self) -> None:
        if self.n_segments < 1 or self.permutations < 1:
            raise SpecError(f"input attribution needs at least one segment and one permutation, got "
                            f"{self.n_segments} and {self.permutations}", "AnalysisOptions")

    def max_evals(self, n_players: int) -> int:
        """What shap's explainer may ask for: ``2 · players + 1`` coalitions per permutation."""
        return self.permutations * (2 * n_players + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordAttribution:
    """Shapley values of one record: ``values[l, s, k]`` for lead ``players_leads[l]``, segment s, output k."""

    values: np.ndarray
    base: np.ndarray  # f(fully masked record), (K,)
    output: np.ndarray  # f(record), (K,)
    lead_index: tuple[int, ...]  # row of each player lead in the record
    bounds: np.ndarray  # segment boundaries in samples, (n_segments + 1,)
    #: distinct masked records scored, and coalitions shap asked for (the memo answers the difference)
    evaluations: int
    requested: int

    @property
    def additivity_error(self) -> float:
        return float(np.max(np.abs(self.values.sum(axis=(0, 1)) - (self.output - self.base))))


def segment_bounds(n_samples: int, n_segments: int) -> np.ndarray:
    if not 1 <= n_segments <= n_samples:
        raise DataError(f"cannot cut {n_samples} samples into {n_segments} segments", "n_segments")
    return np.linspace(0, n_samples, n_segments + 1).round().astype(np.int64)


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


def _key(coalition: np.ndarray) -> bytes:
    return np.packbits(coalition).tobytes()


@dataclass(eq=False)
class RecordGame:
    """The game of one record: a coalition of its players → the scores of the record with the other players
    masked. Each distinct coalition is scored once (``scores``, keyed by its bits); ``__call__`` is what
    shap's explainer evaluates, scoring what the memo lacks."""

    record: np.ndarray
    lead_index: tuple[int, ...]
    bounds: np.ndarray
    predict: Predict
    scores: dict[bytes, np.ndarray] = field(default_factory=dict)
    requested: int = 0

    @property
    def n_players(self) -> int:
        return len(self.lead_index) * (len(self.bounds) - 1)

    def missing(self, coalitions: np.ndarray) -> np.ndarray:
        """The distinct coalitions (0/1 rows) not scored yet, in first-asked order."""
        on = np.asarray(coalitions) > 0.5
        seen: set[bytes] = set(self.scores)
        rows = []
        for row in on:
            key = _key(row)
            if key not in seen:
                seen.add(key)
                rows.append(row)
        return np.array(rows, dtype=np.uint8).reshape(len(rows), on.shape[1])

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        on = np.asarray(coalitions) > 0.5
        score_games([self], [self.missing(on)])
        self.requested += len(on)
        return np.stack([self.scores[_key(row)] for row in on])


def score_games(games: Sequence[RecordGame], coalitions: Sequence[np.ndarray], batch: int = EVAL_BATCH) -> None:
    """Score each game's ``coalitions`` (not yet scored) and memoise them: games that share a ``predict`` (records
    of one layout) share its calls, up to ``batch`` masked records per call."""
    by_predict: dict[int, list[tuple[RecordGame, np.ndarray]]] = {}
    for game, rows in zip(games, coalitions, strict=True):
        by_predict.setdefault(id(game.predict), []).extend((game, row) for row in game.missing(rows))
    for jobs in by_predict.values():
        for start in range(0, len(jobs), batch):
            chunk = jobs[start:start + batch]
            parts = [(game, np.stack([row for _, row in same]))
                     for game, same in groupby(chunk, key=lambda job: job[0])]
            x = np.concatenate([masked_batch(game.record, game.lead_index, game.bounds, rows) for game, rows in parts])
            scores = np.asarray(chunk[0][0].predict(x), dtype=np.float64).reshape(len(chunk), -1)
            for (game, row), score in zip(chunk, scores, strict=True):
                game.scores[_key(row)] = score


class WindowMemo:
    """The model with its window embeddings memoised by window content (``Encoder`` protocol): a long record is
    cut into several windows, and a masked copy whose mask leaves a window unchanged reuses that window's
    embedding instead of encoding it again."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.spec, self.input_spec = encoder.spec, encoder.input_spec
        self.embed_dim, self.checkpoint_sha256 = encoder.embed_dim, encoder.checkpoint_sha256
        self.prepare = encoder.prepare
        self.embeddings: dict[bytes, np.ndarray] = {}

    def encode(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch)
        keys = [hashlib.sha256(window.tobytes()).digest() for window in batch]
        new = {key: i for i, key in reversed(list(enumerate(keys))) if key not in self.embeddings}
        if new:
            fresh = self.encoder.encode(batch[sorted(new.values())])
            self.embeddings.update(zip(sorted(new, key=new.__getitem__), fresh, strict=True))
        return np.stack([self.embeddings[key] for key in keys])


def planned_coalitions(n_players: int, resolution: Resolution, *, seed: int, cache_dir: Path) -> np.ndarray:
    """The coalitions shap's seeded explainer asks for over ``n_players`` (distinct, in first-asked order): its
    permutations depend on the seed and the number of players only, so a pass over a game that records what
    it is asked and answers zeros lists them."""
    asked: list[np.ndarray] = []

    def record(coalitions: np.ndarray) -> np.ndarray:
        asked.append(np.asarray(coalitions) > 0.5)
        return np.zeros((len(coalitions), 1))

    _explain(record, n_players, resolution, seed=seed, cache_dir=cache_dir)
    rows = np.concatenate(asked)
    _, first = np.unique(np.packbits(rows, axis=1), axis=0, return_index=True)
    return rows[np.sort(first)].astype(np.uint8)


def _explain(game: Callable[[np.ndarray], np.ndarray], n_players: int, resolution: Resolution, *, seed: int,
             cache_dir: Path) -> Any:
    """shap's permutation explainer over ``n_players`` on/off players (background: all off)."""
    from ._jit_cache import import_shap

    shap = import_shap(cache_dir)
    masker = shap.maskers.Independent(np.zeros((1, n_players)), max_samples=1)
    explainer = shap.PermutationExplainer(game, masker, seed=seed)
    return explainer(np.ones((1, n_players)), max_evals=resolution.max_evals(n_players), silent=True)


def explain_records(games: Sequence[RecordGame], resolution: Resolution, *, seed: int,
                    cache_dir: Path) -> list[RecordAttribution]:
    """Shapley values of each game over its lead × segment grid: the planned coalitions of every record scored
    first (batched across the records that share a predict), then shap's explainer on the memo."""
    plans = {n: planned_coalitions(n, resolution, seed=seed, cache_dir=cache_dir)
             for n in sorted({g.n_players for g in games})}
    score_games(games, [plans[g.n_players] for g in games])
    out = []
    for game in games:
        n = game.n_players
        result = _explain(game, n, resolution, seed=seed, cache_dir=cache_dir)
        values = np.asarray(result.values[0], dtype=np.float64).reshape(n, -1)
        out.append(RecordAttribution(
            values=values.reshape(len(game.lead_index), len(game.bounds) - 1, -1),
            base=np.asarray(result.base_values, dtype=np.float64).reshape(-1),
            output=game(np.ones((1, n)))[0], lead_index=game.lead_index, bounds=game.bounds,
            evaluations=len(game.scores), requested=game.requested))
    return out


def make_game(predict: Predict, record: np.ndarray, lead_index: Sequence[int], n_segments: int) -> RecordGame:
    record = np.asarray(record, dtype=np.float32)
    if record.ndim != 2 or not lead_index:
        raise DataError(f"need a (leads, samples) record and at least one player lead, got {record.shape}", "record")
    return RecordGame(record=record, lead_index=tuple(int(i) for i in lead_index),
                      bounds=segment_bounds(record.shape[1], n_segments), predict=predict)


def explain_record(predict: Predict, record: np.ndarray, lead_index: Sequence[int], resolution: Resolution, *,
                   seed: int, cache_dir: Path) -> RecordAttribution:
    """Shapley values of ``predict`` over the lead × segment grid of one record (leads, samples)."""
    game = make_game(predict, record, lead_index, resolution.n_segments)
    return explain_records([game], resolution, seed=seed, cache_dir=cache_dir)[0]


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


def time_profile(attributions: Sequence[RecordAttribution], outputs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per output: each time segment's share of mean |SHAP| over the records (segment s is the same fraction of
    every record; its player leads summed), its mean signed SHAP, and the segment with the most."""
    if not attributions:
        raise DataError("no record attributions to summarise", "attributions")
    if len({att.values.shape[1] for att in attributions}) != 1:
        raise DataError("records explained at different segment counts cannot share a time profile", "attributions")
    absolute = np.stack([np.abs(att.values).sum(axis=0) for att in attributions])  # (records, segments, K)
    signed = np.stack([att.values.sum(axis=0) for att in attributions])
    out = {}
    for k, name in enumerate(outputs):
        mass = absolute[:, :, k].mean(axis=0)
        total = mass.sum()
        out[name] = {
            "share": (mass / total if total > 0 else np.zeros_like(mass)).tolist(),
            "signed": signed[:, :, k].mean(axis=0).tolist(),
            "top_segment": int(np.argmax(mass)) if total > 0 else None,
        }
    return out


def segment_labels(bounds_s: Sequence[Sequence[float]]) -> list[str]:
    """Names of the time segments of a profile: seconds when every record has the same bounds, else the
    fraction of the record (records of different lengths are cut into the same fractions)."""
    first = np.asarray(bounds_s[0])
    n = len(first) - 1
    if all(np.allclose(b, first) for b in bounds_s):
        return [f"{first[s]:.1f}–{first[s + 1]:.1f} s" for s in range(n)]
    return [f"{s / n:.0%}–{(s + 1) / n:.0%} of the record" for s in range(n)]


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


def resolution_for(n_model_leads: int, options: AnalysisOptions) -> Resolution:
    """The fixed resolution of a model: its time segments per lead (one lead: the finer time grid) and the
    permutations; bad settings are a SpecError naming the option."""
    for name in ("input_records_per_class", "input_max_records", "input_segments_per_lead", "input_time_segments",
                 "input_permutations"):
        if getattr(options, name) < 1:
            raise SpecError(f"must be at least 1, got {getattr(options, name)}", f"AnalysisOptions.{name}")
    segments = options.input_time_segments if n_model_leads == 1 else options.input_segments_per_lead
    return Resolution(n_segments=segments, permutations=options.input_permutations)


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
    from ..embeddings.encode import embed_array, large_buffers_reused

    encoder = data.encoder
    assert encoder is not None, "input_attribution needs the model (its spec says needs_encoder)"
    spec = encoder.input_spec
    resolution = resolution_for(len(spec.leads), options)
    level = headline_level(data.levels)
    run = probe_runs(data, level)[0]
    td = data.task
    records, unexplained = [], {}
    for i in choose_records(td, options):
        row = td.records.iloc[i].to_dict()
        try:
            sig = read_signal(row)
        except RecordError as exc:
            unexplained[str(td.keys[i])] = exc.reason
            continue
        rec = ExplainedRecord(str(td.keys[i]), sig.data, float(sig.fs), tuple(sig.leads))
        players = sorted({j for j in lead_sources(rec.leads, spec.leads, spec.lead_fallbacks) if j is not None})
        if not players:
            unexplained[rec.key] = f"none of the model's leads ({', '.join(spec.leads)}) in the record"
            continue
        records.append((i, rec, players))
    if not records:
        raise AnalysisSkip(f"no explainable test record ({unexplained})")
    outputs = score_outputs(data)
    memo = WindowMemo(encoder)
    predictors: dict[tuple[float, tuple[str, ...]], Predict] = {}

    def predictor(rec: ExplainedRecord) -> Predict:
        """One predict per record layout, so the records of a layout share its batches."""
        def predict(batch: np.ndarray) -> np.ndarray:
            scores = run.probe.predict_scores(embed_array(memo, batch, rec.fs, rec.leads))
            return np.asarray(scores, dtype=np.float64).reshape(len(batch), -1)
        return predictors.setdefault((rec.fs, rec.leads), predict)

    games = [make_game(predictor(rec), rec.data, players, resolution.n_segments) for _, rec, players in records]
    with large_buffers_reused():  # batches of masked records are as large as the encode stage's
        attributions = list(zip((rec for _, rec, _ in records),
                                explain_records(games, resolution, seed=options.seed, cache_dir=data.cache_dir),
                                strict=True))
    explained = [{
        "key": rec.key, "label": _label_text(td, i), "fs": rec.fs, "n_samples": int(rec.data.shape[1]),
        "leads": list(rec.leads), "player_leads": [rec.leads[j] for j in att.lead_index],
        "bounds_s": (att.bounds / rec.fs).tolist(), "values": att.values, "base": att.base, "output": att.output,
        "additivity_error": att.additivity_error, "evaluations": att.evaluations, "requested": att.requested,
    } for (i, _, _), (rec, att) in zip(records, attributions, strict=True)]
    payload: dict[str, Any] = {
        "model": data.model, "task": td.task.id, "level": level, "seed": run.seed, "outputs": outputs,
        "explains": "probe scores (probability; prediction for regression) of model + probe",
        "masking": "lead median over the segment", "model_leads": list(spec.leads),
        "lead_fallbacks": [list(pair) for pair in spec.lead_fallbacks],
        "profile": "time" if len(spec.leads) == 1 else "leads",
        "resolution": {"n_segments": resolution.n_segments, "permutations": resolution.permutations,
                       "records_per_class": options.input_records_per_class, "max_records": options.input_max_records,
                       "seed": options.seed, "evaluations": sum(r["evaluations"] for r in explained),
                       "requested": sum(r["requested"] for r in explained)},
        "records": explained, "unexplained": unexplained,
    }
    if payload["profile"] == "time":
        payload["time_profile"] = time_profile([att for _, att in attributions], outputs)
        payload["segment_labels"] = segment_labels([r["bounds_s"] for r in explained])
    else:
        lead_names, same_layout = richest_layout(attributions)
        payload["lead_importance"] = lead_importance([att for _, att in same_layout], lead_names, outputs)
        payload["lead_importance_records"] = [rec.key for rec, _ in same_layout]
    return Output(payload, figure_input=[rec for rec, _ in attributions])


def _label_text(td: TaskData, i: int) -> str:
    y = np.asarray(td.y)[i]
    if td.task.type == "regression":
        return f"{float(y):.3g}"
    if td.task.type == "multilabel":
        return ", ".join(c for c, v in zip(td.classes, y, strict=True) if v) or "none"
    return str(td.classes[int(y)])


def rows(key: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (output, lead) of a multi-lead model (the leads it reads) or per (output, time segment) of a
    single-lead model: its share of mean |SHAP| and mean signed SHAP, with the resolution it was explained at."""
    res = payload["resolution"]
    common = {"segments": res["n_segments"], "permutations": res["permutations"],
              "evaluations": res["evaluations"],
              "max_additivity_error": max(r["additivity_error"] for r in payload["records"])}
    out: list[dict[str, Any]] = []
    if payload["profile"] == "time":
        for output, prof in payload["time_profile"].items():
            out.extend({"model": payload["model"], "task": payload["task"], "scarcity": payload["level"],
                        "output": output, "lead_or_segment": label, "share": share, "mean_shap": signed,
                        "records": len(payload["records"]), **common}
                       for label, share, signed in zip(payload["segment_labels"], prof["share"], prof["signed"],
                                                       strict=True))
        return out
    read = _read_leads(payload)
    for output, imp in payload["lead_importance"].items():
        out.extend({"model": payload["model"], "task": payload["task"], "scarcity": payload["level"],
                    "output": output, "lead_or_segment": lead, "share": share, "mean_shap": imp["signed"][lead],
                    "records": len(payload["lead_importance_records"]), **common}
                   for lead, share in sorted(imp["share"].items(), key=lambda kv: -kv[1]) if lead in read)
    return out


def _read_leads(p: Mapping[str, Any]) -> set[str]:
    return set(p["model_leads"]) | {substitute for _, substitute in p["lead_fallbacks"]}


def problems(p: Mapping[str, Any]) -> list[str]:
    """Invariants a stored payload must satisfy: additivity, every record at the recorded resolution, players
    among the leads the model reads, shares that sum to 1, the profile that fits the model's leads."""
    found = []
    read = _read_leads(p)
    n_segments = p["resolution"]["n_segments"]
    for rec in p["records"]:  # the values of a record sum to f(record) - f(masked record)
        if rec["additivity_error"] > 1e-4 * max(1.0, *map(abs, rec["output"])):
            found.append(f"{rec['key']}: additivity error {rec['additivity_error']}")
        if not set(rec["player_leads"]) <= read:
            found.append(f"{rec['key']}: players {rec['player_leads']} outside the leads the model reads")
        shape = np.shape(rec["values"])
        if shape != (len(rec["player_leads"]), n_segments, len(p["outputs"])):
            found.append(f"{rec['key']}: values of shape {shape}, not (players, {n_segments}, outputs)")
    if (p["profile"] == "time") != (len(p["model_leads"]) == 1):
        found.append(f"a {p['profile']} profile for a model that reads {len(p['model_leads'])} leads")
    summary = p["time_profile"] if p["profile"] == "time" else p["lead_importance"]
    for output, imp in summary.items():
        shares = imp["share"] if p["profile"] == "time" else list(imp["share"].values())
        total = sum(shares)
        if abs(total - 1) >= 1e-6 and total != 0:
            found.append(f"{output}: shares sum to {total}")
        if p["profile"] == "leads" and any(imp["share"][lead] != 0 for lead in imp["share"] if lead not in read):
            found.append(f"{output}: a lead the model does not read got attribution")
    return found
