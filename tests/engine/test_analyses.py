"""The analysis stage: its store, record choice, probe refits that match the cells, the registry, and real-data runs."""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from ecgfm_suite.analysis import input_attribution, inputs
from ecgfm_suite.analysis.registry import ANALYSES, analyse_task, pair_analyses
from ecgfm_suite.analysis.store import AnalysisStore, plain
from ecgfm_suite.data.tasks import TASKS
from ecgfm_suite.engine.analyses import AnalysisStage
from ecgfm_suite.errors import AnalysisSkip, DataError
from ecgfm_suite.probes import SeedProbe


def test_store_round_trip_figures_skips_and_embeddings(tmp_path):
    store = AnalysisStore(tmp_path)
    store.write("projection", "m-t", {"scores": {"silhouette": float("nan"), "k": np.int64(3)}, "coords": np.eye(2)})
    got = store.read("projection", "m-t")
    assert got == {"kind": "projection", "key": "m-t", "scores": {"silhouette": None, "k": 3},
                   "coords": [[1.0, 0.0], [0.0, 1.0]]}
    assert store.entries("projection") == {"m-t": got} and store.entries("nothing") == {}
    store.write_figure("projection", "m-t", b"\x89PNG fake", "map")
    store.write_figure("projection", "m-t2", b"\x89PNG other", "map")
    assert [p.name for p in store.figures("projection", "m-t")] == ["m-t.map.png"]
    store.skip("transfer", "m-t", "not pooled")
    assert store.entries("skipped")["transfer.m-t"]["reason"] == "not pooled"
    store.write_embeddings("model_a", "ludb_lvh", np.array(["ludb/1", "ludb/2"], dtype=object), np.ones((2, 3)))
    keys, X = store.task_embeddings("ludb_lvh")["model_a"]
    assert keys.tolist() == ["ludb/1", "ludb/2"] and X.shape == (2, 3)
    with pytest.raises(DataError, match="plain name"):
        store.path("projection", "../escape")


def test_plain_turns_nan_into_null_so_json_stays_strict():
    assert plain({"a": [np.float32(1.5), math.inf], "b": (np.nan,)}) == {"a": [1.5, None], "b": [None]}
    json.dumps(plain({"x": np.array([np.nan, 2.0])}), allow_nan=False)


def _task(task_id: str, y: np.ndarray, split: np.ndarray) -> SimpleNamespace:
    spec = TASKS.get(task_id)
    keys = np.array([f"ludb/{i}" for i in range(len(y))], dtype=object)
    return SimpleNamespace(task=spec, keys=keys, y=y, classes=spec.classes, split=split,
                           indices=lambda name: np.flatnonzero(split == name))


def test_choose_records_is_fixed_balanced_and_positive_first():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    split = np.where(np.arange(200) % 5 == 0, "test", "train")
    td = _task("ludb_lvh", y, split)
    options = inputs.AnalysisOptions(input_records_per_class=2, input_max_records=4)
    chosen = input_attribution.choose_records(td, options)
    assert chosen == input_attribution.choose_records(td, options)  # the same records for every model
    assert all(split[i] == "test" for i in chosen) and len(set(chosen)) == 4
    assert [int(y[i]) for i in chosen] == [1, 0, 1, 0]
    assert len(input_attribution.choose_records(td, dataclasses.replace(options, input_max_records=3))) == 3


def test_lead_importance_summarises_the_richest_lead_layout():
    """A pooled task explains a CinC 2017 single-lead record beside 12-lead ones: shares come from the latter."""
    def rec(key, leads):
        return input_attribution.ExplainedRecord(key, np.zeros((len(leads), 10)), 500.0, tuple(leads))

    twelve = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    explained = [(rec("cinc2017/A1", ["I"]), "a1"), (rec("ptbxl/1", twelve), "p1"), (rec("ludb/2", twelve), "l2"),
                 (rec("code15/3", twelve[:6]), "c3")]
    names, chosen = input_attribution.richest_layout(explained)
    assert names == list(twelve)
    assert [(r.key, att) for r, att in chosen] == [("ptbxl/1", "p1"), ("ludb/2", "l2")]
    assert input_attribution.richest_layout(explained[:1])[0] == ["I"]


def test_headline_level_prefers_the_most_data():
    assert inputs.headline_level(["frac10", "frac100", "shot10"]) == "frac100"
    assert inputs.headline_level(["shot5", "frac25", "frac5"]) == "frac25"
    assert inputs.headline_level(["shot5", "shot20"]) == "shot20"


