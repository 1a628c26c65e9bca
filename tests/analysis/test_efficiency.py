"""Efficiency: FLOPs, parameters and peak memory with known answers, the run's own encode timings from the
embedding cache, and the Pareto front of metric against compute."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from ecgfm_suite.analysis import efficiency
from ecgfm_suite.analysis.inputs import AnalysisOptions, ModelTaskData, TaskInputs
from ecgfm_suite.analysis.store import AnalysisStore
from ecgfm_suite.embeddings.cache import EmbeddingCache, perturbed_description
from ecgfm_suite.errors import AnalysisSkip

torch = pytest.importorskip("torch")


def test_flops_and_parameters_of_a_linear_layer():
    layer = torch.nn.Linear(10, 4)
    windows = np.ones((3, 10), np.float32)
    # a (3 × 10) · (10 × 4) product: 3·4 outputs of 10 multiply-adds each, counted as 2 FLOPs per multiply-add
    assert efficiency.count_flops(lambda w: layer(torch.from_numpy(w)), windows) == 2 * 3 * 10 * 4
    encoder = SimpleNamespace(module=layer)
    params, mb = efficiency.parameter_size(encoder)
    assert params == 10 * 4 + 4 and mb == pytest.approx(44 * 4 / 2**20)
    assert efficiency.parameter_size(SimpleNamespace()) == (0, 0.0)  # handcrafted: no module, no parameters
    assert efficiency.torch_module(SimpleNamespace(module="not a module")) is None


def test_peak_memory_sees_what_the_encoding_allocates():
    size_mb = 64

    def encode(windows):
        buffer = np.ones(size_mb * 2**20 // 8)  # written, so every page is resident
        return buffer[:1]

    peak, method = efficiency.peak_memory_mb(SimpleNamespace(encode=encode), np.zeros((1, 4), np.float32))
    assert size_mb * 0.9 <= peak <= size_mb * 1.5, (peak, method)
    assert "RSS" in method


def test_pareto_front_known_answers():
    cost = np.array([1.0, 2.0, 3.0, 2.0, 1.0])
    auroc = np.array([0.6, 0.7, 0.65, 0.5, 0.6])  # C is beaten by B on both, D by A; the tie A = E stays
    assert efficiency.pareto_front(cost, auroc, True).tolist() == [True, True, False, False, True]
    mae = np.array([10.0, 8.0, 9.0, 12.0, 10.0])  # lower is better: the same order of merit
    assert efficiency.pareto_front(cost, mae, False).tolist() == [True, True, False, False, True]


def _efficiency_payload(model: str, gflops: float | None, params: int = 1) -> dict:
    return {"model": model, "gflops_per_record": gflops, "params": params, "records_per_s": 10.0,
            "flops_counter": efficiency.FLOP_COUNTER if gflops is not None else "not counted: no torch ops"}


def _result(model: str, level: str, value: float) -> SimpleNamespace:
    main = SimpleNamespace(value=value, ci_low=value - 0.05, ci_high=value + 0.05, is_finite=lambda: True)
    return SimpleNamespace(model=model, task="ludb_lvh", scarcity=level, main=main, main_metric="auroc")


def test_the_front_puts_each_models_headline_metric_against_its_compute(tmp_path):
    store = AnalysisStore(tmp_path)
    for model, gflops in (("big_fm", 40.0), ("small_fm", 2.0), ("random_cnn", 0.5), ("handcrafted", None)):
        store.write("efficiency", f"{model}-ludb_lvh", _efficiency_payload(model, gflops))
    results = [_result("big_fm", "frac10", 0.95), _result("big_fm", "frac100", 0.9),
               _result("small_fm", "frac100", 0.6), _result("random_cnn", "frac100", 0.7),
               _result("handcrafted", "frac100", 0.8)]
    inputs = TaskInputs(run_dir=SimpleNamespace(results=lambda: results), store=store, task="ludb_lvh", level=None,
                        options=AnalysisOptions(), n_boot=10)
    payload = efficiency.run_front(inputs).payload
    points = {p["model"]: p for p in payload["points"]}
    assert points["big_fm"]["level"] == "frac100" and points["big_fm"]["value"] == 0.9  # headline, not the best
    assert {m for m, p in points.items() if p["pareto"]} == {"big_fm", "random_cnn"}  # small_fm: dearer, worse
    assert payload["unmeasured"] == {"handcrafted": "not counted: no torch ops"}
    assert efficiency.front_problems(payload) == []
    assert [r["model"] for r in efficiency.front_rows("ludb_lvh", payload)] == ["big_fm", "random_cnn", "small_fm"]
    broken = {**payload, "points": [{**p, "pareto": False} for p in payload["points"]]}
    assert efficiency.front_problems(broken)  # the best and the cheapest are never dominated
    empty = TaskInputs(run_dir=SimpleNamespace(results=lambda: results[-1:]), store=store, task="ludb_lvh",
                       level=None, options=AnalysisOptions(), n_boot=10)
    with pytest.raises(AnalysisSkip, match="no model with a result and a FLOP count"):
        efficiency.run_front(empty)


@pytest.fixture(scope="module")
def random_cnn_on_lvh(synthetic_data_dir, tmp_path_factory):
    """random_cnn's clean embeddings of the synthetic LUDB records through the Runner (so the cache holds the
    run's own encode timings) and the pair's data."""
    from ecgfm_suite.engine.runner import Runner
    from ecgfm_suite.engine.settings import resolve

    cache = tmp_path_factory.mktemp("efficiency-cache")
    runner = Runner(resolve({"data_dir": str(synthetic_data_dir), "cache_dir": str(cache)}, env={}))
    encoder = runner.load_encoder("random_cnn")
    td = runner.task_data("ludb_lvh")
    X, have, _ = runner.task_embeddings(encoder, td)
    _, _, manifest, _ = runner.dataset_embeddings(encoder, "ludb")
    data = ModelTaskData(model="random_cnn", task=td, X=X, have=have, encoder=encoder, levels=("frac100",),
                         seeds=(0,), n_boot=10, cache_dir=cache)
    return data, manifest


def test_a_pair_reports_parameters_flops_memory_and_the_runs_own_throughput(random_cnn_on_lvh):
    data, manifest = random_cnn_on_lvh
    payload = efficiency.run(data, AnalysisOptions()).payload
    module = data.encoder.module
    assert payload["params"] == sum(p.numel() for p in module.parameters()) > 0
    assert payload["gflops_per_window"] > 0 and payload["windows_per_record"] == 1.0  # 10-s records, 10-s windows
    assert payload["gflops_per_record"] == pytest.approx(payload["gflops_per_window"])
    timings = manifest["timings"]
    assert payload["records_per_s"] == pytest.approx(timings["records"] / timings["encode_s"])
    assert payload["timings"]["ludb"]["entry"] == manifest["key"] and payload["timings_missing"] == {}
    assert payload["device"].startswith("cpu (") and payload["peak_memory_mb"] >= 0
    assert efficiency.problems(payload) == []
    [row] = efficiency.rows("random_cnn-ludb_lvh", payload)
    assert {"model", "params", "gflops_per_record", "peak_memory_mb", "records_per_s", "device"} <= set(row)
    assert efficiency.problems({**payload, "gflops_per_record": 2 * payload["gflops_per_record"]})


def test_timings_come_only_from_this_models_clean_entries(random_cnn_on_lvh, tmp_path):
    data, manifest = random_cnn_on_lvh
    description = manifest["description"]
    cache = EmbeddingCache(tmp_path)
    timings = {"prepare_s": 1.0, "encode_s": 2.0, "records": 60, "windows": 60}

    def entry(desc, extra):
        cache.get_or_compute(desc, lambda: (("ludb/1",), np.zeros((1, 2), np.float32), extra))

    entry({**description, "model": "other"}, {"timings": timings})
    entry({**description, "dataset_version": "older"}, {"timings": timings})
    entry(perturbed_description(description, {"name": "noise_snr10"}, 0), {"left_out": {}})
    versions = data.task.dataset_versions
    assert efficiency.recorded_timings(tmp_path, data.encoder, versions) == {}
    entry(description, {"timings": timings})
    found = efficiency.recorded_timings(tmp_path, data.encoder, versions)
    assert set(found) == {"ludb"} and found["ludb"]["encode_s"] == 2.0
    stranger = dataclasses.replace(data, cache_dir=tmp_path / "empty")
    payload = efficiency.run(stranger, AnalysisOptions()).payload
    assert payload["records_per_s"] is None and "no embedding-cache entry" in payload["timings_missing"]["ludb"]


def test_the_front_figure_is_drawn(tmp_path):
    from ecgfm_suite.report.figures import figures_for

    points = [{"model": m, "level": "frac100", "value": v, "ci_low": v - 0.1, "ci_high": v + 0.1,
               "gflops_per_record": g, "pareto": p} for m, v, g, p in (("a", 0.9, 10.0, True), ("b", 0.7, 20.0, False))]
    payload = {"task": "ludb_lvh", "metric": "auroc", "higher_is_better": True, "points": points,
               "unmeasured": {"handcrafted": "not counted"}}
    assert figures_for("efficiency_front", payload)["front"].startswith(b"\x89PNG")
    assert figures_for("efficiency_front", {**payload, "points": []}) == {}
