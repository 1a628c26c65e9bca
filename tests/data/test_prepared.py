"""Dataset-level prepared arrays and their on-disk cache, on synthetic WFDB records read by the real reader."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from ecgfm_suite._io import sha256_file
from ecgfm_suite.data import prepared
from ecgfm_suite.data.prepared import PreparedSet, prepare_records, prepared_key
from ecgfm_suite.data.preprocess import InputSpec, RecordWindows, expected_window_counts, prepare
from ecgfm_suite.data.reader import read_signal
from ecgfm_suite.errors import CacheError, CacheWarning, RecordError
from tests.test_io_and_registry import (
    needs_proc_fd,
    needs_rlimit,
    read_only,
    record_syncs,
    run_on_a_full_disk,
)

SPEC = InputSpec(fs=500, leads=("I", "II"), window=1000, window_mode="all", normalisation="zscore_lead")
SPEC_KEY = {"model_family": "test", "input_spec": SPEC.to_dict()}
N_RECORDS = 12


def prepare_fn(x, fs, leads):
    return prepare(x, fs, leads, SPEC)


def counting_read(row, *, log: str):
    """The real reader, appending the record key to ``log`` (O_APPEND: safe across processes)."""
    with open(log, "a") as fh:
        fh.write(f"{row['key']}\n")
    return read_signal(row)


def reads(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def write_records(folder: Path, n: int = N_RECORDS) -> pd.DataFrame:
    """``n`` two-lead 250 Hz WFDB records of 4–10 s (1–5 windows at 500 Hz) and their index rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        name = f"r{i:03d}"
        n_samples = 250 * (4 + i % 7)
        t = np.arange(n_samples) / 250
        sig = np.stack([np.sin(2 * np.pi * 1.2 * t), 0.5 * np.cos(2 * np.pi * 1.2 * t)]).T
        sig = sig + 0.05 * rng.standard_normal(sig.shape)
        wfdb.wrsamp(name, fs=250, units=["mV", "mV"], sig_name=["I", "II"], p_signal=sig, fmt=["16", "16"],
                    adc_gain=[1000.0, 1000.0], baseline=[0, 0], write_dir=str(folder))
        rows.append({"key": f"synth/{name}", "record_id": name, "path": str(folder / name), "format": "wfdb",
                     "fs": 250.0, "n_samples": n_samples, "leads": "I,II",
                     "content_hash": sha256_file(folder / f"{name}.dat")})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("records")
    return folder, write_records(folder)


@pytest.fixture
def records(record_dir, tmp_path) -> pd.DataFrame:
    """A private copy of the records (tests may corrupt files)."""
    src, frame = record_dir
    dst = tmp_path / "records"
    shutil.copytree(src, dst)
    return frame.assign(path=[str(dst / Path(p).name) for p in frame["path"]])


def entry_dir(cache: Path, key: str) -> Path:
    return cache / "prepared" / key[:2] / key


def expected_windows(row) -> np.ndarray:
    sig = read_signal(row)
    return prepare(sig.data, sig.fs, sig.leads, SPEC)



@pytest.fixture
def children_left():
    """The child processes started since the test began and still alive (the engine's long-lived analysis pool,
    started by an earlier test in this process, is not the reader pool's to stop)."""
    before = set(multiprocessing.active_children())
    return lambda: [p for p in multiprocessing.active_children() if p not in before]

