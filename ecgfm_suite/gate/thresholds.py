"""Which thresholds file gates a run (``--ecgfm-thresholds``, ``ECGFM_THRESHOLDS``, ``ecgfm_thresholds``,
``ecgfm-suite compare --thresholds``).

A file the user named must exist: a typo must not switch every floor off. The default
``benchmarks/thresholds.yml`` may be absent (a project without floors yet); that is said as a warning,
because an absent file loads as no floors and the default regression tolerances.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import SpecError
from .regression import DEFAULT_ABS_TOL, DEFAULT_Z


class ThresholdsWarning(UserWarning):
    """The default thresholds file is absent: no floors apply and the regression tolerances are the defaults."""


def thresholds_file(path: Path, *, root: Path, named_by: str | None) -> Path:
    """``path`` (a relative one below ``root``, the pytest rootdir), checked before anything runs.

    ``named_by`` is the flag, variable or ini key the user named it with (``Settings.sources``), None for the
    default. Named and absent: a one-line ``SpecError`` naming both. The default and absent: a
    ``ThresholdsWarning`` naming the path; the path is returned and loads as no floors, default tolerances.
    """
    full = Path(path).expanduser()
    full = full if full.is_absolute() else Path(root) / full
    if full.is_file():
        return full
    if named_by:
        what = "does not exist" if not full.exists() else "is not a file"
        raise SpecError(f"the thresholds file named by {named_by} {what}", full)
    warnings.warn(f"{full} not found: no metric floors apply and regressions are judged with the default "
                  f"tolerances (abs_tol {DEFAULT_ABS_TOL}, z {DEFAULT_Z})", ThresholdsWarning, stacklevel=2)
    return full
