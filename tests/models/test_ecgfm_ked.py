"""ECGFM-KED xresnet1d101 trunk against fixtures made with the official code.

The official dataset code reads rows positionally and assumes MIMIC-IV-ECG storage order; the
fixture fed it LUDB's standard-order rows unchanged. Our pipeline maps leads by name into MIMIC
order, so parity labels the raw rows in MIMIC order (the official assumption) and a separate test
checks the name-based aVL/aVF swap on standard-order input. Parity observed on CPU (torch 2.13,
float32): model input, embeddings and trunk maps bit-identical (max abs error 0.0).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgfm_suite.data.records import STD_LEADS
from ecgfm_suite.errors import CheckpointError, SpecError
from ecgfm_suite.models import ecgfm_ked
from ecgfm_suite.models._build import count_parameters
from ecgfm_suite.models.catalog import MIMIC_LEADS, MODELS
from tests.models.parity import (
    broken_state_dicts,
    compare_trunk_states,
    fixture_dir,
    read_manifest,
    run_parity,
    seed_init_mismatches,
)

MODEL = "ecgfm_ked"


def _small(parity_dir):
    """The fixture's constructor arguments (its ``factory`` entry is a description, not an argument)."""
    return {k: v for k, v in read_manifest(MODEL, parity_dir)["small_config"].items() if k != "factory"}


def _checkpoint(parity_dir):
    return fixture_dir(MODEL, parity_dir) / read_manifest(MODEL, parity_dir)["checkpoint"]


def _official_trunk(parity_dir):
    return ecgfm_ked.load_torch(_checkpoint(parity_dir))["ecg_model"]


def test_parity_with_official_code(parity_dir, record_property):
    record_property("parity", run_parity(MODEL, parity_dir, config=_small(parity_dir), raw_leads=MIMIC_LEADS))


def test_hidden_states_match_trunk_output(parity_dir):
    folder = fixture_dir(MODEL, parity_dir)
    encoder = ecgfm_ked.load(MODELS.get(MODEL), _checkpoint(parity_dir), config=_small(parity_dir))
    compare_trunk_states(encoder, folder, "trunk output")


def test_standard_order_input_is_swapped_to_mimic_order(parity_dir):
    """Pretraining saw aVF in channel 4 and aVL in 5; a standard-order record is mapped by name."""
    folder = fixture_dir(MODEL, parity_dir)
    encoder = ecgfm_ked.load(MODELS.get(MODEL), None, config=_small(parity_dir))
    prepared = encoder.prepare(np.load(folder / "raw_input.npy")[0], 500, STD_LEADS)[0]
    official_rows = np.load(folder / "model_input.npy")[0]  # the official code on unswapped rows
    np.testing.assert_array_equal(prepared, official_rows[[0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]])


def test_released_parameter_count(parity_dir):
    spec = MODELS.get(MODEL)
    counted = count_parameters(lambda: ecgfm_ked.build_module(spec.config))
    assert counted == spec.released_params == read_manifest(MODEL, parity_dir)["released_param_count"]


def test_flat_prefixed_layout_loads_the_same_trunk(parity_dir, tmp_path):
    """The layout the reality-check benchmark expects: one flat dict, encoder under ``ecg_model.``."""
    flat = {f"ecg_model.{k}": v for k, v in _official_trunk(parity_dir).items()}
    flat["model.decoder_norm.weight"] = torch.ones(3)
    path = tmp_path / "flat.pt"
    torch.save(flat, path)
    loaded = ecgfm_ked.load(MODELS.get(MODEL), path, config=_small(parity_dir)).module.state_dict()
    official = _official_trunk(parity_dir)
    assert loaded.keys() <= official.keys()
    for key, value in loaded.items():
        assert torch.equal(value, official[key]), key


def test_alias_that_differs_from_its_twin_is_refused(parity_dir, tmp_path):
    trunk = dict(_official_trunk(parity_dir))
    key = "5.2.convpath.0.1.0.weight"
    trunk[key] = trunk[key] + 1.0
    path = tmp_path / "aliased.pt"
    torch.save({"ecg_model": trunk}, path)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        ecgfm_ked.load(MODELS.get(MODEL), path, config=_small(parity_dir))


@pytest.mark.parametrize("fault", ["missing", "shape", "unexpected"])
def test_broken_checkpoint_is_refused_naming_the_key(fault, parity_dir, tmp_path):
    broken, named = broken_state_dicts(_official_trunk(parity_dir), "7.0.idpath.1.0.weight")[fault]
    path = tmp_path / "broken.pt"
    torch.save({"ecg_model": broken, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        ecgfm_ked.load(MODELS.get(MODEL), path, config=_small(parity_dir))


def test_checkpoint_without_trunk_is_refused(tmp_path):
    path = tmp_path / "text_only.pt"
    torch.save({"text_encoder": {"logit_scale": torch.ones(1)}}, path)
    with pytest.raises(CheckpointError, match="ecg_model"):
        ecgfm_ked.load(MODELS.get(MODEL), path)


def test_random_init_is_deterministic_and_the_official_seed0_init(parity_dir):
    """fastai's init (kaiming convs drawn twice through the convs/convpath alias, zeroed biases,
    zero-weight BN closing each residual branch) reproduced draw for draw."""
    spec, small = MODELS.get(MODEL), _small(parity_dir)
    first, second = ecgfm_ked.load(spec, None, config=small), ecgfm_ked.load(spec, None, config=small)
    assert first.checkpoint_sha256 is None and first.embed_dim == 48
    x = np.load(fixture_dir(MODEL, parity_dir) / "model_input.npy")[:1]
    np.testing.assert_array_equal(first.encode(x), second.encode(x))
    compared, differ = seed_init_mismatches(first.module.state_dict(), MODEL, parity_dir,
                                            _official_trunk(parity_dir), alias=(".convs.", ".convpath.0."))
    assert compared > 200 and differ == []


def test_bad_stem_width_is_refused():
    with pytest.raises(SpecError, match="stem"):
        ecgfm_ked.load(MODELS.get(MODEL), None, config={"stem_szs": (32, 32, 48)})


def test_a_lead_with_nan_is_zeroed_as_the_official_fft_then_nan_to_zero_does(parity_dir):
    raw = np.load(fixture_dir(MODEL, parity_dir) / "raw_input.npy")[0].copy()
    raw[7, 1234] = np.nan
    encoder = ecgfm_ked.load(MODELS.get(MODEL), None, config=_small(parity_dir))
    prepared = encoder.prepare(raw, 500, STD_LEADS)[0]
    assert prepared.shape == (12, 1000)
    np.testing.assert_array_equal(prepared[MIMIC_LEADS.index(STD_LEADS[7])], 0.0)
    assert np.isfinite(prepared).all() and np.abs(prepared[0]).max() > 0
