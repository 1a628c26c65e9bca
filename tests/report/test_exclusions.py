"""Records a dataset leaves out reach the cell's ``exclusions``, ``exclusions.csv`` and the report, one by one.

A copy of the real LUDB with one signal file truncated and one header garbled: both are left out while
indexing, so the cell that runs on it must count them and the run's report must list each with its file and
reason (the README promises "bad records are excluded with file and reason").
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgfm_suite.engine.runner import Runner, run_cell
from ecgfm_suite.engine.settings import resolve
from ecgfm_suite.report import write_report
from ecgfm_suite.results import CellResult, RunDir
from ecgfm_suite.results.synthetic import synthetic_matrix, synthetic_result


@pytest.fixture(scope="module")
def broken_ludb(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = data_dir / "ludb"
    if not (source / "ludb.csv").is_file():
        pytest.skip(f"no LUDB at {source}")
    root = tmp_path_factory.mktemp("data") / "ludb"
    (root / "data").mkdir(parents=True)
    shutil.copy(source / "ludb.csv", root / "ludb.csv")
    for path in (source / "data").iterdir():
        if path.suffix in (".hea", ".dat"):
            shutil.copy(path, root / "data" / path.name)
    dat = root / "data" / "7.dat"
    dat.write_bytes(dat.read_bytes()[:-240])  # truncated: 10 frames short
    hea = root / "data" / "9.hea"
    hea.write_text(hea.read_text().replace(" v3\n", " v3 junk\n", 1))  # a garbled signal line
    return root.parent


@pytest.mark.real_data
def test_a_cells_exclusions_count_and_list_the_records_left_out_at_indexing(broken_ludb: Path, tmp_path: Path):
    settings = resolve(cli={"data_dir": str(broken_ludb), "cache_dir": str(tmp_path / "cache"),
                            "weights_dir": str(tmp_path / "weights"), "models": "random_cnn", "tasks": "ludb_sex",
                            "scarcity": "frac100", "seeds": "1", "n_boot": "20", "device": "cpu", "workers": "1"},
                       env={})
    runner = Runner(settings)
    [cell] = runner.plan()
    result = run_cell(runner, cell, runner.load_encoder("random_cnn")).result
    assert result.exclusions == {"records_without_embedding": 0, "dataset_exclusions": 2, "index_exclusions": 2,
                                 "prepare_exclusions": 0}
    listed = {e["record"]: e for e in result.excluded_records}
    assert sorted(listed) == ["data/7", "data/9"]
    assert listed["data/7"]["reason"].startswith("7.dat: holds 4990 samples per lead, header says 5000 (truncated)")
    assert listed["data/9"]["reason"].startswith("9.hea: signal 9 names an unknown lead 'v3 junk'")
    assert listed["data/7"]["file"] == str(broken_ludb / "ludb" / "data" / "7")
    assert {e["dataset"] for e in listed.values()} == {"ludb"} and {e["stage"] for e in listed.values()} == {"index"}
    # stored, read back and reported: exclusions.csv lists each record, the page in a collapsed <details>
    run = RunDir.create(tmp_path / "reports", "run")
    run.append(result)
    assert run.results()[0].excluded_records == result.excluded_records
    html = write_report(run.path).read_text()
    table = pd.read_csv(run.path / "exclusions.csv").set_index("record")
    assert sorted(table.index) == ["data/7", "data/9"]
    assert table.loc["data/7", "reason"] == listed["data/7"]["reason"]
    assert table.loc["data/7", "file"] == listed["data/7"]["file"] and table.loc["data/7", "models"] == "random_cnn"
    counts = pd.read_csv(run.path / "cell_exclusions.csv").set_index("cell_id")
    assert counts.loc[cell.id, "index_exclusions"] == 2 and counts.loc[cell.id, "dataset_exclusions"] == 2
    details = html[html.index('<details id="excluded-records-list">'):]
    details = details[: details.index("</details>")]
    assert "2 records left out by the datasets" in details
    assert 'data-excluded="ludb/data/7"' in details and "holds 4990 samples per lead" in details
    assert "signal 9 names an unknown lead &#39;v3 junk&#39;" in details


def test_excluded_records_are_listed_once_with_the_models_that_lost_them(tmp_path: Path):
    cells = synthetic_matrix(2, 1, 2)
    rng = np.random.default_rng(0)
    index = {"dataset": "ludb", "stage": "index", "record": "data/7", "file": "/d/ludb/data/7",
             "reason": "7.dat: truncated"}
    prepare = {"dataset": "ludb", "stage": "prepare", "record": "ludb/9", "file": "/d/ludb/data/9",
               "reason": "window too short"}
    run = RunDir.create(tmp_path, "run")
    for cell in cells:
        lost = (index, prepare) if cell.model == cells[0].model else (index,)
        run.append(dataclasses.replace(synthetic_result(cell, (0,), rng), excluded_records=lost))
    write_report(run.path)
    table = pd.read_csv(run.path / "exclusions.csv")
    assert table.to_dict("records") == [
        {**index, "models": ", ".join(sorted({c.model for c in cells})), "cells": len(cells)},
        {**prepare, "models": cells[0].model, "cells": sum(c.model == cells[0].model for c in cells)},
    ]


def test_results_of_schema_1_are_read_without_a_list(tmp_path: Path):
    [cell] = synthetic_matrix(1, 1, 1)
    data = synthetic_result(cell, (0,), np.random.default_rng(0)).to_dict()
    data.update(schema_version=1, exclusions={"records_without_embedding": 1, "dataset_exclusions": 3})
    del data["excluded_records"]
    old = CellResult.from_dict(json.loads(json.dumps(data)))
    assert old.excluded_records == () and old.exclusions["dataset_exclusions"] == 3
    run = RunDir.create(tmp_path, "run")
    run.append(old)
    write_report(run.path)
    counts = pd.read_csv(run.path / "cell_exclusions.csv")
    assert counts.loc[0, "dataset_exclusions"] == 3 and pd.isna(counts.loc[0, "index_exclusions"])
    assert (run.path / "exclusions.csv").read_text().strip() == ""  # no record is known to have been left out
