"""Find datasets below a data dir by content and index them.

The data dir is walked once (:func:`~ecgfm_suite.data.datasets._common.list_tree`) and the
listing is handed to every dataset's ``find_roots``, which opens at most a few small files
(a CSV header row, one record header) per candidate folder — never every record.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError, RecordError
from ..registry import resolve
from .datasets import DATASETS
from .datasets._common import Tree, build_index, list_tree, relative
from .reader import read_and_validate
from .records import DatasetIndex, Exclusion


def dataset_roots(dataset_id: str, data_dir: str | Path, tree: Tree | None = None) -> list[Path]:
    """Roots of ``dataset_id`` below ``data_dir`` (sorted); ``tree`` reuses an earlier walk."""
    spec = DATASETS.get(dataset_id)
    tree = tree if tree is not None else list_tree(data_dir)
    return sorted(resolve(spec.finder)(Path(data_dir), tree=tree))


def discover(data_dir: str | Path) -> dict[str, list[Path]]:
    """Dataset id → its roots below ``data_dir``, for the registered datasets that are present.

    Absent datasets have no key, so ``dataset_id in discover(d)`` asks "is it there?".
    """
    tree = list_tree(data_dir)
    found = {dataset_id: dataset_roots(dataset_id, data_dir, tree) for dataset_id in DATASETS}
    return {dataset_id: roots for dataset_id, roots in found.items() if roots}


def load_index(dataset_id: str, data_dir: str | Path, strict: bool = False, *, validate: bool = False,
               cache_dir: Path | None = None, refresh: bool = False, **options: Any) -> DatasetIndex:
    """Find ``dataset_id`` below ``data_dir`` and scan it (``options`` go to its ``scan``, e.g. PTB-XL ``prefer``).

    Several roots (e.g. a dataset split over folders) are merged into one index; a record key
    seen in an earlier root is excluded as a duplicate. ``validate=True`` also decodes every
    record (:func:`validate_index`). With ``cache_dir`` each root's scan is reused while its files
    are unchanged (:mod:`~ecgfm_suite.data.index_cache`; ``refresh`` rescans and overwrites).
    Raises :class:`DataError` naming ``data_dir`` and the expected marker when the dataset is not there.
    """
    spec = DATASETS.get(dataset_id)
    roots = dataset_roots(dataset_id, data_dir)
    if not roots:
        raise DataError(f"no {spec.name} ({dataset_id}) found below this folder: expected {spec.marker}", data_dir)
    scan = resolve(spec.scanner)
    if cache_dir is not None:
        from .index_cache import cached_scan

        indexes = [cached_scan(scan, dataset_id, root, strict=strict, options=options, cache_dir=cache_dir,
                               refresh=refresh) for root in roots]
    else:
        indexes = [scan(root, strict=strict, **options) for root in roots]
    index = indexes[0] if len(indexes) == 1 else merge(indexes)
    return validate_index(index, strict=strict) if validate else index


def validate_index(index: DatasetIndex, strict: bool = False) -> DatasetIndex:
    """Decode every record (:func:`~ecgfm_suite.data.reader.read_and_validate`) and exclude the unusable ones.

    Scans only read headers; NaN leads or a wrong gain show only in the samples. This costs a
    full read of the dataset, so it is opt-in. ``strict=True`` raises the first :class:`RecordError`.
    """
    keep: list[bool] = []
    excluded = list(index.excluded)
    for _, row in index.records.iterrows():
        try:
            read_and_validate(row)
        except RecordError as exc:
            if strict:
                raise
            name = Path(exc.path).name if exc.path else ""
            excluded.append(Exclusion(record=relative(Path(row["path"]), index.root),
                                      reason=f"{name}: {exc.reason}" if name else exc.reason))
            keep.append(False)
        else:
            keep.append(True)
    return replace(index, records=index.records[keep].reset_index(drop=True), excluded=excluded)


def merge(indexes: list[DatasetIndex]) -> DatasetIndex:
    """One index from several roots of the same dataset; exclusions keep paths relative to the common folder."""
    common = Path(os.path.commonpath([str(ix.root) for ix in indexes]))
    excluded: list[Exclusion] = []
    frames: list[pd.DataFrame] = []
    seen: dict[str, str] = {}
    for ix in indexes:
        for ex in ix.excluded:
            excluded.append(Exclusion(record=relative(ix.root / ex.record, common), reason=ex.reason))
        keep = []
        for key, path in zip(ix.records["key"], ix.records["path"], strict=True):
            first = seen.setdefault(key, path)
            keep.append(first == path)
            if first != path:
                excluded.append(Exclusion(record=relative(Path(path), common), reason=f"duplicate of {first}"))
        frames.append(ix.records[keep])
    label_columns = tuple(dict.fromkeys(c for ix in indexes for c in ix.records.columns))
    return build_index(dataset=indexes[0].dataset, version=indexes[0].version, root=common,
                       rows=pd.concat(frames, ignore_index=True).to_dict("records"), label_columns=label_columns,
                       excluded=excluded,
                       missing_label_files=[f for ix in indexes for f in ix.missing_label_files])
