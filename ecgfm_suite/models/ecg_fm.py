"""ECG-FM (bowang-lab/ECG-FM on Jwoo5/fairseq-signals): the wav2vec 2.0 / CMSC encoder, in plain PyTorch.

Re-implements the eval path of ``Wav2Vec2CMSCModel`` / ``ECGTransformerModel`` key-for-key:
conv feature extractor (``feature_extractor.conv_layers.i.{0: conv, 2: GroupNorm on layer 0}``,
GELU) → ``layer_norm`` → ``post_extract_proj`` → ``x + conv_pos(x)`` (weight-normed grouped conv,
weight-norm ``dim=2``, SamePad, GELU) → ``encoder.layer_norm`` BEFORE the layers (post-LN mode) →
post-LN transformer layers (attention → residual → ``self_attn_layer_norm`` → fc1 → GELU → fc2 →
residual → ``final_layer_norm``), no final LayerNorm.

Checkpoints: the fairseq trainer dict ``{"cfg", "model", ...}``; the encoder is ``model`` without
prefix; the pretraining-only ``mask_emb``, ``quantizer.*``, ``project_q.*``, ``final_proj.*`` are
dropped. The fine-tuned classifier stores the encoder under ``encoder.`` beside its ``proj.*``
head (dropped). The weight-normed positional conv is accepted both as the parametrization
(``parametrizations.weight.original0/1``) and the legacy ``weight_g/weight_v`` names. When the
file's ``cfg["model"]`` is a wav2vec2 config (as the official ``from_pretrained`` does) its
architecture arguments override the released ones; an explicit ``config`` overrides both.

Preprocessing = ECG-FM ``infer_quickstart`` transforms (ecg-transform): standard lead order,
linear resampling to 500 Hz on ecg-transform's grid, constant leads → 0, per-lead z-score over the
whole record (+1e-8), non-overlapping 5-s segments. Pooling: per segment, the sum over tokens
divided by the per-feature count of non-zero entries (ECG-FM ``scripts/embs.py``; the mean when
nothing is exactly zero); the record embedding is the mean over its segments.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import sha256_path
from ..data.preprocess import select_leads, windows
from ..errors import SpecError
from ._build import build_seeded, merge_config, require, state_entry
from .checkpoints import load_torch, match_state_dict
from .protocol import TorchEncoder
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch

#: Wav2Vec2CMSCConfig fields with no effect on the eval-mode encoder (dropout, masking, the
#: quantizer / contrastive heads we drop, data options handled by our preprocessing)
_IGNORED = (
    "_name", "all_gather", "normalize", "filter", "data", "args", "saliency", "dropout", "attention_dropout",
    "activation_dropout", "encoder_layerdrop", "dropout_input", "dropout_features", "apply_mask", "mask_length",
    "mask_prob", "mask_selection", "mask_other", "no_mask_overlap", "mask_min_space", "mask_channel_length",
    "mask_channel_prob", "mask_channel_selection", "mask_channel_other", "no_mask_channel_overlap",
    "mask_channel_min_space", "feature_grad_mult", "logit_temp", "quantize_targets", "quantize_input",
    "same_quantizer", "target_glu", "latent_vars", "latent_groups", "latent_dim", "final_dim", "num_negatives",
    "negatives_from_everywhere", "cross_sample_negatives", "codebook_negatives", "latent_temp",
)
_PRETRAINING_ONLY = ("mask_emb", "quantizer.*", "project_q.*", "final_proj.*")
_FINETUNED_PREFIX = "encoder."
#: legacy ``nn.utils.weight_norm`` names → the parametrization names our module uses
_LEGACY_WEIGHT_NORM = {
    r"^conv_pos\.pos_conv\.0\.weight_g$": "conv_pos.pos_conv.0.parametrizations.weight.original0",
    r"^conv_pos\.pos_conv\.0\.weight_v$": "conv_pos.pos_conv.0.parametrizations.weight.original1",
}


def parse_conv_layers(text: str) -> list[tuple[int, int, int]]:
    """``"[(256, 2, 2)] * 4"`` → list of (dim, kernel, stride), without ``eval``.

    fairseq ``eval``s this string; we accept only what such specs contain: list/tuple literals of
    integers combined with ``+`` and ``*``.
    """

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise SpecError(f"conv_feature_layers: unsupported expression {ast.dump(node)[:80]} in {text!r}")

    try:
        layers = value(ast.parse(text, mode="eval").body)
    except SyntaxError as exc:
        raise SpecError(f"conv_feature_layers is not a layer list: {text!r}") from exc
    if not isinstance(layers, list) or not all(isinstance(t, tuple) and len(t) == 3 for t in layers):
        raise SpecError(f"conv_feature_layers must be a list of (dim, kernel, stride) tuples, got {text!r}")
    return layers


def _wav2vec2_classes() -> dict[str, type]:
    import math

    import torch.nn.functional as F
    from torch import nn

    class FeatureExtractor(nn.Module):
        """``ConvFeatureExtraction`` (mode "default"): conv → [GroupNorm(dim, dim) on layer 0] → GELU."""

        def __init__(self, layers: Sequence[tuple[int, int, int]], in_d: int, conv_bias: bool):
            super().__init__()
            self.conv_layers = nn.ModuleList()
            for i, (dim, k, stride) in enumerate(layers):
                conv = nn.Conv1d(in_d, dim, k, stride=stride, bias=conv_bias)
                nn.init.kaiming_normal_(conv.weight)
                # index 1 is the official (eval no-op) dropout; kept so the GroupNorm stays at index 2
                block = [conv, nn.Identity()] + ([nn.GroupNorm(dim, dim)] if i == 0 else []) + [nn.GELU()]
                self.conv_layers.append(nn.Sequential(*block))
                in_d = dim

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.conv_layers:
                x = block(x)
            return x

    class SamePad(nn.Module):
        def __init__(self, kernel_size: int):
            super().__init__()
            self.remove = 1 if kernel_size % 2 == 0 else 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, : -self.remove] if self.remove else x

    class ConvPositionalEncoding(nn.Module):
        def __init__(self, dim: int, kernel: int, groups: int):
            super().__init__()
            conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
            nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))
            assert conv.bias is not None  # Conv1d's default bias=True
            nn.init.constant_(conv.bias, 0.0)
            conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
            self.pos_conv = nn.Sequential(conv, SamePad(kernel), nn.GELU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) → (B, T, C)
            return self.pos_conv(x.transpose(1, 2)).transpose(1, 2)

    class SelfAttention(nn.Module):
        def __init__(self, dim: int, heads: int):
            super().__init__()
            self.heads = heads
            self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, t, c = x.shape

            def split(y: torch.Tensor) -> torch.Tensor:
                return y.view(b, t, self.heads, c // self.heads).transpose(1, 2)

            out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
            return self.out_proj(out.transpose(1, 2).reshape(b, t, c))

    class PostLNLayer(nn.Module):
        def __init__(self, dim: int, ffn_dim: int, heads: int):
            super().__init__()
            self.self_attn = SelfAttention(dim, heads)
            self.self_attn_layer_norm = nn.LayerNorm(dim)
            self.fc1 = nn.Linear(dim, ffn_dim)
            self.fc2 = nn.Linear(ffn_dim, dim)
            self.final_layer_norm = nn.LayerNorm(dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.self_attn_layer_norm(x + self.self_attn(x))
            return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))

    class TransformerEncoder(nn.Module):
        def __init__(self, dim: int, ffn_dim: int, heads: int, n_layers: int):
            super().__init__()
            self.layers = nn.ModuleList(PostLNLayer(dim, ffn_dim, heads) for _ in range(n_layers))
            self.layer_norm = nn.LayerNorm(dim)
            for module in self.modules():  # fairseq init_bert_params
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, mean=0.0, std=0.02)
                    nn.init.zeros_(module.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.layer_norm(x)  # post-LN mode: the encoder LayerNorm comes BEFORE the layers
            for layer in self.layers:
                x = layer(x)
            return x

    class Wav2Vec2Encoder(nn.Module):
        """Eval-mode encoder; ``forward`` (B, leads, samples) → last transformer output (B, tokens, D)."""

        def __init__(self, cfg: Mapping[str, Any]):
            super().__init__()
            layers = parse_conv_layers(cfg["conv_feature_layers"])
            embed = layers[-1][0]
            dim = cfg["encoder_embed_dim"]
            self.feature_extractor = FeatureExtractor(layers, cfg["in_d"], cfg["conv_bias"])
            self.layer_norm = nn.LayerNorm(embed)
            self.post_extract_proj = nn.Linear(embed, dim) if embed != dim else None
            self.conv_pos = ConvPositionalEncoding(dim, cfg["conv_pos"], cfg["conv_pos_groups"])
            self.encoder = TransformerEncoder(dim, cfg["encoder_ffn_embed_dim"], cfg["encoder_attention_heads"],
                                              cfg["encoder_layers"])
            self.embed_dim = dim

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.layer_norm(self.feature_extractor(x).transpose(1, 2))
            if self.post_extract_proj is not None:
                features = self.post_extract_proj(features)
            return self.encoder(features + self.conv_pos(features))

    return {"Wav2Vec2Encoder": Wav2Vec2Encoder}


def build_module(config: Mapping[str, Any]) -> Any:
    require(config["extractor_mode"] == "default", "ecg_fm",
            f"only extractor_mode='default' (the released encoder) is re-implemented, got {config['extractor_mode']!r}")
    require(not config["layer_norm_first"], "ecg_fm",
            "only the post-LN encoder (layer_norm_first=False, the released one) is re-implemented")
    return _wav2vec2_classes()["Wav2Vec2Encoder"](config)


def linear_resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """ecg-transform ``LinearResample``: ``int(n · fs_out / fs_in)`` samples, the input placed on
    ``linspace(0, n_out - 1, n)`` (first and last samples kept), linearly interpolated.

    Not ``preprocess.resample(..., "linear")``: that one samples at ``k / fs`` and so lands on a
    slightly different grid."""
    n = x.shape[-1]
    n_out = int(n * (fs_out / fs_in))
    grid = np.linspace(0, n_out - 1, n)
    return np.stack([np.interp(np.arange(n_out), grid, lead) for lead in x])


class EcgFmEncoder(TorchEncoder):
    """ECG-FM input transforms; embedding per 5-s segment = non-zero-count mean over tokens."""

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        """ReorderLeads → LinearResample(500) → HandleConstantLeads('zero') → Standardize → 5-s segments.

        NaN → 0 first (``select_leads``; the official transforms have no NaN step and a NaN would
        poison its lead's z-score). A record shorter than 5 s is zero-padded to one segment (the
        official segmentation would drop it)."""
        spec = self.input_spec
        y, _ = select_leads(np.asarray(x), tuple(leads), spec.leads, spec.missing_leads)
        y = y.astype(np.float64)
        if fs != spec.fs:
            y = linear_resample(y, fs, spec.fs)
        y = np.where(y.std(axis=1, keepdims=True) == 0, 0.0, y)  # HandleConstantLeads('zero')
        y = (y - y.mean(axis=1, keepdims=True)) / (y.std(axis=1, keepdims=True) + 1e-8)  # Standardize
        return windows(y.astype(np.float32), spec.window, "all")

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return pool_tokens(self.module(x))


def pool_tokens(tokens: Any) -> Any:
    """(B, T, D) → (B, D): ECG-FM ``scripts/embs.py`` pooling, the sum over tokens divided by the
    per-feature count of non-zero entries (a feature that is zero at every token gives 0, not 0/0)."""
    return tokens.sum(dim=1) / (tokens != 0).sum(dim=1).clamp(min=1)


def _architecture_from_cfg(obj: Any, released: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture arguments of a pretraining checkpoint's ``cfg["model"]`` (what the official
    ``from_pretrained`` rebuilds from). Fine-tuning configs are not read: their architecture fields
    are defaults that the official loader replaces by the pretraining checkpoint's."""
    cfg = obj.get("cfg") if isinstance(obj, Mapping) else None
    model_cfg = cfg.get("model") if isinstance(cfg, Mapping) else None
    if not isinstance(model_cfg, Mapping) or not str(model_cfg.get("_name", "")).startswith("wav2vec2"):
        return {}
    return {k: v for k, v in model_cfg.items() if k in released}


def load(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
         device: str = "cpu") -> EcgFmEncoder:
    """ECG-FM encoder; ``checkpoint=None`` gives the seeded random init (official init scheme)."""
    obj = state = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        obj = load_torch(checkpoint)
        state = state_entry(obj, "model", checkpoint)
    saved = merge_config(spec.id, spec.config, _architecture_from_cfg(obj, spec.config))
    cfg = merge_config(spec.id, saved, config, ignored=_IGNORED)
    module = build_seeded(lambda: build_module(cfg))
    digest = None
    if state is not None and checkpoint is not None:
        finetuned = any(k.startswith(_FINETUNED_PREFIX + "feature_extractor.") for k in state)
        match_state_dict(
            module, state, path=checkpoint,
            strip_prefix=_FINETUNED_PREFIX if finetuned else "",
            drop=(*_PRETRAINING_ONLY, "proj.*") if finetuned else _PRETRAINING_ONLY,
            rename=_LEGACY_WEIGHT_NORM,
        )
        digest = sha256_path(checkpoint)
    return EcgFmEncoder(spec, module, embed_dim=module.embed_dim, checkpoint_sha256=digest, device=device)

