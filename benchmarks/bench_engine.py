"""Engine speed (pytest-benchmark; run with ``ecgfm-suite bench`` or ``pytest benchmarks/bench_engine.py``).

- ``test_bench_matrix_cold_vs_warm``: the selected matrix (default: the default matrix; narrow it with the
  usual ``--ecgfm-*`` options) run through the library twice on a fresh cache: cold (encode everything)
  and warm (every embedding cached). Target: warm ≤ 10 % of cold.

Encode throughput and overhead per model: ``bench_models.py``; reading and preprocessing: ``bench_data.py``.
"""

from __future__ import annotations

import time

import pytest

from ecgfm_suite.pytest_plugin import KEY
from ecgfm_suite.runner import Runner, run_matrix

pytestmark = pytest.mark.slow

TARGET_WARM_RATIO = 0.10


def _run_matrix(settings) -> tuple[float, int]:
    runner = Runner(settings)
    t0 = time.perf_counter()
    ran = run_matrix(runner)
    return time.perf_counter() - t0, ran


def test_bench_matrix_cold_vs_warm(benchmark, request, tmp_path):
    import dataclasses

    base = request.config.stash[KEY].settings
    settings = dataclasses.replace(base, cache_dir=tmp_path / "cache", cache="use")
    cold_s, cells = _run_matrix(settings)
    warm_s, _ = benchmark.pedantic(_run_matrix, args=(settings,), rounds=1, iterations=1)
    ratio = warm_s / cold_s
    benchmark.extra_info.update({"cells": cells, "cold_s": round(cold_s, 2), "warm_s": round(warm_s, 2),
                                 "warm_over_cold": round(ratio, 4)})
    assert cells > 0
    assert ratio <= TARGET_WARM_RATIO, f"warm run {warm_s:.1f}s is {ratio:.1%} of cold {cold_s:.1f}s"
