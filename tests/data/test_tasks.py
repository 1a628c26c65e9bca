"""Task registry, labelers and build_task: hand-built indexes for every labeler and edge case,
then the real shared data through the loaders (counts checked against the data README and the
official label tables, read independently here)."""

from __future__ import annotations

import ast
import csv
import hashlib
import logging
import math
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgfm_suite.data.splits import official_split
from ecgfm_suite.data.tasks import (
    TASKS,
    TaskSkip,
    TaskSpec,
    Unlabelled,
    brugada,
    build_task,
    challenge,
    cinc2017,
    code15,
    demographics,
    harmonised,
    ludb,
    ptbxl,
)
from ecgfm_suite.data.tasks.vocab import (
    ABNORMALITY_LUDB,
    ABNORMALITY_PTBXL,
    ABNORMALITY_PTBXL_UNSURE,
    ABNORMALITY_SNOMED,
    ABNORMALITY_SNOMED_UNSURE,
    ABNORMALITY_SOURCE_GAPS,
    ABNORMALITY_SOURCE_UNSURE,
    CHALLENGE_RHYTHM_CODES,
    CHALLENGE_SCORED,
    CODE15_ABNORMALITIES,
    LUDB_AXIS,
    LUDB_CONDUCTION,
    LUDB_RHYTHM,
    PTBXL_FORM,
    PTBXL_RHYTHM,
    PTBXL_SUBDIAG,
    PTBXL_SUPERDIAG,
)
from ecgfm_suite.errors import DataError, SpecError
from ecgfm_suite.registry import resolve

from .factories import binary_index, make_index, real_indexes

SPEC = dict(id="t", name="T", datasets=("code15",), type="binary", classes=("no_chagas", "chagas"),
            main_metric="auroc", labeler="ecgfm_suite.data.tasks.code15:chagas")


def labels_of(series: pd.Series) -> list:
    return [v.reason if isinstance(v, Unlabelled) else v for v in series]


# --- TaskSpec / registry -------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("id", "Bad-Id"), ("name", ""), ("datasets", ()), ("datasets", ("nope",)), ("datasets", ["code15"]),
    ("type", "ordinal"), ("classes", ("a",)), ("classes", ("a", "a")), ("main_metric", "mae"),
    ("labeler", "no_colon"), ("min_positives", 0), ("min_positives", True), ("split", "random"),
    ("split", "official"),
])
def test_taskspec_rejects_bad_field_naming_it(field, value):
    with pytest.raises(SpecError, match=f"field '{field}'"):
        TaskSpec(**(SPEC | {field: value}))


def test_taskspec_type_specific_rules():
    with pytest.raises(SpecError, match="'classes'"):
        TaskSpec(**(SPEC | {"type": "regression", "main_metric": "mae"}))  # regression with classes
    with pytest.raises(SpecError, match="'main_metric'"):
        TaskSpec(**(SPEC | {"type": "regression", "classes": (), "main_metric": "auroc"}))
    with pytest.raises(SpecError, match="at least 3"):
        TaskSpec(**(SPEC | {"type": "multiclass"}))
    ok = TaskSpec(**(SPEC | {"datasets": ("ptbxl",), "split": "official"}))
    assert ok.to_dict()["split"] == "official"


def test_registry_is_complete_and_resolvable():
    expected = {"ludb_rhythm", "ludb_axis", "ludb_conduction", "ludb_lvh", "ludb_ischemia", "ludb_age", "ludb_sex",
                "brugada_huca_brugada", "brugada_huca_basal_pattern", "brugada_huca_sudden_death",
                "ptbxl_superdiag", "ptbxl_subdiag", "ptbxl_form", "ptbxl_rhythm", "challenge2021_dx",
                "code15_chagas", "code15_abnormalities", "code15_normal_ecg", "cinc2017_af", "rhythm",
                "abnormalities", "sex", "age"}
    assert expected <= set(TASKS)
    for task_id, spec in TASKS.items():
        assert callable(resolve(spec.labeler)), task_id
        assert spec.main_metric == ("mae" if spec.type == "regression" else "auroc")
        assert TaskSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.to_dict().items()}) == spec
    assert {TASKS.get(t).split for t in TASKS if t.startswith("ptbxl_")} == {"official"}
    with pytest.raises(SpecError, match="did you mean"):
        TASKS.get("ludb_rythm")


