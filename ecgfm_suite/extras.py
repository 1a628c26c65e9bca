"""Optional dependencies (the extras of pyproject.toml): import one, or say in one line which extra brings it.

The core install runs the default benchmark job; object storage, ONNX encoders, the speed benchmarks and the
test suite need extras. Without this, a missing one surfaces as a bare ``ModuleNotFoundError`` deep inside
fsspec or a loader, which does not tell the user what to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import SpecError

#: extra → what it enables (the README's Install paragraph says the same)
EXTRAS: dict[str, str] = {
    "s3": "s3:// URLs for the cache and reports dirs and `ecgfm-suite merge` (s3fs)",
    "onnx": "ONNX encoders in a ModelSpec file (onnxruntime; onnx to export one from torch)",
    "html": "pytest-html's --html page, whose summary links the suite's report",
    "bench": "`ecgfm-suite bench`, the speed benchmarks (pytest-benchmark)",
    "test": "the test suite (hypothesis, moto, ruff, mypy and every extra above)",
    "all": "every extra",
}


class MissingExtra(SpecError):
    """An optional dependency is not installed; the message names the extra and the pip command."""


def install_hint(extra: str) -> str:
    """The pip command that adds ``extra`` to an installed ecgfm-suite."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r} (known: {', '.join(EXTRAS)})")
    return f"pip install 'ecgfm-suite[{extra}]'"


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` for ``what`` (e.g. "an s3:// URL"), or raise ``MissingExtra`` naming ``extra``.

    A module that is present but fails on one of its own imports keeps that cause in the message.
    """
    hint = install_hint(extra)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        own = exc.name is None or module == exc.name or module.startswith(f"{exc.name}.")
        cause = "" if own else f" ({exc})"
        raise MissingExtra(f"{what} needs {module}, which the {extra!r} extra installs: {hint}{cause}") from None


def require_installed(module: str, extra: str, what: str) -> None:
    """Like ``require`` without importing: for pytest plugins (hypothesis, pytest-benchmark), which pytest must
    import itself to rewrite their assertions."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or blocked in sys.modules
        found = False
    if not found:
        raise MissingExtra(f"{what} needs {module}, which the {extra!r} extra installs: {install_hint(extra)}")


#: fsspec protocols whose backend an extra installs (others, e.g. gs:// with gcsfs, are fsspec's own business)
URL_EXTRAS: dict[str, tuple[str, str]] = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3")}


def require_for_url(url: str) -> None:
    """Check that the backend of ``url``'s protocol is installed where an extra brings it (``s3://`` → s3fs)."""
    protocol = url.partition("://")[0].lower()
    if protocol in URL_EXTRAS:
        module, extra = URL_EXTRAS[protocol]
        require(module, extra, f"an {protocol}:// URL")
