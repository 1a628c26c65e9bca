"""MERL (cheliu-computation/MERL-ICML2024): the ResNet18-1D ECG encoder, in plain PyTorch.

Re-implements ``utils/resnet1d.ResNet18()`` key-for-key (``conv1``, ``bn1``,
``layer{1..4}.{0,1}.{conv1,bn1,conv2,bn2,shortcut.{0,1}}``): conv 12→64 k7 s2 + BN + ReLU (no
max-pool), BasicBlocks with widths 64/128/256/512 and strides 1/2/2/2. Two published layouts:
``*_encoder.pth`` = the bare encoder state dict, ``*_ckpt.pth`` = the whole ECGCLIP model with
the encoder under ``ecg_encoder.`` (text model and projection heads dropped). The never-trained
``linear.*`` classifier is dropped in both.

``widths`` is not an official argument (the official class hard-codes 64/128/256/512); it exists
so that the width-reduced parity fixture loads. Preprocessing is the official downstream path
(``finetune/finetune_dataset.py``): first 5000 samples at 500 Hz, ONE min-max over the whole
12 × 5000 array to [0, 1] (+1e-8), leads in MIMIC-IV-ECG order (aVF before aVL). Embedding =
global average of layer4 → 512.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import sha256_path
from ..data.preprocess import resample, select_leads, windows
from ._build import build_seeded, merge_config, require, state_entry
from .checkpoints import load_torch, match_state_dict
from .protocol import TorchEncoder
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch

#: the official constructor's classifier size: only the dropped ``linear`` head depends on it
_IGNORED = ("num_classes",)
#: where whole-ECGCLIP checkpoints keep the encoder (DDP-wrapped first)
_CLIP_PREFIXES = ("module.ecg_encoder.", "ecg_encoder.")


def _resnet_classes() -> dict[str, type]:
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, in_ch: int, out_ch: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv1d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm1d(out_ch)
            self.conv2 = nn.Conv1d(out_ch, out_ch, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm1d(out_ch)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_ch != out_ch:
                self.shortcut = nn.Sequential(nn.Conv1d(in_ch, out_ch, 1, stride=stride, bias=False),
                                              nn.BatchNorm1d(out_ch))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class ResNet(nn.Module):
        """``ResNet(BasicBlock, num_blocks)`` without ``linear``; ``forward`` returns the layer4 map (B, C, T)."""

        # set in __init__ by name
        layer1: nn.Sequential
        layer2: nn.Sequential
        layer3: nn.Sequential
        layer4: nn.Sequential

        def __init__(self, num_blocks: Sequence[int], widths: Sequence[int], in_channels: int):
            super().__init__()
            self.conv1 = nn.Conv1d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm1d(widths[0])
            in_ch = widths[0]
            for i, (n, width) in enumerate(zip(num_blocks, widths, strict=True)):
                first_stride = 1 if i == 0 else 2
                blocks = []
                for stride in [first_stride] + [1] * (n - 1):
                    blocks.append(BasicBlock(in_ch, width, stride))
                    in_ch = width
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.out_channels = in_ch

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            return self.layer4(self.layer3(self.layer2(self.layer1(out))))

    return {"ResNet": ResNet}


def build_module(config: Mapping[str, Any]) -> Any:
    require(config["block"] == "BasicBlock", "merl", f"only BasicBlock ResNets are published, got {config['block']!r}")
    require(len(config["num_blocks"]) == 4 and len(config["widths"]) == 4, "merl",
            "num_blocks and widths need 4 entries (layer1..layer4)")
    return _resnet_classes()["ResNet"](config["num_blocks"], config["widths"], config["in_channels"])


class MerlEncoder(TorchEncoder):
    """Official MERL downstream input; embedding = global average of layer4."""

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        """MIMIC lead order, first 10 s, zero-pad short records BEFORE the min-max (as the official
        ICBEB branch pads 2500 → 5000), then one global min-max. NaN → 0 (``select_leads``; the
        downstream code has no NaN handling: a NaN would turn the whole min-max input into NaN)."""
        spec = self.input_spec
        y, _ = select_leads(np.asarray(x), tuple(leads), spec.leads, spec.missing_leads)
        if fs != spec.fs:  # the official code reads 500 Hz records only and never resamples
            y = resample(y, fs, spec.fs, spec.resampler)
        y = windows(y, spec.window, "first")[0].astype(np.float64)
        y = (y - y.min()) / (y.max() - y.min() + 1e-8)
        return y[None].astype(np.float32)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).mean(-1)


def read_state(checkpoint: Path) -> Mapping[str, Any]:
    """The encoder's state dict, prefix stripped, from any of the official MERL files.

    ``*_encoder.pth``: ``ecg_encoder.state_dict()`` (bare). ``*_ckpt.pth`` / ``*_final_total.pth``:
    the whole ECGCLIP ``state_dict()`` with the encoder under ``ecg_encoder.``; periodic
    ``save_checkpoints`` files: ``{"epoch", "model_state_dict", "optimizer_state_dict"}`` of the
    DDP-wrapped model (``module.ecg_encoder.``). In the whole-model files every key outside the
    encoder prefix (MedCPT text model, projection and attention-pooling heads) is pretraining-only.
    """
    obj = load_torch(checkpoint)
    state = state_entry(obj, "model_state_dict" if isinstance(obj, Mapping) and "model_state_dict" in obj else None,
                        checkpoint)
    for prefix in _CLIP_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
         device: str = "cpu") -> MerlEncoder:
    """MERL ResNet18 encoder; ``checkpoint=None`` gives the seeded random init."""
    cfg = merge_config(spec.id, spec.config, config, ignored=_IGNORED)
    module = build_seeded(lambda: build_module(cfg))
    digest = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        match_state_dict(module, read_state(checkpoint), path=checkpoint, drop=("linear.*",))
        digest = sha256_path(checkpoint)
    return MerlEncoder(spec, module, embed_dim=module.out_channels, checkpoint_sha256=digest, device=device)
