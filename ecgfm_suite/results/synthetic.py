"""Synthetic cell results for the scale benchmark and the merge tests: the real schema, made-up numbers.

They exercise planning, sharding, merging and reporting at sizes no real run reaches (100,000 cells)
without encoding anything; the numbers are drawn from a seeded generator, never reported as results.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import __version__
from .cell import CellResult, CellSpec, MetricSummary


def synthetic_matrix(n_models: int, n_tasks: int, n_levels: int) -> list[CellSpec]:
    """``n_models × n_tasks × n_levels`` cells, ordered by model like ``Runner.plan``."""
    levels = [f"frac{p}" for p in (1, 2, 5, 10, 20, 30, 50, 70, 90, 100)] + [f"shot{k}" for k in (1, 5, 10, 20)]
    if n_levels > len(levels):
        raise ValueError(f"at most {len(levels)} scarcity levels")
    return [CellSpec(model=f"model{m:03d}", task=f"task{t:03d}", scarcity=lv)
            for m in range(n_models) for t in range(n_tasks) for lv in levels[:n_levels]]


def synthetic_result(cell: CellSpec, seeds: Sequence[int], rng: np.random.Generator,
                     dataset_versions: dict[str, str] | None = None, suite_version: str | None = None) -> CellResult:
    per_seed = rng.uniform(0.5, 0.95, size=len(seeds))
    value = float(per_seed.mean())
    auroc = MetricSummary(value=value, ci_low=value - 0.05, ci_high=min(value + 0.05, 1.0), se=0.025,
                          seed_mean=value, seed_std=float(per_seed.std(ddof=1)) if len(seeds) > 1 else 0.0,
                          per_seed=tuple(float(v) for v in per_seed))
    return CellResult(
        cell_id=cell.id, model=cell.model, checkpoint_sha256="0" * 64, random_init=False, task=cell.task,
        task_type="binary", dataset_versions=dataset_versions or {"ludb": "v1"}, task_version="t1",
        preprocessing={"fs": 500}, scarcity=cell.scarcity, seeds=tuple(seeds), probe="linear",
        probe_params=tuple({"seed": s, "C": 1.0} for s in seeds), n_train=100, n_val=20, n_test=40,
        classes=("neg", "pos"), main_metric="auroc", metrics={"auroc": auroc},
        suite_version=suite_version or __version__,
    )


def synthetic_record_counts(task_ids: Sequence[str]) -> dict[str, int]:
    """Made-up record counts of ``synthetic_matrix``'s tasks (100 to 500), the shard planner's cost input."""
    return {t: 100 * (1 + int(t.removeprefix("task")) % 5) for t in task_ids}
