"""Checks of a run's settings before anything runs: what the user named must exist and make sense.

Every entry point (the pytest plugin at configure time, the CLI) calls ``validate``; a problem is an
``EcgfmError`` whose one-line message names the option or path, shown as a usage error.
"""

from __future__ import annotations

from ..errors import SpecError
from .settings import Settings


def validate(settings: Settings) -> None:
    """Unknown model/task/scarcity/probe names, a data dir the user named that is not there, and a named
    checkpoint or model file that cannot be loaded are usage errors before anything runs (not skips when a
    cell runs: a run whose every cell skipped would pass)."""
    if "data_dir" in settings.explicit and not settings.data_dir.is_dir():
        what = "does not exist" if not settings.data_dir.exists() else "is not a directory"
        raise SpecError(f"the data dir named by {settings.source('data_dir')} {what}", settings.data_dir)
    if settings.scarcity:
        from ..data.scarcity import parse_level

        for level in settings.scarcity:
            parse_level(level)
    if settings.tasks:
        from ..data.tasks import TASKS

        for task in settings.tasks:
            TASKS.get(task)
    from ..probes import PROBES

    for probe in settings.probes:
        if probe not in PROBES:
            raise SpecError(f"unknown probe {probe!r} (known: {', '.join(PROBES)})", settings.source("probes"))
    if settings.models or settings.checkpoints or settings.model_files:
        from .runner import model_plans

        plans = model_plans(settings)  # loads the model files and checks every named checkpoint
        for model in settings.models or ():
            if model not in plans:
                raise SpecError(f"unknown model {model!r} (known: {', '.join(sorted(plans))})",
                                settings.source("models"))
