import json
import multiprocessing as mp

import numpy as np
import pytest

from ecgfm_suite.embeddings.cache import EmbeddingCache
from ecgfm_suite.errors import CacheWarning

DESC = {"model": "m", "checkpoint_sha256": "abc", "dataset": "ludb", "records": "r1"}


def _compute(n=5, d=3, calls=None):
    def compute():
        if calls is not None:
            calls.append(1)
        return tuple(f"ludb/{i}" for i in range(n)), np.arange(n * d, dtype=np.float32).reshape(n, d), {"x": 1}
    return compute


def test_miss_then_hit(tmp_path):
    cache = EmbeddingCache(tmp_path)
    calls = []
    first = cache.get_or_compute(DESC, _compute(calls=calls))
    second = cache.get_or_compute(DESC, _compute(calls=calls))
    assert not first.hit and second.hit and len(calls) == 1
    np.testing.assert_array_equal(first.X, second.X)
    entry = cache.entry_dir(cache.key(DESC))
    assert sorted(p.name for p in entry.iterdir()) == ["emb.npy", "ids.json", "manifest.json"]
    assert json.loads((entry / "manifest.json").read_text())["n"] == 5


def test_key_changes_with_any_field(tmp_path):
    cache = EmbeddingCache(tmp_path)
    assert cache.key(DESC) != cache.key({**DESC, "checkpoint_sha256": "abd"})
    assert cache.key(DESC) != cache.key({**DESC, "records": "r2"})


def test_corrupt_entry_is_recomputed(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.get_or_compute(DESC, _compute())
    entry = cache.entry_dir(cache.key(DESC))
    (entry / "emb.npy").write_bytes(b"garbage")
    calls = []
    with pytest.warns(CacheWarning, match="emb.npy: embedding cache file changed"):
        again = cache.get_or_compute(DESC, _compute(calls=calls))
    assert calls == [1] and not again.hit
    assert cache.get_or_compute(DESC, _compute()).hit


def test_entry_without_manifest_is_not_an_entry(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.get_or_compute(DESC, _compute())
    entry = cache.entry_dir(cache.key(DESC))
    (entry / "manifest.json").unlink()  # as if the writer died before committing
    assert cache.load(cache.key(DESC)) is None


def test_refresh_and_off_modes(tmp_path):
    EmbeddingCache(tmp_path).get_or_compute(DESC, _compute())
    calls = []
    assert not EmbeddingCache(tmp_path, "refresh").get_or_compute(DESC, _compute(calls=calls)).hit
    assert not EmbeddingCache(tmp_path / "off", "off").get_or_compute(DESC, _compute(calls=calls)).hit
    assert len(calls) == 2
    assert not (tmp_path / "off").exists()


def _worker(root, out):
    import time

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.5)
        return ("a/1",), np.ones((1, 2), np.float32), {}

    EmbeddingCache(root).get_or_compute(DESC, slow)
    out.put(len(calls))


def test_two_processes_fill_an_entry_once(tmp_path):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(tmp_path, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(out.get() for _ in procs) == [0, 1]


def test_object_store_locks_live_in_a_private_per_user_folder(tmp_path, monkeypatch):
    """Lock files of URL entries sit in <tmp>/ecgfm-suite-locks-<uid> (0700): another user's folder of the old
    shared name cannot block this user, and a folder of this name owned by someone else is refused."""
    import os
    import stat
    import tempfile

    from ecgfm_suite.embeddings import cache as cache_module
    from ecgfm_suite.errors import CacheError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    locks = cache_module.url_lock_dir()
    assert locks == tmp_path / f"ecgfm-suite-locks-{os.getuid()}"
    assert stat.S_IMODE(locks.stat().st_mode) == 0o700
    assert cache_module.url_lock_dir() == locks  # reused
    real_uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)  # as if the folder were another user's
    (tmp_path / f"ecgfm-suite-locks-{real_uid + 1}").mkdir()
    with pytest.raises(CacheError, match="another user"):
        cache_module.url_lock_dir()
