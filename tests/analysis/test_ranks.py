"""Ranks with honest uncertainty: ties, intervals, significance groups, and a run's grid end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ecgfm_suite.analysis import ranks
from ecgfm_suite.analysis.comparison import correct
from ecgfm_suite.analysis.registry import ANALYSES, RUN
from ecgfm_suite.analysis.store import AnalysisStore
from ecgfm_suite.engine.analyses import run_task_analyses, task_targets
from ecgfm_suite.metrics import point_estimate
from ecgfm_suite.report.figures import figures_for
from ecgfm_suite.results import RunDir
from ecgfm_suite.results.cell import CellSpec, MetricSummary
from ecgfm_suite.results.synthetic import synthetic_result


def test_ties_share_the_average_rank_and_direction_is_per_column():
    values = np.array([[0.9, 0.9, 0.5], [3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(ranks.rank_matrix(values, np.array([True, False])), [[1.5, 1.5, 3], [3, 1, 2]])


def test_a_model_best_everywhere_by_far_ranks_first_with_a_tight_interval():
    rng = np.random.default_rng(0)
    values = np.array([[0.95, 0.70, 0.60], [0.90, 0.65, 0.70], [0.97, 0.60, 0.61]])
    samples = values[:, :, None] + rng.normal(0, 0.01, (3, 3, 400))
    point, low, high = ranks.rank_intervals(values, samples, np.ones(3, bool))
    assert point[0] == 1.0 and low[0] == 1.0 == high[0]
    assert 2 <= low[1] <= point[1] <= high[1] <= 3


@st.composite
def _grids(draw):
    c, m, b = draw(st.integers(1, 4)), draw(st.integers(2, 5)), draw(st.integers(2, 30))
    level = st.sampled_from([0.5, 0.6, 0.7, 0.8])  # few distinct values: ties are common
    values = draw(arrays(np.float64, (c, m), elements=level))
    samples = draw(arrays(np.float64, (c, m, b), elements=level))
    return values, samples, draw(arrays(np.bool_, (c,)))


@settings(max_examples=60, deadline=None)
@given(_grids(), st.randoms(use_true_random=False))
def test_rank_intervals_properties(grid, random):
    values, samples, higher = grid
    c, m = values.shape
    point, low, high = ranks.rank_intervals(values, samples, higher)
    assert point.sum() == pytest.approx(m * (m + 1) / 2)  # ties keep the rank total
    assert np.all((low >= 1) & (low <= high) & (high <= m))
    order = list(range(m))
    random.shuffle(order)
    shuffled = ranks.rank_intervals(values[:, order], samples[:, order], higher)
    for got, want in zip(shuffled, (point, low, high), strict=True):
        np.testing.assert_allclose(got, want[order])  # a model's interval does not depend on its position
    fixed = ranks.rank_intervals(values, np.repeat(values[:, :, None], 5, axis=2), higher)
    np.testing.assert_allclose(fixed[1], point)  # no resampling variation: the interval is the point
    np.testing.assert_allclose(fixed[2], point)


def test_letter_groups_are_the_maximal_runs_without_a_separated_pair():
    assert ranks.letter_groups(["a", "b", "c"], set()) == {"a": "a", "b": "a", "c": "a"}
    assert ranks.letter_groups(["a", "b", "c"], {frozenset("ac")}) == {"a": "a", "b": "ab", "c": "b"}
    every = {frozenset("ab"), frozenset("bc"), frozenset("ac")}
    assert ranks.letter_groups(["a", "b", "c"], every) == {"a": "a", "b": "b", "c": "c"}


def test_holm_and_benjamini_hochberg_corrections():
    p = [0.01, 0.04, 0.03, 0.20]
    np.testing.assert_allclose(correct(p, "holm"), [0.04, 0.09, 0.09, 0.20])
    np.testing.assert_allclose(correct(p, "bh"), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20])


def _separations(*wins: tuple[str, str, float]) -> dict[str, dict]:
    return {f"t{i}": {"metric": "auroc", "pairs": {f"{a}|{b}": {"a": a, "b": b, "diff": 0.1, "p_value": p}}}
            for i, (a, b, p) in enumerate(wins)}


def test_a_pair_is_separated_when_one_wins_somewhere_and_never_loses_after_correction():
    assert ranks.separations(_separations(("a", "b", 0.001)), 0.05, "holm") == {frozenset("ab")}
    both_ways = _separations(("a", "b", 0.001), ("b", "a", 0.001))
    assert ranks.separations(both_ways, 0.05, "holm") == set()
    # 0.03 alone is significant; with a second, unrelated test it is not after Holm (0.03 × 2)
    assert ranks.separations(_separations(("a", "b", 0.03), ("c", "d", 0.5)), 0.05, "holm") == set()


MODELS = {"good_fm": 0.3, "weak_fm": 3.0, "random_cnn": 3.0}  # score noise: small = good


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory) -> RunDir:
    """3 models × 2 tasks × 2 levels with saved scores whose AUROCs are what the results say."""
    run = RunDir.create(tmp_path_factory.mktemp("ranks"), "grid")
    rng = np.random.default_rng(0)
    for task in ("ludb_lvh", "ludb_sex"):
        y = rng.integers(0, 2, 300)
        keys = np.array([f"ludb/{task}{i}" for i in range(300)])
        for level in ("frac10", "frac100"):
            for model, noise in MODELS.items():
                scores = y[None, :] + noise * rng.normal(size=(2, 300))
                cell = CellSpec(model=model, task=task, scarcity=level)
                value = point_estimate("auroc", "binary", y, scores.mean(axis=0))
                result = synthetic_result(cell, (0, 1), rng)
                main = MetricSummary(value=value, ci_low=value - 0.05, ci_high=value + 0.05, se=0.02,
                                     seed_mean=value, seed_std=0.0, per_seed=(value, value))
                run.append(dataclasses.replace(result, metrics={"auroc": main}))
                run.save_scores(cell.id, keys=keys, y_test=y, scores=scores)
    skipped = run_task_analyses(run, n_boot=200)
    assert not [k for k in skipped if k.split()[0] in ("comparison", "ranks", "controls")], skipped
    return run


def test_the_run_wide_analyses_come_last_and_rank_the_grid(grid_run):
    targets = task_targets([CellSpec.from_id(r.cell_id) for r in grid_run.results()])
    assert targets[-2:] == [("ranks", RUN, None), ("controls", RUN, None)]
    payload = AnalysisStore(grid_run.path).read("ranks", RUN)
    assert payload is not None and payload["correction"] == "bh"
    assert set(payload["grids"]) == {"all", "frac10", "frac100"}
    everything = payload["grids"]["all"]
    good = everything["models"]["good_fm"]
    assert good["mean_rank"] == 1.0 and good["ci_low"] == 1.0 == good["ci_high"] and good["share_best_or_tied"] == 1
    assert good["group"] == "a" and not {"a"} & set(everything["models"]["random_cnn"]["group"])
    assert "a" not in everything["models"]["weak_fm"]["group"]
    assert everything["models"]["weak_fm"]["share_best_or_tied"] == 0.0
    assert ANALYSES.get("ranks").check(payload) == []
    assert figures_for("ranks", payload)["ranks"].startswith(b"\x89PNG")
    rows = ANALYSES.get("ranks").rows(RUN, payload)
    assert rows[0]["model"] == "good_fm" and {"grid", "description", "mean_rank", "rank_ci_low", "rank_ci_high",
                                               "share_best_or_tied", "group", "correction"} <= set(rows[0])


def test_each_fm_cell_is_set_against_the_control(grid_run):
    payload = AnalysisStore(grid_run.path).read("controls", RUN)
    assert payload is not None
    by_cell = {(c["cell_id"], c["control"]): c for c in payload["cells"]}
    assert len(by_cell) == 8  # 2 FMs × 2 tasks × 2 levels, against the one control present
    good = by_cell["good_fm-ludb_lvh-frac100", "random_cnn"]
    assert good["verdict"] == "better" and good["ci_low"] > 0 and good["p_corrected"] >= good["p_value"]
    assert good["method"] == "bh"
    assert by_cell["weak_fm-ludb_lvh-frac100", "random_cnn"]["verdict"] == "not better"
    assert ANALYSES.get("controls").check(payload) == []
    assert {"cell_id", "model", "control", "diff", "ci_low", "ci_high", "p_value", "p_corrected", "method",
            "verdict"} <= set(ANALYSES.get("controls").rows(RUN, payload)[0])
