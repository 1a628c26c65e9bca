"""Lazy imports of shap and umap-learn with numba's compiled functions cached on disk.

umap-learn JIT-compiles its kernels with numba; without a disk cache every new process pays
that again (about 20 s on 2 cores before the first map). ``NUMBA_CACHE_DIR`` must point at
the suite's cache dir before numba creates its caches, i.e. before shap or umap is imported,
hence these import helpers. umap-learn also declares part of its kernels without
``cache=True`` (the layout optimiser, the exact k-NN and the fuzzy-set kernels); those are
switched to numba's file cache with ``Dispatcher.enable_caching`` before their first
compile, so a second process loads them instead of recompiling (measured: first UMAP fit
of 1000 points in a fresh process 21 s → 3 s).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)


def configure_numba_cache(cache_dir: Path) -> Path:
    """Point numba's cache at ``<cache_dir>/numba`` unless the user set ``NUMBA_CACHE_DIR``; returns it."""
    current = os.environ.get("NUMBA_CACHE_DIR")
    if current:
        return Path(current)
    target = Path(cache_dir).expanduser() / "numba"
    target.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(target)
    if "numba" in sys.modules:  # imported by someone else first: make numba re-read its settings
        from numba.core import config

        config.reload_config()
        log.info("numba was imported before its cache dir was set; caches created earlier stay where they are")
    return target


def import_shap(cache_dir: Path) -> ModuleType:
    configure_numba_cache(cache_dir)
    import shap

    return shap


def import_umap(cache_dir: Path) -> ModuleType:
    configure_numba_cache(cache_dir)
    import umap
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for name, module in list(sys.modules.items()):
        if name == "umap" or name.startswith("umap."):
            for obj in vars(module).values():
                if isinstance(obj, Dispatcher) and isinstance(obj._cache, NullCache):
                    obj.enable_caching()
    return umap
