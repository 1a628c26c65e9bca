"""CODE-15% in its Zenodo release form (exams.csv + HDF5 parts), written from the 60 shared real exams.

The shared CODE-15% records are the Challenge 2025 WFDB conversion of these exams; the fixture turns them
back into the release layout (symmetric zero padding to 4,096 samples, float32 mV), so discovery, trimming,
the scale, the two forms side by side, bad input, splits and the index cache are checked on real signals.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgfm_suite.data import code15_hdf5
from ecgfm_suite.data.datasets import DATASETS, code15_forms, code15_native
from ecgfm_suite.data.discovery import discover, load_index
from ecgfm_suite.data.prepared import prepare_records
from ecgfm_suite.data.reader import read_and_validate, read_signal
from ecgfm_suite.data.records import PLAUSIBLE_PTP_MV, validate_signal
from ecgfm_suite.data.tasks import TaskSkip, build_task
from ecgfm_suite.errors import RecordError
from fixtures.code15_native import (
    ABNORMALITIES,
    exams_from_wfdb,
    pad_symmetric,
    renumbered,
    write_exams_csv,
    write_part,
    write_release,
)

SIX = ABNORMALITIES


@pytest.fixture(scope="module")
def wfdb_root(data_dir: Path) -> Path:
    root = data_dir / "code15-challenge2025"
    if not root.is_dir():
        pytest.skip(f"no CODE-15% records at {root}")
    return root


@pytest.fixture(scope="module")
def exams(wfdb_root: Path):
    return exams_from_wfdb(wfdb_root)


@pytest.fixture(scope="module")
def release(exams, tmp_path_factory):
    """A data dir holding only the release form: 60 real exams in 3 parts below ``data/code15/``."""
    data = tmp_path_factory.mktemp("release") / "data"
    return write_release(data / "code15", exams, n_parts=3)


@pytest.fixture(scope="module")
def index(release):
    return load_index("code15", release.root.parent)


def _rows(index) -> pd.DataFrame:
    return index.records.set_index("exam_id")


@pytest.mark.real_data
def test_found_by_content_and_labelled(release, index, exams) -> None:
    assert discover(release.root.parent) == {"code15": [release.root.resolve()]}
    rows = _rows(index)
    assert len(rows) == 60 and index.excluded == [] and index.notes == []
    digest = hashlib.sha256((release.root / "exams.csv").read_bytes()).hexdigest()
    assert index.version == f"zenodo4916206.{digest[:12]}"
    for exam, want in release.labels.items():
        got = rows.loc[exam]
        assert {k: got[k] for k in (*SIX, "normal_ecg")} == {k: want[k] for k in (*SIX, "normal_ecg")}
        assert (got["patient_id"], got["age"], got["sex"]) == (want["patient_id"], want["age"], want["sex"])
        assert got["path"] == str(release.root / want["part"]) and got["n_samples"] == want["n_samples"]
    assert set(rows["format"]) == {"hdf5"} and set(rows["fs"]) == {400.0} and set(rows["region"]) == {"Brazil"}
    assert (rows["key"] == "code15/" + rows.index).all() and rows["chagas"].isna().all()
    assert rows["content_hash"].nunique() == 60
    # the same sexes and ages as the WFDB form's headers (data README: F 31, M 29; ages 19–86)
    assert rows["sex"].value_counts().to_dict() == {"F": 31, "M": 29}
    assert (rows["age"].min(), rows["age"].max()) == (19, 86)


@pytest.mark.real_data
def test_trimmed_samples_equal_the_wfdb_form_and_pass_the_amplitude_check(index, wfdb_root) -> None:
    """Padding trimmed to the WFDB form's lengths (README: 2,934 ×28, 4,096 ×17, odd ones like 1,205), the same
    samples in mV, and every real exam passes the data layer's plausibility check (median ptp within range)."""
    ptps = []
    for _, row in index.records.iterrows():
        sig = read_and_validate(row)
        record = wfdb.rdrecord(str(wfdb_root / row["record_id"]))
        start, stop = code15_hdf5.active_span(record.p_signal)  # 5 records begin with a row rounded to zeros
        assert sig.data.shape == (12, stop - start) == (12, row["n_samples"]) and record.sig_len - (stop - start) <= 1
        np.testing.assert_allclose(sig.data, record.p_signal[start:stop].T, atol=1e-6)
        assert sig.fs == 400.0 and sig.leads == code15_hdf5.LEADS and validate_signal(sig) is None
        ptps.append(np.median(np.ptp(sig.data, axis=1)))
    lengths = index.records["n_samples"].value_counts()
    assert lengths[2934] == 28 and lengths[4096] == 17 and lengths[1205] == 1
    lo, hi = PLAUSIBLE_PTP_MV
    assert lo < min(ptps) and max(ptps) < hi and 1.5 < np.median(ptps) < 3.0  # mV, not tenths of a mV


