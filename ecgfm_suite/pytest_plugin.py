"""pytest plugin (``pytest11`` entry point): options, cell parametrization, fixtures, summary.

No logic lives here: the library's ``Runner`` plans and runs cells. Collection imports no torch;
a cell whose data or weights are absent is still collected and skipped at setup with the path.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path
from typing import Any

import pytest

from .errors import EcgfmError, SpecError
from .settings import OPTIONS, Settings, resolve

CELL_FIXTURE = "ecgfm_cell"
#: the per-task analyses' test (benchmarks/test_representation.py): under xdist its workers skip it and the
#: controller runs those analyses at session end, once every worker's cells are in
TASK_ANALYSIS_TEST = "test_task_analysis"


class BenchSession:
    """Per-pytest-session state, kept in ``config.stash``."""

    def __init__(self, config: pytest.Config, settings: Settings, run_id: str) -> None:
        self.config = config
        self.settings = settings
        self.run_id = run_id
        self._runner: Any = None
        self._run_dir: Any = None
        self._gate: Any = None
        self.ran_cells = False
        self.report_path: Path | None = None
        self.uploaded: Any = None  # the run's URL once uploaded (a URL --ecgfm-reports-dir)
        #: ids of the cells whose test ran in this session (reported by workers too): the gate's scope
        self.cell_ids: set[str] = set()
        #: cell id → digest of its test records (from the verdicts' properties) / keys awaiting check()
        self.test_shas: dict[str, str] = {}
        self._test_keys: dict[str, Any] = {}
        self.gate_summary: Any = None
        self._plan: list[Any] | None = None
        self._shard: tuple[list[Any], str] | None = None
        #: node id → cell of the tests this process collected (a worker's own; none on an xdist controller)
        self._cells: dict[str, Any] = {}
        self._outcomes: dict[str, dict[str, Any]] = {}
        #: the controller saw a worker skip the per-task analyses: they run here at session end
        self.task_analyses_deferred = False
        self.task_analyses: dict[str, Any] | None = None

    def plan(self) -> list[Any]:
        """The selected cells (planned once per session)."""
        if self._plan is None:
            try:
                self._plan = self.runner.plan()
            except EcgfmError as exc:
                raise pytest.UsageError(f"ecgfm-suite: {exc}") from None
        return self._plan

    def shard(self) -> tuple[list[Any], str]:
        """This job's cells under ``--ecgfm-shard K/N`` and the split's digest; computed once, before any cell runs."""
        if self._shard is None:
            from .shard import assign_shards, cell_cost, recorded_encode_rates, shard_digest

            k, n = self.settings.shard  # type: ignore[misc]
            cells = self.plan()
            records = self.runner.record_counts(sorted({c.task for c in cells}))
            rates = recorded_encode_rates(self.settings.cache_dir, as_of=self.settings.shard_as_of)
            shards = assign_shards(cells, n, cell_cost(records, rates))
            self._shard = (shards[k - 1], shard_digest(shards))
        return self._shard

    @property
    def runner(self) -> Any:
        if self._runner is None:
            from .runner import Runner

            self._runner = Runner(self.settings, worker_id=_worker_id(self.config))
        return self._runner

    @property
    def run_dir(self) -> Any:
        if self._run_dir is None:
            from .results import RunDir

            self._run_dir = RunDir.create(self.reports_dir, self.run_id)
        return self._run_dir

    @property
    def reports_dir(self) -> Path:
        return self._rooted(self.settings.local_reports_dir)  # a URL reports dir: staged here, uploaded at the end

    def _rooted(self, path: Path) -> Path:
        return path if path.is_absolute() else Path(self.config.rootpath) / path

    @property
    def gate(self) -> Any:
        if self._gate is None:
            from .gate.session import Gate

            self._gate = Gate(thresholds=Path(self.config.rootpath) / "benchmarks" / "thresholds.yml",
                              baselines_dir=self._rooted(self.settings.baselines_dir),
                              update=self.settings.update_baselines)
        return self._gate

    def run(self, cell: Any, encoder: Any) -> Any:
        from .runner import CellSkip, run_cell

        try:
            out = run_cell(self.runner, cell, encoder)
        except CellSkip as exc:
            pytest.skip(str(exc))
        self.run_dir.save_scores(cell.id, keys=out.test_keys, y_test=out.y_test, scores=out.test_scores)
        self.run_dir.append(out.result)
        self._test_keys[cell.id] = out.test_keys
        self.ran_cells = True
        return out.result

    def check(self, cell: Any, result: Any) -> Any:
        """The cell's gate verdict (floor, regression vs baseline): ``.failures``, ``.properties()``."""
        return self.gate.check(cell, result, self._test_keys.pop(cell.id, None))

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        callspec = getattr(item, "callspec", None)
        cell = callspec.params.get(CELL_FIXTURE) if callspec is not None else None
        if cell is not None:
            self._cells[item.nodeid] = cell

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Reports arrive here from xdist workers too: which cells ran, on which test records."""
        props = dict(report.user_properties)
        cell_id = props.get("ecgfm_cell")
        if report.when == "call" and cell_id:
            self.cell_ids.add(str(cell_id))
            if props.get("ecgfm_test_records_sha256"):
                self.test_shas[str(cell_id)] = str(props["ecgfm_test_records_sha256"])
        if getattr(report, "node", None) is not None and _function(report.nodeid) == TASK_ANALYSIS_TEST:
            self.task_analyses_deferred = True  # a worker's report (xdist sets .node on the controller)
        if report.nodeid in self._cells:
            self._note_outcome(report)

    def _note_outcome(self, report: pytest.TestReport) -> None:
        """Fold a cell test's setup/call/teardown reports into one outcome; at teardown append it to
        ``outcomes.jsonl`` (the process that ran the test writes it: a worker under xdist)."""
        state = self._outcomes.setdefault(report.nodeid, {"outcome": "passed", "reason": None, "duration_s": 0.0})
        state["duration_s"] += report.duration
        if report.failed and report.when != "call":
            if state["outcome"] not in ("failed", "error"):
                state.update(outcome="error", reason=outcome_reason(report))
        elif report.when == "call" or report.skipped:
            state.update(outcome=report.outcome, reason=None if report.passed else outcome_reason(report))
        if report.when == "teardown":
            del self._outcomes[report.nodeid]
            cell = self._cells[report.nodeid]
            self.run_dir.append_outcome({
                "cell_id": cell.id, "model": cell.model, "task": cell.task, "scarcity": cell.scarcity,
                **state, "duration_s": round(state["duration_s"], 3), "nodeid": report.nodeid,
                "worker": _worker_id(self.config),
            })

    def run_task_analyses(self, run: Any) -> None:
        """The per-task analyses (CKA, label efficiency, comparisons) on the controller, after all workers."""
        from .analysis.stage import run_task_analyses
        from .report.figures import figures_for

        try:
            self.task_analyses = {"skipped": run_task_analyses(run, n_boot=self.settings.n_boot, draw=figures_for)}
        except EcgfmError as exc:
            self.task_analyses = {"error": str(exc)}

    def finish_gate(self, results: list[Any], run_path: Path) -> None:
        """Baseline updates and obtained files for the cells that ran in this session; ``gate.json``."""
        from .gate.session import GateSummary

        try:
            self.gate_summary = self.gate.finish([r for r in results if r.cell_id in self.cell_ids], self.test_shas)
        except EcgfmError as exc:
            self.gate_summary = GateSummary(errors={"all models": str(exc)})
        self.gate_summary.write(run_path / "gate.json")


KEY = pytest.StashKey[BenchSession]()


def _worker_id(config: pytest.Config) -> str | None:
    """This process's pytest-xdist worker id (``gw0``…), None on the controller or without xdist."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput["workerid"] if workerinput else None


