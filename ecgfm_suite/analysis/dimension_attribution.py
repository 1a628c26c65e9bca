"""SHAP over embedding dimensions: which dimensions a linear probe's decision rests on.

The probe is ``StandardScaler`` → linear model, so its margin (log-odds; the prediction for
ridge) is linear in the embedding and shap's ``LinearExplainer`` gives exact interventional
SHAP values ``coef_j · (z_j − E_background[z_j])`` on the standardised inputs ``z``. The
background is the probe's own training subset (every record of it, not shap's default
subsample of 100).

From the values: mean |SHAP| per dimension and class ("attribution mass"), how many
dimensions hold 50 % / 90 % of it, its Gini coefficient, and the top-k dimensions. Top
dimensions are chosen on the validation split (never the test split), then compared
across seeds and scarcity levels by Jaccard overlap.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .inputs import (
    AnalysisOptions,
    ModelTaskData,
    Output,
    is_linear,
    margin_outputs,
    probe_runs,
    within,
)

TOP_K = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Concentration:
    """How concentrated attribution mass is over dimensions."""

    dims_50: int
    dims_90: int
    gini: float
    n_dims: int

    def to_dict(self) -> dict[str, float | int]:
        return {"dims_50": self.dims_50, "dims_90": self.dims_90, "gini": self.gini, "n_dims": self.n_dims}


def linear_parts(estimator: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """(scaler, coef (K, D), intercept (K,)) of a ``scale`` → ``probe`` pipeline with a linear probe."""
    steps = getattr(estimator, "named_steps", {})
    scaler, model = steps.get("scale"), steps.get("probe")
    if scaler is None or model is None or not hasattr(model, "coef_"):
        what = type(model).__name__ if model is not None else repr(estimator)
        raise DataError(f"not a standardised linear probe: {what}", "probe")
    coef = np.atleast_2d(np.asarray(model.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))
    return scaler, coef, np.broadcast_to(intercept, (coef.shape[0],)).copy()


#: records explained at a time: SHAP values are (chunk, D, K) float64, never (n, D, K) for every record
SHAP_CHUNK = 4096


def _row_mean(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """float64 mean of ``X[rows]`` (D,), summed a chunk at a time instead of copying every row."""
    total = np.zeros(X.shape[1])
    for start in range(0, len(rows), SHAP_CHUNK):
        total += np.asarray(X[rows[start : start + SHAP_CHUNK]], dtype=np.float64).sum(axis=0)
    return total / len(rows)


def _explainer(estimator: Any, background_mean: np.ndarray, *, cache_dir: Path) -> tuple[Any, Any, int, int]:
    """(scaler, shap ``LinearExplainer``, D, K) of a linear probe against a background.

    Interventional linear SHAP depends on the background only through its mean, so shap is handed the one
    standardised mean row of the background (the same values as every row, at D numbers instead of n × D)."""
    from ._jit_cache import import_shap

    shap = import_shap(cache_dir)
    scaler, coef, intercept = linear_parts(estimator)
    centre = scaler.transform(background_mean[None, :])
    explainer = shap.LinearExplainer((coef, intercept), shap.maskers.Independent(centre, max_samples=1))
    return scaler, explainer, coef.shape[1], coef.shape[0]


def _values(scaler: Any, explainer: Any, n_dims: int, n_outputs: int, X: np.ndarray) -> np.ndarray:
    # shap_values: the same exact values as calling the explainer, without building an Explanation (5× faster)
    values = explainer.shap_values(scaler.transform(np.asarray(X, dtype=np.float64)))
    if isinstance(values, list):  # older shap: one (n, D) array per output
        values = np.stack(values, axis=-1)
    return np.asarray(values, dtype=np.float64).reshape(len(X), n_dims, n_outputs)


def linear_shap(estimator: Any, X_background: np.ndarray, X: np.ndarray, *, cache_dir: Path) -> np.ndarray:
    """Exact SHAP values of the probe's linear margin: (n, D, K), K = rows of ``coef_`` (for a few records; the
    analysis needs only their mean magnitude, ``linear_shap_mass``)."""
    X_background = np.asarray(X_background)
    explained = _explainer(estimator, _row_mean(X_background, np.arange(len(X_background))), cache_dir=cache_dir)
    return _values(*explained, np.asarray(X))


def linear_shap_mass(estimator: Any, X: np.ndarray, rows: np.ndarray, *, background_rows: np.ndarray,
                     cache_dir: Path) -> np.ndarray:
    """Mean |SHAP| per dimension and output (D, K) over ``X[rows]``, the background being ``X[background_rows]``.

    Equal to ``attribution_mass(linear_shap(...))`` up to round-off, a chunk of records at a time: memory holds
    one chunk's values whatever the number of records."""
    scaler, explainer, n_dims, n_outputs = _explainer(estimator, _row_mean(X, background_rows), cache_dir=cache_dir)
    total = np.zeros((n_dims, n_outputs))
    for start in range(0, len(rows), SHAP_CHUNK):
        total += np.abs(_values(scaler, explainer, n_dims, n_outputs, X[rows[start : start + SHAP_CHUNK]])).sum(0)
    return total / len(rows)


