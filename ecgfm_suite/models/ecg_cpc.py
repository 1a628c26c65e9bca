"""ECG-CPC (AI4HealthUOL/ecg-fm-benchmarking, ``clinical_ts``): conv encoder + causal S4 predictor, in plain PyTorch.

Re-implements the downstream part of the pretrained ``TimeSeriesEncoder`` key-for-key:
``encoder.layers.I.{0: Conv1d (no bias, padding (k−1)//2), 1: BatchNorm1d}`` + ReLU (``RNNEncoder``,
a conv stack despite its name) and ``predictor.predictor.{s4_layers.I, norms.I}`` (``S4Predictor`` →
``S4Model`` of causal S4 layers with post-LayerNorm residuals; see :mod:`._s4`). The embedding is
the predictor output ``seq`` (B, tokens, model_dim) averaged over tokens (``CPCWrapper``).

The checkpoint is a PyTorch-Lightning file: weights in ``state_dict`` under ``ts_encoder.``; the CPC
head ``ts_encoder.head_ssl.*`` is dropped (the official ``pretrained_keys_filter`` keeps only
``ts_encoder.encoder.`` and ``ts_encoder.predictor.``). Its ``hyper_parameters`` pickle OmegaConf
containers and ``clinical_ts`` config dataclasses: they are read as inert stubs through a tight
allow-list (:data:`STUB_GLOBALS`), never by importing those packages. The architecture comes from
the released config, updated by the config YAML the authors ship beside the checkpoint
(``config_<stem>_ckpt.yaml``, read with ``yaml.safe_load``) and by ``config`` overrides.

S4 FFT nodes ``omega``/``z`` are length-dependent caches stored in the checkpoint: they are
**loaded** (strict matching covers them, and the official forward uses exactly these values) and
then **verified** against nodes regenerated for the configured kernel length
``L = input_size · fs / Π strides`` (1200), so a checkpoint whose cache disagrees with its
architecture is refused instead of silently producing a different kernel.

Preprocessing is the benchmark's downstream path: standard 12 leads in mV, no filter, no
normalisation (no ±3 mV clipping either: that was applied to the pretraining data only),
non-overlapping 2.5-s windows cut at the record's own rate and each resampled to 240 Hz with
``resampy.resample`` (the official ``Resample`` transform) → (12, 600). A trailing part shorter
than a window is dropped as officially; a record shorter than one window, which the official
dataset skips, is zero-padded to one window so that it still gets an embedding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._io import sha256_path
from ..data.preprocess import select_leads, windows
from ..errors import CheckpointError, SpecError
from ._build import build_seeded, merge_config, require, state_entry
from .checkpoints import load_torch, match_state_dict
from .protocol import TorchEncoder
from .spec import ModelSpec

if TYPE_CHECKING:
    import torch

#: pickled globals of the Lightning checkpoint's hyper-parameters, read as inert stubs
STUB_GLOBALS = (
    "clinical_ts.*Config",  # the package's config dataclasses (TimeSeriesEncoderConfig, S4PredictorConfig, ...)
    "clinical_ts.task.ecg.TaskConfigECG",
    "clinical_ts.template_modules.BaseConfigData",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.base.UnionNode",
    "omegaconf.nodes.*Node",  # AnyNode, StringNode, IntegerNode, FloatNode, BooleanNode
    "typing.Any",
    "typing.Union",
    "typing.List",
    "_operator.getitem",  # typing.List[int] is pickled as getitem(List, int)
)

#: architecture keys (hydra config paths) the re-implementation reads
_ARCH_PREFIXES = ("ts.enc.", "ts.pred.", "base.")
#: hydra config parts without effect on the eval-mode encoder + predictor
_IGNORED_PREFIXES = ("ts.head_ssl.", "ts.loss.")
_IGNORED = ("hydra_config", "overrides", "ts.pred.dropout", "ts.pred.tie_dropout", "class_")
_TARGETS = {"ts.enc._target_": "clinical_ts.ts.encoder.RNNEncoder", "ts.pred._target_": "clinical_ts.ts.s4.S4Predictor"}



def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings → dotted hydra paths: ``{"ts": {"enc": {"kss": [...]}}}`` → ``{"ts.enc.kss": [...]}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_beside(checkpoint: Path) -> Path:
    """The hparams YAML the authors ship with a checkpoint: ``last_X.ckpt`` → ``config_last_X_ckpt.yaml``."""
    return checkpoint.with_name(f"config_{checkpoint.stem}_ckpt.yaml")


def yaml_architecture(path: Path, known: Mapping[str, Any]) -> dict[str, Any]:
    """Architecture keys of a shipped hparams YAML (``yaml.safe_load``); refuses another architecture."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"unreadable config YAML ({exc})", path) from exc
    if not isinstance(data, Mapping):
        raise SpecError("config YAML is not a mapping", path)
    flat = flatten(data)
    for key, target in _TARGETS.items():
        if flat.get(key, target) != target:
            raise SpecError(f"{key} is {flat[key]!r}; ECG-CPC is {target}", path)
    return {k: v for k, v in flat.items() if k in known}


