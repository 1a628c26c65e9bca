"""Model comparison within a cell column (task × scarcity): paired tests on the same test records.

Each model's test scores are the mean over seeds of its probe's scores (every seed draws the
same training subset for every model, so the seed-mean is each model's ensemble prediction
on identical training data). Records are aligned by key; only records every compared model
scored are used. For every two models ``metrics.paired_bootstrap`` gives the difference of
the main metric with a bootstrap 95 % CI and a permutation p-value.

The p-values of a column's pairs are one family, corrected by ``CORRECTION`` (``bh``: Benjamini–Hochberg
false discovery rate, the default; ``holm``: family-wise error): a column's marks then do not depend on which other
tasks a run selected. The best model is the one with the best leaderboard value; a model is "not
significantly worse" than it unless its difference is in the worse direction with corrected p < ``ALPHA``.

Each foundation model is also set against each control in the column (``CONTROLS``: the seeded random
encoder and the handcrafted features, the threshold that holds on any data): its difference to the
control with CI, raw and corrected p-value, and whether it is significantly better, not better, or
significantly worse (``controls`` in the payload; ``ecgfm_suite.gate.controls`` acts on it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import false_discovery_control

from ..errors import AnalysisSkip, DataError
from ..metrics import METRICS, paired_bootstrap
from .inputs import Output, TaskInputs, within

log = logging.getLogger(__name__)

ALPHA = 0.05
#: multiple-comparison correction: "bh" (false discovery rate) or "holm" (family-wise). Benjamini–Hochberg,
#: because a permutation p-value is at least 1 / (n_boot + 1): Holm needs p < alpha / m, which 1,000
#: permutations cannot show for more than 50 tests (a grid's family), while BH still rejects where many are
CORRECTION = "bh"
CORRECTIONS = ("holm", "bh")
#: the controls every foundation model must beat
CONTROLS = ("random_cnn", "handcrafted")


def correct(p_values: Sequence[float], method: str = CORRECTION) -> np.ndarray:
    """Corrected p-values of one family: Holm's step-down (family-wise) or Benjamini–Hochberg (scipy's)."""
    p = np.asarray(p_values, dtype=np.float64)
    if method not in CORRECTIONS:
        raise DataError(f"unknown correction {method!r} (one of {', '.join(CORRECTIONS)})", "correction")
    if len(p) == 0:
        return p
    if method == "bh":
        return np.asarray(false_discovery_control(p, method="bh"))
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p))))
    out = np.empty_like(p)
    out[order] = np.minimum(stepped, 1.0)
    return out


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
            values: Mapping[str, float], *, n_boot: int, seed: int, alpha: float = ALPHA,
            correction: str = CORRECTION) -> dict[str, Any]:
    """Every pair's paired comparison (p-values corrected over the pairs), the best model by ``values``, the
    models not significantly worse, and every non-control model against each control."""
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
    for entry, p in zip(pairs.values(), correct([v["p_value"] for v in pairs.values()], correction), strict=True):
        entry["p_corrected"] = float(p)
    sign = 1.0 if spec.higher_is_better else -1.0
    verdict: dict[str, dict[str, Any]] = {}
    for m in models:
        if m == best:
            verdict[m] = {"vs_best": None, "significantly_worse": False}
            continue
        diff, with_best = oriented(pairs, m, best)
        worse = sign * diff < 0 and with_best["p_corrected"] < alpha
        verdict[m] = {"vs_best": diff, "p_value": with_best["p_value"], "p_corrected": with_best["p_corrected"],
                      "significantly_worse": bool(worse)}
    controls = {m: {c: against(pairs, m, c, sign, alpha, correction) for c in CONTROLS if c in scores}
                for m in models if m not in CONTROLS}
    return {"metric": metric, "alpha": alpha, "correction": correction, "family": "the column's pairs",
            "best": best, "values": {m: float(values[m]) for m in models},
            "not_worse": [m for m in models if not verdict[m]["significantly_worse"]], "verdict": verdict,
            "pairs": pairs, "controls": {m: v for m, v in controls.items() if v}, "n_records": int(len(y)),
            "scores": "mean over seeds"}


def oriented(pairs: Mapping[str, Mapping[str, Any]], a: str, b: str) -> tuple[float, Mapping[str, Any]]:
    """``a − b`` and the stored pair of the two (stored once, as ``a|b`` or ``b|a``)."""
    pair = pairs.get(f"{a}|{b}") or pairs[f"{b}|{a}"]
    return (pair["diff"] if pair["a"] == a else -pair["diff"]), pair


def against(pairs: Mapping[str, Mapping[str, Any]], model: str, control: str, sign: float, alpha: float,
            correction: str) -> dict[str, Any]:
    """A model against a control: difference (model − control) with CI, p-values, and the verdict."""
    diff, pair = oriented(pairs, model, control)
    low, high = (pair["ci_low"], pair["ci_high"]) if pair["a"] == model else (-pair["ci_high"], -pair["ci_low"])
    significant = pair["p_corrected"] < alpha
    verdict = "better" if significant and sign * diff > 0 else "worse" if significant and sign * diff < 0 \
        else "not better"
    return {"diff": diff, "ci_low": low, "ci_high": high, "p_value": pair["p_value"],
            "p_corrected": pair["p_corrected"], "method": correction, "verdict": verdict}


# --------------------------------------------------------------------------- on a benchmark run

def run(inputs: TaskInputs) -> Output:
    """Paired comparisons of every two models in the (task, level) column (see ``comparison``)."""
    assert inputs.level is not None  # a per-column analysis
    return Output(column_comparison(inputs, inputs.task, inputs.level))


def column_comparison(inputs: TaskInputs, task_id: str, level: str) -> dict[str, Any]:
    """The comparison payload of one (task, level) column of the run (AnalysisSkip below 2 scored models)."""
    run_dir = inputs.run_dir
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
    return {"task": task_id, "scarcity": level, "cells": {m: column[m].cell_id for m in scored}, **out}


def problems(p: Mapping[str, Any]) -> list[str]:
    """The best model is among those not significantly worse; p-values are probabilities and a corrected one
    is no smaller than its raw one."""
    found = [] if p["best"] in p["not_worse"] else [f"best model {p['best']} not among the not-worse {p['not_worse']}"]
    for pair, v in p["pairs"].items():
        if not (within(v["p_value"], 0, 1) and within(v["p_corrected"], 0, 1)):
            found.append(f"{pair}: p-values {v['p_value']}, {v['p_corrected']}")
        elif v["p_corrected"] < v["p_value"] - 1e-12:
            found.append(f"{pair}: corrected p-value {v['p_corrected']} below the raw {v['p_value']}")
    return found
