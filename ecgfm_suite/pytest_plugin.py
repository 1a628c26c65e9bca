"""pytest plugin (``pytest11`` entry point): options, parametrization, selection, fixtures, summary.

A thin shell: every hook is a call into the engine's ``RunSession``, which plans, runs and finishes the
run without pytest. Collection imports no torch; a cell whose data or weights are absent is still
collected and skipped at setup with the path it expected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .engine.analyses import Target, pairs_of, target_id, task_targets
from .engine.session import Phase, RunSession
from .engine.settings import OPTIONS, Settings, resolve
from .engine.validate import validate
from .errors import EcgfmError

if TYPE_CHECKING:  # type-only: collection imports no model
    from .models.protocol import Encoder
    from .results.cell import CellResult, CellSpec, MetricSummary

T = TypeVar("T")

CELL_FIXTURE = "ecgfm_cell"
#: the analyses' fixtures (``benchmarks/test_representation.py``): (model, task, analysis) and (analysis, task, level)
PAIR_ANALYSIS = "ecgfm_pair_analysis"
TASK_ANALYSIS = "ecgfm_task_analysis"
#: the user property a per-task analysis test records on an xdist worker, before leaving it to the controller
DEFERRED_PROPERTY = "ecgfm_task_analysis_deferred"

KEY = pytest.StashKey[RunSession]()


def _worker_id(config: pytest.Config) -> str | None:
    """This process's pytest-xdist worker id (``gw0``…), None on the controller or without xdist."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput["workerid"] if workerinput else None


def _usage(func: Callable[..., T], *args: Any) -> T:
    """A library call whose EcgfmError is the user's mistake: a one-line usage error, no traceback."""
    try:
        return func(*args)
    except EcgfmError as exc:
        raise pytest.UsageError(f"ecgfm-suite: {exc}") from None


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


def _param(item: pytest.Item, name: str) -> Any:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get(name) if callspec is not None else None


class _Reports:
    """Test reports (from xdist workers too) → the session: which cells ran, each cell test's outcome."""

    def __init__(self, session: RunSession) -> None:
        self.session = session
        #: node id → cell of the cell tests this process collected (a worker's own; none on an xdist controller)
        self.cells: dict[str, CellSpec] = {}

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        cell = _param(item, CELL_FIXTURE)
        if cell is not None:
            self.cells[item.nodeid] = cell

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if report.when == "call" and props.get("ecgfm_cell"):
            sha = props.get("ecgfm_test_records_sha256")
            self.session.saw_cell(str(props["ecgfm_cell"]), str(sha) if sha else None)
        if DEFERRED_PROPERTY in props and getattr(report, "node", None) is not None:
            self.session.task_analyses_deferred = True  # a worker's report (xdist sets .node on the controller)
        if report.nodeid in self.cells:
            reason = None if report.passed else outcome_reason(report)
            phase = Phase(report.when, report.outcome, reason, report.duration)
            self.session.fold(report.nodeid, self.cells[report.nodeid], phase)


class HtmlSummaryLink:
    """Links our report from pytest-html's summary; registered only where pytest-html is loaded (its hook)."""

    def __init__(self, config: pytest.Config, session: RunSession) -> None:
        self.config = config
        self.session = session

    def pytest_html_results_summary(self, prefix: list[str]) -> None:
        done = self.session.finished
        if done is None or done.report_path is None:
            return
        from .report import html_link

        html_path = self.config.getoption("htmlpath", None)
        from_dir = None
        if html_path:  # resolved as pytest-html does (relative to the invocation directory)
            page = Path(os.path.expandvars(html_path)).expanduser()
            from_dir = (Path(self.config.invocation_params.dir) / page).parent
        prefix.append(html_link(done.report_path.parent, from_dir))


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
    settings = resolve(cli, ini)
    validate(settings)
    return settings


def pytest_configure(config: pytest.Config) -> None:
    from .results.run import new_run_id

    settings = _usage(_settings, config)
    workerinput = getattr(config, "workerinput", None)
    run_id = workerinput["ecgfm_run_id"] if workerinput else (settings.run_id or new_run_id())
    session = RunSession(settings, run_id, rootdir=Path(config.rootpath), worker_id=_worker_id(config))
    config.stash[KEY] = session
    if not workerinput:
        _usage(session.thresholds_path)  # a thresholds file the user named and that is absent: stop now
    config.pluginmanager.register(_Reports(session), "ecgfm-reports")
    config.pluginmanager.register(_AnalysisSelection(session), "ecgfm-analysis-selection")
    if not workerinput and config.pluginmanager.hasplugin("html"):  # pytest-html is optional
        config.pluginmanager.register(HtmlSummaryLink(config, session), "ecgfm-html-link")
    config.addinivalue_line("markers", "ecgfm_cell: a benchmark cell (model × task × scarcity)")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller → workers: share one run id so all cells land in one run directory."""
    node.workerinput["ecgfm_run_id"] = node.config.stash[KEY].run_id


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Cells and analyses from the plan; selection (``-k``, shard, ``--lf``) happens after collection."""
    wanted = {CELL_FIXTURE, PAIR_ANALYSIS, TASK_ANALYSIS} & set(metafunc.fixturenames)
    if not wanted:
        return
    plan = _usage(metafunc.config.stash[KEY].plan)
    # xdist_group: with `-n N --dist loadgroup` a model's cells and analyses go to one worker (one load per model)
    if CELL_FIXTURE in wanted:
        metafunc.parametrize(
            ["ecgfm_model", CELL_FIXTURE],
            [pytest.param(c.model, c, id=c.id, marks=pytest.mark.xdist_group(c.model)) for c in plan],
            indirect=["ecgfm_model"], scope="session")
    elif PAIR_ANALYSIS in wanted:
        from .analysis.registry import pair_analyses

        metafunc.parametrize(PAIR_ANALYSIS, [
            pytest.param((m, t, name), id=f"{m}-{t}-{name}", marks=pytest.mark.xdist_group(m))
            for m, t in pairs_of(plan) for name in pair_analyses(t)])
    else:
        targets = task_targets(plan)
        metafunc.parametrize(TASK_ANALYSIS, targets, ids=[target_id(t) for t in targets])


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under a shard, fix the split before any cell fills the cache (the costs read its recorded timings)."""
    run = session.config.stash.get(KEY, None)
    if run is not None and run.sharded:
        _usage(run.shard)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--ecgfm-shard K/N``: deselect the cells of other shards (``-k``/``-m`` then select within this one)."""
    run = config.stash.get(KEY, None)
    if run is None or not run.sharded:
        return
    _deselect(config, items, lambda item: (cell := _param(item, CELL_FIXTURE)) is None or run.in_shard(cell))