def _function(nodeid: str) -> str:
    """The test function of a node id (``path::test_name[params]`` → ``test_name``)."""
    return nodeid.rsplit("::", 1)[-1].split("[", 1)[0]


def outcome_reason(report: pytest.TestReport) -> str | None:
    """What a cell's report says: the skip reason, the gate's failure message, or the error's message."""
    longrepr = report.longrepr
    if longrepr is None:
        return None
    if isinstance(longrepr, tuple):  # a skip: (path, lineno, "Skipped: <reason>")
        return str(longrepr[2]).removeprefix("Skipped: ")
    if isinstance(longrepr, str):  # pytest.fail(..., pytrace=False): the message itself
        return longrepr
    crash = getattr(longrepr, "reprcrash", None)  # an exception: its message ("Failed: " of pytest.fail dropped)
    return crash.message.removeprefix("Failed: ") if crash is not None else report.longreprtext


class HtmlSummaryLink:
    """Links our report from pytest-html's summary; registered only where pytest-html is loaded (its hook)."""

    def __init__(self, bench: BenchSession) -> None:
        self.bench = bench

    def pytest_html_results_summary(self, prefix: list[str]) -> None:
        if self.bench.report_path is None:
            return
        from .report import html_link

        config = self.bench.config
        html_path = config.getoption("htmlpath", None)
        from_dir = None
        if html_path:  # resolved as pytest-html does (relative to the invocation directory)
            page = Path(os.path.expandvars(html_path)).expanduser()
            from_dir = (Path(config.invocation_params.dir) / page).parent
        prefix.append(html_link(self.bench.report_path.parent, from_dir))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ecgfm", "ecgfm-suite: benchmark ECG foundation models")
    for opt in OPTIONS:
        help_text = f"{opt.help} [env {opt.env}; default: {opt.default if opt.default is not None else 'auto'}]"
        if opt.flag:
            group.addoption(opt.cli, action="store_true", default=None, dest=f"ecgfm_{opt.dest}", help=help_text)
        elif opt.bare:
            group.addoption(opt.cli, nargs="?", const=opt.bare, default=None, dest=f"ecgfm_{opt.dest}",
                            metavar=opt.dest.upper(), help=help_text)
        else:
            group.addoption(opt.cli, action="append" if opt.multiple else "store", default=None,
                            dest=f"ecgfm_{opt.dest}", metavar=opt.dest.upper(), help=help_text)
        parser.addini(opt.ini, help=opt.help, default=None)


