"""Dataset index cache: a hit equals a fresh scan exactly; any change to the files (or the code) rescans."""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecgfm_suite.data import index_cache
from ecgfm_suite.data.datasets import brugada
from ecgfm_suite.data.discovery import discover, load_index
from ecgfm_suite.data.index_cache import INDEX_DIR, cached_scan, decode_value, encode_value
from ecgfm_suite.errors import CacheWarning
from tests.test_io_and_registry import read_only


def assert_same_index(fresh, cached) -> None:
    pd.testing.assert_frame_equal(fresh.records, cached.records)
    for column in fresh.records.columns:  # tuples stay tuples, None stays None, NaN stays NaN
        assert [type(v) for v in fresh.records[column]] == [type(v) for v in cached.records[column]], column
    assert (fresh.dataset, fresh.version, fresh.root) == (cached.dataset, cached.version, cached.root)
    assert fresh.excluded == cached.excluded
    assert (fresh.missing_label_files, fresh.notes) == (cached.missing_label_files, cached.notes)


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


@pytest.mark.parametrize("change", ["edit header", "touch signal", "add file", "remove record", "parent file"])
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
    elif change == "remove record":
        shutil.rmtree(record.parent)
    else:  # a file beside the root (where the Challenge's dx tables may sit)
        (brugada_copy.parent / "dx_mapping_scored.csv").write_text("SNOMEDCTCode\n")
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
    assert len(list((tmp_path / "use" / INDEX_DIR).glob("ludb-*.json.gz"))) == 1
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
