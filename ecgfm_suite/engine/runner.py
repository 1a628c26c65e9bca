"""Runs benchmark cells: the orchestration behind the pytest plugin and the CLI.

data → models → embeddings → probes/metrics → results. Everything here works without pytest;
a cell that cannot run raises ``CellSkip`` with a reason that names the missing path.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CellSkip, SpecError, TaskSkip
from ..probes.base import SeedProbe
from ..results.cell import CellSpec
from .settings import Settings

if TYPE_CHECKING:  # type-only: loading a model, a task or a dataset imports what they need lazily
    from ..data.preprocess import InputSpec
    from ..data.records import DatasetIndex
    from ..data.tasks.build import TaskData
    from ..metrics.evaluation import ClassMetrics, MetricCI
    from ..models.protocol import Encoder
    from ..models.spec import ModelSpec
    from ..results.cell import CellResult, MetricSummary

log = logging.getLogger(__name__)

#: most bytes of fitted probes a Runner keeps for the analysis stage (oldest cells dropped first: refitted)
PROBE_MEMO_BYTES = 256 * 2**20


@dataclass(frozen=True, slots=True)
class ModelPlan:
    """A model of the matrix with its resolved checkpoint (None: absent)."""

    spec: ModelSpec
    checkpoint: Path | None
    expected: Path | None

    @property
    def available(self) -> bool:
        return self.checkpoint is not None or self.spec.control

    def random_init(self, allow: bool) -> str | None:
        """Whether this model runs without its weights: None when they are there (or for a control); with
        ``allow`` (``--ecgfm-allow-random-init``) the warning to print; else ``CellSkip`` naming the expected path."""
        if self.available:
            return None
        if not allow:
            raise CellSkip(
                f"no checkpoint for {self.spec.id}: expected {self.expected} "
                "(set --ecgfm-weights-dir / ECGFM_WEIGHTS_DIR, --ecgfm-checkpoint NAME=PATH, "
                "or --ecgfm-allow-random-init for a random-init run)"
            )
        return f"{self.spec.id}: no checkpoint at {self.expected}, running with RANDOM weights (random init allowed)"


def model_plans(settings: Settings) -> dict[str, ModelPlan]:
    """Registered models + user YAML specs, with ``NAME=PATH`` checkpoint overrides applied.

    A checkpoint the user named (``--ecgfm-checkpoint``, a model file) must be there: a missing,
    unreadable or wrong-kind path is a ``CheckpointError`` naming it, whatever ``--ecgfm-allow-random-init``
    says. Only a checkpoint looked up by default below the weights dir may be absent (the cells skip).
    """
    from ..errors import CheckpointError
    from ..models.catalog import MODELS
    from ..models.checkpoints import checkpoint_problem
    from ..models.user_spec import override_target

    specs = dict(MODELS.items())
    if settings.model_files:
        from ..models.user_spec import load_model_file

        for path in settings.model_files:
            spec = load_model_file(path)
            specs[spec.id] = spec
    overrides = dict(settings.checkpoints)
    for name, path in overrides.items():
        try:
            family = override_target(name, specs).family
        except SpecError as exc:
            raise SpecError(exc.reason, settings.source("checkpoints")) from None
        problem = checkpoint_problem(path, family)
        if problem:
            raise CheckpointError(f"checkpoint of {name} named by {settings.source('checkpoints')} {problem}", path)
    plans = {}
    for model_id, spec in specs.items():
        spec = replace(spec, input_spec=resolved_input_spec(spec.input_spec, settings))
        checkpoint: Path | None
        expected: Path | None
        if model_id in overrides:
            checkpoint = expected = overrides[model_id]
        else:
            expected = spec.checkpoint_path(settings.weights_dir)
            checkpoint = spec.resolve_checkpoint(settings.weights_dir)
        plans[model_id] = ModelPlan(spec, checkpoint, expected)
    return plans


def resolved_input_spec(spec: InputSpec, settings: Settings) -> InputSpec:
    """``spec`` with the run's window policy: ``--ecgfm-windows`` where the user set it (flag, environment, ini),
    else the spec's own (a model file's ``windows``), else the option's default (``cover``). The encoder carries
    it, so its cache keys, its cells' preprocessing and its analyses all see the policy that made the numbers."""
    policy = settings.windows if "windows" in settings.sources else spec.window_policy or settings.windows
    return spec if spec.window_policy == policy else replace(spec, window_policy=policy)


