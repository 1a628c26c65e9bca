"""ECG-JEPA (sehunfromdaegu/ECG_JEPA): the context encoder ``MaskTransformer``, in plain PyTorch.

Re-implements ``ecg_jepa.MaskTransformer`` key-for-key (``pos_embed``, ``W_P``,
``encoder_blocks.blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``) and
its downstream path ``representation``: each of the 8 leads is cut into 50-sample patches
(lead-major token order), projected by ``W_P``, the fixed 2-D sin-cos table is added **before
every block**, attention is restricted by the CroPA mask (token (lead a, patch i) sees
(lead b, patch j) iff a == b or i == j), pre-LN blocks, final LayerNorm, mean over all tokens.

The released checkpoint is ``{"encoder": state_dict, "epoch": int}`` (context encoder only;
nothing to drop; the official ``load_encoder`` loads it strictly).

Preprocessing is the official downstream path (``ecg_data.waves_ptbxl``): FFT resampling
(``scipy.signal.resample``) of the record in float64 to 250 Hz, leads I, II, V1–V6, raw mV,
no filter, no normalisation. The official code only sees 10-s records; longer records are cut
by the spec's ``window_mode`` and shorter ones zero-padded (``preprocess.windows``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import signal as sps

from .._io import sha256_path
from ..data.preprocess import select_leads, windows
from ._build import build_seeded, merge_config, require, state_entry
from .checkpoints import load_torch, match_state_dict
from .protocol import TorchEncoder
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch

#: official ``ecg_jepa`` arguments without effect on the eval-mode context encoder (predictor,
#: masking, regularisation, init) and the fixture manifest's class annotation
_IGNORED = ("predictor_embed_dim", "predictor_depth", "predictor_num_heads", "mask_scale", "mask_type",
            "drop_rate", "attn_drop_rate", "drop_path_rate", "init_std", "class_")


def sincos_2d(embed_dim: int, n_leads: int, n_patches: int) -> np.ndarray:
    """The official fixed table ``get_2d_sincos_pos_embed(embed_dim, c, p)`` → (c·p, embed_dim), float64.

    MAE-style: the first half of the channels encodes the patch index, the second half the lead
    index, each as [sin | cos] of the position times 1/10000^(k/(D/4)).
    """
    if embed_dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs embed_dim divisible by 4, got {embed_dim}")
    patch, lead = np.meshgrid(np.arange(n_patches, dtype=float), np.arange(n_leads, dtype=float))

    def encode(pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(embed_dim // 4, dtype=float) / (embed_dim / 4))
        angle = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angle), np.cos(angle)], axis=1)

    return np.concatenate([encode(patch), encode(lead)], axis=1)


def cropa_mask(n_leads: int, n_patches: int) -> Any:
    """Boolean (c·p, c·p) mask, True where attention is allowed: same lead or same patch index."""
    import torch

    index = torch.arange(n_leads * n_patches, device="cpu")  # fixed structure, even under a meta-device build
    lead, patch = index // n_patches, index % n_patches
    return (lead[:, None] == lead[None, :]) | (patch[:, None] == patch[None, :])


def _jepa_classes() -> dict[str, type]:
    """torch module classes, defined lazily so importing this module stays torch-free."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
            super().__init__()
            self.num_heads = num_heads
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
            b, n, d = x.shape
            q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # scale head_dim^-0.5 as official
            return self.proj(out.transpose(1, 2).reshape(b, n, d))

    class Mlp(nn.Module):
        def __init__(self, dim: int, hidden: int):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(F.gelu(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool):
            super().__init__()
            # registration order as official (norm1, norm2, mlp, attn): same state-dict order and init order
            self.norm1 = nn.LayerNorm(dim)
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
            self.attn = Attention(dim, num_heads, qkv_bias)

        def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.norm1(x), allowed)
            return x + self.mlp(self.norm2(x))

    class EncoderBlocks(nn.Module):
        def __init__(self, blocks: list[nn.Module]):
            super().__init__()
            self.blocks = nn.ModuleList(blocks)

    class MaskTransformer(nn.Module):
        """``MaskTransformer`` restricted to ``representation`` (no masking: all 8×50 tokens)."""

        def __init__(self, *, encoder_embed_dim: int, encoder_depth: int, encoder_num_heads: int, mlp_ratio: float,
                     qkv_bias: bool, c: int, p: int, t: int):
            super().__init__()
            self.c, self.p, self.t = c, p, t
            self.embed_dim = encoder_embed_dim
            # registration order as official (blocks, norm, W_P, pos_embed)
            self.encoder_blocks = EncoderBlocks(
                [Block(encoder_embed_dim, encoder_num_heads, mlp_ratio, qkv_bias) for _ in range(encoder_depth)]
            )
            self.norm = nn.LayerNorm(encoder_embed_dim)
            self.W_P = nn.Linear(t, encoder_embed_dim)
            # stored in the checkpoint although frozen (requires_grad=False), exactly as official
            self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(encoder_embed_dim, c, p)).float(),
                                          requires_grad=False)
            self.register_buffer("allowed", cropa_mask(c, p), persistent=False)

        def tokens(self, x: torch.Tensor) -> torch.Tensor:
            """(B, c, p·t) → token states after the final LayerNorm, (B, c·p, D), lead-major."""
            x = self.W_P(x.reshape(x.shape[0], self.c * self.p, self.t))
            for block in self.encoder_blocks.blocks:
                x = block(x + self.pos_embed, self.allowed)
            return self.norm(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.tokens(x).mean(dim=1)

    return {"MaskTransformer": MaskTransformer}


def build_module(config: Mapping[str, Any]) -> Any:
    """``ecg_jepa(**config).encoder``: the architecture, torch's default init (see :func:`official_init`)."""
    require(config["pos_type"] in ("sincos", "learnable"), "ecg_jepa",
            f"pos_type {config['pos_type']!r} is not the released additive table ('sincos')")
    require(list(config["leads"]) == list(range(config["c"])), "ecg_jepa",
            f"lead subsets (leads={list(config['leads'])}) are not supported; "
            f"the released encoder uses all {config['c']}")
    cls = _jepa_classes()["MaskTransformer"]
    return cls(**{k: config[k] for k in ("encoder_embed_dim", "encoder_depth", "encoder_num_heads", "mlp_ratio",
                                         "qkv_bias", "c", "p", "t")})


def official_init(module: Any) -> Any:
    """``MaskTransformer._init_weights`` + ``fix_init_weight``: truncated-normal(0.02) Linear weights,
    zero biases, and the depth-scaled residual projections (LayerNorms keep torch's 1/0)."""
    import math

    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for layer_id, block in enumerate(module.encoder_blocks.blocks, start=1):
        block.attn.proj.weight.data.div_(math.sqrt(2.0 * layer_id))
        block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * layer_id))
    return module