def test_active_span_trims_only_whole_zero_rows() -> None:
    x = np.zeros((10, 3), dtype=np.float32)
    x[3, 1], x[6, 0] = 0.5, np.nan
    assert code15_hdf5.active_span(x) == (3, 7)  # a NaN is data; the zeros inside the span stay
    assert code15_hdf5.active_span(np.zeros((5, 3))) == (0, 0)
    padded = pad_symmetric(np.ones((2933, 12)))
    assert code15_hdf5.active_span(padded) == (581, 581 + 2933)  # 1,163 zeros: 581 before, 582 after


def _bad_release(exams, root: Path) -> Path:
    """A release with every kind of bad input, beside good parts."""
    good = write_release(root, exams[:20], n_parts=2)
    sig = np.stack([pad_symmetric(e.signal) for e in exams[20:24]])
    sig[1] = 0.0  # an all-zero row
    write_part(root / "exams_part2.hdf5", [exams[20].exam_id, exams[21].exam_id, 999, exams[0].exam_id], sig)
    write_part(root / "exams_part3.hdf5", [exams[24].exam_id], sig[:1].transpose(0, 2, 1))  # (1, 12, 4096)
    write_part(root / "exams_part4.hdf5", [1, 2, 3], sig[:2])  # 3 ids, 2 tracings
    truncated = write_part(root / "exams_part5.hdf5", [e.exam_id for e in exams[25:27]],
                           np.stack([pad_symmetric(e.signal) for e in exams[25:27]]))
    with open(truncated, "r+b") as fh:
        fh.truncate(truncated.stat().st_size // 2)
    # exams.csv: the good exams, those of parts 2–5, a line without an integer id and a repeated exam
    write_exams_csv(root / "exams.csv", exams[:27], {})
    with open(root / "exams.csv", "a") as fh:
        fh.write("abc,50,True,50.0,False,False,False,False,False,False,7,,,True,exams_part0.hdf5\n")
        fh.write(f"{exams[0].exam_id},50,True,50.0,False,False,False,False,False,False,7,,,True,exams_part0.hdf5\n")
    return good.root


@pytest.mark.real_data
def test_bad_input_is_excluded_naming_the_file_and_the_rest_goes_on(exams, tmp_path) -> None:
    root = _bad_release(exams, tmp_path / "data" / "code15")
    index = load_index("code15", tmp_path / "data")
    reasons = {(e.record, e.reason) for e in index.excluded}
    a, b, d = exams[20].exam_id, exams[21].exam_id, exams[0].exam_id
    assert sorted(_rows(index).index, key=int) == sorted([str(e.exam_id) for e in exams[:20]] + [str(a)], key=int)
    expected = {
        (f"exams_part2.hdf5#{b}", f"exams_part2.hdf5 row 1: exam {b}'s tracing is all zeros"),
        ("exams_part2.hdf5#999", "exams_part2.hdf5 row 2: exam id 999 has no row in exams.csv"),
        (f"exams_part2.hdf5#{d}", f"exams_part2.hdf5 row 3: exam {d} again (first in exams_part0.hdf5 row 0)"),
        ("exams.csv", "exams.csv line 29: exam_id 'abc' is not an integer"),
        ("exams.csv", f"exams.csv line 30: exam {d} listed again (line 2 kept)"),
    }
    assert expected <= reasons
    by_file = dict(reasons)  # one reason per part
    assert "'tracings' has shape (1, 12, 4096), expected (1, samples, 12)" in by_file["exams_part3.hdf5"]
    assert "'tracings' has shape (2, 4096, 12), expected (3, samples, 12)" in by_file["exams_part4.hdf5"]
    truncated = by_file["exams_part5.hdf5"]
    assert truncated.startswith("cannot open HDF5 file") and "truncated" in truncated
    assert len(index.excluded) == len(expected) + 3
    assert index.notes == [f"6 of the 27 exams of {root / 'exams.csv'} have no tracing here (their HDF5 parts are "
                           "not below the root, or they were left out: see the exclusions)"]
    with pytest.raises(RecordError) as info:  # strict: the first bad input is an error naming its file
        code15_forms.scan(root, strict=True)
    assert Path(info.value.path).name in {"exams.csv", "exams_part2.hdf5"}


@pytest.mark.real_data
def test_a_missing_exams_csv_is_named_and_its_tasks_skip(exams, tmp_path) -> None:
    root = write_release(tmp_path / "data" / "dl", exams[:6], n_parts=2).root
    (root / "exams.csv").unlink()
    index = load_index("code15", tmp_path / "data")
    assert index.records.empty and index.missing_label_files == [str(root / "exams.csv")]
    assert {e.record for e in index.excluded} == {"exams_part0.hdf5", "exams_part1.hdf5"}
    assert all("no exams.csv below" in e.reason for e in index.excluded)
    for task in ("code15_abnormalities", "code15_normal_ecg", "code15_chagas"):
        with pytest.raises(TaskSkip, match="exams.csv is missing"):
            build_task(task, {"code15": index})


@pytest.mark.real_data
def test_parts_not_downloaded_are_a_note_and_unrelated_files_are_not_code15(exams, tmp_path) -> None:
    root = write_release(tmp_path / "data" / "c", exams[:6], n_parts=1, csv_only=renumbered(exams[:4], 10**8)).root
    index = load_index("code15", tmp_path / "data")
    assert len(index.records) == 6 and index.excluded == []
    assert index.notes[0].startswith(f"4 of the 10 exams of {root / 'exams.csv'} have no tracing here")
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    (other / "x" / "exams.csv").write_text("exam_id,age\n1,50\n")  # another study's exams.csv
    with code15_hdf5.h5py.File(other / "x" / "weights.h5", "w") as f:
        f.create_dataset("w", data=np.zeros(3))
    assert discover(other) == {}


@pytest.mark.real_data
def test_patient_level_splits(exams, tmp_path) -> None:
    """Two exams of one patient never straddle splits: 120 exams of 60 patients (the real signals twice)."""
    write_release(tmp_path / "data" / "code15", [*exams, *renumbered(exams, 10**8)], n_parts=4)
    index = load_index("code15", tmp_path / "data")
    td = build_task("code15_abnormalities", {"code15": index}, seed=3)
    assert len(td.keys) == 120 and td.classes == SIX
    patients = pd.Series(td.split, index=index.records.set_index("key").loc[td.keys, "patient_id"].to_numpy())
    assert patients.groupby(level=0).nunique().max() == 1 and patients.index.nunique() == 60
    normal = build_task("code15_normal_ecg", {"code15": index})
    assert normal.classes == ("abnormal_ecg", "normal_ecg")


@pytest.mark.real_data
def test_both_forms_below_one_data_dir_count_each_exam_once(exams, wfdb_root, tmp_path) -> None:
    """The release holds 40 exams; the WFDB form all 60, 10 of them listed in exams.csv without their part."""
    data = tmp_path / "data"
    write_release(data / "zenodo", exams[:40], n_parts=2, csv_only=exams[40:50])
    shutil.copytree(wfdb_root, data / "physionet" / "code15-challenge2025")
    assert discover(data) == {"code15": [data.resolve()]}
    index = load_index("code15", data)
    rows = _rows(index)
    assert len(rows) == 60 and rows.index.is_unique and index.excluded == []
    assert index.version.startswith("2025+zenodo4916206.")
    assert rows["format"].value_counts().to_dict() == {"hdf5": 40, "wfdb": 20}
    assert index.notes[0].startswith("40 exams are in both forms")
    assert rows["chagas"].value_counts().to_dict() == {False: 47, True: 13}  # the WFDB headers' labels, all kept
    td = build_task("code15_abnormalities", {"code15": index})
    assert len(td.keys) == 50  # 40 from the parts + 10 WFDB records labelled from exams.csv
    assert td.excluded == {"code15: Challenge 2025 WFDB record whose exam is not in exams.csv": 10}
    assert len(build_task("sex", {"code15": index}).keys) == 60
    assert len(build_task("code15_chagas", {"code15": index}).keys) == 60


@pytest.mark.real_data
def test_challenge_chagas_labels_beside_exams_csv_label_the_release(exams, tmp_path) -> None:
    root = write_release(tmp_path / "data" / "code15", exams, n_parts=2).root
    chagas = {e.exam_id: i % 3 == 0 for i, e in enumerate(exams)}
    (root / "code15_chagas_labels.csv").write_text(
        "exam_id,chagas\n" + "".join(f"{k},{v}\n" for k, v in chagas.items()))
    index = load_index("code15", root.parent)
    assert _rows(index)["chagas"].to_dict() == {str(k): v for k, v in chagas.items()}
    assert len(build_task("code15_chagas", {"code15": index}).keys) == 60


@pytest.mark.real_data
def test_only_the_wfdb_form_is_unchanged_and_skips_the_release_tasks(wfdb_root, tmp_path) -> None:
    index = code15_forms.scan(wfdb_root)
    assert index.version == DATASETS.get("code15").version == "2025" and len(index.records) == 60
    with pytest.raises(TaskSkip, match="only the Challenge 2025 WFDB form"):
        build_task("code15_abnormalities", {"code15": index})


@pytest.mark.real_data
def test_index_cache_reuses_the_scan_until_a_part_changes(exams, tmp_path) -> None:
    root = write_release(tmp_path / "data" / "code15", exams[:8], n_parts=2).root
    cache = tmp_path / "cache"
    first = load_index("code15", root.parent, cache_dir=cache)
    again = load_index("code15", root.parent, cache_dir=cache)
    pd.testing.assert_frame_equal(first.records, again.records)
    assert (again.version, again.notes) == (first.version, first.notes)
    calls = []
    original = code15_native.scan_release

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    code15_native.scan_release = counting
    try:
        load_index("code15", root.parent, cache_dir=cache)
        assert calls == []
        part = root / "exams_part1.hdf5"
        write_part(part, [e.exam_id for e in exams[4:8]],
                   np.stack([pad_symmetric(e.signal * 2) for e in exams[4:8]]))
        changed = load_index("code15", root.parent, cache_dir=cache)
        assert calls == [1]
    finally:
        code15_native.scan_release = original
    old, new = first.records.set_index("exam_id"), changed.records.set_index("exam_id")
    moved = [str(e.exam_id) for e in exams[4:8]]
    assert (old.loc[moved, "content_hash"] != new.loc[moved, "content_hash"]).all()
    assert (old.drop(index=moved)["content_hash"] == new.drop(index=moved)["content_hash"]).all()


@pytest.mark.real_data
def test_a_part_changed_after_the_scan_is_a_record_error_naming_it(exams, tmp_path) -> None:
    root = write_release(tmp_path / "code15", exams[:2], n_parts=1).root
    row = code15_forms.scan(root).records.iloc[0].to_dict()
    write_part(root / "exams_part0.hdf5", [exams[1].exam_id], np.stack([pad_symmetric(exams[1].signal)]))
    with pytest.raises(RecordError, match=f"exam {row['record_id']} is not in this part") as info:
        read_signal(row)
    assert info.value.path == str(root / "exams_part0.hdf5")
    write_part(root / "exams_part0.hdf5", [exams[0].exam_id], np.stack([pad_symmetric(exams[0].signal[:100])]))
    os.utime(root / "exams_part0.hdf5", ns=(1, 1))  # a new map of its rows, whatever the clock
    with pytest.raises(RecordError, match="holds 100 samples after trimming, index says"):
        read_signal(row)


@pytest.mark.real_data
def test_read_in_worker_processes_equals_in_process(index) -> None:
    """Forked readers open their own handles: the same arrays as reading here (``--ecgfm-read-workers``)."""
    records = index.records.iloc[:12]

    def first_lead(data, fs, leads):
        return data[None, :1, :1000]

    here = prepare_records(records, first_lead, spec_key={"t": 1}, cache_dir=None, workers=1)
    pool = prepare_records(records, first_lead, spec_key={"t": 1}, cache_dir=None, workers=2, chunk_size=3)
    assert list(here.keys) == list(pool.keys) == list(records["key"])
    np.testing.assert_array_equal(np.asarray(here.windows), np.asarray(pool.windows))
