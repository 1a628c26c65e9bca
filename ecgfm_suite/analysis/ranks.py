"""Ranks with honest uncertainty, and the foundation models against the controls, over the run's whole grid.

**Ranks** (``run``): over the grid's columns (task × scarcity level) that every model of the run has a result
in, each model's rank per column (1 = best by the main metric of the seed-mean test scores; tied models
share the average rank), its mean rank, and a bootstrap interval of the mean rank: each task's common test
records are resampled (stratified, the same resample for every level and model of the task), every model
re-scored on it, every column re-ranked (ties keep their average rank), the ranks averaged. Also the share
of columns where the model is the best or not significantly worse than it (the column's comparison
verdicts, the leaderboard's marks), and significance groups: every paired test of every column of the
grid is one family, corrected by ``comparison.CORRECTION``; a model is above another when it is
significantly better in at least one column and significantly worse in none, and the groups (letters)
are the maximal runs of models, in mean-rank order, of which no two are so separated. Rows per grid: the
whole grid and, when it has several levels, each level.

**Controls** (``run_controls``): the stored column comparisons' ``controls`` sections as one table: each
foundation model cell against ``random_cnn`` and ``handcrafted`` on the same test records.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

from ..errors import AnalysisSkip
from ..metrics import METRICS, draw_indices, strata
from ..metrics.bootstrap import percentile_ci
from ..metrics.resampled import metric_samples
from .comparison import ALPHA, CORRECTION, align, column_comparison, correct
from .inputs import Output, TaskInputs, within

log = logging.getLogger(__name__)

ALL = "all"


def rank_matrix(values: np.ndarray, higher_is_better: np.ndarray) -> np.ndarray:
    """Ranks of the models (last axis) within each column (first axis): 1 = best, ties share the average rank.
    ``values`` is (C, M) or (C, B, M); ``higher_is_better`` is (C,)."""
    sign = np.where(np.asarray(higher_is_better, dtype=bool), -1.0, 1.0).reshape((-1,) + (1,) * (values.ndim - 1))
    return np.asarray(rankdata(sign * values, axis=-1, method="average"))


def rank_intervals(values: np.ndarray, samples: np.ndarray, higher_is_better: np.ndarray,
                   level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean rank, interval low, interval high) per model. ``values`` (C, M): each column's metric; ``samples``
    (C, M, B): the same on B resamples; a resample with an undefined value (NaN) is left out."""
    point = rank_matrix(values, higher_is_better).mean(axis=0)
    boot = np.moveaxis(samples, 1, 2)  # (C, B, M)
    ranks = rank_matrix(boot, higher_is_better)
    ranks[np.isnan(boot).any(axis=2)] = np.nan
    mean = ranks.mean(axis=0)  # (B, M)
    low, high = np.array([percentile_ci(mean[:, m], level)[:2] for m in range(values.shape[1])]).T
    return point, low, high


def letter_groups(order: Sequence[str], separated: set[frozenset[str]]) -> dict[str, str]:
    """Letters of the maximal runs of consecutive models (in ``order``) of which no two are separated."""
    runs: list[tuple[int, int]] = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and not any(frozenset((order[k], order[j + 1])) in separated for k in range(i, j + 1)):
            j += 1
        if not runs or j > runs[-1][1]:
            runs.append((i, j))
    names = [string.ascii_lowercase[k % 26] * (1 + k // 26) for k in range(len(runs))]
    return {m: "".join(name for name, (i, j) in zip(names, runs, strict=True) if i <= pos <= j)
            for pos, m in enumerate(order)}


def separations(comparisons: Mapping[str, Mapping[str, Any]], alpha: float, correction: str) -> set[frozenset[str]]:
    """Pairs of models one of which is above the other over the columns (see the module docstring), with every
    pair of every column corrected as one family."""
    tests = [(col, pair) for col, c in comparisons.items() for pair in c["pairs"].values()]
    corrected = correct([pair["p_value"] for _, pair in tests], correction)
    wins: dict[tuple[str, str], int] = {}
    for (col, pair), p in zip(tests, corrected, strict=True):
        if p < alpha and pair["diff"] != 0:
            higher = METRICS.get(comparisons[col]["metric"]).higher_is_better
            winner, loser = (pair["a"], pair["b"]) if (pair["diff"] > 0) == higher else (pair["b"], pair["a"])
            wins[winner, loser] = wins.get((winner, loser), 0) + 1
    return {frozenset((a, b)) for (a, b) in wins if (b, a) not in wins}


def _columns(inputs: TaskInputs) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str], dict[str, str]]:
    """The grid: (task, level) → {model: cell result} for the columns every model has a finite result in,
    the models, and the other columns with why they are left out."""
    columns: dict[tuple[str, str], dict[str, Any]] = {}
    for r in inputs.results():
        if r.main.is_finite():
            columns.setdefault((r.task, r.scarcity), {})[r.model] = r
    models = sorted({m for col in columns.values() for m in col})
    left_out = {f"{t}-{lv}": f"no result for {', '.join(sorted(set(models) - set(col)))}"
                for (t, lv), col in columns.items() if set(col) != set(models)}
    return {k: col for k, col in sorted(columns.items()) if set(col) == set(models)}, models, left_out


