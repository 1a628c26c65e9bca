"""The local embedding cache never scores a damaged entry, survives a power loss, and copes with a read-only
or full cache disk (issue 17, cases 3, 4 and 9): each problem is a CacheWarning naming the entry and costs a
recompute, never a crash and never a silent wrong answer."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.embeddings.cache import MANIFEST, EmbeddingCache
from ecgfm_suite.errors import CacheWarning
from tests.test_io_and_registry import (
    needs_proc_fd,
    needs_rlimit,
    read_only,
    record_syncs,
    run_on_a_full_disk,
)

DESC = {"model": "m", "checkpoint_sha256": "abc", "dataset": "ludb", "records": "r1"}
N, D = 50, 8


def _compute(calls: list[int] | None = None):
    def compute():
        if calls is not None:
            calls.append(1)
        X = np.arange(N * D, dtype=np.float32).reshape(N, D) / (N * D) + 0.25
        return tuple(f"ludb/{i}" for i in range(N)), X, {"timings": {"encode_s": 1.0, "records": N}}
    return compute


def _filled(root: Path) -> tuple[EmbeddingCache, Path]:
    cache = EmbeddingCache(root)
    cache.get_or_compute(DESC, _compute())
    return cache, cache.entry_dir(cache.key(DESC))


def _zero_vectors_keep_header(path: Path) -> None:
    """What a stray writer or bit rot does: the .npy header (shape, dtype) intact, the vectors zeroed."""
    X = np.load(path, mmap_mode="r+")
    X[:] = 0
    X.flush()


def test_vectors_zeroed_under_an_intact_header_are_caught_and_recomputed(tmp_path):
    cache, entry = _filled(tmp_path)
    _zero_vectors_keep_header(entry / "emb.npy")
    calls: list[int] = []
    with pytest.warns(CacheWarning, match=f"^{re.escape(str(entry / 'emb.npy'))}: .*sha256 differs"):
        again = cache.get_or_compute(DESC, _compute(calls))
    assert calls == [1] and not again.hit
    np.testing.assert_array_equal(again.X, _compute()()[1])  # the right vectors, not the zeros
    hit = cache.get_or_compute(DESC, _compute(calls))
    assert hit.hit and calls == [1] and np.asarray(hit.X).any()


@pytest.mark.parametrize("damage", ["swap ids", "drop digests"])
def test_an_entry_that_cannot_be_verified_is_recomputed_not_trusted(tmp_path, damage):
    """Ids swapped with the right count (the row check passes), or an entry written before digests were kept."""
    cache, entry = _filled(tmp_path)
    if damage == "swap ids":
        ids = json.loads((entry / "ids.json").read_text())
        ids[0], ids[1] = ids[1], ids[0]
        (entry / "ids.json").write_text(json.dumps(ids))
        expected = f"^{re.escape(str(entry / 'ids.json'))}: .*sha256 differs"
    else:
        manifest = json.loads((entry / MANIFEST).read_text())
        del manifest["sha256"]
        (entry / MANIFEST).write_text(json.dumps(manifest))
        expected = f"^{re.escape(str(entry / MANIFEST))}: .*no sha256.*older ecgfm-suite"
    calls: list[int] = []
    with pytest.warns(CacheWarning, match=expected):
        again = cache.get_or_compute(DESC, _compute(calls))
    assert calls == [1] and not again.hit and again.keys[:2] == ("ludb/0", "ludb/1")
    assert "sha256" in json.loads((entry / MANIFEST).read_text())


@pytest.mark.parametrize("name", ["emb.npy", "ids.json", MANIFEST])
def test_a_zero_byte_file_left_by_a_power_loss_is_recomputed_with_a_warning(tmp_path, name):
    cache, entry = _filled(tmp_path)
    (entry / name).write_bytes(b"")
    calls: list[int] = []
    with pytest.warns(CacheWarning, match=f"^{re.escape(str(entry))}"):
        again = cache.get_or_compute(DESC, _compute(calls))
    assert calls == [1] and not again.hit
    assert cache.get_or_compute(DESC, _compute(calls)).hit and calls == [1]


@needs_proc_fd
def test_an_entry_is_fsynced_file_and_folder_before_its_rename(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path)
    entry = cache.entry_dir(cache.key(DESC)).resolve()
    events = record_syncs(monkeypatch)
    cache.get_or_compute(DESC, _compute())
    commit = events.index(("replace", str(entry)))
    before = [Path(path) for op, path in events[:commit] if op == "fsync"]
    temp = before[-1]
    assert temp.parent == entry.parent and temp.name.startswith(f".{entry.name}.")
    assert sorted(p.name for p in before[:-1]) == sorted(["emb.npy", "ids.json", MANIFEST])
    assert all(p.parent == temp for p in before[:-1])
    assert events[commit + 1:] == [("fsync", str(entry.parent))]


@pytest.mark.parametrize("how", ["read-only mount", "no write permission"])
def test_a_read_only_cache_serves_hits_and_computes_misses_with_a_warning(tmp_path, monkeypatch, how):
    _filled(tmp_path / "cache")
    if how == "read-only mount":
        refused = read_only(monkeypatch, tmp_path / "cache")
    else:
        if os.geteuid() == 0:
            pytest.skip("root ignores permission bits (the read-only mount case covers it)")
        for folder in (tmp_path / "cache", *(tmp_path / "cache").rglob("*")):
            if folder.is_dir():
                folder.chmod(0o555)
        refused = []
    try:
        calls: list[int] = []
        hit = EmbeddingCache(tmp_path / "cache").get_or_compute(DESC, _compute(calls))
        assert hit.hit and calls == [] and refused == []  # served without trying to write anything
        other = {**DESC, "records": "r2"}
        missed = EmbeddingCache(tmp_path / "cache").key(other)
        with pytest.warns(CacheWarning, match=f"{missed}: embedding cache not writable .*computing without storing"):
            computed = EmbeddingCache(tmp_path / "cache").get_or_compute(other, _compute(calls))
        assert not computed.hit and calls == [1]
        np.testing.assert_array_equal(computed.X, _compute()()[1])
    finally:
        for folder in (tmp_path / "cache", *(tmp_path / "cache").rglob("*")):
            if folder.is_dir():
                folder.chmod(0o755)
    assert not EmbeddingCache(tmp_path / "cache").entry_dir(missed).exists()


@needs_rlimit
def test_a_full_disk_while_writing_an_entry_leaves_no_half_entry_and_names_it(tmp_path):
    """The report: ``OSError: 12000 requested and 8064 written`` with no path, and the run gone. Now: a warning
    naming the entry, the computed vectors used, nothing half-written, and the next run computes again."""
    root = tmp_path / "cache"
    child = run_on_a_full_disk(f"""
        import json
        import numpy as np
        from ecgfm_suite.embeddings.cache import EmbeddingCache
        X = np.ones((2000, 64), np.float32)
        disk_full_after(64 * 1024)
        with warnings.catch_warnings(record=True) as seen:
            got = EmbeddingCache({str(root)!r}).get_or_compute({DESC!r}, lambda: (tuple(map(str, range(2000))), X, {{}}))
        print(json.dumps({{"hit": got.hit, "same": bool((got.X == X).all()),
                           "warnings": [f"{{w.category.__name__}}: {{w.message}}" for w in seen]}}))
    """)
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    entry = EmbeddingCache(root).entry_dir(EmbeddingCache.key(DESC))
    assert not out["hit"] and out["same"]
    assert out["warnings"] == [(f"CacheWarning: {entry}: cannot store the embedding cache entry (File too large); "
                                "nothing was half-written, the vectors are used uncached")]
    assert sorted(p.name for p in entry.parent.iterdir()) == [f"{entry.name}.lock"]  # no entry, no temp dir


@pytest.mark.slow
@pytest.mark.real_data
def test_the_runner_rescores_nothing_from_a_damaged_entry(data_dir, tmp_path):
    """Where the user met case 3: the runner's embeddings of a dataset, cached, then zeroed on disk."""
    from ecgfm_suite.engine.runner import Runner
    from ecgfm_suite.engine.settings import resolve

    settings = resolve({"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache"), "models": "random_cnn",
                        "tasks": "ludb_sex", "workers": "1"}, env={})
    runner = Runner(settings)
    encoder = runner.load_encoder("random_cnn")
    rows, X, _, hit = runner.dataset_embeddings(encoder, "ludb")
    assert not hit and np.abs(X).sum() > 0
    [manifest] = runner.cache.manifest_paths()
    _zero_vectors_keep_header(manifest.parent / "emb.npy")
    with pytest.warns(CacheWarning, match="sha256 differs"):
        rows_again, X_again, _, hit = Runner(settings).dataset_embeddings(encoder, "ludb")
    assert not hit and rows_again == rows
    np.testing.assert_allclose(X_again, X, rtol=1e-5, atol=1e-6)
