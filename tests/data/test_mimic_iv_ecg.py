"""MIMIC-IV-ECG: found by content in its release layout, indexed, labelled, split by patient, cached."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecgfm_suite.data.datasets import DATASETS, mimic_iv_ecg
from ecgfm_suite.data.discovery import discover, load_index
from ecgfm_suite.data.index_cache import INDEX_DIR
from ecgfm_suite.data.reader import read_signal
from ecgfm_suite.data.tasks import TASKS, Unlabelled, build_task
from ecgfm_suite.data.tasks import mimic_iv_ecg as labels
from ecgfm_suite.data.tasks.harmonised import abnormalities, rhythm
from ecgfm_suite.errors import TaskSkip
from ecgfm_suite.models.spec import MODELS
from fixtures.layouts import (
    MIMIC_LEADS,
    MIMIC_NORMAL_BEAT,
    MimicStudy,
    mimic_record_path,
    write_mimic_iv_ecg,
    write_record,
)

#: statements as the machine writes them (the first four studies: rows of the release's documentation)
STUDIES = [
    MimicStudy(subject_id=10000032, study_id=40689238,
               reports=("Sinus rhythm", "Possible right atrial abnormality", "", "Borderline ECG")),
    MimicStudy(subject_id=10000032, study_id=49036311, reports=("Sinus tachycardia", "", "Normal ECG except for rate"),
               measurements={**MIMIC_NORMAL_BEAT, "rr_interval": 600, "qrs_onset": 162, "qrs_end": 244, "t_end": 474}),
    MimicStudy(subject_id=10000635, study_id=43522917,
               reports=("Sinus bradycardia", "Left ventricular hypertrophy",
                        "Extensive T wave changes may be due to hypertrophy and/or ischemia", "", "Abnormal ECG")),
    MimicStudy(subject_id=10000980, study_id=46642833,
               reports=("Atrial fibrillation with PVC(s) or aberrant ventricular conduction.",
                        "Left ventricular hypertrophy",
                        "Inferior/lateral ST-T changes are probably due to ventricular hypertrophy",
                        "Low QRS voltages in precordial leads", "", "Abnormal ECG"),
               measurements={**MIMIC_NORMAL_BEAT, "p_onset": 29999, "p_end": 29999, "qrs_onset": 200, "qrs_end": 302,
                             "t_end": 636, "p_axis": 29999}),
    MimicStudy(subject_id=10001884, study_id=45227415,
               reports=("Probable ventricular tachycardia", "Left axis deviation"),
               measurements={**MIMIC_NORMAL_BEAT, "t_end": 29999}),
    MimicStudy(subject_id=10001884, study_id=41234567,
               reports=("Sinus rhythm with 1st degree A-V block", "Right bundle branch block", "Abnormal ECG"),
               measurements={**MIMIC_NORMAL_BEAT, "qrs_end": 180}),  # QRS 10 ms: mismeasured
    MimicStudy(subject_id=10002000, study_id=42000001, reports=("Sinus rhythm", "Bundle branch block")),
    MimicStudy(subject_id=10002000, study_id=42000002, reports=("Normal ECG",)),
    MimicStudy(subject_id=10002001, study_id=42000003, reports=()),
    MimicStudy(subject_id=10002002, study_id=42000004, reports=("Sinus rhythm", "Sinus rhythm")),  # unmeasured
    MimicStudy(subject_id=10002003, study_id=42000005, reports=("Possible atrial flutter", "Sinus rhythm")),
]
UNMEASURED = (42000004,)


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """The release below ``data/mimic-iv-ecg/1.0`` (as PhysioNet's wget mirror lays it out), beside another folder."""
    root = tmp_path / "data" / "mimic-iv-ecg" / "1.0"
    write_mimic_iv_ecg(root, STUDIES, unmeasured=UNMEASURED)
    (tmp_path / "data" / "other").mkdir()
    (tmp_path / "data" / "other" / "notes.txt").write_text("not a dataset\n")
    return root


def test_found_by_content_and_indexed_with_patient_and_statements(release: Path) -> None:
    assert discover(release.parents[1]) == {"mimic_iv_ecg": [release]}
    index = load_index("mimic_iv_ecg", release.parents[1])
    records = index.records.set_index("record_id")
    assert index.version == DATASETS.get("mimic_iv_ecg").version and not index.excluded and not index.notes
    assert list(records.index) == [str(s.study_id) for s in STUDIES]
    first = records.loc["40689238"]
    assert first["key"] == "mimic_iv_ecg/40689238" and first["patient_id"] == "10000032"
    assert (first["fs"], first["n_samples"], first["leads"]) == (500.0, 5000, ",".join(MIMIC_LEADS))
    assert first["reports"] == ("Sinus rhythm", "Possible right atrial abnormality", "Borderline ECG")
    assert (first["qrs_onset"], first["qrs_end"], first["t_end"], first["region"]) == (170.0, 258.0, 518.0, "USA")
    assert records.loc["42000003", "reports"] == ()
    assert records.loc["42000004", "reports"] is None and math.isnan(records.loc["42000004", "qrs_onset"])
    assert first["path"] == str(release / mimic_record_path(STUDIES[0]))
    sig = read_signal(index.records.iloc[0])
    assert sig.data.shape == (12, 5000) and sig.leads == MIMIC_LEADS


def test_without_its_tables_the_tree_is_still_found_and_its_tasks_skip(tmp_path: Path) -> None:
    root = tmp_path / "mimic"
    write_mimic_iv_ecg(root, STUDIES[:3], record_list=False, measurements=False)
    assert discover(tmp_path) == {"mimic_iv_ecg": [root]}
    index = load_index("mimic_iv_ecg", tmp_path)
    assert index.records.empty and index.missing_label_files == [str(root / "record_list.csv")]
    with pytest.raises(TaskSkip, match="record_list.csv is missing"):
        build_task("mimic_iv_ecg_statements", {"mimic_iv_ecg": index})
    write_mimic_iv_ecg(root, STUDIES[:3], measurements=False)
    index = load_index("mimic_iv_ecg", tmp_path)
    assert len(index.records) == 3 and index.missing_label_files == [str(root / "machine_measurements.csv")]
    with pytest.raises(TaskSkip, match="machine_measurements.csv, which is missing"):
        labels.qt_interval(index)


@pytest.mark.parametrize("folder", ["files/123",  # Brugada-HUCA's files/<id>/<id>
                                    "records/p1000/p10000032/s40689238",  # not below files/
                                    "files/p1001/p10000032/s40689238",  # subject not in its group
                                    "files/p1000/p10000032/x40689238"])
def test_folders_of_other_layouts_are_not_taken_for_it(tmp_path: Path, folder: str) -> None:
    write_record(tmp_path / folder, folder.rsplit("/", 1)[1].lstrip("sx"), leads=MIMIC_LEADS)
    (tmp_path / "record_list.csv").write_text("subject_id,study_id\n")  # a record list without its path column
    assert "mimic_iv_ecg" not in discover(tmp_path)


def test_bad_rows_are_excluded_with_file_and_reason(release: Path) -> None:
    table = (release / "record_list.csv").read_text().splitlines()
    lines = [*table, table[1],  # a study listed twice
             "10009999,49999999,49999999,2180-07-01 08:44:00,files/p1000/p10009999/s49999999/49999999",  # no file
             "x1,42000001,42000001,2180-07-01 08:44:00," + mimic_record_path(STUDIES[6])]  # not an id
    (release / "record_list.csv").write_text("\n".join(lines) + "\n")
    measured = (release / "machine_measurements.csv").read_text().replace("10002000,42000002,", "10002999,42000002,")
    (release / "machine_measurements.csv").write_text(measured)
    dat = release / (mimic_record_path(STUDIES[2]) + ".dat")
    dat.write_bytes(dat.read_bytes()[:1000])
    index = mimic_iv_ecg.scan(release)
    reasons = {e.record: e.reason for e in index.excluded}
    assert "listed twice in record_list.csv" in reasons[mimic_record_path(STUDIES[0])]
    assert "not found below" in reasons["files/p1000/p10009999/s49999999/49999999"]
    assert "not numeric ids" in reasons[mimic_record_path(STUDIES[6])]
    assert reasons[mimic_record_path(STUDIES[7])] == \
        "machine_measurements.csv gives study_id 42000002 subject_id 10002999, record_list.csv 10002000"
    assert "43522917.dat" in reasons[mimic_record_path(STUDIES[2])]
    assert len(index.records) == len(STUDIES) - 2


def _by_study(index, series) -> dict[str, object]:
    return dict(zip(index.records["record_id"], series, strict=True))


def test_statements_map_to_the_harmonised_and_mimic_vocabularies(release: Path) -> None:
    index = load_index("mimic_iv_ecg", release)
    rhythms = _by_study(index, rhythm(index))
    assert rhythms["40689238"] == "sinus_rhythm" and rhythms["49036311"] == "sinus_tachycardia"
    assert rhythms["43522917"] == "sinus_bradycardia" and rhythms["46642833"] == "af_or_flutter"
    assert rhythms["42000004"] == Unlabelled("no machine_measurements.csv row")
    assert rhythms["42000003"] == Unlabelled("no machine statement")
    assert rhythms["42000002"] == Unlabelled("no rhythm statement maps to a class")
    assert rhythms["45227415"] == Unlabelled("no rhythm statement maps to a class")  # ventricular: no class
    assert rhythms["42000005"] == Unlabelled("hedged rhythm statement 'possible atrial flutter'")
    six = _by_study(index, abnormalities(index))
    assert six["40689238"] == () and six["49036311"] == ("ST",) and six["43522917"] == ("SB",)
    assert six["46642833"] == ("AF",) and six["41234567"] == ("1dAVb", "RBBB")
    assert six["42000001"] == Unlabelled("bundle branch block of unstated side: RBBB and LBBB cannot be told")
    assert six["42000002"] == Unlabelled("no rhythm statement: SB, ST and AF cannot be told")
    found = _by_study(index, labels.statements(index))
    assert found["40689238"] == ("sinus_rhythm", "borderline_ecg")  # the hedged atrial abnormality is no finding
    assert found["46642833"] == ("atrial_fibrillation", "pvc", "lvh", "low_qrs_voltage", "st_t_abnormality",
                                 "abnormal_ecg")
    assert found["43522917"] == ("sinus_bradycardia", "lvh", "st_t_abnormality", "abnormal_ecg")
    assert found["41234567"] == ("sinus_rhythm", "first_degree_av_block", "rbbb", "abnormal_ecg")
    assert found["42000002"] == ("normal_ecg",) and found["42000005"] == ("sinus_rhythm",)
    assert six["42000005"] == ()  # flutter is not AF, hedged or not
    assert set(TASKS.get("mimic_iv_ecg_statements").classes) == set(labels.MIMIC_STATEMENTS)


def test_intervals_from_onsets_and_offsets_with_implausible_values_excluded(release: Path) -> None:
    index = load_index("mimic_iv_ecg", release)
    qrs = _by_study(index, labels.qrs_duration(index))
    qt = _by_study(index, labels.qt_interval(index))
    assert (qrs["40689238"], qt["40689238"]) == (88.0, 348.0)
    assert (qrs["46642833"], qt["46642833"]) == (102.0, 436.0)
    assert qt["45227415"] == Unlabelled("t_end 29999 ms lies outside the 10000-ms record (not measured)")
    assert qrs["41234567"] == Unlabelled("QRS duration 10 ms (qrs_end − qrs_onset) outside the plausible 40–250 ms")
    assert qrs["42000004"] == Unlabelled("no machine_measurements.csv row")


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """Three studies for each of 24 subjects with varied rhythms and intervals: enough records to split."""
    root = tmp_path_factory.mktemp("many") / "mimic"
    rhythms = ("Sinus rhythm", "Sinus bradycardia", "Sinus tachycardia", "Atrial fibrillation")
    studies = [MimicStudy(subject_id=11000000 + s, study_id=50000000 + 10 * s + k,
                          reports=(rhythms[(s + k) % 4], "Left axis deviation" if s % 3 else "Normal ECG"),
                          measurements={**MIMIC_NORMAL_BEAT, "qrs_end": 240 + (7 * s + k) % 60,
                                        "t_end": 480 + (11 * s + 5 * k) % 90})
               for s in range(24) for k in range(3)]
    write_mimic_iv_ecg(root, studies)
    return load_index("mimic_iv_ecg", root)


@pytest.mark.parametrize("task", ["mimic_iv_ecg_qrs_duration", "rhythm", "mimic_iv_ecg_statements"])
def test_splits_are_patient_level(many, task: str) -> None:
    data = build_task(task, {"mimic_iv_ecg": many}, seed=0)
    subjects = dict(zip(many.records["key"], many.records["subject_id"], strict=True))
    split_of: dict[str, set[str]] = {}
    for key, split in zip(data.keys, data.split, strict=True):
        split_of.setdefault(subjects[key], set()).add(str(split))
    assert all(len(s) == 1 for s in split_of.values()) and {"train", "val", "test"} <= set(data.split)
    assert set(data.dataset) == {"mimic_iv_ecg"} and set(data.region) == {"USA"}


def test_models_pretrained_on_it_are_flagged() -> None:
    """ECG-FM, MERL and ECGFM-KED were pretrained on MIMIC-IV-ECG: their cells on its tasks carry the overlap."""
    for model in ("ecg_fm", "merl", "ecgfm_ked"):
        assert "mimic_iv_ecg" in MODELS.get(model).pretrained_on
    assert "mimic_iv_ecg" in DATASETS
    for task in ("mimic_iv_ecg_statements", "mimic_iv_ecg_qrs_duration", "mimic_iv_ecg_qt_interval", "rhythm",
                 "abnormalities"):
        assert "mimic_iv_ecg" in TASKS.get(task).datasets


def test_the_index_cache_keeps_its_hit_until_a_file_it_reads_changes(release: Path, tmp_path: Path) -> None:
    cache, data = tmp_path / "cache", release.parents[1]
    first = load_index("mimic_iv_ecg", data, cache_dir=cache)
    entry = next((cache / INDEX_DIR).iterdir())
    stamp = entry.stat().st_mtime_ns
    (release.parent / "wget-log").write_text("beside the release\n")  # neither in its tree nor declared
    (release.parent / "SHA256SUMS.txt").write_text("x\n")
    again = load_index("mimic_iv_ecg", data, cache_dir=cache)
    assert entry.stat().st_mtime_ns == stamp  # a hit: not rewritten
    assert again.records.equals(first.records) and list(again.records["reports"]) == list(first.records["reports"])
    table = release / "machine_measurements.csv"
    os.utime(table, ns=(table.stat().st_atime_ns, table.stat().st_mtime_ns + 1_000_000_000))
    load_index("mimic_iv_ecg", data, cache_dir=cache)
    assert entry.stat().st_mtime_ns != stamp  # rescanned and replaced


@pytest.mark.real_data
def test_shared_ludb_signals_in_its_layout_read_back_the_same(data_dir: Path, tmp_path: Path) -> None:
    """Real 500-Hz, 10-s, 12-lead recordings (LUDB's) written in MIMIC-IV-ECG's layout and lead order."""
    ludb = load_index("ludb", data_dir).records.head(4)
    studies = []
    for i, row in enumerate(ludb.to_dict("records")):
        record = wfdb.rdrecord(row["path"])
        names = [n.lower() for n in record.sig_name]
        signal = record.p_signal[:, [names.index(lead.lower()) for lead in MIMIC_LEADS]]
        studies.append(MimicStudy(subject_id=12000000 + i, study_id=60000000 + i, reports=("Sinus rhythm",),
                                  signal=signal))
    write_mimic_iv_ecg(tmp_path / "mimic", studies)
    index = load_index("mimic_iv_ecg", tmp_path)
    assert len(index.records) == 4 and not index.excluded
    for study, row in zip(studies, index.records.to_dict("records"), strict=True):
        np.testing.assert_allclose(read_signal(row).data, study.signal.T, atol=0.5 / 200)  # 200 adu/mV
