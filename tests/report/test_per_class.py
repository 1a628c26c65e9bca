"""Per-class metrics of multiclass/multilabel cells: stored in ``CellResult.per_class`` (schema 3), written to
``results.csv``, shown per task in a collapsed table of the report, read back from older schemas, carried
through a shard merge, and left out of the gate (which stays on the macro headline).

The per-class blocks are made the way a cell makes them (``evaluate_classes`` per seed, then
``summarise_classes``) on seeded arrays with one class missing from the test split.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgfm_suite.errors import SpecError
from ecgfm_suite.gate.baselines import BaselineEntry
from ecgfm_suite.gate.floors import check_cell
from ecgfm_suite.metrics import class_positives, evaluate_classes
from ecgfm_suite.report import write_report
from ecgfm_suite.results import SCHEMA_VERSION, CellResult, RunDir
from ecgfm_suite.results.cell import CellSpec, summarise_classes
from ecgfm_suite.results.merge import merge_runs
from ecgfm_suite.results.synthetic import synthetic_result

SEEDS = (0, 1)
LABELS = ("af", "lbbb", "rare")  # "rare" has no positive test record


def _multilabel(cell: CellSpec, seed: int = 0) -> CellResult:
    """A synthetic cell turned multilabel, its per-class block computed as ``run_cell`` computes it."""
    rng = np.random.default_rng(seed)
    y = (rng.random((80, 3)) < [0.3, 0.2, 0.0]).astype(np.int8)
    y[:2, :2] = [[0, 0], [1, 1]]
    per_seed, train = [], []
    for s in SEEDS:
        scores = y + rng.normal(size=y.shape)
        per_seed.append(evaluate_classes("multilabel", y, scores, n_boot=50, seed=s).classes)
        y_train = (rng.random((40, 3)) < 0.25).astype(np.int8)
        train.append(tuple((class_positives("multilabel", y_train, 3) / len(y_train)).tolist()))
    base = synthetic_result(cell, SEEDS, rng)
    return dataclasses.replace(base, task_type="multilabel", classes=LABELS,
                               per_class=summarise_classes(LABELS, per_seed, train))


def _binary(cell: CellSpec) -> CellResult:
    return synthetic_result(cell, SEEDS, np.random.default_rng(1))


ML = CellSpec(model="model000", task="task000", scarcity="frac100")
ML_LOW = CellSpec(model="model001", task="task000", scarcity="frac10")
BIN = CellSpec(model="model000", task="task001", scarcity="frac100")


def test_a_multilabel_result_has_every_class_and_the_undefined_one_says_why():
    result = _multilabel(ML)
    assert [c.label for c in result.per_class] == list(LABELS)
    af, _, rare = result.per_class
    assert af.undefined is None and all(m is not None and m.ci_low <= m.ci_high for m in af.metrics.values())
    assert len(af.metrics["auroc"].per_seed) == len(SEEDS) and af.metrics["auroc"].seed_std >= 0
    assert rare.metrics == {"auroc": None, "auprc": None} and rare.n_test_positive == 0
    assert rare.undefined.startswith("no positive record of this class in the test split")
    assert 0 <= rare.train_prevalence <= 1 and rare.test_prevalence == 0.0
    stored = json.loads(json.dumps(result.to_dict()))
    assert stored["schema_version"] == SCHEMA_VERSION == 3
    assert stored["per_class"][2]["metrics"] == {"auroc": None, "auprc": None}  # null in JSON, never 0.5
    assert CellResult.from_dict(stored) == result


@pytest.mark.parametrize("version", [1, 2])
def test_results_of_schema_1_and_2_are_read_without_a_per_class_block(tmp_path: Path, version: int):
    data = _binary(BIN).to_dict()
    del data["per_class"]
    data["schema_version"] = version
    if version == 1:
        del data["excluded_records"]
    old = CellResult.from_dict(json.loads(json.dumps(data)))
    assert old.per_class == () and old.schema_version == version
    run = RunDir.create(tmp_path, "run")
    run.append(old)
    run.write_csv(run.results())
    write_report(run.path)
    assert "No multiclass or multilabel cell in this run" in (run.path / "index.html").read_text()
    with pytest.raises(SpecError, match="newer than this suite"):
        CellResult.from_dict({**data, "schema_version": SCHEMA_VERSION + 1})


def test_results_csv_has_each_class_under_its_metric_and_prevalence_columns(tmp_path: Path):
    ml, binary = _multilabel(ML), _binary(BIN)
    run = RunDir.create(tmp_path, "run")
    table = pd.read_csv(run.write_csv([ml, binary])).set_index("cell_id")
    af = ml.per_class[0]
    row = table.loc[ML.id]
    for metric in ("auroc", "auprc"):
        m = af.metrics[metric]
        assert row[f"{metric}[af]"] == pytest.approx(m.value)
        assert row[f"{metric}[af]_ci_low"] == pytest.approx(m.ci_low)
        assert row[f"{metric}[af]_ci_high"] == pytest.approx(m.ci_high)
        assert row[f"{metric}[af]_seed_std"] == pytest.approx(m.seed_std)
        assert pd.isna(row[f"{metric}[rare]"]) and pd.isna(row[f"{metric}[rare]_ci_low"])
    assert row["auroc"] == pytest.approx(ml.metrics["auroc"].value)  # the macro keeps its columns
    assert row["train_prevalence[af]"] == pytest.approx(af.train_prevalence)
    assert row["test_prevalence[af]"] == pytest.approx(af.test_prevalence) and row["test_prevalence[rare]"] == 0
    assert pd.isna(row["undefined[af]"]) and row["undefined[rare]"].startswith("no positive record")
    assert table.loc[BIN.id, ["auroc[af]", "train_prevalence[af]"]].isna().all()  # binary: no per-class block


def test_report_has_a_collapsed_per_class_table_per_task(tmp_path: Path):
    results = [_multilabel(ML), _multilabel(ML_LOW, seed=1), _binary(BIN)]
    run = RunDir.create(tmp_path, "run")
    for r in results:
        run.append(r)
    html = write_report(run.path).read_text()
    blocks = html.split('<details class="per-class"')[1:]  # in the task's section of the (small) run's page
    assert len(blocks) == 1  # one per task with classes: the binary task001 has none
    block = blocks[0].split("</details>")[0]
    assert block.startswith(' data-task="task000">') and " open" not in block.split(">")[0]
    assert "3 classes × 2 cells" in block
    rows = [f"{cell.id}/{label}" for cell in (ML_LOW, ML) for label in LABELS]  # task, level, model, class order
    found = [part.split('"')[0] for part in block.split('data-class="')[1:]]
    assert found == rows
    rare = block[block.index(f'data-class="{ML.id}/rare"'):]
    assert "no positive record of this class in the test split: AUROC and AUPRC are undefined" in rare.split("</tr>")[0]
    af = results[0].per_class[0].metrics["auroc"]
    assert f"{af.value:.3f}" in block[block.index(f'data-class="{ML.id}/af"'):]
    table = pd.read_csv(run.path / "per_class.csv")
    assert [f"{c}/{k}" for c, k in zip(table["cell_id"], table["class"], strict=True)] == rows
    assert table["auroc"].isna().tolist() == [k == "rare" for k in table["class"]]


def test_shard_runs_with_per_class_blocks_merge_and_the_gate_stays_on_the_macro(tmp_path: Path):
    runs = []
    for k, cells in enumerate(([ML], [ML_LOW, BIN]), start=1):
        run = RunDir.create(tmp_path / "jobs", f"shard{k}")
        for cell in cells:
            run.append(_binary(cell) if cell == BIN else _multilabel(cell, seed=k))
        runs.append(run.path)
    merged = merge_runs(runs, tmp_path / "merged")
    originals = {r.cell_id: r for p in runs for r in RunDir.open(p).results()}
    assert {r.cell_id: r for r in merged.results} == originals
    result = originals[ML.id]
    assert result.per_class[2].undefined is not None
    assert check_cell(result, floor=None) == []  # an undefined class is no failure: the gate reads the macro
    assert check_cell(result, floor=0.99) and "auroc" in check_cell(result, floor=0.99)[0]
    assert BaselineEntry.from_result(result) == BaselineEntry.from_result(dataclasses.replace(result, per_class=()))
