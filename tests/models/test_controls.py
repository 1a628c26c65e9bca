"""The controls: seeded random CNN (determinism) and handcrafted features (vs LUDB cardiologist annotations)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.data.records import STD_LEADS
from ecgfm_suite.embeddings.encode import embed_array
from ecgfm_suite.errors import SpecError
from ecgfm_suite.models.catalog import MODELS
from ecgfm_suite.models.controls import (
    feature_names,
    load_handcrafted,
    load_random_cnn,
    prominence_delineator,
    window_features,
)

from .ludb_records import LUDB_FS, annotated_intervals, read_ludb

CNN = MODELS.get("random_cnn")
HANDCRAFTED = MODELS.get("handcrafted")
NAMES = feature_names(STD_LEADS)


def _index(name: str) -> int:
    return NAMES.index(name)


# --------------------------------------------------------------------------- random CNN

def _cnn_batch(n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 12, 1000)).astype(np.float32)


def test_random_cnn_is_seeded_and_leaves_global_rng_alone() -> None:
    import torch

    before = torch.random.get_rng_state()
    a = load_random_cnn(CNN, None).encode(_cnn_batch())
    b = load_random_cnn(CNN, None).encode(_cnn_batch())
    assert torch.equal(before, torch.random.get_rng_state())
    assert a.shape == (3, CNN.embed_dim) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all() and a.std(axis=0).mean() > 0
    other = load_random_cnn(CNN, None, config={"seed": 1}).encode(_cnn_batch())
    assert not np.allclose(a, other)
    assert load_random_cnn(CNN, None).checkpoint_sha256 is None


def weights_digest() -> str:
    """sha256 of the random CNN's state dict (names and bytes)."""
    h = hashlib.sha256()
    for key, value in load_random_cnn(CNN, None).module.state_dict().items():
        h.update(key.encode())
        h.update(value.numpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_random_cnn_weights_identical_in_a_fresh_process() -> None:
    """The control must be the same model in every pytest-xdist worker and every run."""
    code = "from tests.models.test_controls import weights_digest; print(weights_digest())"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[2])
    assert fresh.stdout.strip() == weights_digest()


def test_random_cnn_refuses_checkpoint_and_unknown_options(tmp_path) -> None:
    with pytest.raises(SpecError, match="takes no checkpoint"):
        load_random_cnn(CNN, tmp_path / "w.pt")
    with pytest.raises(SpecError, match="unknown constructor argument"):
        load_random_cnn(CNN, None, config={"sead": 1})
    with pytest.raises(SpecError, match="embed_dim"):
        load_random_cnn(CNN, None, config={"channels": (16, 32)})


@pytest.mark.real_data
def test_random_cnn_embeds_real_records(data_dir) -> None:
    records = [read_ludb(data_dir, i) for i in (1, 2, 3)]
    x = np.stack([r[0] for r in records])
    emb = embed_array(load_random_cnn(CNN, None), x, LUDB_FS, records[0][1])
    assert emb.shape == (3, 256) and np.isfinite(emb).all()
    assert not np.allclose(emb[0], emb[1])


# --------------------------------------------------------------------------- handcrafted

def test_feature_order_is_fixed_and_matches_catalog() -> None:
    assert len(NAMES) == len(set(NAMES)) == HANDCRAFTED.embed_dim == 17 + 7 * 12
    assert NAMES[:3] == ("hr_mean_bpm", "rr_mean_ms", "rr_sdnn_ms")
    assert NAMES[17] == "r_amp_I" and NAMES[-1] == "logpow_15_40hz_V6"
    assert load_handcrafted(HANDCRAFTED, None).embed_dim == len(NAMES)


