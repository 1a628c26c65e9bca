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
import functools
import logging
from concurrent.futures import ProcessPoolExecutor

log = logging.getLogger(__name__)

_POOL: tuple[int, ProcessPoolExecutor] | None = None


@functools.cache
def pool_unavailable() -> str | None:
    """Why this process cannot run a pool (None when it can), asked once and warned about once.

    A pool's queues need POSIX semaphores, which some sandboxes and containers lack (no writable
    ``/dev/shm``); there the suite runs everything in its own process instead of failing.
    """
    import multiprocessing

    try:
        multiprocessing.get_context("spawn").Lock()
    except (ImportError, NotImplementedError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("cannot start worker processes (%s); fitting and analysing in this process, as with "
                    "--ecgfm-workers 1", reason)
        return reason
    return None


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
    from .. import metrics, probes  # noqa: F401 - imported for the import's cost only
    from ..data import scarcity  # noqa: F401 - likewise