class Runner:
    """One benchmark session: caches dataset indexes, task data and the loaded encoder."""

    def __init__(self, settings: Settings, worker_id: str | None = None) -> None:
        from ..embeddings.cache import EmbeddingCache

        self.settings = settings
        #: pytest-xdist worker id (``gw0``…): picks this worker's GPU on a multi-GPU machine
        self.worker_id = worker_id
        self.cache = EmbeddingCache(settings.cache_dir, settings.cache)
        self._found: dict[str, list[Path]] | None = None
        self._indexes: dict[str, DatasetIndex] = {}
        self._tasks: dict[str, TaskData] = {}
        self._task_skips: dict[str, str] = {}
        #: (model, dataset) → (row of key, X, records excluded while preparing, windows per record)
        self._embeddings: dict[tuple[str, str], tuple[dict[str, int], np.ndarray, tuple[dict[str, str], ...],
                                                      dict[str, Any]]] = {}
        #: cell id → its linear probes, kept so the analysis stage explains them instead of refitting
        self._probes: dict[str, list[SeedProbe]] = {}
        self._probe_bytes = 0
        self.models = model_plans(settings)

    # -- data ---------------------------------------------------------------------------------
    def found_datasets(self) -> dict[str, list[Path]]:
        if self._found is None:
            from ..data.discovery import discover

            data_dir = self.settings.data_dir
            self._found = discover(data_dir) if data_dir.is_dir() else {}
        return self._found

    def index(self, dataset_id: str) -> DatasetIndex:
        if dataset_id not in self._indexes:
            from ..data.discovery import load_index

            s = self.settings
            self._indexes[dataset_id] = load_index(dataset_id, s.data_dir, strict=s.strict, cache_dir=s.local_cache,
                                                   refresh=s.cache == "refresh")
        return self._indexes[dataset_id]

    def task_data(self, task_id: str) -> TaskData:
        """TaskData for a task, or CellSkip naming what is missing."""
        from ..data.tasks import TASKS, build_task

        if task_id in self._task_skips:
            raise CellSkip(self._task_skips[task_id])
        if task_id not in self._tasks:
            task = TASKS.get(task_id)
            present = [d for d in task.datasets if d in self.found_datasets()]
            if not present:
                reason = (f"no data for task {task_id}: none of {', '.join(task.datasets)} found below "
                          f"{self.settings.data_dir} (set --ecgfm-data-dir / ECGFM_DATA_DIR)")
                self._task_skips[task_id] = reason
                raise CellSkip(reason)
            try:
                self._tasks[task_id] = build_task(task, {d: self.index(d) for d in present})
            except TaskSkip as exc:
                self._task_skips[task_id] = str(exc)
                raise CellSkip(str(exc)) from None
        return self._tasks[task_id]

    # -- planning ---------------------------------------------------------------------------------
    def plan(self) -> list[CellSpec]:
        """The selected matrix, ordered by model so one model is loaded at a time."""
        from ..data.scarcity import default_levels, parse_level
        from ..data.tasks import TASKS

        s = self.settings
        if s.models is not None:
            for m in s.models:
                if m not in self.models:
                    raise SpecError(f"--ecgfm-models: unknown model {m!r} (known: {', '.join(sorted(self.models))})")
            model_ids = list(s.models)
        else:
            model_ids = sorted(m for m, p in self.models.items() if p.available and (p.spec.default or p.spec.control))
        if s.tasks is not None:
            for t in s.tasks:
                TASKS.get(t)  # raises SpecError with suggestions
            task_ids = list(s.tasks)
        else:
            found = self.found_datasets()
            task_ids = [t for t, spec in TASKS.items() if any(d in found for d in spec.datasets)]
        for level in s.scarcity or ():
            parse_level(level)
        cells: list[CellSpec] = []
        for model_id in model_ids:
            for task_id in task_ids:
                if s.scarcity is not None:
                    levels = list(s.scarcity)
                else:
                    try:
                        levels = list(default_levels(self.task_data(task_id)))
                    except CellSkip:
                        levels = ["frac10", "frac100"]  # still collected; skipped at run time with the reason
                cells.extend(CellSpec(model=model_id, task=task_id, scarcity=lv) for lv in levels)
        return cells

    def record_counts(self, task_ids: list[str]) -> dict[str, int]:
        """Records in each task's present datasets: the expected-cost fallback for shard balancing."""
        from ..data.tasks import TASKS

        found = self.found_datasets()
        return {t: sum(len(self.index(d).records) for d in TASKS.get(t).datasets if d in found) for t in task_ids}

    # -- models -------------------------------------------------------------------------------------
    def load_encoder(self, model_id: str) -> Encoder:
        """The model's encoder; ``CellSkip`` when its checkpoint is absent, a warning (in pytest's warnings
        summary) when ``--ecgfm-allow-random-init`` runs it with random weights instead."""
        from ..registry import resolve

        plan = self.models[model_id]
        notice = plan.random_init(self.settings.allow_random_init)
        if notice:
            warnings.warn(notice, UserWarning, stacklevel=2)
        loader: Callable[..., Encoder] = resolve(plan.spec.loader)
        return loader(plan.spec, plan.checkpoint, device=self.settings.resolved_device(self.worker_id))

    # -- embeddings ----------------------------------------------------------------------------------
    def dataset_embeddings(self, encoder: Encoder,
                           dataset_id: str) -> tuple[dict[str, int], np.ndarray, dict[str, Any], bool]:
        """Embeddings of every usable record of a dataset, cached on disk: (row of key, X, manifest, cache hit).

        The record's windows follow the run's window policy (``resolved_input_spec``); the policy and the window
        count of every record (from its length and rate in the index, where the policy alone decides it) are part
        of the key, and the manifest's ``windows`` says how many windows per record the records got."""
        from .._io import sha256_json
        from ..data.prepared import prepare_records
        from ..data.preprocess import RecordWindows, expected_window_counts
        from ..embeddings.cache import model_description
        from ..embeddings.encode import encode_prepared

        index = self.index(dataset_id)
        records = index.records
        spec = resolved_input_spec(encoder.input_spec, self.settings)
        counts = expected_window_counts(records["n_samples"].to_numpy(), records["fs"].to_numpy(), spec)
        description = {
            **model_description(encoder, spec),
            "windows": {"policy": spec.policy, "per_record": None if counts is None else sha256_json(counts.tolist())},
            "dataset": dataset_id, "dataset_version": index.version,
            "records": sha256_json(list(zip(records["key"], records["content_hash"], strict=True))), "dtype": "float32",
        }

        def compute() -> tuple[tuple[str, ...], np.ndarray, dict[str, Any]]:
            t0 = time.perf_counter()
            prepared = prepare_records(
                records, RecordWindows(encoder.prepare, spec),
                spec_key={"model_family": encoder.spec.family, "input_spec": spec.to_dict()},
                cache_dir=self.settings.local_cache,
                strict=self.settings.strict, workers=self.settings.read_workers,
            )
            t1 = time.perf_counter()
            X = encode_prepared(encoder, prepared.windows, prepared.offsets, desc=f"{encoder.spec.id}/{dataset_id}")
            t2 = time.perf_counter()
            windows = prepared.windows_per_record()
            extra = {"excluded": [e.to_dict() for e in prepared.excluded],
                     "windows": {"policy": spec.policy, **windows},
                     "timings": {"prepare_s": t1 - t0, "encode_s": t2 - t1, "records": len(prepared.keys),
                                 "windows": windows["windows"]}}
            return tuple(prepared.keys), X, extra

        cached = self.cache.get_or_compute(description, compute)
        rows = {k: i for i, k in enumerate(cached.keys)}
        return rows, np.asarray(cached.X), cached.manifest, cached.hit

    def task_embeddings(self, encoder: Encoder, td: TaskData) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """X aligned with the task's records and a mask of records that have an embedding; ``info["preprocessing"]``
        holds the window policy and, per dataset, the windows per record its embeddings were pooled from."""
        X = np.zeros((len(td.keys), encoder.embed_dim), dtype=np.float32)
        have = np.zeros(len(td.keys), dtype=bool)
        from ..data.records import excluded_records

        # excluded: the datasets' records left out at indexing and while preparing, each with file and reason
        windows: dict[str, Any] = {}
        info: dict[str, Any] = {"cache_hits": 0, "encode_s": 0.0, "excluded": [], "preprocessing": {
            "window_policy": resolved_input_spec(encoder.input_spec, self.settings).policy,
            "windows_per_record": windows}}
        datasets = np.asarray(td.dataset)
        for dataset_id in sorted(set(datasets.tolist())):
            memo_key = (encoder.spec.id, dataset_id)
            if memo_key not in self._embeddings:
                rows, Xd, manifest, hit = self.dataset_embeddings(encoder, dataset_id)
                self._embeddings[memo_key] = (rows, Xd, tuple(manifest.get("excluded", [])),
                                            manifest.get("windows", {}))
                info["cache_hits"] += int(hit)
                if not hit:
                    info["encode_s"] += manifest["timings"]["encode_s"]
            rows, Xd, prepared, windows[dataset_id] = self._embeddings[memo_key]
            info["excluded"] += excluded_records(self.index(dataset_id), prepared)
            for i in np.flatnonzero(datasets == dataset_id):
                r = rows.get(td.keys[i])
                if r is not None:
                    X[i] = Xd[r]
                    have[i] = True
        return X, have, info

    def pool_workers(self) -> int:
        """Processes that share a cell's seeds or the analyses, this one included: ``--ecgfm-workers``, by
        default one more than the available cores (1 on one core, where a pool only adds its start-up);
        1 on a pytest-xdist worker (the workers fill the cores) and where no pool can start (``pool_unavailable``).

        One more than the cores: a cell's seeds are few (3 by default) and equal in cost, so on 2 cores
        3 processes finish together after 1.5 seeds' time, where 2 would need 2 rounds.
        """
        from ..data.prepared import available_cores
        from .pool import pool_unavailable

        if self.worker_id:
            return 1
        cores = available_cores()
        workers = self.settings.workers or (cores + 1 if cores > 1 else 1)
        return 1 if workers > 1 and pool_unavailable() else workers

    # -- fitted probes -----------------------------------------------------------------------------------
    def keep_probes(self, cell_id: str, runs: list[SeedProbe]) -> None:
        """Keep a cell's linear probes for the analysis stage, within ``PROBE_MEMO_BYTES`` (oldest dropped)."""
        self.take_probes(cell_id)
        self._probes[cell_id] = runs
        self._probe_bytes += sum(r.nbytes for r in runs)
        while self._probe_bytes > PROBE_MEMO_BYTES and len(self._probes) > 1:
            self.take_probes(next(iter(self._probes)))

    def take_probes(self, cell_id: str) -> list[SeedProbe] | None:
        """The linear probes of a cell this runner ran (handed over once), or None: the caller refits."""
        runs = self._probes.pop(cell_id, None)
        if runs is not None:
            self._probe_bytes -= sum(r.nbytes for r in runs)
        return runs

    def release_model(self, model_id: str) -> None:
        for key in [k for k in self._embeddings if k[0] == model_id]:
            del self._embeddings[key]


