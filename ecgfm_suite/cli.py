"""``ecgfm-suite`` command line: thin handlers over the library (heavy imports inside each)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import EcgfmError

ROOT = Path(__file__).resolve().parents[1]

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

    return int(pytest.main(["--rootdir", str(ROOT), "-c", str(ROOT / "pytest.ini"), *args]))


def cmd_run(ns: argparse.Namespace, extra: list[str]) -> int:
    """The default benchmark job: every available model × task × default scarcity × 3 seeds."""
    return _pytest([str(ROOT / "benchmarks"), *extra])


def cmd_test(ns: argparse.Namespace, extra: list[str]) -> int:
    """Unit/property/integration tests plus a small real benchmark slice, in one pytest session."""
    return _pytest([str(ROOT / "tests"), str(ROOT / "benchmarks" / "test_matrix.py"), *TEST_SLICE, *extra])


def cmd_bench(ns: argparse.Namespace, extra: list[str]) -> int:
    """pytest-benchmark speed benchmarks (benchmarks/bench_*.py)."""
    files = sorted(str(p) for p in (ROOT / "benchmarks").glob("bench_*.py"))
    return _pytest([*files, "--benchmark-only", "--benchmark-columns=min,mean,max,rounds", *extra])


def cmd_datasets(ns: argparse.Namespace, extra: list[str]) -> int:
    from .data.summary import summarise
    from .settings import resolve

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
        for task, counts in d["tasks"].items():
            print(f"    {task}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for task, reason in d.get("skipped_tasks", {}).items():
            print(f"    {task}: skipped ({reason})")
    return 0


def cmd_models(ns: argparse.Namespace, extra: list[str]) -> int:
    from .runner import model_plans
    from .settings import resolve

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
    import numpy as np

    from ._io import atomic_open
    from .embeddings.encode import embed_array
    from .registry import resolve as resolve_target
    from .runner import model_plans
    from .settings import resolve

    settings = resolve(cli={"checkpoints": f"{ns.model}={ns.checkpoint}" if ns.checkpoint else None})
    plans = model_plans(settings)
    if ns.model not in plans:
        raise EcgfmError(f"unknown model {ns.model!r} (known: {', '.join(sorted(plans))})")
    plan = plans[ns.model]
    config = json.loads(ns.config) if ns.config else None
    loader = resolve_target(plan.spec.loader)
    encoder = loader(plan.spec, plan.checkpoint, config=config, device=settings.resolved_device())
    x = np.load(ns.input, allow_pickle=False)
    if x.ndim != 3:
        raise EcgfmError(f"expected an array (N, leads, samples), got shape {x.shape}", ns.input)
    leads = tuple(ns.leads.split(",")) if ns.leads else None
    if leads is None:
        from .data.records import STD_LEADS

        leads = STD_LEADS[: x.shape[1]]
    if len(leads) != x.shape[1]:
        raise EcgfmError(f"--leads names {len(leads)} leads but the array has {x.shape[1]}", ns.input)
    emb = embed_array(encoder, x, ns.fs, leads)
    with atomic_open(ns.output, "wb") as fh:
        np.save(fh, emb, allow_pickle=False)
    print(f"wrote {emb.shape} embeddings to {ns.output}")
    return 0


def cmd_download(ns: argparse.Namespace, extra: list[str]) -> int:
    from .data.download import download
    from .settings import resolve

    data_dir = Path(ns.data_dir).expanduser() if ns.data_dir else resolve().data_dir
    paths = download(ns.datasets, data_dir, base_url=ns.base_url)
    print(f"downloaded {len(paths)} files into {data_dir}")
    return 0


def cmd_compare(ns: argparse.Namespace, extra: list[str]) -> int:
    """Gate stored results: B against A per cell; exit 1 on a regression or an incomparable cell."""
    from .gate.compare import compare_paths, dumps

    thresholds = Path(ns.thresholds) if ns.thresholds else ROOT / "benchmarks" / "thresholds.yml"
    result = compare_paths(Path(ns.run_a), Path(ns.run_b), thresholds)
    print(dumps(result) if ns.json else result.table())
    return 1 if result.failed else 0


def cmd_merge(ns: argparse.Namespace, extra: list[str]) -> int:
    """Join shard runs into one run directory, report and leaderboard; exit 1 when cells are missing."""
    from .results.leaderboard import leaderboard_text
    from .results.merge import merge_runs
    from .results.run import staged_run
    from .storage import location

    plan = None
    if ns.plan:
        plan = [line.strip() for line in Path(ns.plan).read_text().splitlines() if line.strip()]
    where = location(ns.output)
    with staged_run(where) as out:  # a URL output is written here, then uploaded with run.json last
        merged = merge_runs(ns.runs, out, plan=plan)
        print(leaderboard_text(merged.results))
        print(f"merged {len(merged.results)} cells from {len(merged.sources)} runs into {where}")
        if not ns.no_report:
            from .report import write_report

            print(f"report: {where / write_report(out).relative_to(out).as_posix()}")
    if merged.missing:
        print(f"{len(merged.missing)} cell(s) missing: {', '.join(merged.missing)}", file=sys.stderr)
        return 0 if ns.allow_missing else 1
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
    sub.add_parser("models", help="list registered models and where their weights are expected").set_defaults(func=cmd_models)
    sub.add_parser("tasks", help="list registered tasks").set_defaults(func=cmd_tasks)
    p = sub.add_parser("embed", help="embed raw ECG arrays with a model's own preprocessing")
    p.add_argument("--model", required=True)
    p.add_argument("--checkpoint")
    p.add_argument("--config", help="JSON object overriding the family's architecture sizes")
    p.add_argument("--input", required=True, help=".npy array (N, leads, samples) in mV")
    p.add_argument("--fs", required=True, type=float, help="sampling rate of --input in Hz")
    p.add_argument("--leads", help="comma list of the input's lead names (default: the first N standard leads)")
    p.add_argument("--output", required=True)
    p.set_defaults(func=cmd_embed)
    p = sub.add_parser("compare", help="compare two stored runs cell by cell with CIs; exit 1 on a regression")
    p.add_argument("run_a", metavar="RUN_A", help="reference: run directory, its results.jsonl, or a baseline <model>.yml")
    p.add_argument("run_b", metavar="RUN_B", help="candidate, judged against RUN_A (same kinds of path)")
    p.add_argument("--thresholds", help="thresholds file whose gate: section sets the tolerances "
                                        "(default: benchmarks/thresholds.yml of this checkout)")
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