def architecture(spec: ModelSpec, checkpoint: Path | None, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Released config ← the YAML beside the checkpoint (if any) ← ``overrides`` (hydra paths, nested or dotted)."""
    released = dict(spec.config)
    if checkpoint is not None and config_beside(checkpoint).is_file():
        released.update(yaml_architecture(config_beside(checkpoint), spec.config))
    flat = flatten(overrides or {})
    ignored = [*_IGNORED, *(k for k in flat if k.startswith(_IGNORED_PREFIXES))]
    cfg = merge_config(spec.id, released, flat, ignored=ignored)
    enc = {k: list(cfg[f"ts.enc.{k}"]) for k in ("features", "kss", "strides", "dilations")}
    require(len({len(v) for v in enc.values()}) == 1, spec.id, f"encoder lists differ in length: {enc}")
    require(all(d == 1 for d in enc["dilations"]), spec.id, "dilated encoder convolutions are not implemented")
    require(bool(cfg["ts.enc.normalization"]) and not cfg["ts.enc.layer_norm"], spec.id,
            "only the BatchNorm conv encoder (normalization=true, layer_norm=false) is implemented")
    require(bool(cfg["ts.pred.causal"]), spec.id, "only the causal (unidirectional) S4 predictor is implemented")
    require(cfg["ts.pred.backbone"] == "s42" and not cfg["ts.pred.batchnorm"], spec.id,
            "only the s42 backbone with LayerNorm is implemented")
    require(enc["features"][-1] == cfg["ts.pred.model_dim"], spec.id,
            "encoder features[-1] must equal model_dim (S4Predictor then has no input linear)")
    return cfg


def build_module(cfg: Mapping[str, Any]) -> Any:
    """``TimeSeriesEncoder`` minus ``head_ssl``: modules ``encoder`` and ``predictor``; forward → seq (B, T, D)."""
    from torch import nn

    from ._s4 import s4_classes

    features, kss, strides = (list(cfg[f"ts.enc.{k}"]) for k in ("features", "kss", "strides"))
    l_max = int(cfg["base.input_size"] * cfg["base.fs"] / math.prod(strides))
    s4_model = s4_classes()["S4Model"]

    class ConvEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = [int(cfg["base.input_channels"]), *features]
            self.layers = nn.ModuleList(
                nn.Sequential(nn.Conv1d(c_in, c_out, k, stride=s, padding=(k - 1) // 2, bias=False),
                              nn.BatchNorm1d(c_out), nn.ReLU())
                for c_in, c_out, k, s in zip(chans[:-1], chans[1:], kss, strides, strict=True)
            )

        def forward(self, x: Any) -> Any:
            for layer in self.layers:
                x = layer(x)
            return x.transpose(1, 2)  # (B, D, T) → (B, T, D)

    class Predictor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.predictor = s4_model(int(cfg["ts.pred.model_dim"]), int(cfg["ts.pred.state_dim"]),
                                      int(cfg["ts.pred.layers"]), l_max, bool(cfg["ts.pred.prenorm"]))

    class CPCEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = ConvEncoder()
            self.predictor = Predictor()
            self.embed_dim = int(cfg["ts.pred.model_dim"])

        def sequence(self, x: Any) -> Any:
            """(B, leads, samples) → predictor output ``seq`` (B, tokens, D)."""
            return self.predictor.predictor(self.encoder(x))

        def forward(self, x: Any) -> Any:
            return self.sequence(x).mean(dim=1)

    return CPCEncoder()


def official_init(module: Any) -> Any:
    """torch defaults for conv/BN/LayerNorm; the official S4 random init for every S4 layer."""
    for layer in module.predictor.predictor.s4_layers:
        layer.reset_parameters()
    return module


def check_fft_nodes(module: Any, path: Path) -> None:
    """Refuse a checkpoint whose cached ``omega``/``z`` are not the FFT nodes of its kernel length."""
    import torch

    from ._s4 import fft_nodes

    for i, layer in enumerate(module.predictor.predictor.s4_layers):
        kernel = layer.kernel.kernel
        omega, z = fft_nodes(kernel.length)
        for name, expected in (("omega", omega), ("z", z)):
            stored = torch.view_as_complex(getattr(kernel, name).contiguous())
            if not torch.allclose(stored, expected, rtol=1e-5, atol=1e-5):
                raise CheckpointError(
                    f"s4_layers.{i}.kernel.kernel.{name} is not the FFT-node cache of kernel length {kernel.length}",
                    path,
                )


def native_window(fs: float, target_fs: float, length: int) -> int:
    """Samples at ``fs`` whose resampling yields at least ``length`` at ``target_fs``.

    = the official ``int(2.5 · fs)`` whenever 2.5·fs is whole (500 Hz → 1250); otherwise one more
    sample, so that every window gives the full 600 samples (official: 599 at e.g. 257 Hz).
    """
    ratio = Fraction(target_fs).limit_denominator(10**6) / Fraction(fs).limit_denominator(10**6)
    n = math.ceil(length / ratio)
    while int(n * float(target_fs) / float(fs)) < length:  # resampy's float length rule
        n += 1
    return n


class ECGCPCEncoder(TorchEncoder):
    """ECG-CPC downstream input (2.5-s windows, resampy to 240 Hz, mV); mean over predictor tokens."""

    def prepare(self, x: np.ndarray, fs: float, leads: Sequence[str]) -> np.ndarray:
        spec = self.input_spec
        y, _ = select_leads(x, tuple(leads), spec.leads, spec.missing_leads)  # float32, as the official memmap
        if fs == spec.fs:
            return windows(y, spec.window, "all")
        import resampy

        chunks = windows(y, native_window(fs, spec.fs, spec.window), "all")  # (n, leads, native samples)
        return np.ascontiguousarray(resampy.resample(chunks, fs, spec.fs, axis=-1)[..., : spec.window],
                                    dtype=np.float32)

    def forward_embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def load(spec: ModelSpec, checkpoint: Path | None, *, config: Mapping[str, Any] | None = None,
         device: str = "cpu") -> ECGCPCEncoder:
    """ECG-CPC encoder + predictor from a Lightning checkpoint; ``checkpoint=None`` gives the seeded random init."""
    checkpoint = None if checkpoint is None else Path(checkpoint)
    cfg = architecture(spec, checkpoint, config)
    module = build_seeded(lambda: official_init(build_module(cfg)))
    digest = None
    if checkpoint is not None:
        state = state_entry(load_torch(checkpoint, stub_globals=STUB_GLOBALS), "state_dict", checkpoint)
        match_state_dict(module, state, path=checkpoint, strip_prefix="ts_encoder.", drop=("head_ssl.*",))
        check_fft_nodes(module, checkpoint)
        digest = sha256_path(checkpoint)
    return ECGCPCEncoder(spec, module, embed_dim=module.embed_dim, checkpoint_sha256=digest, device=device)