def test_windows_offsets_keys_follow_the_index(records, tmp_path):
    got = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=tmp_path / "cache", workers=2,
                          chunk_size=1)
    assert got.keys == tuple(records["key"]) and not got.excluded
    assert got.offsets.dtype == np.int64 and got.offsets.shape == (N_RECORDS + 1,)
    assert got.windows.dtype == np.float32 and got.windows.shape[1:] == (2, 1000)
    assert isinstance(got.windows, np.memmap) and not got.windows.flags.writeable
    for i, row in enumerate(records.to_dict("records")):
        np.testing.assert_array_equal(got.record(i), expected_windows(row))
    assert (np.diff(got.offsets) == [2 * (4 + i % 7) // 4 for i in range(N_RECORDS)]).all()  # 1–5 windows
    entry = entry_dir(tmp_path / "cache", got.cache_key)
    assert got.path == entry and not got.from_cache
    assert sorted(p.name for p in entry.iterdir()) == [
        "excluded.json", "keys.json", "manifest.json", "offsets.npy", "windows.npy"]


def test_hit_reads_nothing_and_key_changes_with_spec_hash_and_code(records, tmp_path):
    log, cache = tmp_path / "reads.log", tmp_path / "cache"
    read = functools.partial(counting_read, log=str(log))
    first = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=cache, read=read)
    assert len(reads(log)) == N_RECORDS
    again = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=cache, read=read)
    assert again.from_cache and again.cache_key == first.cache_key and len(reads(log)) == N_RECORDS
    np.testing.assert_array_equal(again.windows, first.windows)

    base = prepared_key(records, prepare_fn, spec_key=SPEC_KEY, read=read)
    assert base == first.cache_key
    other_spec = {**SPEC_KEY, "input_spec": {**SPEC.to_dict(), "normalisation": "none"}}
    changed_hash = records.assign(content_hash=["0" * 64] + list(records["content_hash"][1:]))
    variants = {
        "spec": prepared_key(records, prepare_fn, spec_key=other_spec, read=read),
        "file hash": prepared_key(changed_hash, prepare_fn, spec_key=SPEC_KEY, read=read),
        "record order": prepared_key(records[::-1], prepare_fn, spec_key=SPEC_KEY, read=read),
        "prepare code": prepared_key(records, expected_windows, spec_key=SPEC_KEY, read=read),
    }
    assert len({base, *variants.values()}) == 5, variants

    miss = prepare_records(records, prepare_fn, spec_key=other_spec, cache_dir=cache, read=read)
    assert not miss.from_cache and len(reads(log)) == 2 * N_RECORDS
    assert len(list((cache / "prepared").glob("*/*/manifest.json"))) == 2


def test_the_window_policy_keys_the_entry_which_names_the_familys_prepare_and_counts_the_windows(records, tmp_path):
    """2-s windows on 4–10-s records: ``cover`` adds an end-aligned window where the official non-overlapping
    windows drop a tail (odd seconds); both entries name ``prepare_fn`` as their code, the policy being in the spec."""
    got = {}
    for policy in ("cover", "official"):
        spec = replace(SPEC, window_policy=policy)
        got[policy] = prepare_records(records, RecordWindows(prepare_fn, spec), cache_dir=tmp_path / "cache",
                                      spec_key={**SPEC_KEY, "input_spec": spec.to_dict()})
        manifest = json.loads((got[policy].path / "manifest.json").read_text())
        assert manifest["prepare"].endswith(":prepare_fn")
    assert got["cover"].cache_key != got["official"].cache_key
    seconds = np.array([4 + i % 7 for i in range(N_RECORDS)])
    np.testing.assert_array_equal(np.diff(got["official"].offsets), seconds // 2)
    cover = np.diff(got["cover"].offsets)
    np.testing.assert_array_equal(cover, -(-seconds // 2))
    np.testing.assert_array_equal(cover, expected_window_counts(records["n_samples"], records["fs"],
                                                                replace(SPEC, window_policy="cover")))
    assert got["cover"].windows_per_record() == {"records": N_RECORDS, "windows": int(cover.sum()), "min": 2,
                                            "mean": round(float(cover.mean()), 3), "max": 5}


class Interrupt(BaseException):
    """Stands in for Ctrl-C / a killed worker mid-build (not an Exception, so never excluded)."""


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupted_build_leaves_no_entry_and_next_build_succeeds(records, tmp_path, workers, monkeypatch,
                                                                   children_left):
    monkeypatch.setattr(prepared, "available_cores", lambda: 2)  # the reader pool, even on one core
    cache = tmp_path / "cache"

    def dying(x, fs, leads):
        if dying.calls == 5:
            raise Interrupt
        dying.calls += 1
        return prepare_fn(x, fs, leads)

    dying.calls = 0
    with pytest.raises(Interrupt):
        prepare_records(records, dying, spec_key=SPEC_KEY, cache_dir=cache, workers=workers, chunk_size=2)
    assert not children_left()  # the pool's readers are gone
    key = prepared_key(records, dying, spec_key=SPEC_KEY)
    bucket = entry_dir(cache, key).parent
    assert not entry_dir(cache, key).exists()
    assert [p.name for p in bucket.iterdir()] == [f"{key}.lock"]  # temp dir removed too

    # a build killed outright (no cleanup) leaves its temp dir: ignored, then swept
    stale = bucket / f".{key}.dead.tmp"
    stale.mkdir()
    (stale / "windows.npy").write_bytes(b"partial")
    dying.calls = -10**6
    built = prepare_records(records, dying, spec_key=SPEC_KEY, cache_dir=cache, workers=1)
    assert len(built) == N_RECORDS and not stale.exists()


@pytest.mark.parametrize("damage", ["truncate windows", "garble manifest", "drop keys", "no manifest",
                                    "wrong offsets", "empty windows"])
def test_corrupt_entry_is_deleted_with_a_warning_and_rebuilt(records, tmp_path, damage):
    cache, log = tmp_path / "cache", tmp_path / "reads.log"
    read = functools.partial(counting_read, log=str(log))
    good = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=cache, read=read)
    reference = np.array(good.windows)
    entry = good.path
    del good
    if damage in ("truncate windows", "empty windows"):  # empty: what a power loss after an unsynced rename leaves
        with open(entry / "windows.npy", "r+b") as fh:
            fh.truncate(1000 if damage == "truncate windows" else 0)
    elif damage == "garble manifest":
        (entry / "manifest.json").write_text("{not json")
    elif damage == "drop keys":
        (entry / "keys.json").unlink()
    elif damage == "no manifest":
        (entry / "manifest.json").unlink()
    else:  # same size, wrong values: only the consistency checks can see it
        offsets = np.load(entry / "offsets.npy")
        offsets[1] = offsets[2]
        np.save(entry / "offsets.npy", offsets)
    with pytest.warns(CacheWarning, match="deleting corrupt prepared-array cache entry"):
        rebuilt = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=cache, read=read)
    assert len(reads(log)) == 2 * N_RECORDS and not rebuilt.from_cache
    np.testing.assert_array_equal(rebuilt.windows, reference)
    assert prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=cache, read=read).from_cache


