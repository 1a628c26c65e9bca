"""``RunSession``: one benchmark run's state and its steps, from planning to the report, without pytest.

It plans the matrix, fixes the shard split, learns which cells this process selected, runs cells and their
gate checks, folds each cell test's phases into one outcome (``outcomes.jsonl``), runs the analysis stage
on the selected cells, and at the end writes the CSV, the gate's verdicts, the per-task analyses where
they belong here, ``run.json`` (``RunMeta``), the report and the upload. The pytest plugin's hooks are
one-line calls into it, as pytest-benchmark's plugin delegates to its ``BenchmarkSession``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import EcgfmError
from ..results.cell import CellSpec
from .settings import Settings

if TYPE_CHECKING:  # type-only: the runner, gate, run directory and analyses are built on first use
    import numpy as np

    from ..gate.session import CellVerdict, Gate, GateSummary
    from ..models.protocol import Encoder
    from ..results.cell import CellResult
    from ..results.run import RunDir
    from ..storage import StorePath
    from .analyses import AnalysisStage, Target
    from .runner import Runner

Outcome = Literal["passed", "failed", "skipped", "error"]
#: skip reasons the run's last screen lists (by count; the rest are counted in one line)
SKIP_REASONS = 8


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase (setup, call, teardown) of a cell test as the test runner reported it."""

    when: str
    outcome: Literal["passed", "failed", "skipped"]
    reason: str | None
    duration_s: float


@dataclass(slots=True)
class _Folded:
    outcome: Outcome = "passed"
    reason: str | None = None
    duration_s: float = 0.0


@dataclass(slots=True)
class Finished:
    """What the end of the run produced, for the terminal summary."""

    run_path: Path
    results: list[CellResult]
    report_path: Path | None = None
    gate_summary: GateSummary | None = None
    #: the per-task analyses run here at the end: skipped analysis → reason, or the error that stopped them
    task_analyses: dict[str, str] | None = None
    task_analyses_error: str | None = None
    uploaded: StorePath | None = None
    #: why the run counts as failed although no test failed (every selected cell skipped), else None
    failure: str | None = None


def _all_skipped(outcomes: dict[str, dict[str, Any]]) -> str | None:
    """Why a run whose every cell test was skipped (no data, no weights) counts as failed: a CI job would
    otherwise pass without having measured anything. None where some cell ran."""
    if not outcomes or any(o.get("outcome") != "skipped" for o in outcomes.values()):
        return None
    reasons = sorted({str(o.get("reason")) for o in outcomes.values()})
    more = f" (and {len(reasons) - 1} other reason(s) in the report)" if len(reasons) > 1 else ""
    return f"every selected cell ({len(outcomes)}) was skipped: {reasons[0]}{more}"


