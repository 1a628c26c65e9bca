"""Test-time perturbations: each adds what it says (measured SNR, amplitudes, frequencies), is seeded per record,
and the ``--ecgfm-robustness`` option selects them."""

from __future__ import annotations

import numpy as np
import pytest

from ecgfm_suite.data import perturb
from ecgfm_suite.engine.settings import OPTIONS, resolve
from ecgfm_suite.errors import SpecError

FS = 500.0


def _record(seconds: float = 60.0, fs: float = FS, leads: int = 12, seed: int = 0) -> np.ndarray:
    """ECG-like leads of different amplitudes: a 1.2 Hz beat train plus a little noise, in mV."""
    t = np.arange(round(seconds * fs)) / fs
    rng = np.random.default_rng(seed)
    beats = np.exp(-(((t % (1 / 1.2)) - 0.3) ** 2) / (2 * 0.01**2))
    gains = np.linspace(0.3, 2.0, leads)[:, None]
    return (gains * beats + 0.02 * rng.standard_normal((leads, len(t)))).astype(np.float32)


def _apply(name: str, x: np.ndarray, *, key: str = "ludb/1", fs: float = FS, seed: int = 0, read=None) -> np.ndarray:
    return perturb.PERTURBATIONS.get(name).apply(x, fs, perturb.record_rng(seed, name, key), read)


def _peak_hz(y: np.ndarray, fs: float) -> float:
    spectrum = np.abs(np.fft.rfft(y - y.mean()))
    return float(np.fft.rfftfreq(len(y), 1 / fs)[np.argmax(spectrum)])


@pytest.mark.parametrize("snr", [20, 10, 5])
def test_noise_has_the_target_snr_on_every_lead(snr):
    x = _record()
    added = _apply(f"noise_snr{snr}", x).astype(np.float64) - x
    measured = 10 * np.log10(x.astype(np.float64).var(axis=1) / added.var(axis=1))
    np.testing.assert_allclose(measured, snr, atol=0.1)  # 30,000 samples a lead: the estimate's sd is ~0.04 dB
    flat = np.zeros((2, 1000), np.float32)
    assert not _apply(f"noise_snr{snr}", flat).any()  # a flat lead has no power to measure noise against


def test_a_record_is_perturbed_the_same_way_for_every_model_and_process_and_differently_per_record_and_seed():
    x = _record(10.0)
    first = _apply("noise_snr10", x)
    np.testing.assert_array_equal(first, _apply("noise_snr10", x))
    assert not np.array_equal(first, _apply("noise_snr10", x, key="ludb/2"))
    assert not np.array_equal(first, _apply("noise_snr10", x, seed=1))
    # the stream depends on the perturbation's name too: two perturbations never share their draws
    rng_a, rng_b = perturb.record_rng(0, "noise_snr10", "k"), perturb.record_rng(0, "noise_snr20", "k")
    assert rng_a.random() != rng_b.random()


def test_baseline_wander_is_a_half_millivolt_sinusoid_below_half_a_hertz():
    x = _record(120.0, fs=100.0)
    added = _apply("baseline_wander", x, fs=100.0) - x
    assert np.abs(added).max() == pytest.approx(perturb.WANDER_MV, rel=1e-3)
    low, high = perturb.WANDER_HZ
    frequencies = {round(_peak_hz(lead, 100.0), 3) for lead in added}
    assert len(frequencies) == 1 and low - 1 / 120 <= frequencies.pop() <= high + 1 / 120  # one rate, FFT bin 1/120 Hz
    assert len({round(float(lead[0]), 4) for lead in added}) > 1  # phases differ between leads


@pytest.mark.parametrize("hz", [50, 60])
def test_powerline_is_mains_hum_of_a_tenth_of_a_millivolt(hz):
    x = _record(10.0)
    added = _apply(f"powerline_{hz}", x) - x
    amplitude = np.sqrt(2 * np.mean(added.astype(np.float64) ** 2, axis=1))  # 10 s hold whole mains periods
    np.testing.assert_allclose(amplitude, perturb.POWERLINE_MV, rtol=1e-3)
    assert _peak_hz(added[0], FS) == pytest.approx(hz, abs=0.2)
    np.testing.assert_allclose(added, np.broadcast_to(added[0], added.shape), atol=1e-6)  # one phase for all leads


@pytest.mark.parametrize("gain", [0.5, 2.0])
def test_amplitude_scales_exactly(gain):
    x = _record(5.0)
    np.testing.assert_array_equal(_apply(f"amplitude_x{gain:g}", x), x * np.float32(gain))


