"""Cost at internet scale, simulated and measured (pytest-benchmark; ``ecgfm-suite bench`` or
``pytest benchmarks/bench_scale.py --benchmark-only``).

Synthetic matrices of 1,000, 10,000 and 100,000 cells (real ``CellSpec``/``CellResult`` schema, made-up
numbers, nothing encoded). Seeds live inside a cell here (a cell fits every seed), so the issue's
50 models × 40 tasks × 10 levels × 5 seeds is 20,000 cells; the 100,000-cell matrix (250 models × 40 tasks
× 10 levels) is the harder case of 100,000 test items. Measured:

- ``test_bench_collect``: a real ``pytest --collect-only -q`` subprocess with the ecgfm plugin loaded as users
  load it (entry point): its ``pytest_generate_tests`` parametrizes ``test_cell(ecgfm_cell, ecgfm_model)`` (ids,
  ``xdist_group`` marks, session scope), its item hooks record the cells and, with ``--ecgfm-shard 1/20``, it
  plans the cost-balanced split and deselects the other shards' cells. Only the planner's answer is replaced
  (a conftest hands the session's ``Runner`` the synthetic matrix and record counts instead of scanning data).
  Target: 100,000 cells under 30 s on 2 cores.
- ``test_bench_shard_plan``: ``assign_shards`` into 20 shards (the cost-balanced split every CI job computes).
- ``test_bench_merge``: ``merge_runs`` over 20 shard run directories (results.jsonl + run.json), writing
  results.jsonl/csv/run.json. Target: 100,000 cells under 60 s on 2 cores.
- ``test_bench_report``: ``write_report`` on the merged run (with every cell's outcome): time, size of index.html
  (aggregated past ``PAGE_ROWS`` cells), its pages and the CSV tables.

Figures go to ``extra_info`` (``--benchmark-json``); each test also asserts its target.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.engine.shard import assign_shards, shard_digest
from ecgfm_suite.results.merge import merge_runs
from ecgfm_suite.results.synthetic import synthetic_matrix, synthetic_record_counts, synthetic_result

pytestmark = pytest.mark.slow

#: cells → (models, tasks, levels)
SIZES = {1_000: (25, 20, 2), 10_000: (50, 40, 5), 100_000: (250, 40, 10)}
SEEDS = (0, 1, 2, 3, 4)
N_SHARDS = 20
COLLECT_TARGET_S = 30.0
MERGE_TARGET_S = 60.0

#: the synthetic planner: the plugin's own session, whose Runner answers with the synthetic matrix
COLLECT_CONFTEST = '''
import pytest
from ecgfm_suite.pytest_plugin import KEY
from ecgfm_suite.results.synthetic import synthetic_matrix, synthetic_record_counts


@pytest.hookimpl(trylast=True)  # after the plugin's pytest_configure has made its session
def pytest_configure(config):
    runner = config.stash[KEY].runner
    runner.plan = lambda: synthetic_matrix({models}, {tasks}, {levels})
    runner.record_counts = synthetic_record_counts
'''

COLLECT_MODULE = '''
def test_cell(ecgfm_cell, ecgfm_model):
    pass
'''


def _cells(n: int):
    return synthetic_matrix(*SIZES[n])


@pytest.mark.parametrize("shard", [None, f"1/{N_SHARDS}"], ids=["all", "shard"])
@pytest.mark.parametrize("n", list(SIZES))
def test_bench_collect(benchmark, tmp_path, n, shard):
    models, tasks, levels = SIZES[n]
    (tmp_path / "conftest.py").write_text(COLLECT_CONFTEST.format(models=models, tasks=tasks, levels=levels))
    (tmp_path / "test_synthetic.py").write_text(COLLECT_MODULE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
           "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"),
           "--ecgfm-cache-dir", str(tmp_path / "cache"), "--ecgfm-reports-dir", str(tmp_path / "reports"),
           *(["--ecgfm-shard", shard] if shard else []), str(tmp_path / "test_synthetic.py")]

    def collect() -> str:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, check=False)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        return out.stdout

    stdout = benchmark.pedantic(collect, rounds=1, iterations=1)
    collected = [line.split("[", 1)[1].rstrip("]") for line in stdout.splitlines() if "::test_cell[" in line]
    expected = _cells(n)
    if shard:  # the plugin's split (no recorded encode rates in the empty cache: cost = record count)
        records = synthetic_record_counts(sorted({c.task for c in expected}))
        expected = assign_shards(expected, N_SHARDS, lambda c: records[c.task])[0]
    assert collected == [c.id for c in expected]
    seconds = benchmark.stats.stats.max
    benchmark.extra_info.update(cells=n, shard=shard, collected=len(collected), collect_s=seconds)
    assert seconds < COLLECT_TARGET_S


@pytest.mark.parametrize("n", list(SIZES))
def test_bench_shard_plan(benchmark, n):
    cells = _cells(n)
    rates = {f"model{m:03d}": 1.0 + m % 7 for m in range(SIZES[n][0])}
    records = synthetic_record_counts(sorted({c.task for c in cells}))

    def cost(c):
        return rates[c.model] * records[c.task]

    shards = benchmark.pedantic(assign_shards, args=(cells, N_SHARDS, cost), rounds=3, iterations=1)
    loads = [sum(cost(c) for c in s) for s in shards]
    benchmark.extra_info.update(cells=n, shards=N_SHARDS, plan_s=benchmark.stats.stats.mean,
                                imbalance=max(loads) / (sum(loads) / N_SHARDS) - 1)
    assert sum(len(s) for s in shards) == n


def _write_shard_runs(root: Path, n: int) -> list[Path]:
    """20 shard run directories as the plugin leaves them (results.jsonl written in one go, not fsync per line)."""
    cells = _cells(n)
    shards = assign_shards(cells, N_SHARDS, lambda c: 1.0)
    digest = shard_digest(shards)
    rng = np.random.default_rng(0)
    runs = []
    for k, shard in enumerate(shards, start=1):
        path = root / f"shard{k}"
        path.mkdir(parents=True)
        with open(path / "results.jsonl", "w", encoding="utf-8") as fh:
            for cell in shard:
                fh.write(json.dumps(synthetic_result(cell, SEEDS, rng).to_dict(), sort_keys=True) + "\n")
        (path / "run.json").write_text(json.dumps({
            "run_id": path.name, "seeds": list(SEEDS), "probes": ["linear"], "n_boot": 1000, "exitstatus": 0,
            "shard": {"index": k, "count": N_SHARDS, "split_sha256": digest, "cells": [c.id for c in shard]}}))
        runs.append(path)
    return runs


@pytest.fixture(scope="module")
def merged_runs(tmp_path_factory):
    """n → merged run directory (built by test_bench_merge, reused by test_bench_report)."""
    return {}


@pytest.mark.parametrize("n", list(SIZES))
def test_bench_merge(benchmark, tmp_path_factory, merged_runs, n):
    root = tmp_path_factory.mktemp(f"merge{n}")
    runs = _write_shard_runs(root / "jobs", n)
    outputs = iter(root / f"merged{i}" for i in range(100))
    merged = benchmark.pedantic(lambda: merge_runs(runs, next(outputs)), rounds=1, iterations=1)
    assert len(merged.results) == n and merged.missing == ()
    seconds = benchmark.stats.stats.max
    size = sum(p.stat().st_size for p in merged.path.iterdir() if p.is_file())
    benchmark.extra_info.update(cells=n, merge_s=seconds, run_dir_bytes=size)
    merged_runs[n] = merged.path
    assert seconds < MERGE_TARGET_S


@pytest.mark.parametrize("n", list(SIZES))
def test_bench_report(benchmark, merged_runs, n):
    from ecgfm_suite.report import write_report
    from ecgfm_suite.report.build import PAGE_ROWS, PAGES_DIR

    if n not in merged_runs:
        pytest.skip("needs test_bench_merge's merged run of this size")
    run = merged_runs[n]
    # every cell's test outcome, as the shard jobs' tests record them (merge joins results, not outcomes)
    with open(run / "outcomes.jsonl", "w", encoding="utf-8") as fh:
        for line in (run / "results.jsonl").read_text().splitlines():
            cell_id = json.loads(line)["cell_id"]
            fh.write(json.dumps({"cell_id": cell_id, "outcome": "passed", "reason": None, "duration_s": 1.0}) + "\n")
    t0 = time.perf_counter()
    page = benchmark.pedantic(write_report, args=(run,), rounds=1, iterations=1)
    seconds = time.perf_counter() - t0
    pages = sorted((run / PAGES_DIR).glob("*.html"))
    html = page.read_text()
    index_rows = html.count("<tr")
    benchmark.extra_info.update(
        cells=n, report_s=seconds, index_bytes=page.stat().st_size, index_rows=index_rows, pages=len(pages),
        pages_bytes=sum(p.stat().st_size for p in pages), max_page_bytes=max((p.stat().st_size for p in pages),
                                                                             default=0),
        csv_bytes=sum(p.stat().st_size for p in run.glob("*.csv")))
    print(f"report {n} cells: {seconds:.1f} s; index.html {page.stat().st_size / 1e6:.2f} MB, {index_rows} rows; "
          f"{len(pages)} pages, {benchmark.extra_info['pages_bytes'] / 1e6:.1f} MB (largest "
          f"{benchmark.extra_info['max_page_bytes'] / 1e6:.2f} MB); "
          f"CSV {benchmark.extra_info['csv_bytes'] / 1e6:.1f} MB")
    # usable at any size: no table on any page holds more than a page of rows
    assert html.count("<tr data-cell") <= PAGE_ROWS
    assert all(p.read_text().count("<tr data-cell") <= PAGE_ROWS for p in pages)
