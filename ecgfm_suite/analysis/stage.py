"""The analysis stage of a benchmark run: the analyses of this package on a run's models and tasks.

Per (model, task): embedding attribution, input attribution, projection, representation
statistics and (pooled tasks) transfer. Per task, after every model: CKA between models,
label efficiency (from the cells' results) and paired model comparison (from the cells'
saved test scores). Results are JSON under ``<run dir>/analysis/<kind>/<key>.json`` (keys:
``model-task``, ``task`` or a cell id), written atomically, so xdist workers never clash.

The analyses explain the cells' own linear probes, handed over in memory by the runner that ran
the cells (the benchmark's session); a cell run elsewhere (another process, a memory cap) is
refitted exactly as the cell fitted it (same rows, training subset and validation selection).
Everything the report needs is in the JSON; figures are drawn by ``ecgfm_suite.report``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_open, write_atomic
from ..errors import DataError, EcgfmError, RecordError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class AnalysisSkip(EcgfmError):
    """An analysis that does not apply here (e.g. transfer on a single-region task); the reason says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StageOptions:
    #: top dimensions compared across seeds and levels
    top_k: int = 20
    #: input attribution: fixed test records per class and in total, and the time budget per (model, task)
    input_records_per_class: int = 1
    input_max_records: int = 2
    input_budget_s: float = 0.5
    #: most test records in a map (a seeded sample above it)
    map_max_records: int = 3000
    separability_max_per_source: int = 500
    #: seed of record choices, UMAP, cross-validation folds and permutations
    seed: int = 0


# --------------------------------------------------------------------------- storage

def plain(obj: Any) -> Any:
    """JSON-ready copy: arrays → lists, numpy scalars → Python, NaN/inf → None (missing, not a number)."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class AnalysisStore:
    """``<run dir>/analysis/``: JSON per analysis and key, PNG figures beside them, test embeddings for CKA."""

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / "analysis"

    def path(self, kind: str, key: str, suffix: str = ".json") -> Path:
        if "/" in key or key.startswith("."):
            raise DataError(f"analysis key {key!r} must be a plain name", kind)
        return self.root / kind / f"{key}{suffix}"

    def write(self, kind: str, key: str, payload: Mapping[str, Any]) -> Path:
        target = self.path(kind, key)
        text = json.dumps(plain({"kind": kind, "key": key, **payload}), sort_keys=True, allow_nan=False)
        write_atomic(target, text)
        return target

    def read(self, kind: str, key: str) -> dict[str, Any] | None:
        target = self.path(kind, key)
        return json.loads(target.read_text()) if target.exists() else None

    def entries(self, kind: str) -> dict[str, dict[str, Any]]:
        folder = self.root / kind
        if not folder.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}

    def write_figure(self, kind: str, key: str, png: bytes, name: str = "") -> Path:
        target = self.path(kind, f"{key}.{name}" if name else key, ".png")
        write_atomic(target, png)
        return target

    def figures(self, kind: str, key: str) -> list[Path]:
        folder = self.root / kind
        return sorted(p for p in folder.glob(f"{key}*.png") if p.stem == key or p.stem.startswith(f"{key}."))

    def skip(self, kind: str, key: str, reason: str) -> None:
        """Record why an analysis was skipped (the report lists it)."""
        self.write("skipped", f"{kind}.{key}", {"analysis": kind, "what": key, "reason": reason})

    def write_embeddings(self, model: str, task: str, keys: np.ndarray, X: np.ndarray) -> Path:
        target = self.path("embeddings", f"{model}-{task}", ".npz")
        with atomic_open(target, "wb") as fh:
            np.savez(fh, keys=np.asarray(keys, dtype=str), X=np.asarray(X, dtype=np.float32))
        return target

    def task_embeddings(self, task: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Model → (keys, X) of the test embeddings the models of ``task`` stored."""
        out = {}
        for p in sorted((self.root / "embeddings").glob(f"*-{task}.npz")):
            model = p.stem[: -len(task) - 1]
            with np.load(p, allow_pickle=False) as data:
                out[model] = (data["keys"], data["X"])
        return out


# --------------------------------------------------------------------------- a (model, task) in memory

