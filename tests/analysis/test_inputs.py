"""``load_model_task``: what an analysis is told about the task's records that have no embedding."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ecgfm_suite.analysis.inputs import load_model_task
from ecgfm_suite.errors import CellSkip

KEYS = np.array(["ludb/1", "ludb/2", "ludb/3", "ptbxl/4", "ptbxl/5", "ptbxl/6"])


class FakeRunner:
    """A runner whose prepared sets dropped ``ludb/2`` (with a reason in the manifest) and ``ptbxl/5`` (none)."""

    def __init__(self, split: list[str], have: list[bool]) -> None:
        self.td = SimpleNamespace(split=np.array(split), keys=KEYS,
                                  dataset=np.array([k.split("/")[0] for k in KEYS]))
        self.have = np.array(have)
        self.settings = SimpleNamespace(seeds=(0, 1), n_boot=10, local_cache_dir=Path("/nonexistent"))
        self.manifests_read: list[str] = []

    def task_data(self, task_id: str) -> Any:
        return self.td

    def task_embeddings(self, encoder: Any, td: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        return np.zeros((len(KEYS), 4), np.float32), self.have, {}

    def dataset_embeddings(self, encoder: Any, dataset_id: str) -> tuple[dict[str, int], np.ndarray, dict[str, Any],
                                                                        bool]:
        self.manifests_read.append(dataset_id)
        excluded = [{"record": "ludb/2", "reason": "flat lead II"}] if dataset_id == "ludb" else []
        return {}, np.zeros((0, 4), np.float32), {"excluded": excluded}, True

    def take_probes(self, cell_id: str) -> None:
        return None


def test_records_without_an_embedding_carry_the_prepared_sets_reason_or_say_they_have_none() -> None:
    runner = FakeRunner(["train", "train", "val", "val", "test", "test"], [True, False, True, True, False, True])
    data = load_model_task(runner, encoder=None, model="m", task_id="t", levels=["frac100"])  # type: ignore[arg-type]
    assert data.excluded == {"ludb/2": "flat lead II", "ptbxl/5": "no embedding (not in the prepared set)"}
    assert sorted(runner.manifests_read) == ["ludb", "ptbxl"]
    assert data.seeds == (0, 1) and data.n_boot == 10 and data.levels == ("frac100",)


def test_every_record_embedded_reads_no_manifest_and_an_emptied_split_is_a_skip_naming_the_counts() -> None:
    runner = FakeRunner(["train", "train", "val", "val", "test", "test"], [True] * 6)
    assert load_model_task(runner, None, "m", "t", ["frac100"]).excluded == {}  # type: ignore[arg-type]
    assert runner.manifests_read == []
    runner = FakeRunner(["train", "train", "val", "val", "test", "test"], [True, True, True, True, False, False])
    with pytest.raises(CellSkip, match="empty split.*test=0"):
        load_model_task(runner, None, "m", "t", ["frac100"])  # type: ignore[arg-type]
