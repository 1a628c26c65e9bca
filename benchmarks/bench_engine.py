"""Engine speed (pytest-benchmark; run with ``ecgfm-suite bench`` or ``pytest benchmarks/bench_engine.py``).

- ``test_bench_matrix_cold_vs_warm``: the selected matrix (default: the default matrix; narrow it with the
  usual ``--ecgfm-*`` options) run through the library twice on a fresh cache: cold (encode everything)
  and warm (every embedding cached). Target: warm ≤ 10 % of cold.
- ``test_probe_optimiser_tolerance``: the same matrix, warm and in this process, with the linear probes'
  lbfgs tolerance at its default and at 1e-6: the results must not hinge on the optimiser (every tight
  main metric inside the default run's CI); the cells whose C changed, the largest change and the time
  of both go to ``extra_info``.

Encode throughput and overhead per model: ``bench_models.py``; reading and preprocessing: ``bench_data.py``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.engine.runner import Runner, run_matrix
from ecgfm_suite.pytest_plugin import KEY

pytestmark = pytest.mark.slow

TARGET_WARM_RATIO = 0.10


def _run_matrix(settings) -> tuple[float, int]:
    runner = Runner(settings)
    t0 = time.perf_counter()
    ran = run_matrix(runner)
    return time.perf_counter() - t0, ran


@pytest.fixture(scope="module")
def filled_cache() -> dict[str, Path]:
    """The cache the cold run filled, reused warm by the tolerance check (which fills its own if run alone)."""
    return {}


def test_bench_matrix_cold_vs_warm(benchmark, request, tmp_path, filled_cache):
    base = request.config.stash[KEY].settings
    settings = dataclasses.replace(base, cache_dir=tmp_path / "cache", cache="use")
    filled_cache["path"] = tmp_path / "cache"
    cold_s, cells = _run_matrix(settings)
    warm_s, _ = benchmark.pedantic(_run_matrix, args=(settings,), rounds=1, iterations=1)
    ratio = warm_s / cold_s
    benchmark.extra_info.update({"cells": cells, "cold_s": round(cold_s, 2), "warm_s": round(warm_s, 2),
                                 "warm_over_cold": round(ratio, 4)})
    assert cells > 0
    assert ratio <= TARGET_WARM_RATIO, f"warm run {warm_s:.1f}s is {ratio:.1%} of cold {cold_s:.1f}s"


def _main_metrics(settings) -> tuple[dict[str, tuple[float, float, float, list]], float]:
    """cell id → (main metric, CI low, CI high, chosen C per seed), and the seconds the run took."""
    out = {}

    def keep(cell) -> None:
        r = cell.result
        m = r.metrics[r.main_metric]
        out[r.cell_id] = (m.value, m.ci_low, m.ci_high, [p.get("C", p.get("alpha")) for p in r.probe_params])

    t0 = time.perf_counter()
    run_matrix(Runner(settings), keep)
    return out, time.perf_counter() - t0


def test_probe_optimiser_tolerance(benchmark, request, tmp_path, filled_cache, monkeypatch):
    from ecgfm_suite.probes import linear

    base = request.config.stash[KEY].settings
    # one process: the tolerance is patched here, not in spawned workers
    settings = dataclasses.replace(base, cache_dir=filled_cache.get("path", tmp_path / "cache"), cache="use",
                                   workers=1)
    default, default_s = _main_metrics(settings)
    monkeypatch.setattr(linear, "TOL", 1e-6)
    tight, tight_s = benchmark.pedantic(_main_metrics, args=(settings,), rounds=1, iterations=1)
    assert set(tight) == set(default) and default
    changes = {k: abs(tight[k][0] - default[k][0]) for k in default}
    worst = max(changes, key=changes.get)
    outside = [k for k in default if not default[k][1] <= tight[k][0] <= default[k][2]]
    benchmark.extra_info.update({
        "cells": len(default), "cells_with_other_C": sum(default[k][3] != tight[k][3] for k in default),
        "max_abs_change": round(changes[worst], 4), "max_change_cell": worst,
        "median_abs_change": round(float(np.median(list(changes.values()))), 4),
        "default_tol_s": round(default_s, 1), "tol_1e-6_s": round(tight_s, 1)})
    assert not outside, f"at lbfgs tol 1e-6 these cells' main metric leaves the default run's CI: {outside}"
