"""``ecgfm-suite merge``: shard runs → one run; incomparable runs, duplicates and missing cells are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.analysis.registry import ANALYSES
from ecgfm_suite.cli import main
from ecgfm_suite.engine.shard import assign_shards, shard_digest
from ecgfm_suite.errors import DataError, SpecError
from ecgfm_suite.results import RunDir
from ecgfm_suite.results.merge import merge_runs
from ecgfm_suite.results.meta import RunMeta
from ecgfm_suite.results.synthetic import synthetic_matrix, synthetic_result

CELLS = synthetic_matrix(3, 2, 2)  # 12 cells
SHARDS = assign_shards(CELLS, 3, lambda c: 1.0)


def _shard_run(root: Path, k: int, *, skip: tuple[str, ...] = (), seeds=(0, 1), n_boot=100, versions=None,
               suite=None, digest: str | None = None, extra_cells=()) -> Path:
    run = RunDir.create(root, f"shard{k}")
    rng = np.random.default_rng(k)
    ran = [c for c in SHARDS[k - 1] if c.id not in skip] + list(extra_cells)
    for cell in ran:
        run.append(synthetic_result(cell, seeds, rng, dataset_versions=versions, suite_version=suite))
        run.save_scores(cell.id, keys=np.array(["a", "b"]), y_test=np.array([0, 1]), scores=np.ones((2, 2)))
        run.append_outcome({"cell_id": cell.id, "outcome": "passed", "reason": None, "worker": f"shard{k}"})
    for cell_id in skip:
        run.append_outcome({"cell_id": cell_id, "outcome": "skipped", "reason": f"skipped in shard {k}"})
    (run.path / "gate.json").write_text(json.dumps({"cells": {c.id: {"status": "pass"} for c in ran},
                                                    "errors": {}, "written": [f"m{k}.yml"], "update": None}))
    run.write_meta({"run_id": f"shard{k}", "seeds": list(seeds), "probes": ["linear"], "n_boot": n_boot,
                    "exitstatus": 0, "shard": {"index": k, "count": 3, "split_sha256": digest or shard_digest(SHARDS),
                                               "cells": [c.id for c in SHARDS[k - 1]]}})
    return run.path


def test_merging_all_shards_gives_the_whole_matrix(tmp_path):
    runs = [_shard_run(tmp_path / "jobs", k) for k in (1, 2, 3)]
    merged = merge_runs(runs, tmp_path / "out" / "merged")
    assert sorted(r.cell_id for r in merged.results) == sorted(c.id for c in CELLS) and merged.missing == ()
    out = RunDir.open(tmp_path / "out" / "merged")
    originals = {r.cell_id: r for p in runs for r in RunDir.open(p).results()}
    assert {r.cell_id: r for r in out.results()} == originals  # every result unchanged
    meta = json.loads((out.path / "run.json").read_text())
    assert meta["cells"] == 12 and meta["seeds"] == [0, 1] and meta["merged_from"] == [str(p) for p in runs]
    assert len((out.path / "results.csv").read_text().splitlines()) == 13
    assert sorted(p.stem for p in (out.path / "cells").glob("*.npz")) == sorted(c.id for c in CELLS)
    assert out.load_scores(CELLS[0].id)["keys"].tolist() == ["a", "b"]
    gate = json.loads((out.path / "gate.json").read_text())
    assert len(gate["cells"]) == 12 and sorted(gate["written"]) == ["m1.yml", "m2.yml", "m3.yml"]
    assert (tmp_path / "out" / "latest").resolve() == out.path.resolve()
    outcomes = out.outcomes()  # every shard's test outcomes, so the merged report shows passed/skipped
    assert sorted(outcomes) == sorted(c.id for c in CELLS)
    assert {o["worker"] for o in outcomes.values()} == {"shard1", "shard2", "shard3"}
    with pytest.raises(SpecError, match="already holds a run"):
        merge_runs(runs, out.path)


def test_missing_cells_are_named(tmp_path):
    lost = SHARDS[1][0].id
    runs = [_shard_run(tmp_path, 1), _shard_run(tmp_path, 2, skip=(lost,)), _shard_run(tmp_path, 3)]
    merged = merge_runs(runs, tmp_path / "m")
    assert merged.missing == (lost,)
    assert json.loads((merged.path / "run.json").read_text())["missing"] == [lost]
    assert RunDir.open(merged.path).outcomes()[lost]["reason"] == "skipped in shard 2"
    with pytest.raises(SpecError, match=r"shard run\(s\) 2/3 not given"):
        merge_runs([runs[0], runs[2]], tmp_path / "m2")
    planned = merge_runs(runs[:1], tmp_path / "m3", plan=[c.id for c in SHARDS[0]] + ["x-y-frac1"])
    assert planned.missing == ("x-y-frac1",)


def test_duplicated_cells_are_named(tmp_path):
    twice = SHARDS[0][0]
    runs = [_shard_run(tmp_path, 1), _shard_run(tmp_path, 2, extra_cells=(twice,)), _shard_run(tmp_path, 3)]
    with pytest.raises(SpecError, match=f"1 cell\\(s\\) appear in several runs.*shard1.*shard2.*: {twice.id}$"):
        merge_runs(runs, tmp_path / "m")
    assert not (tmp_path / "m" / "results.jsonl").exists()


@pytest.mark.parametrize(("change", "needle"), [
    ({"seeds": (0, 1, 2)}, "seeds differ"),
    ({"n_boot": 1000}, "n_boot differ"),
    ({"versions": {"ludb": "v2"}}, "dataset versions of ludb differ"),
    ({"suite": "9.9.9"}, "suite versions differ"),
    ({"digest": "f" * 64}, "shard splits"),
])
def test_incomparable_runs_are_refused_naming_both(tmp_path, change, needle):
    runs = [_shard_run(tmp_path, 1), _shard_run(tmp_path, 2, **change), _shard_run(tmp_path, 3)]
    with pytest.raises(SpecError, match=needle) as err:
        merge_runs(runs, tmp_path / "m")
    assert "shard1" in str(err.value) and "shard2" in str(err.value)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(DataError, match="results.jsonl is missing"):
        merge_runs([tmp_path], tmp_path / "m")


def test_cli_merge_prints_leaderboard_and_writes_the_report(tmp_path, capsys):
    runs = [str(_shard_run(tmp_path, k)) for k in (1, 2, 3)]
    assert main(["merge", *runs, "--output", str(tmp_path / "merged")]) == 0
    out = capsys.readouterr().out
    assert "task000" in out and "model002" in out and "merged 12 cells from 3 runs" in out
    assert (tmp_path / "merged" / "index.html").exists()
    partial = [str(_shard_run(tmp_path / "p", 1, skip=(SHARDS[0][0].id,))), *runs[1:]]
    assert main(["merge", *partial, "--output", str(tmp_path / "m2"), "--no-report"]) == 1
    assert SHARDS[0][0].id in capsys.readouterr().err
    assert main(["merge", *partial, "--output", str(tmp_path / "m3"), "--no-report", "--allow-missing"]) == 0
    assert main(["merge", runs[0], runs[0], "--output", str(tmp_path / "m4")]) == 2  # duplicates: usage error


def _payloads(run: Path) -> dict[str, object]:
    """Every stored analysis (without what measures the machine: timings, memory, throughput) and every cell's
    computed fields."""
    out: dict[str, object] = {}
    for path in sorted((run / "analysis").rglob("*.json")):
        if path.parent.name == "plan":
            continue
        payload = json.loads(path.read_text())
        kind = path.parent.name
        out[str(path.relative_to(run))] = ANALYSES.get(kind).reproducible(payload) if kind in ANALYSES else payload
    for line in (run / "results.jsonl").read_text().splitlines():
        cell = json.loads(line)
        out[cell["cell_id"]] = {k: cell[k] for k in ("metrics", "probe_params", "n_train", "n_test", "classes")}
    return out


@pytest.mark.slow
def test_shard_runs_merged_give_the_unsharded_run(pytester, synthetic_data_dir, tmp_path):
    """Two shard jobs (cells and their pairs' analyses) joined by `ecgfm-suite merge` (which runs the analyses
    across models) store the same results and analyses as one unsharded run."""
    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    pytester.makepyfile(test_cells=(bench / "test_matrix.py").read_text(),
                        test_representation=(bench / "test_representation.py").read_text())
    base = ["-p", "no:randomly", f"--ecgfm-data-dir={synthetic_data_dir}", f"--ecgfm-cache-dir={tmp_path / 'cache'}",
            f"--ecgfm-weights-dir={tmp_path / 'w'}", f"--ecgfm-reports-dir={tmp_path / 'runs'}",
            "--ecgfm-models=random_cnn,handcrafted", "--ecgfm-tasks=ludb_sex,ludb_lvh",
            "--ecgfm-scarcity=frac10,frac100", "--ecgfm-seeds=2", "--ecgfm-n-boot=50"]
    for k in (1, 2):
        shard = pytester.runpytest(*base, f"--ecgfm-shard={k}/2", f"--ecgfm-run-id=shard{k}")
        assert shard.ret == 0, shard.stdout.str()[-2000:]
        shard.stdout.fnmatch_lines(["*per-task analyses*run when `ecgfm-suite merge` joins the shard runs*"])
        assert not (tmp_path / "runs" / f"shard{k}" / "analysis" / "cka").exists()
    whole = pytester.runpytest(*base, "--ecgfm-run-id=whole")
    assert whole.ret == 0, whole.stdout.str()[-2000:]
    runs = tmp_path / "runs"
    assert main(["merge", str(runs / "shard1"), str(runs / "shard2"), "--output", str(runs / "merged")]) == 0
    merged, unsharded = _payloads(runs / "merged"), _payloads(runs / "whole")
    assert any(key.startswith("analysis/cka/") for key in merged) and len(merged) > 30
    assert merged == unsharded
    assert RunMeta.read(runs / "merged").task_analyses == "merge"
    assert RunMeta.read(runs / "shard1").task_analyses == "deferred"
