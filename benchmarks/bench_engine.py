"""Engine speed (pytest-benchmark; run with ``ecgfm-suite bench`` or ``pytest benchmarks/bench_engine.py``).

- ``test_bench_matrix_cold_vs_warm``: the selected matrix (default: the default matrix; narrow it with the
  usual ``--ecgfm-*`` options) run through the library twice on a fresh cache: cold (encode everything)
  and warm (every embedding cached). Target: warm ≤ 10 % of cold.
- ``test_bench_encode_overhead``: our batched encode path (prepared windows → ``encode_prepared``:
  batching, copies out of the memmap, window pooling, progress bar) over a bare forward pass of the same
  module on the same windows preloaded as one tensor. Target ≤ 1.2×. Reading and preprocessing
  records are measured separately by ``bench_data.py``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from ecgfm_suite.pytest_plugin import KEY
from ecgfm_suite.runner import CellSkip, Runner, run_cell

pytestmark = pytest.mark.slow

TARGET_WARM_RATIO = 0.10
TARGET_ENCODE_OVERHEAD = 1.2


def _run_matrix(settings) -> tuple[float, int]:
    runner = Runner(settings)
    t0 = time.perf_counter()
    ran = 0
    encoders: dict[str, object] = {}
    for cell in runner.plan():
        try:
            if cell.model not in encoders:
                encoders.clear()
                encoders[cell.model] = runner.load_encoder(cell.model)
            run_cell(runner, cell, encoders[cell.model])
            ran += 1
        except CellSkip:
            continue
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


@pytest.mark.parametrize("model_id", ["random_cnn", "openecg_codec_v6"])
def test_bench_encode_overhead(benchmark, request, model_id):
    import torch

    from ecgfm_suite.data.prepared import prepare_records
    from ecgfm_suite.embeddings.encode import encode_prepared

    runner = Runner(request.config.stash[KEY].settings)
    try:
        index = runner.index("ludb")
        encoder = runner.load_encoder(model_id)
    except (CellSkip, Exception) as exc:  # noqa: BLE001 - no data/weights here: nothing to measure
        pytest.skip(f"cannot benchmark {model_id} on LUDB: {exc}")
    prepared = prepare_records(index.records, encoder.prepare, spec_key={"bench": model_id}, cache_dir=None)
    windows = torch.from_numpy(np.array(prepared.windows, dtype=np.float32))

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(windows), 64):
                encoder.forward_embed(windows[i : i + 64])
        return time.perf_counter() - t0

    bare_s = min(bare() for _ in range(3))
    benchmark.pedantic(encode_prepared, args=(encoder, prepared.windows, prepared.offsets),
                       kwargs={"desc": model_id}, rounds=3, iterations=1)
    ours_s = benchmark.stats.stats.min
    ratio = ours_s / bare_s
    benchmark.extra_info.update({"records": len(prepared.keys), "bare_forward_s": round(bare_s, 3),
                                 "encode_s": round(ours_s, 3), "overhead": round(ratio, 3),
                                 "records_per_s": round(len(prepared.keys) / ours_s, 1)})
    assert ratio <= TARGET_ENCODE_OVERHEAD, f"encode path {ours_s:.2f}s is {ratio:.2f}× the bare forward {bare_s:.2f}s"
