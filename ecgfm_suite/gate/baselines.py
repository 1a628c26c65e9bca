"""Committed baselines: the accepted main-metric values of the cells of a model, one YAML file per model.

``benchmarks/baselines/<model>.yml`` (schema 2; see ``benchmarks/baselines/README.md``)::

    header:
      checkpoint_sha256: 5f1c…        # null for seeded controls
      content_sha256: 0b7e…           # sha256 of the header (without this key) and results, as parsed
      dataset_versions: {ludb: 1.0.1}
      entries: 1                      # number of entries under results
      model: openecg_codec_v6
      preprocessing_sha256: 9a0e…     # sha256 of the model's InputSpec dict
      schema_version: 2
      suite_version: 0.1.0
    results:
      openecg_codec_v6-ludb_sex-frac100:
      - ci_high: 0.88                 # one entry per dataset versions + test records the cell was measured on
        ci_low: 0.5703
        datasets: [ludb]
        metric: auroc
        n_test: 40
        se: 0.0813
        seeds: [0, 1]
        test_records_sha256: 2b0c…   # sha256 of the sorted test record keys
        value: 0.7369

An entry applies to the data it was measured on (its datasets' versions and test records): a cell may have
several, one per data, and a run is compared with the entry for its own data. The header is derived from the
entries (per field, the value most entries were recorded with); an entry recorded with something else (after
a partial update) says so under ``recorded_with``. Keys are sorted, numbers rounded to :data:`DECIMALS`
places and aliases never written, so a diff in review shows exactly the cells that moved. Reading is strict:
a malformed, hand-broken or truncated file (the entry count and content digest of the header are checked) is
a ``BaselineError`` naming the file and what is wrong, never a silent partial comparison. Schema 1 files (one
entry per cell, no count or digest) are still read; they are written back as schema 2.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .._io import sha256_json, write_atomic
from ..errors import BaselineError, SpecError
from ..results.cell import CellResult, CellSpec, is_id_part

T = TypeVar("T")
#: builds the error naming the baseline file: ``raise bad(reason)``
Bad = Callable[[str], BaselineError]

SCHEMA_VERSION = 2
#: schemas this suite reads (1: one entry per cell, no entry count or digest in the header)
READABLE_SCHEMAS = (1, 2)
#: decimals kept for value, se and CI bounds (1e-4 AUROC is far below any gate tolerance)
DECIMALS = 4
#: header fields an entry may override under ``recorded_with``
PROVENANCE_FIELDS = ("checkpoint_sha256", "dataset_versions", "preprocessing_sha256", "suite_version")
HEADER_KEYS_V1 = frozenset({"schema_version", "model", *PROVENANCE_FIELDS})
#: schema 2 adds the integrity fields: a file cut at an entry boundary is still valid YAML
INTEGRITY_FIELDS = ("entries", "content_sha256")
HEADER_KEYS = HEADER_KEYS_V1 | frozenset(INTEGRITY_FIELDS)
ENTRY_KEYS = frozenset({"metric", "value", "se", "ci_low", "ci_high", "n_test", "seeds", "datasets",
                        "test_records_sha256"})
OPTIONAL_ENTRY_KEYS = frozenset({"recorded_with"})
#: matched with ``fullmatch``: ``$`` alone also matches before a trailing newline
_SHA256 = re.compile(r"[0-9a-f]{64}")
BANNER = ("# ecgfm-suite baseline: accepted results of one model (benchmarks/baselines/README.md).\n"
          "# Written by `pytest benchmarks --ecgfm-update-baselines`; review its diff like code.\n")
OBTAINED_BANNER = ("# ecgfm-suite: results of cells without an entry in the baseline yet, for review (not committed).\n"
                   "# Accept them with `pytest benchmarks --ecgfm-update-baselines=new-only`.\n")


def preprocessing_sha256(preprocessing: Mapping[str, Any]) -> str:
    """Digest of a model's InputSpec dict (its window policy included): equal specs give equal digests whatever
    the container types. The windows per record a cell's datasets got are left out: they describe the data, not
    the model's preprocessing, and differ from task to task."""
    return sha256_json({k: v for k, v in preprocessing.items() if k != "windows_per_record"})


def digest_test_records(keys: Iterable[object]) -> str:
    """Digest of the records a cell was tested on: a data subset or a changed split differs here even when
    every dataset version is the same."""
    return sha256_json(sorted(str(k) for k in keys))