def attribution_mass(values: np.ndarray) -> np.ndarray:
    """Mean |SHAP| per dimension and output: (n, D, K) → (D, K)."""
    return np.abs(values).mean(axis=0)


def concentration(mass: np.ndarray) -> Concentration:
    """Dimensions holding 50 % / 90 % of a non-negative mass vector (D,), and its Gini coefficient."""
    mass = np.asarray(mass, dtype=np.float64)
    if mass.ndim != 1 or len(mass) == 0 or (mass < 0).any() or not np.isfinite(mass).all():
        raise DataError(f"attribution mass must be a finite non-negative vector, got shape {mass.shape}", "mass")
    total = mass.sum()
    if total == 0:
        return Concentration(dims_50=0, dims_90=0, gini=float("nan"), n_dims=len(mass))
    share = np.cumsum(np.sort(mass)[::-1]) / total
    dims = [int(np.argmax(share >= q - 1e-12)) + 1 for q in (0.5, 0.9)]
    return Concentration(dims_50=dims[0], dims_90=dims[1], gini=gini(mass), n_dims=len(mass))


def gini(mass: np.ndarray) -> float:
    """Gini coefficient of a non-negative vector: 0 = spread evenly, (n − 1)/n = all in one entry."""
    x = np.sort(np.asarray(mass, dtype=np.float64))
    n, total = len(x), x.sum()
    return float(2.0 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n)