def _deselect(config: pytest.Config, items: list[pytest.Item], keep: Callable[[pytest.Item], bool]) -> None:
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (kept if keep(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


class _AnalysisSelection:
    """A plugin object, as a module has one implementation of a hook (the shard's runs first).

    After every other selection (``-k``, ``-m``, ``--lf``, the shard): the analyses follow the cells this
    process will run, and run after them (cells, then pairs' analyses, then per-task analyses)."""

    def __init__(self, session: RunSession) -> None:
        self.session = session

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        run = self.session
        cells = [c for item in items if (c := _param(item, CELL_FIXTURE)) is not None]
        run.select(cells)
        pairs = set(pairs_of(run.selected))
        targets: set[Target] = set(task_targets(run.selected)) if run.task_analyses_here() or run.worker_id else set()

        def keep(item: pytest.Item) -> bool:
            pair = _param(item, PAIR_ANALYSIS)
            if pair is not None:
                return (pair[0], pair[1]) in pairs
            target = _param(item, TASK_ANALYSIS)
            return target is None or target in targets

        _deselect(config, items, keep)
        rank = {CELL_FIXTURE: 0, PAIR_ANALYSIS: 1, TASK_ANALYSIS: 2}
        items.sort(key=lambda item: min((r for name, r in rank.items() if _param(item, name) is not None),
                                        default=0))


@pytest.fixture(scope="session")
def ecgfm_session(request: pytest.FixtureRequest) -> RunSession:
    return request.config.stash[KEY]


@pytest.fixture(scope="session")
def ecgfm_model(request: pytest.FixtureRequest, ecgfm_session: RunSession) -> Iterator[Encoder]:
    """One encoder at a time: cells are grouped per model; teardown frees it before the next."""
    from .errors import CellSkip

    model_id = request.param
    try:
        encoder = ecgfm_session.load_encoder(model_id)
    except CellSkip as exc:
        pytest.skip(str(exc))
    except EcgfmError as exc:  # a broken thresholds or baseline file errors the model's cells
        pytest.fail(f"ecgfm-suite: {exc}", pytrace=False)
    yield encoder
    del encoder
    ecgfm_session.release_encoder(model_id)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(KEY, None)
    if run is None:
        return
    try:
        done = run.finish(exitstatus)
    except EcgfmError as exc:
        pytest.exit(f"ecgfm-suite: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
    if done is not None and done.failure and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def skip_counts(reports: Sequence[Any]) -> dict[str, int]:
    """Skipped tests counted by reason (pytest's ``-rs`` lists them one line per place and reason)."""
    counts: dict[str, int] = {}
    for report in reports:
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        counts[reason] = counts.get(reason, 0) + 1
    return counts


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> Generator[None]:
    """After pytest's own summary (its ``-r`` lines included): the run's leaderboard, gate, skip counts and paths
    are the last screen."""
    result = yield
    run = config.stash.get(KEY, None)
    lines = [] if run is None else run.summary_lines(width=config.get_terminal_writer().fullwidth,
                                                     skips=skip_counts(terminalreporter.stats.get("skipped", [])))
    for title, line in lines:
        if title is not None:
            terminalreporter.section(title)
        else:
            terminalreporter.write_line(line)
    return result


def junit_properties(result: CellResult) -> list[tuple[str, str]]:
    """Cell metrics as JUnit XML properties, so CI systems show them.

    A multiclass/multilabel cell's per-class metrics are one JSON property, ``ecgfm_per_class`` (class →
    prevalences, AUROC/AUPRC with CI, or null with the reason it is undefined): a property per class and
    metric would swamp the XML with hundreds of entries on large label sets. Non-finite numbers are null there.
    """
    from .analysis.store import plain

    def brief(m: MetricSummary | None) -> dict[str, float] | None:
        return None if m is None else {"value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high}

    props = [("ecgfm_cell", result.cell_id), ("ecgfm_main_metric", result.main_metric)]
    for name, m in result.metrics.items():
        props.append((f"ecgfm_{name}", json.dumps(brief(m))))
    if result.per_class:
        per_class = {c.label: {"train_prevalence": c.train_prevalence, "test_prevalence": c.test_prevalence,
                               "n_test_positive": c.n_test_positive,
                               **{name: brief(m) for name, m in c.metrics.items()}, "undefined": c.undefined}
                     for c in result.per_class}
        props.append(("ecgfm_per_class", json.dumps(plain(per_class), allow_nan=False)))
    return props
