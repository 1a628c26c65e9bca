"""benchmarks/throughput_table.py: the README's throughput rows come from a bench_models JSON as measured."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput_table.py"


@pytest.fixture(scope="module")
def throughput_table():
    spec = importlib.util.spec_from_file_location("throughput_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.throughput_table


def _bench(name, **info):
    base = {"device": "cuda:0 (NVIDIA H100 80GB HBM3)", "records": 200, "windows": 200, "rounds": 7,
            "records_per_s": 1234.5678, "encode_s": 0.16201, "load_avg_1min": 0.4}
    return {"name": f"test_bench_encode_throughput[{name}]", "param": name, "extra_info": {**base, **info}}


def test_rows_sorted_by_model_with_measured_values(tmp_path, throughput_table):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"datetime": "2026-12-07T03:10:11.5+00:00", "benchmarks": [
        _bench("st_mem", bare_forward_s=0.15, overhead=1.0804),
        _bench("handcrafted", records_per_s=181.84, load_avg_1min=1.3),
        {"name": "test_other", "param": None, "extra_info": {}},
    ]}))
    lines = throughput_table(path).splitlines()
    assert lines[0] == ("device cuda:0 (NVIDIA H100 80GB HBM3); 200 LUDB records; 2026-12-07 03:10 UTC; "
                        "1-min load 0.4–1.3")
    assert lines[-2] == "| `handcrafted` | 181.84 | 0.1620 | - | - (not torch) | 7 |"
    assert lines[-1] == "| `st_mem` | 1234.57 | 0.1620 | 0.1500 | 1.080 | 7 |"


def test_a_file_without_throughput_results_is_refused_by_name(tmp_path, throughput_table):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"datetime": "2026-12-07T03:10:11", "benchmarks": []}))
    with pytest.raises(SystemExit, match="other.json: no test_bench_encode_throughput results"):
        throughput_table(path)