def summarise_seeds(per_seed: list[dict[str, MetricCI]]) -> dict[str, MetricSummary]:
    """Seed-level metric dicts → MetricSummary per metric (``MetricSummary.over_seeds``: value = mean over
    seeds, CI and SE = the per-seed bootstrap CIs averaged, ``seed_std`` = training-subset variability)."""
    from ..results import MetricSummary

    return {name: MetricSummary.over_seeds([m[name] for m in per_seed]) for name in per_seed[0]}


@dataclass(frozen=True, slots=True)
class CellOutput:
    """A cell's result plus the per-record test scores that paired model comparisons need."""

    result: CellResult
    test_keys: np.ndarray
    y_test: np.ndarray
    #: headline probe's test scores, one row per seed: (n_seeds, n_test[, C])
    test_scores: np.ndarray


@dataclass(frozen=True, slots=True)
class SeedJob:
    """Everything one seed of a cell needs, self-contained so that a worker process can run it."""

    task_type: str
    scarcity: str
    probes: tuple[str, ...]
    n_classes: int | None
    n_boot: int
    #: task rows of the full training split, and its embeddings, labels and groups (patients)
    train_rows: np.ndarray
    X_train: np.ndarray
    y_train: np.ndarray
    groups: np.ndarray | None
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True, slots=True)
class SeedFit:
    """One probe of one seed: the probe on its training rows, its test scores and metrics."""

    kind: str
    run: SeedProbe
    scores: np.ndarray
    metrics: dict[str, MetricCI]
    #: multiclass/multilabel: each class's test metrics, and positives / records of the seed's training subset
    #: per class; () for binary and regression
    classes: tuple[ClassMetrics, ...] = ()
    train_prevalence: tuple[float, ...] = ()