class RunSession:
    """One run: settings, run id, the runner (lazy: collection imports no torch), run directory and gate."""

    def __init__(self, settings: Settings, run_id: str, *, rootdir: Path, worker_id: str | None = None) -> None:
        self.settings = settings
        self.run_id = run_id
        self.rootdir = Path(rootdir)
        #: pytest-xdist worker id (``gw0``…) of this process, None on the controller or without xdist
        self.worker_id = worker_id
        self._runner: Runner | None = None
        self._run_dir: RunDir | None = None
        self._gate: Gate | None = None
        self._plan: list[CellSpec] | None = None
        self._shard: tuple[list[CellSpec], str] | None = None
        self._selected: list[CellSpec] | None = None
        self._analyses: AnalysisStage | None = None
        #: cells whose test body ran (reported by workers too): the gate's scope; their test-record digests
        self.cell_ids: set[str] = set()
        self.test_shas: dict[str, str] = {}
        self._test_keys: dict[str, np.ndarray] = {}
        #: a per-task analysis was handed to the controller by a worker (xdist): it runs at the end
        self.task_analyses_deferred = False
        self._folding: dict[str, _Folded] = {}
        self.finished: Finished | None = None

    # -- lazily built parts --------------------------------------------------------------------------
    @property
    def runner(self) -> Runner:
        if self._runner is None:
            from .runner import Runner

            self._runner = Runner(self.settings, worker_id=self.worker_id)
        return self._runner

    @property
    def reports_dir(self) -> Path:
        """Where the run directory lives (a URL reports dir: staged here, uploaded at the end)."""
        return self._rooted(self.settings.local_reports_dir)

    @property
    def run_path(self) -> Path:
        return self.reports_dir / self.run_id

    @property
    def run_dir(self) -> RunDir:
        if self._run_dir is None:
            from ..results import RunDir

            self._run_dir = RunDir.create(self.reports_dir, self.run_id)
        return self._run_dir

    @property
    def gate(self) -> Gate:
        if self._gate is None:
            from ..gate.session import Gate

            s = self.settings
            self._gate = Gate(thresholds=self.thresholds_path(), baselines_dir=self._rooted(s.baselines_dir),
                              update=s.update_baselines,
                              strict=s.strict_baselines or "baselines_dir" in s.explicit)
        return self._gate

    def thresholds_path(self) -> Path:
        """The floors and tolerances file: one the user named must exist (a usage error otherwise); the
        default one absent means no floors, with a warning."""
        from ..gate.thresholds import thresholds_file

        return thresholds_file(self.settings.thresholds, root=self.rootdir,
                               named_by=self.settings.sources.get("thresholds"))

    def _rooted(self, path: Path) -> Path:
        return path if path.is_absolute() else self.rootdir / path

    # -- planning and selection -----------------------------------------------------------------------
    def plan(self) -> list[CellSpec]:
        """Every cell the options select (planned once)."""
        if self._plan is None:
            self._plan = self.runner.plan()
        return self._plan

    def shard(self) -> tuple[list[CellSpec], str]:
        """This job's cells under ``--ecgfm-shard K/N`` and the split's digest; computed once, before any cell
        runs (the costs read the embedding cache's recorded timings, which the run itself adds to)."""
        if self._shard is None:
            from .shard import assign_shards, cell_cost, recorded_encode_rates, shard_digest

            assert self.settings.shard is not None, "shard() runs under --ecgfm-shard only"
            k, n = self.settings.shard
            cells = self.plan()
            records = self.runner.record_counts(sorted({c.task for c in cells}))
            rates = recorded_encode_rates(self.settings.cache_dir, as_of=self.settings.shard_as_of)
            shards = assign_shards(cells, n, cell_cost(records, rates))
            self._shard = (shards[k - 1], shard_digest(shards))
        return self._shard

    def in_shard(self, cell: CellSpec) -> bool:
        return self.settings.shard is None or cell in set(self.shard()[0])

    @property
    def sharded(self) -> bool:
        return self.settings.shard is not None

    def select(self, cells: Sequence[CellSpec]) -> None:
        """The cells this process will run (after ``-k``, ``-m``, ``--lf`` and the shard): the analyses follow
        them. An analysis-only selection (no cell test selected) follows this job's planned cells."""
        chosen = list(dict.fromkeys(cells))
        self._selected = chosen or [c for c in self.plan() if self.in_shard(c)]

    @property
    def selected(self) -> list[CellSpec]:
        if self._selected is None:
            self.select([])
        assert self._selected is not None  # select() set it
        return self._selected

    def task_analyses_here(self) -> bool:
        """Per-task analyses run in this session unless it is a shard (they need every shard's cells: merge
        runs them) or an xdist worker (the controller runs them once every worker is done)."""
        return not self.sharded and self.worker_id is None

    # -- cells ---------------------------------------------------------------------------------------------
    def load_encoder(self, model: str) -> Encoder:
        """The model's encoder, after checking that its thresholds and baselines are readable (a broken file
        errors the model's cells before anything is encoded); CellSkip where its weights are absent."""
        self.gate.validate([model])
        return self.runner.load_encoder(model)

    def release_encoder(self, model: str) -> None:
        import gc

        self.runner.release_model(model)
        gc.collect()

    def run_cell(self, cell: CellSpec, encoder: Encoder) -> CellResult:
        """Run a cell, save its test scores and append its result; CellSkip where it cannot run."""
        from .runner import run_cell

        out = run_cell(self.runner, cell, encoder)
        self.run_dir.save_scores(cell.id, keys=out.test_keys, y_test=out.y_test, scores=out.test_scores)
        self.run_dir.append(out.result)
        self._test_keys[cell.id] = out.test_keys
        return out.result

    def check(self, cell: CellSpec, result: CellResult) -> CellVerdict:
        """The cell's gate verdict (floor, regression vs baseline): ``.failures``, ``.properties()``."""
        return self.gate.check(cell, result, self._test_keys.pop(cell.id, None))

    def saw_cell(self, cell_id: str, test_records_sha256: str | None) -> None:
        """A cell's test body ran (here or on a worker): it is in the gate's scope."""
        self.cell_ids.add(cell_id)
        if test_records_sha256:
            self.test_shas[cell_id] = test_records_sha256

    def fold(self, nodeid: str, cell: CellSpec, phase: Phase) -> None:
        """Fold a cell test's phases into one outcome; at teardown append it to ``outcomes.jsonl`` (the
        process that ran the test writes it: a worker under xdist)."""
        state = self._folding.setdefault(nodeid, _Folded())
        state.duration_s += phase.duration_s
        if phase.outcome == "failed" and phase.when != "call":
            if state.outcome not in ("failed", "error"):
                state.outcome, state.reason = "error", phase.reason
        elif phase.when == "call" or phase.outcome == "skipped":
            state.outcome = phase.outcome
            state.reason = None if phase.outcome == "passed" else phase.reason
        if phase.when == "teardown":
            del self._folding[nodeid]
            self.run_dir.append_outcome({
                "cell_id": cell.id, "model": cell.model, "task": cell.task, "scarcity": cell.scarcity,
                "outcome": state.outcome, "reason": state.reason, "duration_s": round(state.duration_s, 3),
                "nodeid": nodeid, "worker": self.worker_id,
            })

    # -- analyses ---------------------------------------------------------------------------------------------
    @property
    def analyses(self) -> AnalysisStage:
        """The analysis stage over the selected cells (one per process)."""
        if self._analyses is None:
            from ..report.figures import figures_for
            from .analyses import AnalysisStage

            self._analyses = AnalysisStage(self.runner, self.run_dir, self.selected, draw=figures_for)
        return self._analyses

    def run_pair_analysis(self, name: str, model: str, task: str) -> dict[str, Any]:
        """One analysis of a (model, task) pair: raises CellSkip or AnalysisSkip where it does not apply."""
        return self.analyses.run_pair_analysis(name, model, task)

    def run_task_analysis(self, target: Target) -> dict[str, Any]:
        return self.analyses.run_task_analysis(target)

    # -- the end of the run ------------------------------------------------------------------------------------
    def finish(self, exitstatus: int) -> Finished | None:
        """On the controlling process, once every cell ran: the run directory's CSV, gate, per-task analyses
        (here when the workers deferred them), ``run.json``, report, ``latest`` link and upload. None where
        this process is an xdist worker or no cell left a result or an outcome."""
        from ..results import RunDir, environment, git_commit
        from ..results.meta import RunMeta, ShardMeta

        if self.worker_id is not None:
            return None
        path = self.run_path
        if not ((path / "results.jsonl").exists() or (path / "outcomes.jsonl").exists()):
            return None
        run = RunDir.open(path)
        results = run.results()
        done = Finished(run_path=path, results=results)
        run.write_csv(results)
        if results:
            done.gate_summary = self._finish_gate(results, run.path)
        where = "session"
        if self.sharded:
            where = "deferred"
        elif self.task_analyses_deferred and results:
            where = "controller"
            self._run_task_analyses(run, done)
        done.failure = _all_skipped(run.outcomes())
        if done.gate_summary is not None and not self.sharded:  # the comparisons ran here: judge the controls
            done.gate_summary = self.gate.with_controls(done.gate_summary, run.path)
            done.gate_summary.write(run.path / "gate.json")
            controls = done.gate_summary.controls
            if controls is not None and controls.failed:
                done.failure = done.failure or controls.reason().splitlines()[0]
        s = self.settings
        shard = None
        if self.sharded:
            cells, digest = self.shard()
            assert s.shard is not None  # sharded
            k, n = s.shard
            shard = ShardMeta(index=k, count=n, split_sha256=digest, cells=tuple(c.id for c in cells))
        RunMeta.of(self.run_id, results, exitstatus=1 if done.failure else int(exitstatus), seeds=s.seeds,
                   probes=s.probes, n_boot=s.n_boot, environment=environment(), git_commit=git_commit(),
                   shard=shard, task_analyses=where).write(run)
        from ..report import write_report

        done.report_path = write_report(run.path)  # assembles what cells and analyses stored
        run.link_latest()
        if not isinstance(s.reports_dir, Path):
            from ..results.run import upload_run

            done.uploaded = upload_run(run, s.reports_dir / self.run_id)
        self.finished = done
        return done

    def _finish_gate(self, results: list[CellResult], run_path: Path) -> GateSummary:
        """Baseline updates and obtained files for the cells that ran in this session; ``gate.json``."""
        from ..gate.session import GateSummary

        try:
            summary = self.gate.finish([r for r in results if r.cell_id in self.cell_ids], self.test_shas)
        except EcgfmError as exc:
            summary = GateSummary(errors={"all models": str(exc)})
        summary.write(run_path / "gate.json")
        return summary

    def _run_task_analyses(self, run: RunDir, done: Finished) -> None:
        from ..report.figures import figures_for
        from .analyses import run_task_analyses

        try:
            done.task_analyses = run_task_analyses(run, n_boot=self.settings.n_boot, draw=figures_for)
        except EcgfmError as exc:
            done.task_analyses_error = str(exc)

    def summary_lines(self, *, width: int | None = None,
                      skips: Mapping[str, int] | None = None) -> list[tuple[str | None, str]]:
        """The run's last screen: (section title or None, line) pairs. The compact leaderboard (a row per task and
        level, a column per model, ★ best, ≈ not significantly worse; CIs dropped when wider than ``width``),
        the gate, the skipped tests counted by reason (``skips``: reason → count; the reasons in full stay
        with ``-rs`` and in the report) and the paths."""
        done = self.finished
        if done is None:
            return []
        from ..report.build import leaderboard_rows
        from ..report.tables import format_leaderboard

        rows = leaderboard_rows(done.run_path) if done.results else []
        lines: list[tuple[str | None, str]] = [("ecgfm-suite leaderboard", "")]
        lines += [(None, line) for line in format_leaderboard(rows, "text", width).splitlines()]
        if rows:
            lines.append((None, "★ best per row, ≈ not significantly worse than the best, ✗ failing"))
        if done.gate_summary is not None:
            lines.append(("ecgfm-suite gate", ""))
            lines += [(None, line) for line in done.gate_summary.lines()]
        if done.task_analyses_error:
            lines.append((None, f"per-task analyses failed on the controller: {done.task_analyses_error}"))
        elif done.task_analyses is not None:
            lines.append((None, f"per-task analyses ran on the controller after the workers "
                                f"({len(done.task_analyses)} skipped, reasons in the report)"))
        if self.sharded:
            lines.append((None, "per-task analyses (CKA, label efficiency, comparisons) run when "
                                "`ecgfm-suite merge` joins the shard runs"))
        if skips:
            lines.append(("ecgfm-suite skipped", ""))
            limit = (width or 120) - 9
            for reason, n in sorted(skips.items(), key=lambda kv: (-kv[1], kv[0]))[:SKIP_REASONS]:
                text = " ".join(reason.split())
                lines.append((None, f"{n:5d} × {text if len(text) <= limit else text[:limit - 1] + '…'}"))
            if len(skips) > SKIP_REASONS:
                lines.append((None, f"  and {len(skips) - SKIP_REASONS} more reasons"))
            where = f" and in {done.report_path}" if done.report_path is not None else ""
            lines.append((None, f"{sum(skips.values())} skipped in all: every reason with -rs{where}"))
        if done.failure:
            lines.append((None, f"ecgfm-suite: FAILED: {done.failure}"))
        if done.results:
            lines.append((None, f"results: {done.run_path / 'results.jsonl'}"))
        if done.report_path is not None:
            lines.append((None, f"report: {done.report_path}"))
        lines.append((None, f"run dir: {done.run_path} (also {self.reports_dir / 'latest'})"))
        if done.uploaded is not None:
            lines.append((None, f"uploaded: {done.uploaded}"))
        return lines

