"""Representation analyses of the benchmark's models and tasks (marker ``analysis``).

Runs after ``test_matrix.py`` (pytest orders files alphabetically) from the same plan:

- ``test_model_task_analysis[<model>-<task>-<analysis>]``: SHAP over embedding dimensions and over
  the input, UMAP with its structure scores, RankMe, and (pooled tasks) cross-continental transfer;
- ``test_task_analysis[<task>-cka|label_efficiency]`` and ``[<task>-<level>-comparison]``: CKA
  between models, label-efficiency curves and paired model comparisons, after every model (under
  pytest-xdist they run on the controller at session end instead: a worker cannot see the others finish).

Outside pytest-xdist, on several cores, the first analysis test hands every (model, task)'s analyses to
worker processes and each test waits for its own (likewise the per-task analyses). A (model, task) whose
cells were skipped (no data, no weights) is skipped here with the same reason. Results are JSON (+ PNG)
under ``<run dir>/analysis/``; the report assembles them.
Select with ``-m analysis``, ``-m "not analysis"`` or ``-k <analysis>``.
"""

from __future__ import annotations

import math

import pytest

from ecgfm_suite.analysis import stage
from ecgfm_suite.errors import EcgfmError
from ecgfm_suite.pytest_plugin import KEY

pytestmark = pytest.mark.analysis


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = {"model_task_case", "task_case"} & set(metafunc.fixturenames)
    if not wanted:
        return

    try:
        plan = metafunc.config.stash[KEY].runner.plan()
    except EcgfmError as exc:
        raise pytest.UsageError(f"ecgfm-suite: {exc}") from None
    if "model_task_case" in wanted:
        # xdist_group: with `--dist loadgroup` a model's analyses follow its cells on the same worker
        cases = [pytest.param((m, t, name), id=f"{m}-{t}-{name}", marks=pytest.mark.xdist_group(m))
                 for m, t in stage.model_task_pairs(plan) for name in stage.pair_analyses(t)]
        metafunc.parametrize("model_task_case", cases)
    else:
        cases = [(name, t, None) for t in stage.plan_tasks(plan) for name in ("cka", "label_efficiency")]
        cases += [("comparison", t, level) for t, level in stage.plan_columns(plan)]
        metafunc.parametrize("task_case", cases,
                             ids=[f"{t}-{n}" if lv is None else f"{t}-{lv}-{n}" for n, t, lv in cases])


@pytest.fixture(scope="session")
def analysis(request: pytest.FixtureRequest) -> stage.StageSession:
    """One analysis stage per pytest process, on the cells' runner and run directory."""
    from ecgfm_suite.report.figures import figures_for

    bench = request.config.stash[KEY]
    return stage.StageSession(bench.runner, bench.run_dir, draw=figures_for)


def test_model_task_analysis(model_task_case, analysis, record_property):
    from ecgfm_suite.runner import CellSkip

    model, task, name = model_task_case
    try:
        payload = analysis.run_model_task(name, model, task)
    except (CellSkip, stage.AnalysisSkip) as skip:
        pytest.skip(str(skip))
    record_property("ecgfm_analysis_seconds", round(payload["seconds"], 3))
    CHECKS[name](payload)


def test_task_analysis(task_case, analysis, request, record_property):
    name, task, level = task_case
    if hasattr(request.config, "workerinput"):
        pytest.skip("under pytest-xdist the per-task analyses run on the controller at session end "
                    "(stage.run_task_analyses), once every worker's cells are done")
    try:
        payload = analysis.run_task(name, task, level)
    except stage.AnalysisSkip as skip:
        pytest.skip(str(skip))
    record_property("ecgfm_analysis_seconds", round(payload["seconds"], 3))
    CHECKS[name](payload)


# ------------------------------------------------------------------ invariants every result must satisfy

def _in(value, low, high):
    return value is None or (math.isfinite(value) and low - 1e-9 <= value <= high + 1e-9)


def _check_dimensions(p):
    for cell in p["cells"].values():
        for name, out in (cell.get("outputs") or {}).items():
            c = out["concentration"]
            assert 0 <= c["dims_50"] <= c["dims_90"] <= c["n_dims"] == p["embed_dim"], (name, c)
            assert len(out["top_dims"]) == min(p["top_k"], p["embed_dim"])
            assert _in(out["seed_stability"], 0, 1) and _in(out["top_k_test_share"], 0, 1)


def _check_input(p):
    for rec in p["records"]:  # the values of a record sum to f(record) − f(masked record)
        assert rec["additivity_error"] <= 1e-4 * max(1.0, *map(abs, rec["output"])), rec["key"]
    read = set(p["model_leads"]) | {substitute for _, substitute in p["lead_fallbacks"]}
    for rec in p["records"]:  # players: the model's leads, or their fallback where a record lacks one
        assert set(rec["player_leads"]) <= read, rec["key"]
    for imp in p["lead_importance"].values():
        assert abs(sum(imp["share"].values()) - 1) < 1e-6 or sum(imp["share"].values()) == 0
        unread = [lead for lead in imp["share"] if lead not in read]
        assert all(imp["share"][lead] == 0 for lead in unread), "a lead the model does not read got attribution"


def _check_projection(p):
    s = p["scores"]
    assert len(p["coords"]) == s["n_records"] == len(p["groups"])
    assert _in(s["silhouette"], -1, 1) and _in(s["knn_accuracy"], 0, 1) and _in(s["trustworthiness"], 0, 1)
    assert _in((p.get("separability") or {}).get("auroc"), 0, 1)


def _check_representation(p):
    assert 1 - 1e-6 <= p["rankme"] <= min(p["n_records"], p["embed_dim"]) + 1e-6


def _check_transfer(p):
    for a, row in p["cells"].items():
        for b, cell in row.items():
            assert cell["value"] is not None or cell["reason"]
            assert a != b or cell["drop"] in (0.0, None)


def _check_cka(p):
    for i, row in enumerate(p["cka"]):
        assert abs(row[i] - 1) < 1e-6 and all(_in(v, 0, 1) for v in row)


def _check_efficiency(p):
    for curve in p["models"].values():
        assert curve["points"] and _in(curve["reach"], 0, 1)


def _check_comparison(p):
    assert p["best"] in p["not_worse"]
    assert all(_in(pair["p_value"], 0, 1) for pair in p["pairs"].values())


CHECKS = {
    "dimension_attribution": _check_dimensions, "input_attribution": _check_input, "projection": _check_projection,
    "representation": _check_representation, "transfer": _check_transfer, "cka": _check_cka,
    "label_efficiency": _check_efficiency, "comparison": _check_comparison,
}