def fit_seed(job: SeedJob, seed: int) -> list[SeedFit]:
    """Draw the seed's training subset and fit, score and evaluate every probe on it, with one BLAS thread
    (probe problems are small; the same numbers whichever process runs it)."""
    from .._threads import one_thread
    from ..data.scarcity import subset
    from ..metrics import class_positives, evaluate_classes
    from ..probes import fit_probe

    with one_thread():
        sub = subset(job.y_train, job.scarcity, seed, job.task_type, groups=job.groups)
        prevalence = () if job.n_classes is None else tuple(
            (class_positives(job.task_type, job.y_train[sub], job.n_classes) / len(sub)).tolist())
        fitted = []
        for kind in job.probes:
            probe = fit_probe(kind, job.task_type, job.X_train[sub], job.y_train[sub], job.X_val, job.y_val,
                              seed=seed, n_classes=job.n_classes)
            scores = probe.predict_scores(job.X_test)
            evaluation = evaluate_classes(job.task_type, job.y_test, scores, y_val=job.y_val,
                                          scores_val=probe.predict_scores(job.X_val), n_boot=job.n_boot, seed=seed)
            fitted.append(SeedFit(kind, SeedProbe(seed, job.train_rows[sub], probe), scores, evaluation.metrics,
                                  evaluation.classes, prevalence))
        return fitted