def _delays(shifted: np.ndarray, x: np.ndarray) -> list[int]:
    """Every delay d (samples, up to the maximum shift) with shifted[:, d:] == x[:, :n - d]."""
    return [d for d in range(round(perturb.MAX_SHIFT_S * FS) + 1)
            if np.array_equal(shifted[:, d:], x[:, : x.shape[1] - d])]


def test_time_shift_delays_the_record_by_at_most_two_seconds_holding_the_isoelectric_level():
    x = _record(10.0)
    shifted = _apply("time_shift", x)
    [d] = _delays(shifted, x)
    np.testing.assert_array_equal(shifted[:, :d], np.broadcast_to(np.median(x, axis=1, keepdims=True), (12, d)))
    assert len({d, *(_delays(_apply("time_shift", x, key=f"r{i}"), x)[0] for i in range(4))}) > 1  # drawn per record


@pytest.mark.parametrize("k", [1, 3, 6])
def test_lead_dropout_zeroes_k_of_the_leads_the_model_reads(k):
    x = _record(5.0)
    read = [0, 1, 6, 7, 8, 9, 10, 11]  # ECG-JEPA's leads of a 12-lead record: III, aVR, aVL, aVF are not read
    out = _apply(f"lead_dropout{k}", x, read=read)
    zeroed = [i for i in range(12) if not out[i].any()]
    assert len(zeroed) == k and set(zeroed) <= set(read)
    untouched = [i for i in range(12) if i not in zeroed]
    np.testing.assert_array_equal(out[untouched], x[untouched])
    with pytest.raises(SpecError, match=f"cannot zero {k}"):
        _apply(f"lead_dropout{k}", x[:k], read=list(range(k)))
    spec = perturb.PERTURBATIONS.get(f"lead_dropout{k}")
    assert "single-lead" in spec.not_applicable(("II",)) and spec.not_applicable(("I", "II")) is None


def test_resampling_to_250_hz_and_back_keeps_the_ecg_band_and_removes_what_250_hz_cannot_hold():
    t = np.arange(5000) / FS
    ecg_band, above = np.sin(2 * np.pi * 10 * t), np.sin(2 * np.pi * 200 * t)
    out = _apply("resample_250", np.stack([ecg_band, above]).astype(np.float32))
    assert out.shape == (2, 5000)
    inner = slice(200, -200)  # away from the filter's edge effects
    np.testing.assert_allclose(out[0, inner], ecg_band[inner], atol=0.01)
    assert np.abs(out[1, inner]).max() < 0.02  # 200 Hz is above 250 Hz's Nyquist frequency
    x = _record(5.0, fs=250.0)
    np.testing.assert_array_equal(_apply("resample_250", x, fs=250.0), x)  # nothing to lose at 250 Hz


def test_a_bad_record_is_refused_naming_the_perturbation():
    with pytest.raises(SpecError, match="noise_snr10"):
        _apply("noise_snr10", np.zeros(10, np.float32))


def test_the_option_selects_default_all_none_or_a_list_and_names_a_typo():
    assert resolve(env={}).robustness == perturb.DEFAULT_PERTURBATIONS
    assert resolve(cli={"robustness": "none"}, env={}).robustness == ()
    every = tuple(name for name, _ in perturb.PERTURBATIONS.registered())
    assert resolve(env={"ECGFM_ROBUSTNESS": "all"}).robustness == every
    assert resolve(ini={"robustness": "time_shift, noise_snr5"}, env={}).robustness == ("time_shift", "noise_snr5")
    with pytest.raises(SpecError, match=r"--ecgfm-robustness: unknown perturbation 'noise_snr15'; did you mean"):
        resolve(cli={"robustness": "noise_snr15"}, env={})
    with pytest.raises(SpecError, match="ECGFM_ROBUSTNESS: perturbation time_shift listed more than once"):
        resolve(env={"ECGFM_ROBUSTNESS": "time_shift,time_shift"})
    with pytest.raises(SpecError, match="comma list"):
        perturb.parse_perturbations(" , ")


def test_the_option_help_names_every_perturbation_and_the_default_set():
    """The help (and so the README row built from it by hand) cannot drift from the registry unnoticed."""
    help_text = next(o.help for o in OPTIONS if o.name == "robustness")
    missing = [name for name, _ in perturb.PERTURBATIONS.registered() if name not in help_text]
    assert not missing
    assert f"default ({', '.join(perturb.DEFAULT_PERTURBATIONS)})" in help_text