def test_label_efficiency_and_comparison_skip_with_reasons(tmp_path):
    run_dir = SimpleNamespace(results=list, load_scores=lambda cell_id: (_ for _ in ()).throw(FileNotFoundError()))

    def task_inputs(level=None):
        return inputs.TaskInputs(run_dir=run_dir, store=AnalysisStore(tmp_path), task="ludb_lvh", level=level,
                                 options=inputs.AnalysisOptions(), n_boot=10)

    with pytest.raises(AnalysisSkip, match="two finished scarcity levels"):
        analyse_task("label_efficiency", task_inputs())
    with pytest.raises(AnalysisSkip, match="comparison needs 2"):
        analyse_task("comparison", task_inputs("frac10"))
    with pytest.raises(AnalysisSkip, match="CKA needs"):
        analyse_task("cka", task_inputs())
    assert set(AnalysisStore(tmp_path).entries("skipped")) == {
        "label_efficiency.ludb_lvh", "comparison.ludb_lvh-frac10", "cka.ludb_lvh"}
    with pytest.raises(DataError, match="per column"):
        analyse_task("comparison", task_inputs())


def test_registry_lists_every_analysis_with_a_scope_and_its_invariants():
    assert [(n, spec.scope) for n, spec in ANALYSES.registered()] == [
        ("dimension_attribution", "pair"), ("input_attribution", "pair"), ("projection", "pair"),
        ("representation", "pair"), ("transfer", "pair"), ("subgroups", "pair"), ("calibration", "pair"),
        ("robustness", "pair"), ("efficiency", "pair"), ("cka", "task"), ("label_efficiency", "task"),
        ("efficiency_front", "task"), ("comparison", "column"), ("ranks", "run"), ("controls", "run")]
    assert pair_analyses("ludb_lvh") == ["dimension_attribution", "input_attribution", "projection", "representation",
                                         "subgroups", "calibration", "robustness", "efficiency"]
    assert "transfer" in pair_analyses("sex") and "transfer" not in pair_analyses("ludb_lvh")
    assert ANALYSES.get("representation").check({"rankme": 0.5, "n_records": 10, "embed_dim": 4})
    assert ANALYSES.get("representation").check({"rankme": 2.0, "n_records": 10, "embed_dim": 4}) == []


def test_a_payload_that_breaks_its_invariants_is_an_error_not_a_stored_number(tmp_path, monkeypatch):
    from ecgfm_suite.analysis import label_efficiency

    bad = inputs.Output({"task": "ludb_lvh", "models": {"m": {"points": [], "reach": 2.0}}})
    monkeypatch.setattr(label_efficiency, "run", lambda _: bad)
    task_inputs = inputs.TaskInputs(run_dir=None, store=AnalysisStore(tmp_path), task="ludb_lvh", level=None,
                                    options=inputs.AnalysisOptions(), n_boot=10)
    with pytest.raises(DataError, match="label_efficiency ludb_lvh: broken invariants: m: 0 points"):
        analyse_task("label_efficiency", task_inputs)
    assert AnalysisStore(tmp_path).read("label_efficiency", "ludb_lvh") is None


