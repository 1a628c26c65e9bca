"""Committed baselines: the accepted main-metric value of every cell of a model, one YAML file per model.

``benchmarks/baselines/<model>.yml`` (schema 1; see ``benchmarks/baselines/README.md``)::

    header:
      checkpoint_sha256: 5f1c…        # null for seeded controls
      dataset_versions: {ludb: 1.0.1}
      model: openecg_codec_v6
      preprocessing_sha256: 9a0e…     # sha256 of the model's InputSpec dict
      schema_version: 1
      suite_version: 0.1.0
    results:
      openecg_codec_v6-ludb_sex-frac100:
        ci_high: 0.88
        ci_low: 0.5703
        datasets: [ludb]
        metric: auroc
        n_test: 40
        se: 0.0813
        seeds: [0, 1]
        test_records_sha256: 2b0c…   # sha256 of the sorted test record keys
        value: 0.7369

The header is derived from the entries (per field, the value most entries were recorded with); an
entry recorded with something else (after a partial update) says so under ``recorded_with``. Keys are
sorted, numbers rounded to :data:`DECIMALS` places and aliases never written, so a diff in review shows
exactly the cells that moved. Reading is strict: a malformed or hand-broken file is a ``BaselineError``
naming the file and what is wrong, never a silent partial comparison.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .._io import sha256_json, write_atomic
from ..errors import BaselineError, SpecError
from ..plan import CellSpec

SCHEMA_VERSION = 1
#: decimals kept for value, se and CI bounds (1e-4 AUROC is far below any gate tolerance)
DECIMALS = 4
#: header fields an entry may override under ``recorded_with``
PROVENANCE_FIELDS = ("checkpoint_sha256", "dataset_versions", "preprocessing_sha256", "suite_version")
HEADER_KEYS = frozenset({"schema_version", "model", *PROVENANCE_FIELDS})
ENTRY_KEYS = frozenset({"metric", "value", "se", "ci_low", "ci_high", "n_test", "seeds", "datasets",
                        "test_records_sha256"})
OPTIONAL_ENTRY_KEYS = frozenset({"recorded_with"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
BANNER = ("# ecgfm-suite baseline: accepted results of one model (benchmarks/baselines/README.md).\n"
          "# Written by `pytest benchmarks --ecgfm-update-baselines`; review its diff like code.\n")
OBTAINED_BANNER = ("# ecgfm-suite: results of cells without an entry in the baseline yet, for review (not committed).\n"
                   "# Accept them with `pytest benchmarks --ecgfm-update-baselines=new-only`.\n")


def preprocessing_sha256(preprocessing: Mapping[str, Any]) -> str:
    """Digest of a model's InputSpec dict: equal specs give equal digests whatever the container types."""
    return sha256_json(dict(preprocessing))


def digest_test_records(keys: Iterable[Any]) -> str:
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
    def from_result(cls, result: Any, *, test_sha256: str | None = None,
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


@dataclass(frozen=True, slots=True)
class Baseline:
    """The entries of one model; ``path`` is where they were read from (for error messages)."""

    model: str
    entries: dict[str, BaselineEntry] = field(default_factory=dict)
    path: Path | None = None

    def get(self, cell_id: str) -> BaselineEntry | None:
        return self.entries.get(cell_id)

    def with_entries(self, entries: Iterable[BaselineEntry], *, only_missing: bool = False) -> Baseline:
        """A copy with ``entries`` added or replacing their cell's entry (``only_missing``: additions only)."""
        merged = dict(self.entries)
        for entry in entries:
            if entry.model != self.model:
                raise BaselineError(f"entry {entry.cell_id} does not belong to model {self.model}", self.path)
            if only_missing and entry.cell_id in merged:
                continue
            merged[entry.cell_id] = entry
        return replace(self, entries=merged)

    def without(self, cell_ids: Iterable[str]) -> Baseline:
        drop = set(cell_ids)
        return replace(self, entries={k: v for k, v in self.entries.items() if k not in drop})

    # -- writing ----------------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        """Per provenance field, the value most entries share (ties: the smallest, so it is deterministic)."""
        entries = list(self.entries.values())
        head: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "model": self.model}
        for name in ("checkpoint_sha256", "preprocessing_sha256", "suite_version"):
            head[name] = _most_common(getattr(e, name) for e in entries)
        datasets = sorted({d for e in entries for d in e.dataset_versions})
        head["dataset_versions"] = {d: _most_common(e.dataset_versions[d] for e in entries if d in e.dataset_versions)
                                    for d in datasets}
        return head

    def to_dict(self) -> dict[str, Any]:
        head = self.header()
        results = {}
        for cell_id, e in sorted(self.entries.items()):
            if not e.is_finite():
                raise BaselineError(f"entry {cell_id} has a non-finite number; it cannot be a baseline", self.path)
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
            results[cell_id] = item
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
            raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise bad(f"not valid YAML: {_yaml_problem(exc)}") from None
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
        if version != SCHEMA_VERSION:
            raise bad(f"unsupported baseline schema {version} (expected {SCHEMA_VERSION})")
        _exact_keys(head, HEADER_KEYS, frozenset(), "header", bad)
        file_model = head["model"]
        if not isinstance(file_model, str) or not file_model:
            raise bad(f"header.model must be a model id, got {file_model!r}")
        if model is not None and file_model != model:
            raise bad(f"header.model is {file_model!r} but the file is named for model {model!r}")
        provenance = _provenance(head, "header", bad, partial=False)
        if results is None:
            results = {}
        if not isinstance(results, dict):
            raise bad("'results' must map cell ids to entries")
        entries = {}
        for cell_id, item in results.items():
            entries[cell_id] = _entry(cell_id, item, file_model, provenance, bad)
        return cls(model=file_model, entries=entries, path=Path(path) if path is not None else None)


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


def _yaml_problem(exc: yaml.YAMLError) -> str:
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


def _most_common(values: Iterable[Any]) -> Any:
    counts = Counter(values)
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[0]


def _exact_keys(mapping: dict[str, Any], required: frozenset[str], optional: frozenset[str], where: str,
                bad: Any) -> None:
    missing = sorted(required - set(mapping))
    unknown = sorted(set(mapping) - required - optional, key=str)
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unknown {', '.join(map(str, unknown))}"] if unknown else [])
        raise bad(f"{where}: {'; '.join(parts)}")


def _provenance(raw: dict[str, Any], where: str, bad: Any, *, partial: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "checkpoint_sha256" in raw or not partial:
        sha = raw.get("checkpoint_sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
            raise bad(f"{where}.checkpoint_sha256 must be 64 lower-case hex digits or null, got {sha!r}")
        out["checkpoint_sha256"] = sha
    if "preprocessing_sha256" in raw or not partial:
        sha = raw.get("preprocessing_sha256")
        if not (isinstance(sha, str) and _SHA256.match(sha)):
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


def _number(item: dict[str, Any], key: str, where: str, bad: Any) -> float:
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad(f"{where}.{key} must be a finite number, got {value!r}")
    return float(value)


def _entry(cell_id: Any, item: Any, model: str, header: dict[str, Any], bad: Any) -> BaselineEntry:
    from ..metrics import METRICS

    where = f"results.{cell_id}"
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
    if test_sha is not None and not (isinstance(test_sha, str) and _SHA256.match(test_sha)):
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


class _StrictLoader(yaml.SafeLoader):
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