class ECGJEPAEncoder(TorchEncoder):
    """Official ECG-JEPA input (250 Hz FFT resampling, 8 leads, raw mV); mean over 400 tokens after LN."""

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        spec = self.input_spec
        y, _ = select_leads(x, tuple(leads), spec.leads, spec.missing_leads)
        if fs != spec.fs:
            # scipy directly, not ``preprocess.resample``: the official FFT runs in float64 (that primitive in float32)
            y = sps.resample(y.astype(np.float64), round(y.shape[-1] * spec.fs / fs), axis=-1)
        return windows(y.astype(np.float32), spec.window, spec.window_mode, spec.n_crops)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def load(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
         device: str = "cpu") -> ECGJEPAEncoder:
    """ECG-JEPA context encoder; ``checkpoint=None`` gives the seeded random init of the same architecture."""
    cfg = merge_config(spec.id, spec.config, config, ignored=_IGNORED)
    module = build_seeded(lambda: official_init(build_module(cfg)))
    digest = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        state = state_entry(load_torch(checkpoint), "encoder", checkpoint)
        match_state_dict(module, state, path=checkpoint)
        digest = sha256_path(checkpoint)
    return ECGJEPAEncoder(spec, module, embed_dim=module.embed_dim, checkpoint_sha256=digest, device=device)
