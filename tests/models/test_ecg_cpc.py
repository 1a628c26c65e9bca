"""ECG-CPC against fixtures made with the official code (AI4HealthUOL/ecg-fm-benchmarking @ 63672956).

The fixture's S4 Cauchy step ran through a dense CPU evaluation (the official one needs pykeops
or CUDA); ours evaluates the same dense sum. Parity observed on CPU (torch 2.13, float32): model
input (resampy to 240 Hz per 2.5-s window) bit-identical; per-window and record embeddings max
abs error 2.4e-7 (max rel 1.0e-7); predictor token states max abs 7e-7. Tolerance: rtol 1e-4,
atol 1e-5 (``run_parity`` default; the manifest expects ~1e-6 vs the GPU path).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import yaml

from ecgfm_suite.errors import CheckpointError, SpecError
from ecgfm_suite.models import ecg_cpc
from ecgfm_suite.models._build import count_parameters
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.models.checkpoints import load_torch
from tests.models.parity import broken_state_dicts, compare, fixture_dir, read_manifest, run_parity

SPEC = MODELS.get("ecg_cpc")
STD = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _small(parity_dir):
    return read_manifest("ecg_cpc", parity_dir)["small_config"]


def _checkpoint(parity_dir):
    return fixture_dir("ecg_cpc", parity_dir) / read_manifest("ecg_cpc", parity_dir)["checkpoint"]


@pytest.fixture(scope="module")
def official(parity_dir):
    """The fixture's Lightning checkpoint, read once through the allow-list."""
    return load_torch(_checkpoint(parity_dir), stub_globals=ecg_cpc.STUB_GLOBALS)


def _save_lightning(state, path):
    """A Lightning-shaped checkpoint of plain tensors (loads without the allow-list path)."""
    torch.save({"epoch": 0, "global_step": 0, "state_dict": state}, path)
    return path


@pytest.mark.slow  # ~6 s: includes resampy's one-time numba compilation
def test_parity_with_official_code(parity_dir, record_property):
    record_property("parity", run_parity("ecg_cpc", parity_dir))


def test_predictor_states_match_official_hidden_states(parity_dir):
    folder = fixture_dir("ecg_cpc", parity_dir)
    encoder = ecg_cpc.load(SPEC, _checkpoint(parity_dir), config=_small(parity_dir))
    window0 = torch.from_numpy(np.load(folder / "model_input.npy")[:, 0])
    with torch.inference_mode():
        seq = encoder.module.sequence(window0).numpy()
    compare("S4 predictor output seq", seq, np.load(folder / "hidden_states.npy"), rtol=1e-4, atol=1e-5)


def test_architecture_is_read_from_the_yaml_shipped_beside_the_checkpoint(parity_dir):
    """Without ``config``, the small architecture comes from ``config_last_ckpt.yaml`` alone."""
    checkpoint = _checkpoint(parity_dir)
    assert ecg_cpc.config_beside(checkpoint).name == "config_last_ckpt.yaml"
    encoder = ecg_cpc.load(SPEC, checkpoint)
    assert encoder.embed_dim == 16
    windows = np.load(fixture_dir("ecg_cpc", parity_dir) / "model_input.npy").reshape(-1, 12, 600)
    per_window = np.load(fixture_dir("ecg_cpc", parity_dir) / "embeddings_per_chunk.npy").reshape(-1, 16)
    compare("per-window embeddings, config from the YAML", encoder.encode(windows), per_window, 1e-4, 1e-5)


