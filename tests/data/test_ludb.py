"""LUDB loader: real release (counts from the shared data README) and a written full-layout copy."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgfm_suite._io import sha256_file
from ecgfm_suite.data.datasets import ludb
from ecgfm_suite.data.reader import read_signal
from ecgfm_suite.data.records import RECORD_COLUMNS, STD_LEADS
from ecgfm_suite.errors import DataError, RecordError
from fixtures.layouts import write_ludb


@pytest.fixture(scope="module")
def real(data_dir: Path):
    roots = ludb.find_roots(data_dir)
    assert roots == [data_dir / "ludb"]
    return ludb.scan(roots[0])


def _count(records, column: str) -> Counter:
    return Counter(s for values in records[column] for s in values)


@pytest.mark.real_data
def test_real_records_and_columns(real) -> None:
    r = real.records
    assert len(r) == 200 and real.excluded == [] and real.missing_label_files == []
    assert list(r.columns) == [*RECORD_COLUMNS, *ludb.LABEL_COLUMNS]
    assert r["key"].is_unique and set(r["record_id"]) == {str(i) for i in range(1, 201)}
    assert set(r["fs"]) == {500.0} and set(r["n_samples"]) == {5000}
    assert set(r["leads"]) == {",".join(STD_LEADS)}
    assert set(r["region"]) == {"Russia"} and set(r["source"]) == {"ludb"}


@pytest.mark.real_data
def test_real_demographics_match_readme(real) -> None:
    r = real.records.set_index("record_id")
    assert r["sex"].value_counts().to_dict() == {"M": 115, "F": 85}
    assert r["age"].min() == 11 and r["age"].max() == 90
    assert r.loc["34", "age"] == 90  # ludb.csv says ">89"; the header's number is kept


@pytest.mark.real_data
def test_real_statement_counts_match_readme(real) -> None:
    r = real.records
    rhythm = _count(r, "rhythm")
    assert rhythm == {"sinus rhythm": 143, "sinus bradycardia": 25, "atrial fibrillation": 15,
                      "sinus arrhythmia": 8, "sinus tachycardia": 4, "atrial flutter, typical": 3,
                      "wandering atrial pacemaker": 3, "irregular sinus rhythm": 2, "aberrant conduction": 1}
    two = set(r.loc[r["rhythm"].map(len) == 2, "record_id"])
    assert {"109", "127", "140", "184"} <= two
    assert r["axis"].value_counts().to_dict() == {"normal": 75, "left axis deviation": 66, "vertical": 26,
                                                  "horizontal": 20, "right axis deviation": 3}
    hyper = _count(r, "hypertrophy")
    assert hyper["left ventricular hypertrophy"] == 108 and hyper["left atrial hypertrophy"] == 102
    assert hyper["right atrial overload"] == 17 and hyper["right atrial hypertrophy"] == 1
    cond = _count(r, "conduction")
    assert cond["incomplete right bundle branch block"] == 29 and cond["left anterior hemiblock"] == 16
    assert cond["iii degree av-block"] == 5 and cond["non-specific intravintricular conduction delay"] == 4
    assert sum(_count(r, "pacing").values()) == 21 and (r["pacing"].map(len) > 0).sum() == 10
    assert sum(_count(r, "extrasystole").values()) == 35 and (r["extrasystole"].map(len) > 0).sum() == 14
    assert sum(_count(r, "ischemia").values()) == 149 and (r["ischemia"].map(len) > 0).sum() == 51
    assert sum(_count(r, "repolarization").values()) == 85 and (r["repolarization"].map(len) > 0).sum() == 49
    assert _count(r, "other") == {"early repolarization syndrome": 9}
    # normalised: lower case, stripped, no trailing '.'
    for column in ludb.STATEMENT_COLUMNS:
        for s in _count(r, column):
            assert s == s.strip().lower() and not s.endswith(".")


@pytest.mark.real_data
def test_real_labels_agree_with_header_comments(real) -> None:
    """The table and the headers are two copies of the labels: rhythms must agree record by record."""
    for _, row in real.records.iloc[::20].iterrows():
        comments = wfdb.rdheader(row["path"]).comments
        header_rhythms = sorted(c.split(":", 1)[1].strip().rstrip(".").lower()
                                for c in comments if c.startswith("Rhythm:"))
        assert sorted(row["rhythm"]) == header_rhythms, row["record_id"]


@pytest.mark.real_data
def test_real_hash_and_decoded_units(real) -> None:
    row = real.records.iloc[0]
    assert row["content_hash"] == sha256_file(Path(row["path"]).with_suffix(".dat"))
    assert real.records["content_hash"].is_unique
    sig = read_signal(row)
    np.testing.assert_allclose(sig.data, wfdb.rdrecord(row["path"]).p_signal.T, atol=1e-6)
    ptp = np.ptp(sig.data, axis=1)
    assert 0.05 < np.median(ptp) < 20  # plausible mV (LUDB's gains make each lead span exactly 1 mV)


# ----------------------------------------------------------------------------- written copy

def test_written_layout_labels_round_trip(tmp_path: Path) -> None:
    written = write_ludb(tmp_path / "some" / "nested" / "copy")
    assert ludb.find_roots(tmp_path) == [written.root.resolve()]
    index = ludb.scan(written.root)
    assert index.excluded == []
    r = index.records.set_index("record_id")
    assert list(r.index) == list(written.labels)
    for rid, truth in written.labels.items():
        for column in ("sex", "age", "axis", "rhythm", "conduction", "hypertrophy", "ischemia"):
            got = r.loc[rid, column]  # a missing label reads back as NA (pandas' string columns hold NaN)
            assert pd.isna(got) if truth[column] is None else got == truth[column], (rid, column)
        sig = read_signal(r.loc[rid].to_dict())
        gains = np.asarray(wfdb.rdheader(r.loc[rid, "path"]).adc_gain)
        assert np.all(np.abs(sig.data - truth["signal_mv"].T) * gains[:, None] <= 0.501)  # half an ADC step
    assert r.loc["3", "age"] == 90 and pd.isna(r.loc["3", "axis"])
    assert r.loc["3", "rhythm"] == ("atrial fibrillation", "aberrant conduction")


def _copy(tmp_path: Path) -> Path:
    return write_ludb(tmp_path / "ludb").root


def test_truncated_dat_is_excluded(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    dat = root / "data" / "2.dat"
    dat.write_bytes(dat.read_bytes()[:24_000])
    index = ludb.scan(root)
    assert list(index.records["record_id"]) == ["1", "3", "4"]
    [ex] = index.excluded
    assert ex.record == "data/2"
    assert ex.reason == "2.dat: holds 1000 samples per lead, header says 5000 (truncated)"
    with pytest.raises(RecordError, match="holds 1000 samples") as err:
        ludb.scan(root, strict=True)
    assert err.value.path == str(dat)


def test_header_length_mismatch_is_excluded(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    hea = root / "data" / "4.hea"
    hea.write_text(hea.read_text().replace("4 12 500 5000", "4 12 500 4000", 1))
    [ex] = ludb.scan(root).excluded
    assert ex.record == "data/4" and "header says 4000 (extra bytes)" in ex.reason


def test_unknown_sampling_rate_is_excluded(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    hea = root / "data" / "1.hea"
    hea.write_text(hea.read_text().replace("1 12 500 5000", "1 12", 1))
    [ex] = ludb.scan(root).excluded
    assert ex.record == "data/1" and ex.reason.startswith("1.hea: record line '1 12' has no sampling rate")
    with pytest.raises(RecordError, match="no sampling rate"):
        ludb.scan(root, strict=True)


def test_missing_label_and_missing_header(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    with open(root / "ludb.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(root / "ludb.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([r for r in rows if r["ID"] != "3"] + [{**rows[0], "ID": "77"}])
    index = ludb.scan(root)
    assert list(index.records["record_id"]) == ["1", "2", "4"]
    reasons = {ex.record: ex.reason for ex in index.excluded}
    assert reasons["data/3"] == "missing label: record 3 has no row in ludb.csv"
    assert reasons["77"].startswith("ludb.csv lists record 77 but no header file found")
    with pytest.raises(RecordError, match="record 77 but no header") as err:
        ludb.scan(root, strict=True)
    assert err.value.path == str(root / "ludb.csv")


def test_sex_conflict_between_header_and_table(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    hea = root / "data" / "1.hea"
    hea.write_text(hea.read_text().replace("#<sex>: F", "#<sex>: M"))
    [ex] = ludb.scan(root).excluded
    assert ex.record == "data/1" and "sex M in header, F in ludb.csv" in ex.reason


def test_nan_lead_and_wrong_gain_excluded_by_validation(tmp_path: Path) -> None:
    from ecgfm_suite.data.discovery import load_index

    root = _copy(tmp_path)
    dat = root / "data" / "1.dat"
    digital = np.fromfile(dat, dtype="<i2").reshape(-1, 12)
    digital[:, 0] = -32768
    digital.tofile(dat)
    hea = root / "data" / "2.hea"
    lines = hea.read_text().splitlines()
    lines[1:13] = [ln.replace(ln.split()[2], "0.001/mV") for ln in lines[1:13]]
    hea.write_text("\n".join(lines) + "\n")
    assert len(load_index("ludb", tmp_path).records) == 4  # headers alone look fine
    index = load_index("ludb", tmp_path, validate=True)
    assert list(index.records["record_id"]) == ["3", "4"]
    reasons = {ex.record: ex.reason for ex in index.excluded}
    assert reasons["data/1"] == "1.hea: NaN/inf samples in leads I"
    assert reasons["data/2"].startswith("2.hea: implausible amplitude")
    with pytest.raises(RecordError, match="NaN/inf samples in leads I"):
        load_index("ludb", tmp_path, strict=True, validate=True)


def test_table_without_required_columns(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "ludb.csv").write_text("ID,Sex\n1,F\n")
    with pytest.raises(DataError, match="lacks columns Age") as err:
        ludb.scan(root)
    assert err.value.path == str(root / "ludb.csv")


def test_age_falls_back_to_table(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    for rid in ("1", "3"):
        hea = root / "data" / f"{rid}.hea"
        hea.write_text("".join(ln + "\n" for ln in hea.read_text().splitlines() if "<age>" not in ln))
    r = ludb.scan(root).records.set_index("record_id")
    assert r.loc["1", "age"] == 51 and math.isnan(r.loc["3", "age"])  # ">89" is not a number


def test_row_listed_twice_is_excluded_once(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    with open(root / "ludb.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(root / "ludb.csv", "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=list(rows[0])).writerow({**rows[1], "Sex": "F\n"})
    index = ludb.scan(root)
    assert len(index.records) == 4 and index.records.set_index("record_id").loc["2", "sex"] == "M"
    assert [(ex.record, ex.reason) for ex in index.excluded] == [
        ("2", "record 2 is listed twice in ludb.csv (first row kept)")]
