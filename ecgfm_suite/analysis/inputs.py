"""What the analyses read: a (model, task)'s records, embeddings and the cells' probes, and a per-task view.

``ModelTaskData`` is assembled once per (model, task) from the runner that ran its cells (task data, cached
embeddings, the cells' own linear probes handed over in memory); a cell run elsewhere is refitted exactly
as the cell fitted it (same rows, training subset and validation selection). ``TaskInputs`` is what a
per-task analysis reads from a run directory: results, saved test scores and stored test embeddings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import numpy as np

from ..errors import CellSkip
from .store import AnalysisStore

if TYPE_CHECKING:  # type-only: reading the registry imports no task builder, model or probe
    from ..data.tasks.build import TaskData
    from ..data.tasks.spec import TaskSpec
    from ..models.protocol import Encoder
    from ..probes.base import FittedProbe, SeedProbe
    from ..results.cell import CellResult
    from ..results.run import RunDir

SPLITS = ("train", "val", "test")

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisOptions:
    """What the analyses of a run hold fixed (record choices, budgets, seeds): part of every stored payload's
    meaning."""

    #: top dimensions compared across seeds and levels
    top_k: int = 20
    #: input attribution's resolution, fixed (never fitted to the clock) and recorded in its payloads: test records
    #: explained per class and in total, time segments per lead of a multi-lead model and over the record of a
    #: single-lead model (its time profile), and shap permutations (each a forward and a backward pass)
    input_records_per_class: int = 1
    input_max_records: int = 2
    input_segments_per_lead: int = 1
    input_time_segments: int = 6
    input_permutations: int = 1
    #: most test records in a map (a seeded sample above it)
    map_max_records: int = 3000
    separability_max_per_source: int = 500
    #: seed of record choices, UMAP, cross-validation folds and permutations
    seed: int = 0
    #: robustness: the perturbations (``data.perturb.PERTURBATIONS`` names; None: its default set), the most
    #: test records perturbed per (model, task) (a seeded stratified sample above it), and the embedding cache
    #: mode their embeddings are cached under (``--ecgfm-cache``)
    robustness: tuple[str, ...] | None = None
    robustness_max_records: int = 30
    embedding_cache: str = "use"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ModelTaskData:
    """A task's records, one model's embeddings of them, and how its cells split and subsample them."""

    model: str
    task: TaskData
    X: np.ndarray
    have: np.ndarray
    #: None in a worker process until an analysis that needs the model loads it
    encoder: Encoder | None
    levels: tuple[str, ...]
    seeds: tuple[int, ...]
    n_boot: int
    cache_dir: Path
    #: record → reason, for the task's records that have no embedding (prepared-set exclusions)
    excluded: Mapping[str, str] = field(default_factory=dict)
    #: the cells' linear probes per scarcity level (``probes.SeedProbe``), shared by the analyses of this
    #: (model, task): handed over by the runner that ran the cells, else refitted on first use
    fitted: dict[str, list[SeedProbe]] = field(default_factory=dict, repr=False)

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


class RunOptions(Protocol):
    """What ``load_model_task`` reads of a run's settings (``engine.Settings``)."""

    @property
    def seeds(self) -> tuple[int, ...]: ...
    @property
    def n_boot(self) -> int: ...
    @property
    def local_cache_dir(self) -> Path: ...


class EmbeddingSource(Protocol):
    """What ``load_model_task`` reads through the engine's ``Runner``: task data, cached embeddings and the
    cells' probes."""

    @property
    def settings(self) -> RunOptions: ...
    def task_data(self, task_id: str) -> TaskData: ...
    def task_embeddings(self, encoder: Encoder, td: TaskData) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]: ...
    def dataset_embeddings(self, encoder: Encoder,
                           dataset_id: str) -> tuple[dict[str, int], np.ndarray, dict[str, Any], bool]: ...
    def take_probes(self, cell_id: str) -> list[SeedProbe] | None: ...


