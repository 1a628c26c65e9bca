"""Dataset index cache: a hit equals a fresh scan exactly; any change to the files the loader reads (or the code)
rescans, and nothing else does."""

from __future__ import annotations

import math
import os
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecgfm_suite.data import index_cache
from ecgfm_suite.data.datasets import brugada, challenge
from ecgfm_suite.data.discovery import discover, load_index
from ecgfm_suite.data.index_cache import (
    INDEX_DIR,
    cached_scan,
    decode_value,
    dictionary_decode,
    dictionary_encode,
    encode_value,
    write_entry,
)
from ecgfm_suite.data.records import DatasetIndex
from ecgfm_suite.errors import CacheWarning
from fixtures.challenge_layouts import write_dx_table, write_nested_challenge
from tests.test_io_and_registry import read_only


def assert_same_index(fresh, cached) -> None:
    pd.testing.assert_frame_equal(fresh.records, cached.records)
    for column in fresh.records.columns:  # tuples stay tuples, None stays None, NaN stays NaN
        assert [type(v) for v in fresh.records[column]] == [type(v) for v in cached.records[column]], column
    assert (fresh.dataset, fresh.version, fresh.root) == (cached.dataset, cached.version, cached.root)
    assert fresh.excluded == cached.excluded
    assert (fresh.missing_label_files, fresh.notes) == (cached.missing_label_files, cached.notes)
    assert fresh.records.attrs == cached.records.attrs


@pytest.mark.real_data
def test_every_real_dataset_comes_back_from_the_cache_as_scanned(data_dir, tmp_path):
    found = discover(data_dir)
    assert found, f"no datasets below {data_dir}"
    for dataset_id in found:
        fresh = load_index(dataset_id, data_dir)
        load_index(dataset_id, data_dir, cache_dir=tmp_path)  # stores
        assert_same_index(fresh, load_index(dataset_id, data_dir, cache_dir=tmp_path))
    assert len(list((tmp_path / INDEX_DIR).iterdir())) == sum(len(roots) for roots in found.values())


class CountingScan:
    def __init__(self):
        self.calls = 0

    def __call__(self, root, **kw):
        self.calls += 1
        return brugada.scan(root, **kw)


@pytest.fixture
def brugada_copy(data_dir, tmp_path) -> Path:
    """A private copy of Brugada-HUCA (10 records) to change files in, one folder below a data dir."""
    source = next(iter(discover(data_dir).get("brugada_huca", [])), None)
    if source is None:
        pytest.skip(f"Brugada-HUCA not found below {data_dir}")
    root = tmp_path / "data" / "brugada"
    shutil.copytree(source, root)
    return root


def _cached(root: Path, cache: Path, scan: CountingScan, **kw):
    return cached_scan(scan, "brugada_huca", root, strict=False, options={}, cache_dir=cache, **kw)


@pytest.mark.real_data
def test_a_hit_does_not_scan_and_equals_the_scan(brugada_copy, tmp_path):
    scan, cache = CountingScan(), tmp_path / "cache"
    first = _cached(brugada_copy, cache, scan)
    again = _cached(brugada_copy, cache, scan)
    assert scan.calls == 1
    assert_same_index(first, again)
    _cached(brugada_copy, cache, scan, refresh=True)
    assert scan.calls == 2


@pytest.mark.parametrize("change", ["edit header", "touch signal", "add file", "remove record"])
@pytest.mark.real_data
def test_any_change_to_the_files_rescans(brugada_copy, tmp_path, change):
    scan, cache = CountingScan(), tmp_path / "cache"
    before = _cached(brugada_copy, cache, scan)
    record = sorted(p for p in brugada_copy.rglob("*.hea"))[0]
    if change == "edit header":
        record.write_text(record.read_text().replace("\n", "\n# edited\n", 1))
    elif change == "touch signal":  # same bytes, same size: only the times say it changed
        signal = record.with_suffix(".dat")
        os.utime(signal, ns=(signal.stat().st_atime_ns, signal.stat().st_mtime_ns + 1_000_000_000))
    elif change == "add file":
        (brugada_copy / "files" / "NOTES.txt").write_text("a file the scan does not read still counts\n")
    else:
        shutil.rmtree(record.parent)
    after = _cached(brugada_copy, cache, scan)
    assert scan.calls == 2
    assert_same_index(brugada.scan(brugada_copy), after)
    if change == "remove record":
        assert len(after.records) == len(before.records) - 1
    assert len(list((cache / INDEX_DIR).iterdir())) == 1  # replaced, not added


