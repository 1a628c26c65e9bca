"""HuBERT-ECG: parity with the official code, the three checkpoint layouts, bad checkpoints, sizes."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.data.records import STD_LEADS
from ecgfm_suite.errors import CheckpointError, SpecError
from ecgfm_suite.models._build import count_parameters
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.models.hubert_ecg import RELEASED_COMMON, build_module, load

from .parity import fixture_dir, read_manifest, run_parity

MODEL = "hubert_ecg_small"
SPEC = MODELS.get(MODEL)


@pytest.fixture(scope="module")
def fixture(parity_dir: Path) -> dict:
    folder = fixture_dir(MODEL, parity_dir)
    manifest = read_manifest(MODEL, parity_dir)
    raw = np.load(folder / "raw_input.npy", allow_pickle=False)
    return {"folder": folder, "manifest": manifest, "raw": raw, "hf_dir": folder / manifest["checkpoint"],
            "small": manifest["small_config"], "official": np.load(folder / "embeddings.npy")}


def _embed(encoder, raw: np.ndarray) -> np.ndarray:
    from ecgfm_suite.embeddings.encode import embed_array

    return embed_array(encoder, raw, 500.0, STD_LEADS, window_policy="official")  # the official 5 s


def test_parity_with_official_code(parity_dir: Path) -> None:
    """Input and embeddings of the official code (transformers 4.38.1) on LUDB 1–4.

    Measured: model input bit-identical (same float64 scipy ops); embeddings max abs 2.4e-7,
    max rel 1.0e-7 (transformers 5 attention kernel; the manifest reports the same 2.4e-7 for
    the official model under transformers 5). Tolerance: rtol 1e-4, atol 1e-5.
    """
    errors = run_parity(MODEL, parity_dir, rtol=1e-4, atol=1e-5)
    assert errors["input"]["max_abs"] <= 1e-6
    assert errors["embeddings"]["max_rel"] <= 1e-4


def test_legacy_weight_norm_keys_in_a_bare_safetensors(fixture: dict, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(fixture["hf_dir"] / "model.safetensors"))
    assert "encoder.pos_conv_embed.conv.parametrizations.weight.original0" in state
    legacy = {k.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): v for k, v in state.items()}
    save_file(legacy, str(tmp_path / "hubert_small.safetensors"))
    encoder = load(SPEC, tmp_path / "hubert_small.safetensors", config=fixture["small"])
    np.testing.assert_allclose(_embed(encoder, fixture["raw"]), fixture["official"], rtol=1e-4, atol=1e-5)


def test_hf_folder_with_pytorch_model_bin(fixture: dict, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "hf_bin"
    folder.mkdir()
    shutil.copy(fixture["hf_dir"] / "config.json", folder / "config.json")
    torch.save(load_file(str(fixture["hf_dir"] / "model.safetensors")), folder / "pytorch_model.bin")
    encoder = load(SPEC, folder, config={"hidden_size": 32})
    np.testing.assert_allclose(_embed(encoder, fixture["raw"]), fixture["official"], rtol=1e-4, atol=1e-5)


def test_training_pt_with_pickled_config_class(fixture: dict, tmp_path: Path, monkeypatch) -> None:
    """The official ``.pt`` pickles ``hubert_ecg.HuBERTECGConfig``; we read it as a stub, importing nothing."""
    import torch
    from safetensors.torch import load_file
    from transformers import HubertConfig

    module = types.ModuleType("hubert_ecg")

    class HuBERTECGConfig(HubertConfig):  # the official class adds these two arguments
        model_type = "hubert_ecg"

        def __init__(self, ensemble_length: int = 1, vocab_sizes: list[int] | None = None, **kwargs):
            super().__init__(**kwargs)
            self.ensemble_length, self.vocab_sizes = ensemble_length, vocab_sizes or [100]

    HuBERTECGConfig.__module__, HuBERTECGConfig.__qualname__ = "hubert_ecg", "HuBERTECGConfig"
    module.HuBERTECGConfig = HuBERTECGConfig
    monkeypatch.setitem(sys.modules, "hubert_ecg", module)
    config = json.loads((fixture["hf_dir"] / "config.json").read_text())
    args = {k: v for k, v in config.items() if k not in ("architectures", "auto_map", "model_type",
                                                          "transformers_version", "torch_dtype")}
    blob = {"global_step": 10, "patience_count": 0, "model_config": HuBERTECGConfig(**args),
            "model_state_dict": load_file(str(fixture["hf_dir"] / "model.safetensors")),
            "optimizer_state_dict": {"state": {}, "param_groups": []}, "best_val_loss": 1.5,
            "lr_scheduler_state_dict": {}, "best_val_accuracy": 0.1, "pretraining_vocab_sizes": [20]}
    torch.save(blob, tmp_path / "hubert_ecg_small.pt")
    monkeypatch.delitem(sys.modules, "hubert_ecg")

    encoder = load(SPEC, tmp_path / "hubert_ecg_small.pt", config={"hidden_size": 32})  # size from the pickle
    assert encoder.embed_dim == 32 and len(encoder.module.encoder.layers) == 2
    np.testing.assert_allclose(_embed(encoder, fixture["raw"]), fixture["official"], rtol=1e-4, atol=1e-5)
    assert "hubert_ecg" not in sys.modules


class _RunsCode:
    """What a malicious checkpoint pickles: a reduce that would call ``os.system`` on load."""

    def __reduce__(self):
        import os

        return os.system, ("true",)


def test_pt_that_would_run_code_is_refused(tmp_path: Path) -> None:
    import torch

    torch.save({"model_config": _RunsCode(), "model_state_dict": {}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"posix\.system|os\.system") as err:
        load(SPEC, tmp_path / "evil.pt")
    assert "evil.pt" in str(err.value)


def test_bad_checkpoints_name_file_and_reason(fixture: dict, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    hf = tmp_path / "hf"
    shutil.copytree(fixture["hf_dir"], hf)
    with pytest.raises(SpecError, match="disagrees with the checkpoint"):
        load(SPEC, hf, config={**fixture["small"], "num_hidden_layers": 3})
    assert load(SPEC, hf).embed_dim == 32  # a checkpoint carrying its own config needs none

    state = load_file(str(hf / "model.safetensors"))
    del state["encoder.layers.1.final_layer_norm.bias"]
    save_file(state, str(hf / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): encoder.layers.1.final_layer_norm.bias") as err:
        load(SPEC, hf, config=fixture["small"])
    assert str(hf) in str(err.value)

    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, "model_type": "wav2vec2"}))
    with pytest.raises(CheckpointError, match="not HuBERT-ECG"):
        load(SPEC, hf, config=fixture["small"])
    (hf / "config.json").unlink()
    with pytest.raises(CheckpointError, match="without config.json"):
        load(SPEC, hf)
    with pytest.raises(CheckpointError, match="not found"):
        load(SPEC, tmp_path / "absent.safetensors")


def test_random_init_is_seeded(fixture: dict) -> None:
    a = load(SPEC, None, config=fixture["small"])
    b = load(SPEC, None, config=fixture["small"])
    assert a.checkpoint_sha256 is None and a.embed_dim == 32
    x = a.prepare(fixture["raw"][0], 500.0, STD_LEADS)
    np.testing.assert_array_equal(a.encode(x), b.encode(x))


@pytest.mark.parametrize(("fs", "seconds"), [(100.0, 10.0), (250.0, 10.0), (257.0, 30.0), (500.0, 3.0)])
def test_preprocessing_at_other_rates_and_lengths(fixture: dict, fs: float, seconds: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, int(fs * seconds))).astype(np.float32)
    x[3] = np.nan  # a NaN lead becomes a constant, as the official NaN fill does
    encoder = load(SPEC, None, config=fixture["small"])
    prepared = encoder.prepare(x, fs, STD_LEADS)
    assert prepared.shape == (1, 6000) and prepared.dtype == np.float32 and np.isfinite(prepared).all()


@pytest.mark.parametrize("model_id", ["hubert_ecg_small", "hubert_ecg_base",
                                      "hubert_ecg_large"])
def test_parameter_count_matches_released_architecture(model_id: str) -> None:
    """fm-specs.md §4: counted on the official HuBERTECG class (encoder incl. masked_spec_embed, no heads)."""
    released = {"hubert_ecg_small": 30_209_664, "hubert_ecg_base": 92_798_848, "hubert_ecg_large": 187_644_736}
    spec = MODELS.get(model_id)
    assert spec.released_params == released[model_id]
    assert count_parameters(lambda: build_module({**RELEASED_COMMON, **spec.config})) == released[model_id]