def top_dims(mass: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Indices of the k largest entries, largest first (ties: lower index first)."""
    mass = np.asarray(mass, dtype=np.float64)
    return np.lexsort((np.arange(len(mass)), -mass))[: min(k, len(mass))]


def jaccard(a: Collection[int], b: Collection[int]) -> float:
    sa, sb = {int(i) for i in a}, {int(i) for i in b}
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def mean_pairwise_jaccard(sets: Sequence[Collection[int]]) -> float | None:
    """Mean Jaccard overlap over all pairs; None with fewer than two sets."""
    pairs = [jaccard(a, b) for a, b in combinations(sets, 2)]
    return float(np.mean(pairs)) if pairs else None


def summarise_level(test_masses: Sequence[np.ndarray], val_masses: Sequence[np.ndarray], outputs: Sequence[str],
                    *, k: int = TOP_K) -> dict[str, Any]:
    """One scarcity level: per output, test concentration (seed-mean mass), validation top-k and seed stability.

    ``test_masses``/``val_masses`` hold one (D, K) attribution mass per seed. Returns a JSON-able dict;
    ``val_mass`` (the seed-mean validation mass per output) feeds the comparison across levels.
    """
    if len(test_masses) != len(val_masses) or not test_masses:
        raise DataError(f"{len(test_masses)} test and {len(val_masses)} validation attribution masses", "values")
    test_mass = np.mean(test_masses, axis=0)  # (D, K)
    val_mass = np.mean(val_masses, axis=0)
    per_output = {}
    for j, name in enumerate(outputs):
        top = top_dims(val_mass[:, j], k)
        test_top = top_dims(test_mass[:, j], k)
        total = float(test_mass[:, j].sum())
        per_output[name] = {
            "concentration": concentration(test_mass[:, j]).to_dict(),
            "top_dims": [int(d) for d in top],
            "top_dims_test_share": [float(test_mass[d, j] / total) if total else 0.0 for d in top],
            "top_k_test_share": float(test_mass[top, j].sum() / total) if total else 0.0,
            "seed_stability": mean_pairwise_jaccard([top_dims(m[:, j], k) for m in val_masses]),
            "val_test_overlap": jaccard(top, test_top),
        }
    return {"outputs": per_output, "val_mass": val_mass}


def level_stability(val_mass_by_level: Mapping[str, np.ndarray], outputs: Sequence[str], *,
                    k: int = TOP_K) -> dict[str, dict[str, Any]]:
    """Per output: Jaccard of the validation top-k between every two scarcity levels, and their mean."""
    levels = list(val_mass_by_level)
    out = {}
    for j, name in enumerate(outputs):
        tops = {lv: top_dims(val_mass_by_level[lv][:, j], k) for lv in levels}
        pairs = {f"{a}|{b}": jaccard(tops[a], tops[b]) for a, b in combinations(levels, 2)}
        out[name] = {"pairs": pairs, "mean": float(np.mean(list(pairs.values()))) if pairs else None}
    return out


# --------------------------------------------------------------------------- on a benchmark run

def run(data: ModelTaskData, options: AnalysisOptions) -> Output:
    """Linear SHAP over embedding dimensions at every scarcity level and seed (see ``dimension_attribution``)."""
    test, val = data.rows("test"), data.rows("val")
    cells: dict[str, dict[str, Any]] = {}
    val_mass: dict[str, np.ndarray] = {}
    outputs_by_level: dict[str, list[str]] = {}
    for level in data.levels:
        runs = [r for r in probe_runs(data, level) if is_linear(r.probe)]
        if not runs:
            cells[data.cell_id(level)] = {"level": level, "reason": "probe is constant (one class in training)"}
            continue
        per_seed: list[tuple[list[str], np.ndarray, np.ndarray]] = []
        for run in runs:
            test_mass, val_mass_of_seed = (linear_shap_mass(run.probe.estimator, data.X, rows, cache_dir=data.cache_dir,
                                                            background_rows=run.train_rows) for rows in (test, val))
            per_seed.append((margin_outputs(data, run.probe), test_mass, val_mass_of_seed))
        common = [n for n in per_seed[0][0] if all(n in names for names, _, _ in per_seed)]
        pick = [[names.index(n) for n in common] for names, _, _ in per_seed]
        summary = summarise_level([t[:, p] for (_, t, _), p in zip(per_seed, pick, strict=True)],
                                  [v[:, p] for (_, _, v), p in zip(per_seed, pick, strict=True)], common,
                                  k=options.top_k)
        val_mass[level] = summary.pop("val_mass")
        outputs_by_level[level] = common
        cells[data.cell_id(level)] = {"level": level, "seeds": [r.seed for r in runs], "n_test": int(len(test)),
                                      "n_val": int(len(val)), "reason": None, **summary}
    shared = [n for n in (next(iter(outputs_by_level.values()), [])) if all(n in o for o in outputs_by_level.values())]
    aligned = {lv: m[:, [outputs_by_level[lv].index(n) for n in shared]] for lv, m in val_mass.items()}
    return Output({
        "model": data.model, "task": data.task.task.id, "embed_dim": int(data.X.shape[1]), "top_k": options.top_k,
        "explains": "linear margin of the probe (log-odds; prediction for ridge) on standardised embeddings",
        "background": "the cell's training subset", "top_dims_from": "validation split",
        "cells": cells, "level_stability": level_stability(aligned, shared, k=options.top_k) if aligned else {},
    })


def problems(p: Mapping[str, Any]) -> list[str]:
    """Invariants a stored payload must satisfy (empty: none broken)."""
    found = []
    for cell_id, cell in p["cells"].items():
        for name, out in (cell.get("outputs") or {}).items():
            c = out["concentration"]
            if not 0 <= c["dims_50"] <= c["dims_90"] <= c["n_dims"] == p["embed_dim"]:
                found.append(f"{cell_id}/{name}: concentration {c} out of order")
            if len(out["top_dims"]) != min(p["top_k"], p["embed_dim"]):
                found.append(f"{cell_id}/{name}: {len(out['top_dims'])} top dimensions")
            if not (within(out["seed_stability"], 0, 1) and within(out["top_k_test_share"], 0, 1)):
                found.append(f"{cell_id}/{name}: stability or share outside [0, 1]")
    return found
