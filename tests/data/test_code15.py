"""CODE-15% (Challenge 2025 WFDB form) loader on the 60 real records and synthetic folders.

Expected numbers are the shared data README's (labels, sexes, positives, odd lengths).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgfm_suite.data.datasets import code15
from ecgfm_suite.data.reader import read_signal
from ecgfm_suite.errors import RecordError
from fixtures.challenge_layouts import ecg_like, write_code15_record

README_POSITIVES = {"111102", "1111118", "111115", "1111247", "111143", "1111496", "1111576", "111193", "111198",
                    "2508934", "2767003", "47946", "919394"}
README_ODD_LENGTHS = {"1111834": 1205, "919842": 1730, "919083": 1930, "919787": 2072, "111189": 2322,
                      "919340": 2345, "479462": 2964, "919402": 3094, "919235": 3232, "919161": 3521,
                      "1111696": 3556, "919085": 3874, "919194": 3874, "919717": 3874, "1111778": 4020}


@pytest.fixture(scope="module")
def real_root(data_dir: Path) -> Path:
    root = data_dir / "code15-challenge2025"
    if not root.is_dir():
        pytest.skip(f"no CODE-15% records at {root}")
    return root


@pytest.fixture(scope="module")
def real_index(real_root: Path):
    return code15.scan(real_root)


@pytest.mark.real_data
def test_find_roots(data_dir: Path, real_root: Path) -> None:
    assert code15.find_roots(data_dir) == [real_root.resolve()]


@pytest.mark.real_data
def test_labels_and_demographics_match_the_readme(real_index) -> None:
    rows = real_index.records
    assert len(rows) == 60 and real_index.excluded == []
    assert rows["chagas"].value_counts().to_dict() == {False: 47, True: 13}
    assert set(rows.loc[rows["chagas"], "exam_id"]) == README_POSITIVES
    assert rows["sex"].value_counts().to_dict() == {"F": 31, "M": 29}
    assert rows["patient_id"].nunique() == 60 and rows["patient_id"].map(type).eq(str).all()
    assert rows["age"].min() == 19 and rows["age"].max() == 86
    assert (rows["record_id"] == rows["exam_id"]).all() and (rows["key"] == "code15/" + rows["exam_id"]).all()
    assert (rows["exam_id"] == rows["path"].map(lambda p: Path(p).name)).all()
    assert set(rows["region"]) == {"Brazil"} and set(rows["source"]) == {"code15"} and set(rows["fs"]) == {400.0}


@pytest.mark.real_data
def test_variable_lengths_and_canonical_leads(real_index) -> None:
    rows = real_index.records.set_index("exam_id")
    lengths = rows["n_samples"]
    assert (lengths == 2934).sum() == 28 and (lengths == 4096).sum() == 17
    assert {k: lengths[k] for k in README_ODD_LENGTHS} == README_ODD_LENGTHS
    assert set(rows["leads"]) == {"I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"}
    for exam in ("1111834", "111102"):
        sig = read_signal(rows.loc[exam].to_dict())
        ref = wfdb.rdrecord(rows.loc[exam, "path"])
        assert sig.data.shape == (12, lengths[exam]) and ref.sig_name[3] == "AVR" and sig.leads[3] == "aVR"
        np.testing.assert_allclose(sig.data, ref.p_signal.T, atol=1e-6)


def test_nested_parts_other_sources_and_bad_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    out = tmp_path / "code15_output"

    def record(folder: Path, exam: str, **kw) -> Path:
        args = {"patient_id": f"p{exam}", "age": "50", "sex": "Male", "chagas": "False"} | kw
        return write_code15_record(folder, exam, ecg_like(12, 2934, 400, rng), **args)

    record(out / "exams_part0", "100", chagas="True", sex="Female")
    record(out / "exams_part1", "200", source="CODE-15%")
    record(out / "exams_part1", "201", chagas="maybe")
    samitrop = tmp_path / "samitrop_output"
    record(samitrop, "900", source="SaMi-Trop", chagas="True")
    truncated = record(out / "exams_part1", "202")
    dat = truncated.with_name("202.dat")
    dat.write_bytes(dat.read_bytes()[:1000])

    assert code15.find_roots(tmp_path) == [out.resolve()]
    index = code15.scan(out)
    rows = index.records.set_index("exam_id")
    assert sorted(rows.index) == ["100", "200"]
    assert rows.loc["100", "chagas"] and rows.loc["100", "sex"] == "F" and not rows.loc["200", "chagas"]
    reasons = {ex.record: ex.reason for ex in index.excluded}
    assert set(reasons) == {"exams_part1/201", "exams_part1/202"}
    assert "Chagas label 'maybe' is not True or False" in reasons["exams_part1/201"]
    assert "202.dat" in reasons["exams_part1/202"] and "truncated" in reasons["exams_part1/202"]
    with pytest.raises(RecordError) as err:
        code15.scan(out, strict=True)
    assert "201" in str(err.value.path)


@pytest.mark.real_data
def test_duplicate_exam_ids_are_excluded(real_root: Path, tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for ext in (".hea", ".dat"):
            shutil.copy(real_root / f"111102{ext}", tmp_path / folder)
    index = code15.scan(tmp_path)
    assert list(index.records["record_id"]) == ["111102"]
    assert [ex.record for ex in index.excluded] == ["b/111102"]
    assert "duplicate exam id 111102" in index.excluded[0].reason