def test_importing_the_registry_imports_no_pandas_or_torch():
    code = ("import sys; import ecgfm_suite.data.tasks as t; assert len(t.TASKS) >= 20; "
            "print(sorted(m for m in ('pandas', 'numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- labelers on hand-built indexes --------------------------------------------------------------------

def ludb_index(**columns):
    n = len(next(iter(columns.values())))
    rows = [{"record_id": str(i + 1), **{c: v[i] for c, v in columns.items()}} for i in range(n)]
    return make_index("ludb", rows)


def test_ludb_rhythm_maps_one_rhythm_and_flags_conflicts():
    index = ludb_index(rhythm=[
        ("sinus rhythm",), ("sinus bradycardia", "wandering atrial pacemaker"), ("atrial fibrillation", "aberrant conduction"),
        ("irregular sinus rhythm",), ("sinus rhythm", "atrial fibrillation"), (), ("atrial flutter, typical",),
    ])
    assert labels_of(ludb.rhythm(index)) == [
        "sinus_rhythm", "sinus_bradycardia", "atrial_fibrillation", "no rhythm statement maps to a class",
        "conflicting rhythm statement: atrial_fibrillation + sinus_rhythm", "no rhythm statement maps to a class",
        "atrial_flutter",
    ]


def test_ludb_axis_conduction_lvh_ischemia():
    index = ludb_index(
        axis=["left axis deviation", "Electric axis of the heart: vertical.", None, "diagonal"],
        conduction=[(), ("incomplete right bundle branch block", "i degree av block"), ("iii degree av-block",),
                    ("bundle of his weirdness",)],
        hypertrophy=[("left ventricular hypertrophy",), ("left ventricular overload",), (), ("left atrial hypertrophy",)],
        ischemia=[(), ("stemi: septal",), ("scar formation: apical", "ischemia: apical"), ()],
    )
    assert labels_of(ludb.axis(index)) == ["left_axis_deviation", "vertical", "no axis statement",
                                           "unknown axis statement 'diagonal'"]
    assert labels_of(ludb.conduction(index)) == [(), ("avb1", "irbbb"), ("avb3",),
                                                 "unknown conduction statement 'bundle of his weirdness'"]
    assert labels_of(ludb.lvh(index)) == ["lvh", "no_lvh", "no_lvh", "no_lvh"]
    assert labels_of(ludb.ischemia(index)) == ["no_ischemia", "ischemia", "ischemia", "no_ischemia"]
    with pytest.raises(DataError, match="ludb got a 'code15' index"):
        ludb.rhythm(binary_index(1, 1))


def test_ludb_missing_label_column_is_a_data_error():
    with pytest.raises(DataError, match="no label column 'rhythm'"):
        ludb.rhythm(make_index("ludb", [{"record_id": "1"}]))


def test_brugada_without_metadata_skips_naming_the_file(tmp_path):
    missing = str(tmp_path / "metadata.csv")
    index = make_index("brugada_huca", [{"record_id": "188981", "brugada": math.nan, "basal_pattern": math.nan,
                                         "sudden_death": math.nan}], missing_label_files=(missing,))
    for fn in (brugada.brugada, brugada.basal_pattern, brugada.sudden_death):
        with pytest.raises(TaskSkip, match="metadata.csv") as info:
            fn(index)
        assert info.value.path == missing
    with pytest.raises(TaskSkip, match="metadata.csv") as info:
        build_task("brugada_huca_brugada", {"brugada_huca": index})
    assert info.value.task == "brugada_huca_brugada" and info.value.path == missing


def test_brugada_labels_from_metadata():
    rows = [{"record_id": str(i), "brugada": b, "basal_pattern": p, "sudden_death": s}
            for i, (b, p, s) in enumerate([(0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (2.0, 0.0, 1.0), (math.nan, 3.0, math.nan)])]
    index = make_index("brugada_huca", rows)
    assert labels_of(brugada.brugada(index)) == ["no_brugada", "brugada", "brugada", "no brugada label"]
    assert labels_of(brugada.basal_pattern(index)) == ["no_basal_pattern", "basal_pattern", "no_basal_pattern",
                                                       "unexpected basal_pattern value 3.0"]
    assert labels_of(brugada.sudden_death(index)) == ["no_sudden_death", "no_sudden_death", "sudden_death",
                                                      "no sudden_death label"]


STATEMENTS_CSV = """,description,diagnostic,form,rhythm,diagnostic_class,diagnostic_subclass
NORM,normal ECG,1.0,,,NORM,NORM
IMI,inferior MI,1.0,,,MI,IMI
NDT,non-diagnostic T,1.0,1.0,,STTC,STTC
LVOLT,low voltage,,1.0,,,
SR,sinus rhythm,,,1.0,,
AFIB,atrial fibrillation,,,1.0,,
"""


@pytest.fixture()
def ptbxl_toy(tmp_path):
    (tmp_path / "scp_statements.csv").write_text(STATEMENTS_CSV)
    codes = [{"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}, {"IMI": 15.0, "NDT": 100.0, "AFIB": 0.0}, {"LVOLT": 50.0}, {}]
    return make_index("ptbxl", [{"record_id": str(i + 1), "scp_codes": c, "strat_fold": 1} for i, c in enumerate(codes)],
                      root=tmp_path)


def test_ptbxl_aggregation_counts_every_code_whatever_its_likelihood(ptbxl_toy):
    assert labels_of(ptbxl.superdiag(ptbxl_toy)) == [("NORM",), ("MI", "STTC"), "no diagnostic statement",
                                                     "no diagnostic statement"]
    assert labels_of(ptbxl.subdiag(ptbxl_toy)) == [("NORM",), ("IMI", "STTC"), "no diagnostic statement",
                                                   "no diagnostic statement"]
    assert labels_of(ptbxl.form(ptbxl_toy)) == [("LVOLT",), ("NDT",), ("LVOLT",), "no form statement"]
    assert labels_of(ptbxl.rhythm(ptbxl_toy)) == [("SR",), ("AFIB",), "no rhythm statement", "no rhythm statement"]


def test_ptbxl_missing_statement_table(ptbxl_toy, tmp_path):
    missing = replace(ptbxl_toy, missing_label_files=[str(tmp_path / "scp_statements.csv")])
    with pytest.raises(TaskSkip, match="scp_statements.csv"):
        ptbxl.superdiag(missing)
    (tmp_path / "scp_statements.csv").unlink()
    with pytest.raises(DataError, match="scp_statements.csv"):
        ptbxl.superdiag(ptbxl_toy)


def test_challenge_dx_merges_equivalent_codes_and_ignores_unscored():
    index = make_index("challenge2021", [
        {"record_id": "georgia/E1", "dx": ("59118001", "713427006", "164889003")},  # RBBB + CRBBB + AF
        {"record_id": "ningbo/JS1", "dx": ("251238007", "428750005")},  # unmapped + unscored
        {"record_id": "ningbo/JS2", "dx": ("17338001", "284470004")},  # VPB, PAC
    ])
    assert labels_of(challenge.dx(index)) == [("AF", "CRBBB|RBBB"), (), ("PAC|SVPB", "PVC|VPB")]


def test_code15_and_cinc2017_labels():
    index = make_index("code15", [{"record_id": str(i), "chagas": v} for i, v in enumerate([True, False, None])])
    assert labels_of(code15.chagas(index)) == ["chagas", "no_chagas", "no Chagas label"]
    index = make_index("cinc2017", [{"record_id": str(i), "af_label": v} for i, v in enumerate("NAO~X")])
    assert labels_of(cinc2017.af(index)) == ["N", "A", "O", "~", "unexpected label 'X'"]


def test_demographics():
    index = make_index("code15", [{"record_id": str(i), "sex": s, "age": a}
                                  for i, (s, a) in enumerate([("M", 40.0), ("F", math.nan), (None, 300.0), ("X", 0.5)])])
    assert labels_of(demographics.sex(index)) == ["male", "female", "sex unknown", "unexpected sex value 'X'"]
    assert labels_of(demographics.age(index)) == [40.0, "age unknown", "age outside 0-120 years", 0.5]


def test_harmonised_rhythm_maps_every_vocabulary(ptbxl_toy):
    ludb_ix = ludb_index(rhythm=[("sinus tachycardia",), ("atrial fibrillation", "atrial flutter, typical"),
                                 ("sinus arrhythmia",)])
    assert labels_of(harmonised.rhythm(ludb_ix)) == ["sinus_tachycardia", "af_or_flutter",
                                                     "no rhythm statement maps to a class"]
    chal = make_index("challenge2021", [
        {"record_id": "a", "dx": ("426783006", "284470004")}, {"record_id": "b", "dx": ("426177001",)},
        {"record_id": "c", "dx": ("164889003", "164890007")}, {"record_id": "d", "dx": ("426783006", "427084000")},
        {"record_id": "e", "dx": ("427393009",)},
    ])
    assert labels_of(harmonised.rhythm(chal)) == [
        "sinus_rhythm", "sinus_bradycardia", "af_or_flutter",
        "conflicting rhythm statement: sinus_rhythm + sinus_tachycardia", "no rhythm statement maps to a class"]
    assert labels_of(harmonised.rhythm(ptbxl_toy)) == ["sinus_rhythm", "af_or_flutter"] + [
        "no rhythm statement maps to a class"] * 2
    cinc = make_index("cinc2017", [{"record_id": str(i), "af_label": v} for i, v in enumerate("NAO~")])
    assert labels_of(harmonised.rhythm(cinc)) == ["sinus_rhythm", "af_or_flutter",
                                                  "CinC 2017 class 'O' has no harmonised rhythm",
                                                  "CinC 2017 class '~' has no harmonised rhythm"]
    with pytest.raises(DataError, match="no harmonised rhythm mapping"):
        harmonised.rhythm(binary_index(1, 1))


def _release_rows(*labels, fmt="hdf5", normal=True):
    six = dict.fromkeys(CODE15_ABNORMALITIES, False)
    return [{"record_id": str(i), "format": fmt, **six, **dict.fromkeys(found, True), "normal_ecg": normal}
            for i, found in enumerate(labels)]


def test_code15_abnormalities_and_normal_ecg_from_exams_csv():
    rows = _release_rows((), ("RBBB", "AF"), ("1dAVb",))
    rows.append({**rows[0], "record_id": "3", "SB": None, "normal_ecg": None})
    rows.append({"record_id": "4", "format": "wfdb", "chagas": True})  # a WFDB record not in exams.csv
    index = make_index("code15", rows)
    assert labels_of(code15.abnormalities(index)) == [(), ("RBBB", "AF"), ("1dAVb",), "no True/False SB label in "
                                                      "exams.csv", "Challenge 2025 WFDB record whose exam is not in "
                                                      "exams.csv"]
    assert labels_of(code15.normal_ecg(index))[:4] == ["normal_ecg"] * 3 + ["no True/False normal_ecg in exams.csv"]
    assert labels_of(harmonised.abnormalities(index)) == labels_of(code15.abnormalities(index))
    wfdb_only = binary_index(2, 2)  # the Challenge 2025 form's columns only
    for fn in (code15.abnormalities, code15.normal_ecg):
        with pytest.raises(TaskSkip, match="only the Challenge 2025 WFDB form"):
            fn(wfdb_only)
    missing = make_index("code15", [{"record_id": "1"}], missing_label_files=("/data/exams.csv",))
    with pytest.raises(TaskSkip, match="exams.csv"):
        code15.abnormalities(missing)


def test_harmonised_abnormalities_maps_every_vocabulary(tmp_path):
    ludb_ix = ludb_index(rhythm=[("sinus bradycardia",), ("atrial flutter, typical",), (), ("sinus rhythm",)],
                         conduction=[("i degree av block",), ("incomplete right bundle branch block",),
                                     ("complete left bundle branch block",), ("complete right bundle branch block",)])
    assert labels_of(harmonised.abnormalities(ludb_ix)) == [
        ("1dAVb", "SB"), (), "no rhythm statement: SB, ST and AF cannot be told", ("RBBB",)]
    ptbxl_ix = make_index("ptbxl", [{"record_id": str(i), "scp_codes": c} for i, c in enumerate([
        {"SR": 0.0, "CRBBB": 100.0, "1AVB": 50.0}, {"STACH": 0.0, "IRBBB": 100.0}, {"AFLT": 0.0, "CLBBB": 80.0},
        {"SR": 0.0, "LPR": 0.0}, {"SR": 0.0, "LPR": 0.0, "1AVB": 100.0}, {"NORM": 100.0}, {}])])
    assert labels_of(harmonised.abnormalities(ptbxl_ix)) == [
        ("1dAVb", "RBBB"), ("ST",), ("LBBB",), ABNORMALITY_PTBXL_UNSURE["LPR"][1], ("1dAVb",),
        "no rhythm statement: SB, ST and AF cannot be told", "no SCP statement"]
    chal = make_index("challenge2021", [{"record_id": str(i), "source": src, "dx": dx} for i, (src, dx) in enumerate([
        ("georgia", ("426783006", "713427006", "270492004")), ("georgia", ("426749004", "733534002")),
        ("georgia", ("426783006", "6374002")), ("georgia", ("426783006", "6374002", "59118001")),
        ("georgia", ("164865005",)), ("georgia", ("426627000",)), ("cpsc_2018", ("164889003",)),
        ("ningbo", ("164890007",)), ("ningbo", ("426783006", "427084000")), ("chapman_shaoxing", ("164890007",)),
    ])])
    assert labels_of(harmonised.abnormalities(chal)) == [
        ("1dAVb", "RBBB"), ("LBBB", "AF"), ABNORMALITY_SNOMED_UNSURE["6374002"][1], ("RBBB",),
        "no rhythm statement: SB, ST and AF cannot be told", ABNORMALITY_SNOMED_UNSURE["426627000"][1],
        ABNORMALITY_SOURCE_GAPS["cpsc_2018"], ABNORMALITY_SOURCE_UNSURE["ningbo"]["164890007"][1], ("ST",), ()]
    with pytest.raises(DataError, match="no harmonised abnormality mapping"):
        harmonised.abnormalities(make_index("cinc2017", [{"record_id": "1", "af_label": "A"}]))


# --- build_task on hand-built indexes ------------------------------------------------------------------

def test_build_binary_arrays_counts_and_version():
    index = binary_index(20, 30, version="2025")
    td = build_task("code15_chagas", {"code15": index})
    assert td.classes == ("no_chagas", "chagas")
    assert td.y.dtype.kind == "i" and td.y.shape == (50,)
    assert list(td.keys) == sorted(index.records["key"])
    truth = {k: int(k.split("/")[1].startswith("p")) for k in index.records["key"]}
    assert td.y.tolist() == [truth[k] for k in td.keys]
    assert sum(td.counts[s]["chagas"] for s in td.counts) == 20
    for s in ("train", "val", "test"):
        assert td.counts[s]["chagas"] == int(td.y[td.indices(s)].sum()) >= 2
        assert td.n(s) == len(td.indices(s))
    digest = hashlib.sha256("\n".join(sorted(index.records["key"])).encode()).hexdigest()
    assert td.version == f"code15@2025 sha256:{digest}"
    assert td.dataset_versions == {"code15": "2025"}
    assert list(td.records["key"]) == list(td.keys)
    assert set(td.region) == {"Brazil"} and set(td.dataset) == {"code15"}


def test_build_is_deterministic_and_seeded():
    index = binary_index(40, 60)
    a, b = build_task("code15_chagas", {"code15": index}), build_task("code15_chagas", {"code15": index})
    assert a.split.tolist() == b.split.tolist()
    c = build_task("code15_chagas", {"code15": index}, seed=1)
    assert c.split.tolist() != a.split.tolist()
    shuffled = replace(index, records=index.records.sample(frac=1.0, random_state=3).reset_index(drop=True))
    assert build_task("code15_chagas", {"code15": shuffled}).split.tolist() == a.split.tolist()


def test_build_skips_binary_task_with_too_few_positives():
    with pytest.raises(TaskSkip, match=r"chagas: records per split .*needs >= 2") as info:
        build_task("code15_chagas", {"code15": binary_index(4, 40)})
    assert info.value.task == "code15_chagas"
    with pytest.raises(TaskSkip, match="none is loaded"):
        build_task("code15_chagas", {})


def test_build_multiclass_drops_rare_class_logs_and_excludes_its_records(caplog):
    rhythms = [("sinus rhythm",)] * 40 + [("sinus bradycardia",)] * 20 + [("atrial fibrillation",)] * 12
    rhythms += [("atrial flutter, typical",)] * 3 + [("irregular sinus rhythm",)] * 2
    index = ludb_index(rhythm=rhythms)
    with caplog.at_level(logging.INFO, logger="ecgfm_suite.data.tasks.build"):
        td = build_task("ludb_rhythm", {"ludb": index})
    assert td.classes == ("sinus_rhythm", "sinus_bradycardia", "atrial_fibrillation")
    assert set(td.dropped_classes) == {"sinus_tachycardia", "sinus_arrhythmia", "atrial_flutter"}
    assert "3 in total" in td.dropped_classes["atrial_flutter"]
    assert "atrial_flutter dropped" in caplog.text
    assert td.excluded == {"ludb: no rhythm statement maps to a class": 2, "class atrial_flutter dropped (too rare)": 3}
    assert len(td.keys) == 72 and set(td.y.tolist()) == {0, 1, 2}
    for s in ("train", "val", "test"):
        assert min(td.counts[s].values()) >= 2


def test_build_multilabel_drops_rare_columns_keeps_rows():
    conduction = [("incomplete right bundle branch block",)] * 15 + [("left anterior hemiblock",)] * 10
    conduction += [("complete left bundle branch block",)] * 2 + [()] * 30
    td = build_task("ludb_conduction", {"ludb": ludb_index(conduction=conduction)})
    assert td.y.dtype == np.int8 and td.y.shape == (57, 2)
    assert td.classes == ("irbbb", "lahb")
    assert td.y.sum(axis=0).tolist() == [15, 10]
    assert "clbbb" in td.dropped_classes and "crbbb" in td.dropped_classes
    for s in ("train", "val", "test"):
        part = td.y[td.indices(s)]
        assert (part.sum(axis=0) >= 2).all() and ((1 - part).sum(axis=0) >= 2).all()


def test_a_multilabel_skip_names_three_short_classes_and_counts_the_rest():
    conduction = [("incomplete right bundle branch block",)] * 3 + [("left anterior hemiblock",)] * 2 + [()] * 40
    with pytest.raises(TaskSkip) as info:
        build_task("ludb_conduction", {"ludb": ludb_index(conduction=conduction)})
    n_classes = len(TASKS.get("ludb_conduction").classes)
    reason = str(info.value)
    assert f"too few records to evaluate (0 of {n_classes} classes evaluable, 2 needed; irbbb: " in reason
    assert reason.count("positives per split") == 3
    assert reason.endswith(f"; and {n_classes - 3} more classes short)")


def test_build_regression_is_float32_and_needs_records_per_split():
    index = make_index("ludb", [{"record_id": str(i), "age": float(20 + i)} for i in range(60)])
    td = build_task("ludb_age", {"ludb": index})
    assert td.y.dtype == np.float32 and td.classes == ()
    assert sum(c["records"] for c in td.counts.values()) == 60
    with pytest.raises(TaskSkip, match="records: records per split"):
        build_task("ludb_age", {"ludb": make_index("ludb", [{"record_id": str(i), "age": 50.0} for i in range(20)])})


def test_build_skips_when_nothing_is_labelled_naming_why():
    index = make_index("cinc2017", [{"record_id": f"A{i}", "af_label": "N"} for i in range(5)])
    with pytest.raises(TaskSkip, match=r"only 0 labelled records \(unlabelled: cinc2017: sex unknown 5\)"):
        build_task("sex", {"cinc2017": index})


def skipping_labeler(index):
    if index.dataset == "ludb":
        raise TaskSkip("labels need ludb.csv, which is missing", "/data/ludb.csv")
    return demographics.sex(index)


def test_pooled_task_skips_only_the_dataset_whose_labels_are_missing():
    spec = TaskSpec(**(SPEC | {"datasets": ("ludb", "code15"), "classes": ("female", "male"),
                               "labeler": f"{__name__}:skipping_labeler"}))
    code = make_index("code15", [{"record_id": str(i), "sex": "MF"[i % 2]} for i in range(40)])
    td = build_task(spec, {"ludb": ludb_index(rhythm=[()] * 5), "code15": code})
    assert set(td.dataset) == {"code15"} and td.dataset_versions == {"code15": "test"}
    assert "ludb.csv" in td.skipped_datasets["ludb"]
    with pytest.raises(TaskSkip, match="ludb.csv"):
        build_task(spec, {"ludb": ludb_index(rhythm=[()] * 5)})


def undeclared_labeler(index):
    return pd.Series(["maybe"] * len(index.records), index=index.records.index, dtype=object)


def test_build_rejects_undeclared_class():
    spec = TaskSpec(**(SPEC | {"labeler": f"{__name__}:undeclared_labeler"}))
    with pytest.raises(SpecError, match="'maybe', not declared"):
        build_task(spec, {"code15": binary_index(10, 10)})


def test_build_groups_keep_patients_and_duplicates_on_one_side():
    index = binary_index(30, 60)
    records = index.records.copy()
    records["patient_id"] = [f"pt{i // 3}" for i in range(len(records))]  # 3 exams per patient
    records.loc[records.index[-1], "content_hash"] = records.loc[0, "content_hash"]  # a byte-identical copy
    td = build_task("code15_chagas", {"code15": replace(index, records=records)})
    split_of = pd.Series(td.split, index=td.keys)
    assert len(set(td.groups)) == 29  # 30 patients; the copy links pt29 to pt0
    for _, keys in pd.Series(td.keys).groupby(np.asarray(td.groups)):
        assert split_of[keys.to_numpy()].nunique() == 1
    first, last = records["key"].iloc[0], records["key"].iloc[-1]
    assert split_of[first] == split_of[last]


def test_build_official_split_and_pooled_regions(ptbxl_toy):
    rows = [{"record_id": str(i), "scp_codes": {"NORM": 100.0} if i % 3 else {"IMI": 100.0},
             "strat_fold": 1 + i % 10, "patient_id": str(i)} for i in range(200)]
    index = make_index("ptbxl", rows, root=ptbxl_toy.root)
    td = build_task("ptbxl_superdiag", {"ptbxl": index})
    folds = index.records.set_index("key").loc[td.keys, "strat_fold"].to_numpy()
    assert td.split.tolist() == official_split(folds).tolist()
    assert (td.n("train"), td.n("val"), td.n("test")) == (160, 20, 20)
    assert td.classes == ("NORM", "MI") and set(td.dropped_classes) == {"STTC", "CD", "HYP"}

    chal = make_index("challenge2021", [
        {"record_id": f"{src}/r{i}", "source": src, "region": "China", "dx": ("426783006",) if i % 2 else ("426177001",)}
        for src in ("ningbo", "cpsc_2018") for i in range(20)])
    lud = ludb_index(rhythm=[("sinus rhythm",)] * 20 + [("sinus bradycardia",)] * 20)
    td = build_task("rhythm", {"challenge2021": chal, "ludb": lud})
    assert set(td.region) == {"China/ningbo", "China/cpsc_2018", "Russia"}
    assert td.classes == ("sinus_rhythm", "sinus_bradycardia")
    assert set(td.dropped_classes) == {"sinus_tachycardia", "af_or_flutter"}
    for s in ("val", "test"):  # every region is represented in val and test
        assert set(td.region[td.indices(s)]) == {"China/ningbo", "China/cpsc_2018", "Russia"}


# --- real data -----------------------------------------------------------------------------------------

def readme_counts(data_dir: Path, pattern: str) -> dict[str, int]:
    """``name count, name count`` pairs of the README line matching ``pattern`` (one capture group)."""
    text = (data_dir / "README.md").read_text()
    match = re.search(pattern, text)
    assert match, pattern
    return {name.strip(): int(n.replace(",", "")) for name, n in re.findall(r"([^,]+?) (\d[\d,]*)(?:,|$)", match.group(1))}


@pytest.mark.real_data
def test_vocab_matches_the_official_tables(data_dir):
    table = pd.read_csv(data_dir / "ptb-xl" / "scp_statements.csv", index_col=0)
    diag = table[table.diagnostic == 1]
    assert set(PTBXL_SUPERDIAG) == set(diag.diagnostic_class)
    assert set(PTBXL_SUBDIAG) == set(diag.diagnostic_subclass)
    assert tuple(table.index[table.form == 1]) == PTBXL_FORM
    assert tuple(table.index[table.rhythm == 1]) == PTBXL_RHYTHM
    root = data_dir / "challenge-2020-2021"
    codes = next(csv.reader(open(root / "weights.csv")))[1:]
    abbrevs = next(csv.reader(open(root / "weights_abbreviations.csv")))[1:]
    assert {a: c for a, c in zip(abbrevs, codes)} == {k: "|".join(v) for k, v in CHALLENGE_SCORED.items()}


#: dx_mapping_scored.csv source columns → the Challenge loader's source ids
_SOURCE_COLUMNS = {"CPSC": "cpsc_2018", "CPSC_Extra": "cpsc_2018_extra", "StPetersburg": "st_petersburg_incart",
                   "PTB": "ptb", "PTB_XL": "ptbxl", "Georgia": "georgia", "Chapman_Shaoxing": "chapman_shaoxing",
                   "Ningbo": "ningbo"}


@pytest.mark.real_data
def test_abnormality_vocab_matches_the_official_tables(data_dir):
    """Every code of the six-class tables is in the official tables, and every source that never codes one of
    the six (a zero count in the 2021 dx_mapping_scored.csv) cannot label it: a gap or an unsure statement."""
    scp = pd.read_csv(data_dir / "ptb-xl" / "scp_statements.csv", index_col=0)
    assert set(ABNORMALITY_PTBXL) | set(ABNORMALITY_PTBXL_UNSURE) <= set(scp.index)
    root = data_dir / "challenge-2020-2021"
    scored = pd.read_csv(root / "dx_mapping_scored.csv", dtype={"SNOMEDCTCode": str})
    unscored = pd.read_csv(root / "dx_mapping_unscored.csv", dtype={"SNOMEDCTCode": str})
    both = pd.concat([scored, unscored])
    names = dict(zip(both["SNOMEDCTCode"], both["Dx"], strict=True))
    assert set(ABNORMALITY_SNOMED) | set(ABNORMALITY_SNOMED_UNSURE) | set(CHALLENGE_RHYTHM_CODES) <= set(names)
    assert all(re.search("fibrillation", names[c]) for c, cls in ABNORMALITY_SNOMED.items() if cls == "AF")
    assert set(ABNORMALITY_LUDB) <= set(LUDB_RHYTHM) | set(LUDB_CONDUCTION)
    counts = scored.set_index("SNOMEDCTCode")
    for column, source in _SOURCE_COLUMNS.items():
        for cls in CODE15_ABNORMALITIES:
            codes = [c for c, k in ABNORMALITY_SNOMED.items() if k == cls and c in counts.index]
            if counts.loc[codes, column].sum() == 0:
                unsure = ABNORMALITY_SOURCE_UNSURE.get(source, {}).values()
                assert source in ABNORMALITY_SOURCE_GAPS or any(cls in hidden for hidden, _ in unsure), (source, cls)


@pytest.mark.real_data
def test_ludb_vocab_covers_every_statement_in_ludb_csv(data_dir):
    rows = list(csv.DictReader(open(data_dir / "ludb" / "ludb.csv", newline="")))

    def cells(column):
        return [s.strip().lower().rstrip(".") for r in rows for s in r[column].split("\n") if s.strip()]

    not_classes = {"wandering atrial pacemaker", "aberrant conduction", "irregular sinus rhythm"}
    assert set(cells("Rhythms")) == set(LUDB_RHYTHM) | not_classes
    assert set(cells("Conduction abnormalities")) == set(LUDB_CONDUCTION)
    assert {c.split(":", 1)[1].strip() for c in cells("Electric axis of the heart")} == set(LUDB_AXIS)


@pytest.mark.real_data
def test_real_ludb_rhythm_counts_match_the_readme(data_dir):
    readme = readme_counts(data_dir, r"Rhythms: ([^.]+)\.")
    as_class = {"sinus rhythm": "sinus_rhythm", "sinus bradycardia": "sinus_bradycardia",
                "atrial fibrillation": "atrial_fibrillation", "sinus arrhythmia": "sinus_arrhythmia",
                "sinus tachycardia": "sinus_tachycardia", "atrial flutter (typical)": "atrial_flutter"}
    index = real_indexes(data_dir, "ludb")["ludb"]
    labels = ludb.rhythm(index)
    got = Counter(v for v in labels if not isinstance(v, Unlabelled))
    assert dict(got) == {as_class[name]: n for name, n in readme.items() if name in as_class}
    assert sum(isinstance(v, Unlabelled) for v in labels) == readme["irregular sinus rhythm"]
    td = build_task("ludb_rhythm", {"ludb": index})
    kept = {c: sum(td.counts[s][c] for s in td.counts) for c in td.classes}
    assert kept == {c: n for c, n in got.items() if c in td.classes}
    assert set(td.classes) | set(td.dropped_classes) == set(got)
    for s in ("train", "val", "test"):
        assert min(td.counts[s].values()) >= td.task.min_positives


@pytest.mark.real_data
def test_real_ptbxl_superdiag_matches_readme_and_authors_aggregation(data_dir):
    readme = readme_counts(data_dir, r"superclasses ([A-Z0-9 ,]+) \(")
    assert readme == {"NORM": 172, "STTC": 62, "CD": 48, "MI": 44, "HYP": 28}
    index = real_indexes(data_dir, "ptbxl")["ptbxl"]
    td = build_task("ptbxl_superdiag", {"ptbxl": index})
    assert {c: sum(td.counts[s][c] for s in td.counts) for c in td.classes} == readme
    # the PTB-XL authors' example code, on the raw tables
    root = data_dir / "ptb-xl"
    Y = pd.read_csv(root / "ptbxl_database.csv", index_col="ecg_id")
    Y.scp_codes = Y.scp_codes.apply(ast.literal_eval)
    agg_df = pd.read_csv(root / "scp_statements.csv", index_col=0)
    agg_df = agg_df[agg_df.diagnostic == 1]

    def aggregate_diagnostic(y_dic):
        return list(set(agg_df.loc[key].diagnostic_class for key in y_dic if key in agg_df.index))

    authors = Y.scp_codes.apply(aggregate_diagnostic)
    ours = dict(zip(td.keys, td.y))
    assert sum(1 for v in authors if not v) == 7 == td.excluded["ptbxl: no diagnostic statement"]
    for ecg_id, classes in authors.items():
        if classes:
            row = ours[f"ptbxl/{ecg_id}"]
            assert {td.classes[i] for i in np.flatnonzero(row)} == set(classes)


@pytest.mark.real_data
def test_real_ptbxl_official_split_sizes(data_dir):
    index = real_indexes(data_dir, "ptbxl")["ptbxl"]
    assign = official_split(index.records["strat_fold"])
    assert Counter(assign.tolist()) == {"train": 240, "val": 30, "test": 30}
    td = build_task("ptbxl_superdiag", {"ptbxl": index})
    unlabelled = index.records[[not set(c) & set(ptbxl.aggregation(index, "superdiag")) for c in index.records.scp_codes]]
    gone = Counter(official_split(unlabelled["strat_fold"]).tolist())
    assert {s: td.n(s) for s in ("train", "val", "test")} == {s: n - gone[s] for s, n in
                                                              {"train": 240, "val": 30, "test": 30}.items()}
    patients = pd.Series(td.split, index=index.records.set_index("key").loc[td.keys, "patient_id"])
    assert patients.groupby(level=0).nunique().max() == 1


@pytest.mark.slow
@pytest.mark.real_data
def test_real_cinc2017_counts_and_harmonised_rhythm_regions(data_dir):
    reference = list(csv.reader(open(data_dir / "cinc2017" / "training2017" / "REFERENCE.csv")))
    truth = Counter(label for _, label in reference)
    assert truth == {"N": 2105, "O": 1024, "A": 738, "~": 284}  # README: all 284 ~, all 738 A, N 2,105, O 1,024
    indexes = real_indexes(data_dir, "ludb", "ptbxl", "challenge2021", "cinc2017")
    td = build_task("cinc2017_af", {"cinc2017": indexes["cinc2017"]})
    assert {c: sum(td.counts[s][c] for s in td.counts) for c in td.classes} == truth
    for c in td.classes:  # stratified: each split within 1 % of the class share
        share = truth[c] / len(reference)
        for s in ("train", "val", "test"):
            assert abs(td.counts[s][c] / td.n(s) - share) < 0.01

    rhythm = build_task("rhythm", indexes)
    countries = {r.split("/")[0] for r in rhythm.region[rhythm.indices("test")]}
    assert len(countries) >= 3 and {"Russia", "Germany", "USA"} <= countries
    assert set(rhythm.dataset) == {"ludb", "ptbxl", "challenge2021", "cinc2017"}
    n_cinc = sum(1 for d in rhythm.dataset if d == "cinc2017")
    assert n_cinc == truth["N"] + truth["A"]
    assert rhythm.excluded["cinc2017: CinC 2017 class 'O' has no harmonised rhythm"] == truth["O"]


@pytest.mark.real_data
def test_real_challenge_dx_and_duplicate_grouping(data_dir):
    index = real_indexes(data_dir, "challenge2021")["challenge2021"]
    td = build_task("challenge2021_dx", {"challenge2021": index})
    raw = Counter(code for dx in index.records["dx"] for code in dx)
    for i, cls in enumerate(td.classes):
        assert int(td.y[:, i].sum()) == sum(1 for dx in index.records["dx"]
                                             if set(dx) & set(CHALLENGE_SCORED[cls])), cls
    assert int(td.y[:, td.classes.index("NSR")].sum()) == raw["426783006"]
    dup = index.records[index.records["content_hash"].duplicated(keep=False)]["key"].tolist()
    assert len(dup) == 2  # georgia E07509 / E07510: byte-identical .mat files
    where = {k: i for i, k in enumerate(td.keys)}
    assert td.groups[where[dup[0]]] == td.groups[where[dup[1]]]
    assert td.split[where[dup[0]]] == td.split[where[dup[1]]]
    assert set(td.region) <= {"China/ningbo", "China/cpsc_2018", "China/cpsc_2018_extra", "China/chapman_shaoxing",
                              "USA/georgia", "Germany/ptbxl", "Germany/ptb"}


@pytest.mark.real_data
def test_real_brugada_skips_naming_metadata(data_dir):
    index = real_indexes(data_dir, "brugada_huca")["brugada_huca"]
    with pytest.raises(TaskSkip, match="metadata.csv") as info:
        build_task("brugada_huca_brugada", {"brugada_huca": index})
    assert info.value.path and info.value.path.endswith("metadata.csv")


@pytest.mark.real_data
def test_real_harmonised_abnormalities_pool_three_continents(data_dir):
    indexes = real_indexes(data_dir, "ludb", "ptbxl", "challenge2021", "code15")
    td = build_task("abnormalities", indexes)
    assert set(td.dataset) == {"ludb", "ptbxl", "challenge2021"}  # the shared CODE-15% is the WFDB form only
    assert "only the Challenge 2025 WFDB form" in td.skipped_datasets["code15"]
    assert {r.split("/")[0] for r in td.region} >= {"Russia", "Germany", "China", "USA"}
    ludb_labels = harmonised.abnormalities(indexes["ludb"])
    readme = readme_counts(data_dir, r"Conduction: ([^.]+)\.")
    assert sum("1dAVb" in v for v in ludb_labels if not isinstance(v, Unlabelled)) == readme["I° AV block"]
    assert sum("RBBB" in v for v in ludb_labels if not isinstance(v, Unlabelled)) == readme["complete RBBB"]
    reasons = set(td.excluded)
    assert f"challenge2021: {ABNORMALITY_SOURCE_GAPS['cpsc_2018']}" in reasons


@pytest.mark.parametrize(("field", "bad"), [("id", "sex\n"), ("labeler", "ecgfm_suite.data.tasks.vocab:sex_labels\n")])
def test_a_task_id_and_labeler_are_matched_whole_including_their_end(field: str, bad: str) -> None:
    with pytest.raises(SpecError, match=repr(field)):
        replace(TASKS.get("sex"), **{field: bad})
