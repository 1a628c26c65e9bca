"""Representation analyses of the benchmark's models and tasks (marker ``analysis``), after the cells.

The ecgfm plugin parametrizes them from the plan and keeps those of the cells selected in this process
(``-k``, ``--ecgfm-shard``, ``--lf``); every analysis is an entry of ``ecgfm_suite.analysis.ANALYSES``:

- ``test_model_task_analysis[<model>-<task>-<analysis>]``: per (model, task), e.g. SHAP over embedding
  dimensions and over the input, UMAP with its structure scores, RankMe, cross-continental transfer;
- ``test_task_analysis[<task>-<analysis>]`` and ``[<task>-<level>-<analysis>]``: across models, e.g. CKA,
  label-efficiency curves, paired comparisons. Under pytest-xdist they run on the controller at session
  end (a worker cannot see the others finish); under ``--ecgfm-shard`` at ``ecgfm-suite merge``.

A stored payload that breaks its analysis's invariants is an error, never a number in the report. A
(model, task) whose cells were skipped (no data, no weights) is skipped with the same reason. Results are
JSON (+ PNG) under ``<run dir>/analysis/``; the report assembles them.
Select with ``-m analysis``, ``-m "not analysis"`` or ``-k <analysis>``.
"""

from __future__ import annotations

import pytest

from ecgfm_suite.errors import Skip
from ecgfm_suite.pytest_plugin import DEFERRED_PROPERTY

pytestmark = pytest.mark.analysis


def test_model_task_analysis(ecgfm_pair_analysis, ecgfm_session, record_property):
    model, task, name = ecgfm_pair_analysis
    try:
        payload = ecgfm_session.run_pair_analysis(name, model, task)
    except Skip as skip:
        pytest.skip(str(skip))
    record_property("ecgfm_analysis_seconds", round(payload["seconds"], 3))


def test_task_analysis(ecgfm_task_analysis, ecgfm_session, record_property):
    if ecgfm_session.worker_id is not None:
        record_property(DEFERRED_PROPERTY, True)
        pytest.skip("under pytest-xdist the per-task analyses run on the controller at session end, once every "
                    "worker's cells are done")
    try:
        payload = ecgfm_session.run_task_analysis(ecgfm_task_analysis)
    except Skip as skip:
        pytest.skip(str(skip))
    record_property("ecgfm_analysis_seconds", round(payload["seconds"], 3))
    controls = ecgfm_session.gate.judge_controls(ecgfm_task_analysis[0], payload)
    if controls is not None:  # a column's comparison: its FMs against the controls (thresholds.yml `controls:`)
        for name, value in controls.properties():
            record_property(name, value)
        if controls.failed:
            pytest.fail(controls.reason(), pytrace=False)
        if controls.xfailed:
            pytest.xfail(controls.reason())
