"""Safe checkpoint loading and strict state-dict matching.

Checkpoints are untrusted input. Tensors load through ``torch.load(weights_only=True)`` or
safetensors. A checkpoint whose metadata pickles non-tensor objects (a Lightning config, a
HuBERT-ECG config class) is read through an allow-list: each allowed global becomes an inert
stub that records its arguments and runs no code; any other global is refused, naming it.
"""

from __future__ import annotations

import _compat_pickle
import fnmatch
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

#: globals the restricted unpickler resolves to the real object (data containers, tensor rebuilds)
_REAL_GLOBALS: dict[str, Any] = {}


def _real_globals() -> dict[str, Any]:
    if not _REAL_GLOBALS:
        import collections

        import torch

        _REAL_GLOBALS.update(
            {
                "collections.OrderedDict": collections.OrderedDict,
                "collections.defaultdict": collections.defaultdict,
                "builtins.dict": dict, "builtins.list": list, "builtins.tuple": tuple, "builtins.set": set,
                "builtins.int": int, "builtins.float": float, "builtins.bool": bool, "builtins.str": str,
                "builtins.complex": complex, "builtins.slice": slice,
                "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
                "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
                "torch.Size": torch.Size,
            }
        )
        for dtype_name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8",
                           "uint8", "bool", "complex64"):
            _REAL_GLOBALS[f"torch.{dtype_name}"] = getattr(torch, dtype_name)
    return _REAL_GLOBALS


class Stub:
    """Inert stand-in for an allow-listed class: keeps args and state, executes nothing."""

    _qualname = "Stub"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Stub:
        return _stub_class(self._qualname)(*args, **kwargs)

    def __getitem__(self, item: Any) -> Stub:
        return _stub_class(f"{self._qualname}[]")(item)

    def __repr__(self) -> str:
        return f"<stub {self._qualname}>"


def _stub_class(qualname: str) -> type[Stub]:
    return type(qualname.rsplit(".", 1)[-1], (Stub,), {"_qualname": qualname})


def _restricted_pickle_module(path: Path, stub_patterns: tuple[str, ...]) -> Any:
    real = _real_globals()

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol-2 (Python 2) names
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            qual = f"{module}.{name}"
            if qual in real:
                return real[qual]
            if module.startswith("torch") and name.endswith("Storage"):
                import torch

                return getattr(torch, name)
            if any(fnmatch.fnmatchcase(qual, p) for p in stub_patterns):
                return _stub_class(qual)
            raise CheckpointError(
                f"refusing to unpickle global {qual!r}: not on the allow-list for this checkpoint "
                "(a checkpoint that needs arbitrary code is not loaded)",
                path,
            )

    class Module:
        Unpickler = RestrictedUnpickler
        load = pickle.load
        __name__ = "restricted_pickle"

    return Module