@pytest.mark.real_data
def test_intervals_agree_with_ludb_cardiologists(data_dir) -> None:
    """Independent reference: LUDB's manual wave annotations (lead II) on 40 records."""
    encoder = load_handcrafted(HANDCRAFTED, None)
    ours, ref = [], []
    for record in range(1, 41):
        x, leads = read_ludb(data_dir, record)
        emb = embed_array(encoder, x[None], LUDB_FS, leads)[0]
        missing = {k: emb[_index(f"{k}_missing")] == 1 for k in ("qrs", "pr", "qt")}
        ours.append([emb[_index("hr_mean_bpm")], *(np.nan if missing[k] else emb[_index(f"{k}_ms")]
                                                  for k in ("qrs", "pr", "qt"))])
        ann = annotated_intervals(data_dir, record)
        ref.append([ann["hr"], ann["qrs"], ann["pr"], ann["qt"]])
    ours_a, ref_a = np.array(ours), np.array(ref)
    # measured on records 1-40: HR r 0.99 / MAE 0.6 bpm; QRS r 0.73 / 12 ms; PR r 0.92 / 13 ms; QT r 0.76 / 23 ms
    limits = {0: (0.98, 2.0), 1: (0.5, 20.0), 2: (0.8, 20.0), 3: (0.6, 35.0)}
    for col, (min_r, max_mae) in limits.items():
        ok = np.isfinite(ours_a[:, col]) & np.isfinite(ref_a[:, col])
        assert ok.sum() >= 30, f"column {col}: only {ok.sum()} measured"
        r = np.corrcoef(ours_a[ok, col], ref_a[ok, col])[0, 1]
        mae = np.abs(ours_a[ok, col] - ref_a[ok, col]).mean()
        assert r >= min_r and mae <= max_mae, f"column {col}: r={r:.3f} MAE={mae:.1f}"


@pytest.mark.real_data
def test_features_scale_with_amplitude(data_dir) -> None:
    x, leads = read_ludb(data_dir, 5)
    encoder = load_handcrafted(HANDCRAFTED, None)
    w = encoder.prepare(x, LUDB_FS, leads)[0]
    f1, f2 = window_features(w, 250, STD_LEADS), window_features(2 * w, 250, STD_LEADS)
    amp = [i for i, n in enumerate(NAMES) if n.startswith(("r_amp", "s_amp", "st_level", "t_amp"))]
    power = [i for i, n in enumerate(NAMES) if n.startswith("logpow")]
    np.testing.assert_allclose(f2[amp], 2 * f1[amp], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(f2[power], f1[power] + np.log10(4.0), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(f2[:17], f1[:17])  # timing does not depend on the gain


@pytest.mark.parametrize("kind", ["flat", "noise", "nan_lead", "short", "spike"])
def test_degenerate_windows_never_raise(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = {"flat": np.zeros((12, 5000)), "noise": rng.standard_normal((12, 5000)),
         "nan_lead": rng.standard_normal((12, 5000)), "short": rng.standard_normal((12, 300)),
         "spike": np.zeros((12, 5000))}[kind].astype(np.float32)
    if kind == "nan_lead":
        x[1] = np.nan
    if kind == "spike":
        x[:, 2500] = 5.0
    encoder = load_handcrafted(HANDCRAFTED, None)
    emb = embed_array(encoder, x[None], LUDB_FS, STD_LEADS)
    assert emb.shape == (1, len(NAMES)) and np.isfinite(emb).all()
    if kind in ("flat", "short", "spike"):
        assert emb[0, _index("rr_missing")] == 1 and emb[0, _index("template_missing")] == 1
        assert emb[0, _index("hr_mean_bpm")] == 0  # imputed


@pytest.mark.real_data
def test_prominence_delineator_is_what_ecg_delineate_runs(data_dir) -> None:
    """We call neurokit's delineator below ``ecg_delineate`` for speed; the waves must be the same."""
    import neurokit2 as nk

    x, leads = read_ludb(data_dir, 3)
    w = load_handcrafted(HANDCRAFTED, None).prepare(x, LUDB_FS, leads)[0][1].astype(np.float64)
    peaks = nk.ecg_findpeaks(w, sampling_rate=250)["ECG_R_Peaks"]
    _, public = nk.ecg_delineate(w, peaks, sampling_rate=250, method="prominence")
    private = prominence_delineator()(w, rpeaks=peaks, sampling_rate=250)
    for key in ("ECG_P_Onsets", "ECG_P_Peaks", "ECG_T_Offsets"):
        ours = [v for v in private[key] if v > 0 or np.isnan(v)]
        np.testing.assert_array_equal(np.asarray(ours, float), np.asarray(public[key], float))


def test_handcrafted_refuses_checkpoint_and_options(tmp_path) -> None:
    with pytest.raises(SpecError):
        load_handcrafted(HANDCRAFTED, tmp_path / "x.pt")
    with pytest.raises(SpecError, match="unknown constructor argument"):
        load_handcrafted(HANDCRAFTED, None, config={"bands": 3})