def _fill(records: pd.DataFrame, cache: str, log: str, barrier, workers: int) -> None:
    barrier.wait()  # both processes ask for the same key at the same moment
    prepare_records(records, slow_prepare, spec_key=SPEC_KEY, cache_dir=Path(cache),
                    read=functools.partial(counting_read, log=log), workers=workers, chunk_size=2)


def slow_prepare(x, fs, leads):
    time.sleep(0.02)  # keeps the build open long enough for the other process to contend
    return prepare_fn(x, fs, leads)


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_fill_from_two_processes_builds_once(records, tmp_path, workers):
    cache, log = tmp_path / "cache", tmp_path / "reads.log"
    # fork where available: the children inherit the imports (spawn re-imports pandas/scipy, ~4 s each)
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_fill, args=(records, str(cache), str(log), barrier, workers)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert sorted(reads(log)) == sorted(records["key"])  # every record read exactly once: one build
    assert len(list((cache / "prepared").glob("*/*/manifest.json"))) == 1
    assert not list((cache / "prepared").glob("*/.*.tmp"))
    loaded = prepare_records(records, slow_prepare, spec_key=SPEC_KEY, cache_dir=cache,
                             read=functools.partial(counting_read, log=str(log)))
    assert loaded.from_cache and len(loaded) == N_RECORDS


def test_bad_records_are_excluded_with_reasons(records, tmp_path):
    paths = records["path"].tolist()
    with open(paths[3] + ".dat", "r+b") as fh:  # truncated signal file
        fh.truncate(100)
    sig = np.zeros((1000, 2))  # all-flat record: fails validation
    wfdb.wrsamp("r005", fs=250, units=["mV", "mV"], sig_name=["I", "II"], p_signal=sig, fmt=["16", "16"],
                adc_gain=[1000.0, 1000.0], baseline=[0, 0], write_dir=str(Path(paths[5]).parent))
    records = records.assign(n_samples=[1000 if i == 5 else n for i, n in enumerate(records["n_samples"])])
    got = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=tmp_path / "cache")
    reasons = {e.record: e.reason for e in got.excluded}
    assert set(reasons) == {"synth/r003", "synth/r005"}
    assert "r003.dat" in reasons["synth/r003"] and "truncated" in reasons["synth/r003"]
    assert "flat" in reasons["synth/r005"]
    assert got.keys == tuple(k for k in records["key"] if k not in reasons)
    assert len(got.offsets) == N_RECORDS - 1
    cached = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=tmp_path / "cache")
    assert cached.from_cache and cached.excluded == got.excluded
    with pytest.raises(RecordError, match="r003.dat"):
        prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=None, strict=True)
    with pytest.raises(RecordError, match="cached exclusion"):  # a lenient run's entry does not pass strict
        prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=tmp_path / "cache", strict=True)