@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ModelTaskData:
    """A task's records, one model's embeddings of them, and how its cells split and subsample them."""

    model: str
    task: Any  # TaskData
    X: np.ndarray
    have: np.ndarray
    encoder: Any
    levels: tuple[str, ...]
    seeds: tuple[int, ...]
    n_boot: int
    cache_dir: Path
    #: record → reason, for the task's records that have no embedding (prepared-set exclusions)
    excluded: Mapping[str, str] = field(default_factory=dict)
    #: the cells' linear probes per scarcity level (``runner.SeedProbe``), shared by the analyses of this
    #: (model, task): handed over by the runner that ran the cells, else refitted on first use
    fitted: dict[str, list[Any]] = field(default_factory=dict, repr=False)

    @property
    def key(self) -> str:
        return f"{self.model}-{self.task.task.id}"

    @property
    def task_type(self) -> str:
        return self.task.task.type

    @property
    def y(self) -> np.ndarray:
        return np.asarray(self.task.y)

    @property
    def n_classes(self) -> int | None:
        return len(self.task.classes) if self.task_type in ("multiclass", "multilabel") else None

    def rows(self, split: str) -> np.ndarray:
        """Records of a split that have an embedding (what the cell used)."""
        return np.flatnonzero((np.asarray(self.task.split) == split) & self.have)

    def cell_id(self, level: str) -> str:
        return f"{self.model}-{self.task.task.id}-{level}"


def load_model_task(runner: Any, encoder: Any, model: str, task_id: str, levels: Sequence[str]) -> ModelTaskData:
    """Task data and embeddings through the runner (cached on disk); raises the runner's CellSkip."""
    from ..runner import CellSkip

    td = runner.task_data(task_id)
    X, have, _ = runner.task_embeddings(encoder, td)
    counts = {s: int(((np.asarray(td.split) == s) & have).sum()) for s in SPLITS}
    if min(counts.values()) == 0:
        raise CellSkip(f"task {task_id} has an empty split after exclusions: "
                       + ", ".join(f"{k}={v}" for k, v in counts.items()))
    excluded: dict[str, str] = {}
    missing = set(np.asarray(td.keys)[~have].tolist())
    if missing:
        for dataset in sorted(set(np.asarray(td.dataset).tolist())):
            _, _, manifest = runner.dataset_embeddings(encoder, dataset)
            excluded.update({e["record"]: e["reason"] for e in manifest.get("excluded", []) if e["record"] in missing})
        excluded.update({k: "no embedding (not in the prepared set)" for k in missing if k not in excluded})
    s = runner.settings
    fitted = {level: runs for level in levels if (runs := runner.take_probes(f"{model}-{task_id}-{level}"))}
    return ModelTaskData(model=model, task=td, X=X, have=have, encoder=encoder, levels=tuple(levels),
                         seeds=tuple(s.seeds), n_boot=s.n_boot, cache_dir=s.local_cache_dir, excluded=excluded,
                         fitted=fitted)


def task_summary(td: Any) -> dict[str, Any]:
    """What the report lists per task: classes, split counts, dropped classes and excluded records with reasons."""
    return {
        "task": td.task.id, "name": td.task.name, "type": td.task.type, "main_metric": td.task.main_metric,
        "classes": list(td.classes), "counts": td.counts, "dropped_classes": dict(td.dropped_classes),
        "excluded": dict(td.excluded), "skipped_datasets": dict(td.skipped_datasets),
        "dataset_versions": dict(td.dataset_versions), "version": td.version,
        "regions": sorted(set(np.asarray(td.region).astype(str).tolist())),
    }


def probe_runs(data: ModelTaskData, level: str) -> list[Any]:
    """The cell's linear probes, one ``SeedProbe`` per seed: those the cell fitted when this process ran it,
    else refitted exactly as ``runner.run_cell`` fits them (once per level: the analyses share them)."""
    if level not in data.fitted:
        data.fitted[level] = _refit(data, level)
    return data.fitted[level]


def _refit(data: ModelTaskData, level: str) -> list[Any]:
    from ..data.scarcity import subset
    from ..probes import fit_probe
    from ..runner import SeedProbe

    train, val = data.rows("train"), data.rows("val")
    y = data.y
    groups = np.asarray(data.task.groups)[train] if data.task.groups is not None else None
    runs = []
    for seed in data.seeds:
        sub = train[subset(y[train], level, seed, data.task_type, groups=groups)]
        probe = fit_probe("linear", data.task_type, data.X[sub], y[sub], data.X[val], y[val], seed=seed,
                          n_classes=data.n_classes)
        runs.append(SeedProbe(seed, sub, probe))
    return runs


def headline_level(levels: Sequence[str]) -> str:
    """The level with the most training data: frac100 when planned, else the largest frac (then shot) level."""
    from ..data.scarcity import parse_level

    return max(levels, key=lambda lv: (parse_level(lv).kind == "frac", parse_level(lv).amount))


def _margin_outputs(data: ModelTaskData, probe: Any) -> list[str]:
    """Names of the rows of the probe's ``coef_`` (what linear SHAP explains)."""
    model = probe.estimator.named_steps["probe"]
    classes = data.task.classes
    if data.task_type == "regression":
        return [data.task.task.id]
    if data.task_type == "multilabel":
        return [classes[i] for i in probe.fitted_labels]
    present = [classes[int(c)] for c in model.classes_]
    return present[1:] if np.atleast_2d(model.coef_).shape[0] == 1 else present


