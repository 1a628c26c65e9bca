"""ECG-FM (wav2vec 2.0 / CMSC on fairseq-signals) against fixtures made with the official code.

Parity observed on CPU (torch 2.13, float32): model input, per-segment and per-record embeddings
and the segment-0 transformer output all bit-identical (max abs error 0.0).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import interp1d

from ecgfm_suite.data.records import STD_LEADS
from ecgfm_suite.errors import CheckpointError, SpecError
from ecgfm_suite.models import ecg_fm
from ecgfm_suite.models._build import count_parameters
from ecgfm_suite.models.catalog import MODELS
from tests.models.parity import broken_state_dicts, compare, fixture_dir, read_manifest, run_parity

MODEL = "ecg_fm"


def _small(parity_dir):
    """Constructor arguments as the fixture checkpoint's ``cfg["model"]`` saved them."""
    return read_manifest(MODEL, parity_dir)["small_config"]["model_cfg_as_saved"]


def _checkpoint(parity_dir):
    return fixture_dir(MODEL, parity_dir) / read_manifest(MODEL, parity_dir)["checkpoint"]


@pytest.fixture(scope="module")
def trained(parity_dir):
    return ecg_fm.load(MODELS.get(MODEL), _checkpoint(parity_dir), config=_small(parity_dir))


@pytest.fixture(scope="module")
def segments(parity_dir):
    """The official model input, (records × 2 segments, 12, 2500)."""
    return np.load(fixture_dir(MODEL, parity_dir) / "model_input.npy").reshape(-1, 12, 2500)


def _resave(parity_dir, tmp_path, edit):
    """The fixture checkpoint with its ``model`` state dict rewritten by ``edit``."""
    obj = ecg_fm.load_torch(_checkpoint(parity_dir))
    obj["model"] = edit(dict(obj["model"]))
    path = tmp_path / "edited.pt"
    torch.save(obj, path)
    return path


def test_parity_with_official_code(parity_dir, record_property):
    record_property("parity", run_parity(MODEL, parity_dir, config=_small(parity_dir)))


def test_hidden_states_match_encoder_output(trained, parity_dir):
    folder = fixture_dir(MODEL, parity_dir)
    with torch.inference_mode():
        hidden = trained.module(torch.from_numpy(np.load(folder / "model_input.npy")[:, 0])).numpy()
    compare("segment-0 encoder output", hidden, np.load(folder / "hidden_states.npy"), rtol=1e-4, atol=1e-5)


def test_architecture_is_read_from_the_checkpoint_cfg(trained, segments, parity_dir):
    """Without ``config`` the file's ``cfg["model"]`` sizes the model, as the official from_pretrained."""
    from_cfg = ecg_fm.load(MODELS.get(MODEL), _checkpoint(parity_dir))
    assert from_cfg.embed_dim == 32
    np.testing.assert_array_equal(from_cfg.encode(segments[:2]), trained.encode(segments[:2]))


def test_released_parameter_count(parity_dir):
    spec = MODELS.get(MODEL)
    counted = count_parameters(lambda: ecg_fm.build_module(spec.config))
    assert counted == spec.released_params == read_manifest(MODEL, parity_dir)["released_param_count"]


def test_legacy_weight_norm_names_load_identically(trained, segments, parity_dir, tmp_path):
    """Checkpoints from before fairseq-signals adopted the parametrization store weight_g/weight_v."""

    def to_legacy(state):
        stem = "conv_pos.pos_conv.0."
        state[stem + "weight_g"] = state.pop(stem + "parametrizations.weight.original0")
        state[stem + "weight_v"] = state.pop(stem + "parametrizations.weight.original1")
        return state

    legacy = ecg_fm.load(MODELS.get(MODEL), _resave(parity_dir, tmp_path, to_legacy), config=_small(parity_dir))
    np.testing.assert_array_equal(legacy.encode(segments[:2]), trained.encode(segments[:2]))


def test_weight_norm_matches_the_closed_form(trained):
    """w = g · v / ‖v‖ with the norm over every dim except 2 (weight-norm ``dim=2``)."""
    conv = trained.module.conv_pos.pos_conv[0]
    g, v = conv.parametrizations.weight.original0, conv.parametrizations.weight.original1
    expected = g * v / v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
    torch.testing.assert_close(conv.weight, expected, rtol=1e-6, atol=1e-7)


def test_finetuned_layout_loads_the_same_encoder(trained, segments, parity_dir, tmp_path):
    """The fine-tuned classifier file: encoder under ``encoder.``, a ``proj`` head beside it."""

    def to_finetuned(state):
        kept = {f"encoder.{k}": v for k, v in state.items() if k.split(".")[0] not in
                ("mask_emb", "quantizer", "project_q", "final_proj")}
        return kept | {"proj.weight": torch.zeros(17, 32), "proj.bias": torch.zeros(17)}

    obj = ecg_fm.load_torch(_checkpoint(parity_dir))
    obj["model"] = to_finetuned(dict(obj["model"]))
    obj["cfg"]["model"] = {"_name": "ecg_transformer_classifier", "num_labels": 17}
    path = tmp_path / "finetuned.pt"
    torch.save(obj, path)
    finetuned = ecg_fm.load(MODELS.get(MODEL), path, config=_small(parity_dir))
    np.testing.assert_array_equal(finetuned.encode(segments[:2]), trained.encode(segments[:2]))