def load_model_task(runner: EmbeddingSource, encoder: Encoder, model: str, task_id: str,
                    levels: Sequence[str]) -> ModelTaskData:
    """Task data and embeddings through the runner (cached on disk); raises the runner's CellSkip."""

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
            _, _, manifest, _ = runner.dataset_embeddings(encoder, dataset)
            excluded.update({e["record"]: e["reason"] for e in manifest.get("excluded", []) if e["record"] in missing})
        excluded.update({k: "no embedding (not in the prepared set)" for k in missing if k not in excluded})
    s = runner.settings
    fitted = {level: runs for level in levels if (runs := runner.take_probes(f"{model}-{task_id}-{level}"))}
    return ModelTaskData(model=model, task=td, X=X, have=have, encoder=encoder, levels=tuple(levels),
                         seeds=tuple(s.seeds), n_boot=s.n_boot, cache_dir=s.local_cache_dir, excluded=excluded,
                         fitted=fitted)


def task_summary(td: TaskData) -> dict[str, Any]:
    """What the report lists per task: classes, split counts, dropped classes and excluded records with reasons."""
    return {
        "task": td.task.id, "name": td.task.name, "type": td.task.type, "main_metric": td.task.main_metric,
        "classes": list(td.classes), "counts": td.counts, "dropped_classes": dict(td.dropped_classes),
        "excluded": dict(td.excluded), "skipped_datasets": dict(td.skipped_datasets),
        "dataset_versions": dict(td.dataset_versions), "version": td.version,
        "regions": sorted(set(np.asarray(td.region).astype(str).tolist())),
    }


def probe_runs(data: ModelTaskData, level: str) -> list[SeedProbe]:
    """The cell's linear probes, one ``SeedProbe`` per seed: those the cell fitted when this process ran it,
    else refitted exactly as ``runner.run_cell`` fits them (once per level: the analyses share them)."""
    if level not in data.fitted:
        data.fitted[level] = refit(data, level)
    return data.fitted[level]


def refit(data: ModelTaskData, level: str) -> list[SeedProbe]:
    from ..data.scarcity import subset
    from ..probes import SeedProbe, fit_probe

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


def margin_outputs(data: ModelTaskData, probe: FittedProbe) -> list[str]:
    """Names of the rows of the probe's ``coef_`` (what linear SHAP explains)."""
    model = probe.estimator.named_steps["probe"]
    classes = data.task.classes
    if data.task_type == "regression":
        return [data.task.task.id]
    if data.task_type == "multilabel":
        return [classes[i] for i in probe.fitted_labels]
    present = [classes[int(c)] for c in model.classes_]
    return present[1:] if np.atleast_2d(model.coef_).shape[0] == 1 else present


def score_outputs(data: ModelTaskData) -> list[str]:
    """Names of the columns of ``predict_scores`` (what input SHAP explains)."""
    if data.task_type == "regression":
        return [data.task.task.id]
    if data.task_type == "binary":
        return [data.task.classes[1]]
    return list(data.task.classes)


def is_linear(probe: FittedProbe) -> bool:
    return probe.estimator is not None and hasattr(probe.estimator.named_steps.get("probe"), "coef_")


def is_pooled(task_spec: TaskSpec) -> bool:
    """Harmonised cross-continental tasks pool several datasets (rhythm, sex, age)."""
    return len(task_spec.datasets) > 1


def source_column(td: TaskData) -> tuple[str | None, np.ndarray | None]:
    """Dataset for pooled tasks, region for a multi-source dataset, nothing for a single source."""
    for name in ("dataset", "region"):
        values = np.asarray(getattr(td, name)).astype(str)
        if len(np.unique(values)) > 1:
            return name, values
    return None, None


def timed(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
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


@dataclass(frozen=True, slots=True)
class Output:
    """An analysis's result: the JSON payload, and what else the stage keeps of it."""

    payload: Mapping[str, Any]
    #: what the figures draw besides the payload (the explained records' traces)
    figure_input: Any = None
    #: the test (keys, embeddings) stored for analyses across models (CKA)
    test_embeddings: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInputs:
    """What a per-task analysis reads: the run directory (results, saved scores), its analysis store
    (the models' stored test embeddings), the task and, for per-(task, level) analyses, the level."""

    run_dir: RunDir
    store: AnalysisStore
    task: str
    level: str | None
    options: AnalysisOptions
    n_boot: int

    @property
    def key(self) -> str:
        return self.task if self.level is None else f"{self.task}-{self.level}"

    def results(self) -> list[CellResult]:
        return self.run_dir.results()


def within(value: float | None, low: float, high: float) -> bool:
    """A missing value, or a finite one in [low, high] (up to rounding): what a bounded score must be."""
    return value is None or (np.isfinite(value) and low - 1e-9 <= value <= high + 1e-9)
