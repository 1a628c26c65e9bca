"""``ANALYSES``: every analysis of a benchmark run, one entry each, with its scope, inputs and invariants.

An analysis is a module with a ``run`` function and a ``problems`` function (the invariants its stored
payload must satisfy), and one entry here. Scopes:

- ``pair``: per (model, task), on ``ModelTaskData`` (the task's records, one model's embeddings, the
  cells' probes); runs where the pair's cells ran (a shard analyses exactly its own pairs);
- ``task``: per task, across models, on ``TaskInputs`` (results, saved scores, stored test embeddings);
- ``column``: per (task, scarcity level), across models, likewise;
- ``run``: once over the run's whole grid (every task and level), on ``TaskInputs`` with ``task`` = ``RUN``
  and no level; runs after every per-task and per-column analysis, whose stored payloads it may read.

Per-task, per-column and run-wide analyses need every model's cells, so under ``--ecgfm-shard`` they run when
``ecgfm-suite merge`` joins the shards, and under pytest-xdist on the controller at session end.
``analyse`` runs one entry and stores its payload; the engine schedules them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import AnalysisSkip, DataError
from ..registry import Registry, resolve
from .inputs import AnalysisOptions, ModelTaskData, Output, TaskInputs, is_pooled, timed
from .store import AnalysisStore, plain

Scope = Literal["pair", "task", "column", "run"]
SCOPES: tuple[Scope, ...] = ("pair", "task", "column", "run")
#: the task field and store key of a run-wide analysis (a task id has no hyphen, so none is this)
RUN = "all-tasks"

#: ``draw(kind, payload, figure_input) -> {figure name: PNG bytes}`` (``ecgfm_suite.report.figures.figures_for``)
Draw = Callable[[str, Mapping[str, Any], Any], Mapping[str, bytes]]


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisSpec:
    """One analysis: ``run`` and ``problems`` are ``"module:attr"`` targets, imported on first use (the
    registry is read at collection, which imports no shap, umap or torch)."""

    name: str
    scope: Scope
    run: str
    problems: str
    #: what it reads, for the reader of the registry and the report (not enforced)
    inputs: tuple[str, ...]
    #: bumps when the payload's layout changes (stored with every payload)
    payload_version: int = 1
    #: only on pooled cross-continental tasks
    pooled_only: bool = False
    #: needs the model itself (not only its embeddings): loaded in the worker that runs it
    needs_encoder: bool = False
    #: the report's heading for its section and ``<name>.csv``
    title: str = ""
    #: ``"module:attr"``: ``rows(key, payload) -> list[dict]``, flat rows of one stored payload for
    #: ``<name>.csv`` beside the report and the report's table (None: the report renders it its own way)
    table: str | None = None
    #: payload fields that measure the machine (memory, throughput), not the data: two runs on equal inputs
    #: store equal payloads but for these and ``seconds``
    measured: tuple[str, ...] = ()

    def applies_to(self, task_id: str) -> bool:
        from ..data.tasks import TASKS

        return not self.pooled_only or is_pooled(TASKS.get(task_id))

    def rows(self, key: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One stored payload as flat table rows (empty when the analysis has no ``table``)."""
        if self.table is None:
            return []
        rows: Callable[[str, Mapping[str, Any]], list[dict[str, Any]]] = resolve(self.table)
        return rows(key, payload)

    def reproducible(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The payload without what measures the machine: what equal inputs must reproduce exactly."""
        return {k: v for k, v in payload.items() if k not in self.measured and k != "seconds"}

    def check(self, payload: Mapping[str, Any]) -> list[str]:
        """The invariants the payload breaks (empty: none)."""
        problems: Callable[[Mapping[str, Any]], list[str]] = resolve(self.problems)
        return problems(payload)


ANALYSES: Registry[AnalysisSpec] = Registry("analysis")
_M = "ecgfm_suite.analysis"


def register(spec: AnalysisSpec) -> AnalysisSpec:
    if spec.scope not in SCOPES:
        raise DataError(f"analysis {spec.name!r}: scope {spec.scope!r} is not one of {', '.join(SCOPES)}", "analysis")
    return ANALYSES.register(spec.name, spec)


#: in the order the benchmark runs them (pair analyses first: CKA reads what ``representation`` stores)
for _spec in (
    AnalysisSpec(name="dimension_attribution", scope="pair", run=f"{_M}.dimension_attribution:run",
                 problems=f"{_M}.dimension_attribution:problems", inputs=("embeddings", "cell probes")),
    AnalysisSpec(name="input_attribution", scope="pair", run=f"{_M}.input_attribution:run",
                 problems=f"{_M}.input_attribution:problems", inputs=("records", "model", "cell probes"),
                 needs_encoder=True, payload_version=2, title="SHAP over the input (lead shares; time profile of "
                 "single-lead models)", table=f"{_M}.input_attribution:rows"),
    AnalysisSpec(name="projection", scope="pair", run=f"{_M}.projection:run", problems=f"{_M}.projection:problems",
                 inputs=("embeddings",)),
    AnalysisSpec(name="representation", scope="pair", run=f"{_M}.representation:run",
                 problems=f"{_M}.representation:problems", inputs=("embeddings",)),
    AnalysisSpec(name="transfer", scope="pair", run=f"{_M}.transfer:run", problems=f"{_M}.transfer:problems",
                 inputs=("embeddings", "regions"), pooled_only=True),
    AnalysisSpec(name="subgroups", scope="pair", run=f"{_M}.subgroups:run", problems=f"{_M}.subgroups:problems",
                 inputs=("embeddings", "cell probes", "record sex, age and source"), title="Subgroup performance",
                 table=f"{_M}.subgroups:rows"),
    AnalysisSpec(name="calibration", scope="pair", run=f"{_M}.calibration:run",
                 problems=f"{_M}.calibration:problems", inputs=("embeddings", "cell probes"), title="Calibration",
                 table=f"{_M}.calibration:rows"),
    AnalysisSpec(name="robustness", scope="pair", run=f"{_M}.robustness:run", problems=f"{_M}.robustness:problems",
                 inputs=("records", "model", "embeddings", "cell probes"), needs_encoder=True,
                 title="Robustness to recording artefacts", table=f"{_M}.robustness:rows"),
    AnalysisSpec(name="efficiency", scope="pair", run=f"{_M}.efficiency:run", problems=f"{_M}.efficiency:problems",
                 inputs=("model", "records", "embedding cache timings"), needs_encoder=True,
                 title="Efficiency", table=f"{_M}.efficiency:rows",
                 measured=("peak_memory_mb", "memory_method", "records_per_s", "records_per_s_with_preparation",
                           "timings", "timings_missing")),
    AnalysisSpec(name="cka", scope="task", run=f"{_M}.representation:run_cka",
                 problems=f"{_M}.representation:cka_problems", inputs=("stored test embeddings",)),
    AnalysisSpec(name="label_efficiency", scope="task", run=f"{_M}.label_efficiency:run",
                 problems=f"{_M}.label_efficiency:problems", inputs=("results",)),
    AnalysisSpec(name="efficiency_front", scope="task", run=f"{_M}.efficiency:run_front",
                 problems=f"{_M}.efficiency:front_problems", inputs=("results", "stored efficiency"),
                 title="Main metric against compute (Pareto front)", table=f"{_M}.efficiency:front_rows"),
    AnalysisSpec(name="comparison", scope="column", run=f"{_M}.comparison:run",
                 problems=f"{_M}.comparison:problems", inputs=("results", "saved test scores"), payload_version=2),
    AnalysisSpec(name="ranks", scope="run", run=f"{_M}.ranks:run", problems=f"{_M}.ranks:problems",
                 inputs=("results", "saved test scores", "stored comparisons"), title="Ranks with honest uncertainty",
                 table=f"{_M}.ranks:rows"),
    AnalysisSpec(name="controls", scope="run", run=f"{_M}.ranks:run_controls", problems=f"{_M}.ranks:controls_problems",
                 inputs=("stored comparisons",), title="Foundation models against the controls",
                 table=f"{_M}.ranks:control_rows"),
):
    register(_spec)


def names(scope: Scope) -> list[str]:
    """The analyses of a scope, in run order."""
    return [name for name, spec in ANALYSES.registered() if spec.scope == scope]


def pair_analyses(task_id: str) -> list[str]:
    """The per-(model, task) analyses that apply to a task, in run order."""
    return [name for name in names("pair") if ANALYSES.get(name).applies_to(task_id)]


def _stored(store: AnalysisStore, spec: AnalysisSpec, key: str, output: Output, seconds: float) -> dict[str, Any]:
    """Store a payload (with its seconds and payload version) after checking its invariants: a payload
    that breaks one is an error, never a stored number."""
    payload = plain({**output.payload, "seconds": seconds, "payload_version": spec.payload_version})
    broken = spec.check(payload)
    if broken:
        raise DataError(f"{spec.name} {key}: broken invariants: {'; '.join(broken[:3])}", "analysis")
    store.write(spec.name, key, payload)
    return payload


def analyse(name: str, data: ModelTaskData, store: AnalysisStore,
            options: AnalysisOptions) -> tuple[dict[str, Any], Any]:
    """Run one per-(model, task) analysis and store it under ``data.key``: (payload, figure input).
    An AnalysisSkip is recorded in the store and re-raised."""
    spec = ANALYSES.get(name)
    if spec.scope != "pair":
        raise DataError(f"analysis {name!r} is per {spec.scope}, not per (model, task)", "analysis")
    run: Callable[[ModelTaskData, AnalysisOptions], Output] = resolve(spec.run)
    try:
        output, seconds = timed(run, data, options)
    except AnalysisSkip as skip:
        store.skip(name, data.key, skip.reason)
        raise
    if output.test_embeddings is not None:
        store.write_embeddings(data.model, data.task.task.id, *output.test_embeddings)
    return _stored(store, spec, data.key, output, seconds), output.figure_input


def analyse_task(name: str, inputs: TaskInputs) -> dict[str, Any]:
    """Run one per-task or per-(task, level) analysis and store it under ``inputs.key``."""
    spec = ANALYSES.get(name)
    if spec.scope == "pair" or (spec.scope == "column") != (inputs.level is not None) \
            or (spec.scope == "run") != (inputs.task == RUN):
        raise DataError(f"analysis {name!r} is per {spec.scope}; got task {inputs.task!r}, level {inputs.level!r}",
                        "analysis")
    run: Callable[[TaskInputs], Output] = resolve(spec.run)
    try:
        output, seconds = timed(run, inputs)
    except AnalysisSkip as skip:
        inputs.store.skip(name, inputs.key, skip.reason)
        raise
    return _stored(inputs.store, spec, inputs.key, output, seconds)


def draw_figures(draw: Draw | None, store: AnalysisStore, kind: str, key: str, payload: Mapping[str, Any],
                 figure_input: Any = None) -> None:
    """Store the figures ``draw`` makes of a payload beside its JSON (nothing without a ``draw``)."""
    if draw is not None:
        for name, png in draw(kind, payload, figure_input).items():
            store.write_figure(kind, key, png, name)