def _scored(inputs: TaskInputs, columns: Mapping[tuple[str, str], Mapping[str, Any]],
            left_out: dict[str, str]) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    """Each column's aligned (keys, y, model → seed-mean scores); a column without every model's saved scores
    joins ``left_out``."""
    out = {}
    for (task, level), col in columns.items():
        try:
            out[task, level] = align({m: inputs.run_dir.load_scores(r.cell_id) for m, r in col.items()})
        except FileNotFoundError as exc:
            left_out[f"{task}-{level}"] = f"saved test scores missing ({exc})"
    return out


def _restricted(scored: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]
                ) -> dict[str, dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]]:
    """Per task, its columns restricted to the records every column of the task shares, in one order:
    task → level → (y, model → scores)."""
    by_task: dict[str, dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]] = {}
    for (task, level), col in scored.items():
        by_task.setdefault(task, {})[level] = col
    out: dict[str, dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]] = {}
    for task, levels in by_task.items():
        common = sorted(set.intersection(*(set(keys.tolist()) for keys, _, _ in levels.values())))
        out[task] = {}
        for level, (keys, y, scores) in levels.items():
            position = {k: i for i, k in enumerate(keys.tolist())}
            rows = np.array([position[k] for k in common], dtype=np.intp)
            out[task][level] = (y[rows], {m: s[rows] for m, s in scores.items()})
    return out


def run(inputs: TaskInputs) -> Output:
    """Mean ranks with bootstrap intervals, best-or-tied shares and significance groups (module docstring)."""
    columns, models, left_out = _columns(inputs)
    if len(models) < 2 or not columns:
        raise AnalysisSkip(f"ranks need 2 models with results in a common column; models {models}, "
                           f"{len(columns)} common column(s)")
    restricted = _restricted(_scored(inputs, columns, left_out))
    grid = [(t, lv) for t, lv in columns if t in restricted and lv in restricted[t]]
    if not grid:
        raise AnalysisSkip(f"no column has every model's saved test scores: {left_out}")
    rng = np.random.default_rng(inputs.options.seed)
    values = np.empty((len(grid), len(models)))
    samples = np.empty((len(grid), len(models), inputs.n_boot))
    task_idx: dict[str, np.ndarray] = {}
    for c, (task, level) in enumerate(grid):
        first = columns[task, level][models[0]]
        y, scores = restricted[task][level]
        if task not in task_idx:
            task_idx[task] = draw_indices(strata(first.task_type, y), inputs.n_boot, rng)
        for m, model in enumerate(models):
            values[c, m], samples[c, m] = metric_samples(first.main_metric, first.task_type, y, scores[model],
                                                         task_idx[task])
    higher = np.array([METRICS.get(columns[col][models[0]].main_metric).higher_is_better for col in grid])
    comparisons = {f"{t}-{lv}": _comparison(inputs, t, lv) for t, lv in grid}
    column_ranks = rank_matrix(values, higher)
    levels = list(dict.fromkeys(lv for _, lv in grid))
    grids = {ALL: list(range(len(grid)))}
    if len(levels) > 1:
        grids.update({lv: [c for c, (_, level) in enumerate(grid) if level == lv] for lv in levels})
    out_grids = {}
    for name, members in grids.items():
        point, low, high = rank_intervals(values[members], samples[members], higher[members])
        chosen = {f"{grid[c][0]}-{grid[c][1]}": comparisons[f"{grid[c][0]}-{grid[c][1]}"] for c in members}
        order = [models[m] for m in np.argsort(point, kind="stable")]
        groups = letter_groups(order, separations(chosen, ALPHA, CORRECTION))
        tasks = sorted({grid[c][0] for c in members})
        out_grids[name] = {
            "description": f"{len(tasks)} task(s) × {', '.join(dict.fromkeys(grid[c][1] for c in members))} "
                           f"({len(members)} columns)",
            "columns": list(chosen), "n_tests": sum(len(c["pairs"]) for c in chosen.values()),
            "models": {model: {"mean_rank": float(point[m]), "ci_low": float(low[m]), "ci_high": float(high[m]),
                               "share_best_or_tied": float(np.mean([_best_or_tied(chosen[col], model)
                                                                    for col in chosen])),
                               "group": groups[model]} for m, model in enumerate(models)},
        }
    return Output({"models": models, "correction": CORRECTION, "alpha": ALPHA, "n_boot": inputs.n_boot,
                   "scores": "mean over seeds", "grids": out_grids, "left_out": left_out,
                   "columns": {f"{t}-{lv}": {"task": t, "scarcity": lv, "metric": columns[t, lv][models[0]].main_metric,
                                             "n_records": int(len(restricted[t][lv][0])),
                                             "values": dict(zip(models, values[c].tolist(), strict=True)),
                                             "ranks": dict(zip(models, column_ranks[c].tolist(), strict=True))}
                               for c, (t, lv) in enumerate(grid)}})