@pytest.mark.parametrize("fault", ["missing", "shape", "unexpected"])
def test_broken_checkpoint_is_refused_naming_the_key(fault, parity_dir, tmp_path):
    key = "encoder.layers.1.self_attn_layer_norm.weight"
    path = _resave(parity_dir, tmp_path, lambda state: broken_state_dicts(state, key)[fault][0])
    named = broken_state_dicts({key: torch.zeros(1)}, key)[fault][1]
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        ecg_fm.load(MODELS.get(MODEL), path, config=_small(parity_dir))


def test_random_init_is_deterministic(parity_dir, segments):
    spec, small = MODELS.get(MODEL), _small(parity_dir)
    rng_before = torch.random.get_rng_state()
    first, second = ecg_fm.load(spec, None, config=small), ecg_fm.load(spec, None, config=small)
    assert torch.equal(rng_before, torch.random.get_rng_state())
    assert first.checkpoint_sha256 is None
    for key, value in first.module.state_dict().items():
        assert torch.equal(value, second.module.state_dict()[key]), key
    np.testing.assert_array_equal(first.encode(segments[:1]), second.encode(segments[:1]))


@pytest.mark.parametrize("config, named", [
    ({"layer_norm_first": True}, "post-LN"),
    ({"extractor_mode": "layer_norm"}, "extractor_mode"),
    ({"conv_feature_layers": "[(32, 2, 2)] * __import__('os').getpid()"}, "unsupported expression"),
    ({"encoder_layer": 2}, "encoder_layer"),
])
def test_unsupported_or_unknown_configuration_is_refused(config, named):
    with pytest.raises(SpecError, match=named):
        ecg_fm.load(MODELS.get(MODEL), None, config={"encoder_embed_dim": 32, "conv_pos": 16} | config)


def test_conv_layer_spec_is_parsed_like_fairseq():
    assert ecg_fm.parse_conv_layers("[(256, 2, 2)] * 4") == [(256, 2, 2)] * 4
    assert ecg_fm.parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 2") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]


def test_linear_resampling_matches_ecg_transform(parity_dir):
    """ecg-transform LinearResample, written independently with scipy's interp1d."""
    raw = np.load(fixture_dir(MODEL, parity_dir) / "raw_input.npy")[0, :, :3000].astype(np.float64)
    n_out = int(raw.shape[1] * (500 / 360))
    official = interp1d(np.linspace(0, n_out - 1, raw.shape[1]), raw, kind="linear", axis=-1)(np.arange(n_out))
    np.testing.assert_allclose(ecg_fm.linear_resample(raw, 360, 500), official, rtol=0, atol=1e-12)


def test_prepare_zeroes_constant_leads_and_zscores_each_lead(trained, parity_dir):
    raw = np.load(fixture_dir(MODEL, parity_dir) / "raw_input.npy")[2].copy()
    raw[3] = 0.7  # a flat lead
    prepared = trained.prepare(raw, 500, STD_LEADS)
    assert prepared.shape == (2, 12, 2500)
    record = np.concatenate(list(prepared), axis=-1)  # z-scored over the whole record, then cut
    np.testing.assert_array_equal(record[3], 0.0)
    live = np.delete(record, 3, axis=0)
    np.testing.assert_allclose(live.mean(axis=-1), 0.0, atol=1e-6)
    np.testing.assert_allclose(live.std(axis=-1), 1.0, atol=1e-5)


def test_prepare_resamples_other_rates_and_pads_short_records(trained):
    rng = np.random.default_rng(0)
    at_250 = trained.prepare(rng.standard_normal((12, 2500)).astype(np.float32), 250, STD_LEADS)
    assert at_250.shape == (2, 12, 2500)  # 10 s at 250 Hz → 5000 samples at 500 Hz → two segments
    short = trained.prepare(rng.standard_normal((12, 1500)).astype(np.float32), 500, STD_LEADS)
    assert short.shape == (1, 12, 2500)
    np.testing.assert_array_equal(short[0, :, 1500:], 0.0)


def test_pooling_divides_by_the_nonzero_count():
    """ECG-FM scripts/embs.py: sum over tokens / per-feature count of non-zero entries."""
    tokens = torch.arange(1.0, 25.0).reshape(1, 6, 4)
    tokens[0, :2, 1] = 0.0  # two zero tokens in feature 1: it averages the other four
    tokens[0, :, 3] = 0.0  # an all-zero feature pools to 0
    pooled = ecg_fm.pool_tokens(tokens)[0]
    torch.testing.assert_close(pooled[[0, 2]], tokens[0, :, [0, 2]].mean(0))
    assert float(pooled[1]) == pytest.approx(float(tokens[0, 2:, 1].mean()))
    assert float(pooled[3]) == 0.0
