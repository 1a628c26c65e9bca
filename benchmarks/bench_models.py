"""Encode throughput of every registered model at its full released configuration (random weights).

For each model: records/s of our encode path (model-ready windows → ``encode_prepared``: batching,
copies out of a memmap, window pooling, progress bar) and its ratio to a bare forward pass of the
same module on the same windows preloaded as one tensor (target ≤ 1.2×). Input: the first
``N_RECORDS`` LUDB records, prepared once with the model's own preprocessing. Run with
``ecgfm-suite bench`` or ``pytest benchmarks/bench_models.py``; figures land in ``extra_info``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.registry import resolve

pytestmark = pytest.mark.slow

N_RECORDS = 24
TARGET_ENCODE_OVERHEAD = 1.2


@pytest.fixture(scope="module")
def ludb_records(data_dir):
    from ecgfm_suite.data.discovery import load_index

    return load_index("ludb", data_dir).records.iloc[:N_RECORDS]


@pytest.mark.parametrize("model_id", list(MODELS))
def test_bench_encode_throughput(benchmark, ludb_records, model_id):
    from ecgfm_suite.data.prepared import prepare_records
    from ecgfm_suite.embeddings.encode import encode_prepared

    spec = MODELS.get(model_id)
    encoder = resolve(spec.loader)(spec, None, device="cpu")  # released architecture, seeded random weights
    prepared = prepare_records(ludb_records, encoder.prepare, spec_key={"bench": model_id}, cache_dir=None)
    n = len(prepared.keys)
    bare_s = _bare_forward_s(encoder, prepared.windows)
    benchmark.pedantic(encode_prepared, args=(encoder, prepared.windows, prepared.offsets),
                       kwargs={"desc": model_id}, rounds=2, iterations=1, warmup_rounds=0)
    ours_s = benchmark.stats.stats.min
    benchmark.extra_info.update({"records": n, "windows": len(prepared.windows), "records_per_s": round(n / ours_s, 2),
                                 "encode_s": round(ours_s, 3)})
    if bare_s is None:  # not a torch model (handcrafted features): throughput only
        return
    ratio = ours_s / bare_s
    benchmark.extra_info.update({"bare_forward_s": round(bare_s, 3), "overhead": round(ratio, 3)})
    assert ratio <= TARGET_ENCODE_OVERHEAD, f"{model_id}: encode path {ours_s:.2f}s is {ratio:.2f}× the bare {bare_s:.2f}s"


def _bare_forward_s(encoder, windows) -> float | None:
    """Best of 2: the module's forward + pooling over preloaded tensors, no copies, no bookkeeping."""
    if not hasattr(encoder, "forward_embed"):
        return None
    import torch

    preloaded = torch.from_numpy(np.array(windows, dtype=np.float32))
    step = encoder.batch_size
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(preloaded), step):
                encoder.forward_embed(preloaded[i : i + step])
        best = min(best, time.perf_counter() - t0)
    return best
