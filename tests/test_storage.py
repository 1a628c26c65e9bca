"""Locations (path or fsspec URL), commit marks and tree copies, against a real S3-compatible server."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ecgfm_suite.engine.settings import resolve
from ecgfm_suite.errors import EcgfmError, SpecError
from ecgfm_suite.storage import StorePath, download_tree, location, upload_tree


def test_paths_and_file_urls_stay_local_other_urls_do_not(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert location("~/cache") == tmp_path / "cache"
    assert location(tmp_path / "x") == tmp_path / "x"
    assert location(f"file://{tmp_path}/x/") == tmp_path / "x"
    assert location("s3://bucket/prefix/") == StorePath("s3://bucket/prefix")
    assert location("memory://b/p") / "a" / "b.json" == StorePath("memory://b/p/a/b.json")


@pytest.mark.parametrize(("url", "needle"), [("nosuch://b/p", "Protocol not known"), ("gs://b/p", "gcsfs")])
def test_unusable_urls_are_spec_errors_naming_the_url(url, needle):
    if needle == "gcsfs" and importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed: gs:// URLs are usable here")
    with pytest.raises(SpecError, match=needle) as err:
        location(url)
    assert url in str(err.value)


def test_settings_keep_urls_and_local_dirs_for_local_only_caches(tmp_path):
    s = resolve(cli={"cache_dir": "s3://b/cache", "reports_dir": "s3://b/runs"}, env={})
    assert s.cache_dir == StorePath("s3://b/cache") and s.reports_dir == StorePath("s3://b/runs")
    assert s.local_cache_dir == Path("~/.cache/ecgfm-suite/cache").expanduser()  # prepared arrays, numba
    assert s.local_reports_dir == Path("reports")  # staging, rooted at the pytest rootdir by the plugin
    local = resolve(cli={"cache_dir": f"file://{tmp_path}/c", "reports_dir": str(tmp_path / "r")}, env={})
    assert local.cache_dir == local.local_cache_dir == tmp_path / "c"
    assert local.reports_dir == local.local_reports_dir == tmp_path / "r"
    with pytest.raises(SpecError, match="ECGFM_CACHE_DIR.*nosuch://x"):
        resolve(env={"ECGFM_CACHE_DIR": "nosuch://x"})


def test_shard_as_of_is_an_iso_time_in_utc():
    assert resolve(env={"ECGFM_SHARD_AS_OF": "2026-11-25T06:40:05Z"}).shard_as_of == datetime(
        2026, 11, 25, 6, 40, 5, tzinfo=UTC)
    assert resolve(cli={"shard_as_of": "2026-11-25T07:40:05+01:00"}, env={}).shard_as_of == datetime(
        2026, 11, 25, 6, 40, 5, tzinfo=UTC)
    assert resolve(cli={"shard_as_of": "2026-11-25 06:40"}, env={}).shard_as_of.tzinfo == UTC
    assert resolve(env={}).shard_as_of is None
    with pytest.raises(SpecError, match="ECGFM_SHARD_AS_OF.*ISO 8601"):
        resolve(env={"ECGFM_SHARD_AS_OF": "yesterday"})


def _keys(url: str) -> list[str]:
    store = StorePath(url)
    store.fs.invalidate_cache()
    return sorted(k[len(store.path) + 1:] for k in store.fs.find(store.path))


def test_commit_mark_is_written_whole_and_leaves_no_temp_key(s3_url):
    mark = StorePath(s3_url) / "runs" / "run.json"
    assert not mark.exists()
    mark.write_atomic(b'{"cells": 1}')
    assert mark.exists() and mark.read_bytes() == b'{"cells": 1}'
    mark.write_atomic(b'{"cells": 2}')
    assert mark.read_text() == '{"cells": 2}'
    assert _keys(s3_url) == ["runs/run.json"]
    with pytest.raises(FileNotFoundError):
        (StorePath(s3_url) / "runs" / "absent.json").read_bytes()


def _tree(root: Path) -> None:
    (root / "cells").mkdir(parents=True)
    (root / "results.jsonl").write_text('{"a": 1}\n')
    (root / "results.jsonl.lock").write_text("")
    (root / ".results.csv.x.tmp").write_text("half")  # an atomic_open temp file of a crashed writer
    (root / "cells" / "c1.npz").write_bytes(b"\x00\x01")
    (root / "run.json").write_text("{}")


def test_tree_round_trip_commit_last_and_skips(tmp_path, s3_url):
    _tree(tmp_path / "run")
    target = StorePath(s3_url) / "runs" / "r1"
    upload_tree(tmp_path / "run", target, commit="run.json", skip=("*.lock",))
    assert _keys(s3_url) == ["runs/r1/cells/c1.npz", "runs/r1/results.jsonl", "runs/r1/run.json"]
    got = download_tree(target, tmp_path / "back", commit="run.json")
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == [
        "cells/c1.npz", "results.jsonl", "run.json"]
    assert (got / "cells" / "c1.npz").read_bytes() == b"\x00\x01"
    # a sibling whose name extends this one's is not part of it
    upload_tree(tmp_path / "run", StorePath(s3_url) / "runs" / "r10", commit="run.json")
    again = download_tree(target, tmp_path / "again", commit="run.json")
    assert sorted(p.name for p in again.rglob("*") if p.is_file()) == ["c1.npz", "results.jsonl", "run.json"]


def test_an_upload_cut_off_before_the_commit_is_not_a_tree(tmp_path, s3_url, monkeypatch):
    _tree(tmp_path / "run")
    target = StorePath(s3_url) / "runs" / "cut"
    fs = target.fs
    put = fs.put

    def cut_off(lpaths, rpaths, **kwargs):  # the job dies after its first file
        put(lpaths[:1], rpaths[:1], **kwargs)
        raise ConnectionError("connection reset")

    monkeypatch.setattr(fs, "put", cut_off)
    with pytest.raises(EcgfmError, match="upload failed .run.json not written") as err:
        upload_tree(tmp_path / "run", target, commit="run.json")
    assert target.url in str(err.value)
    assert _keys(s3_url) == ["runs/cut/cells/c1.npz"]  # half a tree, and no commit mark
    with pytest.raises(EcgfmError, match="run.json is missing") as err:
        download_tree(target, tmp_path / "back", commit="run.json")
    assert target.url in str(err.value)


def test_uploading_an_unfinished_tree_is_refused(tmp_path, s3_url):
    (tmp_path / "run").mkdir()
    with pytest.raises(EcgfmError, match="run.json is missing"):
        upload_tree(tmp_path / "run", StorePath(s3_url) / "r", commit="run.json")