def _settings(config: pytest.Config) -> Settings:
    cli = {opt.dest: config.getoption(f"ecgfm_{opt.dest}") for opt in OPTIONS}
    ini = {opt.dest: config.getini(opt.ini) for opt in OPTIONS}
    return resolve(cli, ini)


def pytest_configure(config: pytest.Config) -> None:
    from .results.run import new_run_id

    try:
        settings = _settings(config)
        _validate_names(settings)
    except EcgfmError as exc:
        raise pytest.UsageError(f"ecgfm-suite: {exc}") from None
    workerinput = getattr(config, "workerinput", None)
    run_id = workerinput["ecgfm_run_id"] if workerinput else (settings.run_id or new_run_id())
    config.stash[KEY] = BenchSession(config, settings, run_id)
    config.pluginmanager.register(config.stash[KEY], "ecgfm-bench-session")
    if not workerinput and config.pluginmanager.hasplugin("html"):  # pytest-html is optional
        config.pluginmanager.register(HtmlSummaryLink(config.stash[KEY]), "ecgfm-html-link")
    config.addinivalue_line("markers", "ecgfm_cell: a benchmark cell (model × task × scarcity)")


def _validate_names(settings: Settings) -> None:
    """Unknown model/task/scarcity names are usage errors before anything runs."""
    if settings.scarcity:
        from .data.scarcity import parse_level

        for level in settings.scarcity:
            parse_level(level)
    if settings.tasks:
        from .data.tasks import TASKS

        for task in settings.tasks:
            TASKS.get(task)
    if settings.models:
        from .runner import model_plans

        plans = model_plans(settings)
        for model in settings.models:
            if model not in plans:
                raise SpecError(f"--ecgfm-models: unknown model {model!r} (known: {', '.join(sorted(plans))})")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller → workers: share one run id so all cells land in one run directory."""
    node.workerinput["ecgfm_run_id"] = node.config.stash[KEY].run_id


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if CELL_FIXTURE not in metafunc.fixturenames:
        return
    cells = metafunc.config.stash[KEY].plan()
    # xdist_group: with `-n N --dist loadgroup` all cells of a model go to one worker (one load per model)
    metafunc.parametrize(
        ["ecgfm_model", CELL_FIXTURE],
        [pytest.param(c.model, c, id=c.id, marks=pytest.mark.xdist_group(c.model)) for c in cells],
        indirect=["ecgfm_model"],
        scope="session",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under a shard, fix the split before any cell fills the cache (the costs read its recorded timings)."""
    bench = session.config.stash.get(KEY, None)
    if bench is not None and bench.settings.shard is not None:
        bench.shard()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--ecgfm-shard K/N``: deselect the cells of other shards (``-k``/``-m`` then select within this one)."""
    bench = config.stash.get(KEY, None)
    if bench is None or bench.settings.shard is None:
        return
    mine = {c.id for c in bench.shard()[0]}
    keep, other = [], []
    for item in items:
        cell = getattr(item, "callspec", None) and item.callspec.params.get(CELL_FIXTURE)
        (other if cell is not None and cell.id not in mine else keep).append(item)
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = keep


@pytest.fixture(scope="session")
def ecgfm_session(request: pytest.FixtureRequest) -> BenchSession:
    return request.config.stash[KEY]


@pytest.fixture(scope="session")
def ecgfm_model(request: pytest.FixtureRequest, ecgfm_session: BenchSession) -> Any:
    """One encoder at a time: cells are grouped per model; teardown frees it before the next."""
    from .runner import CellSkip

    model_id = request.param
    try:  # a broken thresholds or baseline file errors the model's cells before anything is encoded
        ecgfm_session.gate.validate([model_id])
        broken = None
    except EcgfmError as exc:
        broken = f"ecgfm-suite: {exc}"
    if broken:
        pytest.fail(broken, pytrace=False)
    try:
        encoder = ecgfm_session.runner.load_encoder(model_id)
    except CellSkip as exc:
        pytest.skip(str(exc))
    yield encoder
    ecgfm_session.runner.release_model(model_id)
    del encoder
    gc.collect()


def _controller_run(config: pytest.Config) -> tuple[Any, Path | None]:
    """(session, run directory) on the controlling process of a run whose cells left results or test
    outcomes (skips included), else (…, None)."""
    if hasattr(config, "workerinput") or KEY not in config.stash:
        return None, None
    bench = config.stash[KEY]
    path = bench.reports_dir / bench.run_id
    written = (path / "results.jsonl").exists() or (path / "outcomes.jsonl").exists()
    return bench, path if written else None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    bench, run_path = _controller_run(config)
    if run_path is None:
        return
    from .results import RunDir, environment, git_commit

    run = RunDir.open(run_path)
    results = run.results()
    run.write_csv(results)
    if results:
        bench.finish_gate(results, run.path)
    if bench.task_analyses_deferred and results:
        bench.run_task_analyses(run)
    s = bench.settings
    run.write_meta({
        "run_id": bench.run_id, "cells": len(results), "exitstatus": int(exitstatus),
        "seeds": list(s.seeds), "probes": list(s.probes), "n_boot": s.n_boot,
        "models": {r.model: r.checkpoint_sha256 for r in results},
        "dataset_versions": {k: v for r in results for k, v in r.dataset_versions.items()},
        "environment": environment(), "git_commit": git_commit(),
        **({"shard": _shard_meta(bench)} if s.shard else {}),
    })
    from .report import write_report

    bench.report_path = write_report(run.path)  # assembles what cells and analyses stored; no heavy work
    run.link_latest()
    if not isinstance(s.reports_dir, Path):
        from .results.run import upload_run

        try:
            bench.uploaded = upload_run(run, s.reports_dir / bench.run_id)
        except EcgfmError as exc:
            pytest.exit(f"ecgfm-suite: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)


def _shard_meta(bench: BenchSession) -> dict[str, Any]:
    """What ``merge`` needs to check a shard run: its place in the split and the cells assigned to it."""
    cells, digest = bench.shard()
    k, n = bench.settings.shard  # type: ignore[misc]
    return {"index": k, "count": n, "split_sha256": digest, "cells": [c.id for c in cells]}


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    bench, run_path = _controller_run(config)
    if run_path is None:
        return
    from .results import RunDir
    from .results.leaderboard import leaderboard_text

    results = RunDir.open(run_path).results()
    terminalreporter.section("ecgfm-suite leaderboard")
    for line in leaderboard_text(results).splitlines():
        terminalreporter.write_line(line)
    if bench.gate_summary is not None:
        terminalreporter.section("ecgfm-suite gate")
        for line in bench.gate_summary.lines():
            terminalreporter.write_line(line)
    if bench.task_analyses is not None:
        error, skipped = bench.task_analyses.get("error"), bench.task_analyses.get("skipped") or {}
        terminalreporter.write_line(f"per-task analyses failed on the controller: {error}" if error else
                                    f"per-task analyses ran on the controller after the workers ({len(skipped)} "
                                    "skipped, reasons in the report)")
    if results:
        terminalreporter.write_line(f"results: {run_path / 'results.jsonl'}")
    if bench.report_path is not None:
        terminalreporter.write_line(f"report: {bench.report_path}")
    terminalreporter.write_line(f"run dir: {run_path} (also {bench.reports_dir / 'latest'})")
    if bench.uploaded is not None:
        terminalreporter.write_line(f"uploaded: {bench.uploaded}")


def junit_properties(result: Any) -> list[tuple[str, str]]:
    """Cell metrics as JUnit XML properties, so CI systems show them."""
    props = [("ecgfm_cell", result.cell_id), ("ecgfm_main_metric", result.main_metric)]
    for name, m in result.metrics.items():
        props.append((f"ecgfm_{name}", json.dumps({"value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high})))
    return props
