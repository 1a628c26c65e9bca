"""Shards: a deterministic, disjoint, cost-balanced split of the matrix for N CI jobs (``--ecgfm-shard K/N``).

Every job plans the whole matrix and keeps its own part, so the N jobs need no coordinator: the split
depends only on the cells and their expected costs. A cell's expected cost is its task's record count
times its model's encode seconds per record, taken from the timings the embedding cache recorded
(models without a recorded timing get the median rate; with none recorded, cost = record count).
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import logging
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .._io import sha256_json
from ..errors import SpecError
from ..results.cell import CellSpec
from ..storage import StorePath

log = logging.getLogger(__name__)


def parse_shard(value: str) -> tuple[int, int]:
    """``"K/N"`` (1-based) → (K, N)."""
    k, sep, n = str(value).partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = (0, 0)
    if not sep or not 1 <= shard[0] <= shard[1]:
        raise SpecError(f"--ecgfm-shard expects K/N with 1 <= K <= N, got {value!r}")
    return shard


def assign_shards(cells: Sequence[CellSpec], n: int, cost: Callable[[CellSpec], float]) -> list[list[CellSpec]]:
    """Greedy longest-processing-time split into ``n`` disjoint shards covering ``cells``, by (model, task).

    A (model, task) pair's cells stay together: they share one encoding of the task's records, and the
    pair's analyses (which read every scarcity level of it) then run in the shard that ran its cells. Pairs
    go, most expensive first (ties by id), to the currently cheapest shard (ties by index), so the result
    does not depend on the input order and the costliest shard exceeds the mean by at most one pair's cost.
    Within a shard the cells keep their input order (the plan's one-model-at-a-time order).
    """
    if n < 1:
        raise SpecError(f"number of shards must be >= 1, got {n}")
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise SpecError("cannot shard a plan with duplicated cell ids")
    costs: dict[tuple[str, str], float] = {}
    for c in cells:
        cell_cost = float(cost(c))
        if not cell_cost >= 0:
            raise SpecError(f"cell {c.id} has an invalid expected cost {cell_cost!r}")
        costs[(c.model, c.task)] = costs.get((c.model, c.task), 0.0) + cell_cost
    heap = [(0.0, k) for k in range(n)]
    owner: dict[tuple[str, str], int] = {}
    for pair in sorted(costs, key=lambda p: (-costs[p], p)):
        load, k = heapq.heappop(heap)
        owner[pair] = k
        heapq.heappush(heap, (load + costs[pair], k))
    shards: list[list[CellSpec]] = [[] for _ in range(n)]
    for cell in cells:
        shards[owner[(cell.model, cell.task)]].append(cell)
    return shards


def recorded_encode_rates(cache_dir: Path | StorePath, as_of: dt.datetime | None = None) -> dict[str, float]:
    """Encode seconds per record of each model, from the embedding cache's manifests (mean over entries).

    With ``as_of``, only entries written before that time count: jobs reading a cache that others
    are filling agree on the rates however late they start.
    """
    from ..embeddings.cache import EmbeddingCache

    rates: dict[str, list[float]] = {}
    for manifest in EmbeddingCache(cache_dir).manifest_paths():
        try:
            if as_of is not None and _written(manifest) > as_of:
                continue
            m = json.loads(manifest.read_text())
            model, timings = m["description"]["model"], m["timings"]
            if timings["records"] > 0:
                rates.setdefault(str(model), []).append(float(timings["encode_s"]) / timings["records"])
        except (OSError, ValueError, KeyError, TypeError, NotImplementedError) as exc:
            log.debug("no timing in %s (%s)", manifest, exc)
    return {model: statistics.fmean(v) for model, v in rates.items()}


def _written(manifest: Path | StorePath) -> dt.datetime:
    if isinstance(manifest, StorePath):
        return manifest.modified()
    return dt.datetime.fromtimestamp(manifest.stat().st_mtime, tz=dt.UTC)


def cell_cost(records: Mapping[str, int], rates: Mapping[str, float]) -> Callable[[CellSpec], float]:
    """Expected cost of a cell: its task's record count × its model's encode rate (median rate when unknown)."""
    default = statistics.median(rates.values()) if rates else 1.0

    def cost(cell: CellSpec) -> float:
        return max(records.get(cell.task, 0), 1) * rates.get(cell.model, default)

    return cost


def shard_digest(shards: Sequence[Sequence[CellSpec]]) -> str:
    """Fingerprint of a whole split: shard runs of one matrix job must share it (checked by ``merge``)."""
    return sha256_json([[c.id for c in shard] for shard in shards])