def test_window_shape_mismatch_is_excluded(records):
    calls = []

    def odd_one_out(x, fs, leads):
        calls.append(1)
        w = prepare_fn(x, fs, leads)
        return w[:, :1] if len(calls) == 3 else w  # the third record comes back with one lead

    got = prepare_records(records, odd_one_out, spec_key=SPEC_KEY, cache_dir=None, workers=1)
    assert [e.record for e in got.excluded] == ["synth/r002"]
    assert "differs from the first record's (2, 1000)" in got.excluded[0].reason


def test_without_cache_dir_results_match_and_nothing_is_written(records, tmp_path):
    cached = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=tmp_path / "cache")
    plain = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=None)
    assert plain.cache_key is None and plain.path is None and not isinstance(plain.windows, np.memmap)
    np.testing.assert_array_equal(plain.windows, cached.windows)
    np.testing.assert_array_equal(plain.offsets, cached.offsets)
    with pytest.warns(UserWarning, match="content_hash"):
        unhashed = prepare_records(records.assign(content_hash=None), prepare_fn, spec_key=SPEC_KEY,
                                   cache_dir=tmp_path / "other")
    assert unhashed.cache_key is None and not (tmp_path / "other").exists()


def test_all_records_excluded_gives_an_empty_set(records, tmp_path):
    def refuse(x, fs, leads):
        raise RecordError("no usable lead", "x")

    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # build, then load the empty entry
        got = prepare_records(records, refuse, spec_key=SPEC_KEY, cache_dir=cache)
        assert isinstance(got, PreparedSet) and len(got) == 0 and len(got.windows) == 0
        assert got.offsets.tolist() == [0] and len(got.excluded) == N_RECORDS


def test_manifest_records_provenance(records, tmp_path):
    got = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=tmp_path / "cache")
    manifest = json.loads((got.path / "manifest.json").read_text())
    assert manifest["key"] == got.cache_key and manifest["spec"] == json.loads(json.dumps(SPEC_KEY))
    assert manifest["n_records"] == N_RECORDS and manifest["windows_shape"] == list(got.windows.shape)
    assert manifest["prepare"].endswith(":prepare_fn") and manifest["read"].endswith(":read_signal")


def test_bad_arguments_are_spec_errors(records):
    with pytest.raises(ValueError, match="duplicate record keys"):
        prepare_records(pd.concat([records, records]), prepare_fn, spec_key=SPEC_KEY, cache_dir=None)
    with pytest.raises(ValueError, match="'key' column"):
        prepare_records(records.drop(columns="key"), prepare_fn, spec_key=SPEC_KEY, cache_dir=None)
    with pytest.raises(ValueError, match="workers"):
        prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=None, workers=0)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        prepare_records(records, prepare_fn, spec_key={"spec": SPEC}, cache_dir=None)



# ------------------------------------------------------------------- the reader pool (workers > 1)

def pid_read(row, *, log: str):
    """The real reader, logging ``key pid`` (which process read the record)."""
    with open(log, "a") as fh:
        fh.write(f"{row['key']} {os.getpid()}\n")
    return read_signal(row)


def buggy_read(row):
    raise TypeError(f"bug while reading {row['key']}")


def _corrupt(records: pd.DataFrame) -> None:
    """r003: truncated signal file; r008: garbled header."""
    paths = records["path"].tolist()
    with open(paths[3] + ".dat", "r+b") as fh:
        fh.truncate(100)
    Path(paths[8] + ".hea").write_text("r008 two 250 x\n")