def map_seeds(job: SeedJob, seeds: Sequence[int], *, workers: int) -> list[list[SeedFit]]:
    """``fit_seed`` over the seeds, in seed order; with ``workers`` > 1 and several seeds, the first seed in
    this process and the others on the pool of ``workers - 1`` worker processes.

    Fitting a probe is mostly Python-level overhead in scikit-learn and scipy's L-BFGS on small
    problems, so threads gain nothing under the GIL (measured: 22.8 s threaded vs 22.2 s one after
    another for the default matrix's warm run); processes do (``ecgfm_suite._pool``).
    """
    if workers <= 1 or len(seeds) <= 1:
        return [fit_seed(job, seed) for seed in seeds]
    from concurrent.futures.process import BrokenProcessPool
    from functools import partial

    from .pool import shutdown_pool, worker_pool

    try:
        pending = worker_pool(workers - 1).map(partial(fit_seed, job), seeds[1:])
        first = fit_seed(job, seeds[0])
        return [first, *pending]
    except BrokenProcessPool:
        log.warning("a probe worker process died; fitting this cell's seeds in this process")
        shutdown_pool()
        return [fit_seed(job, seed) for seed in seeds]


def run_cell(runner: Runner, cell: CellSpec, encoder: Encoder) -> CellOutput:
    """Fit the cell's probes over seeds on frozen embeddings; return its CellResult and test scores."""
    from ..results import CellResult, environment, git_commit
    from ..results.cell import exclusion_counts, summarise_classes

    s = runner.settings
    t0 = time.perf_counter()
    td = runner.task_data(cell.task)
    X, have, info = runner.task_embeddings(encoder, td)
    t_embed = time.perf_counter() - t0
    split = np.asarray(td.split)
    idx = {name: np.flatnonzero((split == name) & have) for name in ("train", "val", "test")}
    if min(len(v) for v in idx.values()) == 0:
        raise CellSkip(f"task {cell.task} has an empty split after exclusions: "
                       + ", ".join(f"{k}={len(v)}" for k, v in idx.items()))
    y = np.asarray(td.y)
    task_type = td.task.type
    n_classes = len(td.classes) if task_type in ("multiclass", "multilabel") else None

    train = idx["train"]
    job = SeedJob(task_type=task_type, scarcity=cell.scarcity, probes=tuple(s.probes), n_classes=n_classes,
                  n_boot=s.n_boot, train_rows=train, X_train=X[train], y_train=y[train],
                  groups=np.asarray(td.groups)[train] if td.groups is not None else None,
                  X_val=X[idx["val"]], y_val=y[idx["val"]], X_test=X[idx["test"]], y_test=y[idx["test"]])
    t1 = time.perf_counter()
    per_seed = map_seeds(job, s.seeds, workers=runner.pool_workers())
    fits = [fit for fitted in per_seed for fit in fitted]
    per_probe = {kind: [f.metrics for f in fits if f.kind == kind] for kind in s.probes}
    headline_fits = [f for f in fits if f.kind == s.probes[0]]
    params = [{"seed": f.run.seed, **f.run.probe.params} for f in headline_fits]
    headline_scores = [np.asarray(f.scores, dtype=np.float32) for f in headline_fits]
    n_train_used = [len(f.run.train_rows) for f in headline_fits]
    linear = [f.run for f in fits if f.kind == "linear"]
    t_probe = time.perf_counter() - t1
    if linear:
        runner.keep_probes(cell.id, linear)
    headline, *others = s.probes
    plan = runner.models[cell.model]
    overlap = tuple(sorted(set(plan.spec.pretrained_on) & set(np.unique(td.dataset).tolist())))
    result = CellResult(
        cell_id=cell.id, model=cell.model, checkpoint_sha256=encoder.checkpoint_sha256,
        random_init=encoder.checkpoint_sha256 is None and not plan.spec.control,
        task=cell.task, task_type=task_type, dataset_versions=dict(td.dataset_versions),
        task_version=td.version,
        preprocessing={**encoder.input_spec.to_dict(), **info["preprocessing"]}, scarcity=cell.scarcity,
        seeds=tuple(s.seeds),
        probe=headline, probe_params=tuple(params), n_train=int(np.median(n_train_used)),
        n_val=len(idx["val"]), n_test=len(idx["test"]), classes=tuple(td.classes),
        main_metric=td.task.main_metric, metrics=summarise_seeds(per_probe[headline]),
        other_probes={k: summarise_seeds(per_probe[k]) for k in others},
        per_class=summarise_classes(td.classes, [f.classes for f in headline_fits],
                                    [f.train_prevalence for f in headline_fits]),
        timings={"embed_s": t_embed, "probe_s": t_probe, "encode_s": info["encode_s"]},
        exclusions=exclusion_counts(int((~have).sum()), info["excluded"]), excluded_records=tuple(info["excluded"]),
        pretraining_overlap=overlap, environment=environment(), git_commit=git_commit(),
    )
    return CellOutput(result, np.asarray(td.keys)[idx["test"]], y[idx["test"]], np.stack(headline_scores))


def run_matrix(runner: Runner, on_output: Callable[[CellOutput], None] | None = None) -> int:
    """Run every cell of the runner's plan without pytest, one model loaded at a time; skipped cells
    (``CellSkip``) are passed over. ``on_output`` sees each cell's output. Returns the cells that ran."""
    ran = 0
    encoders: dict[str, Encoder] = {}
    for cell in runner.plan():
        try:
            if cell.model not in encoders:
                encoders.clear()  # release the previous model first
                encoders[cell.model] = runner.load_encoder(cell.model)
            out = run_cell(runner, cell, encoders[cell.model])
        except CellSkip:
            continue
        if on_output is not None:
            on_output(out)
        ran += 1
    return ran
