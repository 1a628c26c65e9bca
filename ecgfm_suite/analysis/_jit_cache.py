"""Lazy imports of shap and umap-learn with numba's compiled functions cached on disk.

umap-learn and shap JIT-compile kernels with numba; without a disk cache every new process
pays that again (on 2 cores: about 20 s before the first map, 23 s before the first masking
explanation). ``NUMBA_CACHE_DIR`` must point at the suite's cache dir before numba creates
its caches, i.e. before shap or umap is imported, hence these import helpers. Both libraries
also declare kernels without ``cache=True`` (umap's layout optimiser, exact k-NN and
fuzzy-set kernels; shap's tabular masker); those are switched to numba's file cache with
``Dispatcher.enable_caching`` before their first compile, so a later process loads them
instead of recompiling (measured: first UMAP fit of 1000 points in a fresh process 21 s → 3 s).
Kernels that take a jitted function as an argument are left uncached: numba keys their entries by that
argument's type, whose name holds the function's address, so every process would compile anyway and
add one more file to the cache that no later process reads.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
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


#: package → its modules already scanned
_SCANNED: dict[str, set[str]] = {}
#: module → kernels taking a jitted function (shap's masked-model kernels take the ``link`` dispatcher):
#: a disk cache only grows by one entry per process for them (seen: 19 entries after 19 processes)
_UNCACHEABLE = {"shap.utils._masked_model": frozenset({"_build_fixed_single_output", "_build_fixed_multi_output"})}


def _cache_kernels(package: str) -> None:
    """Give every not-yet-cached numba kernel of ``package`` (imported) numba's file cache.

    Scans only modules not scanned before: the import helpers run before every explanation and
    map, and a full scan of shap's modules costs ~10 ms each time.
    """
    seen = _SCANNED.setdefault(package, set())
    new = [name for name in list(sys.modules) if (name == package or name.startswith(f"{package}."))
           and name not in seen]
    if not new:
        return
    seen.update(new)
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    for name in new:
        skip = _UNCACHEABLE.get(name, frozenset())
        for attr, obj in list(vars(sys.modules[name]).items()):
            if isinstance(obj, Dispatcher) and isinstance(obj._cache, NullCache) and attr not in skip:
                obj.enable_caching()


def import_shap(cache_dir: Path) -> ModuleType:
    configure_numba_cache(cache_dir)
    with warnings.catch_warnings():  # shap's colour maps use matplotlib calls it deprecates
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module=r"shap\.")
        import shap

    _cache_kernels("shap")
    return shap


def import_umap(cache_dir: Path) -> ModuleType:
    configure_numba_cache(cache_dir)
    import umap

    _cache_kernels("umap")
    return umap