def test_reader_pool_gives_what_the_serial_path_gives(records, tmp_path, monkeypatch, children_left):
    monkeypatch.setattr(prepared, "available_cores", lambda: 3)  # the pool runs even on a one-core machine
    _corrupt(records)
    log = tmp_path / "reads.log"
    read = functools.partial(pid_read, log=str(log))
    serial = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=None, read=read, workers=1)
    serial_reads = log.read_text().split("\n")[:-1]
    log.unlink()
    pooled = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=tmp_path / "cache", read=read,
                             workers=3, chunk_size=2)
    pooled_reads = [line.split() for line in log.read_text().splitlines()]

    assert {line.split()[1] for line in serial_reads} == {str(os.getpid())}
    assert sorted(k for k, _ in pooled_reads) == sorted(records["key"])  # each record read once...
    assert str(os.getpid()) not in {pid for _, pid in pooled_reads}  # ...by the pool's processes
    assert not children_left()
    np.testing.assert_array_equal(pooled.windows, serial.windows)  # the .npy written in place, bit for bit
    np.testing.assert_array_equal(pooled.offsets, serial.offsets)
    assert pooled.keys == serial.keys == tuple(k for k in records["key"] if k not in {"synth/r003", "synth/r008"})
    assert pooled.excluded == serial.excluded and [e.record for e in serial.excluded] == ["synth/r003", "synth/r008"]
    reasons = [e.reason for e in serial.excluded]
    assert "r003.dat" in reasons[0] and "truncated" in reasons[0]
    assert "r008.hea" in reasons[1] and "unparsable header" in reasons[1]
    for i, row in enumerate(r for r in records.to_dict("records") if r["key"] in pooled.keys):
        np.testing.assert_array_equal(pooled.record(i), expected_windows(row))


def pid_prepare(x, fs, leads, *, log: str):
    """``prepare_fn`` logging ``pid`` (which process prepared the record); r005's windows come back NaN."""
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    out = prepare_fn(x, fs, leads)
    return out * np.nan if x.shape[1] == 5 * 250 else out


def test_pool_workers_prepare_too_and_give_what_one_process_gives(records, tmp_path, monkeypatch):
    """Where the OS forks, the workers prepare as well as read (this process only writes), bit for bit the same."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("without fork the workers only read (prepare_fn is not pickled)")
    monkeypatch.setattr(prepared, "available_cores", lambda: 2)
    _corrupt(records)
    log = tmp_path / "prepares.log"
    fn = functools.partial(pid_prepare, log=str(log))
    serial = prepare_records(records, fn, spec_key=SPEC_KEY, cache_dir=None, workers=1)
    assert set(log.read_text().split()) == {str(os.getpid())}
    log.unlink()
    pooled = prepare_records(records, fn, spec_key=SPEC_KEY, cache_dir=tmp_path / "cache", workers=2, chunk_size=2)
    assert str(os.getpid()) not in set(log.read_text().split())
    np.testing.assert_array_equal(pooled.windows, serial.windows)
    np.testing.assert_array_equal(pooled.offsets, serial.offsets)
    assert pooled.keys == serial.keys and pooled.excluded == serial.excluded
    assert [e.record for e in serial.excluded if "NaN/inf" in e.reason] == ["synth/r001"]  # 5 s; r008 unreadable


def test_spawned_workers_only_read_and_prepare_fn_is_never_pickled(records, tmp_path, monkeypatch):
    """Without fork (spawn, as on Windows and macOS) ``prepare_fn`` stays here: a closure that cannot pickle works."""
    monkeypatch.setattr(prepared, "available_cores", lambda: 2)
    monkeypatch.setattr(prepared, "_pool_context", lambda: multiprocessing.get_context("spawn"))
    here = os.getpid()

    def local_prepare(x, fs, leads):  # a closure: pickling it would fail
        assert os.getpid() == here
        return prepare_fn(x, fs, leads)

    serial = prepare_records(records, local_prepare, spec_key=SPEC_KEY, cache_dir=None, workers=1)
    spawned = prepare_records(records, local_prepare, spec_key=SPEC_KEY, cache_dir=None, workers=2, chunk_size=4)
    np.testing.assert_array_equal(spawned.windows, serial.windows)
    assert spawned.keys == serial.keys and spawned.excluded == serial.excluded


def test_pool_errors_keep_their_type_and_file(records, monkeypatch, children_left):
    """strict: the worker's RecordError arrives with its file; a bug (not a record error) is never excluded."""
    monkeypatch.setattr(prepared, "available_cores", lambda: 2)
    _corrupt(records)
    for workers in (1, 2):
        with pytest.raises(RecordError) as err:
            prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=None, strict=True, workers=workers,
                            chunk_size=2)
        assert err.value.path.endswith("r003.dat") and "truncated" in err.value.reason
        with pytest.raises(TypeError, match="bug while reading synth/r000"):
            prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=None, read=buggy_read,
                            workers=workers, chunk_size=2)
    assert not children_left()


