"""reader.read_signal / read_and_validate: mV on real and written records, and every bad-signal path."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgfm_suite.data.datasets import challenge
from ecgfm_suite.data.reader import decode_samples, read_and_validate, read_header, read_signal
from ecgfm_suite.data.records import STD_LEADS
from ecgfm_suite.errors import RecordError
from fixtures.layouts import synthetic_ecg, write_record


def _row(path: Path, **extra) -> dict:
    return {"path": str(path), "format": "wfdb", **extra}


def _edit_header(record: Path, pattern: str, repl: str, count: int = 0) -> None:
    hea = record.with_name(record.name + ".hea")
    text, n = re.subn(pattern, repl, hea.read_text(), count=count, flags=re.MULTILINE)
    assert n, f"{pattern!r} not in {hea}"
    hea.write_text(text)


@pytest.mark.real_data
def test_real_ludb_record_in_mv_equals_wfdb(data_dir: Path) -> None:
    path = data_dir / "ludb" / "data" / "1"
    sig = read_signal(_row(path))
    ref = wfdb.rdrecord(str(path))
    assert sig.data.dtype == np.float32 and sig.data.shape == (12, 5000)
    assert sig.fs == 500.0 and sig.leads == STD_LEADS  # header says i, ii, ..., avr: canonicalised
    np.testing.assert_allclose(sig.data, ref.p_signal.T, rtol=0, atol=1e-6)
    # independent decode: (digital - baseline) / gain from the raw format-16 samples
    digital = np.fromfile(path.with_suffix(".dat"), dtype="<i2").reshape(-1, 12).T
    expected = (digital - np.asarray(ref.baseline)[:, None]) / np.asarray(ref.adc_gain)[:, None]
    np.testing.assert_allclose(sig.data, expected, atol=1e-6)
    ptp = np.ptp(sig.data, axis=1)
    assert np.all((ptp > 0.2) & (ptp < 10)), ptp  # mV, not ADC units
    assert read_and_validate(_row(path)).data.shape == (12, 5000)


@pytest.mark.real_data
def test_real_cinc2017_mat_record_via_wfdb(data_dir: Path) -> None:
    path = data_dir / "cinc2017" / "training2017" / "A00003"
    sig = read_signal(_row(path, leads="I", fs=300.0, n_samples=18000))
    raw = np.fromfile(path.with_suffix(".mat"), dtype="<i2", offset=24)  # MATLAB v4 'val', gain 1000/mV
    assert sig.leads == ("I",) and sig.fs == 300.0
    np.testing.assert_allclose(sig.data[0], raw / 1000.0, atol=1e-6)


@pytest.mark.real_data
def test_challenge_mat_rows_are_delegated(data_dir: Path) -> None:
    path = data_dir / "challenge-2020-2021" / "georgia" / "E00009"
    sig = read_signal({"path": str(path), "format": "challenge_mat"})
    ref = challenge.read_challenge_mat(path)
    np.testing.assert_array_equal(sig.data, ref.data)
    assert sig.leads == ref.leads == STD_LEADS


def test_microvolt_units_are_converted(tmp_path: Path) -> None:
    path = write_record(tmp_path, "uv", n_leads=3, fs=250, n_samples=500, units="uV", gain=1.0, seed=3)
    assert read_header(path).units == ["uV"] * 3
    sig = read_signal(_row(path))
    truth = synthetic_ecg(3, 250, 500, seed=3).T
    np.testing.assert_allclose(sig.data, truth, atol=1e-3)  # µV rounding → 0.5 µV


@pytest.mark.parametrize("units", ["furlong", "mmHg"])
def test_unknown_units_raise(tmp_path: Path, units: str) -> None:
    path = write_record(tmp_path, "r", n_leads=2, n_samples=200)
    _edit_header(path, r"/mV", f"/{units}")
    with pytest.raises(RecordError, match=f"unknown signal units '{units}'") as err:
        read_signal(_row(path))
    assert err.value.path.endswith("r.hea")


def test_truncated_signal_file_names_file_and_lengths(tmp_path: Path) -> None:
    path = write_record(tmp_path, "cut", n_leads=12, n_samples=1000)
    dat = path.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[: 12 * 2 * 600])
    with pytest.raises(RecordError) as err:
        read_signal(_row(path))
    assert err.value.path == str(dat)
    assert "holds 600 samples" in err.value.reason and "header says 1000" in err.value.reason
    assert "truncated" in str(err.value)


def test_partial_frame_is_truncation(tmp_path: Path) -> None:
    path = write_record(tmp_path, "cut", n_leads=12, n_samples=1000)
    dat = path.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:-5])
    with pytest.raises(RecordError, match="header says 1000.*truncated"):
        read_signal(_row(path))


def test_header_longer_than_file(tmp_path: Path) -> None:
    path = write_record(tmp_path, "r", n_leads=12, n_samples=1000)
    _edit_header(path, r"^r 12 500 1000", "r 12 500 1200")
    with pytest.raises(RecordError, match="holds 1000 samples per lead, header says 1200"):
        read_signal(_row(path))


def test_extra_bytes_are_a_mismatch(tmp_path: Path) -> None:
    path = write_record(tmp_path, "r", n_leads=12, n_samples=1000)
    _edit_header(path, r"^r 12 500 1000", "r 12 500 800")
    with pytest.raises(RecordError, match="holds 1000 samples per lead, header says 800 \\(extra bytes\\)"):
        read_signal(_row(path))


def test_missing_signal_file(tmp_path: Path) -> None:
    path = write_record(tmp_path, "r", n_leads=2, n_samples=100)
    path.with_suffix(".dat").unlink()
    with pytest.raises(RecordError, match="signal file is missing"):
        read_signal(_row(path))


def test_missing_header(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="cannot read header") as err:
        read_signal(_row(tmp_path / "nothing"))
    assert err.value.path == str(tmp_path / "nothing.hea")


@pytest.mark.parametrize(("line", "reason"), [
    ("r 12", "has no sampling rate"),  # wfdb alone would assume 250 Hz
    ("r 12 500", "has no sample count"),
    ("r 12 0 1000", "invalid sampling rate 0"),
])
def test_unknown_sampling_rate_or_length(tmp_path: Path, line: str, reason: str) -> None:
    path = write_record(tmp_path, "r", n_leads=12, n_samples=1000)
    _edit_header(path, r"^r 12 500 1000", line)
    assert wfdb.rdheader(str(path)).fs in (250, 500, 0)  # wfdb itself does not object
    with pytest.raises(RecordError, match=reason) as err:
        read_signal(_row(path))
    assert err.value.path == str(path) + ".hea"


def test_garbled_header(tmp_path: Path) -> None:
    path = write_record(tmp_path, "r", n_leads=2, n_samples=100)
    path.with_name("r.hea").write_text("r 2 500 100\nthis is not a signal line\n")
    with pytest.raises(RecordError, match="unparsable header"):
        read_signal(_row(path))


def test_index_row_disagreeing_with_header(tmp_path: Path) -> None:
    path = write_record(tmp_path, "r", n_leads=2, n_samples=100)
    with pytest.raises(RecordError, match="header says fs=500, index says 100"):
        read_signal(_row(path, fs=100.0))
    with pytest.raises(RecordError, match="index lists 3 leads, header has 2"):
        read_signal(_row(path, leads="I,II,III"))


def test_nan_lead_fails_validation(tmp_path: Path) -> None:
    path = write_record(tmp_path, "r", n_leads=12, n_samples=1000)
    dat = path.with_suffix(".dat")
    digital = np.fromfile(dat, dtype="<i2").reshape(-1, 12)
    digital[:, 4] = -32768  # WFDB's invalid-sample code for format 16
    digital.tofile(dat)
    sig = read_signal(_row(path))
    assert np.isnan(sig.data[4]).all() and np.isfinite(np.delete(sig.data, 4, axis=0)).all()
    with pytest.raises(RecordError, match="NaN/inf samples in leads aVL") as err:
        read_and_validate(_row(path))
    assert err.value.path == str(path) + ".hea"


def test_wrong_gain_fails_validation(tmp_path: Path) -> None:
    path = write_record(tmp_path, "r", n_leads=12, n_samples=1000)
    assert read_and_validate(_row(path))
    _edit_header(path, r"1000\.0\(0\)/mV", "1.0(0)/mV")
    with pytest.raises(RecordError, match="implausible amplitude"):
        read_and_validate(_row(path))


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="unknown record format 'edf'"):
        read_signal({"path": str(tmp_path / "x"), "format": "edf"})


# ------------------------------------------------- read_header == wfdb.rdheader (the fast path's proof)

def _same_as_wfdb(record: Path) -> None:
    ours, theirs = read_header(record), wfdb.rdheader(str(record))
    # repr, not ==: 500 == 500.0 and 1 == True, but the types must match too
    assert repr(sorted(vars(ours).items())) == repr(sorted(vars(theirs).items())), record


@pytest.mark.real_data
def test_read_header_equals_wfdb_on_real_headers(data_dir: Path) -> None:
    """Every 2nd real header (every 100th of CinC 2017's), all of Georgia's: identical fields; where wfdb
    fails, so do we."""
    headers = sorted(data_dir.rglob("*.hea"))
    cinc = [h for h in headers if "cinc2017" in h.parts]
    georgia = [h for h in headers if "georgia" in h.parts]
    others = [h for h in headers if "cinc2017" not in h.parts and "georgia" not in h.parts]
    chosen = others[::2] + georgia + cinc[::100]
    assert len(chosen) > 400
    failed = 0
    for hea in chosen:
        record = hea.with_suffix("")
        try:
            wfdb.rdheader(str(record))
        except ValueError:  # Georgia's "E00009.mat" record line
            failed += 1
            with pytest.raises(RecordError, match="invalid syntax in record line"):
                read_header(record)
            continue
        _same_as_wfdb(record)
    assert failed == 30  # the 30 Georgia headers (README)


@pytest.mark.parametrize("text", [
    # skew, samples per frame, byte offset, float fs, counter frequency and base counter, time and date
    "r 2 128.5/64(3) 100 10:11:12.5 05/06/2007\n"
    "r.dat 16x2:3+24 200(5)/uV 12 0 1 2 0 ECG lead\n"
    "r.dat 16x2 0/mV 12 7 0 0 0 II\n",
    # gain without baseline but with ADC zero (baseline defaults to it); gain 0 means 200; no units
    "r 2 500 1000\nr.dat 212 100 12 -3 5 0 0 V1\nr.dat 212 0 12 -3 5 0 0 V2\n#c: one\n# two \n",
    # bare signal lines, trailing spaces, time only
    "r 1 360 20 0:00:01 \nr.dat 80 \n",
])
def test_read_header_equals_wfdb_on_edge_cases(tmp_path: Path, text: str) -> None:
    (tmp_path / "r.hea").write_text(text)
    _same_as_wfdb(tmp_path / "r")


# ------------------------------------- decode_samples == wfdb.rdrecord (read_signal's decode, without rdheader)

def _same_record_as_wfdb(record: Path) -> None:
    """Every field of ``wfdb.rdrecord(physical=True)``, arrays bit for bit with their dtype."""
    ours, theirs = vars(decode_samples(read_header(record), record)), vars(wfdb.rdrecord(str(record)))
    assert ours.keys() == theirs.keys(), record
    assert isinstance(ours["p_signal"], np.ndarray) and ours["p_signal"].dtype == np.float64
    for name, value in theirs.items():
        if isinstance(value, np.ndarray):
            assert ours[name].dtype == value.dtype and np.array_equal(ours[name], value, equal_nan=True), (record, name)
        else:
            assert repr(ours[name]) == repr(value), (record, name)


@pytest.mark.real_data
def test_decode_samples_equals_wfdb_on_real_records(data_dir: Path) -> None:
    """Every 4th real WFDB record of each dataset (every 50th of CinC 2017's ``16+24`` .mat), Georgia aside
    (its record line defeats wfdb; those go through ``challenge_mat``)."""
    headers = sorted(h for h in data_dir.rglob("*.hea") if "georgia" not in h.parts)
    cinc = [h for h in headers if "cinc2017" in h.parts]
    chosen = [h for h in headers if "cinc2017" not in h.parts][::4] + cinc[::50]
    assert len(chosen) > 150 and any(h.with_suffix(".mat").exists() for h in chosen)
    for hea in chosen:
        _same_record_as_wfdb(hea.with_suffix(""))


def _layout(directory: Path, case: str) -> Path:
    """A record wfdb writes, then edited into one of the sample layouts the decoder must honour."""
    rng = np.random.default_rng(7)
    digital = rng.integers(-90, 90, size=(300, 2))
    fmt = case if case.isdigit() else "16"
    wfdb.wrsamp("r", fs=250, units=["mV", "uV"], sig_name=["I", "II"], d_signal=digital, fmt=[fmt, fmt],
                adc_gain=[40.0, 40.0], baseline=[3, -2], write_dir=str(directory))
    record, dat = directory / "r", directory / "r.dat"
    if case == "byte offset":
        dat.write_bytes(b"\0" * 24 + dat.read_bytes())
        _edit_header(record, r"^r\.dat 16 ", "r.dat 16+24 ")
    elif case == "skew":
        _edit_header(record, r"^(r\.dat 16) (.*II)$", r"\1:3 \2")
    elif case == "two files":
        (directory / "r2.dat").write_bytes(digital[:, 1].astype("<i2").tobytes())
        dat.write_bytes(digital[:, :1].astype("<i2").tobytes())
        _edit_header(record, r"^r\.dat (.*II)$", r"r2.dat \1")
    elif case == "samples per frame":  # lead II at twice the frame rate
        e_d = [digital[:, 0], np.repeat(digital[:, 1], 2) + np.tile([0, 1], 300)]
        wfdb.Record(record_name="r", n_sig=2, fs=250, sig_len=300, file_name=["r.dat"] * 2, fmt=["16"] * 2,
                    samps_per_frame=[1, 2], adc_gain=[40.0] * 2, baseline=[0, 0], units=["mV"] * 2,
                    sig_name=["I", "II"], e_d_signal=e_d, adc_res=[16] * 2, adc_zero=[0, 0],
                    init_value=[int(s[0]) for s in e_d], checksum=[0, 0], block_size=[0, 0],
                    ).wrsamp(expanded=True, write_dir=str(directory))
    return record


@pytest.mark.parametrize("case", ["16", "24", "32", "80", "508", "516", "byte offset", "skew", "two files",
                                  "samples per frame"])
def test_decode_samples_equals_wfdb_on_sample_layouts(tmp_path: Path, case: str) -> None:
    record = _layout(tmp_path, case)
    _same_record_as_wfdb(record)
    sig = read_signal(_row(record))
    assert sig.data.dtype == np.float32 and sig.data.shape[0] == 2
