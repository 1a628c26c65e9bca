"""Probe-cell speed (pytest-benchmark; ``pytest benchmarks/bench_probes.py``).

One cell's probe work on frozen embeddings: fit the linear probe with its validation grid,
score validation and test, then ``evaluate`` with 1,000 stratified bootstrap resamples.
Target: fit + predict < 2 s for N ≤ 10,000 records × D = 768 on 2 cores. The split is
60/20/20 train/val/test; embeddings are a low-rank signal plus noise, so the probe has
something to learn and the grid is not trivially flat. Seconds per stage go to extra_info.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from ecgfm_suite.metrics import evaluate
from ecgfm_suite.probes import fit_probe

pytestmark = pytest.mark.slow

D = 768
TARGET_PROBE_S = 2.0
TASKS = {"binary": None, "multiclass": 4, "multilabel": 5}


def _embeddings(task_type: str, n: int, n_classes: int | None, seed: int = 0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 8))
    X = (latent @ rng.normal(size=(8, D)) + 3.0 * rng.normal(size=(n, D))).astype(np.float32)
    noisy = latent + 0.5 * rng.normal(size=latent.shape)
    if task_type == "binary":
        y = (noisy[:, 0] > 0).astype(np.int64)
    elif task_type == "multiclass":
        y = np.argmax(noisy[:, :n_classes], axis=1)
    else:
        y = (noisy[:, :n_classes] > np.linspace(0.5, 1.5, n_classes)).astype(np.int8)
    cut = np.cumsum([int(0.6 * n), int(0.2 * n)])
    return [(X[a:b], y[a:b]) for a, b in zip((0, *cut), (*cut, n))]


@pytest.mark.parametrize("n", [2_000, 10_000])
@pytest.mark.parametrize("task_type", list(TASKS))
def test_bench_linear_probe_cell(benchmark, task_type, n):
    n_classes = TASKS[task_type]
    (Xtr, ytr), (Xva, yva), (Xte, yte) = _embeddings(task_type, n, n_classes)
    timings: dict[str, float] = {}

    def cell():
        t0 = time.perf_counter()
        probe = fit_probe("linear", task_type, Xtr, ytr, Xva, yva, seed=0, n_classes=n_classes)
        t1 = time.perf_counter()
        scores, scores_val = probe.predict_scores(Xte), probe.predict_scores(Xva)
        t2 = time.perf_counter()
        metrics = evaluate(task_type, yte, scores, y_val=yva, scores_val=scores_val, n_boot=1000, seed=0)
        t3 = time.perf_counter()
        timings.update(fit_s=t1 - t0, predict_s=t2 - t1, probe_s=t2 - t0, bootstrap_s=t3 - t2, total_s=t3 - t0)
        return probe, metrics

    probe, metrics = benchmark.pedantic(cell, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update({k: round(v, 4) for k, v in timings.items()})  # the last round
    benchmark.extra_info.update(n_train=len(Xtr), n_val=len(Xva), n_test=len(Xte), d=D, n_boot=1000,
                                C=probe.params["C"], auroc=round(metrics["auroc"].value, 4),
                                target_probe_s=TARGET_PROBE_S)
    assert metrics["auroc"].value > 0.7  # the benchmark measures a probe that learned something
