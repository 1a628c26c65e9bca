"""ECG-JEPA against fixtures made with the official code (sehunfromdaegu/ECG_JEPA @ d937ad2c).

Parity observed on CPU (torch 2.13, float32): model input bit-identical (max abs error 0.0);
embeddings max abs error 1.2e-7 (max rel 8.7e-8, relative to the largest official magnitude) —
SDPA vs the official explicit softmax. Tolerance: rtol 1e-4, atol 1e-5 (``run_parity`` default).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgfm_suite.errors import CheckpointError, SpecError
from ecgfm_suite.models import ecg_jepa
from ecgfm_suite.models._build import count_parameters
from ecgfm_suite.models.catalog import JEPA_LEADS, MODELS
from tests.models.parity import broken_state_dicts, compare, fixture_dir, read_manifest, run_parity

SPEC = MODELS.get("ecg_jepa")


def _small(parity_dir):
    return read_manifest("ecg_jepa", parity_dir)["small_config"]


def _checkpoint(parity_dir):
    return fixture_dir("ecg_jepa", parity_dir) / read_manifest("ecg_jepa", parity_dir)["checkpoint"]


def test_parity_with_official_code(parity_dir, record_property):
    record_property("parity", run_parity("ecg_jepa", parity_dir))


def test_token_states_match_official_hidden_states(parity_dir):
    folder = fixture_dir("ecg_jepa", parity_dir)
    encoder = ecg_jepa.load(SPEC, _checkpoint(parity_dir), config=_small(parity_dir))
    with torch.inference_mode():
        tokens = encoder.module.tokens(torch.from_numpy(np.load(folder / "model_input.npy"))).numpy()
    compare("token states after the final LayerNorm", tokens, np.load(folder / "hidden_states.npy"),
            rtol=1e-4, atol=1e-5)


def test_fixed_positional_table_is_the_official_sincos(parity_dir):
    """The stored ``pos_embed`` (never perturbed in the fixture) is what our random init builds."""
    stored = torch.load(_checkpoint(parity_dir), weights_only=True)["encoder"]["pos_embed"]
    small = _small(parity_dir)
    ours = ecg_jepa.sincos_2d(small["encoder_embed_dim"], small["c"], small["p"])
    np.testing.assert_allclose(ours, stored.numpy(), rtol=0, atol=1e-6)


def test_cropa_mask_lets_a_token_see_its_lead_and_its_time_step_only():
    allowed = ecg_jepa.cropa_mask(3, 4).numpy()
    lead, patch = np.divmod(np.arange(12), 4)
    for i in range(12):
        for j in range(12):
            assert allowed[i, j] == (lead[i] == lead[j] or patch[i] == patch[j])


def test_released_parameter_count(parity_dir):
    """The manifest counts every parameter; fm-specs.md (our ``released_params``) only the trainable
    ones, i.e. without the frozen 400×768 sin-cos table, the only frozen parameter."""
    counted = count_parameters(lambda: ecg_jepa.build_module(SPEC.config))
    assert counted == read_manifest("ecg_jepa", parity_dir)["released_param_count"]
    small = ecg_jepa.build_module({**SPEC.config, **_small(parity_dir)})
    assert [name for name, p in small.named_parameters() if not p.requires_grad] == ["pos_embed"]
    assert counted - 8 * 50 * 768 == SPEC.released_params == 85_067_520


@pytest.mark.parametrize("fault", ["missing", "shape", "unexpected"])
def test_broken_checkpoint_is_refused_naming_the_key(fault, parity_dir, tmp_path):
    state = torch.load(_checkpoint(parity_dir), weights_only=True)["encoder"]
    broken, named = broken_state_dicts(state, "encoder_blocks.blocks.1.attn.qkv.weight")[fault]
    path = tmp_path / "broken.pth"
    torch.save({"encoder": broken, "epoch": 99}, path)
    with pytest.raises(CheckpointError, match=named) as info:
        ecg_jepa.load(SPEC, path, config=_small(parity_dir))
    assert str(path) in str(info.value)


def test_checkpoint_without_encoder_entry_is_refused(parity_dir, tmp_path):
    path = tmp_path / "flat.pth"
    torch.save({"W_P.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="'encoder'"):
        ecg_jepa.load(SPEC, path, config=_small(parity_dir))


def test_random_init_is_deterministic_and_leaves_global_rng_alone(parity_dir):
    small = _small(parity_dir)
    rng_before = torch.random.get_rng_state()
    first, second = ecg_jepa.load(SPEC, None, config=small), ecg_jepa.load(SPEC, None, config=small)
    assert torch.equal(rng_before, torch.random.get_rng_state())
    assert first.checkpoint_sha256 is None and first.embed_dim == small["encoder_embed_dim"]
    for key, value in first.module.state_dict().items():
        assert torch.equal(value, second.module.state_dict()[key]), key
    x = np.load(fixture_dir("ecg_jepa", parity_dir) / "model_input.npy")[:2]
    np.testing.assert_array_equal(first.encode(x), second.encode(x))


@pytest.mark.parametrize(("override", "named"), [({"encoder_dpth": 2}, "encoder_dpth"),
                                                 ({"pos_type": "rope"}, "rope"),
                                                 ({"leads": [0, 1]}, "lead subsets")])
def test_unsupported_or_unknown_config_is_refused(override, named):
    with pytest.raises(SpecError, match=named):
        ecg_jepa.load(SPEC, None, config={"encoder_embed_dim": 32, "encoder_depth": 1, "encoder_num_heads": 2,
                                          **override})


def test_prepare_picks_the_eight_leads_by_name_and_resamples_to_250_hz(parity_dir):
    raw = np.load(fixture_dir("ecg_jepa", parity_dir) / "raw_input.npy")[0]
    std = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    encoder = ecg_jepa.load(SPEC, None, config=_small(parity_dir))
    order = np.random.default_rng(0).permutation(12)
    shuffled = encoder.prepare(raw[order], 500, [std[i] for i in order])
    reference = encoder.prepare(raw, 500, std)
    assert reference.shape == (1, len(JEPA_LEADS), 2500)
    np.testing.assert_array_equal(shuffled, reference)
    # already at 250 Hz: no resampling; a 4-s record is zero-padded to the 10-s window
    short = encoder.prepare(reference[0][:, :1000], 250, JEPA_LEADS)
    np.testing.assert_array_equal(short[0, :, :1000], reference[0][:, :1000])
    assert not short[0, :, 1000:].any()


@pytest.mark.gpu
def test_cuda_bf16_encode_matches_cpu(parity_dir):
    """The CUDA path (bf16 autocast) agrees with float32 CPU."""
    x = np.load(fixture_dir("ecg_jepa", parity_dir) / "model_input.npy")
    x = x.reshape(-1, *x.shape[-2:])
    cpu = ecg_jepa.load(SPEC, _checkpoint(parity_dir), config=_small(parity_dir)).encode(x)
    gpu = ecg_jepa.load(SPEC, _checkpoint(parity_dir), config=_small(parity_dir), device="cuda").encode(x)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, rtol=0.05, atol=0.05)  # bf16 autocast tolerance
