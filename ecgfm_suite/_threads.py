"""One BLAS/OpenMP thread around small numerical work, without re-scanning the loaded libraries each time.

``threadpoolctl.threadpool_limits`` builds a new ``ThreadpoolController`` on every call, which walks
every shared object the process has loaded (about 3 ms here). Probes call it around every fit and
every prediction, so a run of the default matrix spent ~3 s of its ~23 s warm run on that walk. The
controller is kept and built again only when new modules were imported since (native BLAS/OpenMP
libraries arrive with an import), as threadpoolctl's documentation advises for repeated limits.
"""

from __future__ import annotations

import sys
import threading
from contextlib import AbstractContextManager
from typing import Any

_lock = threading.Lock()
_controller: Any = None
_modules_seen = -1


def one_thread() -> AbstractContextManager[Any]:
    """Context manager: every BLAS/OpenMP library limited to one thread, restored on exit."""
    global _controller, _modules_seen
    from threadpoolctl import ThreadpoolController

    with _lock:
        if _controller is None or len(sys.modules) != _modules_seen:
            _controller = ThreadpoolController()
            _modules_seen = len(sys.modules)
        controller = _controller
    return controller.limit(limits=1)