def test_yaml_naming_another_architecture_is_refused(parity_dir, tmp_path):
    data = yaml.safe_load(ecg_cpc.config_beside(_checkpoint(parity_dir)).read_text())
    data["ts"]["pred"]["_target_"] = "clinical_ts.ts.transformer.TransformerPredictor"
    (tmp_path / "config_last_ckpt.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match="TransformerPredictor"):
        ecg_cpc.load(SPEC, tmp_path / "last.ckpt")


def test_released_parameter_count(parity_dir):
    cfg = ecg_cpc.architecture(SPEC, None, None)
    counted = count_parameters(lambda: ecg_cpc.build_module(cfg))
    assert counted == SPEC.released_params == read_manifest("ecg_cpc", parity_dir)["released_param_count"]


def test_checkpoint_without_the_allow_list_is_refused_naming_the_globals(parity_dir):
    with pytest.raises(CheckpointError) as info:
        load_torch(_checkpoint(parity_dir))
    message = str(info.value)
    assert "omegaconf.dictconfig.DictConfig" in message and "clinical_ts.ts.s4.S4PredictorConfig" in message
    assert str(_checkpoint(parity_dir)) in message


def test_allow_list_is_tight(parity_dir):
    """Every allow-list pattern is needed by the released format: none is dead weight."""
    pickled = torch.serialization.get_unsafe_globals_in_checkpoint(_checkpoint(parity_dir))
    import fnmatch

    for pattern in ecg_cpc.STUB_GLOBALS:
        assert any(fnmatch.fnmatchcase(name, pattern) for name in pickled), pattern


def test_checkpoint_pickling_code_is_refused_and_nothing_runs(official, parity_dir, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": official["state_dict"], "hyper_parameters": Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="system"):
        ecg_cpc.load(SPEC, path, config=_small(parity_dir))
    assert not marker.exists()


@pytest.mark.parametrize("fault", ["missing", "shape", "unexpected"])
def test_broken_checkpoint_is_refused_naming_the_key(fault, official, parity_dir, tmp_path):
    key = "ts_encoder.predictor.predictor.s4_layers.1.output_linear.0.weight"
    broken, named = broken_state_dicts(official["state_dict"], key)[fault]
    if fault == "unexpected":
        broken["ts_encoder.stray.weight"] = broken.pop(named)
    path = _save_lightning(broken, tmp_path / "broken.ckpt")
    with pytest.raises(CheckpointError, match=named.removeprefix("ts_encoder.")) as info:
        ecg_cpc.load(SPEC, path, config=_small(parity_dir))
    assert str(path) in str(info.value)


def test_ssl_head_is_dropped_but_nothing_else(official, parity_dir, tmp_path):
    state = dict(official["state_dict"])
    state["other_module.weight"] = torch.zeros(1)  # outside ts_encoder: refused, naming it
    with pytest.raises(CheckpointError, match="other_module.weight"):
        ecg_cpc.load(SPEC, _save_lightning(state, tmp_path / "extra.ckpt"), config=_small(parity_dir))


def test_inconsistent_fft_node_cache_is_refused(official, parity_dir, tmp_path):
    state = dict(official["state_dict"])
    key = "ts_encoder.predictor.predictor.s4_layers.0.kernel.kernel.omega"
    state[key] = state[key].flip(0)
    with pytest.raises(CheckpointError, match="s4_layers.0.kernel.kernel.omega"):
        ecg_cpc.load(SPEC, _save_lightning(state, tmp_path / "omega.ckpt"), config=_small(parity_dir))


def test_fft_nodes_regenerate_the_stored_cache(official):
    from ecgfm_suite.models._s4 import fft_nodes

    stored = official["state_dict"]["ts_encoder.predictor.predictor.s4_layers.0.kernel.kernel.z"]
    assert stored.shape == (601, 2)  # L = 10 s · 240 Hz / stride 2 = 1200
    torch.testing.assert_close(torch.view_as_real(fft_nodes(1200)[1]), stored, rtol=1e-6, atol=1e-6)


def test_random_init_builds_the_official_hippo_state_matrices(official, parity_dir):
    """w, P, B, Q (HiPPO-LegS NPLR) and the FFT nodes are deterministic in the official init and stored
    unperturbed in the fixture: our random init reproduces them.

    P, B and Q come from eigenvectors of ``torch.linalg.eig``, whose phase (one unit complex factor per
    eigenvector) depends on the LAPACK build's code path (MKL on an AVX2 and an AVX-512 CPU differ), as
    it does in the official code. So the phase-free quantities are compared: the eigenvalues w, the
    moduli of P, B and Q, and the products P·conj(B) and P·conj(Q), in which each phase cancels.
    """
    ours = ecg_cpc.load(SPEC, None, config=_small(parity_dir)).module.state_dict()
    for layer in range(2):
        prefix = f"predictor.predictor.s4_layers.{layer}.kernel.kernel."
        for name in ("w", "omega", "z"):
            torch.testing.assert_close(ours[prefix + name], official["state_dict"]["ts_encoder." + prefix + name],
                                       rtol=1e-5, atol=1e-6)
        mine = {n: torch.view_as_complex(ours[prefix + n].contiguous()) for n in "PBQ"}
        theirs = {n: torch.view_as_complex(official["state_dict"]["ts_encoder." + prefix + n].contiguous())
                  for n in "PBQ"}
        for got, want in [*((mine[n].abs(), theirs[n].abs()) for n in "PBQ"),
                          (mine["P"] * mine["B"].conj(), theirs["P"] * theirs["B"].conj()),
                          (mine["P"] * mine["Q"].conj(), theirs["P"] * theirs["Q"].conj())]:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_random_init_is_deterministic_and_leaves_global_rng_alone(parity_dir):
    small = _small(parity_dir)
    rng_before = torch.random.get_rng_state()
    first, second = ecg_cpc.load(SPEC, None, config=small), ecg_cpc.load(SPEC, None, config=small)
    assert torch.equal(rng_before, torch.random.get_rng_state())
    assert first.checkpoint_sha256 is None and first.embed_dim == 16
    for key, value in first.module.state_dict().items():
        assert torch.equal(value, second.module.state_dict()[key]), key
    x = np.load(fixture_dir("ecg_cpc", parity_dir) / "model_input.npy")[0]
    emb = first.encode(x)
    np.testing.assert_array_equal(emb, second.encode(x))
    assert np.isfinite(emb).all() and emb.std() > 0


def test_unknown_config_key_is_refused():
    with pytest.raises(SpecError, match="ts.pred.modeldim"):
        ecg_cpc.load(SPEC, None, config={"ts.pred": {"modeldim": 16}})


@pytest.mark.parametrize(("fs", "native"), [(500, 1250), (300, 750), (1000, 2500), (257, 643), (240, 600)])
def test_native_window_gives_a_full_600_sample_window(fs, native):
    assert ecg_cpc.native_window(fs, 240, 600) == native


def test_prepare_cuts_non_overlapping_windows_at_any_rate(parity_dir):
    raw = np.load(fixture_dir("ecg_cpc", parity_dir) / "raw_input.npy")[0]
    encoder = ecg_cpc.load(SPEC, None, config=_small(parity_dir))
    assert encoder.prepare(raw, 500, STD).shape == (4, 12, 600)
    at_257 = encoder.prepare(raw[:, :2570], 257, STD)  # 10 s at 257 Hz (INCART's rate)
    assert at_257.shape == (3, 12, 600) and at_257.dtype == np.float32
    short = encoder.prepare(raw[:, :500], 500, STD)  # 1 s: one zero-padded window
    assert short.shape == (1, 12, 600) and not short[0, :, 400:].any()


@pytest.mark.gpu
def test_cuda_bf16_encode_matches_cpu(parity_dir):
    """The CUDA path (bf16 autocast (S4's FFT convolution runs in float32 inside autocast)) agrees with float32 CPU."""
    x = np.load(fixture_dir("ecg_cpc", parity_dir) / "model_input.npy")
    x = x.reshape(-1, *x.shape[-2:])
    cpu = ecg_cpc.load(SPEC, _checkpoint(parity_dir), config=_small(parity_dir)).encode(x)
    gpu = ecg_cpc.load(SPEC, _checkpoint(parity_dir), config=_small(parity_dir), device="cuda").encode(x)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, rtol=0.05, atol=0.05)  # bf16 autocast tolerance
