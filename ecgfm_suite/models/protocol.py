"""The Encoder protocol every model family implements, and a torch base class for it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..data.preprocess import InputSpec, prepare
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch


@runtime_checkable
class Encoder(Protocol):
    spec: ModelSpec
    input_spec: InputSpec
    embed_dim: int
    #: sha256 of the checkpoint file/folder, or None when randomly initialised
    checkpoint_sha256: str | None

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        """Raw record (leads, samples) in mV → model-ready windows (n_windows, *input_shape), float32."""

    def encode(self, batch: np.ndarray) -> np.ndarray:
        """Model-ready windows (N, *input_shape) → embeddings (N, embed_dim), float32."""


class TorchEncoder:
    """Runs a torch module in inference mode, batched, bf16 autocast on CUDA.

    Subclasses implement ``forward_embed(tensor) -> tensor (N, D)`` (architecture forward +
    official pooling) and may override ``prepare`` with the family's official pipeline. Loaders
    pass ``embed_dim`` = the width of the module they built (its config may differ from the
    catalog's); without it the spec's ``embed_dim`` holds.
    """

    def __init__(self, spec: ModelSpec, module: Any, *, checkpoint_sha256: str | None,
                 embed_dim: int | None = None, device: str = "cpu", batch_size: int = 64) -> None:
        import torch

        self.spec = spec
        self.input_spec = spec.input_spec
        self.embed_dim = spec.embed_dim if embed_dim is None else int(embed_dim)
        self.checkpoint_sha256 = checkpoint_sha256
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.batch_size = batch_size

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        return prepare(x, fs, tuple(leads), self.input_spec)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, batch: np.ndarray) -> np.ndarray:
        import torch

        out: list[np.ndarray] = []
        i = 0
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            while i < len(batch):
                # own, writable copy: a memmap slice is read-only and a forward may work in place on its input
                chunk = torch.from_numpy(np.array(batch[i : i + self.batch_size], dtype=np.float32))
                try:
                    emb = self.forward_embed(chunk.to(self.device))
                except torch.OutOfMemoryError:
                    if self.batch_size == 1:
                        raise
                    self.batch_size //= 2  # adapt to available memory, then retry the same chunk
                    torch.cuda.empty_cache()
                    continue
                out.append(emb.float().cpu().numpy())
                i += len(chunk)
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)
