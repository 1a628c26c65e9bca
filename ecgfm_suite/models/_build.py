"""Shared scaffolding of the torch model families: config overrides, seeded init, state-dict entries.

Each family module builds its architecture from the released constructor arguments (the
``ModelSpec.config``) overridden by the caller's ``config`` (official argument names), then
either keeps a seeded random init or loads a checkpoint strictly through
``checkpoints.match_state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CheckpointError, SpecError

M = TypeVar("M")

#: seed of the random initialisation used when no checkpoint is given
INIT_SEED = 0


def merge_config(
    model_id: str, released: Mapping[str, Any], overrides: Mapping[str, Any] | None, *, ignored: Collection[str] = ()
) -> dict[str, Any]:
    """Released constructor arguments updated by ``overrides``.

    ``ignored`` names official arguments that do not change the eval-mode encoder (dropout rates,
    masking, the dropped classification head); they are accepted and discarded. Any other key
    that is not a released argument is refused, so a typo cannot silently build the wrong model.
    """
    merged = dict(released)
    unknown = []
    for key, value in (overrides or {}).items():
        if key in ignored:
            continue
        if key not in released:
            unknown.append(key)
            continue
        merged[key] = value
    if unknown:
        raise SpecError(
            f"model {model_id}: unknown constructor argument(s) {sorted(unknown)} "
            f"(known: {sorted(released)}; ignored in eval: {sorted(ignored)})"
        )
    return merged


def build_seeded(build: Callable[[], M], seed: int = INIT_SEED) -> M:
    """Build a module under a fixed seed without disturbing the caller's global RNG state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def count_parameters(build: Callable[[], Any]) -> int:
    """Parameter count of the module ``build()`` makes, with every ``torch.nn.init`` initialiser skipped.

    The tensors stay uninitialised (large ones are untouched mmap pages, so this costs neither
    time nor memory). Not the meta device: weight norm and random init on meta tensors run
    through torch's Python reference kernels, whose first use imports torch._dynamo (seconds).
    """
    from torch.overrides import TorchFunctionMode

    class SkipInit(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            if getattr(func, "__module__", "") == "torch.nn.init":
                return args[0] if args else (kwargs or {})["tensor"]
            return func(*args, **(kwargs or {}))

    with SkipInit():
        module = build()
    return sum(p.numel() for p in module.parameters())


def state_entry(obj: Any, key: str | None, path: Path) -> Mapping[str, Any]:
    """The state dict stored under ``key`` of a loaded checkpoint (``None``: the object itself)."""
    state = obj if key is None else (obj.get(key) if isinstance(obj, Mapping) else None)
    if not isinstance(state, Mapping):
        found = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
        where = "the checkpoint" if key is None else f"entry {key!r}"
        raise CheckpointError(f"{where} is not a state dict (top level: {found})", path)
    return state


def require(condition: bool, model_id: str, reason: str) -> None:
    """Refuse a configuration the re-implementation does not reproduce (instead of building something else)."""
    if not condition:
        raise SpecError(f"model {model_id}: {reason}")
