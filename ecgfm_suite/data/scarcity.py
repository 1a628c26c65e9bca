"""Label-scarcity subsets of a training split: ``frac<p>`` (p % of the records) and ``shot<k>``
(k records per class).

Subsets are NESTED for a given seed (frac1 ⊂ frac5 ⊂ … ⊂ frac100; shot1 ⊂ shot5 ⊂ …), so a
learning curve differs only by the data added, not by a fresh draw: one seeded, stratified
ordering of the training rows is made and every level takes a prefix of it. The ordering
interleaves strata by fractional rank (systematic sampling), so every prefix keeps the class
mix; the stratum of a multilabel row is its rarest positive class, of a regression row its
quantile bin. Each level is topped up with the first row (in that ordering) of any class it
would otherwise lack, which keeps the nesting.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import SpecError

if TYPE_CHECKING:
    from .tasks.build import TaskData

#: the standard levels, in report order
LEVELS: tuple[str, ...] = ("frac1", "frac5", "frac10", "frac25", "frac50", "frac100",
                           "shot1", "shot5", "shot10", "shot20")
#: quantile bins that stand in for classes when a regression target is stratified or shot-sampled
REGRESSION_BINS = 5
#: below this many training records in some class, the default levels add a few-shot level
FEW_SHOT_BELOW = 50
_LEVEL = re.compile(r"^(frac|shot)([1-9][0-9]*)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScarcitySpec:
    kind: str  # "frac" or "shot"
    amount: int  # percent for frac, records per class for shot

    def __post_init__(self) -> None:
        if self.kind not in ("frac", "shot"):
            raise SpecError(f"scarcity kind must be 'frac' or 'shot', got {self.kind!r}", "scarcity")
        if self.kind == "frac" and not 1 <= self.amount <= 100:
            raise SpecError(f"frac level must be 1-100 percent, got {self.amount}", "scarcity")
        if self.kind == "shot" and self.amount < 1:
            raise SpecError(f"shot level must be >= 1 record per class, got {self.amount}", "scarcity")

    @classmethod
    def parse(cls, name: str) -> ScarcitySpec:
        match = _LEVEL.match(str(name).strip())
        if not match:
            raise SpecError(f"unknown scarcity level {name!r}: expected frac<1-100> or shot<k> "
                            f"(standard: {', '.join(LEVELS)})", "scarcity")
        return cls(kind=match.group(1), amount=int(match.group(2)))

    @property
    def id(self) -> str:
        return f"{self.kind}{self.amount}"


def parse_level(name: str) -> ScarcitySpec:
    """``"frac10"`` → ScarcitySpec; a bad name is a SpecError listing the standard levels."""
    return ScarcitySpec.parse(name)


def subset(y_train: np.ndarray, level: str | ScarcitySpec, seed: int, task_type: str,
           groups: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices into the training rows for ``level``; records of one group enter together."""
    spec = level if isinstance(level, ScarcitySpec) else parse_level(level)
    y_train = np.asarray(y_train)
    n = len(y_train)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    indicators = _indicators(y_train, task_type)
    group_codes = (np.arange(n) if groups is None
                   else pd.factorize(pd.Series(np.asarray(groups), dtype=object), sort=True)[0])
    if len(group_codes) != n:
        raise SpecError(f"groups has {len(group_codes)} rows, y_train {n}", "groups")
    order = _group_order(indicators, group_codes, seed)  # group codes, in selection order
    # per ordered group: its rows' indicator sums and sizes
    n_groups = int(group_codes.max()) + 1
    per_group = np.zeros((n_groups, indicators.shape[1]), dtype=np.int64)
    np.add.at(per_group, group_codes, indicators)
    sizes = np.bincount(group_codes, minlength=n_groups)
    ordered = per_group[order]
    position = np.arange(len(order))
    if spec.kind == "frac":
        take = int(np.searchsorted(np.cumsum(sizes[order]), math.ceil(spec.amount / 100 * n))) + 1
        chosen = position < take
    else:  # per class, its positive groups up to the one that brings the k-th record
        reached = np.cumsum(ordered, axis=0) >= spec.amount
        ends = np.where(reached.any(axis=0), reached.argmax(axis=0), len(order) - 1)
        chosen = ((position[:, None] <= ends[None, :]) & (ordered > 0)).any(axis=1)
    # top up: the first group (in order) of every class present in training but absent here
    for c in np.flatnonzero(ordered.sum(axis=0) > 0):
        if not ordered[chosen, c].any():
            chosen[int(np.argmax(ordered[:, c] > 0))] = True
    keep_groups = order[chosen]
    return np.flatnonzero(np.isin(group_codes, keep_groups))


def default_levels(task_data: TaskData) -> tuple[str, ...]:
    """``frac10``, ``frac100``, plus ``shot10`` when some class has fewer than 50 training records."""
    levels = ["frac10", "frac100"]
    if task_data.task.type != "regression":
        train = task_data.counts.get("train", {})
        if train and min(train.values()) < FEW_SHOT_BELOW:
            levels.append("shot10")
    return tuple(levels)


def _indicators(y: np.ndarray, task_type: str) -> np.ndarray:
    """(N, C) int indicators: classes (binary/multiclass), labels plus their negatives (multilabel,
    so a subset holds a negative of each label too), or quantile bins (regression)."""
    if task_type in ("binary", "multiclass"):
        if y.ndim != 1:
            raise SpecError(f"{task_type} labels must be 1-D class indices, got shape {y.shape}", "y_train")
        codes = y.astype(np.int64)
        return np.eye(int(codes.max()) + 1, dtype=np.int64)[codes]
    if task_type == "multilabel":
        if y.ndim != 2:
            raise SpecError(f"multilabel labels must be (N, C), got shape {y.shape}", "y_train")
        pos = (y > 0).astype(np.int64)
        return np.hstack([pos, 1 - pos])
    if task_type == "regression":
        q = min(REGRESSION_BINS, len(y))
        bins = pd.qcut(pd.Series(y.astype(float)).rank(method="first"), q=q, labels=False).to_numpy()
        return np.eye(q, dtype=np.int64)[bins.astype(np.int64)]
    raise SpecError(f"unknown task type {task_type!r}", "task_type")


def _group_order(indicators: np.ndarray, group_codes: np.ndarray, seed: int) -> np.ndarray:
    """Seeded stratified ordering of the groups: stratum = rarest class among the group's rows,
    strata interleaved by fractional rank so that every prefix keeps their proportions."""
    rng = np.random.default_rng(seed)
    n_groups = int(group_codes.max()) + 1
    present = np.zeros((n_groups, indicators.shape[1]), dtype=bool)
    np.logical_or.at(present, group_codes, indicators > 0)
    totals = present.sum(axis=0)
    rarity = np.where(present, totals[None, :], np.iinfo(np.int64).max)
    stratum = np.where(present.any(axis=1), rarity.argmin(axis=1), -1) if present.shape[1] else np.full(n_groups, -1)
    rank = np.empty(n_groups, dtype=float)
    for s in np.unique(stratum):
        members = np.flatnonzero(stratum == s)
        members = members[rng.permutation(len(members))]
        rank[members] = (np.arange(len(members)) + rng.random()) / len(members)
    tiebreak = rng.permutation(n_groups)
    return np.lexsort((tiebreak, rank))
