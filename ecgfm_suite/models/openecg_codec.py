"""openecg codec v6: the pretrained single-lead delineation codec shipped in the ``openecg`` wheel.

Re-implements, key for key, the encoder half of ``FrameClassifierTransformerSampleResConvTokMH1Ch``
(``openecg/stage2/model_variants.py``): ``conv_tok`` (Conv1d 1→d, kernel 2·patch, stride patch,
padding patch/2) → + fixed sinusoidal ``pos_enc`` (a stored buffer, 512 tokens) → ``mid_split``
× [Conv1d k ``lower_kernel`` → GELU → LayerNorm(x + residual)] → ``upper_transformer``
(``n_layers − mid_split`` pre-norm ``nn.TransformerEncoderLayer``, GELU, batch-first, no final
norm). The per-sample decoder that follows (nearest upsampling, ``refine`` convs, the frame/beat/
rhythm heads ``head_sample``/``beat_sample``/``rhythm_sample`` and the unused legacy ``head``) is
declared and dropped: the embedding is the mean of the upper-transformer tokens (500 × 20 ms),
a derived choice — the package has no embedding API.

The checkpoint ``{model_state, model_config, epoch, ...}`` loads with ``weights_only=True``; its
``model_config`` decides the architecture. Input (``LayeredPredictor._forward`` + opendsp
``rank_normalize``): one lead (II by default, ``config={"lead": "V5"}`` or a one-lead
``input_spec`` picks another) at 500 Hz, 10-s windows of 5000 samples, no filtering, each window
replaced by its average ranks mapped linearly to [-1, 1] (invariant to gain and offset). Records
shorter than a window are zero-padded before ranking.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from .._io import sha256_path
from ..data.preprocess import prepare
from ..data.records import STD_LEADS, canonical_lead
from ..errors import CheckpointError, SpecError
from ._build import build_seeded, merge_config, require, state_entry
from .checkpoints import load_torch, match_state_dict
from .protocol import TorchEncoder
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch

ARCH = "vit_transformer_sample_res_convtok_mh_1ch"
#: the per-sample decoder and heads after the upper transformer (not part of the embedding)
DROP = ("head.*", "refine.*", "head_sample.*", "beat_sample.*", "rhythm_sample.*")
#: official arguments / stored metadata without effect on the encoder half in eval mode
IGNORED = ("arch", "dropout", "n_classes", "beat_n_classes", "rhythm_n_classes", "n_leads", "n_reg",
           "aux_target", "n_input_channels", "use_aux", "use_reg", "sample_res_frame", "tokenizer")
MAX_TOKENS = 512  # ``max(512, 2500 // patch_size)`` for the released patch size 10


def rank_normalise(x: np.ndarray) -> np.ndarray:
    """opendsp ``rank_normalize`` along the last axis: average ranks (ties averaged) → [-1, 1]."""
    ranks = stats.rankdata(np.asarray(x, dtype=np.float64), method="average", axis=-1)
    n = x.shape[-1]
    return ((ranks - 1.0) / max(n - 1, 1) * 2.0 - 1.0).astype(np.float32)


def build_module(cfg: Mapping[str, Any]) -> Any:
    """The codec's encoder half from its constructor arguments (official names)."""
    import math

    import torch
    import torch.nn.functional as F
    from torch import nn

    class CodecEncoder(nn.Module):
        pos_enc: torch.Tensor  # a buffer registered in __init__

        def __init__(self, patch_size: int, d_model: int, n_heads: int, n_layers: int, mid_split: int, ff: int,
                     lower_kernel: int) -> None:
            super().__init__()
            self.patch_size = patch_size
            self.conv_tok = nn.Conv1d(1, d_model, 2 * patch_size, stride=patch_size, padding=patch_size // 2)
            position = torch.arange(MAX_TOKENS, dtype=torch.float).unsqueeze(1)
            div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float) * (-math.log(10000.0) / d_model))
            pe = torch.zeros(MAX_TOKENS, d_model)
            pe[:, 0::2], pe[:, 1::2] = torch.sin(position * div), torch.cos(position * div)
            self.register_buffer("pos_enc", pe.unsqueeze(0))
            self.lower_convs = nn.ModuleList(
                nn.Conv1d(d_model, d_model, lower_kernel, padding=lower_kernel // 2) for _ in range(mid_split))
            self.lower_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(mid_split))
            layer = nn.TransformerEncoderLayer(d_model, n_heads, ff, dropout=0.1, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.upper_transformer = nn.TransformerEncoder(layer, n_layers - mid_split, enable_nested_tensor=False)

        def tokens(self, x: torch.Tensor) -> torch.Tensor:
            """(B, T) or (B, 1, T) rank-normalised samples → upper-transformer tokens (B, T / patch, d)."""
            sig = x[:, 0] if x.dim() == 3 else x
            n = sig.shape[-1] // self.patch_size
            h = self.conv_tok(sig.unsqueeze(1))[..., :n].transpose(1, 2) + self.pos_enc[:, :n]
            for conv, norm in zip(self.lower_convs, self.lower_norms, strict=True):
                h = norm(F.gelu(conv(h.transpose(1, 2)).transpose(1, 2)) + h)
            return self.upper_transformer(h)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.tokens(x).mean(dim=1)

    return CodecEncoder(**{k: int(cfg[k]) for k in ("patch_size", "d_model", "n_heads", "n_layers", "mid_split",
                                                    "ff", "lower_kernel")})


class OpenECGCodecEncoder(TorchEncoder):
    """Generic lead selection / resampling to 500 Hz / 10-s windows, then per-window rank normalisation."""

    def __init__(self, spec: ModelSpec, module: Any, *, lead: str, **kwargs: Any) -> None:
        super().__init__(spec, module, **kwargs)
        self.input_spec = dataclasses.replace(spec.input_spec, leads=(lead,))

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        return rank_normalise(prepare(x, fs, tuple(leads), self.input_spec))

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def load(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
         device: str = "cpu") -> OpenECGCodecEncoder:
    """openecg codec encoder; ``checkpoint=None`` gives the seeded random init of the same architecture.

    Use ``spec.resolve_checkpoint(weights_dir)`` for the checkpoint: it falls back to the file the
    installed ``openecg`` wheel ships. ``config`` may override architecture arguments and set
    ``lead`` (not an official argument: which lead feeds the single-lead codec).
    """
    options = dict(config or {})
    require(len(spec.input_spec.leads) == 1, spec.id, f"the codec reads one lead, spec has {spec.input_spec.leads}")
    lead = canonical_lead(str(options.pop("lead", spec.input_spec.leads[0])))
    if lead not in STD_LEADS:
        raise SpecError(f"model {spec.id}: unknown lead {lead!r} (one of {', '.join(STD_LEADS)})")
    cfg = merge_config(spec.id, spec.config, options, ignored=IGNORED)
    state, digest = None, None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        blob = load_torch(checkpoint)
        state = state_entry(blob, "model_state", checkpoint)
        stored = blob.get("model_config") or {}
        if stored.get("arch", ARCH) != ARCH:
            raise CheckpointError(f"model_config arch {stored.get('arch')!r} is not {ARCH}", checkpoint)
        cfg.update({k: v for k, v in stored.items() if k in cfg})
        digest = sha256_path(checkpoint)
    require(cfg["pos_type"] == "sinusoidal" and not cfg["use_lead_emb"] and not cfg["conv_stem"], spec.id,
            "only the released variant (sinusoidal positions, no lead embedding, no conv stem) is implemented")
    module = build_seeded(lambda: build_module(cfg))
    if state is not None and checkpoint is not None:
        match_state_dict(module, state, path=checkpoint, drop=DROP)
    return OpenECGCodecEncoder(spec, module, lead=lead, embed_dim=module.conv_tok.out_channels,
                               checkpoint_sha256=digest, device=device)
