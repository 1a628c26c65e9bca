"""User model files (YAML) and NAME=PATH checkpoint overrides: valid specs load, bad ones name key and file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.errors import SpecError
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.models.user_spec import load_model_file, parse_checkpoint_override
from ecgfm_suite.registry import resolve


def _write(folder: Path, text: str, name: str = "model.yml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_catalog_family_with_relative_checkpoint_loads_the_parity_model(tmp_path: Path, parity_dir: Path) -> None:
    """A HuBERT-ECG checkpoint declared by YAML, path relative to the file, embeds like the official model."""
    import shutil

    fixture = parity_dir / "hubert_ecg_small" / "seed0"
    shutil.copytree(fixture / "hubert-ecg-small-seed0", tmp_path / "ckpt" / "small")
    path = _write(tmp_path, """
id: my_hubert
family: hubert_ecg
checkpoint: ckpt/small
embed_dim: 32
pretrained_on: [ptbxl]
""")
    spec = load_model_file(path)
    assert spec.loader == MODELS.get("hubert_ecg_small").loader  # resolved from the family, not from the file
    assert spec.input_spec == MODELS.get("hubert_ecg_small").input_spec
    assert Path(spec.weights) == (tmp_path / "ckpt" / "small").resolve() and spec.pretrained_on == ("ptbxl",)
    checkpoint = spec.resolve_checkpoint(tmp_path / "unused_weights_dir")
    encoder = resolve(spec.loader)(spec, checkpoint)  # the folder's config.json gives the architecture
    assert encoder.embed_dim == 32
    from ecgfm_suite.data.records import STD_LEADS
    from ecgfm_suite.embeddings.encode import embed_array

    raw = np.load(fixture / "raw_input.npy")
    np.testing.assert_allclose(embed_array(encoder, raw, 500.0, STD_LEADS, window_policy="official"),
                               np.load(fixture / "embeddings.npy"), rtol=1e-4, atol=1e-5)


def test_exported_family_needs_file_and_width(tmp_path: Path) -> None:
    graph = _write(tmp_path, "graph bytes", "encoder.onnx")
    spec = load_model_file(_write(tmp_path, """
id: my_onnx
family: onnx
checkpoint: encoder.onnx
embed_dim: 64
input_spec: {fs: 250, leads: [I, II, V1], window: 2500, bandpass: [0.5, 40], normalisation: zscore_lead}
"""))
    assert spec.loader == "ecgfm_suite.models.exported:load_onnx" and Path(spec.weights) == graph.resolve()
    assert spec.input_spec.leads == ("I", "II", "V1") and spec.input_spec.bandpass == (0.5, 40)
    with pytest.raises(SpecError, match="needs `embed_dim`"):
        load_model_file(_write(tmp_path, "id: a\nfamily: torchscript\ncheckpoint: encoder.onnx\n"))
    with pytest.raises(SpecError, match="needs `checkpoint`"):
        load_model_file(_write(tmp_path, "id: a\nfamily: onnx\nembed_dim: 3\n"))
    with pytest.raises(SpecError, match="required without a family default"):
        load_model_file(_write(tmp_path, "id: a\nfamily: onnx\nembed_dim: 3\ncheckpoint: encoder.onnx\n"
                                         "input_spec: {fs: 250}\n"))


@pytest.mark.parametrize(("text", "message"), [
    ("id: a\nfamily: random_cnn\nloader: os:system\n", r"unknown key\(s\) \['loader'\]"),
    ("id: a\nfamily: random_cnn\ninput_spec: {fs: 100, windw: 3}\n", r"unknown input_spec key\(s\) \['windw'\]"),
    ("id: a\nfamily: my.module:Loader\n", "unknown family 'my.module:Loader'"),
    ("family: random_cnn\n", r"missing required key\(s\) \['id'\]"),
    ("id: Bad-Id\nfamily: random_cnn\n", "must match"),
    ("id: a\nfamily: random_cnn\nembed_dim: -1\n", "embed_dim must be > 0"),
    ("id: a\nfamily: random_cnn\ninput_spec: {normalisation: softmax}\n", "normalisation must be one of"),
    ("id: a\nfamily: hubert_ecg\ncheckpoint: nowhere/ckpt\n", "does not exist"),
    ("id: a\nfamily: merl\ncheckpoint: .\n", "is a directory; the merl family reads one checkpoint file"),
    ("id: a\nfamily: onnx\nembed_dim: 8\ncheckpoint: empty.onnx\n", "is an empty file"),
    ("id: a\nfamily: random_cnn\nconfig: [1, 2]\n", "config must be a mapping"),
    ("- id: a\n", "must be a YAML mapping"),
    ("id: [unclosed\n", "not valid YAML"),
    ("id: a\nfamily: !!python/object/apply:os.system [true]\n", "not valid YAML"),
])
def test_bad_model_files_name_the_key_and_file(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    (tmp_path / "empty.onnx").touch()
    with pytest.raises(SpecError, match=message) as err:
        load_model_file(path)
    assert err.value.path == str(path.resolve())


def test_control_family_defaults_and_seed_config(tmp_path: Path) -> None:
    spec = load_model_file(_write(tmp_path, "id: cnn_seed1\nfamily: random_cnn\nconfig: {seed: 1}\n"))
    assert spec.embed_dim == 256 and spec.weights is None and spec.control
    assert spec.config == {**MODELS.get("random_cnn").config, "seed": 1}  # over the family's released config
    encoder = resolve(spec.loader)(spec, None)
    x = np.zeros((1, 12, 1000), np.float32)
    x[0, :, 500] = 1.0
    assert not np.allclose(encoder.encode(x), resolve(spec.loader)(MODELS.get("random_cnn"), None).encode(x))


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read model file"):
        load_model_file(tmp_path / "absent.yml")


def test_checkpoint_override(tmp_path: Path) -> None:
    ckpt = tmp_path / "w.safetensors"
    assert parse_checkpoint_override(f"hubert_ecg_small={ckpt}") == ("hubert_ecg_small", ckpt)
    assert parse_checkpoint_override(" merl = ~/w.pth ") == ("merl", Path("~/w.pth").expanduser())
    for bad in ("hubert_ecg_small", "=x", "hubert_ecg_small=", ""):
        with pytest.raises(SpecError, match="NAME=PATH"):
            parse_checkpoint_override(bad)
    with pytest.raises(SpecError, match="did you mean hubert_ecg_small"):
        parse_checkpoint_override(f"hubert_ecg_smal={ckpt}")
    with pytest.raises(SpecError, match="control and takes no checkpoint"):
        parse_checkpoint_override(f"random_cnn={ckpt}")


def test_checkpoint_override_for_a_user_model(tmp_path: Path) -> None:
    user = load_model_file(_write(tmp_path, "id: my_cnn\nfamily: random_cnn\n"))
    with pytest.raises(SpecError, match="unknown model 'my_hubert'"):
        parse_checkpoint_override(f"my_hubert={tmp_path}")
    known = {**dict(MODELS.items()), user.id: user,
             "my_hubert": load_model_file(_write(tmp_path, "id: my_hubert\nfamily: hubert_ecg\n", "h.yml"))}
    assert parse_checkpoint_override(f"my_hubert={tmp_path}", known) == ("my_hubert", tmp_path)
    with pytest.raises(SpecError, match="takes no checkpoint"):
        parse_checkpoint_override(f"my_cnn={tmp_path}", known)
