"""MERL ResNet18-1D against fixtures made with the official code.

The fixture parameterises the channel widths (8/16/32/64; not an official argument, see its
manifest), which our ``widths`` argument mirrors. Parity observed on CPU (torch 2.13, float32):
model input, embeddings and layer4 maps bit-identical (max abs error 0.0).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgfm_suite.data.records import STD_LEADS
from ecgfm_suite.errors import CheckpointError, SpecError
from ecgfm_suite.models import merl
from ecgfm_suite.models._build import count_parameters
from ecgfm_suite.models.catalog import MODELS
from tests.models.parity import (
    broken_state_dicts,
    compare_trunk_states,
    fixture_dir,
    read_manifest,
    run_parity,
    seed_init_mismatches,
)

MODEL = "merl"


def _small(parity_dir):
    """The fixture's small config, its width list under our argument name."""
    small = dict(read_manifest(MODEL, parity_dir)["small_config"])
    return small | {"widths": small.pop("widths_NOT_an_official_argument")}


def _checkpoint(parity_dir):
    return fixture_dir(MODEL, parity_dir) / read_manifest(MODEL, parity_dir)["checkpoint"]


def _embed(path, parity_dir):
    encoder = merl.load(MODELS.get(MODEL), path, config=_small(parity_dir))
    return encoder.encode(np.load(fixture_dir(MODEL, parity_dir) / "model_input.npy"))


def test_parity_with_official_code(parity_dir, record_property):
    record_property("parity", run_parity(MODEL, parity_dir, config=_small(parity_dir)))


def test_hidden_states_match_layer4(parity_dir):
    folder = fixture_dir(MODEL, parity_dir)
    encoder = merl.load(MODELS.get(MODEL), _checkpoint(parity_dir), config=_small(parity_dir))
    compare_trunk_states(encoder, folder, "layer4 map")


def test_released_parameter_count(parity_dir):
    spec = MODELS.get(MODEL)
    counted = count_parameters(lambda: merl.build_module(spec.config))
    assert counted == spec.released_params == read_manifest(MODEL, parity_dir)["released_param_count"]


@pytest.mark.parametrize("layout", ["ckpt", "ddp"])
def test_whole_model_checkpoint_layouts_load_the_same_encoder(layout, parity_dir, tmp_path):
    """``*_ckpt.pth`` = ECGCLIP state dict (encoder under ``ecg_encoder.``, text model beside it);
    periodic ``save_checkpoints`` = {"model_state_dict"} of the DDP-wrapped model."""
    encoder_state = merl.load_torch(_checkpoint(parity_dir))
    prefix = "ecg_encoder." if layout == "ckpt" else "module.ecg_encoder."
    whole = {prefix + k: v for k, v in encoder_state.items()}
    text_key = "lm_model.embeddings.word_embeddings.weight" if layout == "ckpt" else "module.proj_t.0.weight"
    whole[text_key] = torch.zeros(4, 3)
    path = tmp_path / "whole.pth"
    torch.save(whole if layout == "ckpt" else {"epoch": 1, "model_state_dict": whole, "optimizer_state_dict": {}},
               path)
    np.testing.assert_array_equal(_embed(path, parity_dir), _embed(_checkpoint(parity_dir), parity_dir))


@pytest.mark.parametrize("fault", ["missing", "shape", "unexpected"])
def test_broken_checkpoint_is_refused_naming_the_key(fault, parity_dir, tmp_path):
    state = merl.load_torch(_checkpoint(parity_dir))
    broken, named = broken_state_dicts(state, "layer3.0.shortcut.1.running_var")[fault]
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match=named):
        merl.load(MODELS.get(MODEL), path, config=_small(parity_dir))


def test_random_init_is_deterministic_and_the_official_seed0_init(parity_dir):
    spec, small = MODELS.get(MODEL), _small(parity_dir)
    first, second = merl.load(spec, None, config=small), merl.load(spec, None, config=small)
    assert first.checkpoint_sha256 is None and first.embed_dim == small["widths"][-1]
    x = np.load(fixture_dir(MODEL, parity_dir) / "model_input.npy")[:1]
    np.testing.assert_array_equal(first.encode(x), second.encode(x))
    compared, differ = seed_init_mismatches(first.module.state_dict(), MODEL, parity_dir,
                                            merl.load_torch(_checkpoint(parity_dir)))
    assert compared >= 20 and differ == []


def test_unsupported_block_is_refused():
    with pytest.raises(SpecError, match="Bottleneck"):
        merl.load(MODELS.get(MODEL), None, config={"block": "Bottleneck"})


def test_prepare_is_mimic_order_and_one_global_minmax(parity_dir):
    """Independent of the fixture: the aVL/aVF swap and a single [0, 1] scaling over all leads."""
    raw = np.load(fixture_dir(MODEL, parity_dir) / "raw_input.npy")[1].astype(np.float64)
    encoder = merl.load(MODELS.get(MODEL), None, config=_small(parity_dir))
    prepared = encoder.prepare(raw.astype(np.float32), 500, STD_LEADS)[0]
    swapped = raw[[0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]]
    expected = (swapped - swapped.min()) / (swapped.max() - swapped.min() + 1e-8)
    np.testing.assert_allclose(prepared, expected, rtol=0, atol=1e-7)


def test_short_record_is_zero_padded_before_the_minmax():
    """As the official ICBEB branch: pad to 5000 with zeros, then scale (the zeros take part in min/max)."""
    encoder = merl.load(MODELS.get(MODEL), None, config={"widths": (8, 16, 32, 64)})
    short = np.tile(np.linspace(1.0, 3.0, 2500, dtype=np.float32), (12, 1))
    prepared = encoder.prepare(short, 500, STD_LEADS)
    assert prepared.shape == (1, 12, 5000)
    np.testing.assert_array_equal(prepared[0, :, 2500:], 0.0)
    np.testing.assert_allclose(prepared[0, :, :2500], short / 3.0, rtol=1e-6)
