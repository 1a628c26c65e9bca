"""One machine, many workers: ``-n 2 --dist loadgroup`` gives the same run as ``-n 0``; per-worker GPU pinning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecgfm_suite.engine.settings import resolve, worker_device
from ecgfm_suite.errors import SpecError
from tests.report.html import parse

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
CELL_TEST = (BENCHMARKS / "test_matrix.py").read_text()
ANALYSIS_TEST = (BENCHMARKS / "test_representation.py").read_text()
SLICE = ("--ecgfm-models=random_cnn,openecg_codec_v6", "--ecgfm-tasks=ludb_sex,ludb_lvh",
         "--ecgfm-scarcity=frac100", "--ecgfm-seeds=2", "--ecgfm-n-boot=100")
#: what a cell computed (timings, environment and git commit describe where, not what)
COMPUTED = ("cell_id", "model", "task", "scarcity", "seeds", "probe", "probe_params", "n_train", "n_val", "n_test",
            "classes", "main_metric", "metrics", "other_probes", "exclusions", "dataset_versions", "task_version",
            "checkpoint_sha256")


@pytest.mark.parametrize(("device", "worker", "n_gpus", "expected"), [
    ("cuda", "gw0", 4, "cuda:0"), ("cuda", "gw5", 4, "cuda:1"), ("cuda", "gw3", 2, "cuda:1"),
    ("cuda", None, 4, "cuda"),  # the controller / a run without xdist
    ("cuda", "gw3", 1, "cuda"), ("cuda", "gw3", 0, "cuda"),  # one GPU: every worker shares it
    ("cpu", "gw3", 4, "cpu"),
])
def test_worker_device_mapping(device, worker, n_gpus, expected):
    assert worker_device(device, worker, n_gpus) == expected


def test_worker_device_spreads_workers_over_all_gpus():
    assert {worker_device("cuda", f"gw{k}", 3) for k in range(6)} == {"cuda:0", "cuda:1", "cuda:2"}


def test_worker_device_rejects_a_foreign_worker_id():
    with pytest.raises(SpecError, match="worker id 'node7'"):
        worker_device("cuda", "node7", 2)


def test_cpu_setting_never_imports_torch_for_the_device():
    assert resolve(cli={"device": "cpu"}, env={}).resolved_device("gw1") == "cpu"


@pytest.mark.gpu
def test_each_worker_pins_its_own_gpu():
    import torch

    n = torch.cuda.device_count()
    if n < 2:
        pytest.skip(f"needs several GPUs, found {n}")
    settings = resolve(cli={"device": "cuda"}, env={})
    for k in range(2 * n):
        device = settings.resolved_device(f"gw{k}")
        assert device == f"cuda:{k % n}"
        assert torch.zeros(1, device=device).device.index == k % n


def _analysis(run: Path) -> dict[str, dict]:
    """The per-task analyses a run stored (``<kind>/<key>`` → payload without its timing), skips included."""
    out = {}
    for path in sorted((run / "analysis").glob("*/*.json")):
        if path.parent.name in ("comparison", "label_efficiency", "cka", "skipped"):
            payload = json.loads(path.read_text())
            payload.pop("seconds", None)
            out[f"{path.parent.name}/{path.stem}"] = payload
    return out


def _run(pytester: pytest.Pytester, tmp: Path, name: str, data_dir: Path, *xdist: str) -> tuple[Path, dict, dict]:
    reports = tmp / f"reports-{name}"
    result = pytester.runpytest(
        "-p", "no:randomly", f"--ecgfm-data-dir={data_dir}", f"--ecgfm-cache-dir={tmp / 'cache'}",
        f"--ecgfm-weights-dir={tmp / 'weights'}", f"--ecgfm-reports-dir={reports}", *SLICE,
        "-k", "test_cell or test_task_analysis", *xdist)  # the cells and the per-task analyses, not SHAP/UMAP
    assert result.ret == 0, result.stdout.str()[-3000:]
    runs = [p for p in reports.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1, f"expected one run directory, got {runs}"  # workers share the controller's run id
    lines = (runs[0] / "results.jsonl").read_text().splitlines()
    cells, encode_s = {}, {}
    for line in lines:
        d = json.loads(line)
        cells[d["cell_id"]] = {k: d[k] for k in COMPUTED}
        encode_s[d["cell_id"]] = d["timings"]["encode_s"]
    assert len(cells) == len(lines) == 4  # each cell ran exactly once
    # every cell test's outcome, written by the process that ran it (a worker under xdist)
    outcomes = [json.loads(line) for line in (runs[0] / "outcomes.jsonl").read_text().splitlines()]
    assert sorted(o["cell_id"] for o in outcomes) == sorted(cells)
    assert {o["outcome"] for o in outcomes} == {"passed"} and all(o["duration_s"] > 0 for o in outcomes)
    # loadgroup hands each of the two models' groups to its own worker: both append to the one file
    expected_workers = {"gw0", "gw1"} if xdist[:2] == ("-n", "2") else {None}
    assert {o["worker"] for o in outcomes} == expected_workers
    return runs[0], cells, encode_s


@pytest.mark.slow
def test_two_workers_give_the_same_run_as_one(pytester: pytest.Pytester, synthetic_data_dir: Path, tmp_path: Path):
    pytester.makepyfile(test_cells=CELL_TEST, test_representation=ANALYSIS_TEST)
    par_dir, parallel, par_encode = _run(pytester, tmp_path, "n2", synthetic_data_dir, "-n", "2", "--dist", "loadgroup")
    seq_dir, sequential, seq_encode = _run(pytester, tmp_path, "n0", synthetic_data_dir, "-n", "0")
    # the workers filled the shared cache (one entry per model and dataset, encoded once) and left it whole:
    # the sequential run reads every embedding back instead of encoding
    assert sum(v > 0 for v in par_encode.values()) == 2 and set(seq_encode.values()) == {0.0}
    assert sorted(parallel) == sorted(sequential) == sorted(
        f"{m}-{t}-frac100" for m in ("random_cnn", "openecg_codec_v6") for t in ("ludb_sex", "ludb_lvh"))
    assert parallel == sequential  # exact: same seeds → bit-identical metrics
    meta = json.loads((par_dir / "run.json").read_text())  # written once, by the controller, after all workers
    assert meta["cells"] == 4 and meta["exitstatus"] == 0 and meta["run_id"] == par_dir.name
    assert (par_dir / "results.csv").exists() and (par_dir / "gate.json").exists()
    assert sorted(p.stem for p in (par_dir / "cells").glob("*.npz")) == sorted(parallel)
    assert (par_dir.parent / "latest").resolve() == par_dir.resolve()
    # the per-task analyses: skipped by the workers, run once by the controller after all of them, before
    # the report, with the same payloads as the sequential run's tests
    analysed = _analysis(par_dir)
    assert {"comparison/ludb_sex-frac100", "comparison/ludb_lvh-frac100"} <= set(analysed)
    assert analysed == _analysis(seq_dir)
    report = (par_dir / "index.html").read_text()
    assert (par_dir / "comparison.csv").read_text() == (seq_dir / "comparison.csv").read_text()
    assert "2 pairs" in report and parse(report).outcomes == {"passed": "4 passed"}