@dataclass(frozen=True, slots=True, kw_only=True)
class BaselineEntry:
    """One cell's accepted main metric, with what it was measured on."""

    cell_id: str
    metric: str
    value: float
    se: float
    ci_low: float
    ci_high: float
    n_test: int
    seeds: tuple[int, ...]
    checkpoint_sha256: str | None
    preprocessing_sha256: str
    suite_version: str
    #: versions of the datasets whose records this cell used (its own subset of the header's)
    dataset_versions: dict[str, str] = field(default_factory=dict)
    #: :func:`digest_test_records` of the cell's test records (None: not known, e.g. a run without gate.json)
    test_sha256: str | None = None

    @property
    def model(self) -> str:
        return CellSpec.from_id(self.cell_id).model

    @classmethod
    def from_result(cls, result: CellResult, *, test_sha256: str | None = None,
                    decimals: int | None = DECIMALS) -> BaselineEntry:
        """The entry a CellResult would be accepted as (rounded as written unless ``decimals`` is None)."""
        main = result.main

        def num(x: float) -> float:
            return float(x) if decimals is None else round(float(x), decimals)

        return cls(
            cell_id=result.cell_id, metric=result.main_metric, value=num(main.value), se=num(main.se),
            ci_low=num(main.ci_low), ci_high=num(main.ci_high), n_test=int(result.n_test),
            seeds=tuple(int(s) for s in result.seeds), checkpoint_sha256=result.checkpoint_sha256,
            preprocessing_sha256=preprocessing_sha256(result.preprocessing), suite_version=str(result.suite_version),
            dataset_versions={str(k): str(v) for k, v in sorted(result.dataset_versions.items())},
            test_sha256=test_sha256,
        )

    def is_finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.value, self.se, self.ci_low, self.ci_high))

    def same_data(self, other: BaselineEntry) -> bool:
        """Measured on the same data: equal dataset versions and test records (an unknown digest matches any)."""
        return self.dataset_versions == other.dataset_versions and (
            None in (self.test_sha256, other.test_sha256) or self.test_sha256 == other.test_sha256)

    def data_label(self) -> str:
        """The data an entry was measured on, for messages: ``ludb 1.0.1, test records 2b0c… (40)``."""
        versions = ", ".join(f"{d} {v}" for d, v in sorted(self.dataset_versions.items()))
        records = "unknown" if self.test_sha256 is None else self.test_sha256[:12]
        return f"{versions}, test records {records} ({self.n_test})"

    def _sort_key(self) -> tuple[str, str]:
        """The data an entry was measured on, as a sortable key (one entry per key and cell in a file)."""
        return json.dumps(sorted(self.dataset_versions.items())), self.test_sha256 or ""