@pytest.mark.real_data
def test_changed_code_or_options_rescans(brugada_copy, tmp_path, monkeypatch):
    scan, cache = CountingScan(), tmp_path / "cache"
    _cached(brugada_copy, cache, scan)
    cached_scan(scan, "brugada_huca", brugada_copy, strict=True, options={}, cache_dir=cache)
    assert scan.calls == 2  # strict scans have their own entry
    monkeypatch.setattr(index_cache, "code_digest", lambda: "another version of the scanners")
    _cached(brugada_copy, cache, scan)
    assert scan.calls == 3


@pytest.mark.real_data
def test_an_entry_of_the_json_format_is_rescanned_and_removed(brugada_copy, tmp_path):
    scan, cache = CountingScan(), tmp_path / "cache"
    _cached(brugada_copy, cache, scan)
    [entry] = (cache / INDEX_DIR).iterdir()
    old = entry.with_name(entry.name.removesuffix(".npz") + ".json.gz")
    entry.rename(old)
    _cached(brugada_copy, cache, scan)
    assert scan.calls == 2 and [p.name for p in (cache / INDEX_DIR).iterdir()] == [entry.name]


@pytest.mark.real_data
def test_a_damaged_entry_is_named_and_rescanned(brugada_copy, tmp_path):
    scan, cache = CountingScan(), tmp_path / "cache"
    _cached(brugada_copy, cache, scan)
    entry = next((cache / INDEX_DIR).iterdir())
    entry.write_bytes(entry.read_bytes()[:40])
    with pytest.warns(CacheWarning, match=f"^{re.escape(str(entry))}: unreadable dataset index entry"):
        index = _cached(brugada_copy, cache, scan)
    assert scan.calls == 2 and len(index.records) == 10
    _cached(brugada_copy, cache, scan)
    assert scan.calls == 2  # rewritten whole


@pytest.mark.real_data
def test_an_unwritable_cache_costs_a_scan_not_the_run(brugada_copy, tmp_path):
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    scan = CountingScan()
    with pytest.warns(CacheWarning, match=f"^{re.escape(str(blocked))}.*could not store the brugada_huca index"):
        index = _cached(brugada_copy, blocked, scan)
    assert len(index.records) == 10


@pytest.mark.real_data
def test_a_read_only_cache_serves_hits_and_rescans_misses_with_a_warning(brugada_copy, tmp_path, monkeypatch):
    scan, cache = CountingScan(), tmp_path / "cache"
    _cached(brugada_copy, cache, scan)
    refused = read_only(monkeypatch, cache)
    _cached(brugada_copy, cache, scan)
    assert scan.calls == 1 and refused == []
    with pytest.warns(CacheWarning, match="could not store the brugada_huca index \\(Read-only file system\\)"):
        index = cached_scan(scan, "brugada_huca", brugada_copy, strict=True, options={}, cache_dir=cache)
    assert scan.calls == 2 and len(index.records) == 10


@pytest.mark.real_data
def test_the_runner_uses_the_cache_unless_it_is_off(data_dir, tmp_path):
    from ecgfm_suite.engine.runner import Runner
    from ecgfm_suite.engine.settings import resolve

    def runner(mode: str) -> Runner:
        return Runner(resolve({"data_dir": str(data_dir), "cache_dir": str(tmp_path / mode), "cache": mode}, env={}))

    runner("use").index("ludb")
    assert len(list((tmp_path / "use" / INDEX_DIR).glob("ludb-*.npz"))) == 1
    runner("off").index("ludb")
    assert not (tmp_path / "off" / INDEX_DIR).exists()


cells = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.tuples(inner, inner) | st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10)


