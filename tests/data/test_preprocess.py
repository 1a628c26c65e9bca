"""Properties of the preprocessing primitives, cross-checked with scipy/numpy/scikit-learn."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal as sps
from sklearn.preprocessing import minmax_scale, scale

from ecgfm_suite.data.preprocess import (
    NORMALISATIONS,
    RESAMPLERS,
    WINDOW_POLICIES,
    InputSpec,
    RecordWindows,
    bandpass,
    expected_window_counts,
    lead_sources,
    native_length,
    normalise,
    notch,
    prepare,
    resample,
    select_leads,
    tile_count,
    tile_starts,
    windows,
)
from ecgfm_suite.data.records import STD_LEADS
from ecgfm_suite.errors import SpecError

RATES = (100, 257, 300, 400, 500, 1000)
RATE_PAIRS = [p for p in itertools.product(RATES, RATES) if p[0] != p[1]]
FAST = settings(max_examples=25, deadline=None)
FEW = settings(max_examples=4, deadline=None)


def sine(freq: float, fs: float, seconds: float, phase: float = 0.0, amp: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * fs)) / fs
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def dominant_frequency(x: np.ndarray, fs: float) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * fs / len(x))


# -- resampling ----------------------------------------------------------------------------------


@FAST
@given(
    n=st.integers(1, 4000),
    fs_in=st.one_of(st.sampled_from(RATES), st.floats(50, 2000)),
    fs_out=st.one_of(st.sampled_from(RATES), st.floats(50, 2000)),
    method=st.sampled_from(RESAMPLERS),
    leads=st.integers(1, 3),
)
def test_resample_length_is_exact_and_float32(n, fs_in, fs_out, method, leads):
    x = np.random.default_rng(n).standard_normal((leads, n))
    y = resample(x, fs_in, fs_out, method)
    assert y.shape == (leads, round(n * fs_out / fs_in))
    assert y.dtype == np.float32


@pytest.mark.parametrize(("fs_in", "fs_out"), RATE_PAIRS)
@FEW
@given(rel=st.floats(0.02, 0.4), phase=st.floats(0, 2 * np.pi))
def test_resample_keeps_dominant_frequency_every_rate_pair(fs_in, fs_out, rel, phase):
    freq = rel * min(fs_in, fs_out)  # below both Nyquist rates: no aliasing allowed
    x = sine(freq, fs_in, 10.0, phase)
    for method in RESAMPLERS:
        y = resample(x, fs_in, fs_out, method)
        resolution = fs_out / len(y)  # one FFT bin (0.1 Hz for 10 s)
        assert abs(dominant_frequency(y, fs_out) - freq) <= resolution, method


@pytest.mark.parametrize("method", RESAMPLERS)
@FAST
@given(pair=st.sampled_from(RATE_PAIRS), rel=st.floats(0.01, 0.4), phase=st.floats(0, 2 * np.pi),
       amp=st.floats(0.05, 5.0))
def test_resample_preserves_rms_of_band_limited_sine(method, pair, rel, phase, amp):
    fs_in, fs_out = pair
    # linear interpolation attenuates as frequency rises: keep it to ECG content well below Nyquist
    rel, tol = (min(rel, 0.05), 0.02) if method == "linear" else (rel, 0.01)
    y = resample(sine(rel * min(pair), fs_in, 10.0, phase, amp), fs_in, fs_out, method)
    edge = len(y) // 10  # polyphase filters ring at the record ends (zero padding)
    assert rms(y[edge:-edge]) == pytest.approx(amp / np.sqrt(2), rel=tol)


def test_poly_matches_scipy_default_filter():
    x = np.random.default_rng(0).standard_normal((2, 3001)).astype(np.float32)
    for fs_in, fs_out in RATE_PAIRS:
        ratio = Fraction(fs_out, fs_in)
        expected = sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)[..., : round(3001 * ratio)]
        np.testing.assert_array_equal(resample(x, fs_in, fs_out, "poly"), expected)


@FAST
@given(n=st.integers(2, 500), fs_in=st.sampled_from(RATES), fs_out=st.sampled_from(RATES))
def test_linear_matches_numpy_interp(n, fs_in, fs_out):
    x = np.random.default_rng(n).standard_normal((2, n))
    y = resample(x, fs_in, fs_out, "linear")
    t_out = np.arange(y.shape[-1]) / fs_out
    expected = np.stack([np.interp(t_out, np.arange(n) / fs_in, row) for row in x])
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_fft_resampling_of_a_periodic_sine_is_exact():
    # whole cycles in the window: FFT resampling reconstructs the band-limited signal exactly
    x = sine(7.0, 300, 2.0, phase=0.4)
    np.testing.assert_allclose(resample(x, 300, 500, "fft"), sine(7.0, 500, 2.0, phase=0.4), atol=1e-4)


def test_resample_awkward_ratio_keeps_length_and_frequency():
    x = sine(5.0, 499.7, 10.0)
    y = resample(x, 499.7, 500.0, "poly")
    assert y.shape[-1] == round(len(x) * 500.0 / 499.7)
    assert dominant_frequency(y, 500.0) == pytest.approx(5.0, abs=0.1)


def test_resample_rejects_bad_options():
    x = np.zeros((1, 10), np.float32)
    with pytest.raises(SpecError, match="method"):
        resample(x, 100, 200, "cubic")
    with pytest.raises(SpecError, match="> 0"):
        resample(x, 0, 200)
    assert resample(x, 100, 100).dtype == np.float32


# -- lead mapping --------------------------------------------------------------------------------


@FAST
@given(perm=st.permutations(STD_LEADS), lower=st.booleans())
def test_select_leads_permutation_round_trip(perm, lower):
    x = np.random.default_rng(0).standard_normal((12, 50)).astype(np.float32)
    names = [p.lower() for p in perm] if lower else list(perm)  # 'avr' is the same lead as 'aVR'
    y, mask = select_leads(x, names, STD_LEADS)
    assert mask.all()
    for j, lead in enumerate(STD_LEADS):
        np.testing.assert_array_equal(y[j], x[list(perm).index(lead)])
    back, _ = select_leads(y, STD_LEADS, tuple(perm))
    np.testing.assert_array_equal(back, x)


@FAST
@given(present=st.lists(st.sampled_from(STD_LEADS), min_size=1, max_size=11, unique=True))
def test_select_leads_zero_fills_missing_and_masks_them(present):
    x = np.random.default_rng(1).standard_normal((len(present), 40)).astype(np.float32) + 1.0
    y, mask = select_leads(x, present, STD_LEADS, "zero")
    assert mask.tolist() == [lead in present for lead in STD_LEADS]
    assert not y[~mask].any()
    for i, lead in enumerate(present):
        np.testing.assert_array_equal(y[STD_LEADS.index(lead)], x[i])


def test_select_leads_refuse_names_missing_and_present_leads():
    with pytest.raises(SpecError) as err:
        select_leads(np.ones((2, 10)), ("I", "II"), ("I", "V1", "V2"), "refuse", path="ludb/1")
    message = str(err.value)
    assert "['V1', 'V2']" in message and "['I', 'II']" in message and message.startswith("ludb/1")


def test_select_leads_nan_and_flat_leads_are_masked():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 100)).astype(np.float32)
    x[0] = np.nan  # all-NaN lead
    x[1, 10:12] = np.nan  # two dropped samples in a live lead
    x[2] = 0.7  # flat (disconnected) lead with an offset
    x[3, 5] = np.inf
    y, mask = select_leads(x, ("I", "II", "III", "aVR"), ("I", "II", "III", "aVR"))
    assert mask.tolist() == [False, True, False, True]
    assert np.isfinite(y).all()
    assert not y[0].any() and (y[2] == np.float32(0.7)).all()  # NaN → 0; a flat lead keeps its value
    assert y[1, 10] == 0 and y[1, 0] == x[1, 0] and y[3, 5] == 0


def test_select_leads_rejects_shape_mismatch_and_duplicate_leads():
    with pytest.raises(SpecError, match="does not match"):
        select_leads(np.ones((3, 10)), ("I", "II"), ("I",))
    with pytest.raises(SpecError, match="twice"):
        select_leads(np.ones((2, 10)), ("aVR", "AVR"), ("aVR",))
    with pytest.raises(SpecError, match="missing"):
        select_leads(np.ones((1, 10)), ("I",), ("I",), "drop")


def test_lead_sources_say_which_record_leads_a_model_reads():
    """What input attribution makes players of: a model's own leads, or their fallback where one is absent."""
    assert lead_sources(("I", "II", "V1"), ("V1", "II")) == [2, 1]
    assert lead_sources(("I",), ("II",)) == [None]
    assert lead_sources(("I",), ("II",), (("II", "I"),)) == [0]  # CinC 2017's single lead for a lead-II model
    assert lead_sources(("I", "ii"), ("II",), (("II", "I"),)) == [1]  # its own lead wins over the fallback
    with pytest.raises(SpecError, match="twice"):
        lead_sources(("aVR", "AVR"), ("aVR",))


