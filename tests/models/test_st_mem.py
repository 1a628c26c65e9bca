"""ST-MEM against fixtures made with the official code (bakqui/ST-MEM @ 69ec7024).

Parity observed on CPU (torch 2.13, float32), both checkpoint formats ("Full" ``st_mem_full.pth``
and "Encoder" ``encoder.pth``): model input (3 filtered, standardised crops) bit-identical;
per-crop embeddings max abs error 4.8e-7 (max rel 1.7e-7); record embeddings (mean of the 3
crops) max abs 2.4e-7 (max rel 9.4e-8). Tolerance: rtol 1e-4, atol 1e-5 (``run_parity`` default).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgfm_suite.errors import CheckpointError, SpecError
from ecgfm_suite.models import st_mem
from ecgfm_suite.models._build import count_parameters
from ecgfm_suite.models.catalog import MODELS
from tests.models.parity import broken_state_dicts, compare, fixture_dir, read_manifest, run_parity

SPEC = MODELS.get("st_mem")
STD = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _small(parity_dir):
    return read_manifest("st_mem", parity_dir)["small_config"]


def _full(parity_dir):
    return fixture_dir("st_mem", parity_dir) / "st_mem_full.pth"


@pytest.mark.parametrize("checkpoint", ["st_mem_full.pth", "encoder.pth"])
def test_parity_with_official_code(checkpoint, parity_dir, record_property):
    record_property("parity", run_parity("st_mem", parity_dir, checkpoint_name=checkpoint))


def test_lead_patch_states_match_official_hidden_states(parity_dir):
    folder = fixture_dir("st_mem", parity_dir)
    encoder = st_mem.load(SPEC, _full(parity_dir), config=_small(parity_dir))
    crop0 = torch.from_numpy(np.load(folder / "model_input.npy")[:, 0])
    with torch.inference_mode():
        states = encoder.module.lead_patch_tokens(crop0).numpy()
    compare("last-block states without SEP", states, np.load(folder / "hidden_states.npy"), rtol=1e-4, atol=1e-5)


def test_fixed_positional_table_is_the_official_sincos(parity_dir):
    stored = torch.load(fixture_dir("st_mem", parity_dir) / "encoder.pth", weights_only=True)["model"]
    small = _small(parity_dir)
    ours = st_mem.sincos_1d(small["embed_dim"], small["seq_len"] // small["patch_size"])
    np.testing.assert_allclose(ours, stored["pos_embedding"][0].numpy(), rtol=0, atol=1e-6)


def test_released_parameter_count(parity_dir):
    counted = count_parameters(lambda: st_mem.build_module(SPEC.config))
    assert counted == SPEC.released_params == read_manifest("st_mem", parity_dir)["released_param_count"]


@pytest.mark.parametrize("fault", ["missing", "shape", "unexpected"])
def test_broken_full_checkpoint_is_refused_naming_the_key(fault, parity_dir, tmp_path):
    saved = torch.load(_full(parity_dir), weights_only=True)
    broken, named = broken_state_dicts(saved["model"], "encoder.block1.ff.fn.net.3.weight")[fault]
    if fault == "unexpected":  # a stray key inside the encoder namespace
        broken["encoder.stray.weight"] = broken.pop(named)
    named = named.removeprefix("encoder.")  # errors name keys after the prefix is stripped
    path = tmp_path / "broken.pth"
    torch.save({**saved, "model": broken}, path)
    with pytest.raises(CheckpointError, match=named) as info:
        st_mem.load(SPEC, path, config=_small(parity_dir))
    assert str(path) in str(info.value)


def test_full_checkpoint_whose_patch_embedding_alias_differs_is_refused(parity_dir, tmp_path):
    saved = torch.load(_full(parity_dir), weights_only=True)
    saved["model"]["to_patch_embedding.2.weight"] = saved["model"]["to_patch_embedding.2.weight"] + 1
    path = tmp_path / "alias.pth"
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match="to_patch_embedding.2.weight"):
        st_mem.load(SPEC, path, config=_small(parity_dir))


def test_encoder_checkpoint_with_a_missing_key_is_refused(parity_dir, tmp_path):
    saved = torch.load(fixture_dir("st_mem", parity_dir) / "encoder.pth", weights_only=True)
    broken, named = broken_state_dicts(saved["model"], "lead_embeddings.11")["missing"]
    path = tmp_path / "encoder.pth"
    torch.save({**saved, "model": broken}, path)
    with pytest.raises(CheckpointError, match=named):
        st_mem.load(SPEC, path, config=_small(parity_dir))


def test_random_init_is_deterministic_and_leaves_global_rng_alone(parity_dir):
    small = _small(parity_dir)
    rng_before = torch.random.get_rng_state()
    first, second = st_mem.load(SPEC, None, config=small), st_mem.load(SPEC, None, config=small)
    assert torch.equal(rng_before, torch.random.get_rng_state())
    assert first.checkpoint_sha256 is None and first.embed_dim == small["embed_dim"]
    for key, value in first.module.state_dict().items():
        assert torch.equal(value, second.module.state_dict()[key]), key
    x = np.load(fixture_dir("st_mem", parity_dir) / "model_input.npy")[0]
    np.testing.assert_array_equal(first.encode(x), second.encode(x))


def test_unknown_config_key_is_refused():
    with pytest.raises(SpecError, match="embed_dimm"):
        st_mem.load(SPEC, None, config={"embed_dimm": 32})


@pytest.mark.parametrize("n_samples", [2250, 2251, 2252, 2253, 2254, 2500, 2501, 3000, 5000, 7500])
def test_crop_starts_follow_ncrop(n_samples):
    """``NCrop(2250, 3)`` = ``np.arange(0, n - 2250 + 1, (n - 2250) // 2)``; where that step is 0
    (the official transform fails) a single crop at 0."""
    step = (n_samples - 2250) // 2
    expected = list(np.arange(0, n_samples - 2250 + 1, step)) if step else [0]
    assert st_mem.n_crop_starts(n_samples, 2250, 3) == expected


def test_standardize_is_one_zscore_per_crop_and_zero_for_a_flat_crop():
    rng = np.random.default_rng(0)
    crops = np.stack([rng.normal(3.0, 2.0, (12, 50)), np.full((12, 50), 7.0)])
    out = st_mem.standardize(crops)
    assert abs(out[0].mean()) < 1e-12 and abs(out[0].std() - 1) < 1e-12
    assert not out[1].any()


def test_prepare_gives_three_crops_for_a_ten_second_record_and_one_for_a_short_one(parity_dir):
    raw = np.load(fixture_dir("st_mem", parity_dir) / "raw_input.npy")[0]
    encoder = st_mem.load(SPEC, None, config=_small(parity_dir))
    assert encoder.prepare(raw, 500, STD).shape == (3, 12, 2250)
    short = encoder.prepare(raw[:, :3000], 500, STD)  # 6 s: zero-padded to one 9-s crop
    assert short.shape == (1, 12, 2250)
    assert abs(short.mean()) < 1e-6 and abs(short.std() - 1) < 1e-5


@pytest.mark.gpu
def test_cuda_bf16_encode_matches_cpu(parity_dir):
    """The CUDA path (bf16 autocast) agrees with float32 CPU."""
    x = np.load(fixture_dir("st_mem", parity_dir) / "model_input.npy")
    x = x.reshape(-1, *x.shape[-2:])
    cpu = st_mem.load(SPEC, _full(parity_dir), config=_small(parity_dir)).encode(x)
    gpu = st_mem.load(SPEC, _full(parity_dir), config=_small(parity_dir), device="cuda").encode(x)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, rtol=0.05, atol=0.05)  # bf16 autocast tolerance