def load_torch(
    path: str | Path,
    *,
    safe_types: Iterable[Any] = (),
    stub_globals: Iterable[str] = (),
) -> Any:
    """Load a ``torch.save`` file without executing code from it.

    ``safe_types``: importable, harmless types added to torch's weights_only allow-list
    (e.g. numpy scalars), either the object or ``(object, "qualified.name.in.file")``. ``stub_globals``: fnmatch
    patterns of qualified names that are replaced by inert stubs (config classes of packages we do not import).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path)
    stub_patterns = tuple(stub_globals)
    safe_types = list(safe_types)
    try:
        with torch.serialization.safe_globals(list(safe_types)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_error = exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"not a readable torch checkpoint ({type(exc).__name__}: {exc})", path) from exc
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # any failure here means the file is not a torch zip
        raise CheckpointError(f"unreadable checkpoint: {first_error}", path) from exc
    safe_names = {t[1] if isinstance(t, tuple) else f"{t.__module__}.{t.__qualname__}" for t in safe_types}
    refused = sorted(
        g for g in unsafe
        if g not in safe_names and g not in _real_globals()
        and not any(fnmatch.fnmatchcase(g, p) for p in stub_patterns)
    )
    if refused:
        raise CheckpointError(
            "checkpoint pickles globals outside the allow-list (would need arbitrary code): " + ", ".join(refused),
            path,
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=_restricted_pickle_module(path, stub_patterns))
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"could not load through the allow-listed unpickler: {exc}", path) from exc


#: families whose checkpoint may be a folder (a Hugging Face model directory); every other family reads one file
FOLDER_FAMILIES = frozenset({"hubert_ecg"})


def checkpoint_problem(path: str | Path, family: str) -> str | None:
    """Why a checkpoint the user named cannot be loaded (absent, a folder where the family reads a file,
    unreadable, empty), or None. A named checkpoint that is not there is an error for every entry point:
    a typo must never fall back to random weights or to a skipped cell."""
    path = Path(path)
    if not path.exists():
        return "does not exist"
    if path.is_dir():
        if family not in FOLDER_FAMILIES:
            return f"is a directory; the {family} family reads one checkpoint file"
        return None if os.access(path, os.R_OK | os.X_OK) else "is a directory that cannot be read (permissions)"
    if not os.access(path, os.R_OK):
        return "cannot be read (permissions)"
    return "is an empty file" if path.stat().st_size == 0 else None


def load_safetensors(path: str | Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError("safetensors file not found", path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"not a valid safetensors file: {exc}", path) from exc


def match_state_dict(
    module: Any,
    state: Mapping[str, Any],
    *,
    path: str | Path,
    strip_prefix: str = "",
    drop: Iterable[str] = (),
    ignore_missing: Iterable[str] = (),
    rename: Mapping[str, str] | None = None,
) -> None:
    """Load ``state`` into ``module`` strictly, after declared prefix stripping, renames and drops.

    ``drop``/``ignore_missing`` are fnmatch patterns; ``rename`` maps regex → replacement.
    Any other missing or unexpected key, or a shape/dtype mismatch, raises ``CheckpointError``
    listing the keys (never a silent ``strict=False``).
    """
    import torch

    drop = tuple(drop)
    ignore_missing = tuple(ignore_missing)
    cleaned: dict[str, Any] = {}
    for key, value in state.items():
        if strip_prefix:
            if not key.startswith(strip_prefix):
                if any(fnmatch.fnmatchcase(key, p) for p in drop):
                    continue
                raise CheckpointError(f"key {key!r} lacks the expected prefix {strip_prefix!r}", path)
            key = key[len(strip_prefix):]
        if any(fnmatch.fnmatchcase(key, p) for p in drop):
            continue
        for pattern, repl in (rename or {}).items():
            key = re.sub(pattern, repl, key)
        cleaned[key] = value
    expected = module.state_dict()
    missing = sorted(k for k in expected
                     if k not in cleaned and not any(fnmatch.fnmatchcase(k, p) for p in ignore_missing))
    unexpected = sorted(k for k in cleaned if k not in expected)
    bad_shape = sorted(
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in cleaned.items()
        if k in expected and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(expected[k].shape)
    )
    bad_dtype = sorted(
        f"{k}: {v.dtype} vs {expected[k].dtype}"
        for k, v in cleaned.items()
        if k in expected and isinstance(v, torch.Tensor) and v.is_floating_point() != expected[k].is_floating_point()
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
    if bad_shape:
        problems.append(f"shape mismatches: {'; '.join(bad_shape[:20])}")
    if bad_dtype:
        problems.append(f"dtype mismatches: {'; '.join(bad_dtype[:20])}")
    if problems:
        raise CheckpointError("checkpoint does not match the architecture: " + " | ".join(problems), path)
    module.load_state_dict(dict(cleaned), strict=not ignore_missing)


def read_bytes_header(path: str | Path, n: int = 8) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def is_zip(path: str | Path) -> bool:
    return read_bytes_header(path, 4) == b"PK\x03\x04"


def numpy_scalar_types() -> list[Any]:
    """numpy scalar/dtype globals as old (``numpy.core``) and new (``numpy._core``) pickles name them."""
    import numpy as np
    from numpy._core.multiarray import scalar  # the pickled global itself

    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype,
            *(type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool"))]
