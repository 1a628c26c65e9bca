"""ST-MEM (bakqui/ST-MEM): the ViT encoder ``ST_MEM_ViT`` with lead and SEP embeddings, in plain PyTorch.

Re-implements ``models/encoder/st_mem_vit.py`` key-for-key (``to_patch_embedding.{1,2,3}``,
``pos_embedding``, ``sep_embedding``, ``lead_embeddings.L``, ``blockI.attn.{norm, fn.to_qkv,
fn.to_out.0}``, ``blockI.ff.{norm, fn.net.0, fn.net.3}``, ``norm``) and its downstream
``forward_encoding``: per-lead 75-sample patches → LN → Linear → LN, + positions 1..n, a SEP token
at each end of every lead (+ positions 0 and n+1), + the lead embedding on all tokens of the lead,
pre-LN transformer blocks (attention inner width heads × dim_head, dim_head 64), SEP tokens
dropped, **mean over leads × patches, then** ``norm``.

Checkpoints (``util/misc.save_model``) are ``{"epoch", "model", "optimizer", "scaler", "config"}``:
the "Encoder" file holds the ``ST_MEM_ViT`` state dict without prefix; the "Full" file holds the
whole ``ST_MEM`` with the encoder under ``encoder.``, a top-level alias ``to_patch_embedding.*``
(the same tensors; checked equal, then dropped) and the MAE decoder (dropped).

Preprocessing is the official downstream path (``util/transforms.py`` with
``configs/downstream/st_mem.yaml``): FFT resampling to 250 Hz (float64), ``NCrop(2250, 3)``
(starts 0, 125, 250 of a 10-s record), per crop a Butterworth-5 high-pass 0.67 Hz then a
low-pass 40 Hz (``sosfiltfilt``), and one z-score over all leads × samples of the crop (std 0 → 0).
The official evaluation averages the 3 crops' logits; we average the 3 crop embeddings (for a
linear probe the same thing).
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

#: ``ST_MEM`` arguments of the pretraining decoder/loss, and the fixture manifest's class annotation
_IGNORED = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads", "norm_pix_loss", "norm_layer", "class_")

#: keys of the "Full" (``ST_MEM``) checkpoint that are not the encoder
_DECODER_KEYS = ("to_decoder_embedding.*", "mask_embedding", "decoder_pos_embed", "decoder_blocks.*",
                 "decoder_norm.*", "decoder_head.*")
_ALIAS = "to_patch_embedding."

#: ``util/transforms.py`` constants of the downstream eval transforms
_FILTER_ORDER = 5
_HIGHPASS_HZ = 0.67
_LOWPASS_HZ = 40.0


def sincos_1d(embed_dim: int, n_patches: int) -> np.ndarray:
    """``get_1d_sincos_pos_embed(embed_dim, n_patches, sep_embed=True)``: (n_patches + 2, D), zero SEP rows."""
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 2, dtype=np.float32) / np.float32(embed_dim / 2))
    angle = np.arange(n_patches, dtype=np.float32)[:, None] * omega[None, :]
    table = np.concatenate([np.sin(angle), np.cos(angle)], axis=1)
    zero = np.zeros((1, embed_dim), dtype=np.float32)
    return np.concatenate([zero, table, zero]).astype(np.float32)


def _st_mem_classes() -> dict[str, type]:
    """torch module classes, defined lazily so importing this module stays torch-free."""
    import torch
    from torch import nn

    class PreNorm(nn.Module):
        def __init__(self, dim: int, fn: nn.Module):
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.fn = fn

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fn(self.norm(x))

    class Attention(nn.Module):
        def __init__(self, dim: int, heads: int, dim_head: int, qkv_bias: bool):
            super().__init__()
            self.heads = heads
            inner = heads * dim_head
            self.to_qkv = nn.Linear(dim, inner * 3, bias=qkv_bias)
            # the official code skips the projection only for heads == 1 and dim_head == dim (never released)
            self.to_out = nn.Sequential(nn.Linear(inner, dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, _ = x.shape
            q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
            out = nn.functional.scaled_dot_product_attention(q, k, v)  # softmax(q·kᵀ·dim_head^-0.5)·v
            return self.to_out(out.transpose(1, 2).reshape(b, n, -1))

    class FeedForward(nn.Module):
        def __init__(self, dim: int, hidden: int):
            super().__init__()
            # indices 0 and 3 as official (GELU and Dropout sit at 1, 2 and 4)
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Identity(), nn.Linear(hidden, dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    class TransformerBlock(nn.Module):
        def __init__(self, dim: int, hidden: int, heads: int, dim_head: int, qkv_bias: bool):
            super().__init__()
            self.attn = PreNorm(dim, Attention(dim, heads, dim_head, qkv_bias))
            self.ff = PreNorm(dim, FeedForward(dim, hidden))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.attn(x) + x
            return self.ff(x) + x

    class STMEMViT(nn.Module):
        """``ST_MEM_ViT`` without a head (``num_classes=None``)."""

        def __init__(self, *, seq_len: int, patch_size: int, num_leads: int, width: int, depth: int, mlp_dim: int,
                     heads: int, dim_head: int, qkv_bias: bool):
            super().__init__()
            self.patch_size, self.depth, self.width = patch_size, depth, width
            n_patches = seq_len // patch_size
            self.to_patch_embedding = nn.Sequential(nn.Identity(), nn.LayerNorm(patch_size),
                                                    nn.Linear(patch_size, width), nn.LayerNorm(width))
            self.pos_embedding = nn.Parameter(torch.randn(1, n_patches + 2, width))
            self.sep_embedding = nn.Parameter(torch.randn(width))
            self.lead_embeddings = nn.ParameterList(nn.Parameter(torch.randn(width)) for _ in range(num_leads))
            for i in range(depth):
                self.add_module(f"block{i}", TransformerBlock(width, mlp_dim, heads, dim_head, qkv_bias))
            self.norm = nn.LayerNorm(width)

        def lead_patch_tokens(self, series: torch.Tensor) -> torch.Tensor:
            """(B, leads, samples) → last-block states without SEP, (B, leads, patches, width)."""
            b, n_leads, n_samples = series.shape
            if n_leads > len(self.lead_embeddings):
                raise ValueError(f"{n_leads} leads exceed the {len(self.lead_embeddings)} lead embeddings")
            x = self.to_patch_embedding(series.reshape(b, n_leads, n_samples // self.patch_size, self.patch_size))
            n = x.shape[2]
            x = x + self.pos_embedding[:, 1 : n + 1].unsqueeze(1)
            sep = self.sep_embedding.expand(b, n_leads, 1, -1)
            left = sep + self.pos_embedding[:, :1].unsqueeze(1)
            right = sep + self.pos_embedding[:, -1:].unsqueeze(1)
            x = torch.cat([left, x, right], dim=2)
            x = x + torch.stack(list(self.lead_embeddings))[:n_leads].unsqueeze(0).unsqueeze(2)
            x = x.reshape(b, n_leads * (n + 2), self.width)
            for i in range(self.depth):
                x = getattr(self, f"block{i}")(x)
            return x.reshape(b, n_leads, n + 2, self.width)[:, :, 1:-1]

        def forward(self, series: torch.Tensor) -> torch.Tensor:
            return self.norm(self.lead_patch_tokens(series).mean(dim=(1, 2)))

    return {"STMEMViT": STMEMViT}


def build_module(config: Mapping[str, Any]) -> Any:
    """The encoder ``ST_MEM(**config)`` builds: ``ST_MEM_ViT(width=embed_dim, mlp_dim=mlp_ratio·embed_dim, ...)``."""
    require(config["seq_len"] % config["patch_size"] == 0, "st_mem", "seq_len must be a multiple of patch_size")
    require(config["embed_dim"] % 2 == 0, "st_mem", "embed_dim must be even (sin-cos positions)")
    cls = _st_mem_classes()["STMEMViT"]
    return cls(seq_len=config["seq_len"], patch_size=config["patch_size"], num_leads=config["num_leads"],
               width=config["embed_dim"], depth=config["depth"], mlp_dim=int(config["mlp_ratio"] * config["embed_dim"]),
               heads=config["num_heads"], dim_head=config["encoder_dim_head"], qkv_bias=config["qkv_bias"])


def official_init(module: Any) -> Any:
    """``ST_MEM.initialize_weights``: frozen sin-cos positions, N(0, 0.02) SEP/lead embeddings,
    Xavier-uniform Linear weights with zero biases, LayerNorm 1/0."""
    import torch
    from torch import nn

    n_patches = module.pos_embedding.shape[1] - 2
    module.pos_embedding.data.copy_(torch.from_numpy(sincos_1d(module.width, n_patches)).unsqueeze(0))
    module.pos_embedding.requires_grad = False
    nn.init.normal_(module.sep_embedding, std=0.02)
    for embedding in module.lead_embeddings:
        nn.init.normal_(embedding, std=0.02)
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def n_crop_starts(n_samples: int, crop: int, n_crops: int) -> list[int]:
    """``NCrop``: ``arange(0, n - crop + 1, (n - crop) // (n_crops - 1))``; one crop where that step is 0.

    (The official transform raises for records shorter than a crop or a zero step; we zero-pad a
    short record to one crop and use a single crop when the record is < n_crops - 1 samples longer.)
    """
    extra = n_samples - crop
    step = extra // (n_crops - 1) if n_crops > 1 else 0
    if extra < 0 or step == 0:
        return [0]
    return list(range(0, extra + 1, step))


def standardize(x: np.ndarray) -> np.ndarray:
    """``Standardize(axis=(-1, -2))``: one mean/std (ddof 0) per crop; 0 where the std is 0.

    Not ``preprocess.normalise``: that adds eps to the std; the official transform divides exactly.
    """
    loc = x.mean(axis=(-1, -2), keepdims=True)
    scale = x.std(axis=(-1, -2), keepdims=True)
    return np.divide(x - loc, scale, out=np.zeros_like(x), where=scale != 0)


class STMEMEncoder(TorchEncoder):
    """Official ST-MEM downstream input (3 filtered, standardised 9-s crops at 250 Hz); pooled then ``norm``."""

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        spec = self.input_spec
        y, _ = select_leads(x, tuple(leads), spec.leads, spec.missing_leads)
        y = y.astype(np.float64)  # the official pipeline runs in float64 until ToTensor
        if fs != spec.fs:  # ``Resample(target_fs)``: int() of the new length, FFT
            y = sps.resample(y, int(y.shape[-1] * spec.fs / fs), axis=-1)
        if y.shape[-1] < spec.window:
            y = windows(y, spec.window)[0].astype(np.float64)  # zero-pad (the official transform would raise)
        crops = np.stack([y[:, s : s + spec.window] for s in n_crop_starts(y.shape[-1], spec.window, spec.n_crops)])
        for btype, cutoff in (("highpass", _HIGHPASS_HZ), ("lowpass", _LOWPASS_HZ)):
            sos = sps.butter(_FILTER_ORDER, cutoff, btype=btype, fs=spec.fs, output="sos")
            crops = sps.sosfiltfilt(sos, crops, axis=-1)
        return standardize(crops).astype(np.float32)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def encoder_state(obj: Any, path: Path) -> dict[str, Any]:
    """The ``ST_MEM_ViT`` state dict of an "Encoder" or "Full" file (prefix ``encoder.`` stripped later)."""
    import torch

    state = dict(state_entry(obj, "model", path))
    if not any(key.startswith("encoder.") for key in state):
        return state
    for key in [k for k in state if k.startswith(_ALIAS)]:
        own = state.get("encoder." + key)
        if not (isinstance(own, torch.Tensor) and torch.equal(own, state[key])):
            raise CheckpointError(f"{key!r} should alias encoder.{key} (the same tensor) but differs or lacks it", path)
        del state[key]
    return state


def load(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
         device: str = "cpu") -> STMEMEncoder:
    """ST-MEM encoder from an "Encoder" or "Full" checkpoint; ``checkpoint=None`` gives the seeded random init."""
    cfg = merge_config(spec.id, spec.config, config, ignored=_IGNORED)
    module = build_seeded(lambda: official_init(build_module(cfg)))
    digest = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        state = encoder_state(load_torch(checkpoint), checkpoint)
        full = any(key.startswith("encoder.") for key in state)
        match_state_dict(module, state, path=checkpoint, strip_prefix="encoder." if full else "",
                         drop=_DECODER_KEYS if full else ())
        digest = sha256_path(checkpoint)
    return STMEMEncoder(spec, module, embed_dim=module.width, checkpoint_sha256=digest, device=device)