# -- windows -------------------------------------------------------------------------------------


@FAST
@given(n=st.integers(1, 3000), length=st.integers(1, 700), mode=st.sampled_from(["first", "all", "crops"]),
       n_crops=st.integers(1, 5))
def test_windows_count_coverage_and_padding(n, length, mode, n_crops):
    x = np.arange(2 * n, dtype=np.float32).reshape(2, n) + 1.0  # no zeros: padding is detectable
    w = windows(x, length, mode, n_crops)
    assert w.dtype == np.float32 and w.shape[1:] == (2, length)
    if n <= length:
        assert len(w) == 1
        np.testing.assert_array_equal(w[0, :, :n], x)
        assert not w[0, :, n:].any()
        return
    expected = {"first": 1, "all": n // length, "crops": n_crops}[mode]
    assert len(w) == expected
    starts = [int(wi[0, 0] - 1) for wi in w]  # x[0, s] == s + 1
    for s, wi in zip(starts, w, strict=True):
        np.testing.assert_array_equal(wi, x[:, s : s + length])
    assert starts[0] == 0
    if mode == "all":
        assert starts == list(range(0, (n // length) * length, length))  # contiguous, non-overlapping
    if mode == "crops" and n_crops > 1:
        assert starts[-1] == n - length  # the last crop ends at the record's end
        gaps = np.diff(starts)
        assert gaps.max() - gaps.min() <= 1  # evenly spaced (to rounding)


def test_windows_work_on_one_lead_vectors_and_reject_bad_options():
    assert windows(np.ones(10), 4, "all").shape == (2, 4)
    with pytest.raises(SpecError):
        windows(np.ones((1, 10)), 0)
    with pytest.raises(SpecError):
        windows(np.ones((1, 10)), 4, "random")


# -- normalisation -------------------------------------------------------------------------------


@FAST
@given(seed=st.integers(0, 10**6), offset=st.floats(-5, 5), gain=st.floats(0.01, 10))
def test_normalisations_match_sklearn_and_ranges(seed, offset, gain):
    x = (np.random.default_rng(seed).standard_normal((3, 200)) * gain + offset).astype(np.float32)
    x64 = x.astype(np.float64)  # float64 references
    np.testing.assert_allclose(normalise(x, "zscore_lead"), scale(x64, axis=1), atol=1e-4)
    np.testing.assert_allclose(normalise(x, "zscore_global"), scale(x64.ravel()).reshape(x.shape), atol=1e-4)
    mm = normalise(x, "minmax_lead")
    np.testing.assert_allclose(mm, minmax_scale(x64, feature_range=(-1, 1), axis=1), atol=1e-4)
    assert mm.min() >= -1 and mm.max() <= 1
    mg = normalise(x, "minmax_global")
    np.testing.assert_allclose(mg, minmax_scale(x64.ravel()).reshape(x.shape), atol=1e-4)
    assert mg.min() >= 0 and mg.max() <= 1
    np.testing.assert_array_equal(normalise(x, "none"), x)


@pytest.mark.parametrize("kind", NORMALISATIONS[1:])
@pytest.mark.parametrize("value", [0.0, 0.1, -3.3, 1e4])
def test_constant_input_maps_to_zero(kind, value):
    x = np.random.default_rng(3).standard_normal((3, 500)).astype(np.float32)
    x[1] = value  # 0.1 in float32 has a non-zero float std: an exact constancy test is needed
    y = normalise(x, kind)
    assert np.isfinite(y).all()
    if kind.endswith("_lead"):
        assert not y[1].any() and y[0].std() > 0.1
    assert not normalise(np.full((2, 100), value, np.float32), kind).any()


def test_global_normalisation_of_a_window_stack_is_per_window():
    w = np.stack([np.random.default_rng(i).standard_normal((2, 100)) * (i + 1) + i for i in range(3)])
    y = normalise(w, "zscore_global")
    for yi in y:
        assert abs(yi.mean()) < 1e-5 and yi.std() == pytest.approx(1, abs=1e-4)


# -- filters -------------------------------------------------------------------------------------


def test_bandpass_passes_the_band_and_removes_baseline_and_high_frequencies():
    fs = 500
    x = sine(10, fs, 30) + sine(0.1, fs, 30, amp=2) + sine(120, fs, 30)
    y = bandpass(x, fs, 0.67, 40.0)
    core = slice(4 * fs, -4 * fs)  # the high-pass settles within ~3 s of each end
    np.testing.assert_allclose(y[core], sine(10, fs, 30)[core], atol=0.01)
    assert y.dtype == np.float32


def test_bandpass_caps_high_edge_and_handles_short_records():
    assert np.isfinite(bandpass(np.random.default_rng(0).standard_normal((12, 1000)), 100, 0.05, 47.0)).all()
    assert bandpass(np.ones((2, 5)), 500, 0.5, 40.0).shape == (2, 5)
    assert np.isfinite(bandpass(np.ones((1, 400)), 500, 0.0, 40.0)).all()  # low 0 → low-pass
    with pytest.raises(SpecError):
        bandpass(np.ones((1, 100)), 500, 40.0, 0.5)
    with pytest.raises(SpecError, match="0.45"):
        bandpass(np.ones((1, 100)), 10, 5.0, 8.0)


def test_notch_removes_mains_keeps_ecg_band():
    fs = 500
    y = notch(sine(10, fs, 10) + sine(50, fs, 10), fs, 50.0)
    core = slice(fs, -fs)
    np.testing.assert_allclose(y[core], sine(10, fs, 10)[core], atol=0.05)
    np.testing.assert_array_equal(notch(np.ones((1, 50), np.float32), 100, 50.0), np.ones((1, 50)))  # ≥ Nyquist
    assert notch(np.ones((1, 5)), 500, 50.0).shape == (1, 5)


# -- spec and pipeline ---------------------------------------------------------------------------


def test_input_spec_round_trip_and_validation():
    spec = InputSpec(fs=250, leads=["I", "II"], window=2250, window_mode="crops", n_crops=3, bandpass=[0.67, 40])
    assert spec.leads == ("I", "II") and spec.bandpass == (0.67, 40.0)
    assert InputSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SpecError, match="unknown InputSpec keys"):
        InputSpec.from_dict({**spec.to_dict(), "widow": 3})
    for bad, field in [({"window_mode": "sliding"}, "window_mode"), ({"n_crops": 0}, "n_crops"),
                       ({"normalisation": "l2"}, "normalisation"), ({"resampler": "cubic"}, "resampler"),
                       ({"missing_leads": "drop"}, "missing_leads"), ({"bandpass": (40, 0.5)}, "bandpass"),
                       ({"notch": 0}, "notch"), ({"leads": ("I", "i")}, "leads"), ({"fs": 0}, "fs")]:
        with pytest.raises(SpecError) as err:
            InputSpec(**{"fs": 500, "leads": ("I",), "window": 10, **bad})
        assert err.value.path == f"InputSpec.{field}"


def test_prepare_generic_pipeline_on_a_single_lead_record():
    x = np.random.default_rng(4).standard_normal((1, 9000)).astype(np.float32) * 0.3 + 0.5  # 30 s at 300 Hz
    spec = InputSpec(fs=500, leads=("I",), window=5000, window_mode="all", normalisation="zscore_lead",
                     bandpass=(0.5, 40.0), notch=50.0)
    w = prepare(x, 300, ("I",), spec)
    assert w.shape == (3, 1, 5000) and w.dtype == np.float32
    assert abs(w.mean()) < 0.05  # normalised over the whole record before windowing
    with pytest.raises(SpecError, match="V1"):
        prepare(x, 300, ("I",), InputSpec(fs=500, leads=("I", "V1"), window=5000, missing_leads="refuse"))


def test_every_catalog_spec_prepares_a_12_lead_record():
    from ecgfm_suite.models.catalog import MODELS

    x = np.random.default_rng(5).standard_normal((12, 5000)).astype(np.float32)  # 10 s at 500 Hz
    for model in MODELS:
        spec = MODELS.get(model).input_spec
        w = prepare(x, 500, STD_LEADS, spec)
        assert w.shape[1:] == (len(spec.leads), spec.window), model
        assert np.isfinite(w).all() and w.dtype == np.float32


# -- record-level window policy ------------------------------------------------------------------


@FAST
@given(n=st.integers(1, 5000), length=st.integers(1, 700))
def test_cover_tiles_the_whole_record_with_the_last_window_aligned_to_its_end(n, length):
    starts = tile_starts(n, length)
    assert len(starts) == int(tile_count(n, length)) == max(1, -(-n // length))
    assert starts[0] == 0 and (np.diff(starts) > 0).all()
    if n <= length:  # one window, padded by the family as before
        assert starts.tolist() == [0]
        return
    assert starts[-1] == n - length  # no tail dropped
    assert (np.diff(starts)[:-1] == length).all() and np.diff(starts)[-1] <= length  # only the last one overlaps
    covered = np.zeros(n, bool)
    for s in starts:
        covered[s : s + length] = True
    assert covered.all()


def test_tiles_of_exact_multiples_are_disjoint_and_short_records_get_one_window():
    assert tile_starts(30, 10).tolist() == [0, 10, 20]
    assert tile_starts(25, 10).tolist() == [0, 10, 15]
    assert tile_starts(10, 10).tolist() == [0] and tile_starts(3, 10).tolist() == [0]
    np.testing.assert_array_equal(tile_count(np.array([0, 3, 10, 11, 30, 31]), 10), [1, 1, 1, 2, 3, 4])
    with pytest.raises(SpecError):
        tile_starts(10, 0)


@pytest.mark.parametrize("fs", [100.0, 250.0, 257.0, 300.0, 360.0, 400.0, 500.0, 1000.0, 499.7])
@pytest.mark.parametrize("spec_fs, window", [(500, 5000), (100, 500), (240, 600), (250, 2250)])
def test_a_native_tile_resamples_to_at_least_one_window_and_at_most_one_sample_more(fs, spec_fs, window):
    spec = InputSpec(fs=spec_fs, leads=("I",), window=window)
    n = native_length(fs, spec)
    for out in (round(n * spec_fs / fs), int(n * spec_fs / fs), int(n * (spec_fs / fs))):
        assert out >= window
    assert n - 1 < window * fs / spec_fs + 1  # the smallest such length (to a float-rounding sample)
    assert resample(np.zeros((1, n), np.float32), fs, spec_fs).shape[-1] >= window


def _marking_prepare(x, fs, leads):
    """A stand-in family pipeline: 3 windows of 2 samples per call, each holding the call's first sample and
    length (so the test sees which part of the record each window came from)."""
    x = np.asarray(x)
    return np.stack([np.full((1, 2), [x[0, 0], x.shape[-1]], np.float32) for _ in range(3)])


def test_the_three_policies_on_one_record():
    spec = InputSpec(fs=100, leads=("I",), window=1000)  # 10 s windows
    x = np.arange(2500, dtype=np.float32)[None] + 1  # 25 s at 100 Hz
    got = {p: RecordWindows(_marking_prepare, InputSpec(**{**spec.to_dict(), "window_policy": p}))(x, 100.0, ("I",))
           for p in WINDOW_POLICIES}
    np.testing.assert_array_equal(got["official"], _marking_prepare(x, 100.0, ("I",)))  # the family's, untouched
    np.testing.assert_array_equal(got["first"], got["official"][:1])
    # cover: tiles at 0, 10 s and 15 s (aligned to the end), each 10 s, each the first window of its own call
    assert got["cover"][:, 0, 0].tolist() == [1, 1001, 1501] and got["cover"][:, 0, 1].tolist() == [1000] * 3
    assert RecordWindows(_marking_prepare, spec)(x, 100.0, ("I",)).shape == got["cover"].shape  # the default
    short = x[:, :400]
    assert RecordWindows(_marking_prepare, spec)(short, 100.0, ("I",))[:, 0].tolist() == [[1, 400]]


def test_cover_cuts_tiles_at_the_records_own_rate():
    spec = InputSpec(fs=500, leads=("I",), window=5000, window_policy="cover")
    x = np.arange(9000, dtype=np.float32)[None] + 1  # 30 s at 300 Hz: three 10-s tiles of 3000 samples
    out = RecordWindows(_marking_prepare, spec)(x, 300.0, ("I",))
    assert out[:, 0, 0].tolist() == [1, 3001, 6001] and out[:, 0, 1].tolist() == [3000] * 3


def test_window_counts_follow_the_policy_from_lengths_and_rates_alone():
    spec = InputSpec(fs=500, leads=("II",), window=5000)
    n, fs = np.array([9000, 18300, 100, 5000, 5001]), np.array([300.0, 300.0, 300.0, 500.0, 500.0])
    np.testing.assert_array_equal(expected_window_counts(n, fs, spec), [3, 7, 1, 1, 2])
    np.testing.assert_array_equal(expected_window_counts(n, fs, InputSpec(**{**spec.to_dict(),
                                                                               "window_policy": "first"})), [1] * 5)
    assert expected_window_counts(n, fs, InputSpec(**{**spec.to_dict(), "window_policy": "official"})) is None


def test_the_window_policy_is_a_validated_spec_field():
    spec = InputSpec(fs=100, leads=("I",), window=10)
    assert spec.window_policy is None and spec.policy == "cover"  # None: the run's policy, cover by default
    assert InputSpec.from_dict({**spec.to_dict(), "window_policy": "official"}).policy == "official"
    with pytest.raises(SpecError) as err:
        InputSpec(fs=100, leads=("I",), window=10, window_policy="sliding")
    assert err.value.path == "InputSpec.window_policy"
