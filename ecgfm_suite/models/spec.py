"""ModelSpec: frozen metadata of one registered encoder; its loader is a lazy string."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..data.preprocess import InputSpec
from ..errors import SpecError
from ..registry import Registry

_ID = re.compile(r"[a-z0-9_.]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    id: str
    family: str
    #: "module:attr" of ``load(spec, checkpoint: Path | None, *, config=None, device="cpu") -> Encoder``;
    #: ``checkpoint=None`` builds the architecture with seeded random weights.
    loader: str
    embed_dim: int
    input_spec: InputSpec
    #: checkpoint path relative to the weights dir (file or HF-style folder); None for controls
    weights: str | None = None
    #: a checkpoint shipped inside an installed package, "package:relative/path" (used when the
    #: weights dir has none), e.g. openecg's codec
    bundled: str | None = None
    #: released constructor configuration (official argument names)
    config: Mapping[str, Any] = field(default_factory=dict)
    licence_code: str = "unknown"
    licence_weights: str = "unknown"
    #: datasets / sources seen in pretraining, to flag contaminated tasks
    pretrained_on: tuple[str, ...] = ()
    #: encoder parameter count of the released configuration (fm-specs.md)
    released_params: int | None = None
    control: bool = False
    #: part of the default matrix whenever its weights are present
    default: bool = True
    pooling: str = "mean over tokens"
    description: str = ""

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.id):
            raise SpecError(f"model id {self.id!r} must match [a-z0-9_.]+")
        if self.embed_dim <= 0:
            raise SpecError(f"model {self.id}: embed_dim must be > 0")
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))

    def checkpoint_path(self, weights_dir: Path) -> Path | None:
        return None if self.weights is None else Path(weights_dir).expanduser() / self.weights

    def resolve_checkpoint(self, weights_dir: Path) -> Path | None:
        """The weights-dir checkpoint if present, else the bundled one if installed, else None."""
        local = self.checkpoint_path(weights_dir)
        if local is not None and local.exists():
            return local
        if self.bundled:
            import importlib.util

            package, _, rel = self.bundled.partition(":")
            found = importlib.util.find_spec(package)
            if found is not None and found.submodule_search_locations:
                candidate = Path(next(iter(found.submodule_search_locations))) / rel
                if candidate.exists():
                    return candidate
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "family": self.family, "loader": self.loader, "embed_dim": self.embed_dim,
            "input_spec": self.input_spec.to_dict(), "weights": self.weights, "bundled": self.bundled,
            "config": json.loads(json.dumps(dict(self.config), default=list)),
            "licence_code": self.licence_code, "licence_weights": self.licence_weights,
            "pretrained_on": list(self.pretrained_on), "released_params": self.released_params,
            "control": self.control, "default": self.default, "pooling": self.pooling,
        }


MODELS: Registry[ModelSpec] = Registry("model")


def register(spec: ModelSpec) -> ModelSpec:
    """Register a spec; ids must not be substrings of one another so ``-k <id>`` is exact."""
    for other in MODELS:
        if spec.id in other or other in spec.id:
            raise SpecError(f"model id {spec.id!r} overlaps {other!r}: `-k` could not select one alone")
    return MODELS.register(spec.id, spec)
