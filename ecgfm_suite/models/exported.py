"""Bring-your-own encoders exported to TorchScript or ONNX, run with a user-declared input spec.

Contract: the exported graph maps the generic preprocessing of the spec's ``input_spec``
(``preprocess.prepare``: leads → filters → resample → normalise → windows), a float32 batch
(N, leads, window), to pooled embeddings (N, embed_dim). Both loaders run one zero window at
load time and refuse a graph whose output is not (1, embed_dim), naming the shape.

Trust: an ONNX file is data (a graph of standard operators that onnxruntime executes). A
TorchScript archive is a *program*: ``torch.jit.load`` compiles and runs the code it contains,
and unlike our checkpoints it cannot be read weights-only. TorchScript files are therefore
trusted by declaration: they are loaded only when a user names the file in their own model spec
(``family: torchscript``), never discovered in a weights directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import sha256_path
from ..data.preprocess import InputSpec, prepare
from ..errors import CheckpointError, SpecError
from ..extras import require
from ._build import merge_config
from .protocol import TorchEncoder
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch


def _checked_file(spec: ModelSpec, checkpoint: Path | None, config: Mapping[str, Any] | None) -> Path:
    if checkpoint is None:
        raise SpecError(f"model {spec.id} ({spec.family}) needs its exported file: set `checkpoint` in its spec")
    merge_config(spec.id, {}, config)  # an exported graph has no constructor arguments
    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"{spec.family} file not found", path)
    return path


def _check_output(encoder: Any, path: Path) -> None:
    """Run one zero window; the declared embed_dim must be what the graph returns."""
    spec = encoder.input_spec
    try:
        out = encoder.encode(np.zeros((1, len(spec.leads), spec.window), dtype=np.float32))
    except Exception as exc:  # torch.jit and onnxruntime raise unrelated error types
        raise CheckpointError(f"the graph does not accept the declared input (1, {len(spec.leads)}, {spec.window}) "
                              f"float32: {exc}", path) from exc
    if out.shape != (1, encoder.embed_dim):
        raise CheckpointError(f"the graph returns shape {tuple(out.shape)} for one window; the spec declares "
                              f"(1, {encoder.embed_dim}) pooled embeddings", path)


class TorchScriptEncoder(TorchEncoder):
    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def load_torchscript(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
                     device: str = "cpu") -> TorchScriptEncoder:
    """A ``torch.jit.save`` archive (trusted by declaration, see the module docstring)."""
    import torch

    path = _checked_file(spec, checkpoint, config)
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"not a TorchScript archive: {exc}", path) from exc
    encoder = TorchScriptEncoder(spec, module, checkpoint_sha256=sha256_path(path), device=device)
    _check_output(encoder, path)
    return encoder


class ONNXEncoder:
    """Implements the Encoder protocol with an onnxruntime session (no torch needed)."""

    def __init__(self, spec: ModelSpec, session: Any, *, checkpoint_sha256: str, batch_size: int = 64) -> None:
        self.spec = spec
        self.input_spec: InputSpec = spec.input_spec
        self.embed_dim = spec.embed_dim
        self.checkpoint_sha256: str | None = checkpoint_sha256
        self.session = session
        (graph_input,) = session.get_inputs()
        self.input_name = graph_input.name
        fixed = graph_input.shape[0]
        #: an export without a dynamic batch axis takes exactly its example's batch size
        self.fixed_batch = fixed if isinstance(fixed, int) and fixed > 0 else None
        self.batch_size = self.fixed_batch or batch_size

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        return prepare(x, fs, tuple(leads), self.input_spec)

    def encode(self, batch: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(batch), self.batch_size):
            chunk = np.ascontiguousarray(batch[i : i + self.batch_size], dtype=np.float32)
            n = len(chunk)
            if self.fixed_batch and n < self.fixed_batch:
                chunk = np.concatenate([chunk, np.zeros((self.fixed_batch - n, *chunk.shape[1:]), np.float32)])
            out.append(np.asarray(self.session.run(None, {self.input_name: chunk})[0], dtype=np.float32)[:n])
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), np.float32)


def load_onnx(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
              device: str = "cpu") -> ONNXEncoder:
    """An ONNX graph with one input (N, leads, window) and its first output (N, embed_dim)."""
    ort = require("onnxruntime", "onnx", "an ONNX encoder")

    path = _checked_file(spec, checkpoint, config)
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own (non-exported) exception types
        raise CheckpointError(f"not a loadable ONNX graph: {exc}", path) from exc
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise CheckpointError(f"expected one graph input (N, leads, window), found {[i.name for i in inputs]}", path)
    expected = (None, len(spec.input_spec.leads), spec.input_spec.window)
    declared = tuple(inputs[0].shape)
    if len(declared) != 3 or any(isinstance(d, int) and e is not None and d != e
                                 for d, e in zip(declared, expected, strict=True)):
        raise CheckpointError(f"graph input {inputs[0].name!r} has shape {list(declared)}; the spec declares "
                              f"(N, {expected[1]}, {expected[2]})", path)
    encoder = ONNXEncoder(spec, session, checkpoint_sha256=sha256_path(path))
    _check_output(encoder, path)
    return encoder
