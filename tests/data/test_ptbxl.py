"""PTB-XL loader: the real 300-record cut (figures from the shared README) and written full layouts."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgfm_suite.data.datasets import ptbxl
from ecgfm_suite.data.reader import read_signal
from ecgfm_suite.data.records import RECORD_COLUMNS, STD_LEADS
from ecgfm_suite.errors import RecordError
from fixtures.layouts import write_ptbxl


@pytest.fixture(scope="module")
def real(data_dir: Path):
    roots = ptbxl.find_roots(data_dir)
    assert roots == [data_dir / "ptb-xl"]
    return ptbxl.scan(roots[0])


@pytest.mark.real_data
def test_real_records(real) -> None:
    r = real.records
    assert len(r) == 300 and real.excluded == [] and real.missing_label_files == []
    assert list(r.columns) == [*RECORD_COLUMNS, *ptbxl.LABEL_COLUMNS]
    assert r["strat_fold"].value_counts().sort_index().to_dict() == dict.fromkeys(range(1, 11), 30)
    assert set(r["fs"]) == {100.0} and set(r["n_samples"]) == {1000}
    assert set(r["leads"]) == {",".join(STD_LEADS)}  # header says AVR, AVL, AVF
    assert r["path"].str.endswith("_lr").all() and r["path"].str.contains("records100/00000").all()
    assert r["validated_by_human"].map(type).eq(bool).all() and r["validated_by_human"].all()
    assert r["key"].is_unique and set(r["region"]) == {"Germany"}


@pytest.mark.real_data
def test_real_demographics_and_ids(real) -> None:
    r = real.records
    assert r["sex"].value_counts().to_dict() == {"F": 151, "M": 149}  # README: sex 0 = male 149, 1 = female 151
    assert r["age"].min() == 17 and r["age"].max() == 91
    # patient_id is the integer as a string, as in the table ("15709.0" → "15709")
    table = pd.read_csv(real.root / "ptbxl_database.csv")
    expected = dict(zip(table["ecg_id"].astype(str), table["patient_id"].astype(int).astype(str)))
    assert dict(zip(r["record_id"], r["patient_id"])) == expected


@pytest.mark.real_data
def test_real_statement_counts(real) -> None:
    r = real.records
    codes = Counter(c for d in r["scp_codes"] for c in d)
    readme = {"SR": 241, "NORM": 172, "NDT": 27, "IMI": 25, "LVH": 24, "LAFB": 20, "ASMI": 19, "ISC_": 17,
              "SARRH": 16, "STD_": 15, "IRBBB": 12, "AFIB": 9, "PVC": 8, "CLBBB": 4, "ILBBB": 1, "INJAL": 1}
    assert {k: codes[k] for k in readme} == readme
    first = r.set_index("record_id").loc["1"]
    assert first["scp_codes"] == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    assert first["patient_id"] == "15709" and first["sex"] == "F" and first["age"] == 56.0


@pytest.mark.real_data
def test_real_record_decodes_in_mv(real) -> None:
    row = real.records.iloc[0]
    sig = read_signal(row)
    ref = wfdb.rdrecord(row["path"])
    np.testing.assert_allclose(sig.data, ref.p_signal.T, atol=1e-6)
    assert sig.leads == STD_LEADS and 0.05 < np.median(np.ptp(sig.data, axis=1)) < 20


# ----------------------------------------------------------------------------- written copies

def test_written_layout_prefers_lr_and_round_trips(tmp_path: Path) -> None:
    written = write_ptbxl(tmp_path / "physionet.org" / "files" / "ptb-xl" / "1.0.3")
    assert ptbxl.find_roots(tmp_path) == [written.root.resolve()]
    index = ptbxl.scan(written.root)
    assert index.excluded == [] and index.missing_label_files == []
    r = index.records.set_index("record_id")
    assert set(r["fs"]) == {100.0} and r.loc["1001", "path"].endswith("records100/01000/01001_lr")
    for rid, truth in written.labels.items():
        for column in ("patient_id", "sex", "scp_codes", "strat_fold", "validated_by_human"):
            assert r.loc[rid, column] == truth[column], (rid, column)
    assert r.loc["3", "age"] == 90.0  # written as 300 (PTB-XL's code for > 89)
    assert math.isnan(r.loc["1001", "age"]) and r.loc["1", "age"] == 56.0


def test_prefer_hr_and_fallback(tmp_path: Path) -> None:
    written = write_ptbxl(tmp_path / "p")
    hr = ptbxl.scan(written.root, prefer="hr").records
    assert set(hr["fs"]) == {500.0} and set(hr["n_samples"]) == {5000}
    assert hr["path"].str.contains("records500/").all()
    only500 = write_ptbxl(tmp_path / "q", records100=False)
    r = ptbxl.scan(only500.root).records
    assert len(r) == 4 and set(r["fs"]) == {500.0}
    with pytest.raises(ValueError, match="prefer must be 'lr' or 'hr'"):
        ptbxl.scan(written.root, prefer="mid")  # type: ignore[arg-type]


def test_missing_record_and_bad_scp_codes_are_excluded(tmp_path: Path) -> None:
    written = write_ptbxl(tmp_path / "p", records500=False)
    for ext in (".hea", ".dat"):
        (written.root / "records100" / "00000" / f"00002_lr{ext}").unlink()
    table = pd.read_csv(written.root / "ptbxl_database.csv", dtype=str, keep_default_na=False)
    table.loc[table["ecg_id"] == "3", "scp_codes"] = "{'IMI': 35.0"
    table.to_csv(written.root / "ptbxl_database.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    index = ptbxl.scan(written.root)
    assert list(index.records["record_id"]) == ["1", "1001"]
    reasons = {ex.record: ex.reason for ex in index.excluded}
    assert reasons["records100/00000/00002_lr"].startswith(
        "ptbxl_database.csv row ecg_id 2 names records100/00000/00002_lr or records500/00000/00002_hr, not found")
    assert reasons["records100/00000/00003_lr"] == (
        "ptbxl_database.csv: scp_codes \"{'IMI': 35.0\" is not a dict literal")
    with pytest.raises(RecordError, match="ecg_id 2") as err:
        ptbxl.scan(written.root, strict=True)
    assert err.value.path == str(written.root / "ptbxl_database.csv")


def test_missing_scp_statements(tmp_path: Path) -> None:
    written = write_ptbxl(tmp_path / "p", records500=False)
    (written.root / "scp_statements.csv").unlink()
    index = ptbxl.scan(written.root)
    assert index.missing_label_files == [str(written.root / "scp_statements.csv")]
    assert len(index.records) == 4



def test_row_listed_twice_is_excluded_once(tmp_path: Path) -> None:
    written = write_ptbxl(tmp_path / "p", records500=False)
    db = written.root / "ptbxl_database.csv"
    lines = db.read_text().splitlines(keepends=True)
    db.write_text("".join(lines) + lines[1])
    index = ptbxl.scan(written.root)
    assert len(index.records) == 4
    assert [(ex.record, ex.reason) for ex in index.excluded] == [
        ("1", "ecg_id 1 is listed twice in ptbxl_database.csv (first row kept)")]
