"""CinC 2017 loader: the real 4,151 records (README figures) and written copies of the release layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite._io import sha256_file
from ecgfm_suite.data.datasets import cinc2017
from ecgfm_suite.data.reader import read_signal
from ecgfm_suite.data.records import RECORD_COLUMNS
from ecgfm_suite.errors import DataError, RecordError
from fixtures.layouts import CINC_LABELS, write_cinc2017, write_record


@pytest.fixture(scope="module")
def real(data_dir: Path):
    roots = cinc2017.find_roots(data_dir)
    assert roots == [data_dir / "cinc2017" / "training2017"]
    return cinc2017.scan(roots[0])


@pytest.mark.real_data
def test_real_records_and_labels(real) -> None:
    r = real.records
    assert len(r) == 4151 and real.excluded == [] and real.missing_label_files == []
    assert list(r.columns) == [*RECORD_COLUMNS, *cinc2017.LABEL_COLUMNS]
    assert r["af_label"].value_counts().to_dict() == {"N": 2105, "O": 1024, "A": 738, "~": 284}
    assert set(r["leads"]) == {"I"} and set(r["fs"]) == {300.0} and set(r["region"]) == {"USA"}
    assert r["n_samples"].min() == 2714 and r["n_samples"].max() == 18260
    assert (r["n_samples"] == 9000).sum() == 2867
    # labels are exactly REFERENCE.csv's lines, read here with no CSV machinery
    lines = (real.root / "REFERENCE.csv").read_text().split()
    assert dict(zip(r["record_id"], r["af_label"])) == dict(line.split(",") for line in lines)


@pytest.mark.real_data
def test_real_hash_and_decode(real) -> None:
    row = real.records.set_index("record_id").loc["A00003"]
    assert row["content_hash"] == sha256_file(Path(row["path"]).with_suffix(".mat"))
    # one pair of byte-identical recordings under two names (found with sha256sum over the .mat files)
    dup = real.records[real.records["content_hash"].duplicated(keep=False)]
    assert sorted(dup["record_id"]) == ["A00227", "A01176"]
    sig = read_signal(row)
    assert sig.data.shape == (1, 18000) and sig.leads == ("I",)
    assert 0.05 < np.ptp(sig.data) < 20


# ----------------------------------------------------------------------------- written copies

@pytest.mark.parametrize("extra_header_line", [False, True])
def test_written_layout(tmp_path: Path, extra_header_line: bool) -> None:
    written = write_cinc2017(tmp_path / "challenge-2017" / "1.0.0", extra_header_line=extra_header_line)
    assert cinc2017.find_roots(tmp_path) == [written.root.resolve()]
    index = cinc2017.scan(written.root)
    assert index.excluded == []
    r = index.records.set_index("record_id")
    assert dict(r["af_label"]) == CINC_LABELS
    for rid, truth in written.labels.items():
        assert r.loc[rid, "n_samples"] == truth["n_samples"]
        sig = read_signal(r.loc[rid])
        np.testing.assert_allclose(sig.data[0], truth["signal_mv"], atol=1e-6)


def test_cpsc_style_reference_is_not_cinc2017(tmp_path: Path) -> None:
    # CPSC 2018 also ships REFERENCE.csv, beside 12-lead 500 Hz records
    write_record(tmp_path / "cpsc", "A0001", n_samples=500)
    (tmp_path / "cpsc" / "REFERENCE.csv").write_text("Recording,First_label\nA0001,1\n")
    assert cinc2017.find_roots(tmp_path) == []


def test_bad_label_unlisted_and_missing_records(tmp_path: Path) -> None:
    root = write_cinc2017(tmp_path).root
    ref = root / "REFERENCE.csv"
    ref.write_text(ref.read_text().replace("A00002,A", "A00002,X").replace("A00005,N\n", "") + "A09999,N\n")
    index = cinc2017.scan(root)
    assert list(index.records["record_id"]) == ["A00001", "A00003", "A00004"]
    reasons = {ex.record: ex.reason for ex in index.excluded}
    assert reasons == {
        "A00002": "label 'X' in REFERENCE.csv is not one of N, A, O, ~",
        "A09999": "A09999.hea: cannot read header: No such file or directory",
        "A00005": "missing label: A00005 has no row in REFERENCE.csv",
    }
    with pytest.raises(RecordError, match="label 'X'") as err:
        cinc2017.scan(root, strict=True)
    assert err.value.path == str(ref)


def test_truncated_mat_and_multilead_record(tmp_path: Path) -> None:
    root = write_cinc2017(tmp_path).root
    mat = root / "A00003.mat"
    mat.write_bytes(mat.read_bytes()[:-1000])
    for ext in (".hea", ".dat"):
        (root / f"A00004{ext}").unlink(missing_ok=True)
    (root / "A00004.mat").unlink()
    write_record(root, "A00004", n_leads=2, fs=300.0, n_samples=900)
    index = cinc2017.scan(root)
    reasons = {ex.record: ex.reason for ex in index.excluded}
    assert reasons["A00003"] == "A00003.mat: holds 8500 samples per lead, header says 9000 (truncated)"
    assert reasons["A00004"] == "A00004.hea: 2 signals, CinC 2017 records have one lead"
    assert list(index.records["record_id"]) == ["A00001", "A00002", "A00005"]


def test_reference_with_wrong_columns_is_a_data_error(tmp_path: Path) -> None:
    root = write_cinc2017(tmp_path).root
    (root / "REFERENCE.csv").write_text("A00001,N,extra\n")
    with pytest.raises(DataError, match="expected 2 columns") as err:
        cinc2017.scan(root)
    assert err.value.path == str(root / "REFERENCE.csv")


def test_record_listed_twice_is_excluded_once(tmp_path: Path) -> None:
    root = write_cinc2017(tmp_path).root
    ref = root / "REFERENCE.csv"
    ref.write_text(ref.read_text() + "A00001,A\n")
    index = cinc2017.scan(root)
    assert len(index.records) == 5 and index.records.set_index("record_id").loc["A00001", "af_label"] == "N"
    [ex] = index.excluded
    assert ex.record == "A00001" and ex.reason == "A00001 is listed twice in REFERENCE.csv (first row kept)"