def _comparison(inputs: TaskInputs, task: str, level: str) -> Mapping[str, Any]:
    """The column's stored comparison, or the same comparison computed here when it was not stored (a run
    that selected ``-k ranks`` alone)."""
    stored = inputs.store.read("comparison", f"{task}-{level}")
    if stored is not None and "p_corrected" in next(iter(stored["pairs"].values()), {"p_corrected": None}):
        return stored
    log.info("no stored comparison for %s-%s: computing it", task, level)
    return column_comparison(inputs, task, level)


def _best_or_tied(comparison: Mapping[str, Any], model: str) -> bool:
    return comparison["best"] == model or not comparison["verdict"][model]["significantly_worse"]


def rows(key: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per grid and model."""
    return [{"grid": name, "description": g["description"], "model": model, "mean_rank": m["mean_rank"],
             "rank_ci_low": m["ci_low"], "rank_ci_high": m["ci_high"],
             "share_best_or_tied": m["share_best_or_tied"], "n_columns": len(g["columns"]), "group": m["group"],
             "correction": payload["correction"]}
            for name, g in payload["grids"].items()
            for model, m in sorted(g["models"].items(), key=lambda kv: kv[1]["mean_rank"])]


def problems(p: Mapping[str, Any]) -> list[str]:
    """Mean ranks lie in [1, models] and sum to what ranks of the models sum to; intervals are ordered; shares
    are fractions; every model has a group."""
    n = len(p["models"])
    found = []
    for name, g in p["grids"].items():
        total = sum(m["mean_rank"] for m in g["models"].values())
        if abs(total - n * (n + 1) / 2) > 1e-6:
            found.append(f"{name}: mean ranks sum to {total}, not {n * (n + 1) / 2}")
        for model, m in g["models"].items():
            if not (within(m["mean_rank"], 1, n) and within(m["ci_low"], 1, n) and within(m["ci_high"], 1, n)):
                found.append(f"{name}/{model}: rank {m['mean_rank']} [{m['ci_low']}, {m['ci_high']}] outside [1, {n}]")
            if None not in (m["ci_low"], m["ci_high"]) and m["ci_low"] > m["ci_high"] + 1e-9:
                found.append(f"{name}/{model}: interval {m['ci_low']} > {m['ci_high']}")
            if not within(m["share_best_or_tied"], 0, 1) or not m["group"]:
                found.append(f"{name}/{model}: share {m['share_best_or_tied']}, group {m['group']!r}")
    return found


# --------------------------------------------------------------------------- the controls

def run_controls(inputs: TaskInputs) -> Output:
    """Every stored column comparison's foundation models against the controls, as one table."""
    columns = sorted({(r.task, r.scarcity) for r in inputs.results()})
    cells, left_out = [], {}
    for task, level in columns:
        stored = inputs.store.read("comparison", f"{task}-{level}")
        if stored is None:
            left_out[f"{task}-{level}"] = "no stored comparison (fewer than 2 models with saved test scores)"
            continue
        for model, against in sorted((stored.get("controls") or {}).items()):
            for control, c in sorted(against.items()):
                cells.append({"cell_id": stored["cells"][model], "model": model, "task": task, "scarcity": level,
                              "metric": stored["metric"], "control": control, **c})
    if not cells:
        raise AnalysisSkip("no column compares a foundation model with a control (random_cnn, handcrafted)"
                           + (f"; {len(left_out)} column(s) without a comparison" if left_out else ""))
    return Output({"correction": cells[0]["method"], "alpha": ALPHA, "cells": cells, "left_out": left_out})


CONTROL_COLUMNS = ("cell_id", "model", "task", "scarcity", "metric", "control", "diff", "ci_low", "ci_high", "p_value",
                   "p_corrected", "method", "verdict")


def control_rows(key: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per foundation-model cell and control: the difference (model − control) and the verdict."""
    return [{name: c[name] for name in CONTROL_COLUMNS} for c in payload["cells"]]


def controls_problems(p: Mapping[str, Any]) -> list[str]:
    """p-values are probabilities; the verdict agrees with the corrected p-value."""
    found = []
    for c in p["cells"]:
        if not (within(c["p_value"], 0, 1) and within(c["p_corrected"], 0, 1)):
            found.append(f"{c['cell_id']} vs {c['control']}: p-values {c['p_value']}, {c['p_corrected']}")
        elif (c["verdict"] != "not better") != (c["p_corrected"] < p["alpha"]):
            found.append(f"{c['cell_id']} vs {c['control']}: verdict {c['verdict']} with p {c['p_corrected']}")
    return found
