"""The dataset summary behind ``ecgfm-suite datasets``."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter

import pandas as pd
import pytest

from ecgfm_suite.data.summary import label_counts, summarise, summarise_index
from ecgfm_suite.data.tasks import TASKS, Unlabelled

from .factories import make_index, real_indexes

KEYS = {"dataset", "records", "excluded", "regions", "sampling_rates", "tasks", "missing_label_files",
        "skipped_tasks"}


@pytest.fixture()
def small_data_dir(data_dir, tmp_path):
    """Three LUDB records (ludb.csv still lists 200) and the Brugada-HUCA folder (no metadata.csv)."""
    (tmp_path / "ludb" / "data").mkdir(parents=True)
    shutil.copy(data_dir / "ludb" / "ludb.csv", tmp_path / "ludb")
    for rid in ("1", "109", "127"):
        for f in (data_dir / "ludb" / "data").glob(f"{rid}.*"):
            shutil.copy(f, tmp_path / "ludb" / "data")
    shutil.copytree(data_dir / "brugada-huca", tmp_path / "brugada-huca")
    return tmp_path


@pytest.mark.real_data
def test_summarise_small_dir(small_data_dir, data_dir):
    summary = summarise(small_data_dir)
    json.dumps(summary)  # JSON-ready as it is
    by = {d["dataset"]: d for d in summary}
    assert set(by) == {"ludb", "brugada_huca"}
    for d in summary:
        assert set(d) >= KEYS
    ludb = by["ludb"]
    assert ludb["records"] == 3 and ludb["regions"] == ["Russia"] and ludb["sampling_rates"] == [500]
    assert len(ludb["excluded"]) == 197 and all("ludb.csv" in e["reason"] for e in ludb["excluded"])
    # expected labels straight from ludb.csv: 1 sinus bradycardia; 109 AF + aberrant conduction;
    # 127 sinus bradycardia + wandering atrial pacemaker
    rows = {r["ID"].strip(): r for r in csv.DictReader(open(data_dir / "ludb" / "ludb.csv", newline=""))}
    rhythms = [rows[i]["Rhythms"].split("\n")[0].strip().lower() for i in ("1", "109", "127")]
    assert rhythms == ["sinus bradycardia", "atrial fibrillation", "sinus bradycardia"]
    assert ludb["tasks"]["ludb_rhythm"] == {"sinus_bradycardia": 2, "atrial_fibrillation": 1}
    assert ludb["tasks"]["rhythm"] == {"sinus_bradycardia": 2, "af_or_flutter": 1}
    sexes = Counter({"M": "male", "F": "female"}[rows[i]["Sex"].strip()] for i in ("1", "109", "127"))
    assert ludb["tasks"]["sex"] == ludb["tasks"]["ludb_sex"] == dict(sexes)
    assert set(ludb["tasks"]) == {t for t, spec in TASKS.items() if "ludb" in spec.datasets}
    brugada = by["brugada_huca"]
    assert brugada["records"] == 10 and brugada["sampling_rates"] == [100]
    assert [p.endswith("metadata.csv") for p in brugada["missing_label_files"]] == [True]
    assert set(brugada["skipped_tasks"]) == {"brugada_huca_brugada", "brugada_huca_basal_pattern",
                                             "brugada_huca_sudden_death"}
    assert all("metadata.csv" in why for why in brugada["skipped_tasks"].values())
    assert brugada["tasks"]["sex"] == {"unlabelled": 10}


def test_summarise_empty_dir(tmp_path):
    assert summarise(tmp_path) == []


@pytest.mark.real_data
def test_summary_of_real_ptbxl_and_challenge(data_dir):
    indexes = real_indexes(data_dir, "ptbxl", "challenge2021")
    ptbxl = summarise_index(indexes["ptbxl"])
    assert ptbxl["tasks"]["ptbxl_superdiag"] == {"NORM": 172, "MI": 44, "STTC": 62, "CD": 48, "HYP": 28,
                                                 "unlabelled": 7}  # data README
    assert ptbxl["tasks"]["ptbxl_rhythm"]["SR"] == 241  # README statement count
    assert sum(v for k, v in ptbxl["tasks"]["rhythm"].items() if k != "unlabelled") + \
        ptbxl["tasks"]["rhythm"]["unlabelled"] == 300
    chal = summarise_index(indexes["challenge2021"])
    assert chal["regions"] == ["China", "Germany", "USA"]
    assert chal["sources"] == dict(Counter(indexes["challenge2021"].records["source"]))
    assert [e["record"] for e in chal["excluded"]] == ["ptb/S0001"]
    nsr = sum("426783006" in dx for dx in indexes["challenge2021"].records["dx"])
    assert chal["tasks"]["challenge2021_dx"]["NSR"] == nsr


def test_label_counts_by_task_type():
    labels = pd.Series([("NORM",), ("MI", "NORM"), (), Unlabelled("x")], dtype=object)
    assert label_counts(TASKS.get("ptbxl_superdiag"), labels) == {"NORM": 2, "MI": 1, "no positive class": 1,
                                                                  "unlabelled": 1}
    ages = pd.Series([30.0, 50.0, 70.0, Unlabelled("age unknown")], dtype=object)
    assert label_counts(TASKS.get("age"), ages) == {"records": 3, "min": 30.0, "median": 50.0, "max": 70.0,
                                                    "unlabelled": 1}
    index = make_index("code15", [{"record_id": "1", "chagas": True, "sex": "F", "age": 40.0}])
    entry = summarise_index(index)
    assert entry["tasks"]["code15_chagas"] == {"chagas": 1} and "sources" not in entry
