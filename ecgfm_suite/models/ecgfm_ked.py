"""ECGFM-KED (control-spiderman/ECGFM-KED): the xresnet1d101 ECG trunk, in plain PyTorch.

Re-implements ``models/xresnet1d_101.xresnet1d101`` (fastai-style XResNet1d, no head) key-for-key:
an ``nn.Sequential`` of three stem ConvLayers (conv → BN → ReLU; widths ``stem_szs``, kernel
``kernel_size_stem``, first stride 2), ``MaxPool1d(3, 2, 1)`` and four stages of bottleneck
ResBlocks (``layers`` = 3/4/23/3, widths ``[64, 128, 128, 192] × widen × expansion 4`` → 768).
A ResBlock is ``act(convpath(x) + idpath(x))``; ``idpath`` = [AvgPool(2, ceil_mode) if strided]
+ [1×1 ConvLayer without ReLU if the width changes]. The official ResBlock registers its conv
stack twice (``convs`` and ``convpath.0``, the same modules), so its state dict carries every conv
and BN under both names; we load ``convs.*`` and require each ``convpath.0.*`` alias to be
bit-identical to it (a file whose aliases disagree is not a file the official code wrote).

Checkpoint layouts: the official ``main_mimiciv.py`` file ``{"model", "ecg_model", "text_encoder",
"optimizer", "lr_scheduler", "config", "epoch"}`` (encoder = ``ecg_model``, positional keys), or a
flat dict with the encoder under ``ecg_model.`` (what the reality-check benchmark expects).

Input (pretraining, ``dataset/ecgDataset.py::MimicivDataset``): leads as MIMIC-IV-ECG stores them
(I, II, III, aVR, **aVF, aVL**, V1–V6), ``scipy.signal.resample`` (FFT) of the 10-s record to
100 Hz, NaN → 0 after resampling (so a lead with a NaN is zeroed), no filter, no normalisation
(mV). We implement this pretraining variant, not the PTB-XL downstream one (standard order + a
dataset-level StandardScaler fitted on the training split), because the embedding should see
inputs distributed as in pretraining.
Embedding: mean over time of the trunk output → 768.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import signal as sps

from .._io import sha256_path
from ..data.preprocess import select_leads, windows
from ..errors import CheckpointError
from ._build import build_seeded, merge_config, require, state_entry
from .checkpoints import load_torch, match_state_dict
from .protocol import TorchEncoder
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch

#: head arguments: ``use_ecgNet_Diagnosis`` is off in the released training, so no head is built
_IGNORED = ("num_classes", "ps_head", "lin_ftrs_head", "bn_final_head", "bn_head", "act_head", "concat_pooling")
_EXPANSION = 4
_LAYERS = (3, 4, 23, 3)
_BLOCK_WIDTHS = (64, 128, 128, 192)
_ALIAS = ".convpath.0."
_ENCODER_PREFIX = "ecg_model."


def _xresnet_classes() -> dict[str, type]:
    import torch
    from torch import nn

    def conv_layer(ni: int, nf: int, ks: int, stride: int = 1, act: bool = True, zero_bn: bool = False
                   ) -> nn.Sequential:
        """fastai ``ConvLayer`` with BatchNorm (bn_1st): conv (no bias, padding (ks-1)//2) → BN [→ ReLU].

        Init as fastai's: kaiming-normal conv; BN weight 1 (0 for ``NormType.BatchZero``), bias 1e-3."""
        conv = nn.Conv1d(ni, nf, ks, stride=stride, padding=(ks - 1) // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight)
        bn = nn.BatchNorm1d(nf)
        nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
        nn.init.constant_(bn.bias, 1e-3)
        return nn.Sequential(conv, bn, *([nn.ReLU()] if act else []))

    class ResBlock(nn.Module):
        """Bottleneck ResBlock (expansion 4): 1×1 → k (strided) → 1×1 (no ReLU), plus the identity path."""

        def __init__(self, ni: int, nf: int, stride: int, kernel_size: int):
            super().__init__()
            ni, nh, nf = ni * _EXPANSION, nf, nf * _EXPANSION
            self.convs = nn.Sequential(conv_layer(ni, nh, 1), conv_layer(nh, nh, kernel_size, stride=stride),
                                       conv_layer(nh, nf, 1, act=False, zero_bn=True))
            idpath: list[nn.Module] = []
            if stride != 1:
                idpath.append(nn.AvgPool1d(2, ceil_mode=True))
            if ni != nf:
                idpath.append(conv_layer(ni, nf, 1, act=False))
            self.idpath = nn.Sequential(*idpath)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.convs(x) + self.idpath(x))

    class XResNet1d(nn.Sequential):
        """The trunk as the official ``nn.Sequential``: 3 stem layers, max-pool, 4 stages → (B, C, T)."""

        def __init__(self, input_channels: int, stem_szs: Sequence[int], kernel_size: int, kernel_size_stem: int,
                     widen: float):
            szs = [input_channels, *stem_szs]
            stem = [conv_layer(szs[i], szs[i + 1], kernel_size_stem, stride=2 if i == 0 else 1) for i in range(3)]
            widths = [64 // _EXPANSION] + [int(w * widen) for w in _BLOCK_WIDTHS]
            stages = [
                nn.Sequential(*[ResBlock(widths[i] if j == 0 else widths[i + 1], widths[i + 1],
                                         (1 if i == 0 else 2) if j == 0 else 1, kernel_size) for j in range(n)])
                for i, n in enumerate(_LAYERS)
            ]
            super().__init__(*stem, nn.MaxPool1d(kernel_size=3, stride=2, padding=1), *stages)
            self.out_channels = widths[-1] * _EXPANSION
            self._init_cnn(self)

        def _init_cnn(self, module: nn.Module) -> None:
            """The official ``init_cnn`` pass, RNG draw for draw: zero every bias (BatchNorm's too),
            kaiming-normal every conv, recursing pre-order. A ResBlock's children are ``convs``,
            ``convpath`` (= ``convs`` again) and ``idpath``, so its convs are drawn twice."""
            bias = getattr(module, "bias", None)
            if bias is not None:
                nn.init.constant_(bias, 0.0)
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight)
            children = [module.convs, module.convs, module.idpath] if isinstance(module, ResBlock) else \
                module.children()
            for child in children:
                self._init_cnn(child)

    return {"XResNet1d": XResNet1d}


def build_module(config: Mapping[str, Any]) -> Any:
    # the first stage takes 64 // 4 = 16 channels × expansion 4 from the stem: its last width must be 64
    require(config["stem_szs"][-1] == (64 // _EXPANSION) * _EXPANSION, "ecgfm_ked",
            f"the last stem width must be 64 (the first stage expects it), got {config['stem_szs']}")
    return _xresnet_classes()["XResNet1d"](config["input_channels"], tuple(config["stem_szs"]), config["kernel_size"],
                                           config["kernel_size_stem"], config["widen"])


class KedEncoder(TorchEncoder):
    """MimicivDataset input (MIMIC lead order, FFT to 100 Hz, NaN → 0, mV); mean over time."""

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        """The first 10 s at the native rate, FFT-resampled to ``int(n · 100 / fs)`` samples (5000 → 1000,
        the official ``int(n / 5)``), zero-padded when shorter than 10 s.

        The official code sets NaN → 0 AFTER the FFT resampling, by which point one NaN has spread
        over its whole lead: a lead with any NaN becomes all zeros. We zero such leads up front."""
        spec = self.input_spec
        x = np.asarray(x)
        x = np.where(np.isnan(x).any(axis=-1, keepdims=True), 0.0, x)
        y, _ = select_leads(x, tuple(leads), spec.leads, spec.missing_leads)
        y = y[:, : int(round(spec.window * fs / spec.fs))].astype(np.float64)
        if fs != spec.fs:
            y = sps.resample(y, int(y.shape[1] * spec.fs / fs), axis=1)
        return windows(y.astype(np.float32), spec.window, "first")

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).mean(-1)


def _check_aliases(state: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Drop the ``convpath.0.*`` aliases after checking each equals its ``convs.*`` twin."""
    import torch

    kept = {k: v for k, v in state.items() if _ALIAS not in k}
    bad = []
    for key, value in state.items():
        if _ALIAS in key:
            twin = key.replace(_ALIAS, ".convs.")
            if twin not in kept:
                bad.append(f"{key} (no {twin})")
            elif not (isinstance(value, torch.Tensor) and value.shape == kept[twin].shape
                      and torch.equal(value, kept[twin])):
                bad.append(f"{key} != {twin}")
    if bad:
        raise CheckpointError(f"ResBlock aliases convpath.0.* must duplicate convs.*: {', '.join(bad[:10])}", path)
    return kept


def read_state(checkpoint: Path) -> Mapping[str, Any]:
    """The trunk's state dict from the nested official file or a flat ``ecg_model.``-prefixed dict."""
    obj = load_torch(checkpoint)
    if isinstance(obj, Mapping) and isinstance(obj.get("ecg_model"), Mapping):
        state = state_entry(obj, "ecg_model", checkpoint)
    else:
        flat = state_entry(obj, None, checkpoint)
        state = {k[len(_ENCODER_PREFIX):]: v for k, v in flat.items() if k.startswith(_ENCODER_PREFIX)}
        if not state:
            raise CheckpointError(
                f"neither an 'ecg_model' entry nor '{_ENCODER_PREFIX}*' keys (top level: {sorted(flat)[:10]})",
                checkpoint)
    return _check_aliases(state, checkpoint)


def load(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
         device: str = "cpu") -> KedEncoder:
    """ECGFM-KED xresnet1d101 trunk; ``checkpoint=None`` gives the seeded random init."""
    cfg = merge_config(spec.id, spec.config, config, ignored=_IGNORED)
    module = build_seeded(lambda: build_module(cfg))
    digest = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        match_state_dict(module, read_state(checkpoint), path=checkpoint)
        digest = sha256_path(checkpoint)
    return KedEncoder(spec, module, embed_dim=module.out_channels, checkpoint_sha256=digest, device=device)
