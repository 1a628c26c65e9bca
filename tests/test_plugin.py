"""The pytest plugin end to end, with pytester: options, ids, -k, skips, usage errors, a cell that runs.

Cells run on the small synthetic data dir (``synthetic_data_dir``); the one cell that also runs on the real data
is marked ``real_data``.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from ecgfm_suite.engine.settings import OPTIONS
from ecgfm_suite.models.catalog import MODELS  # imported before the pytester fixture snapshots sys.modules
from ecgfm_suite.results.cell import SCHEMA_VERSION
from tests.report.html import parse

CELL_TEST = (Path(__file__).resolve().parents[1] / "benchmarks" / "test_matrix.py").read_text()


@pytest.fixture
def bench(pytester: pytest.Pytester, synthetic_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return _bench(pytester, synthetic_data_dir, tmp_path_factory)


def _bench(pytester: pytest.Pytester, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> pytest.Pytester:
    pytester.makepyfile(test_cells=CELL_TEST)
    cache = tmp_path_factory.mktemp("cache")
    weights = tmp_path_factory.mktemp("weights")

    def common(*args: str) -> list[str]:
        return ["-p", "no:randomly", f"--ecgfm-data-dir={data_dir}", f"--ecgfm-cache-dir={cache}",
                f"--ecgfm-weights-dir={weights}", f"--ecgfm-reports-dir={pytester.path / 'reports'}", *args]

    pytester.common = common  # type: ignore[attr-defined]
    return pytester


def test_help_lists_every_option(pytester: pytest.Pytester):
    result = pytester.runpytest("--help")
    for opt in OPTIONS:
        result.stdout.fnmatch_lines([f"*{opt.cli}*"])


@pytest.mark.parametrize("args", [("--ecgfm-seeds=zero",), ("--ecgfm-models=no_such_model",),
                                  ("--ecgfm-tasks=no_such_task",), ("--ecgfm-scarcity=frac200",)])
def test_bad_option_is_a_usage_error(pytester: pytest.Pytester, args):
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ecgfm-suite*"])


def test_collect_ids_and_k_selects_one_model(bench):
    args = bench.common("--collect-only", "-q", "--ecgfm-models=random_cnn,openecg_codec_v6",
                        "--ecgfm-tasks=ludb_sex", "--ecgfm-scarcity=frac10,frac100")
    result = bench.runpytest(*args)
    ids = sorted(line.split("[", 1)[1].rstrip("]") for line in result.stdout.lines if "::test_cell[" in line)
    assert ids == ["openecg_codec_v6-ludb_sex-frac10", "openecg_codec_v6-ludb_sex-frac100",
                   "random_cnn-ludb_sex-frac10", "random_cnn-ludb_sex-frac100"]
    picked = bench.runpytest(*args, "-k", "random_cnn")
    assert sorted(line for line in picked.stdout.lines if "::test_cell[" in line) == sorted([
        "test_cells.py::test_cell[random_cnn-ludb_sex-frac10]",
        "test_cells.py::test_cell[random_cnn-ludb_sex-frac100]"])


def test_k_with_each_registered_model_selects_exactly_it(bench):
    result = bench.runpytest(*bench.common("--collect-only", "-q", f"--ecgfm-models={','.join(MODELS)}",
                                           "--ecgfm-tasks=ludb_sex", "--ecgfm-scarcity=frac10"))
    collected = [line for line in result.stdout.lines if "::test_cell[" in line]
    assert len(collected) == len(MODELS)
    for model in MODELS:
        assert [c for c in collected if model in c] == [f"test_cells.py::test_cell[{model}-ludb_sex-frac10]"]


def test_collection_does_not_import_torch(bench):
    bench.makeconftest("""
import sys
def pytest_collection_finish(session):
    print("TORCH_IMPORTED", "torch" in sys.modules)
