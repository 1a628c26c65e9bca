"""Scheduling the analysis stage of a run: which analyses run, in which process, on which cells.

The analyses follow the cells selected in this process (after ``-k``, ``--ecgfm-shard``, ``--lf``): a
(model, task) pair is analysed over the scarcity levels of its selected cells. Outside pytest-xdist, with
several cores, the first analysis asked for hands every pair's analyses to the worker pool that also fits
the cells' seeds, and each caller waits for its own; per-task analyses follow once the pairs' are done
(CKA reads the test embeddings ``representation`` stores). ``run_task_analyses`` runs the per-task ones
from a run directory alone, for the xdist controller at session end and for ``ecgfm-suite merge``.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._threads import one_thread
from ..analysis.inputs import AnalysisOptions, ModelTaskData, TaskInputs, load_model_task, task_summary
from ..analysis.registry import ANALYSES, RUN, Draw, analyse, analyse_task, draw_figures, names, pair_analyses
from ..analysis.store import AnalysisStore
from ..errors import AnalysisSkip, CellSkip
from ..results.cell import CellSpec
from .settings import Settings

if TYPE_CHECKING:  # type-only: a worker process imports the runner and the model only when it needs them
    from concurrent.futures import Future, ProcessPoolExecutor

    from ..models.protocol import Encoder
    from ..results.run import RunDir
    from .runner import Runner

#: (analysis, task, level or None): one per-task or per-column analysis
Target = tuple[str, str, str | None]


def pairs_of(cells: Sequence[CellSpec]) -> list[tuple[str, str]]:
    """(model, task) pairs of the cells, in order (grouped by model, so one encoder is loaded at a time)."""
    return list(dict.fromkeys((c.model, c.task) for c in cells))


def task_targets(cells: Sequence[CellSpec]) -> list[Target]:
    """Every per-task and per-column analysis over the cells' tasks and (task, level) columns, then the
    run-wide ones (last: they may read the others' payloads)."""
    tasks = list(dict.fromkeys(c.task for c in cells))
    columns = list(dict.fromkeys((c.task, c.scarcity) for c in cells))
    targets: list[Target] = [(name, t, None) for t in tasks for name in names("task")]
    targets += [(name, t, lv) for t, lv in columns for name in names("column")]
    return targets + [(name, RUN, None) for name in names("run")] if cells else targets


def is_run_wide(target: Target) -> bool:
    return target[1] == RUN


def target_id(target: Target) -> str:
    name, task, level = target
    return f"{task}-{name}" if level is None else f"{task}-{level}-{name}"


@dataclass(frozen=True, slots=True)
class PairJob:
    """Every analysis of one pair, self-contained for a worker process: the pair's data without its encoder
    (the worker loads the model when an analysis needs it)."""

    data: ModelTaskData
    settings: Settings
    run_path: Path
    options: AnalysisOptions
    draw: Draw | None


def run_pair(job: PairJob) -> dict[str, dict[str, Any] | Exception]:
    """Run (and store, with figures) every analysis of a pair: name → payload, or the error it raised (an
    AnalysisSkip, or a failure that fails that analysis alone, as when it runs in the session's process)."""
    data = job.data
    store = AnalysisStore(job.run_path)
    out: dict[str, dict[str, Any] | Exception] = {}
    for name in pair_analyses(data.task.task.id):
        try:
            if ANALYSES.get(name).needs_encoder and data.encoder is None:
                data = dataclasses.replace(data, encoder=_LOADED.encoder(job.settings, data.model))
            payload, figure_input = analyse(name, data, store, job.options)
            with one_thread():
                draw_figures(job.draw, store, name, data.key, payload, figure_input)
        except Exception as exc:  # noqa: BLE001 - handed to the session, which raises it for this analysis
            out[name] = exc
            continue
        out[name] = payload
    return out


class _LoadedModel:
    """The one model a worker process keeps loaded: consecutive pairs of a model load it once."""

    def __init__(self) -> None:
        self._key: tuple[Settings, str] | None = None
        self._encoder: Encoder | None = None

    def encoder(self, settings: Settings, model: str) -> Encoder:
        if self._key != (settings, model):
            from .runner import Runner

            self._key, self._encoder = None, None  # drop the previous model before loading the next
            gc.collect()
            self._encoder = Runner(settings).load_encoder(model)
            self._key = (settings, model)
        assert self._encoder is not None  # loaded with its key
        return self._encoder


_LOADED = _LoadedModel()


def run_task_job(run_path: Path, target: Target, options: AnalysisOptions, n_boot: int,
                 draw: Draw | None) -> dict[str, Any]:
    """A per-task analysis of the run at ``run_path``, stored with its figures (in any process)."""
    from ..results import RunDir

    name, task, level = target
    inputs = TaskInputs(run_dir=RunDir.open(run_path), store=AnalysisStore(run_path), task=task, level=level,
                        options=options, n_boot=n_boot)
    payload = analyse_task(name, inputs)
    with one_thread():
        draw_figures(draw, inputs.store, name, inputs.key, payload)
    return payload


def run_task_analyses(run_dir: RunDir, *, n_boot: int, options: AnalysisOptions | None = None,
                      draw: Draw | None = None) -> dict[str, str]:
    """Every per-task analysis over the tasks and (task, level) columns that have results in ``run_dir``.

    Needs no runner: it reads results, saved scores and stored test embeddings. For the xdist controller
    at session end (a worker cannot know that the others are done) and ``ecgfm-suite merge`` (a shard
    holds only some models). Returns ``"<analysis> <key>" → skip reason`` for what could not run.
    """
    options = options or AnalysisOptions()
    cells = [CellSpec.from_id(r.cell_id) for r in run_dir.results()]
    skipped = {}
    for target in task_targets(cells):
        try:
            run_task_job(run_dir.path, target, options, n_boot, draw)
        except AnalysisSkip as skip:
            skipped[f"{target[0]} {target_id(target)}"] = skip.reason
    return skipped


class AnalysisStage:
    """A run's analysis stage over the cells selected in this process: one encoder at a time, one store.

    Works without pytest; the ``analysis`` tests and the analysis benchmark drive it. Cells and analyses of
    the same (model, task) agree on what is skipped: a CellSkip from the runner (no data, no weights, an
    empty split) is recorded in the store and re-raised. The selected cell ids go to
    ``analysis/plan/cells.json`` when the first analysis runs (the report lists those without a result).
    """

    def __init__(self, runner: Runner, run_dir: RunDir, cells: Sequence[CellSpec], *,
                 options: AnalysisOptions | None = None, draw: Draw | None = None) -> None:
        self.runner = runner
        self.run_dir = run_dir
        self.cells = list(cells)
        self.store = AnalysisStore(run_dir.path)
        s = runner.settings
        self.options = options or AnalysisOptions(robustness=s.robustness, embedding_cache=s.cache)
        self.draw = draw
        self._plan_written = False
        self._encoder: tuple[str, Encoder] | None = None
        self._data: ModelTaskData | None = None
        self._tasks_written: set[str] = set()
        #: (model, task) → its analyses running in worker processes (or the CellSkip that stops them)
        self._pairs: dict[tuple[str, str], Future[dict[str, dict[str, Any] | Exception]] | CellSkip] = {}
        self._task_jobs: dict[Target, Future[dict[str, Any]]] = {}

    def pairs(self) -> list[tuple[str, str]]:
        return pairs_of(self.cells)

    def task_targets(self) -> list[Target]:
        return task_targets(self.cells)

    def levels(self, model: str, task: str) -> tuple[str, ...]:
        return tuple(c.scarcity for c in self.cells if c.model == model and c.task == task)

    def _record_plan(self) -> None:
        if not self._plan_written:
            self.store.write("plan", "cells", {"cells": [c.id for c in self.cells]})
            self._plan_written = True

    def encoder(self, model: str) -> Encoder:
        if self._encoder is None or self._encoder[0] != model:
            if self._encoder is not None:
                self.runner.release_model(self._encoder[0])
                self._encoder, self._data = None, None
                gc.collect()
            self._encoder = (model, self.runner.load_encoder(model))
        return self._encoder[1]

    def data(self, model: str, task: str) -> ModelTaskData:
        """The (model, task)'s task data and embeddings (kept for the next analysis of the same pair)."""
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

    def run_pair_analysis(self, name: str, model: str, task: str) -> dict[str, Any]:
        """One analysis of a pair. With several workers (not on an xdist worker) the first call hands every
        pair to worker processes and later calls wait for theirs; else it runs here."""
        if self.runner.pool_workers() > 1 and name in pair_analyses(task):
            result = self._pair_results(model, task)[name]
            if isinstance(result, Exception):
                raise result
            return result
        data = self.data(model, task)
        payload, figure_input = analyse(name, data, self.store, self.options)
        draw_figures(self.draw, self.store, name, data.key, payload, figure_input)
        return payload

    def _pair_results(self, model: str, task: str) -> dict[str, dict[str, Any] | Exception]:
        if (model, task) not in self._pairs:
            self._submit_pairs()
        pending = self._pairs[(model, task)]
        if isinstance(pending, CellSkip):
            raise pending
        return pending.result()

    def _submit_pairs(self) -> None:
        """Load each pair's data here (task data, cached embeddings, the cells' probes) and queue its
        analyses on the worker pool, model by model."""
        pool = self._worker_pool()
        for pair in self.pairs():
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

    def run_task_analysis(self, target: Target) -> dict[str, Any]:
        """One per-task analysis; with several workers the first call hands every per-task analysis of the
        selected cells to worker processes (once the pairs' analyses are done)."""
        self._record_plan()
        n_boot = self.runner.settings.n_boot
        if self.runner.pool_workers() <= 1:
            return run_task_job(self.run_dir.path, target, self.options, n_boot, self.draw)
        if target not in self._task_jobs:
            for pending in self._pairs.values():
                if not isinstance(pending, Exception):
                    pending.exception()  # wait; a failure was reported by its own analysis
            pool = self._worker_pool()
            for each in [*self.task_targets(), target]:
                if each not in self._task_jobs and not is_run_wide(each):
                    self._task_jobs[each] = pool.submit(run_task_job, self.run_dir.path, each, self.options, n_boot,
                                                        self.draw)
            if is_run_wide(target):  # after every other per-task analysis: it reads their payloads
                for pending in list(self._task_jobs.values()):
                    pending.exception()
                self._task_jobs[target] = pool.submit(run_task_job, self.run_dir.path, target, self.options, n_boot,
                                                      self.draw)
        return self._task_jobs[target].result()

    def _worker_pool(self) -> ProcessPoolExecutor:
        """The pool the cells' seeds use too (the session's process is the remaining worker)."""
        from .pool import worker_pool

        return worker_pool(self.runner.pool_workers() - 1)
