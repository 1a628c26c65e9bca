"""Storage of a run's analyses: ``<run dir>/analysis/<kind>/<key>.json`` (+ PNG figures beside them).

Keys are ``model-task``, ``task`` or ``task-level``; every file is written atomically, so xdist workers and
worker processes never clash. The test embeddings that analyses across models (CKA) read are kept as
``analysis/embeddings/<model>-<task>.npz``. The report only assembles what it finds here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_open, write_atomic
from ..errors import DataError


def plain(obj: Any) -> Any:
    """JSON-ready copy: arrays → lists, numpy scalars → Python, NaN/inf → None (missing, not a number)."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class AnalysisStore:
    """``<run dir>/analysis/``: JSON per analysis and key, PNG figures beside them, test embeddings for CKA."""

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / "analysis"

    def path(self, kind: str, key: str, suffix: str = ".json") -> Path:
        if "/" in key or key.startswith("."):
            raise DataError(f"analysis key {key!r} must be a plain name", kind)
        return self.root / kind / f"{key}{suffix}"

    def write(self, kind: str, key: str, payload: Mapping[str, Any]) -> Path:
        target = self.path(kind, key)
        text = json.dumps(plain({"kind": kind, "key": key, **payload}), sort_keys=True, allow_nan=False)
        write_atomic(target, text)
        return target

    def read(self, kind: str, key: str) -> dict[str, Any] | None:
        target = self.path(kind, key)
        return json.loads(target.read_text()) if target.exists() else None

    def entries(self, kind: str) -> dict[str, dict[str, Any]]:
        folder = self.root / kind
        if not folder.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}

    def write_figure(self, kind: str, key: str, png: bytes, name: str = "") -> Path:
        target = self.path(kind, f"{key}.{name}" if name else key, ".png")
        write_atomic(target, png)
        return target

    def figures(self, kind: str, key: str) -> list[Path]:
        folder = self.root / kind
        return sorted(p for p in folder.glob(f"{key}*.png") if p.stem == key or p.stem.startswith(f"{key}."))

    def skip(self, kind: str, key: str, reason: str) -> None:
        """Record why an analysis was skipped (the report lists it)."""
        self.write("skipped", f"{kind}.{key}", {"analysis": kind, "what": key, "reason": reason})

    def write_embeddings(self, model: str, task: str, keys: np.ndarray, X: np.ndarray) -> Path:
        target = self.path("embeddings", f"{model}-{task}", ".npz")
        with atomic_open(target, "wb") as fh:
            np.savez(fh, keys=np.asarray(keys, dtype=str), X=np.asarray(X, dtype=np.float32))
        return target

    def task_embeddings(self, task: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Model → (keys, X) of the test embeddings the models of ``task`` stored."""
        out = {}
        for p in sorted((self.root / "embeddings").glob(f"*-{task}.npz")):
            model = p.stem[: -len(task) - 1]
            with np.load(p, allow_pickle=False) as data:
                out[model] = (data["keys"], data["X"])
        return out