""")
    result = bench.runpytest(*bench.common("--collect-only", "-q", "--ecgfm-tasks=ludb_sex"))
    result.stdout.fnmatch_lines(["*TORCH_IMPORTED False*"])


def _only_run(bench) -> Path:
    runs = [p for p in (bench.path / "reports").iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1, runs
    return runs[0]


def _outcomes(run: Path) -> dict[str, dict]:
    return {o["cell_id"]: o for o in map(json.loads, (run / "outcomes.jsonl").read_text().splitlines())}


def test_missing_weights_skip_names_the_expected_path(bench):
    # without pytest-html (-p no:html) nothing of ours asks for its hook
    result = bench.runpytest(*bench.common("-rs", "-p", "no:html", "--ecgfm-models=ecg_fm", "--ecgfm-tasks=ludb_sex",
                                           "--ecgfm-scarcity=frac100"))
    result.assert_outcomes(skipped=1)
    expected = "no checkpoint for ecg_fm: expected */ecg_fm/mimic_iv_ecg_physionet_pretrained.pt*"
    result.stdout.fnmatch_lines([f"*{expected}"])
    # the skip is the run's outcome: recorded, and the report lists the cell with its reason
    run = _only_run(bench)
    skip = _outcomes(run)["ecg_fm-ludb_sex-frac100"]
    assert skip["outcome"] == "skipped" and fnmatch.fnmatch(skip["reason"], expected.strip("*") + "*")
    assert skip["model"] == "ecg_fm" and skip["worker"] is None and skip["duration_s"] >= 0
    assert not (run / "results.jsonl").exists()
    html = (run / "index.html").read_text()
    assert parse(html).outcomes == {"skipped": "1 skipped"} and "mimic_iv_ecg_physionet_pretrained.pt" in html


def test_pytest_html_summary_links_our_report(bench, tmp_path):
    pytest.importorskip("pytest_html",
                        reason="pytest-html is optional: its summary link is tested where it is installed")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = bench.runpytest(*bench.common("--ecgfm-models=random_cnn", "--ecgfm-tasks=ludb_sex",
                                           "--ecgfm-scarcity=frac100", f"--ecgfm-data-dir={empty}",
                                           "--html=html/pytest.html"))
    result.assert_outcomes(skipped=1)
    page = (bench.path / "html" / "pytest.html").read_text()
    href = f"../reports/{_only_run(bench).name}/index.html"
    assert f'ecgfm-suite report: <a href="{href}">' in page
    assert (bench.path / "html" / href).resolve().is_file()  # the relative link reaches our report


def test_missing_data_skips_naming_the_data_dir(bench, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = bench.runpytest(*bench.common("-rs", "--ecgfm-models=random_cnn", "--ecgfm-tasks=ludb_sex",
                                           "--ecgfm-scarcity=frac100", f"--ecgfm-data-dir={empty}"))
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*{empty}*"])


@pytest.mark.slow
@pytest.mark.parametrize("data", ["synthetic", pytest.param("real", marks=pytest.mark.real_data)])
def test_real_cell_writes_results_and_leaderboard_then_hits_cache(pytester, tmp_path_factory, request, data):
    """The same mechanics on the synthetic data and, where it is present, on the real LUDB."""
    bench = _bench(pytester, request.getfixturevalue({"synthetic": "synthetic_data_dir", "real": "data_dir"}[data]),
                   tmp_path_factory)
    args = bench.common("--ecgfm-models=random_cnn", "--ecgfm-tasks=ludb_sex", "--ecgfm-scarcity=frac100",
                        "--ecgfm-seeds=2", "--ecgfm-n-boot=100", "--ecgfm-run-id=first")
    result = bench.runpytest(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*ecgfm-suite leaderboard*", "*ludb_sex*frac100*auroc*", "*results: *results.jsonl*"])
    run = bench.path / "reports" / "first"
    lines = (run / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1
    cell = json.loads(lines[0])
    assert cell["cell_id"] == "random_cnn-ludb_sex-frac100" and cell["schema_version"] == SCHEMA_VERSION
    assert cell["seeds"] == [0, 1] and 0.0 <= cell["metrics"]["auroc"]["value"] <= 1.0
    assert (run / "run.json").exists() and (run / "results.csv").exists()
    assert (bench.path / "reports" / "latest").resolve() == run.resolve()
    passed = _outcomes(run)["random_cnn-ludb_sex-frac100"]
    assert passed["outcome"] == "passed" and passed["reason"] is None and passed["duration_s"] > 0
    # a floor no model reaches: the cell still writes its result, then fails with the gate's message
    (bench.path / "benchmarks" / "thresholds.yml").write_text("schema_version: 1\ntasks:\n  ludb_sex: 0.999\n")
    again = bench.runpytest(*args[:-1], "--ecgfm-run-id=second")
    again.assert_outcomes(failed=1)
    second = json.loads((bench.path / "reports" / "second" / "results.jsonl").read_text())
    assert second["metrics"] == cell["metrics"]  # same seeds, cached embeddings → identical numbers
    assert second["timings"]["encode_s"] == 0.0  # served from the embedding cache
    failed = _outcomes(bench.path / "reports" / "second")["random_cnn-ludb_sex-frac100"]
    assert failed["outcome"] == "failed" and failed["reason"].startswith("auroc = ")  # the gate's message
    assert failed["reason"].endswith("is below the floor 0.9990 for cell random_cnn-ludb_sex-frac100")
    html = (bench.path / "reports" / "second" / "index.html").read_text()
    assert parse(html).outcomes == {"failed": "1 failed"} and failed["reason"] in html


@pytest.mark.slow
def test_a_multiclass_cell_reports_its_per_class_metrics_as_one_junit_property(bench):
    import xml.etree.ElementTree as ET

    xml = bench.path / "junit.xml"
    result = bench.runpytest(*bench.common("--ecgfm-models=random_cnn", "--ecgfm-tasks=ludb_axis",
                                           "--ecgfm-scarcity=frac100", "--ecgfm-seeds=1", "--ecgfm-n-boot=50",
                                           f"--junitxml={xml}"))
    result.assert_outcomes(passed=1)
    [case] = ET.parse(xml).getroot().iter("testcase")
    names = [p.get("name") for p in case.iter("property")]
    assert names.count("ecgfm_per_class") == 1 and not any(n.startswith("ecgfm_auroc[") for n in names)
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    per_class = json.loads(props["ecgfm_per_class"])
    stored = json.loads((_only_run(bench) / "results.jsonl").read_text())
    assert list(per_class) == stored["classes"]  # every class, in class order
    for label, c in per_class.items():
        assert 0 <= c["train_prevalence"] <= 1 and 0 < c["test_prevalence"] <= 1 and c["undefined"] is None, label
        for metric in ("auroc", "auprc"):
            assert c[metric]["ci_low"] <= c[metric]["ci_high"] and 0 <= c[metric]["value"] <= 1, (label, metric)
    assert json.loads(props["ecgfm_auroc"])["value"] == stored["metrics"]["auroc"]["value"]  # the headline stays macro
