"""HuBERT-ECG (Edoar-do/HuBERT-ECG): a ``transformers`` HubertModel on 12 concatenated leads.

The released ``HuBERTECG`` is a ``HubertModel`` subclass that only adds pretraining heads
(``final_proj``, ``label_embedding``), so the encoder is stock ``transformers.HubertModel``
built from ``HubertConfig`` with the official arguments (``RELEASED_COMMON`` + the size
arguments in the catalog). Checkpoint layouts read:

- a Hugging Face directory: ``config.json`` (``model_type`` ``hubert_ecg``; its architecture
  arguments are used) + ``model.safetensors`` (or ``pytorch_model.bin``);
- a bare ``.safetensors`` state dict (architecture from the spec config + ``config``);
- the training ``.pt`` dict ``{model_config (pickled HuBERTECGConfig), model_state_dict, ...}``:
  the config class is read as an inert stub (no HuBERT-ECG code is imported or run).

Pretraining heads are dropped; ``masked_spec_embed`` (pretraining-time masking only) is loaded
when present. Weight-norm keys of the positional convolution are accepted in both styles
(legacy ``weight_g``/``weight_v`` and ``parametrizations.weight.original0/1``).

Preprocessing follows the official ``utils.ecg_preprocessing`` + ``dataset.ECGDataset`` (encode
mode) in float64: FIR band-pass 0.05–47 Hz at the native rate (``firwin``, Hamming, numtaps
``int(0.3 fs)`` made odd, applied with ``filtfilt`` as biosppy's ``filter_signal`` does) → FFT
resample to 500 Hz (``int(n · 500 / fs)`` samples, also at 500 Hz) → per-lead min-max to
[-1, 1] (+1e-8) → first 5 s → NaN → mean of the non-NaN values → flatten lead-major →
``scipy.signal.decimate(·, 5)`` over the concatenated 30,000 samples → 6,000. Departures, only
where the official code cannot run: the band's upper edge is capped at 0.45 fs for records
sampled below 105 Hz; records shorter than 5 s are zero-padded after scaling; records shorter
than the filter's padding use a shorter ``filtfilt`` pad. Embedding: ``last_hidden_state``
averaged over time (the official classification pooling).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import signal as sps

from .._io import sha256_path
from ..data.preprocess import InputSpec, select_leads
from ..errors import CheckpointError, SpecError
from ._build import build_seeded, merge_config, state_entry
from .checkpoints import load_safetensors, load_torch, match_state_dict
from .protocol import TorchEncoder
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch

#: HuBERTECGConfig arguments shared by the small/base/large releases (fm-specs.md §4)
RELEASED_COMMON: dict[str, Any] = {
    "conv_dim": (512,) * 5, "conv_kernel": (10, 3, 3, 2, 2), "conv_stride": (4, 2, 2, 2, 2), "conv_bias": False,
    "feat_extract_norm": "group", "feat_extract_activation": "gelu", "do_stable_layer_norm": False,
    "feat_proj_layer_norm": True, "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
    "layer_norm_eps": 1e-5, "hidden_act": "gelu",
}
#: official arguments that do not change the eval-mode encoder (pretraining heads, dropout, masking)
IGNORED = ("classifier_proj_size", "ensemble_length", "vocab_sizes", "vocab_size", "mask_time_prob",
           "mask_time_length", "mask_time_min_masks", "mask_feature_prob", "mask_feature_length",
           "mask_feature_min_masks", "layerdrop", "hidden_dropout", "activation_dropout", "attention_dropout",
           "feat_proj_dropout", "final_dropout", "apply_spec_augment")
#: keys of ``HubertConfig`` that shape the encoder (read from a checkpoint's own config)
ARCH_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", *RELEASED_COMMON)
DROP = ("final_proj.*", "label_embedding.*")
LEGACY_WEIGHT_NORM = {r"\.weight_g$": ".parametrizations.weight.original0",
                      r"\.weight_v$": ".parametrizations.weight.original1"}
#: pickled config classes read as inert stubs from the official ``.pt`` checkpoints
CONFIG_STUBS = ("*.HuBERTECGConfig", "HuBERTECGConfig")

SAMPLES_5S_AT_500HZ = 2500
DOWNSAMPLING = 5


def hubert_config(cfg: Mapping[str, Any]) -> Any:
    """``HubertConfig`` with the architecture arguments; ``mask_time_prob`` > 0 keeps ``masked_spec_embed``."""
    from transformers import HubertConfig

    arguments: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()}
    return HubertConfig(**arguments, mask_time_prob=0.33)


def build_module(cfg: Mapping[str, Any]) -> Any:
    from transformers import HubertModel

    return HubertModel(hubert_config(cfg))


def official_input(x: np.ndarray, fs: float, leads: Sequence[str], spec: InputSpec) -> np.ndarray:
    """One record (leads, samples) in mV → the official model input (6000,) float32 (module docstring)."""
    y, _ = select_leads(np.asarray(x), tuple(leads), spec.leads, spec.missing_leads)
    y = y.astype(np.float64)
    numtaps = int(0.3 * fs)
    numtaps += 1 - numtaps % 2  # biosppy makes the FIR order odd
    low, high = spec.bandpass or (0.05, 47.0)
    b = sps.firwin(numtaps, [low, min(high, 0.45 * fs)], pass_zero=False, fs=fs)
    y = sps.filtfilt(b, [1.0], y, axis=-1, padlen=min(3 * numtaps, y.shape[-1] - 1))
    y = sps.resample(y, int(y.shape[-1] * (500 / fs)), axis=-1)
    lo, hi = y.min(axis=1, keepdims=True), y.max(axis=1, keepdims=True)
    y = 2 * (y - lo) / (hi - lo + 1e-8) - 1
    y = y[:, :SAMPLES_5S_AT_500HZ]
    if y.shape[1] < SAMPLES_5S_AT_500HZ:
        y = np.pad(y, ((0, 0), (0, SAMPLES_5S_AT_500HZ - y.shape[1])))
    missing = np.isnan(y)
    if missing.any():
        y = np.where(missing, y[~missing].mean() if (~missing).any() else 0.0, y)
    return sps.decimate(y.reshape(-1), DOWNSAMPLING).astype(np.float32)


class HuBERTECGEncoder(TorchEncoder):
    """Official HuBERT-ECG input; embedding = mean of ``last_hidden_state`` over the 93 frames."""

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        return official_input(x, fs, leads, self.input_spec)[None]

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(input_values=x).last_hidden_state.mean(dim=1)


def _arch_from(config: Mapping[str, Any], path: Path) -> dict[str, Any]:
    model_type = config.get("model_type", "hubert_ecg")
    if model_type not in ("hubert_ecg", "hubert"):
        raise CheckpointError(f"config model_type {model_type!r} is not HuBERT-ECG", path)
    return {k: config[k] for k in ARCH_KEYS if k in config}


def read_checkpoint(path: Path) -> tuple[Mapping[str, Any], dict[str, Any] | None]:
    """(state dict, the checkpoint's own architecture arguments or None) for the three official layouts."""
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise CheckpointError("Hugging Face folder without config.json", path)
        try:
            arch: dict[str, Any] | None = _arch_from(json.loads(cfg_file.read_text()), cfg_file)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"config.json is not valid JSON: {exc}", cfg_file) from exc
        if (path / "model.safetensors").is_file():
            return load_safetensors(path / "model.safetensors"), arch
        if (path / "pytorch_model.bin").is_file():
            return state_entry(load_torch(path / "pytorch_model.bin"), None, path), arch
        raise CheckpointError("Hugging Face folder without model.safetensors or pytorch_model.bin", path)
    if path.suffix == ".safetensors":
        return load_safetensors(path), None
    obj = load_torch(path, stub_globals=CONFIG_STUBS)
    if not (isinstance(obj, Mapping) and "model_state_dict" in obj):
        return state_entry(obj, None, path), None
    stored = obj.get("model_config")
    stored = getattr(stored, "state", stored)  # an inert stub keeps the pickled __dict__ as ``state``
    arch = _arch_from(stored, path) if isinstance(stored, Mapping) else None
    return state_entry(obj, "model_state_dict", path), arch


