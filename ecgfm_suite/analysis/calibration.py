"""Calibration of a (model, task)'s probe probabilities on the test split, before and after temperature scaling.

At the pair's headline level the seed-mean probabilities (``ensemble``) are scored per output: binary, the
positive class; multiclass, each class one-vs-rest plus the top label (confidence = the largest
probability, outcome = the argmax is right); multilabel, each label. Per output: ECE over equal-mass bins
(the bins used are stated), Brier score, and logistic recalibration slope and intercept
(``metrics.calibration``), each with a bootstrap CI stratified by the output's outcome; ECE also with the
noise floor a calibrated predictor would reach on the same records and the consistency p-value (a small
p: miscalibrated beyond sampling noise). Temperature scaling with a bias per output (bias-corrected
temperature scaling; one T for a softmax, one T per label for sigmoid outputs) is then fitted on the
validation split and the same scores are reported as ``ts_*``: a probe whose ECE falls to its noise floor
after scaling was miscalibrated but fixable; one whose ECE stays (and whose AUROC is near 0.5) is
uninformative, which scaling cannot fix. The probes choose C on validation AUROC, which is blind to
calibration, so a strongly regularised probe is typically under-confident (slope > 1, T < 1).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import AnalysisSkip
from ..metrics import draw_indices, strata
from ..metrics.bootstrap import percentile_ci
from ..metrics.calibration import (
    apply_temperature,
    calibration_samples,
    ece_consistency,
    ece_interval,
    equal_mass_bins,
    fit_temperature,
    reliability,
)
from .ensemble import headline_scores
from .inputs import AnalysisOptions, ModelTaskData, Output, within

#: equal-mass bins, fewer where the test split has under MIN_PER_BIN records per bin (at least 2)
BINS = 10
MIN_PER_BIN = 10
TOP_LABEL = "top-label"
SCORES = ("ece", "brier", "slope", "intercept")


def n_bins(n: int) -> int:
    return max(2, min(BINS, n // MIN_PER_BIN))


def check_probabilities(task_type: str, scores: np.ndarray, where: str) -> None:
    """AnalysisSkip unless ``scores`` are probabilities (in [0, 1]; a softmax's rows sum to 1)."""
    if not np.isfinite(scores).all() or scores.min() < 0 or scores.max() > 1:
        raise AnalysisSkip(f"the probe's {where} scores are not probabilities (outside [0, 1] or not finite)")
    if task_type == "multiclass" and not np.allclose(scores.sum(axis=1), 1.0, atol=1e-6):
        raise AnalysisSkip(f"the probe's {where} class scores do not sum to 1: not a probability distribution")


def output_calibration(y: np.ndarray, p: np.ndarray, p_ts: np.ndarray, *, bins: int, n_boot: int,
                       seed: int) -> dict[str, Any]:
    """One output's scores before and after temperature scaling, on the same resamples of its outcomes ``y``."""
    y = np.asarray(y, dtype=np.int64)
    positives = int(y.sum())
    if positives in (0, len(y)):
        return {"n": len(y), "positives": positives, "bins": 0,
                "reason": f"{'no' if positives == 0 else 'every'} test record is positive: calibration is undefined"}
    idx = draw_indices(strata("binary", y), n_boot, np.random.default_rng(seed))
    out: dict[str, Any] = {"n": len(y), "positives": positives, "reason": None}
    binned = [(prefix, probs, equal_mass_bins(probs, bins)) for prefix, probs in (("", p), ("ts_", p_ts))]
    sampled = calibration_samples(y, [(probs, assignment) for _, probs, assignment in binned], idx)
    for (prefix, probs, assignment), scores in zip(binned, sampled, strict=True):
        out[f"{prefix}bins"] = int(len(np.unique(assignment)))
        out[f"{prefix}reliability"] = reliability(y, probs, assignment)
        for name, (value, samples) in scores.items():
            low, high = ece_interval(value, samples) if name == "ece" else percentile_ci(samples)[:2]
            out[f"{prefix}{name}"] = {"value": value, "ci_low": low, "ci_high": high}
        floor, p_value = ece_consistency(y, probs, assignment, n_boot, np.random.default_rng(seed))
        out[f"{prefix}ece"].update(noise_floor=floor, p_value=p_value)
    if not np.isfinite(out["slope"]["value"]):
        out["note"] = "slope and intercept undefined: the probabilities separate the outcomes (a perfect ranking)"
    return out


def outputs(data: ModelTaskData, test: np.ndarray, val: np.ndarray) -> Iterator[tuple[str, np.ndarray, np.ndarray,
                                                                                        np.ndarray, float]]:
    """(output name, test outcomes, test probabilities, recalibrated ones, T) per output."""
    y_test, y_val = data.y[data.rows("test")], data.y[data.rows("val")]
    classes = data.task.classes
    if data.task_type == "binary":
        t, bias = fit_temperature(y_val, val, softmax_output=False)
        yield classes[1], y_test, test, apply_temperature(test, t, bias, softmax_output=False), t
    elif data.task_type == "multilabel":
        for k, name in enumerate(classes):
            t, bias = fit_temperature(y_val[:, k], val[:, k], softmax_output=False)
            yield name, y_test[:, k], test[:, k], apply_temperature(test[:, k], t, bias, softmax_output=False), t
    else:
        t, bias = fit_temperature(y_val, val, softmax_output=True)
        scaled = apply_temperature(test, t, bias, softmax_output=True)
        for k, name in enumerate(classes):
            yield name, (y_test == k).astype(np.int64), test[:, k], scaled[:, k], t
        top = (test.argmax(axis=1) == y_test).astype(np.int64)
        yield TOP_LABEL, top, test.max(axis=1), scaled[np.arange(len(test)), test.argmax(axis=1)], t


# --------------------------------------------------------------------------- on a benchmark run

def run(data: ModelTaskData, options: AnalysisOptions) -> Output:
    """Calibration of the headline level's probabilities, per output (see the module docstring)."""
    if data.task_type == "regression":
        raise AnalysisSkip(f"task {data.task.task.id} is a regression: its probe gives no probabilities")
    level, scores = headline_scores(data, ("test", "val"))
    for split, s in scores.items():
        check_probabilities(data.task_type, s, split)
    n_test = len(data.rows("test"))
    bins = n_bins(n_test)
    per_output = {}
    for name, y, p, p_ts, t in outputs(data, scores["test"], scores["val"]):
        # the top label is the argmax before scaling: its outcome (is it right) and its recalibrated probability
        per_output[name] = {**output_calibration(y, p, p_ts, bins=bins, n_boot=data.n_boot, seed=options.seed),
                            "temperature": t}
    return Output({"model": data.model, "task": data.task.task.id, "scarcity": level, "task_type": data.task_type,
                   "n_test": n_test, "n_val": len(data.rows("val")), "bins_target": bins,
                   "scores": "mean over seeds", "outputs": per_output})


def rows(key: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per output: the scores with their CIs, before and after temperature scaling."""
    out = []
    for name, o in payload["outputs"].items():
        row: dict[str, Any] = {"model": payload["model"], "task": payload["task"], "scarcity": payload["scarcity"],
                               "output": name, "n": o["n"], "positives": o["positives"], "bins": o["bins"]}
        for prefix in ("", "ts_"):
            for score in SCORES:
                ci = o.get(f"{prefix}{score}") or {}
                row.update({f"{prefix}{score}": ci.get("value"), f"{prefix}{score}_ci_low": ci.get("ci_low"),
                            f"{prefix}{score}_ci_high": ci.get("ci_high")})
            ece = o.get(f"{prefix}ece") or {}
            row.update({f"{prefix}ece_noise_floor": ece.get("noise_floor"), f"{prefix}ece_p_value": ece.get("p_value")})
        out.append({**row, "temperature": o["temperature"], "reason": o["reason"] or o.get("note")})
    return out


def problems(p: Mapping[str, Any]) -> list[str]:
    """ECE and Brier are in [0, 1] with ordered CIs; temperatures are positive; an output without scores says why."""
    found = []
    for name, o in p["outputs"].items():
        if o["reason"] is None and "ece" not in o:
            found.append(f"{name}: no scores and no reason")
        if not o["temperature"] or o["temperature"] <= 0:
            found.append(f"{name}: temperature {o['temperature']}")
        for key in ("ece", "brier", "ts_ece", "ts_brier"):
            ci = o.get(key)
            if ci is not None and not (within(ci["value"], 0, 1) and within(ci["ci_low"], 0, 1)
                                       and within(ci["ci_high"], 0, 1)):
                found.append(f"{name}: {key} {ci} outside [0, 1]")
            if ci is not None and None not in (ci["ci_low"], ci["ci_high"]) and ci["ci_low"] > ci["ci_high"] + 1e-12:
                found.append(f"{name}: {key} CI {ci['ci_low']} > {ci['ci_high']}")
    return found