@dataclass(frozen=True, slots=True)
class Baseline:
    """The entries of one model, cell id → its entries (one per data it was measured on, sorted);
    ``path`` is where they were read from (for error messages)."""

    model: str
    entries: dict[str, tuple[BaselineEntry, ...]] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def all(self) -> list[BaselineEntry]:
        """Every entry, by cell id then data."""
        return [e for cell_id in sorted(self.entries) for e in self.entries[cell_id]]

    def for_cell(self, cell_id: str) -> tuple[BaselineEntry, ...]:
        return self.entries.get(cell_id, ())

    def match(self, entry: BaselineEntry) -> BaselineEntry | None:
        """The entry of ``entry``'s cell measured on the same data, or None."""
        return match_entry(self.for_cell(entry.cell_id), entry)

    def with_entries(self, entries: Iterable[BaselineEntry], *, only_missing: bool = False) -> Baseline:
        """A copy with ``entries`` added, each replacing its cell's entry for the same data (``only_missing``:
        additions only); entries of the cell for other data stay."""
        merged = dict(self.entries)
        for entry in entries:
            if entry.model != self.model:
                raise BaselineError(f"entry {entry.cell_id} does not belong to model {self.model}", self.path)
            same = _same_data(merged.get(entry.cell_id, ()), entry)
            if only_missing and same:
                continue
            kept = [e for e in merged.get(entry.cell_id, ()) if e not in same]
            merged[entry.cell_id] = tuple(sorted([*kept, entry], key=BaselineEntry._sort_key))
        return replace(self, entries=merged)

    def without(self, cell_ids: Iterable[str]) -> Baseline:
        """A copy without any entry of these cells."""
        drop = set(cell_ids)
        return replace(self, entries={k: v for k, v in self.entries.items() if k not in drop})

    def without_matches(self, other: Baseline) -> Baseline:
        """A copy without the entries ``other`` has for the same cell and data."""
        kept = {c: tuple(e for e in v if other.match(e) is None) for c, v in self.entries.items()}
        return replace(self, entries={c: v for c, v in kept.items() if v})

    # -- writing ----------------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """Per provenance field, the value most entries share (ties: the smallest, so it is deterministic)."""
        entries = self.all()
        head: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "model": self.model}
        for name in ("checkpoint_sha256", "preprocessing_sha256", "suite_version"):
            head[name] = _most_common(getattr(e, name) for e in entries)
        datasets = sorted({d for e in entries for d in e.dataset_versions})
        head["dataset_versions"] = {d: _most_common(e.dataset_versions[d] for e in entries if d in e.dataset_versions)
                                    for d in datasets}
        return head

    def to_dict(self) -> dict[str, Any]:
        head = self.header()
        results: dict[str, list[dict[str, Any]]] = {}
        for e in self.all():
            if not e.is_finite():
                raise BaselineError(f"entry {e.cell_id} has a non-finite number; it cannot be a baseline", self.path)
            item: dict[str, Any] = {
                "metric": e.metric, "value": e.value, "se": e.se, "ci_low": e.ci_low, "ci_high": e.ci_high,
                "n_test": e.n_test, "seeds": list(e.seeds), "datasets": sorted(e.dataset_versions),
                "test_records_sha256": e.test_sha256,
            }
            differs: dict[str, Any] = {name: getattr(e, name) for name in ("checkpoint_sha256", "preprocessing_sha256",
                                                                            "suite_version")
                                       if getattr(e, name) != head[name]}
            versions = {d: v for d, v in e.dataset_versions.items() if head["dataset_versions"].get(d) != v}
            if versions:
                differs["dataset_versions"] = versions
            if differs:
                item["recorded_with"] = differs
            results.setdefault(e.cell_id, []).append(item)
        head["entries"] = len(self)
        head["content_sha256"] = content_sha256(head, results)
        return {"header": head, "results": results}

    def to_yaml(self, banner: str = BANNER) -> str:
        return banner + yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                                   allow_unicode=True, width=120)

    def write(self, path: Path, banner: str = BANNER) -> None:
        write_atomic(path, self.to_yaml(banner))

    # -- reading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> Baseline | None:
        """The baseline at ``path``; None if the file does not exist; BaselineError if it is broken."""
        path = Path(path)
        if not path.exists():
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BaselineError(f"cannot read the baseline file ({type(exc).__name__}: {exc})", path) from None
        return cls.parse(text, path, model=_model_of(path))

    @classmethod
    def parse(cls, text: str, path: Path | str | None = None, *, model: str | None = None) -> Baseline:
        where = str(path) if path is not None else "<baseline>"

        def bad(reason: str) -> BaselineError:
            return BaselineError(f"{reason} (fix it, or delete the file and rerun with --ecgfm-update-baselines)",
                                 where)

        try:
            if any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=yaml.SafeLoader)):
                raise bad("YAML aliases (*name) are not allowed in a baseline file")
            raw = yaml.load(text, Loader=StrictLoader)
        except yaml.YAMLError as exc:
            raise bad(f"not valid YAML: {yaml_problem(exc)}") from None
        if not isinstance(raw, dict) or set(raw) != {"header", "results"}:
            found = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            raise bad(f"expected a mapping with exactly the keys 'header' and 'results', found {found}")
        head, results = raw["header"], raw["results"]
        if not isinstance(head, dict):
            raise bad("'header' must be a mapping")
        version = head.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise bad(f"header.schema_version must be an integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise bad(f"baseline schema {version} is newer than this suite's {SCHEMA_VERSION}; upgrade ecgfm-suite")
        if version not in READABLE_SCHEMAS:
            readable = ", ".join(map(str, READABLE_SCHEMAS))
            raise bad(f"unsupported baseline schema {version} (this suite reads {readable})")
        _exact_keys(head, HEADER_KEYS if version >= 2 else HEADER_KEYS_V1, frozenset(), "header", bad)
        file_model = head["model"]
        if not is_id_part(file_model):
            raise bad(f"header.model must be a model id ([a-z0-9_.]+), got {file_model!r}")
        if model is not None and file_model != model:
            raise bad(f"header.model is {file_model!r} but the file is named for model {model!r}")
        provenance = _provenance(head, "header", bad, partial=False)
        if results is None:
            results = {}
        if not isinstance(results, dict):
            raise bad("'results' must map cell ids to entries")
        entries: dict[str, tuple[BaselineEntry, ...]] = {}
        for cell_id, items in results.items():
            if version == 1:
                items = [items]  # schema 1: one entry per cell
            elif not isinstance(items, list) or not items:
                raise bad(f"results.{cell_id} must be a non-empty list of entries (one per data)")
            cell_entries: list[BaselineEntry] = []
            for k, item in enumerate(items):
                where_k = f"results.{cell_id}" if version == 1 else f"results.{cell_id}[{k}]"
                entry = _entry(cell_id, item, file_model, provenance, bad, where_k)
                if any(e._sort_key() == entry._sort_key() for e in cell_entries):
                    raise bad(f"{where_k}: a second entry for the same data ({entry.data_label()})")
                cell_entries.append(entry)
            entries[cell_entries[0].cell_id] = tuple(sorted(cell_entries, key=BaselineEntry._sort_key))
        baseline = cls(model=file_model, entries=entries, path=Path(path) if path is not None else None)
        if version >= 2:
            _check_integrity(head, results, len(baseline), bad)
        return baseline


def _same_data(entries: Iterable[BaselineEntry], entry: BaselineEntry) -> list[BaselineEntry]:
    """The entries measured on ``entry``'s data; where its test records are unknown and several entries share
    its dataset versions, only those whose test records are unknown too (never a guess between data)."""
    same = [e for e in entries if e.same_data(entry)]
    return same if len(same) <= 1 else [e for e in same if e.test_sha256 == entry.test_sha256]


def match_entry(entries: Iterable[BaselineEntry], entry: BaselineEntry) -> BaselineEntry | None:
    """The one of ``entries`` measured on ``entry``'s data (see :func:`_same_data`), or None."""
    same = _same_data(entries, entry)
    return same[0] if len(same) == 1 else None


def content_sha256(header: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    """Digest of a baseline file's content as parsed: the header without this digest, and the results."""
    return sha256_json({"header": {k: v for k, v in header.items() if k != "content_sha256"},
                        "results": dict(results)})


def _check_integrity(head: Mapping[str, Any], results: Mapping[str, Any], n_entries: int, bad: Bad) -> None:
    """The header's entry count and digest against what the file holds: a file cut at an entry boundary,
    or edited without the writer, would otherwise silently turn the gate off for the lost entries."""
    count = head["entries"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise bad(f"header.entries must be a non-negative integer, got {count!r}")
    if count != n_entries:
        raise bad(f"header.entries says {count} entries but the file holds {n_entries} (truncated or cut in a merge?)")
    digest = head["content_sha256"]
    if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
        raise bad(f"header.content_sha256 must be 64 lower-case hex digits, got {digest!r}")
    if digest != content_sha256(head, results):
        raise bad("header.content_sha256 does not match the file's content (edited by hand, truncated or a bad "
                  "merge?); restore it from version control")


class BaselineStore:
    """The baselines directory: ``<model>.yml`` (committed) and ``<model>.obtained.yml`` (for review)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._loaded: dict[str, Baseline | None | BaselineError] = {}

    def path(self, model: str) -> Path:
        return self.directory / f"{model}.yml"

    def obtained_path(self, model: str) -> Path:
        return self.directory / f"{model}.obtained.yml"

    def load(self, model: str) -> Baseline | None:
        """Cached per model (an error is cached too, so every cell of a broken file reports it)."""
        if model not in self._loaded:
            try:
                self._loaded[model] = Baseline.load(self.path(model))
            except BaselineError as exc:
                self._loaded[model] = exc
        value = self._loaded[model]
        if isinstance(value, BaselineError):
            raise value
        return value

    def load_obtained(self, model: str) -> Baseline | None:
        return Baseline.load(self.obtained_path(model))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's problem and 1-based position, without its dump of the offending text."""
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def _model_of(path: Path) -> str | None:
    name = path.name
    for suffix in (".obtained.yml", ".yml", ".yaml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _most_common(values: Iterable[T]) -> T | None:
    counts = Counter(values)
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[0]


def _exact_keys(mapping: dict[str, Any], required: frozenset[str], optional: frozenset[str], where: str,
                bad: Bad) -> None:
    missing = sorted(required - set(mapping))
    unknown = sorted(set(mapping) - required - optional, key=str)
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unknown {', '.join(map(str, unknown))}"] if unknown else [])
        raise bad(f"{where}: {'; '.join(parts)}")


def _provenance(raw: dict[str, Any], where: str, bad: Bad, *, partial: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "checkpoint_sha256" in raw or not partial:
        sha = raw.get("checkpoint_sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise bad(f"{where}.checkpoint_sha256 must be 64 lower-case hex digits or null, got {sha!r}")
        out["checkpoint_sha256"] = sha
    if "preprocessing_sha256" in raw or not partial:
        sha = raw.get("preprocessing_sha256")
        if not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
            raise bad(f"{where}.preprocessing_sha256 must be 64 lower-case hex digits, got {sha!r}")
        out["preprocessing_sha256"] = sha
    if "suite_version" in raw or not partial:
        version = raw.get("suite_version")
        if not isinstance(version, str) or not version:
            raise bad(f"{where}.suite_version must be a string, got {version!r}")
        out["suite_version"] = version
    if "dataset_versions" in raw or not partial:
        versions = raw.get("dataset_versions")
        if versions is None and not partial:
            versions = {}
        if not isinstance(versions, dict):
            raise bad(f"{where}.dataset_versions must map dataset ids to version strings")
        for dataset, version in versions.items():
            if not isinstance(dataset, str) or not isinstance(version, str):
                raise bad(f"{where}.dataset_versions.{dataset}: versions are strings (quote them), got {version!r}")
        out["dataset_versions"] = dict(versions)
    return out


def _number(item: dict[str, Any], key: str, where: str, bad: Bad) -> float:
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(f"{where}.{key} must be a finite number, got {value!r}")
    return float(value)


def _entry(cell_id: Any, item: Any, model: str, header: dict[str, Any], bad: Bad, where: str) -> BaselineEntry:
    from ..metrics import METRICS

    try:
        cell = CellSpec.from_id(str(cell_id))
    except SpecError as exc:
        raise bad(f"{where}: not a cell id ({exc.reason})") from None
    if cell.model != model:
        raise bad(f"{where}: the cell belongs to model {cell.model!r}, not to this file's {model!r}")
    if not isinstance(item, dict):
        raise bad(f"{where} must be a mapping of {', '.join(sorted(ENTRY_KEYS))}")
    _exact_keys(item, ENTRY_KEYS, OPTIONAL_ENTRY_KEYS, where, bad)
    metric = item["metric"]
    if metric not in METRICS:
        raise bad(f"{where}.metric: unknown metric {metric!r} (known: {', '.join(METRICS)})")
    info = METRICS.get(metric)
    value, se = _number(item, "value", where, bad), _number(item, "se", where, bad)
    ci_low, ci_high = _number(item, "ci_low", where, bad), _number(item, "ci_high", where, bad)
    if not info.in_range(value):
        raise bad(f"{where}.value {value} is outside the range of {metric} [{info.low}, {info.high}]")
    if se < 0:
        raise bad(f"{where}.se must be >= 0, got {se}")
    if ci_low > ci_high:
        raise bad(f"{where}: ci_low {ci_low} > ci_high {ci_high}")
    n_test = item["n_test"]
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 1:
        raise bad(f"{where}.n_test must be a positive integer, got {n_test!r}")
    seeds = item["seeds"]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise bad(f"{where}.seeds must be a non-empty list of integers, got {seeds!r}")
    test_sha = item["test_records_sha256"]
    if test_sha is not None and not (isinstance(test_sha, str) and _SHA256.fullmatch(test_sha)):
        raise bad(f"{where}.test_records_sha256 must be 64 lower-case hex digits or null, got {test_sha!r}")
    datasets = item["datasets"]
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
        raise bad(f"{where}.datasets must be a non-empty list of dataset ids, got {datasets!r}")
    own = item.get("recorded_with") or {}
    if not isinstance(own, dict):
        raise bad(f"{where}.recorded_with must be a mapping")
    _exact_keys(own, frozenset(), frozenset(PROVENANCE_FIELDS), f"{where}.recorded_with", bad)
    own = _provenance(own, f"{where}.recorded_with", bad, partial=True)
    versions = {**header["dataset_versions"], **own.get("dataset_versions", {})}
    unversioned = [d for d in datasets if d not in versions]
    if unversioned:
        raise bad(f"{where}: datasets {', '.join(unversioned)} have no version in the header")
    merged = {**header, **own}
    return BaselineEntry(
        cell_id=cell.id, metric=metric, value=value, se=se, ci_low=ci_low, ci_high=ci_high, n_test=n_test,
        seeds=tuple(seeds), checkpoint_sha256=merged["checkpoint_sha256"],
        preprocessing_sha256=merged["preprocessing_sha256"], suite_version=merged["suite_version"],
        dataset_versions={d: versions[d] for d in sorted(datasets)}, test_sha256=test_sha,
    )


class _Dumper(yaml.SafeDumper):
    """Safe YAML without anchors/aliases; lists of scalars inline (``seeds: [0, 1]``)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent_list(self, data: list[Any]) -> yaml.Node:
        flow = all(not isinstance(x, (dict, list)) for x in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _Dumper.represent_list)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

