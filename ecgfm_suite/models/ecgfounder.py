"""ECGFounder (PKUDigitalHealth/ECGFounder): Net1D, a RegNet-like 1-D CNN with SE, in plain PyTorch.

Re-implements ``net1d.Net1D`` key-for-key (``first_conv.conv``, ``first_bn``,
``stage_list.S.block_list.B.{bn1,conv1.conv,bn2,conv2.conv,bn3,conv3.conv,se_fc1,se_fc2}``) with
TF-style SAME padding, Swish, squeeze-excitation, grouped convs and zero-padded channel expansion
on the identity path. The released checkpoint is ``{"state_dict", "epoch", "step", "optimizer",
"scheduler", "val_auroc"}`` with a numpy-float ``val_auroc`` (read through the numpy-scalar
allow-list); the 150-label ``dense.*`` head is dropped. BatchNorm tensors are stored but unused
(``use_bn=False``); they are loaded anyway so that every stored tensor is accounted for.

Preprocessing is the official ``dataset.py`` + ``util.filter_bandpass`` path (the README says to
follow it): NaN → 0, 50 Hz notch (Q 30) filtfilt, Butterworth-4 band-pass 0.67–40 Hz filtfilt,
median-filter baseline (kernel ``int(0.4 fs) + 1``) subtracted, then ONE z-score over all leads ×
samples. Pooling: mean over time of the last stage → ``filter_list[-1]`` (1024).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import signal as sps

from .._io import sha256_path
from ..data.preprocess import resample, select_leads, windows
from ._build import build_seeded, merge_config, state_entry
from .checkpoints import load_torch, match_state_dict, numpy_scalar_types
from .protocol import TorchEncoder
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch

#: official arguments without effect on the eval-mode trunk (dropout; the dropped ``dense`` head)
_IGNORED = ("use_do", "n_classes", "return_features", "verbose")


def filter_bandpass(x: np.ndarray, fs: float) -> np.ndarray:
    """``util.filter_bandpass`` in float64: notch 50 Hz, band-pass 0.67–40 Hz, median baseline removal.

    Written with scipy directly (not ``preprocess.notch``/``bandpass``) because the official code
    filters transfer functions (b, a) with ``filtfilt`` in float64, while the shared band-pass
    primitive uses second-order sections and float32 (on LUDB record 1: up to 2.3e-7 mV apart,
    where this function reproduces the official output bit for bit).
    """
    b, a = sps.iirnotch(50, 30, fs)
    y = sps.filtfilt(b, a, x, axis=-1)
    b, a = sps.butter(N=4, Wn=[0.67, 40], btype="bandpass", fs=fs)
    y = sps.filtfilt(b, a, y, axis=-1)
    kernel = int(0.4 * fs) + 1
    kernel += 1 - kernel % 2  # medfilt needs an odd kernel (the official code bumps even sizes)
    baseline = np.stack([sps.medfilt(lead, kernel) for lead in y])
    return y - baseline


def _net1d_classes() -> dict[str, type]:
    """torch module classes, defined lazily so importing this module stays torch-free."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SameConv1d(nn.Module):
        """``MyConv1dPadSame``: zero padding so that out_len = ceil(in_len / stride), left pad = p // 2."""

        def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1):
            super().__init__()
            self.kernel_size, self.stride = kernel_size, stride
            self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, groups=groups)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n = x.shape[-1]
            p = max(0, ((n + self.stride - 1) // self.stride - 1) * self.stride + self.kernel_size - n)
            return self.conv(F.pad(x, (p // 2, p - p // 2)))

    def same_max_pool(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        """``MyMaxPool1dPadSame``: ZERO padding (not -inf) of kernel-1 samples, then max-pool."""
        p = max(0, kernel_size - 1)
        return F.max_pool1d(F.pad(x, (p // 2, p - p // 2)), kernel_size)

    def swish(x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)

    class Block(nn.Module):
        """``BasicBlock``: [BN] Swish conv1×1 → [BN] Swish convk (grouped, strided) → [BN] Swish conv1×1
        → squeeze-excitation, plus the identity path (max-pooled when strided, zero-padded channels)."""

        def __init__(self, in_ch: int, out_ch: int, ratio: float, kernel_size: int, stride: int, groups: int,
                     downsample: bool, is_first_block: bool, use_bn: bool):
            super().__init__()
            self.in_ch, self.out_ch = in_ch, out_ch
            self.stride = stride if downsample else 1
            self.downsample, self.is_first_block, self.use_bn = downsample, is_first_block, use_bn
            mid = int(out_ch * ratio)
            self.bn1 = nn.BatchNorm1d(in_ch)
            self.conv1 = SameConv1d(in_ch, mid, 1, 1)
            self.bn2 = nn.BatchNorm1d(mid)
            self.conv2 = SameConv1d(mid, mid, kernel_size, self.stride, groups=groups)
            self.bn3 = nn.BatchNorm1d(mid)
            self.conv3 = SameConv1d(mid, out_ch, 1, 1)
            self.se_fc1 = nn.Linear(out_ch, out_ch // 2)
            self.se_fc2 = nn.Linear(out_ch // 2, out_ch)

        def _pre(self, bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return swish(bn(x) if self.use_bn else x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = x if self.is_first_block else self._pre(self.bn1, x)
            out = self.conv1(out)
            out = self.conv3(self._pre(self.bn3, self.conv2(self._pre(self.bn2, out))))
            se = torch.sigmoid(self.se_fc2(swish(self.se_fc1(out.mean(-1)))))
            out = torch.einsum("abc,ab->abc", out, se)
            identity = same_max_pool(x, self.stride) if self.downsample else x
            if self.out_ch != self.in_ch:  # zero-pad the new channels, split evenly around the old ones
                extra = self.out_ch - self.in_ch
                identity = F.pad(identity.transpose(-1, -2), (extra // 2, extra - extra // 2)).transpose(-1, -2)
            return out + identity

    class Stage(nn.Module):
        def __init__(self, in_ch: int, out_ch: int, ratio: float, kernel_size: int, stride: int, groups: int,
                     i_stage: int, m_blocks: int, use_bn: bool):
            super().__init__()
            self.block_list = nn.ModuleList(
                Block(in_ch if i == 0 else out_ch, out_ch, ratio, kernel_size, stride if i == 0 else 1, groups,
                      downsample=i == 0, is_first_block=i_stage == 0 and i == 0, use_bn=use_bn)
                for i in range(m_blocks)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.block_list:
                x = block(x)
            return x

    class Net1D(nn.Module):
        """The trunk of ``net1d.Net1D`` (no ``dense`` head); ``forward`` returns (B, C, T)."""

        def __init__(self, in_channels: int, base_filters: int, ratio: float, filter_list: Sequence[int],
                     m_blocks_list: Sequence[int], kernel_size: int, stride: int, groups_width: int,
                     use_bn: bool):
            super().__init__()
            self.use_bn = use_bn
            self.first_conv = SameConv1d(in_channels, base_filters, kernel_size, 2)
            self.first_bn = nn.BatchNorm1d(base_filters)
            self.stage_list = nn.ModuleList()
            in_ch = base_filters
            for i_stage, (out_ch, m_blocks) in enumerate(zip(filter_list, m_blocks_list, strict=True)):
                self.stage_list.append(Stage(in_ch, out_ch, ratio, kernel_size, stride, out_ch // groups_width,
                                             i_stage, m_blocks, use_bn))
                in_ch = out_ch
            self.out_channels = in_ch

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.first_conv(x)
            out = swish(self.first_bn(out) if self.use_bn else out)
            for stage in self.stage_list:
                out = stage(out)
            return out

    return {"Net1D": Net1D}


def build_module(config: Mapping[str, Any]) -> Any:
    """Net1D trunk from constructor arguments (official names)."""
    net1d = _net1d_classes()["Net1D"]
    return net1d(**{k: config[k] for k in ("in_channels", "base_filters", "ratio", "filter_list", "m_blocks_list",
                                           "kernel_size", "stride", "groups_width", "use_bn")})


class ECGFounderEncoder(TorchEncoder):
    """Official ECGFounder input pipeline; embedding = mean over time of the last stage."""

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        spec = self.input_spec
        y, _ = select_leads(np.asarray(x), tuple(leads), spec.leads, spec.missing_leads)  # also NaN → 0
        y = y.astype(np.float64)
        if fs != spec.fs:  # the official code expects 500 Hz input and never resamples
            y = resample(y, fs, spec.fs, spec.resampler).astype(np.float64)
        y = y[:, : spec.window]
        y = filter_bandpass(y, spec.fs)
        y = (y - y.mean()) / (y.std() + 1e-8)
        return windows(y.astype(np.float32), spec.window, "first")

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).mean(-1)


def load(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
         device: str = "cpu") -> ECGFounderEncoder:
    """ECGFounder encoder; ``checkpoint=None`` gives the seeded random init of the same architecture."""
    cfg = merge_config(spec.id, spec.config, config, ignored=_IGNORED)
    module = build_seeded(lambda: build_module(cfg))
    digest = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        state = state_entry(load_torch(checkpoint, safe_types=numpy_scalar_types()), "state_dict", checkpoint)
        match_state_dict(module, state, path=checkpoint, drop=("dense.*",))
        digest = sha256_path(checkpoint)
    return ECGFounderEncoder(spec, module, embed_dim=module.out_channels, checkpoint_sha256=digest, device=device)