def _score_outputs(data: ModelTaskData) -> list[str]:
    """Names of the columns of ``predict_scores`` (what input SHAP explains)."""
    if data.task_type == "regression":
        return [data.task.task.id]
    if data.task_type == "binary":
        return [data.task.classes[1]]
    return list(data.task.classes)


# --------------------------------------------------------------------------- per (model, task)

def dimension_attribution(data: ModelTaskData, options: StageOptions) -> dict[str, Any]:
    """Linear SHAP over embedding dimensions at every scarcity level and seed (see ``dimension_attribution``)."""
    from . import dimension_attribution as da

    test, val = data.rows("test"), data.rows("val")
    cells, val_mass, outputs_by_level = {}, {}, {}
    for level in data.levels:
        runs = [r for r in probe_runs(data, level) if _is_linear(r.probe)]
        if not runs:
            cells[data.cell_id(level)] = {"level": level, "reason": "probe is constant (one class in training)"}
            continue
        per_seed = []
        for run in runs:
            names = _margin_outputs(data, run.probe)
            background = data.X[run.train_rows]
            explain = [da.linear_shap(run.probe.estimator, background, data.X[rows], cache_dir=data.cache_dir)
                       for rows in (test, val)]
            per_seed.append((names, *explain))
        common = [n for n in per_seed[0][0] if all(n in names for names, _, _ in per_seed)]
        pick = [[names.index(n) for n in common] for names, _, _ in per_seed]
        summary = da.summarise_level([t[:, :, p] for (_, t, _), p in zip(per_seed, pick)],
                                     [v[:, :, p] for (_, _, v), p in zip(per_seed, pick)], common, k=options.top_k)
        val_mass[level] = summary.pop("val_mass")
        outputs_by_level[level] = common
        cells[data.cell_id(level)] = {"level": level, "seeds": [r.seed for r in runs], "n_test": int(len(test)),
                                      "n_val": int(len(val)), "reason": None, **summary}
    shared = [n for n in (next(iter(outputs_by_level.values()), [])) if all(n in o for o in outputs_by_level.values())]
    aligned = {lv: m[:, [outputs_by_level[lv].index(n) for n in shared]] for lv, m in val_mass.items()}
    return {
        "model": data.model, "task": data.task.task.id, "embed_dim": int(data.X.shape[1]), "top_k": options.top_k,
        "explains": "linear margin of the probe (log-odds; prediction for ridge) on standardised embeddings",
        "background": "the cell's training subset", "top_dims_from": "validation split",
        "cells": cells, "level_stability": da.level_stability(aligned, shared, k=options.top_k) if aligned else {},
    }


def _is_linear(probe: Any) -> bool:
    return probe.estimator is not None and hasattr(probe.estimator.named_steps.get("probe"), "coef_")


def choose_records(td: Any, options: StageOptions) -> list[int]:
    """A fixed, model-independent set of test records: up to ``input_records_per_class`` per label group
    (positives first), ``input_max_records`` in all, chosen by a seeded draw over the sorted keys."""
    from .projection import label_groups

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
    names = list(max((rec.leads for rec, _ in attributions), key=len))
    return names, [(rec, att) for rec, att in attributions if list(rec.leads) == names]


