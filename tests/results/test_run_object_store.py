"""Run directories in object storage: upload with run.json last, merge of shard runs from and to URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecgfm_suite.cli import main
from ecgfm_suite.errors import EcgfmError, SpecError
from ecgfm_suite.results import RunDir
from ecgfm_suite.results.merge import merge_runs
from ecgfm_suite.results.run import fetch_run, staged_run, upload_run
from ecgfm_suite.storage import StorePath
from tests.results.test_merge import CELLS, SHARDS, _shard_run


def _uploaded(tmp_path: Path, s3_url: str, k: int, **kwargs) -> str:
    """Shard run k written locally as a shard job does, then uploaded to ``<bucket>/runs/shard<k>``."""
    run = RunDir.open(_shard_run(tmp_path / "jobs", k, **kwargs))
    return upload_run(run, f"{s3_url}/runs/shard{k}").url


def _files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def test_upload_then_fetch_gives_the_same_run(tmp_path, s3_url):
    local = _shard_run(tmp_path / "jobs", 1)
    url = _uploaded(tmp_path / "again", s3_url, 1)
    store = StorePath(url)
    store.fs.invalidate_cache()
    assert not [k for k in store.fs.find(store.path) if k.endswith(".lock")]
    back = fetch_run(store, tmp_path / "back")
    assert _files(back.path) == _files(local)
    assert back.results() == RunDir.open(local).results()


def test_merge_shard_runs_from_urls_into_a_local_dir(tmp_path, s3_url):
    urls = [_uploaded(tmp_path, s3_url, k) for k in (1, 2, 3)]
    merged = merge_runs(urls, tmp_path / "out" / "merged")
    assert sorted(r.cell_id for r in merged.results) == sorted(c.id for c in CELLS) and merged.missing == ()
    out = RunDir.open(tmp_path / "out" / "merged")
    originals = {r.cell_id: r for k in (1, 2, 3) for r in RunDir.open(tmp_path / "jobs" / f"shard{k}").results()}
    assert {r.cell_id: r for r in out.results()} == originals
    meta = json.loads((out.path / "run.json").read_text())
    assert meta["merged_from"] == urls and [str(s) for s in merged.sources] == urls
    assert sorted(p.stem for p in (out.path / "cells").glob("*.npz")) == sorted(c.id for c in CELLS)


def test_merge_into_a_url_uploads_a_complete_run(tmp_path, s3_url):
    urls = [_uploaded(tmp_path, s3_url, k) for k in (1, 2, 3)]
    merged = merge_runs(urls, f"{s3_url}/merged")
    assert merged.path == StorePath(f"{s3_url}/merged")
    back = fetch_run(StorePath(f"{s3_url}/merged"), tmp_path / "back")
    assert sorted(r.cell_id for r in back.results()) == sorted(c.id for c in CELLS)
    assert json.loads((back.path / "run.json").read_text())["merged_from"] == urls
    with pytest.raises(SpecError, match="already holds a run") as err:
        merge_runs(urls, f"{s3_url}/merged")
    assert f"{s3_url}/merged" in str(err.value)


def test_a_shard_run_without_run_json_is_refused_naming_its_url(tmp_path, s3_url):
    urls = [_uploaded(tmp_path, s3_url, k) for k in (1, 2)]
    cut = StorePath(f"{s3_url}/runs/shard3")
    run = RunDir.open(_shard_run(tmp_path / "jobs", 3))
    cut.fs.put_file(str(run.results_path), f"{cut.path}/results.jsonl")  # the job died before committing
    with pytest.raises(EcgfmError, match="run.json is missing") as err:
        merge_runs([*urls, cut.url], tmp_path / "m")
    assert cut.url in str(err.value) and not (tmp_path / "m").exists()


def test_incomparable_runs_in_the_bucket_are_named_by_url(tmp_path, s3_url):
    urls = [_uploaded(tmp_path, s3_url, 1), _uploaded(tmp_path / "b", s3_url, 2, n_boot=1000)]
    with pytest.raises(SpecError, match="n_boot differ") as err:
        merge_runs(urls, tmp_path / "m")
    assert urls[0] in str(err.value) and urls[1] in str(err.value)


def test_staged_run_uploads_only_on_success(tmp_path, s3_url):
    target = StorePath(f"{s3_url}/staged")
    with pytest.raises(RuntimeError), staged_run(target) as local:
        RunDir.create(local.parent, local.name).write_meta({"run_id": "x"})
        raise RuntimeError("merge failed")
    assert not (target / "run.json").exists()
    with staged_run(target) as local:
        RunDir.create(local.parent, local.name).write_meta({"run_id": "x"})
    assert json.loads((target / "run.json").read_bytes()) == {"run_id": "x"}


def test_cli_merge_from_and_to_urls_with_the_report(tmp_path, s3_url, capsys):
    urls = [_uploaded(tmp_path, s3_url, k) for k in (1, 2, 3)]
    assert main(["merge", *urls, "--output", f"{s3_url}/cli-merged"]) == 0
    out = capsys.readouterr().out
    assert f"merged 12 cells from 3 runs into {s3_url}/cli-merged" in out
    assert f"report: {s3_url}/cli-merged/index.html" in out
    back = fetch_run(StorePath(f"{s3_url}/cli-merged"), tmp_path / "back")
    assert (back.path / "index.html").exists() and len(back.results()) == 12
    lost = SHARDS[1][0].id
    partial = [urls[0], _uploaded(tmp_path / "p", f"{s3_url}/p", 2, skip=(lost,)), urls[2]]
    assert main(["merge", *partial, "--output", f"{s3_url}/partial", "--no-report"]) == 1
    assert lost in capsys.readouterr().err


def test_file_urls_work_for_inputs_and_output(tmp_path):
    runs = [f"file://{_shard_run(tmp_path / 'jobs', k)}" for k in (1, 2, 3)]
    merged = merge_runs(runs, f"file://{tmp_path}/out/merged")
    assert merged.path == tmp_path / "out" / "merged" and len(merged.results) == 12
    assert (tmp_path / "out" / "latest").resolve() == merged.path.resolve()
    assert json.loads((merged.path / "run.json").read_text())["merged_from"] == [
        str(tmp_path / "jobs" / f"shard{k}") for k in (1, 2, 3)]


@pytest.mark.slow
@pytest.mark.real_data
def test_a_benchmark_run_with_url_cache_and_reports_dirs(pytester, data_dir, s3_url, tmp_path):
    """Embeddings cached in the bucket, the run staged locally and uploaded with run.json last."""
    cell_test = (Path(__file__).resolve().parents[2] / "benchmarks" / "test_matrix.py").read_text()
    pytester.makepyfile(test_cells=cell_test)
    result = pytester.runpytest(
        "-p", "no:randomly", f"--ecgfm-data-dir={data_dir}", f"--ecgfm-cache-dir={s3_url}/cache",
        f"--ecgfm-weights-dir={tmp_path / 'weights'}", f"--ecgfm-reports-dir={s3_url}/runs",
        "--ecgfm-models=random_cnn", "--ecgfm-tasks=ludb_sex", "--ecgfm-scarcity=frac100", "--ecgfm-seeds=2",
        "--ecgfm-n-boot=50", "--ecgfm-run-id=ci-run")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*uploaded: {s3_url}/runs/ci-run*"])
    staged = pytester.path / "reports" / "ci-run"  # the local staging copy, as without a URL
    back = fetch_run(StorePath(f"{s3_url}/runs/ci-run"), tmp_path / "back")
    assert _files(back.path) == _files(staged)
    assert [r.cell_id for r in back.results()] == ["random_cnn-ludb_sex-frac100"]
    assert json.loads((back.path / "run.json").read_text())["run_id"] == "ci-run"
    cache = StorePath(f"{s3_url}/cache")
    cache.fs.invalidate_cache()
    manifests = [k for k in cache.fs.find(cache.path) if k.endswith("/manifest.json")]
    assert len(manifests) == 1, manifests  # random_cnn × LUDB: one entry, committed
