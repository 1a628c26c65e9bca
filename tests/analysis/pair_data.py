"""A (model, task) of synthetic records for the per-pair analyses' tests: chosen labels, embeddings and record
attributes (sex, age, dataset), split 60/20/20, without reading any signal."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ecgfm_suite.analysis.inputs import ModelTaskData
from ecgfm_suite.data.tasks import TASKS
from ecgfm_suite.data.tasks.build import TaskData

SPLIT = np.array(["train", "train", "train", "val", "test"])


def task_data(task_id: str, y: np.ndarray, classes: Sequence[str], *, sex: Sequence[object] | None = None,
              age: Sequence[object] | None = None, dataset: Sequence[str] | None = None) -> TaskData:
    n = len(y)
    keys = np.array([f"synthetic/{i:05d}" for i in range(n)], dtype=object)
    dataset_arr = np.array(dataset if dataset is not None else ["ludb"] * n, dtype=object)
    records = pd.DataFrame({"key": keys, "sex": list(sex) if sex is not None else [None] * n,
                            "age": list(age) if age is not None else [np.nan] * n, "dataset": dataset_arr})
    return TaskData(task=TASKS.get(task_id), keys=keys, y=np.asarray(y), classes=tuple(classes), dropped_classes={},
                    dataset=dataset_arr, region=dataset_arr.copy(), source=dataset_arr.copy(),
                    groups=np.arange(n).astype(str), split=SPLIT[np.arange(n) % len(SPLIT)], counts={}, excluded={},
                    dataset_versions=dict.fromkeys(set(dataset_arr.tolist()), "1"), version="synthetic",
                    records=records)


def pair(td: TaskData, X: np.ndarray, cache_dir: Path, *, n_boot: int = 200) -> ModelTaskData:
    return ModelTaskData(model="synthetic_fm", task=td, X=np.asarray(X, dtype=np.float32),
                         have=np.ones(len(X), dtype=bool), encoder=None, levels=("frac10", "frac100"), seeds=(0, 1),
                         n_boot=n_boot, cache_dir=cache_dir)