def input_attribution(data: ModelTaskData, options: StageOptions) -> tuple[dict[str, Any], list[ExplainedRecord]]:
    """SHAP of model + probe over lead × segment groups for a few fixed test records (see ``input_attribution``)."""
    from ..data.preprocess import lead_sources
    from ..data.reader import read_signal
    from ..embeddings.encode import embed_array
    from . import input_attribution as ia

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
    outputs = _score_outputs(data)
    spec = data.encoder.input_spec

    def read_leads(rec: ExplainedRecord) -> list[int]:
        """The record's leads the model reads (its own, or their fallback substitutes): the players."""
        return sorted({i for i in lead_sources(rec.leads, spec.leads, spec.lead_fallbacks) if i is not None})

    def predictor(rec: ExplainedRecord) -> Callable[[np.ndarray], np.ndarray]:
        def predict(batch: np.ndarray) -> np.ndarray:
            scores = run.probe.predict_scores(embed_array(data.encoder, batch, rec.fs, rec.leads))
            return np.asarray(scores, dtype=np.float64).reshape(len(batch), -1)
        return predict

    first = records[0][1]
    most_players = max(len(read_leads(rec)) for _, rec in records)
    t0 = time.perf_counter()
    predictor(first)(np.repeat(first.data[None], 4, axis=0))
    per_eval = (time.perf_counter() - t0) / 4
    resolution = ia.plan_resolution(max(most_players, 1), len(records), per_eval, options.input_budget_s)
    explained, attributions = [], []
    for i, rec in records:
        leads_here = read_leads(rec)
        if not leads_here:
            unreadable[rec.key] = f"none of the model's leads ({', '.join(spec.leads)}) in the record"
            continue
        att = ia.explain_record(predictor(rec), rec.data, leads_here, resolution, seed=options.seed,
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
    return {
        "model": data.model, "task": td.task.id, "level": level, "seed": run.seed, "outputs": outputs,
        "explains": "probe scores (probability; prediction for regression) of model + probe",
        "masking": "lead median over the segment", "model_leads": list(spec.leads),
        "lead_fallbacks": [list(pair) for pair in spec.lead_fallbacks],
        "resolution": {"n_segments": resolution.n_segments, "permutations": resolution.permutations,
                       "evals_per_record": resolution.evals_per_record, "seconds_per_eval": per_eval},
        "records": explained, "unexplained": unreadable,
        "lead_importance": ia.lead_importance([att for _, att in same_layout], lead_names, outputs),
        "lead_importance_records": [rec.key for rec, _ in same_layout],
    }, [rec for rec, _ in attributions]


def _label_text(td: Any, i: int) -> str:
    y = np.asarray(td.y)[i]
    if td.task.type == "regression":
        return f"{float(y):.3g}"
    if td.task.type == "multilabel":
        return ", ".join(c for c, v in zip(td.classes, y) if v) or "none"
    return str(td.classes[int(y)])


def projection(data: ModelTaskData, options: StageOptions) -> dict[str, Any]:
    """2-D UMAP of the test embeddings and its structure scores (see ``projection``)."""
    from sklearn.preprocessing import StandardScaler

    from . import projection as pj

    train, test = data.rows("train"), data.rows("test")
    if len(test) > options.map_max_records:
        rng = np.random.default_rng(options.seed)
        test = np.sort(rng.choice(test, options.map_max_records, replace=False))
    if len(test) < pj.MIN_RECORDS:
        raise AnalysisSkip(f"{len(test)} test records are too few for a map (need {pj.MIN_RECORDS})")
    scaler = StandardScaler().fit(data.X[train])
    X_test = scaler.transform(data.X[test])
    Y = pj.umap_2d(X_test, seed=options.seed, cache_dir=data.cache_dir)
    groups, group_names = pj.label_groups(data.task_type, data.y[test], data.task.classes)
    source_name, source = _source_column(data.task)
    separability = None
    if source is not None:
        every = np.flatnonzero(data.have)
        separability = {"by": source_name, **pj.source_separability(
            data.X[every], source[every], seed=options.seed, max_per_source=options.separability_max_per_source)}
    return {
        "model": data.model, "task": data.task.task.id,
        "params": {"n_neighbors": pj.N_NEIGHBORS, "min_dist": pj.MIN_DIST, "n_epochs": pj.N_EPOCHS,
                   "metric": "euclidean", "seed": options.seed, "fixed": True,
                   "fit_on": "test embeddings, standardised with training-split statistics"},
        "scores": pj.structure_scores(X_test, Y, groups, seed=options.seed),
        "separability": separability,
        "coords": np.round(Y, 4), "groups": groups, "group_names": group_names,
        "source_by": source_name, "source": None if source is None else source[test],
    }


def _source_column(td: Any) -> tuple[str | None, np.ndarray | None]:
    """Dataset for pooled tasks, region for a multi-source dataset, nothing for a single source."""
    for name in ("dataset", "region"):
        values = np.asarray(getattr(td, name)).astype(str)
        if len(np.unique(values)) > 1:
            return name, values
    return None, None


def representation(data: ModelTaskData, options: StageOptions) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """RankMe of the model's embeddings of the task's records; extra: the test (keys, embeddings) for CKA."""
    from . import representation as rp

    every, test = np.flatnonzero(data.have), data.rows("test")
    return {
        "model": data.model, "task": data.task.task.id, "embed_dim": int(data.X.shape[1]),
        "rankme": rp.rankme(data.X[every]), "rankme_test": rp.rankme(data.X[test]), "n_records": int(len(every)),
        "n_test": int(len(test)), "records_without_embedding": int((~data.have).sum()),
        "excluded": dict(sorted(data.excluded.items())),
    }, (np.asarray(data.task.keys)[test], data.X[test])


def is_pooled(task_spec: Any) -> bool:
    """Harmonised cross-continental tasks pool several datasets (rhythm, sex, age)."""
    return len(task_spec.datasets) > 1


def transfer(data: ModelTaskData, options: StageOptions) -> dict[str, Any]:
    """Train on one region, test on every region (see ``transfer``); pooled tasks only."""
    from . import transfer as tr

    if not is_pooled(data.task.task):
        raise AnalysisSkip(f"task {data.task.task.id} is not a pooled cross-continental task")
    every = np.flatnonzero(data.have)
    result = tr.transfer_matrix(data.task_type, data.X[every], data.y[every], np.asarray(data.task.split)[every],
                                np.asarray(data.task.region)[every], metric=data.task.task.main_metric,
                                n_classes=data.n_classes, seed=data.seeds[0], n_boot=data.n_boot)
    if not result["cells"]:
        raise AnalysisSkip(f"no region has enough records to train on ({result['left_out']})")
    return {"model": data.model, "task": data.task.task.id, **result, "mean_drop": tr.mean_drop(result)}


# --------------------------------------------------------------------------- per task

def cka(store: AnalysisStore, task_id: str) -> dict[str, Any]:
    """Linear CKA between every two models on the test records all of them embedded."""
    from .representation import cka_matrix

    stored = store.task_embeddings(task_id)
    if len(stored) < 2:
        raise AnalysisSkip(f"CKA needs test embeddings of two models for {task_id}, found {sorted(stored)}")
    common = set.intersection(*(set(keys.tolist()) for keys, _ in stored.values()))
    order = sorted(common)
    if len(order) < 2:
        raise AnalysisSkip(f"the models of {task_id} share {len(order)} embedded test records")
    aligned = {}
    for model, (keys, X) in stored.items():
        position = {k: i for i, k in enumerate(keys.tolist())}
        aligned[model] = X[[position[k] for k in order]]
    names, matrix = cka_matrix(aligned)
    return {"task": task_id, "models": names, "cka": matrix, "n_records": len(order)}


def label_efficiency(results: Sequence[Any], task_id: str) -> dict[str, Any]:
    """Every model's curve over its cells' results for the task, with the random_cnn control's full-data reference."""
    from ..data.scarcity import parse_level
    from ..metrics import METRICS
    from .label_efficiency import CONTROL, CurvePoint, efficiency

    finished = [r for r in results if r.task == task_id and r.main.is_finite()]
    control = [r for r in finished if r.model == CONTROL and r.scarcity == "frac100"]
    reference = control[0].main.value if control else None
    curves, too_short = {}, {}
    for model in sorted({r.model for r in finished}):
        mine = sorted((r for r in finished if r.model == model), key=lambda r: parse_level(r.scarcity).id)
        if len(mine) < 2:
            too_short[model] = f"{len(mine)} finished cell(s); a curve needs 2 scarcity levels"
            continue
        full = [r for r in mine if r.scarcity == "frac100"]
        points = [CurvePoint(level=r.scarcity, n_train=r.n_train, value=r.main.value, ci_low=r.main.ci_low,
                             ci_high=r.main.ci_high) for r in mine]
        curves[model] = {
            "metric": mine[0].main_metric, "n_full_from": "frac100 cell" if full else "largest cell",
            **efficiency(points, n_full=full[0].n_train if full else max(r.n_train for r in mine),
                         higher_is_better=METRICS.get(mine[0].main_metric).higher_is_better, reference=reference),
        }
    if not curves:
        raise AnalysisSkip(f"no model has two finished scarcity levels on {task_id} ({too_short or 'no cells'})")
    return {"task": task_id, "reference_model": CONTROL if control else None, "reference": reference,
            "models": curves, "left_out": too_short}


def comparison(run_dir: Any, results: Sequence[Any], task_id: str, level: str, *, n_boot: int,
               seed: int) -> dict[str, Any]:
    """Paired comparisons of every two models in the (task, level) column (see ``comparison``)."""
    from .comparison import align, compare

    column = {r.model: r for r in results if r.task == task_id and r.scarcity == level and r.main.is_finite()}
    scored = {}
    for model, r in sorted(column.items()):
        try:
            scored[model] = run_dir.load_scores(r.cell_id)
        except FileNotFoundError:
            log.info("no saved scores for %s", r.cell_id)
    if len(scored) < 2:
        raise AnalysisSkip(f"{task_id}/{level}: {len(scored)} model(s) with saved test scores; comparison needs 2")
    first = column[next(iter(scored))]
    _, y, scores = align(scored)
    out = compare(first.main_metric, first.task_type, y, scores, {m: column[m].main.value for m in scored},
                  n_boot=n_boot, seed=seed)
    return {"task": task_id, "scarcity": level, "cells": {m: column[m].cell_id for m in scored}, **out}


def timed(func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``func(*args, **kwargs)`` with one BLAS/OpenMP thread, and its wall time in seconds.

    One thread: the analyses are small (hundreds to thousands of records) and run beside xdist
    workers on few cores, where threaded BLAS mostly contends (measured on 2 shared cores: a
    5-fold source classifier over 689 records took 18 s threaded, 0.3 s single-threaded).
    """
    from .._threads import one_thread

    with one_thread():
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        return out, time.perf_counter() - t0


def analyse(name: str, data: ModelTaskData, store: AnalysisStore, options: StageOptions) -> tuple[dict[str, Any], Any]:
    """Run one per-(model, task) analysis, store its JSON (with ``seconds``) under ``data.key``.

    Returns (payload, extra); extra is the explained records of ``input_attribution`` (the figures
    draw their traces) or the test embeddings of ``representation`` (stored for CKA), else None.
    An AnalysisSkip is recorded in the store and re-raised.
    """
    if name not in PER_MODEL_TASK:
        raise DataError(f"unknown analysis {name!r} (one of {', '.join(PER_MODEL_TASK)})", "analysis")
    try:
        result, seconds = timed(PER_MODEL_TASK[name], data, options)
    except AnalysisSkip as skip:
        store.skip(name, data.key, skip.reason)
        raise
    payload, extra = result if isinstance(result, tuple) else (result, None)
    if name == "representation":
        store.write_embeddings(data.model, data.task.task.id, *extra)
    payload = {**payload, "seconds": seconds}
    store.write(name, data.key, payload)
    return payload, extra


#: per-(model, task) analyses, in the order the benchmark runs them
PER_MODEL_TASK: dict[str, Callable[[ModelTaskData, StageOptions], Any]] = {
    "dimension_attribution": dimension_attribution, "input_attribution": input_attribution,
    "projection": projection, "representation": representation, "transfer": transfer,
}


def analyse_task(name: str, task_id: str, level: str | None, *, run_dir: Any, store: AnalysisStore,
                 options: StageOptions, n_boot: int) -> dict[str, Any]:
    """Run one per-task analysis (``cka``, ``label_efficiency``, or ``comparison`` of a level) and store it."""
    key = task_id if level is None else f"{task_id}-{level}"
    try:
        if name == "cka":
            payload, seconds = timed(cka, store, task_id)
        elif name == "label_efficiency":
            payload, seconds = timed(label_efficiency, run_dir.results(), task_id)
        elif name == "comparison" and level is not None:
            payload, seconds = timed(comparison, run_dir, run_dir.results(), task_id, level, n_boot=n_boot,
                                     seed=options.seed)
        else:
            raise DataError(f"unknown per-task analysis {name!r} (level {level!r})", "analysis")
    except AnalysisSkip as skip:
        store.skip(name, key, skip.reason)
        raise
    payload = {**payload, "seconds": seconds}
    store.write(name, key, payload)
    return payload


#: ``draw(kind, payload, extra) -> {figure name: PNG bytes}`` (``ecgfm_suite.report.figures.figures_for``)
Draw = Callable[[str, Mapping[str, Any], Any], Mapping[str, bytes]]


def pair_analyses(task_id: str) -> list[str]:
    """The per-(model, task) analyses that apply to a task (transfer only to pooled tasks), in run order."""
    from ..data.tasks import TASKS

    return [name for name in PER_MODEL_TASK if name != "transfer" or is_pooled(TASKS.get(task_id))]


@dataclass(frozen=True, slots=True)
class PairJob:
    """Every per-(model, task) analysis of one pair, self-contained for a worker process: the pair's data
    without its encoder (the worker loads it when input attribution needs it)."""

    data: ModelTaskData
    settings: Any  # Settings
    run_path: Path
    options: StageOptions
    draw: Draw | None


def run_pair(job: PairJob) -> dict[str, dict[str, Any] | Exception]:
    """Run (and store, with figures) every analysis of a pair: name → payload, or the error it raised (an
    AnalysisSkip, or a failure that fails that analysis alone, as when it runs in the session's process)."""
    import dataclasses

    from .._threads import one_thread

    data = job.data
    store = AnalysisStore(job.run_path)
    out: dict[str, dict[str, Any] | Exception] = {}
    for name in pair_analyses(data.task.task.id):
        try:
            if name == "input_attribution" and data.encoder is None:
                data = dataclasses.replace(data, encoder=_worker_encoder(job.settings, data.model))
            payload, extra = analyse(name, data, store, job.options)
            with one_thread():
                draw_figures(job.draw, store, name, data.key, payload, extra)
        except Exception as exc:  # noqa: BLE001 - handed to the session, which raises it for this analysis
            out[name] = exc
            continue
        out[name] = payload
    return out


#: a worker's encoder (settings, model id, encoder): consecutive jobs of one model load it once
_WORKER_ENCODER: tuple[Any, str, Any] | None = None


def _worker_encoder(settings: Any, model: str) -> Any:
    global _WORKER_ENCODER
    if _WORKER_ENCODER is None or _WORKER_ENCODER[:2] != (settings, model):
        from ..runner import Runner

        _WORKER_ENCODER = None  # drop the previous model before loading the next
        _WORKER_ENCODER = (settings, model, Runner(settings).load_encoder(model))
    return _WORKER_ENCODER[2]


def model_task_pairs(plan: Sequence[Any]) -> list[tuple[str, str]]:
    """(model, task) pairs of a plan, in plan order (grouped by model, so one encoder is loaded at a time)."""
    return list(dict.fromkeys((c.model, c.task) for c in plan))


def plan_columns(plan: Sequence[Any]) -> list[tuple[str, str]]:
    """(task, level) columns of a plan."""
    return list(dict.fromkeys((c.task, c.scarcity) for c in plan))


def plan_tasks(plan: Sequence[Any]) -> list[str]:
    return list(dict.fromkeys(c.task for c in plan))


class StageSession:
    """A benchmark session's analysis stage: plans from the runner, one encoder at a time, one store.

    Works without pytest; the ``analysis`` tests and the analysis benchmark drive it. Cells and
    analyses of the same (model, task) must agree on what is skipped: a CellSkip from the runner
    (no data, no weights, an empty split) is recorded in the store and re-raised. Nothing is
    written before the first analysis runs (the plan goes to ``analysis/plan/cells.json`` then).
    """

    def __init__(self, runner: Any, run_dir: Any, *, options: StageOptions | None = None,
                 draw: Draw | None = None) -> None:
        self.runner = runner
        self.run_dir = run_dir
        self.store = AnalysisStore(run_dir.path)
        self.options = options or StageOptions()
        self.draw = draw
        self._plan: list[Any] | None = None
        self._plan_written = False
        self._encoder: tuple[str, Any] | None = None
        self._data: ModelTaskData | None = None
        self._tasks_written: set[str] = set()
        #: (model, task) → its analyses running in worker processes (or the CellSkip that stops them)
        self._pairs: dict[tuple[str, str], Any] = {}
        #: (analysis, task, level) → a per-task analysis running in a worker process
        self._task_jobs: dict[tuple[str, str, str | None], Any] = {}

    @property
    def plan(self) -> list[Any]:
        if self._plan is None:
            self._plan = self.runner.plan()
        return self._plan

    def model_tasks(self) -> list[tuple[str, str]]:
        return model_task_pairs(self.plan)

    def columns(self) -> list[tuple[str, str]]:
        return plan_columns(self.plan)

    def tasks(self) -> list[str]:
        return plan_tasks(self.plan)

    def levels(self, model: str, task: str) -> tuple[str, ...]:
        return tuple(c.scarcity for c in self.plan if c.model == model and c.task == task)

    def _record_plan(self) -> None:
        """The planned cell ids (the report lists the planned cells that left no result)."""
        if not self._plan_written:
            self.store.write("plan", "cells", {"cells": [c.id for c in self.plan]})
            self._plan_written = True

    def encoder(self, model: str) -> Any:
        if self._encoder is None or self._encoder[0] != model:
            import gc

            if self._encoder is not None:
                self.runner.release_model(self._encoder[0])
                self._encoder, self._data = None, None
                gc.collect()
            self._encoder = (model, self.runner.load_encoder(model))
        return self._encoder[1]

    def data(self, model: str, task: str) -> ModelTaskData:
        """The (model, task)'s task data and embeddings (kept for the next analysis of the same pair)."""
        from ..runner import CellSkip

        if self._data is not None and (self._data.model, self._data.task.task.id) == (model, task):
            return self._data
        self._record_plan()
        try:
            td = self.runner.task_data(task)
            if task not in self._tasks_written:
                self.store.write("tasks", task, task_summary(td))
                self._tasks_written.add(task)
            encoder = self.encoder(model)
            self._data = load_model_task(self.runner, encoder, model, task, self.levels(model, task))
        except CellSkip as skip:
            self.store.skip("cells", f"{model}-{task}", str(skip))
            raise
        return self._data

    def run_model_task(self, name: str, model: str, task: str) -> dict[str, Any]:
        """One analysis of a pair. With several cores (and not on an xdist worker) the first call hands every
        pair of the plan to worker processes and later calls wait for theirs; else it runs here."""
        if self.runner.pool_workers() > 1 and name in pair_analyses(task):
            result = self._pair_results(model, task)[name]
            if isinstance(result, Exception):
                raise result
            return result
        data = self.data(model, task)
        payload, extra = analyse(name, data, self.store, self.options)
        self._draw(name, data.key, payload, extra)
        return payload

    def _pair_results(self, model: str, task: str) -> dict[str, Any]:
        from ..runner import CellSkip

        if (model, task) not in self._pairs:
            self._submit_pairs()
        pending = self._pairs[(model, task)]
        if isinstance(pending, CellSkip):
            raise pending
        return pending.result()

    def _submit_pairs(self) -> None:
        """Load each pair's data here (task data, cached embeddings, the cells' probes) and queue its
        analyses on the worker pool, model by model."""
        import dataclasses

        from ..runner import CellSkip

        pool = self._worker_pool()
        for pair in self.model_tasks():
            if pair in self._pairs:
                continue
            try:
                data = self.data(*pair)
            except CellSkip as skip:
                self._pairs[pair] = skip
                continue
            job = PairJob(dataclasses.replace(data, encoder=None), self.runner.settings, self.run_dir.path,
                          self.options, self.draw)
            self._pairs[pair] = pool.submit(run_pair, job)

    def run_task(self, name: str, task: str, level: str | None = None) -> dict[str, Any]:
        """One per-task analysis; with several cores the first call hands every per-task analysis of the plan
        to worker processes (once the pairs' analyses, whose stored embeddings CKA reads, are done)."""
        self._record_plan()
        if self.runner.pool_workers() <= 1:
            return run_task_job(self.run_dir.path, name, task, level, self.options, self.runner.settings.n_boot,
                                self.draw)
        if (name, task, level) not in self._task_jobs:
            for pending in self._pairs.values():
                if not isinstance(pending, Exception):
                    pending.exception()  # wait; a failure was reported by its own analysis
            pool = self._worker_pool()
            targets = [(n, t, None) for t in self.tasks() for n in ("cka", "label_efficiency")]
            targets += [("comparison", t, lv) for t, lv in self.columns()]
            for target in [*targets, (name, task, level)]:
                if target not in self._task_jobs:
                    self._task_jobs[target] = pool.submit(run_task_job, self.run_dir.path, *target, self.options,
                                                          self.runner.settings.n_boot, self.draw)
        return self._task_jobs[(name, task, level)].result()

    def _worker_pool(self) -> Any:
        """The pool the cells' seeds use too (the session's process is the remaining worker)."""
        from .._pool import worker_pool

        return worker_pool(self.runner.pool_workers() - 1)

    def _draw(self, kind: str, key: str, payload: Mapping[str, Any], extra: Any) -> None:
        draw_figures(self.draw, self.store, kind, key, payload, extra)


def run_task_job(run_path: Path, name: str, task: str, level: str | None, options: StageOptions, n_boot: int,
                 draw: Draw | None) -> dict[str, Any]:
    """A per-task analysis of the run at ``run_path``, stored with its figures (in any process)."""
    from .._threads import one_thread
    from ..results import RunDir

    run_dir = RunDir.open(run_path)
    store = AnalysisStore(run_path)
    payload = analyse_task(name, task, level, run_dir=run_dir, store=store, options=options, n_boot=n_boot)
    with one_thread():
        draw_figures(draw, store, name, task if level is None else f"{task}-{level}", payload)
    return payload


def draw_figures(draw: Draw | None, store: AnalysisStore, kind: str, key: str, payload: Mapping[str, Any],
                 extra: Any = None) -> None:
    """Store the figures ``draw`` makes of a payload beside its JSON (nothing without a ``draw``)."""
    if draw is not None:
        for name, png in draw(kind, payload, extra).items():
            store.write_figure(kind, key, png, name)


def run_task_analyses(run_dir: Any, *, n_boot: int, options: StageOptions | None = None,
                      draw: Draw | None = None) -> dict[str, str]:
    """Every per-task analysis over the tasks and (task, level) columns that have results in ``run_dir``.

    For the controller at session end under pytest-xdist, where a worker cannot know that the other
    workers' cells are done. Needs no runner: it reads results, saved scores and stored test
    embeddings. Returns ``"<analysis> <key>" → skip reason`` for what could not run.
    """
    options = options or StageOptions()
    store = AnalysisStore(run_dir.path)
    results = run_dir.results()
    tasks = list(dict.fromkeys(r.task for r in results))
    columns = list(dict.fromkeys((r.task, r.scarcity) for r in results))
    targets = [(name, t, None) for t in tasks for name in ("cka", "label_efficiency")]
    targets += [("comparison", t, level) for t, level in columns]
    skipped = {}
    for name, task, level in targets:
        key = task if level is None else f"{task}-{level}"
        try:
            payload = analyse_task(name, task, level, run_dir=run_dir, store=store, options=options, n_boot=n_boot)
        except AnalysisSkip as skip:
            skipped[f"{name} {key}"] = skip.reason
            continue
        draw_figures(draw, store, name, key, payload)
    return skipped
