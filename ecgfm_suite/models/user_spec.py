"""Bring-your-own checkpoints: ModelSpec YAML files and ``NAME=PATH`` checkpoint overrides.

A model file names code only through a registered *family*: its loader is taken from a catalog
spec of that family (or the exported-graph families ``torchscript`` / ``onnx``), never from an
import path in the file. Keys::

    id: my_hubert                  # required, [a-z0-9_.]+
    family: hubert_ecg             # required: a catalog family, torchscript or onnx
    checkpoint: ckpt/hubert-small  # file or folder, relative to this YAML file; required for exported graphs
    embed_dim: 512                 # required for exported graphs; else defaults to the family's
    config: {hidden_size: 512}     # official constructor arguments over the family's released ones
    input_spec: {fs: 100, window: 500, leads: [I, II]}   # InputSpec fields; defaults from the family
    windows: official              # optional window policy: cover, official or first (InputSpec.window_policy);
                                   # --ecgfm-windows, when set, overrides it; default cover
    pooling: mean over time        # optional free text
    description: ...               # optional
    pretrained_on: [ptbxl]         # optional: datasets seen in pretraining (flags contaminated tasks)

Unknown keys (top level or in ``input_spec``) are refused, naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.preprocess import InputSpec
from ..errors import SpecError
from .checkpoints import checkpoint_problem
from .spec import MODELS, ModelSpec

#: families without a catalog entry: exported graphs (see ``exported.py``)
EXPORTED_FAMILIES = {
    "torchscript": "ecgfm_suite.models.exported:load_torchscript",
    "onnx": "ecgfm_suite.models.exported:load_onnx",
}
KEYS = ("id", "family", "checkpoint", "embed_dim", "config", "input_spec", "windows", "pooling", "description",
        "pretrained_on")
REQUIRED = ("id", "family")
_INPUT_FIELDS = tuple(f.name for f in dataclasses.fields(InputSpec))
_TUPLE_FIELDS = ("leads", "bandpass")


def _catalog() -> None:
    from . import catalog  # noqa: F401 - registers the catalog specs


def family_templates() -> dict[str, ModelSpec]:
    """One catalog spec per family (the first by id): its loader, default input spec, embed_dim and config."""
    _catalog()
    templates: dict[str, ModelSpec] = {}
    for spec in dict(MODELS.items()).values():
        templates.setdefault(spec.family, spec)
    return templates


def _input_spec(raw: Any, base: InputSpec | None, path: Path) -> InputSpec:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(f"input_spec must be a mapping of InputSpec fields, got {type(raw).__name__}", path)
    unknown = sorted(set(raw) - set(_INPUT_FIELDS))
    if unknown:
        raise SpecError(f"unknown input_spec key(s) {unknown} (allowed: {', '.join(_INPUT_FIELDS)})", path)
    fields: dict[str, Any] = {k: tuple(v) if k in _TUPLE_FIELDS and isinstance(v, list) else v
                              for k, v in raw.items()}
    try:
        return dataclasses.replace(base, **fields) if base is not None else InputSpec(**fields)
    except SpecError as exc:
        raise SpecError(f"input_spec: {exc.reason}", path) from exc
    except TypeError as exc:
        raise SpecError(f"input_spec: {exc} (required without a family default: fs, leads, window)", path) from exc


def _with_windows(raw: Mapping[str, Any], path: Path) -> Any:
    """The ``input_spec`` mapping with the top-level ``windows`` key as its ``window_policy`` (the key is named
    like ``--ecgfm-windows``); naming the policy both ways with different values is refused."""
    spec = raw.get("input_spec")
    if raw.get("windows") is None:
        return spec
    if not isinstance(spec, dict | None):
        return spec  # ``_input_spec`` names the wrong type
    named = (spec or {}).get("window_policy")
    if named is not None and named != raw["windows"]:
        raise SpecError(f"windows: {raw['windows']!r} contradicts input_spec.window_policy: {named!r}", path)
    return {**(spec or {}), "window_policy": raw["windows"]}


def load_model_file(path: str | Path) -> ModelSpec:
    """Read and validate a ModelSpec YAML file (``yaml.safe_load``); the result is not registered."""
    import yaml

    path = Path(path).expanduser().resolve()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read model file: {exc.strerror}", path) from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"not valid YAML: {exc}", path) from exc
    if not isinstance(raw, dict):
        raise SpecError("a model file must be a YAML mapping of spec keys", path)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise SpecError(f"unknown key(s) {unknown} (allowed: {', '.join(KEYS)})", path)
    missing = [k for k in REQUIRED if raw.get(k) in (None, "")]
    if missing:
        raise SpecError(f"missing required key(s) {missing}", path)

    family = str(raw["family"])
    templates = family_templates()
    template = templates.get(family)
    if template is None and family not in EXPORTED_FAMILIES:
        known = sorted({*templates, *EXPORTED_FAMILIES})
        raise SpecError(f"unknown family {family!r} (registered: {', '.join(known)})", path)
    loader = template.loader if template is not None else EXPORTED_FAMILIES[family]

    checkpoint = raw.get("checkpoint")
    if checkpoint is not None:
        checkpoint = (path.parent / Path(str(checkpoint)).expanduser()).resolve()
        problem = checkpoint_problem(checkpoint, family)
        if problem:
            raise SpecError(f"checkpoint {checkpoint} {problem}", path)
    elif template is None:
        raise SpecError(f"family {family!r} needs `checkpoint` (the exported file)", path)
    if raw.get("embed_dim") is None and template is None:
        raise SpecError(f"family {family!r} needs `embed_dim` (the width of the exported embedding)", path)
    config = raw.get("config") or {}
    if not isinstance(config, dict):
        raise SpecError(f"config must be a mapping of constructor arguments, got {type(config).__name__}", path)

    try:
        return ModelSpec(
            id=str(raw["id"]), family=family, loader=loader,
            # no embed_dim and no template was refused above
            embed_dim=(int(raw["embed_dim"]) if raw.get("embed_dim") is not None or template is None
                       else template.embed_dim),
            input_spec=_input_spec(_with_windows(raw, path), template.input_spec if template else None, path),
            weights=None if checkpoint is None else str(checkpoint),
            config={**(template.config if template else {}), **config},
            pooling=str(raw.get("pooling", template.pooling if template else "declared by the user")),
            description=str(raw.get("description", f"user model from {path.name}")),
            pretrained_on=tuple(str(d) for d in raw.get("pretrained_on") or ()),
            licence_code="declared by the user", licence_weights="declared by the user",
            control=template.control if template else False,  # a seeded control needs no checkpoint to run
        )
    except SpecError as exc:
        raise SpecError(exc.reason, path) from exc
    except (TypeError, ValueError) as exc:
        raise SpecError(f"invalid value: {exc}", path) from exc


def parse_checkpoint_override(text: str, specs: Mapping[str, ModelSpec] | None = None) -> tuple[str, Path]:
    """``"NAME=PATH"`` → (model id, checkpoint path).

    ``specs`` are the models the run knows (default: the registry, catalog included); pass the
    catalog plus the run's user specs to accept their ids. Whether the path exists is checked where
    the run's models are planned (``checkpoint_problem``): a named checkpoint that is not there
    is an error, never a skip or random weights.
    """
    name, sep, raw_path = text.partition("=")
    name, raw_path = name.strip(), raw_path.strip()
    if not sep or not name or not raw_path:
        raise SpecError(f"checkpoint override must be NAME=PATH, got {text!r}")
    if specs is None:
        _catalog()
        specs = dict(MODELS.items())
    override_target(name, specs)
    return name, Path(raw_path).expanduser()


def override_target(name: str, specs: Mapping[str, ModelSpec]) -> ModelSpec:
    """The spec a ``NAME=PATH`` override names: an unknown name (with close matches) or a control is refused."""
    spec = specs.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(specs), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SpecError(f"checkpoint override names unknown model {name!r}{hint} (known: {', '.join(sorted(specs))})")
    if spec.control:
        raise SpecError(f"model {name} is a control and takes no checkpoint")
    return spec
