"""The runner's cell: seeds fitted in threads outside pytest-xdist give the results of a sequential run."""

from __future__ import annotations

import threading

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from ecgfm_suite.plan import CellSpec
from ecgfm_suite.runner import Runner, map_seeds, run_cell
from ecgfm_suite.settings import resolve


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info()]


def test_map_seeds_keeps_seed_order_uses_threads_and_restores_blas_threads():
    before = _blas_threads()
    seen: dict[int, tuple[str, list[int]]] = {}
    started = threading.Barrier(2, timeout=10)

    def fit(seed: int) -> int:
        if seed < 2:
            started.wait()  # two seeds at once, or this times out
        seen[seed] = (threading.current_thread().name, _blas_threads())
        return seed * 10

    with threadpool_limits(limits=1):
        limited = _blas_threads()  # what one BLAS/OpenMP thread looks like for the libraries loaded here
    assert map_seeds(fit, [0, 1, 2, 3], workers=2) == [0, 10, 20, 30]
    assert seen[0][0] != seen[1][0] and all(threads == limited for _, threads in seen.values())
    assert _blas_threads() == before
    assert map_seeds(lambda s: s + 1, [5, 6], workers=1) == [6, 7]


def test_threaded_seeds_give_the_sequential_results(data_dir, tmp_path):
    settings = resolve({"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache"), "models": "random_cnn",
                        "tasks": "ludb_conduction", "seeds": "3", "n_boot": "50", "probes": "linear,knn"}, env={})
    cell = CellSpec(model="random_cnn", task="ludb_conduction", scarcity="frac100")
    outputs = []
    for worker in (None, "gw0"):  # no worker id: seeds in threads; an xdist worker: one after another
        runner = Runner(settings, worker_id=worker)
        outputs.append(run_cell(runner, cell, runner.load_encoder("random_cnn")))
    threaded, sequential = outputs
    assert threaded.result.metrics == sequential.result.metrics
    assert threaded.result.other_probes == sequential.result.other_probes
    assert threaded.result.probe_params == sequential.result.probe_params
    assert np.array_equal(threaded.test_scores, sequential.test_scores)
    assert [p["seed"] for p in threaded.result.probe_params] == [0, 1, 2]
