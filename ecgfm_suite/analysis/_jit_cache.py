"""Lazy imports of shap and umap-learn with numba's compiled functions cached on disk.

umap-learn and shap JIT-compile kernels with numba; without a disk cache every new process
pays that again (on 2 cores: about 20 s before the first map, 23 s before the first masking
explanation). ``NUMBA_CACHE_DIR`` must point at the suite's cache dir before numba creates
its caches, i.e. before shap or umap is imported, hence these import helpers. Both libraries
also declare kernels without ``cache=True`` (umap's layout optimiser, exact k-NN and
fuzzy-set kernels; shap's tabular masker); those are switched to numba's file cache with
``Dispatcher.enable_caching`` before their first compile, so a later process loads them
instead of recompiling (measured: first UMAP fit of 1000 points in a fresh process 21 s → 3 s).
shap's masked-model kernels take its ``link`` function, itself a numba dispatcher, as an argument;
numba keys their cache entries by that argument's type, which holds the dispatcher's per-process
random uuid, so every process compiled them again and added an entry nobody read. Giving shap's link
dispatchers fixed uuids makes the key the same in every process; where that cannot be done, those
kernels stay uncached.

That fix is this module's one use of numba's private internals (the name-mangled slot
``_MemoMixin__uuid``, read to see that no uuid was drawn yet, and ``Dispatcher._set_uuid``), kept for a
measured reason: numba has no public way to give a dispatcher a stable identity, and without one the
first explanation in every fresh process recompiles the kernel. Measured 2026-12-07 23:51 UTC (numba
0.68.1, shap 0.51.0, 2-core machine at load 4.7–5.3 from other sessions, numba cache warm, 3 fresh
processes each): first ``PermutationExplainer`` call 0.70–0.87 s with fixed uuids vs 7.0–9.5 s in the
uncached fallback (0.2 s vs 4.0 s at lower load, 2026-12-07 04:13 UTC, commit 1c4c109).
``tests/test_upstream_internals.py`` pins it: the slot and ``_set_uuid`` still exist, a fixed uuid
still makes a kernel's cache entry load in a second process, a random one still does not (if numba
starts keying dispatchers stably, the test says the fix can go), and the fallback leaves the kernels
uncached. Everything else here is numba's non-underscore API (``numba.extending.is_jitted``,
``Dispatcher.stats``, ``Dispatcher.enable_caching``, ``py_func``), exercised by the same tests.
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
#: module → kernels that take one of shap's link dispatchers: cacheable only once those have fixed uuids
#: (else a disk cache grows by one never-read entry per process; seen: 19 entries after 19 processes)
_TAKE_LINKS = {"shap.utils._masked_model": frozenset({"_build_fixed_single_output", "_build_fixed_multi_output"})}
#: shap's link functions (``shap.links``)
_LINKS = ("identity", "logit")


def _fix_link_uuids(links: ModuleType) -> bool:
    """Give shap's link dispatchers process-independent uuids; False when one already has another (or numba
    no longer keeps them where this looks). Uses numba's private uuid slot: see the module docstring."""
    for name in _LINKS:
        link = getattr(links, name, None)
        if link is None:
            continue
        wanted = f"ecgfm-suite/shap.links.{name}"
        current = getattr(link, "_MemoMixin__uuid", False)  # numba's private slot; False: not there
        if current is None and hasattr(link, "_set_uuid"):
            link._set_uuid(wanted)
        elif current != wanted:
            return False
    return True


def _cache_kernels(package: str, uncached: dict[str, frozenset[str]] | None = None) -> None:
    """Give every not-yet-cached numba kernel of ``package`` (imported) numba's file cache, but ``uncached``'s.

    Scans only modules not scanned before: the import helpers run before every explanation and
    map, and a full scan of shap's modules costs ~10 ms each time.
    """
    seen = _SCANNED.setdefault(package, set())
    new = [name for name in list(sys.modules) if (name == package or name.startswith(f"{package}."))
           and name not in seen]
    if not new:
        return
    seen.update(new)
    from numba.extending import is_jitted

    for name in new:
        skip = (uncached or {}).get(name, frozenset())
        for attr, obj in list(vars(sys.modules[name]).items()):
            if is_jitted(obj) and obj.stats.cache_path is None and attr not in skip:  # cache_path None: uncached
                obj.enable_caching()


def import_shap(cache_dir: Path) -> ModuleType:
    configure_numba_cache(cache_dir)
    with warnings.catch_warnings():  # shap's colour maps use matplotlib calls it deprecates
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module=r"shap\.")
        import shap

    _cache_kernels("shap", uncached=None if _fix_link_uuids(shap.links) else _TAKE_LINKS)
    return shap


def import_umap(cache_dir: Path) -> ModuleType:
    configure_numba_cache(cache_dir)
    import umap

    _cache_kernels("umap")
    return umap
