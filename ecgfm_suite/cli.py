"""``ecgfm-suite`` command line: thin handlers over the library (heavy imports inside each)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import EcgfmError

if TYPE_CHECKING:  # the CLI imports the library's layers per command
    import numpy as np

    from .results.run import RunDir


def is_checkout(folder: Path) -> bool:
    """A source tree of ecgfm-suite: the benchmark tests and their pytest.ini (a wheel ships neither)."""
    return (folder / "pytest.ini").is_file() and (folder / "benchmarks" / "test_matrix.py").is_file()


def find_checkout(package_parent: Path, cwd: Path) -> Path | None:
    """The checkout whose benchmarks/ and tests/ run, test and bench run: the one this package was imported
    from (an editable install), else the working directory or a folder above it (an installed wheel)."""
    return next((folder for folder in (package_parent, cwd, *cwd.parents) if is_checkout(folder)), None)


#: the window policies `embed --windows` accepts (``data.preprocess.WINDOW_POLICIES``; not imported: no numpy here)
WINDOW_CHOICES = ("cover", "official", "first")

ROOT = find_checkout(Path(__file__).resolve().parents[1], Path.cwd()) or Path(__file__).resolve().parents[1]

#: the real benchmark slice the test command runs after the unit tests (small, seconds per cell)
TEST_SLICE = (
    "--ecgfm-models", "random_cnn,openecg_codec_v6",
    "--ecgfm-tasks", "ludb_sex,ludb_lvh",
    "--ecgfm-scarcity", "frac100",
    "--ecgfm-seeds", "2",
    "--ecgfm-n-boot", "200",
)


def _pytest(args: list[str]) -> int:
    import pytest

    if not is_checkout(ROOT):
        raise EcgfmError(f"run, test and bench run the benchmarks/ of an ecgfm-suite checkout (an installed "
                         f"package has none): run them inside one; none at or above {Path.cwd()}")
    return int(pytest.main(["--rootdir", str(ROOT), "-c", str(ROOT / "pytest.ini"), *args]))


def cmd_run(ns: argparse.Namespace, extra: list[str]) -> int:
    """The default benchmark job: every available model × task × default scarcity × 3 seeds."""
    return _pytest([str(ROOT / "benchmarks"), *extra])


def cmd_test(ns: argparse.Namespace, extra: list[str]) -> int:
    """Unit/property/integration tests plus a small real benchmark slice, in one pytest session."""
    from .extras import require_installed

    require_installed("hypothesis", "test", "ecgfm-suite test")
    return _pytest([str(ROOT / "tests"), str(ROOT / "benchmarks" / "test_matrix.py"), *TEST_SLICE, *extra])


def cmd_bench(ns: argparse.Namespace, extra: list[str]) -> int:
    """pytest-benchmark speed benchmarks (benchmarks/bench_*.py)."""
    from .extras import require_installed

    require_installed("pytest_benchmark", "bench", "ecgfm-suite bench")
    files = sorted(str(p) for p in (ROOT / "benchmarks").glob("bench_*.py"))
    return _pytest([*files, "--benchmark-only", "--benchmark-columns=min,mean,max,rounds", *extra])


def cmd_datasets(ns: argparse.Namespace, extra: list[str]) -> int:
    from .data.summary import summarise
    from .engine.settings import resolve

    settings = resolve()
    data_dir = Path(ns.data_dir).expanduser() if ns.data_dir else settings.data_dir
    summary = summarise(data_dir, cache_dir=settings.local_cache)
    if ns.json:
        print(json.dumps(summary, indent=1, default=str))
        return 0
    if not summary:
        print(f"no datasets found below {data_dir}")
        return 1
    for d in summary:
        print(f"{d['dataset']}: {d['records']} records loaded, {len(d['excluded'])} excluded; "
              f"regions {', '.join(d['regions'])}; fs {', '.join(str(f) for f in d['sampling_rates'])} Hz")
        for ex in d["excluded"][:10]:
            print(f"    excluded {ex['record']}: {ex['reason']}")
        for table in d.get("missing_label_files", []):
            print(f"    label table missing: {table} (its tasks are skipped)")
        for task, counts in d["tasks"].items():
            print(f"    {task}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for task, reason in d.get("skipped_tasks", {}).items():
            print(f"    {task}: skipped ({reason})")
    return 0


def cmd_models(ns: argparse.Namespace, extra: list[str]) -> int:
    from .engine.runner import model_plans
    from .engine.settings import resolve

    for model_id, plan in sorted(model_plans(resolve()).items()):
        status = "control" if plan.spec.control else (f"found {plan.checkpoint}" if plan.checkpoint
                                                      else f"absent (expected {plan.expected})")
        print(f"{model_id:20s} {plan.spec.embed_dim:5d}-d  {plan.spec.licence_weights:28s} {status}")
    return 0


def cmd_tasks(ns: argparse.Namespace, extra: list[str]) -> int:
    from .data.tasks import TASKS

    for task_id, t in TASKS.items():
        print(f"{task_id:22s} {t.type:10s} {t.main_metric:6s} datasets={','.join(t.datasets)}")
    return 0


def cmd_embed(ns: argparse.Namespace, extra: list[str]) -> int:
    """Embed raw ECGs with a model's own preprocessing. Everything is checked before the model loads: a named
    checkpoint that is not there, a bad array, lead name, rate or option is a one-line error, never embeddings
    of random weights or of the wrong signal."""
    import dataclasses

    import numpy as np

    from ._io import atomic_open
    from .embeddings.encode import check_raw_input, embed_array
    from .engine.runner import model_plans
    from .engine.settings import resolve
    from .errors import CellSkip
    from .registry import resolve as resolve_target

    settings = resolve(cli={"checkpoints": f"{ns.model}={ns.checkpoint}" if ns.checkpoint else None,
                            "allow_random_init": ns.allow_random_init})
    if ns.checkpoint:  # messages name the option as typed here
        settings = dataclasses.replace(settings, sources={**settings.sources, "checkpoints": "--checkpoint"})
    plans = model_plans(settings)
    if ns.model not in plans:
        raise EcgfmError(f"unknown model {ns.model!r} (known: {', '.join(sorted(plans))})")
    plan = plans[ns.model]
    try:
        notice = plan.random_init(settings.allow_random_init)
    except CellSkip:
        raise EcgfmError(f"no checkpoint for {ns.model}: expected {plan.expected} (pass --checkpoint PATH, set "
                         "ECGFM_WEIGHTS_DIR, or --allow-random-init to embed with random weights)") from None
    config = _json_object(ns.config, "--config")
    leads = tuple(ns.leads.split(",")) if ns.leads is not None else None
    raw = check_raw_input(_load_array(ns.input), ns.fs, leads, plan.spec.input_spec, pad=ns.pad, source=ns.input)
    output = Path(ns.output).expanduser()
    if output.is_dir() or not output.parent.is_dir():
        raise EcgfmError("is a directory" if output.is_dir() else "the output's folder does not exist", ns.output)
    for line in (notice, *raw.notes):
        if line:
            print(f"ecgfm-suite: warning: {line}", file=sys.stderr)
    loader = resolve_target(plan.spec.loader)
    encoder = loader(plan.spec, plan.checkpoint, config=config, device=settings.resolved_device())
    emb = embed_array(encoder, raw.x, ns.fs, raw.leads, window_policy=ns.windows)
    try:
        with atomic_open(output, "wb") as fh:
            np.save(fh, emb, allow_pickle=False)
    except OSError as exc:
        raise EcgfmError(f"cannot write the embeddings: {exc.strerror or exc}", ns.output) from None
    print(f"wrote {emb.shape} embeddings to {ns.output}")
    return 0


def _load_array(path: str) -> np.ndarray:
    """The ``.npy`` array at ``path``: a missing, unreadable, pickled-object or non-``.npy`` file is a one-line
    error naming it (numpy's own errors would surface as a traceback)."""
    import numpy as np

    file = Path(path).expanduser()
    if not file.is_file():
        raise EcgfmError("input file does not exist" if not file.exists() else "not a file", path)
    try:
        with open(file, "rb") as fh:
            npy = fh.read(6).startswith((b"\x93NUMPY", b"PK\x03\x04"))  # numpy's header, or a zip (.npz)
        x = np.load(file, allow_pickle=False) if npy else None
    except (OSError, ValueError, EOFError) as exc:
        raise EcgfmError(f"not a readable .npy array: {' '.join(str(exc).split())}", path) from None
    if x is None:
        raise EcgfmError("not a .npy file (it lacks numpy's header)", path)
    if not isinstance(x, np.ndarray):
        x.close()
        raise EcgfmError("an .npz archive, not a .npy array", path)
    return x


def _json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """``--config``'s JSON object, or None when not given; bad JSON or another JSON type is a one-line error."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EcgfmError(f"not valid JSON: {exc}", option) from None
    if not isinstance(value, dict):
        raise EcgfmError(f"expected a JSON object of constructor arguments, got {type(value).__name__}", option)
    return value


def cmd_download(ns: argparse.Namespace, extra: list[str]) -> int:
    from .data.download import download
    from .engine.settings import resolve

    data_dir = Path(ns.data_dir).expanduser() if ns.data_dir else resolve().data_dir
    paths = download(ns.datasets, data_dir, base_url=ns.base_url)
    print(f"downloaded {len(paths)} files into {data_dir}")
    return 0


def cmd_compare(ns: argparse.Namespace, extra: list[str]) -> int:
    """Gate stored results: B against A per cell; exit 1 on a regression or an incomparable cell."""
    import warnings

    from .engine.settings import resolve
    from .gate.compare import compare_paths, dumps
    from .gate.thresholds import ThresholdsWarning, thresholds_file

    named_by: str | None
    if ns.thresholds:  # a command-line path: relative to the working directory
        path, named_by = Path(ns.thresholds).expanduser().absolute(), "--thresholds"
    else:  # ECGFM_THRESHOLDS or the default, relative to the checkout (the pytest run's rootdir)
        settings = resolve()
        path, named_by = settings.thresholds, settings.sources.get("thresholds")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ThresholdsWarning)
        thresholds = thresholds_file(path, root=ROOT, named_by=named_by)
    for warning in caught:
        print(f"ecgfm-suite: warning: {warning.message}", file=sys.stderr)
    result = compare_paths(Path(ns.run_a), Path(ns.run_b), thresholds)
    print(dumps(result) if ns.json else result.table())
    return 1 if result.failed else 0


def _task_analyses(run: RunDir, n_boot: int) -> None:
    """The analyses across models (CKA, label efficiency, comparisons): a shard holds only some models."""
    from .engine.analyses import run_task_analyses
    from .report.figures import figures_for

    run_task_analyses(run, n_boot=n_boot, draw=figures_for)


def cmd_merge(ns: argparse.Namespace, extra: list[str]) -> int:
    """Join shard runs into one run directory, report and leaderboard; exit 1 when cells are missing."""
    from .analysis.store import AnalysisStore
    from .results.leaderboard import leaderboard_text
    from .results.merge import merge_runs
    from .results.run import staged_run
    from .storage import location

    plan = None
    if ns.plan:
        plan = [line.strip() for line in Path(ns.plan).read_text().splitlines() if line.strip()]
    where = location(ns.output)
    with staged_run(where) as out:  # a URL output is written here, then uploaded with run.json last
        merged = merge_runs(ns.runs, out, plan=plan, analyse=_task_analyses)
        print(leaderboard_text(merged.results, AnalysisStore(out).entries("comparison")))
        print(f"merged {len(merged.results)} cells from {len(merged.sources)} runs into {where}")
        if not ns.no_report:
            from .report import write_report

            print(f"report: {where / write_report(out).relative_to(out).as_posix()}")
    if merged.missing:
        print(f"{len(merged.missing)} cell(s) missing: {', '.join(merged.missing)}", file=sys.stderr)
        return 0 if ns.allow_missing else 1
    return 0


def cmd_report(ns: argparse.Namespace, extra: list[str]) -> int:
    """Rebuild a run directory's HTML report (a run, or shards merged by ``merge``), or print its leaderboard as
    a Markdown or LaTeX table for a paper or a pull-request comment."""
    from .report import write_report
    from .report.build import leaderboard_rows
    from .report.tables import format_leaderboard

    run_dir = Path(ns.run_dir).expanduser()
    if ns.format == "html":
        print(f"report: {write_report(run_dir)}")
        return 0
    table = format_leaderboard(leaderboard_rows(run_dir), ns.format)
    if ns.output:
        from ._io import write_atomic

        write_atomic(Path(ns.output).expanduser(), table + "\n")
        print(f"wrote the leaderboard to {ns.output}")
    else:
        print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecgfm-suite", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the default benchmark (extra args go to pytest)").set_defaults(func=cmd_run)
    sub.add_parser("test", help="run the test suite and a small real benchmark slice").set_defaults(func=cmd_test)
    sub.add_parser("bench", help="run the pytest-benchmark speed benchmarks").set_defaults(func=cmd_bench)
    p = sub.add_parser("datasets", help="list datasets found under the data dir")
    p.add_argument("--data-dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)
    sub.add_parser("models", help="list registered models and where their weights are expected").set_defaults(
        func=cmd_models)
    sub.add_parser("tasks", help="list registered tasks").set_defaults(func=cmd_tasks)
    p = sub.add_parser("embed", help="embed raw ECG arrays with a model's own preprocessing")
    p.add_argument("--model", required=True)
    p.add_argument("--checkpoint")
    p.add_argument("--config", help="JSON object overriding the family's architecture sizes")
    p.add_argument("--input", required=True, help=".npy array (N, leads, samples) in mV")
    p.add_argument("--fs", required=True, type=float, help="sampling rate of --input in Hz")
    p.add_argument("--leads", help="comma list of the input's lead names (default: the first N standard leads)")
    p.add_argument("--pad", action="store_true",
                   help="zero-pad records shorter than the model's window, as the benchmark does (else refused)")
    p.add_argument("--windows", choices=WINDOW_CHOICES, default=None,
                   help="which windows of each record are embedded and averaged: cover (the whole record, the "
                        "benchmark's default), official (the model authors' test-time protocol) or first "
                        "(default: the model's own policy, as the benchmark embeds)")
    p.add_argument("--allow-random-init", action="store_true",
                   help="embed with random weights when the model's checkpoint is absent (printed as a warning)")
    p.add_argument("--output", required=True)
    p.set_defaults(func=cmd_embed)
    p = sub.add_parser("compare", help="compare two stored runs cell by cell with CIs; exit 1 on a regression")
    p.add_argument("run_a", metavar="RUN_A",
                   help="reference: run directory, its results.jsonl, or a baseline <model>.yml")
    p.add_argument("run_b", metavar="RUN_B", help="candidate, judged against RUN_A (same kinds of path)")
    p.add_argument("--thresholds", help="thresholds file whose gate: section sets the tolerances; must exist "
                                        "(default: ECGFM_THRESHOLDS, else benchmarks/thresholds.yml of this checkout)")
    p.add_argument("--json", action="store_true", help="print the per-cell comparison as JSON")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("merge", help="merge the run directories of shard jobs into one run, report and leaderboard")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories of the shard jobs (--ecgfm-shard K/N): paths or fsspec URLs (s3://…)")
    p.add_argument("--output", required=True, help="new run directory to write, a path (its parent gets a 'latest' "
                                                    "link) or an fsspec URL (uploaded with run.json last)")
    p.add_argument("--plan", help="text file of the expected cell ids, one per line (default: the shards' split)")
    p.add_argument("--allow-missing", action="store_true", help="exit 0 even when expected cells are missing")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.set_defaults(func=cmd_merge)
    p = sub.add_parser("report", help="rebuild a run directory's HTML report, or print its leaderboard for a paper")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory (of a run, or of merged shard runs)")
    p.add_argument("--format", choices=("html", "markdown", "latex"), default="html",
                   help="html: rewrite index.html, its pages and CSVs (default); markdown / latex: the leaderboard "
                        "table, value [95 %% CI], best in bold, ≈ not significantly worse than the best")
    p.add_argument("--output", help="file for the markdown / latex table (default: standard output)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("download", help="download public datasets into the data dir (needs network)")
    p.add_argument("datasets", nargs="+")
    p.add_argument("--data-dir")
    p.add_argument("--base-url", help="mirror root instead of the official servers")
    p.set_defaults(func=cmd_download)
    return parser


PASSTHROUGH = {"run", "test", "bench"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in PASSTHROUGH:
        ns, extra = parser.parse_args(argv[:1]), argv[1:]
    else:
        ns, extra = parser.parse_args(argv), []
    try:
        return ns.func(ns, extra)
    except EcgfmError as exc:
        print(f"ecgfm-suite: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
