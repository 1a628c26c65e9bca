"""Model comparison within a cell column (task × scarcity): paired tests on the same test records.

Each model's test scores are the mean over seeds of its probe's scores (every seed draws the
same training subset for every model, so the seed-mean is each model's ensemble prediction
on identical training data). Records are aligned by key; only records every compared model
scored are used. For every two models ``metrics.paired_bootstrap`` gives the difference of
the main metric with a bootstrap 95 % CI and a permutation p-value.

The best model is the one with the best leaderboard value; a model is "not significantly
worse" than it unless its difference is in the worse direction with p < ``ALPHA``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from itertools import combinations
from typing import Any

import numpy as np

from ..errors import AnalysisSkip, DataError
from ..metrics import METRICS, paired_bootstrap
from .inputs import Output, TaskInputs, within

log = logging.getLogger(__name__)

ALPHA = 0.05


def align(scored: Mapping[str, Mapping[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Common test records of every model: (keys, y_test, model → seed-mean scores), in the first model's order.

    ``scored[model]`` holds ``keys`` (n,), ``y_test`` and ``scores`` (n_seeds, n[, C]) as a cell saves them.
    """
    models = sorted(scored)
    if len(models) < 2:
        raise DataError(f"need two models to compare, got {models}", "scores")
    common = set(scored[models[0]]["keys"].tolist())
    for m in models[1:]:
        common &= set(scored[m]["keys"].tolist())
    first = scored[models[0]]
    keys = np.array([k for k in first["keys"].tolist() if k in common], dtype=object)
    if len(keys) == 0:
        raise DataError("the models share no test records", "scores")
    y: np.ndarray | None = None
    mean_scores = {}
    for m in models:
        position = {k: i for i, k in enumerate(scored[m]["keys"].tolist())}
        rows = np.array([position[k] for k in keys])
        y_m = np.asarray(scored[m]["y_test"])[rows]
        if y is None:
            y = y_m
        elif not np.array_equal(y, y_m):
            raise DataError(f"model {m} has different labels for the same test records", "y_test")
        mean_scores[m] = np.asarray(scored[m]["scores"], dtype=np.float64).mean(axis=0)[rows]
    assert y is not None  # set by the first of the (two or more) models
    return keys, y, mean_scores


def compare(metric: str, task_type: str, y: np.ndarray, scores: Mapping[str, np.ndarray],
            values: Mapping[str, float], *, n_boot: int, seed: int, alpha: float = ALPHA) -> dict[str, Any]:
    """Every pair's paired comparison, the best model by ``values`` and the models not significantly worse."""
    spec = METRICS.get(metric)
    models = sorted(scores)
    missing = [m for m in models if m not in values or not np.isfinite(values[m])]
    if missing:
        raise DataError(f"no finite leaderboard value for {missing}", "values")
    best = (max if spec.higher_is_better else min)(models, key=lambda m: (values[m], m))
    pairs: dict[str, dict[str, Any]] = {}
    for a, b in combinations(models, 2):
        c = paired_bootstrap(metric, y, scores[a], scores[b], n_boot=n_boot, seed=seed, task_type=task_type)
        pairs[f"{a}|{b}"] = {"a": a, "b": b, "diff": c.diff, "ci_low": c.ci_low, "ci_high": c.ci_high,
                             "p_value": c.p_value}
    sign = 1.0 if spec.higher_is_better else -1.0
    verdict: dict[str, dict[str, Any]] = {}
    for m in models:
        if m == best:
            verdict[m] = {"vs_best": None, "significantly_worse": False}
            continue
        pair = pairs.get(f"{m}|{best}") or pairs[f"{best}|{m}"]
        diff = pair["diff"] if pair["a"] == m else -pair["diff"]  # m − best
        worse = sign * diff < 0 and pair["p_value"] < alpha
        verdict[m] = {"vs_best": diff, "p_value": pair["p_value"], "significantly_worse": bool(worse)}
    return {"metric": metric, "alpha": alpha, "best": best, "values": {m: float(values[m]) for m in models},
            "not_worse": [m for m in models if not verdict[m]["significantly_worse"]], "verdict": verdict,
            "pairs": pairs, "n_records": int(len(y)), "scores": "mean over seeds"}


# --------------------------------------------------------------------------- on a benchmark run

def run(inputs: TaskInputs) -> Output:
    """Paired comparisons of every two models in the (task, level) column (see ``comparison``)."""
    task_id, level, run_dir = inputs.task, inputs.level, inputs.run_dir
    column = {r.model: r for r in inputs.results() if r.task == task_id and r.scarcity == level and r.main.is_finite()}
    scored = {}
    for model, r in sorted(column.items()):
        try:
            scored[model] = run_dir.load_scores(r.cell_id)
        except FileNotFoundError:
            log.info("no saved scores for %s", r.cell_id)
    if len(scored) < 2:
        raise AnalysisSkip(f"{task_id}/{level}: {len(scored)} model(s) with saved test scores; comparison needs 2")
    first = column[next(iter(scored))]
    _, y, scores = align(scored)
    out = compare(first.main_metric, first.task_type, y, scores, {m: column[m].main.value for m in scored},
                  n_boot=inputs.n_boot, seed=inputs.options.seed)
    return Output({"task": task_id, "scarcity": level, "cells": {m: column[m].cell_id for m in scored}, **out})


def problems(p: Mapping[str, Any]) -> list[str]:
    """The best model is among those not significantly worse; p-values are probabilities."""
    found = [] if p["best"] in p["not_worse"] else [f"best model {p['best']} not among the not-worse {p['not_worse']}"]
    return found + [f"{pair}: p-value {v['p_value']}" for pair, v in p["pairs"].items()
                    if not within(v["p_value"], 0, 1)]
