"""The HTML report on a synthetic run that went through the real analysis stage, and the page in Chromium.

The synthetic run: two tasks (``ludb_lvh`` and the pooled ``sex``) over 120 synthetic 12-lead WFDB
records whose positives have doubled precordial (V1–V6) amplitude, two stand-in encoders (per-lead
amplitude features), cells fitted and scored like the runner's, every analysis of the stage, and a
third model named ``<script>alert(1)</script>`` that must reach the page as text only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgfm_suite.analysis import inputs
from ecgfm_suite.analysis.registry import analyse, draw_figures, names
from ecgfm_suite.analysis.store import AnalysisStore
from ecgfm_suite.data.preprocess import InputSpec, prepare
from ecgfm_suite.data.records import STD_LEADS
from ecgfm_suite.data.tasks import TASKS
from ecgfm_suite.embeddings.encode import embed_array
from ecgfm_suite.engine.analyses import run_task_analyses
from ecgfm_suite.errors import AnalysisSkip
from ecgfm_suite.report import write_report
from ecgfm_suite.report.build import PAGE_JS
from ecgfm_suite.report.figures import figures_for
from ecgfm_suite.results import CellResult, RunDir
from fixtures.layouts import synthetic_ecg
from tests.report.html import chromium as _chromium
from tests.report.html import headless as _headless
from tests.report.html import parse as _parse

pytestmark = pytest.mark.slow  # the module's run goes through the real stage (UMAP, SHAP): ~20 s once

XSS = "<script>alert(1)</script>"
XSS_CELL = "xss_model"  # its cells' ids (file names) stay plain; the model name is what the page shows
N_RECORDS = 120
LEVELS = ("frac25", "frac100")
PRECORDIAL = slice(6, 12)


class AmplitudeEncoder:
    """Stand-in encoder: per-lead standard deviation and peak-to-peak of the model's preprocessing (+ noise dims)."""

    def __init__(self, model_id: str, extra: int) -> None:
        self.spec = SimpleNamespace(id=model_id, family="amplitude", config={})
        self.input_spec = InputSpec(fs=100, leads=STD_LEADS, window=1000)
        self.embed_dim = 24 + extra
        self.checkpoint_sha256 = hashlib.sha256(model_id.encode()).hexdigest()
        self._noise = np.random.default_rng(extra).normal(size=(24, extra))

    def prepare(self, x: np.ndarray, fs: float, leads) -> np.ndarray:
        return prepare(x, fs, tuple(leads), self.input_spec)

    def encode(self, windows: np.ndarray) -> np.ndarray:
        feats = np.c_[windows.std(axis=-1), np.ptp(windows, axis=-1)]
        return np.c_[feats, np.tanh(feats @ self._noise)].astype(np.float32)