@pytest.mark.slow
@pytest.mark.real_data
def test_real_ludb_refit_matches_the_cell_and_every_analysis_runs(data_dir, tmp_path, analysis_cache_dir):
    """random_cnn on LUDB LVH through the Runner: the analyses get the cell's own probes, a refit scores the
    test records as the cell did, and each per-(model, task) analysis writes a consistent result."""
    from ecgfm_suite.engine.runner import Runner, run_cell
    from ecgfm_suite.engine.settings import resolve
    from ecgfm_suite.report.figures import figures_for
    from ecgfm_suite.results import RunDir
    from ecgfm_suite.results.cell import CellSpec

    settings = resolve({"data_dir": str(data_dir), "cache_dir": str(analysis_cache_dir), "models": "random_cnn",
                        "tasks": "ludb_lvh", "scarcity": "frac10,frac100", "seeds": "2", "n_boot": "50"}, env={})
    runner = Runner(settings)
    run = RunDir.create(tmp_path, "run")
    session = AnalysisStage(runner, run, runner.plan(), draw=figures_for,
                            options=inputs.AnalysisOptions(input_max_records=2))
    encoder = session.encoder("random_cnn")
    out = run_cell(runner, CellSpec(model="random_cnn", task="ludb_lvh", scarcity="frac10"), encoder)
    data = session.data("random_cnn", "ludb_lvh")
    handed = inputs.probe_runs(data, "frac10")  # the cell's own probes, handed over by the runner once
    assert runner.take_probes("random_cnn-ludb_lvh-frac10") is None and "frac100" not in data.fitted
    test = data.X[data.rows("test")]
    assert np.array_equal(np.stack([r.probe.predict_scores(test) for r in handed]), out.test_scores)
    refit = inputs.refit(data, "frac10")  # what a process that did not run the cell explains
    assert [r.seed for r in refit] == [r.seed for r in handed]
    assert all(np.array_equal(a.train_rows, b.train_rows) for a, b in zip(refit, handed))
    np.testing.assert_allclose(np.stack([r.probe.predict_scores(test) for r in refit]), out.test_scores,
                               rtol=1e-6, atol=1e-7)
    assert np.array_equal(np.asarray(data.task.keys)[data.rows("test")], out.test_keys)

    dims = session.run_pair_analysis("dimension_attribution", "random_cnn", "ludb_lvh")
    assert set(dims["cells"]) == {"random_cnn-ludb_lvh-frac10", "random_cnn-ludb_lvh-frac100"}
    assert dims["cells"]["random_cnn-ludb_lvh-frac100"]["outputs"]["lvh"]["seed_stability"] == 1.0  # same data
    explained = session.run_pair_analysis("input_attribution", "random_cnn", "ludb_lvh")
    assert len(explained["records"]) == 2 and all(r["additivity_error"] < 1e-5 for r in explained["records"])
    assert sum(explained["lead_importance"]["lvh"]["share"].values()) == pytest.approx(1.0)
    rep = session.run_pair_analysis("representation", "random_cnn", "ludb_lvh")
    assert 1 < rep["rankme"] <= 256
    with pytest.raises(AnalysisSkip, match="not a pooled"):
        session.run_pair_analysis("transfer", "random_cnn", "ludb_lvh")
    store = session.store
    assert store.read("tasks", "ludb_lvh")["classes"] == ["no_lvh", "lvh"]
    assert store.entries("skipped")["transfer.random_cnn-ludb_lvh"]["reason"].startswith("task ludb_lvh is not")
    assert [p.name for p in store.figures("input_attribution", "random_cnn-ludb_lvh")] == [
        "random_cnn-ludb_lvh.traces.png"]


def test_runner_keeps_probes_within_its_memory_cap(monkeypatch):
    """Fitted probes wait for the analysis stage in insertion order; past the cap the oldest go (refitted)."""
    from ecgfm_suite.engine import runner as runner_module

    keeper = runner_module.Runner.__new__(runner_module.Runner)
    keeper._probes, keeper._probe_bytes = {}, 0
    run = SeedProbe(0, np.arange(1000, dtype=np.int64), SimpleNamespace(estimator=None))
    assert run.nbytes == 8000
    monkeypatch.setattr(runner_module, "PROBE_MEMO_BYTES", 20_000)
    for i in range(4):
        keeper.keep_probes(f"cell{i}", [run])
    assert list(keeper._probes) == ["cell2", "cell3"]
    assert keeper.take_probes("cell0") is None and keeper.take_probes("cell3") == [run]
    assert keeper.take_probes("cell3") is None


@pytest.mark.slow
@pytest.mark.real_data
def test_worker_processes_give_the_analyses_of_the_session_process(data_dir, tmp_path, analysis_cache_dir):
    """With several cores the session hands every pair's analyses to worker processes; their payloads (timings
    and the time-budgeted input attribution's resolution aside) equal those computed in the session's process."""
    from ecgfm_suite.engine.runner import Runner, run_cell
    from ecgfm_suite.engine.settings import resolve
    from ecgfm_suite.report.figures import figures_for
    from ecgfm_suite.results import RunDir
    from ecgfm_suite.results.cell import CellSpec

    settings = resolve({"data_dir": str(data_dir), "cache_dir": str(analysis_cache_dir), "models": "random_cnn",
                        "tasks": "ludb_lvh,ludb_sex", "scarcity": "frac100", "seeds": "2", "n_boot": "50"}, env={})
    payloads = []
    for worker in (None, "gw0"):  # no worker id: worker processes; an xdist worker: in this process
        runner = Runner(settings, worker_id=worker)
        run = RunDir.create(tmp_path, f"run-{worker}")
        for task in ("ludb_lvh", "ludb_sex"):
            run_cell(runner, CellSpec(model="random_cnn", task=task, scarcity="frac100"),
                     runner.load_encoder("random_cnn"))
        session = AnalysisStage(runner, run, runner.plan(), draw=figures_for)
        got = {}
        for task in ("ludb_lvh", "ludb_sex"):
            for name in pair_analyses(task):
                payload = plain(session.run_pair_analysis(name, "random_cnn", task))
                got[f"{name}/{task}"] = ANALYSES.get(name).reproducible(payload)
        assert {p.name for p in (run.path / "analysis" / "projection").glob("*.png")} == {
            "random_cnn-ludb_lvh.map.png", "random_cnn-ludb_sex.map.png"}
        payloads.append(got)
    pooled, in_process = payloads
    assert pooled == in_process