def test_workers_default_to_and_are_capped_at_the_cores(records, tmp_path, monkeypatch):
    monkeypatch.setattr(prepared, "available_cores", lambda: 2)
    for workers, used in ((None, 2), (8, 2), (1, 1)):
        got = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=tmp_path / str(workers),
                              workers=workers, chunk_size=4)
        assert json.loads((got.path / "manifest.json").read_text())["workers"] == used
    monkeypatch.undo()
    assert 1 <= prepared.available_cores() <= (os.cpu_count() or 1)


@needs_proc_fd
def test_an_entry_is_fsynced_file_and_folder_before_its_rename(records, tmp_path, monkeypatch):
    events = record_syncs(monkeypatch)
    got = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=tmp_path / "cache", workers=1)
    entry = got.path.resolve()
    commit = events.index(("replace", str(entry)))
    synced = [Path(path) for op, path in events[:commit] if op == "fsync"]
    temp = synced[-1]
    assert temp.parent == entry.parent and temp.name.startswith(f".{entry.name}.")
    assert sorted(p.name for p in synced[:-1] if p.parent == temp) == sorted(
        ["windows.npy", "offsets.npy", "keys.json", "excluded.json", "manifest.json"])
    assert events[commit + 1:] == [("fsync", str(entry.parent))]


def test_a_read_only_cache_serves_hits_and_builds_misses_in_a_temp_folder(records, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    built = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=cache, workers=1)
    refused = read_only(monkeypatch, cache)
    hit = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=cache, workers=1)
    assert hit.from_cache and refused == []
    fewer = records.iloc[:5]
    with pytest.warns(CacheWarning, match="prepared-array cache not writable .*building in a temporary folder"):
        missed = prepare_records(fewer, prepare_fn, spec_key=SPEC_KEY, cache_dir=cache, workers=1)
    assert not missed.from_cache and missed.path is None and missed.keys == tuple(fewer["key"])
    np.testing.assert_array_equal(missed.windows, built.windows[: built.offsets[5]])


def test_a_cache_write_failure_leaves_no_half_entry_and_builds_in_a_temp_folder(records, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    real = prepared.write_durable

    def disk_full_in_the_cache(path, write):
        if Path(path).is_relative_to(cache):
            raise OSError(28, "No space left on device")  # as the kernel reports it: no path
        return real(path, write)

    monkeypatch.setattr(prepared, "write_durable", disk_full_in_the_cache)
    key = prepared_key(records, prepare_fn, spec_key=SPEC_KEY)
    entry = entry_dir(cache, key)
    with pytest.warns(CacheWarning, match=f"^{entry}: cannot write prepared arrays \\(No space left on device\\)"):
        got = prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir=cache, workers=1)
    assert not got.from_cache and got.keys == tuple(records["key"])
    assert [p.name for p in entry.parent.iterdir()] == [f"{key}.lock"]  # no entry, no temp dir


@needs_rlimit
def test_a_full_disk_while_building_is_one_line_naming_the_path_and_no_half_entry(records, tmp_path):
    """The disk fills mid-way through ``windows.npy`` (numpy's ``… requested and … written``, no path): a warning
    naming the entry, then, the temp folder being just as full, a CacheError naming where it failed."""
    cache = tmp_path / "cache"
    records.to_json(tmp_path / "records.json", orient="records")
    child = run_on_a_full_disk(f"""
        import json
        import pandas as pd
        from ecgfm_suite.data.prepared import prepare_records
        from tests.data.test_prepared import SPEC_KEY, prepare_fn
        from pathlib import Path
        records = pd.DataFrame(json.loads(Path({str(tmp_path / "records.json")!r}).read_text()))
        disk_full_after(64 * 1024)
        try:
            prepare_records(records, prepare_fn, spec_key=SPEC_KEY, cache_dir={str(cache)!r}, workers=1)
        except Exception as exc:
            print(f"{{type(exc).__name__}}: {{exc}}")
    """)
    assert child.returncode == 0, child.stderr
    entry = entry_dir(cache, prepared_key(records, prepare_fn, spec_key=SPEC_KEY))
    short_write = r"\(\d+ requested and \d+ written, a short write: disk full\?\)"
    assert re.search(f"CacheWarning: {entry}: cannot write prepared arrays {short_write}: nothing was half-written; "
                     "building in a temporary folder instead", child.stderr)
    [error] = child.stdout.splitlines()
    assert re.fullmatch(f"{CacheError.__name__}: .*windows.npy: cannot write prepared arrays {short_write}", error)
    assert [p.name for p in entry.parent.iterdir()] == [f"{entry.name}.lock"]  # no entry, no temp dir