def _records(root: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """WFDB records, their LVH-like labels (precordial amplitude ×2) and the raw signals."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    lvh = rng.permutation(np.arange(N_RECORDS) % 2)
    signals, rows = [], []
    for i in range(N_RECORDS):
        sig = synthetic_ecg(12, 500.0, 5000, seed=i)
        sig[:, PRECORDIAL] *= 2.0 if lvh[i] else 1.0
        wfdb.wrsamp(f"r{i}", fs=500, units=["mV"] * 12, sig_name=list(STD_LEADS), p_signal=sig, fmt=["16"] * 12,
                    adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(root))
        signals.append(sig.T.astype(np.float32))
        rows.append({"key": f"ludb/{i}", "record_id": str(i), "path": str(root / f"r{i}"), "format": "wfdb",
                     "fs": 500.0, "n_samples": 5000, "leads": ",".join(STD_LEADS), "region": "Russia",
                     "source": "ludb", "patient_id": str(i), "age": float(25 + 9 * (i % 7)), "sex": "MF"[i % 2],
                     "content_hash": hashlib.sha256((root / f"r{i}.dat").read_bytes()).hexdigest()})
    return pd.DataFrame(rows), lvh, np.stack(signals)


def _task(task_id: str, records: pd.DataFrame, y: np.ndarray) -> SimpleNamespace:
    spec = TASKS.get(task_id)
    split = np.array(["train", "train", "train", "val", "test"])[np.arange(N_RECORDS) % 5]
    pooled = len(spec.datasets) > 1
    dataset = np.where(np.arange(N_RECORDS) % 2 == 0, "ludb", "ptbxl") if pooled else np.full(N_RECORDS, "ludb")
    region = np.where(dataset == "ludb", "Russia", "Germany").astype(object)
    counts = {s: {c: int(((split == s) & (y == k)).sum()) for k, c in enumerate(spec.classes)} for s in
              ("train", "val", "test")}
    return SimpleNamespace(
        task=spec, keys=records["key"].to_numpy(dtype=object), y=y, classes=spec.classes, dropped_classes={},
        dataset=dataset.astype(object), region=region, source=dataset.astype(object), groups=np.arange(N_RECORDS),
        split=split, counts=counts, excluded={"ludb: sex unknown": 2}, skipped_datasets={},
        dataset_versions={"ludb": "1.0.1", "ptbxl": "1.0.3"} if pooled else {"ludb": "1.0.1"},
        version="synthetic", records=records, indices=lambda name: np.flatnonzero(split == name),
    )


def _cell(run: RunDir, data: inputs.ModelTaskData, level: str, model: str, cell_id: str) -> CellResult:
    """Fit and score a cell the way the runner does (same refit the analysis stage uses) and store it."""
    from ecgfm_suite.engine.runner import summarise_seeds
    from ecgfm_suite.metrics import evaluate

    test, val = data.rows("test"), data.rows("val")
    runs = inputs.probe_runs(data, level)
    per_seed, scores = [], []
    for r in runs:
        s = r.probe.predict_scores(data.X[test])
        per_seed.append(evaluate("binary", data.y[test], s, y_val=data.y[val],
                                 scores_val=r.probe.predict_scores(data.X[val]), n_boot=50, seed=r.seed))
        scores.append(s)
    result = CellResult(
        cell_id=cell_id, model=model, checkpoint_sha256=data.encoder.checkpoint_sha256, random_init=False,
        task=data.task.task.id, task_type="binary", dataset_versions=dict(data.task.dataset_versions),
        preprocessing=data.encoder.input_spec.to_dict(), scarcity=level, seeds=data.seeds, probe="linear",
        probe_params=(), n_train=len(runs[0].train_rows), n_val=len(val), n_test=len(test),
        classes=tuple(data.task.classes), main_metric="auroc", metrics=summarise_seeds(per_seed),
        exclusions={"records_without_embedding": 0, "dataset_exclusions": 0}, git_commit="abc1234",
        environment={"python": "3.11", "numpy": np.__version__},
    )
    run.append(result)
    run.save_scores(cell_id, keys=np.asarray(data.task.keys)[test].astype(str), y_test=data.y[test],
                    scores=np.stack(scores))
    return result


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory, analysis_cache_dir) -> RunDir:
    root = tmp_path_factory.mktemp("synthetic_run")
    records, lvh, signals = _records(root / "records")
    run = RunDir.create(root / "reports", "synthetic")
    store = AnalysisStore(run.path)
    options = inputs.AnalysisOptions(input_records_per_class=1, input_max_records=2)
    tasks = {"ludb_lvh": _task("ludb_lvh", records, lvh), "sex": _task("sex", records, lvh)}
    encoders = {"random_cnn": AmplitudeEncoder("random_cnn", 8), "feature_fm": AmplitudeEncoder("feature_fm", 40)}
    skipped: list[tuple[str, str]] = []
    for model, encoder in encoders.items():
        X = embed_array(encoder, signals, 500.0, STD_LEADS)
        for task_id, td in tasks.items():
            data = inputs.ModelTaskData(model=model, task=td, X=X, have=np.ones(N_RECORDS, bool), encoder=encoder,
                                       levels=LEVELS, seeds=(0, 1), n_boot=50, cache_dir=analysis_cache_dir,
                                       excluded={})
            store.write("tasks", task_id, inputs.task_summary(td))
            for level in LEVELS:
                _cell(run, data, level, model, f"{model}-{task_id}-{level}")
                if model == "feature_fm":  # the XSS-named model: same numbers, hostile name
                    _cell(run, data, level, XSS, f"{XSS_CELL}-{task_id}-{level}")
            for name in names("pair"):
                if name == "transfer" and task_id != "sex":
                    continue
                try:
                    payload, extra = analyse(name, data, store, options)
                except AnalysisSkip as skip:  # recorded in the store with its reason: the report lists it
                    skipped.append((name, str(skip)))
                    continue
                draw_figures(figures_for, store, name, data.key, payload, extra)
    assert skipped == []
    task_skips = run_task_analyses(run, n_boot=50, options=options, draw=figures_for)
    # the stand-in encoders run no torch ops: nothing to count FLOPs of
    assert set(task_skips) == {f"efficiency_front {t}-efficiency_front" for t in tasks}
    assert all("no model with a result and a FLOP count" in why for why in task_skips.values())
    store.write("plan", "cells", {"cells": [r.cell_id for r in run.results()] + ["feature_fm-ptbxl_form-frac10"]})
    store.skip("cells", "feature_fm-ptbxl_form", "no data for task ptbxl_form: none of ptbxl found below /data")
    with open(run.path / "outcomes.jsonl", "w") as fh:
        fh.write(json.dumps({"cell_id": "feature_fm-ludb_lvh-frac25", "outcome": "failed",
                             "reason": "auroc 0.51 below floor 0.60"}) + "\n")
    run.write_meta({"run_id": "synthetic", "seeds": [0, 1], "probes": ["linear"], "n_boot": 50, "exitstatus": 1,
                    "environment": {"python": "3.11"}, "git_commit": "abc1234"})
    return run


@pytest.fixture(scope="module")
def report(synthetic_run) -> tuple[Path, str]:
    path = write_report(synthetic_run.path)
    return path, path.read_text(encoding="utf-8")


def test_report_is_written_with_its_tables(synthetic_run, report):
    path, _ = report
    assert path == synthetic_run.path / "index.html"
    results = synthetic_run.results()
    board = pd.read_csv(synthetic_run.path / "leaderboard.csv")
    assert len(board) == len(results) == 12
    for name in ("label_efficiency", "transfer", "embedding_attribution", "lead_importance", "projection",
                 "representation", "cka", "comparison", "skipped_cells"):
        assert (synthetic_run.path / f"{name}.csv").stat().st_size > 1, name
    assert not list(synthetic_run.path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_names_are_escaped_and_nothing_but_the_diagnostics_script_runs(report, synthetic_run):
    _, html = report
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = _parse(html)
    assert page.scripts == 1
    digest = base64.b64encode(hashlib.sha256(PAGE_JS.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in html and f"<script>{PAGE_JS}</script>" in html
    assert XSS in (synthetic_run.path / "leaderboard.csv").read_text()  # the CSV keeps the data as it is


def test_page_is_self_contained_and_every_image_is_an_embedded_png(report):
    _, html = report
    page = _parse(html)
    # per (model, task): input attribution, map, subgroups, calibration, robustness; transfer (sex, per model); per
    # task: CKA, curves, forest plot; the run's ranks; the leaderboard heatmap and the label-efficiency overview
    assert len(page.images) == 5 * 2 * 2 + 2 + 2 * 3 + 1 + 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        import matplotlib.image

        assert matplotlib.image.imread(io.BytesIO(raw), format="png").ndim == 3
    assert all(link.startswith("#") for link in page.links), page.links
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html)


def test_leaderboard_rows_marks_and_skips(report, synthetic_run):
    _, html = report
    page = _parse(html)
    assert sorted(page.cell_rows) == sorted(r.cell_id for r in synthetic_run.results())
    board = pd.read_csv(synthetic_run.path / "leaderboard.csv")
    for (task, level), column in board.groupby(["task", "scarcity"]):
        assert column["best"].sum() == 1, (task, level)
        assert column.loc[column["best"], "value"].item() == column["value"].max()
        assert column.loc[column["best"], "not_worse"].all()
    failing = board.set_index("cell_id").loc["feature_fm-ludb_lvh-frac25"]
    assert failing["failing"] and failing["failure"] == "auroc 0.51 below floor 0.60"
    assert 'class="failing"' in html and "auroc 0.51 below floor 0.60" in html
    skipped = pd.read_csv(synthetic_run.path / "skipped_cells.csv")
    assert skipped.to_dict("records") == [{"cell_id": "feature_fm-ptbxl_form-frac10", "outcome": "not run",
                                           "reason": "no data for task ptbxl_form: none of ptbxl found below /data"}]
    outcomes = pd.read_csv(synthetic_run.path / "cell_outcomes.csv").set_index("cell_id")
    assert outcomes.loc["feature_fm-ludb_lvh-frac25", "outcome"] == "failed"
    assert set(outcomes.drop(index=["feature_fm-ludb_lvh-frac25", "feature_fm-ptbxl_form-frac10"])["outcome"]) == {
        "no outcome recorded"}  # this run recorded one test outcome; the other cells only have results
    assert "ludb: sex unknown" in html  # task-level exclusions with their reason


def test_metadata_and_findings_reach_the_page(report, synthetic_run):
    _, html = report
    for text in ("abc1234", hashlib.sha256(b"feature_fm").hexdigest(), "1.0.1", "0, 1", "Exclusions and skips"):
        assert text in html, text
    leads = pd.read_csv(synthetic_run.path / "lead_importance.csv")
    # the synthetic LVH lives in V1–V6 amplitude: the pipeline's attribution should find it there
    assert set(leads.loc[leads["task"] == "ludb_lvh", "top_lead"]) <= {"V1", "V2", "V3", "V4", "V5", "V6"}
    transfer = pd.read_csv(synthetic_run.path / "transfer.csv")
    assert set(transfer["train_region"]) == {"Germany", "Russia"}


def test_page_in_headless_chromium(report, synthetic_run, tmp_path, request):
    path, html = report
    binary = _chromium()
    dom = _headless(binary, tmp_path / "profile", "--dump-dom", path.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _parse(dom.stdout)
    assert page.root.get("data-loaded") == "1", "the load event never fired"
    assert json.loads(page.root["data-errors"]) == []
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    decoded = json.loads(page.root["data-images"])
    assert len(decoded) == len(_parse(html).images) and all(decoded), "an image failed to decode"
    assert sorted(page.cell_rows) == sorted(r.cell_id for r in synthetic_run.results())
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in dom.stdout  # shown as text in the DOM
    shot = tmp_path / "report.png"
    taken = _headless(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,2000", path.as_uri())
    assert taken.returncode == 0 and shot.read_bytes().startswith(b"\x89PNG")
    kept = Path(request.config.rootpath) / "reports" / "screenshots" / "report.png"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, kept)
    print(f"report screenshot: {kept} (page: {path})")
