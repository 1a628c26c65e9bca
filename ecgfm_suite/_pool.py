"""The process's pool of worker processes for CPU-bound Python work: probe seeds and per-(model, task) analyses.

Fitting probes and running the analyses is mostly Python-level overhead (scikit-learn's input
checks, scipy's L-BFGS loop, matplotlib), so threads gain nothing under the GIL; processes do.
The pool is started on first use, kept for the process's lifetime and shut down at exit.

``spawn``, not ``fork``: by then the parent has run torch and OpenMP code, whose thread pools do
not survive a fork (a forked child can hang in its first parallel region). A spawned worker
re-imports what it needs once (about 1 s).
"""

from __future__ import annotations

import atexit
from concurrent.futures import ProcessPoolExecutor

_POOL: tuple[int, ProcessPoolExecutor] | None = None


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes (the existing one when it has that size)."""
    global _POOL
    import multiprocessing

    if _POOL is None or _POOL[0] != workers:
        shutdown_pool()
        _POOL = (workers, ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=_init_worker))
    return _POOL[1]


def shutdown_pool() -> None:
    """Stop the pool (its workers finish or drop their queued jobs); the next ``worker_pool`` starts a new one."""
    global _POOL
    if _POOL is not None:
        _POOL[1].shutdown(wait=True, cancel_futures=True)
        _POOL = None


# shut the pool down before interpreter teardown, which would break the executor's own cleanup
atexit.register(shutdown_pool)


def _init_worker() -> None:
    """Import what every job needs once, so that the first job does not pay for it in every worker."""
    from . import metrics, probes  # noqa: F401
    from .data import scarcity  # noqa: F401
