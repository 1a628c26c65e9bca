"""The embedding cache on object storage (a real S3-compatible server on loopback) and on ``file://`` URLs."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from ecgfm_suite.embeddings.cache import EmbeddingCache
from ecgfm_suite.engine.shard import recorded_encode_rates
from ecgfm_suite.errors import CacheError, CacheWarning
from ecgfm_suite.storage import StorePath

DESC = {"model": "m", "checkpoint_sha256": "abc", "dataset": "ludb", "records": "r1"}
N, D = 6, 4


def _compute(value: float = 1.0, calls: list[float] | None = None, barrier: threading.Barrier | None = None):
    """Records ludb/0..5 with vectors filled with ``value`` (writers that differ in their bits, like two devices)."""
    def compute():
        if calls is not None:
            calls.append(value)
        if barrier is not None:
            barrier.wait(timeout=30)  # every writer has computed before any of them looks at the store
        X = np.full((N, D), value, dtype=np.float32) + np.arange(N, dtype=np.float32)[:, None]
        return tuple(f"ludb/{i}" for i in range(N)), X, {"writer": value, "timings": {"encode_s": 3.0, "records": N}}
    return compute


def _entry_keys(entry: StorePath) -> list[str]:
    entry.fs.invalidate_cache()
    return sorted(k[len(entry.path) + 1:] for k in entry.fs.find(entry.path))


def _manifest(entry: StorePath) -> dict:
    return json.loads((entry / "manifest.json").read_bytes())


def test_miss_compute_then_hit(s3_url):
    cache = EmbeddingCache(f"{s3_url}/cache")
    calls: list[float] = []
    first = cache.get_or_compute(DESC, _compute(calls=calls))
    second = EmbeddingCache(f"{s3_url}/cache").get_or_compute(DESC, _compute(calls=calls))
    assert not first.hit and second.hit and calls == [1.0]
    np.testing.assert_array_equal(first.X, second.X)
    assert second.keys == tuple(f"ludb/{i}" for i in range(N)) and second.X.dtype == np.float32
    entry = cache.entry_dir(cache.key(DESC))
    assert isinstance(entry, StorePath) and entry.url.startswith(f"{s3_url}/cache/embeddings/")
    prefix = _manifest(entry)["data"]
    assert _entry_keys(entry) == [f"{prefix}/emb.npy", f"{prefix}/ids.json", "manifest.json"]
    assert _manifest(entry)["n"] == N and _manifest(entry)["writer"] == 1.0


def test_crash_before_the_manifest_leaves_a_miss_that_is_recomputed(s3_url, monkeypatch):
    cache = EmbeddingCache(f"{s3_url}/cache")
    entry = cache.entry_dir(cache.key(DESC))
    real = StorePath.write_atomic

    def die(self, data):
        if self.name == "manifest.json":
            raise KeyboardInterrupt  # the job is killed between the arrays and the commit
        return real(self, data)

    monkeypatch.setattr(StorePath, "write_atomic", die)
    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute(DESC, _compute())
    monkeypatch.undo()
    [orphan] = {k.split("/")[0] for k in _entry_keys(entry)}
    assert orphan.startswith("data-")  # arrays uploaded, no manifest: not an entry
    assert cache.load(cache.key(DESC)) is None
    calls: list[float] = []
    again = cache.get_or_compute(DESC, _compute(2.0, calls))
    assert calls == [2.0] and not again.hit
    hit = cache.get_or_compute(DESC, _compute(3.0, calls))
    assert hit.hit and calls == [2.0] and hit.manifest["data"] != orphan
    np.testing.assert_array_equal(hit.X, again.X)


def test_two_writers_racing_for_one_entry_both_succeed_and_never_mix(s3_url, monkeypatch):
    # two machines: no lock is shared (on one machine a local lock would serialise them; tested below)
    monkeypatch.setattr(EmbeddingCache, "_lock", staticmethod(lambda entry: contextlib.nullcontext()))
    for round_ in range(3):  # a few rounds: the interleaving of the PUTs differs from round to round
        desc = {**DESC, "records": f"race{round_}"}
        cache = EmbeddingCache(f"{s3_url}/cache")
        entry = cache.entry_dir(cache.key(desc))
        barrier = threading.Barrier(2)
        got: dict[float, object] = {}
        seen: list[object] = []
        done = threading.Event()

        def write(value: float) -> None:
            got[value] = EmbeddingCache(f"{s3_url}/cache").get_or_compute(desc, _compute(value, barrier=barrier))

        def read() -> None:  # a third machine reading while the two commit
            while not done.is_set():
                seen.append(EmbeddingCache(f"{s3_url}/cache").load(cache.key(desc)))

        threads = [threading.Thread(target=write, args=(v,)) for v in (1.0, 2.0)]
        reader = threading.Thread(target=read)
        reader.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        done.set()
        reader.join(timeout=60)
        assert sorted(got) == [1.0, 2.0] and not any(r.hit for r in got.values())  # both computed, both succeeded
        for value, result in got.items():  # each writer returns what it computed
            np.testing.assert_array_equal(result.X, _compute(value)()[1])
        final = EmbeddingCache(f"{s3_url}/cache").load(cache.key(desc))
        assert final is not None and final.manifest["writer"] in (1.0, 2.0)
        for loaded in [final, *(s for s in seen if s is not None)]:  # whole entries of one writer, never a mix
            np.testing.assert_array_equal(loaded.X, _compute(loaded.manifest["writer"])()[1])
        keys = _entry_keys(entry)
        assert not [k for k in keys if ".tmp-" in k]
        prefixes = {k.split("/")[0] for k in keys if k != "manifest.json"}
        assert final.manifest["data"] in prefixes and len(prefixes) <= 2  # at most the loser's, unreferenced
        assert all({f"{p}/emb.npy", f"{p}/ids.json"} <= set(keys) for p in prefixes)


def test_workers_of_one_machine_fill_a_remote_entry_once(s3_url):
    calls: list[float] = []
    got: list[object] = []

    def work(value: float) -> None:
        got.append(EmbeddingCache(f"{s3_url}/cache").get_or_compute(DESC, _compute(value, calls)))

    threads = [threading.Thread(target=work, args=(v,)) for v in (1.0, 2.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(calls) == 1 and sorted(r.hit for r in got) == [False, True]


def test_a_reader_whose_entry_is_replaced_mid_read_gets_the_new_one(s3_url, monkeypatch):
    root = f"{s3_url}/cache"
    EmbeddingCache(root).get_or_compute(DESC, _compute(1.0))
    real = StorePath.read_bytes
    replaced: list[bool] = []

    def refresh_before_first_data_read(self):
        if self.name == "emb.npy" and not replaced:
            replaced.append(True)  # another machine refreshes the entry and deletes the old arrays
            EmbeddingCache(root, "refresh").get_or_compute(DESC, _compute(2.0))
        return real(self)

    monkeypatch.setattr(StorePath, "read_bytes", refresh_before_first_data_read)
    got = EmbeddingCache(root).load(EmbeddingCache.key(DESC))
    assert replaced and got is not None and got.manifest["writer"] == 2.0
    np.testing.assert_array_equal(got.X, _compute(2.0)()[1])


def test_refresh_replaces_the_entry_and_deletes_the_old_arrays(s3_url):
    root = f"{s3_url}/cache"
    first = EmbeddingCache(root).get_or_compute(DESC, _compute(1.0))
    again = EmbeddingCache(root, "refresh").get_or_compute(DESC, _compute(2.0))
    assert not again.hit
    entry = EmbeddingCache(root).entry_dir(EmbeddingCache.key(DESC))
    assert {k.split("/")[0] for k in _entry_keys(entry)} == {again.manifest["data"], "manifest.json"}
    assert again.manifest["data"] != first.manifest["data"]


@pytest.mark.parametrize("damage", ["garbage", "truncate", "missing", "swap"])
def test_damaged_arrays_under_a_manifest_are_named_and_recomputed(s3_url, damage):
    root = f"{s3_url}/cache"
    cache = EmbeddingCache(root)
    cache.get_or_compute(DESC, _compute(1.0))
    entry = cache.entry_dir(cache.key(DESC))
    data = entry / _manifest(entry)["data"]
    emb = (data / "emb.npy").read_bytes()
    if damage == "garbage":
        (data / "emb.npy").write_bytes(b"garbage")
    elif damage == "truncate":
        (data / "emb.npy").write_bytes(emb[: len(emb) // 2])
    elif damage == "missing":
        (data / "ids.json").rm()
    else:  # a well-formed array of the right shape, but not the one the manifest committed
        buf = io.BytesIO()
        np.save(buf, _compute(5.0)()[1], allow_pickle=False)
        (data / "emb.npy").write_bytes(buf.getvalue())
    calls: list[float] = []
    with pytest.warns(CacheWarning) as warned:
        again = cache.get_or_compute(DESC, _compute(2.0, calls))
    assert calls == [2.0] and not again.hit
    [message] = [str(w.message) for w in warned]
    assert message.startswith(entry.url) and message.endswith("recomputing")
    assert ("sha256 differs" if damage != "missing" else "FileNotFoundError") in message
    assert cache.get_or_compute(DESC, _compute(3.0, calls)).hit and calls == [2.0]
    assert not (data / "emb.npy").exists()  # the damaged arrays were superseded and removed


def test_an_unwritable_store_is_a_cache_error_naming_the_entry(s3_endpoint):
    cache = EmbeddingCache("s3://no-such-bucket-ecgfm/cache")
    with pytest.raises(CacheError) as err:
        cache.get_or_compute(DESC, _compute())
    assert "s3://no-such-bucket-ecgfm/cache/embeddings/" in str(err.value)


def test_recorded_encode_rates_read_the_manifests_in_the_bucket(s3_url):
    EmbeddingCache(f"{s3_url}/cache").get_or_compute(DESC, _compute())
    assert recorded_encode_rates(StorePath(f"{s3_url}/cache")) == {"m": pytest.approx(3.0 / N)}
    assert recorded_encode_rates(StorePath(f"{s3_url}/empty")) == {}


@pytest.mark.parametrize("where", ["s3", "local"])
def test_shard_costs_as_of_count_only_entries_written_before(s3_url, tmp_path, where):
    root = f"{s3_url}/cache" if where == "s3" else str(tmp_path / "cache")
    cache = EmbeddingCache(root)
    cache.get_or_compute(DESC, _compute())
    [manifest] = cache.manifest_paths()
    written = manifest.modified() if isinstance(manifest, StorePath) else datetime.fromtimestamp(
        manifest.stat().st_mtime, tz=UTC)
    assert recorded_encode_rates(root, as_of=written) == {"m": pytest.approx(3.0 / N)}
    assert recorded_encode_rates(root, as_of=written - timedelta(seconds=1)) == {}  # written after that moment
    assert recorded_encode_rates(root) == {"m": pytest.approx(3.0 / N)}


def test_file_urls_use_the_local_layout(tmp_path):
    cache = EmbeddingCache(f"file://{tmp_path}/cache")
    assert not cache.remote and cache.root == tmp_path / "cache" / "embeddings"
    calls: list[float] = []
    assert not cache.get_or_compute(DESC, _compute(calls=calls)).hit
    assert EmbeddingCache(tmp_path / "cache").get_or_compute(DESC, _compute(calls=calls)).hit and calls == [1.0]
    entry = cache.entry_dir(cache.key(DESC))
    assert sorted(p.name for p in entry.iterdir()) == ["emb.npy", "ids.json", "manifest.json"]
