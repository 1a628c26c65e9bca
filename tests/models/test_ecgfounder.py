"""ECGFounder (12-lead and 1-lead Net1D) against fixtures made with the official code.

Parity observed on CPU (torch 2.13, float32): model input, per-record embeddings and hidden
states all bit-identical (max abs error 0.0); the default tolerance (rtol 1e-4, atol 1e-5) only
leaves room for other BLAS builds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgfm_suite.errors import CheckpointError, SpecError
from ecgfm_suite.models import ecgfounder
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

VARIANTS = ("ecgfounder_12lead", "ecgfounder_1lead")


def _small(model_id, parity_dir):
    return read_manifest(model_id, parity_dir)["small_config"]


def _checkpoint(model_id, parity_dir):
    return fixture_dir(model_id, parity_dir) / read_manifest(model_id, parity_dir)["checkpoint"]


@pytest.mark.parametrize("model_id", VARIANTS)
def test_parity_with_official_code(model_id, parity_dir, record_property):
    errors = run_parity(model_id, parity_dir)
    record_property("parity", errors)


def test_hidden_states_match_last_stage(parity_dir):
    model_id = "ecgfounder_12lead"
    folder = fixture_dir(model_id, parity_dir)
    encoder = ecgfounder.load(MODELS.get(model_id), _checkpoint(model_id, parity_dir),
                              config=_small(model_id, parity_dir))
    compare_trunk_states(encoder, folder, "last-stage output")


@pytest.mark.parametrize("model_id", VARIANTS)
def test_released_parameter_count(model_id, parity_dir):
    spec = MODELS.get(model_id)
    counted = count_parameters(lambda: ecgfounder.build_module(spec.config))
    assert counted == spec.released_params == read_manifest(model_id, parity_dir)["released_param_count"]


@pytest.mark.parametrize("fault", ["missing", "shape", "unexpected"])
def test_broken_checkpoint_is_refused_naming_the_key(fault, parity_dir, tmp_path):
    model_id = "ecgfounder_12lead"
    state = ecgfounder.load_torch(_checkpoint(model_id, parity_dir),
                                  safe_types=ecgfounder.numpy_scalar_types())["state_dict"]
    broken, named = broken_state_dicts(state, "stage_list.3.block_list.1.conv2.conv.weight")[fault]
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": broken, "epoch": 0}, path)
    with pytest.raises(CheckpointError, match=named) as info:
        ecgfounder.load(MODELS.get(model_id), path, config=_small(model_id, parity_dir))
    assert str(path) in str(info.value)


def test_checkpoint_without_state_dict_entry_is_refused(tmp_path):
    path = tmp_path / "flat.pth"
    torch.save({"first_conv.conv.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="'state_dict'"):
        ecgfounder.load(MODELS.get("ecgfounder_12lead"), path)


def test_random_init_is_deterministic_and_leaves_global_rng_alone(parity_dir):
    model_id = "ecgfounder_1lead"
    spec, small = MODELS.get(model_id), _small(model_id, parity_dir)
    rng_before = torch.random.get_rng_state()
    first, second = ecgfounder.load(spec, None, config=small), ecgfounder.load(spec, None, config=small)
    assert torch.equal(rng_before, torch.random.get_rng_state())
    assert first.checkpoint_sha256 is None and first.embed_dim == small["filter_list"][-1]
    for key, value in first.module.state_dict().items():
        assert torch.equal(value, second.module.state_dict()[key]), key
    x = np.load(fixture_dir(model_id, parity_dir) / "model_input.npy")[:1]
    np.testing.assert_array_equal(first.encode(x), second.encode(x))


def test_random_init_is_the_official_seed0_init(parity_dir):
    """The fixture's weights are Net1D's own init under seed 0 (plus perturbed BN tensors): ours
    builds modules in the official order, so every unperturbed tensor comes out identical."""
    model_id = "ecgfounder_12lead"
    ours = ecgfounder.load(MODELS.get(model_id), None, config=_small(model_id, parity_dir)).module.state_dict()
    official = ecgfounder.load_torch(_checkpoint(model_id, parity_dir),
                                     safe_types=ecgfounder.numpy_scalar_types())["state_dict"]
    compared, differ = seed_init_mismatches(ours, model_id, parity_dir, official)
    assert compared > 200 and differ == []


def test_unknown_constructor_argument_is_refused():
    with pytest.raises(SpecError, match="filter_lst"):
        ecgfounder.load(MODELS.get("ecgfounder_12lead"), None, config={"filter_lst": [8]})


def test_one_lead_model_reads_lead_i_from_any_lead_layout(parity_dir):
    raw = np.load(fixture_dir("ecgfounder_1lead", parity_dir) / "raw_input.npy")[0]
    encoder = ecgfounder.load(MODELS.get("ecgfounder_1lead"), None, config=_small("ecgfounder_1lead", parity_dir))
    from_12 = encoder.prepare(raw, 500, ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"))
    from_lead_i = encoder.prepare(raw[[0, 1]][::-1], 500, ("II", "I"))
    assert from_12.shape == (1, 1, 5000)
    np.testing.assert_array_equal(from_12, from_lead_i)
    # one z-score over the whole window: zero mean, unit variance
    assert abs(float(from_12.mean())) < 1e-6 and abs(float(from_12.std()) - 1) < 1e-5
