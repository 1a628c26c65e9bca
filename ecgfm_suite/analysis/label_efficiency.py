"""Label efficiency: the main metric against training-set size over the scarcity levels of a (model, task).

The x axis is the fraction of the full training split (``n_train / n_full``) on a log scale,
because scarcity levels are spaced geometrically (frac1 … frac100, shot-k). Two summaries:

- ``auc``: the normalised area under the curve over log10(fraction), i.e. the curve's mean
  height between the smallest measured fraction and the largest (the value itself for a
  single point);
- ``reach``: the smallest fraction at which the curve (linear in log-fraction between
  measured levels) reaches a reference score, by default the ``random_cnn`` control's
  full-data score. ``reached_at_smallest`` marks a curve that is already there at its first
  point (the true fraction may be lower); ``None`` means not reached within the measured range.

Lower-is-better metrics (MAE) are handled by orientation: "reaching" means getting as low.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AnalysisSkip, DataError
from .inputs import Output, TaskInputs, within

CONTROL = "random_cnn"


@dataclass(frozen=True, slots=True, kw_only=True)
class CurvePoint:
    level: str
    n_train: int
    value: float
    ci_low: float | None = None
    ci_high: float | None = None


def efficiency(points: Sequence[CurvePoint], *, n_full: int, higher_is_better: bool,
               reference: float | None = None) -> dict[str, Any]:
    """Curve (sorted by training size), its normalised log-fraction AUC and the reference reach point."""
    if n_full <= 0:
        raise DataError(f"full training size must be positive, got {n_full}", "n_full")
    pts = sorted((p for p in points if np.isfinite(p.value) and p.n_train > 0), key=lambda p: (p.n_train, p.level))
    if not pts:
        raise DataError("no finite curve points", "points")
    fraction = np.array([min(p.n_train / n_full, 1.0) for p in pts])
    value = np.array([p.value for p in pts])
    logf = np.log10(fraction)
    # levels that landed on the same training size (e.g. a shot level = frac100) count once, averaged
    ux, inverse = np.unique(logf, return_inverse=True)
    uy = np.bincount(inverse, weights=value) / np.bincount(inverse)
    width = ux[-1] - ux[0]
    auc = float(np.trapezoid(uy, ux) / width) if width > 0 else float(uy.mean())
    out: dict[str, Any] = {
        "points": [{"level": p.level, "n_train": p.n_train, "fraction": float(f), "value": p.value,
                    "ci_low": p.ci_low, "ci_high": p.ci_high} for p, f in zip(pts, fraction, strict=True)],
        "n_full": int(n_full), "auc": auc, "fraction_range": [float(10 ** ux[0]), float(10 ** ux[-1])],
        "reference": reference, "reach": None, "reached_at_smallest": False,
    }
    if reference is not None and np.isfinite(reference):
        out["reach"], out["reached_at_smallest"] = reach_fraction(ux, uy, reference, higher_is_better)
    return out


def reach_fraction(log_fraction: np.ndarray, value: np.ndarray, reference: float,
                   higher_is_better: bool) -> tuple[float | None, bool]:
    """First fraction where the piecewise-linear (in log-fraction) curve reaches ``reference``."""
    sign = 1.0 if higher_is_better else -1.0
    v, ref = sign * np.asarray(value, dtype=np.float64), sign * reference
    if v[0] >= ref:
        return float(10 ** log_fraction[0]), True
    for i in range(1, len(v)):
        if v[i] >= ref:
            t = (ref - v[i - 1]) / (v[i] - v[i - 1])
            return float(10 ** (log_fraction[i - 1] + t * (log_fraction[i] - log_fraction[i - 1]))), False
    return None, False


# --------------------------------------------------------------------------- on a benchmark run

def run(inputs: TaskInputs) -> Output:
    """Every model's curve over its cells' results for the task, with the random_cnn control's full-data reference."""
    from ..data.scarcity import parse_level
    from ..metrics import METRICS

    task_id = inputs.task
    finished = [r for r in inputs.results() if r.task == task_id and r.main.is_finite()]
    control = [r for r in finished if r.model == CONTROL and r.scarcity == "frac100"]
    reference = control[0].main.value if control else None
    curves, too_short = {}, {}
    for model in sorted({r.model for r in finished}):
        mine = sorted((r for r in finished if r.model == model), key=lambda r: parse_level(r.scarcity).id)
        if len(mine) < 2:
            too_short[model] = f"{len(mine)} finished cell(s); a curve needs 2 scarcity levels"
            continue
        full = [r for r in mine if r.scarcity == "frac100"]
        points = [CurvePoint(level=r.scarcity, n_train=r.n_train, value=r.main.value, ci_low=r.main.ci_low,
                             ci_high=r.main.ci_high) for r in mine]
        curves[model] = {
            "metric": mine[0].main_metric, "n_full_from": "frac100 cell" if full else "largest cell",
            **efficiency(points, n_full=full[0].n_train if full else max(r.n_train for r in mine),
                         higher_is_better=METRICS.get(mine[0].main_metric).higher_is_better, reference=reference),
        }
    if not curves:
        raise AnalysisSkip(f"no model has two finished scarcity levels on {task_id} ({too_short or 'no cells'})")
    return Output({"task": task_id, "reference_model": CONTROL if control else None, "reference": reference,
                   "models": curves, "left_out": too_short})


def problems(p: Mapping[str, Any]) -> list[str]:
    """Every curve has points and a reach fraction in [0, 1]."""
    return [f"{model}: {len(curve['points'])} points, reach {curve['reach']}" for model, curve in p["models"].items()
            if not curve["points"] or not within(curve["reach"], 0, 1)]