def _same(a: Any, b: Any) -> bool:
    def norm(v: Any) -> Any:
        return list(v) if isinstance(v, (list, tuple)) else v

    return norm(a) == norm(b)


def load(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
         device: str = "cpu") -> HuBERTECGEncoder:
    """HuBERT-ECG encoder; ``checkpoint=None`` gives the seeded random init of the same architecture.

    ``config`` overrides architecture arguments by their official names. A checkpoint that carries
    its own config (HF folder, ``.pt``) is built from it (its width sets ``embed_dim``), and any
    ``config`` value that disagrees with it is refused.
    """
    cfg = merge_config(spec.id, {**RELEASED_COMMON, **spec.config}, config, ignored=IGNORED)
    state, digest = None, None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.exists():
            raise CheckpointError("checkpoint not found", checkpoint)
        state, stored = read_checkpoint(checkpoint)
        if stored:
            clash = sorted(k for k, v in (config or {}).items() if k in stored and not _same(v, stored[k]))
            if clash:
                raise SpecError(f"model {spec.id}: config {clash} disagrees with the checkpoint's own config "
                                f"({ {k: stored[k] for k in clash} })", checkpoint)
            cfg.update(stored)
        digest = sha256_path(checkpoint)
    module = build_seeded(lambda: build_module(cfg))
    if state is not None and checkpoint is not None:
        match_state_dict(module, state, path=checkpoint, drop=DROP, rename=LEGACY_WEIGHT_NORM,
                         ignore_missing=("masked_spec_embed",))
    return HuBERTECGEncoder(spec, module, embed_dim=module.config.hidden_size, checkpoint_sha256=digest, device=device)
