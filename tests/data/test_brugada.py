"""Brugada-HUCA loader: the real 10 records (no metadata.csv) and written copies with and without it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgfm_suite._io import sha256_file
from ecgfm_suite.data.datasets import brugada
from ecgfm_suite.data.reader import read_and_validate
from ecgfm_suite.data.records import RECORD_COLUMNS, STD_LEADS
from ecgfm_suite.errors import DataError, RecordError
from fixtures.layouts import BRUGADA_IDS, write_brugada, write_record

REAL_IDS = ["188981", "251972", "265715", "267628", "267630", "286830", "287355", "292220", "292666", "304141"]


@pytest.mark.real_data
def test_real_records_without_metadata(data_dir: Path) -> None:
    roots = brugada.find_roots(data_dir)
    assert roots == [data_dir / "brugada-huca"]  # found from the headers alone
    index = brugada.scan(roots[0])
    r = index.records
    assert list(r.columns) == [*RECORD_COLUMNS, *brugada.LABEL_COLUMNS]
    assert list(r["record_id"]) == REAL_IDS and index.excluded == []
    assert index.missing_label_files == [str(roots[0] / "metadata.csv")]
    assert r[list(brugada.LABEL_COLUMNS)].isna().all().all()
    assert set(r["fs"]) == {100.0} and set(r["n_samples"]) == {1200}
    assert set(r["leads"]) == {",".join(STD_LEADS)} and set(r["region"]) == {"Spain"}
    assert list(r["patient_id"]) == REAL_IDS
    row = r.iloc[0]
    assert row["content_hash"] == sha256_file(Path(row["path"]).with_suffix(".dat"))
    sig = read_and_validate(row)
    np.testing.assert_allclose(sig.data, wfdb.rdrecord(row["path"]).p_signal.T, atol=1e-6)


def test_written_layout_with_metadata(tmp_path: Path) -> None:
    written = write_brugada(tmp_path / "downloads" / "brugada-huca-12-lead-1.0.0")
    assert brugada.find_roots(tmp_path) == [written.root.resolve()]
    index = brugada.scan(written.root)
    assert index.missing_label_files == [] and index.excluded == []
    r = index.records.set_index("record_id")
    assert list(r.index) == list(BRUGADA_IDS)
    for pid, truth in written.labels.items():
        for column, value in truth.items():
            got = r.loc[pid, column]
            assert (math.isnan(got) and math.isnan(value)) or got == value, (pid, column)
    assert r.loc["267630", "brugada"] == 2.0 and math.isnan(r.loc["267630", "basal_pattern"])


def test_written_layout_without_metadata(tmp_path: Path) -> None:
    written = write_brugada(tmp_path / "x", metadata=False)
    assert brugada.find_roots(tmp_path) == [written.root.resolve()]
    index = brugada.scan(written.root)
    assert len(index.records) == 3
    assert index.missing_label_files == [str(written.root / "metadata.csv")]
    assert index.records["brugada"].isna().all()


def test_metadata_alone_marks_the_root(tmp_path: Path) -> None:
    written = write_brugada(tmp_path / "b")
    for pid in BRUGADA_IDS:  # headers with comments would not pass the header check
        hea = written.root / "files" / pid / f"{pid}.hea"
        hea.write_text(hea.read_text() + "#note: edited\n")
    assert brugada.find_roots(tmp_path) == [written.root.resolve()]


def test_lookalikes_are_not_brugada(tmp_path: Path) -> None:
    # files/<id>/<id>.hea but 500 Hz; files/<id>/<id>.hea at 100 Hz but with comment lines;
    # a metadata.csv with other columns
    write_record(tmp_path / "a" / "files" / "111", "111", fs=500.0, n_samples=500)
    write_record(tmp_path / "b" / "files" / "222", "222", fs=100.0, n_samples=500, comments=["Age: 50"])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "metadata.csv").write_text("patient_id,age\n1,50\n")
    assert brugada.find_roots(tmp_path) == []


def test_record_without_metadata_row_is_excluded(tmp_path: Path) -> None:
    written = write_brugada(tmp_path / "b")
    meta = written.root / "metadata.csv"
    meta.write_text("".join(ln + "\n" for ln in meta.read_text().splitlines() if not ln.startswith("251972")))
    index = brugada.scan(written.root)
    assert list(index.records["record_id"]) == ["188981", "267630"]
    [ex] = index.excluded
    assert ex.record == "files/251972/251972"
    assert ex.reason == "missing label: patient 251972 has no row in metadata.csv"
    with pytest.raises(RecordError, match="251972 has no row") as err:
        brugada.scan(written.root, strict=True)
    assert err.value.path == str(meta)


def test_truncated_record_is_excluded(tmp_path: Path) -> None:
    written = write_brugada(tmp_path / "b")
    dat = written.root / "files" / "188981" / "188981.dat"
    dat.write_bytes(dat.read_bytes()[:-100])
    [ex] = brugada.scan(written.root).excluded
    assert ex.record == "files/188981/188981" and "header says 1200 (truncated)" in ex.reason
    with pytest.raises(RecordError) as err:
        brugada.scan(written.root, strict=True)
    assert err.value.path == str(dat)


def test_wrong_lead_count_is_excluded(tmp_path: Path) -> None:
    written = write_brugada(tmp_path / "b")
    write_record(written.root / "files" / "999", "999", n_leads=3, fs=100.0, n_samples=1200)
    meta = written.root / "metadata.csv"
    meta.write_text(meta.read_text() + "999,0,0,0\n")
    index = brugada.scan(written.root)
    [ex] = index.excluded
    assert ex.record == "files/999/999" and ex.reason == "999.hea: 3 leads, Brugada-HUCA records have 12"


def test_metadata_missing_columns_is_a_data_error(tmp_path: Path) -> None:
    written = write_brugada(tmp_path / "b")
    (written.root / "metadata.csv").write_text("patient_id,brugada\n188981,1\n")
    with pytest.raises(DataError, match="lacks columns basal_pattern, sudden_death") as err:
        brugada.scan(written.root)
    assert err.value.path == str(written.root / "metadata.csv")
