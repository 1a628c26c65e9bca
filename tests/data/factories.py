"""Hand-built ``DatasetIndex`` objects (the loader contract) and cached real indexes for task tests."""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ecgfm_suite.data.records import RECORD_COLUMNS, STD_LEADS, DatasetIndex

REGION = {"ludb": "Russia", "brugada_huca": "Spain", "ptbxl": "Germany", "code15": "Brazil", "cinc2017": "USA",
          "challenge2021": "China"}


def make_index(dataset: str, rows: list[dict[str, Any]], *, version: str = "test", root: str | Path = "/data",
               missing_label_files: tuple[str, ...] = ()) -> DatasetIndex:
    """Rows need ``record_id`` plus their label columns; every RECORD_COLUMNS field gets a default
    (a distinct content hash per record unless given)."""
    full = []
    for row in rows:
        rid = str(row["record_id"])
        base = {
            "key": f"{dataset}/{rid}", "record_id": rid, "path": f"{root}/{rid}", "format": "wfdb", "fs": 500.0,
            "n_samples": 5000, "leads": ",".join(STD_LEADS), "region": REGION.get(dataset, "Nowhere"),
            "source": dataset, "patient_id": None, "age": math.nan, "sex": None,
            "content_hash": hashlib.sha256(f"{dataset}/{rid}".encode()).hexdigest(),
        }
        full.append(base | row)
    records = pd.DataFrame(full)
    assert set(RECORD_COLUMNS) <= set(records.columns)
    return DatasetIndex(dataset=dataset, version=version, root=Path(root), records=records,
                        missing_label_files=list(missing_label_files))


def binary_index(n_pos: int, n_neg: int, dataset: str = "code15", **kw: Any) -> DatasetIndex:
    """A code15-shaped index with ``n_pos`` Chagas-positive and ``n_neg`` negative exams."""
    rows = [{"record_id": f"p{i}", "chagas": True} for i in range(n_pos)]
    rows += [{"record_id": f"n{i}", "chagas": False} for i in range(n_neg)]
    return make_index(dataset, rows, **kw)


@functools.cache
def real_index(data_dir: str, dataset: str) -> DatasetIndex:
    """The loader's index of one real dataset, loaded once per test session."""
    from ecgfm_suite.data.discovery import load_index

    return load_index(dataset, data_dir)


def real_indexes(data_dir: str | Path, *datasets: str) -> dict[str, DatasetIndex]:
    return {d: real_index(str(data_dir), d) for d in datasets}
