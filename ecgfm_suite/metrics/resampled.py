"""One metric on given resamples of the test records: what subgroup gaps and rank intervals resample.

``evaluate`` draws its own resamples and keeps only the CI; an analysis that combines resamples (the
difference of two subgroups, the ranks of several models on the same resampled records) needs the
metric on resamples it drew itself. This reuses ``evaluate``'s columns and kernels, so the value on the
full sample equals the cell's own metric.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..errors import SpecError
from .evaluation import _columns, _distribution


def metric_samples(metric: str, task_type: str, y_true: npt.ArrayLike, scores: npt.ArrayLike,
                   idx: np.ndarray) -> tuple[float, np.ndarray]:
    """(value on all records, value on each resample): ``idx`` is (B, n) record indices, as
    ``metrics.draw_indices`` returns them. Thresholded metrics are refused (they need validation scores).
    A DataError (one class only, too few records) is raised as ``evaluate`` raises it."""
    columns, _ = _columns(task_type, y_true, scores)
    if metric not in columns.metric_ids():
        raise SpecError(f"metric {metric!r} is not available on test scores alone for {task_type}", "metric")
    value = float(columns.values(np.ones((1, columns.n)), [metric])[metric][0])
    if len(idx) == 0:
        return value, np.empty(0)
    return value, _distribution(columns, np.asarray(idx), [metric])[0][metric]