@given(cells)
def test_cell_values_round_trip_with_their_types(value):
    back = decode_value(encode_value(value))

    def same(a, b) -> bool:
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if type(a) is not type(b):
            return False
        if isinstance(a, tuple | list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(a, dict):
            return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
        return a == b

    assert same(value, back)


@pytest.mark.real_data
def test_files_beside_a_dataset_that_its_loader_does_not_read_keep_the_hit(brugada_copy, tmp_path):
    """The issue's case: a shell history or a script next to the data must not force a rescan."""
    scan, cache = CountingScan(), tmp_path / "cache"
    first = _cached(brugada_copy, cache, scan)
    (brugada_copy.parent / ".bash_history").write_text("ls\n")
    (brugada_copy.parent / "dx_mapping_scored.csv").write_text("SNOMEDCTCode\n")  # only the Challenge reads it
    (brugada_copy.parent.parent / "notes.txt").write_text("unrelated\n")
    again = _cached(brugada_copy, cache, scan)
    assert scan.calls == 1
    assert_same_index(first, again)


def test_a_declared_outside_file_counts_and_an_undeclared_one_does_not(tmp_path):
    """The Challenge declares its dx tables above the root: one changing or appearing rescans, another file not."""
    write_nested_challenge(tmp_path / "data")
    release = tmp_path / "data" / "challenge-2021"
    [root] = discover(tmp_path / "data")["challenge2021"]
    assert root == (release / "training").resolve()
    cache = tmp_path / "cache"
    calls = []

    def scan(root, **kw):
        calls.append(root)
        return challenge.scan(root, **kw)

    def cached():
        return cached_scan(scan, "challenge2021", root, strict=False, options={}, cache_dir=cache)

    first = cached()
    assert [Path(t).name for t in first.records.attrs["dx_tables"]] == ["dx_mapping_scored.csv"]
    (release / "README.txt").write_text("beside the release's training folder, read by nobody\n")
    (release / "evaluation-2021").mkdir()  # a folder the loader looks into, still without a table
    assert_same_index(first, cached())
    assert len(calls) == 1
    write_dx_table(release / "evaluation-2021" / "dx_mapping_unscored.csv", rows=(("x", "251238007", "X"),))
    second = cached()
    assert len(calls) == 2 and len(second.records.attrs["dx_tables"]) == 2
    table = release / "dx_mapping_scored.csv"
    os.utime(table, ns=(table.stat().st_atime_ns, table.stat().st_mtime_ns + 1_000_000_000))
    cached()
    assert len(calls) == 3
    cached()
    assert len(calls) == 3


def _index(records: pd.DataFrame) -> DatasetIndex:
    return DatasetIndex(dataset="ptbxl", version="1", root=Path("/data/ptbxl"), records=records)


def test_an_entry_is_columnar_and_a_stale_one_is_not_decoded(tmp_path):
    """One zip member per column (numeric ones as their arrays); the fingerprint is read before any column."""
    records = pd.DataFrame({"key": ["a/1", "a/2", "a/3"], "fs": [500.0, 500.0, math.nan], "n": [1, 2, 3],
                            "codes": [{"NORM": 100.0}, {"NORM": 100.0}, {}], "dx": [("1",), ("1",), ()]})
    path = tmp_path / "entry.npz"
    write_entry(path, {"files": "x"}, _index(records))
    with np.load(path, allow_pickle=False) as entry:
        assert sorted(entry.files) == ["c0", "c0.values", "c1", "c2", "c3", "c3.values", "c4", "c4.values", "meta"]
        assert entry["c1"].dtype == np.float64 and entry["c0"].dtype == np.int32
    with zipfile.ZipFile(path) as zf, zipfile.ZipFile(tmp_path / "broken.npz", "w") as out:
        for name in zf.namelist():  # every column member damaged, the meta intact
            out.writestr(name, zf.read(name) if name == "meta.npy" else b"garbage")
    assert index_cache._read_entry(tmp_path / "broken.npz", {"files": "changed"}) is None  # no warning: not read
    with pytest.warns(CacheWarning, match="unreadable dataset index entry"):
        assert index_cache._read_entry(tmp_path / "broken.npz", {"files": "x"}) is None
    back = index_cache._read_entry(path, {"files": "x"})
    assert back is not None
    assert_same_index(_index(records), back)
    back.records.loc[0, "codes"]["MI"] = 50.0  # a dict is each row's own, as after a scan
    assert back.records.loc[1, "codes"] == {"NORM": 100.0}


@given(st.lists(cells, max_size=12))
def test_dictionary_encoding_round_trips_exactly(values):
    codes, distinct = dictionary_encode(values)
    assert codes.dtype == np.int32 and len(codes) == len(values)
    back = dictionary_decode(codes, [encode_value(v) for v in distinct]).tolist()
    assert [encode_value(v) for v in back] == [encode_value(v) for v in values]
    assert [type(v) for v in back] == [type(v) for v in values]
