"""Faults end to end (issue 17): real benchmark runs in pytest subprocesses on the shared ECG data.

- a run killed with SIGKILL while it writes an embedding cache entry leaves no half entry, and the same command
  run again on that cache completes with the results of an uninterrupted run;
- two runs started together on one empty cache both complete, each (model, dataset) is encoded once, and their
  results equal each other's and a serial run's.

Each run is ``pytest`` on a copy of ``benchmarks/test_matrix.py`` with a conftest whose fault hooks are inert
unless their environment variable is set: one blocks the embedding cache's writer mid-entry (its data files
written into the entry's temp folder, its manifest not), so the kill lands there every time; one is a start
barrier, so the concurrent runs reach their cells together.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from ecgfm_suite.data.prepared import _load_entry
from ecgfm_suite.embeddings.cache import MANIFEST, EmbeddingCache
from ecgfm_suite.errors import CacheWarning

pytestmark = [pytest.mark.slow, pytest.mark.real_data]

CELL_TEST = (Path(__file__).resolve().parents[1] / "benchmarks" / "test_matrix.py").read_text()
MODELS = ("random_cnn", "handcrafted")
TASKS = ("ludb_sex", "ludb_lvh")
SLICE = (f"--ecgfm-models={','.join(MODELS)}", f"--ecgfm-tasks={','.join(TASKS)}", "--ecgfm-scarcity=frac100",
         "--ecgfm-seeds=2", "--ecgfm-n-boot=50",
         "--ecgfm-workers=1")  # a seed pool only adds its start-up to these small cells (its numbers are the same)
CELLS = sorted(f"{m}-{t}-frac100" for m in MODELS for t in TASKS)
#: what a cell computed (timings, environment and git commit describe where, not what)
COMPUTED = ("cell_id", "model", "task", "scarcity", "seeds", "probe", "probe_params", "n_train", "n_val", "n_test",
            "classes", "main_metric", "metrics", "other_probes", "exclusions", "dataset_versions", "task_version",
            "checkpoint_sha256")
TIMEOUT_S = 300

FAULT_CONFTEST = '''
"""Fault hooks of tests/test_faults.py, each inert unless its environment variable is set."""
import os
import time
from pathlib import Path


def pytest_configure(config):
    block_at = os.environ.get("ECGFM_FAULT_BLOCK_ENTRY")
    if not block_at:
        return
    from ecgfm_suite.embeddings import cache

    real, written = cache.write_durable, []

    def write_durable(path, write):
        digest = real(path, write)
        if Path(path).name == "ids.json":  # the entry's data files are in its temp folder, its manifest is not
            written.append(path)
            if len(written) == int(block_at):
                Path(os.environ["ECGFM_FAULT_SIGNAL"]).write_text(str(path))
                time.sleep(3600)  # until the test kills us
        return digest

    cache.write_durable = write_durable


def pytest_collection_finish(session):
    barrier = os.environ.get("ECGFM_FAULT_BARRIER")
    if not barrier:
        return
    Path(barrier, str(os.getpid())).touch()  # every run waits here until all have collected
    deadline = time.monotonic() + 120
    while len(list(Path(barrier).iterdir())) < int(os.environ["ECGFM_FAULT_BARRIER_N"]):
        if time.monotonic() > deadline:
            raise RuntimeError("the other runs never reached the barrier")
        time.sleep(0.02)
'''


def _env(**extra: str) -> dict[str, str]:
    """This environment without anything that would steer the child run (our own options, an outer xdist)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ECGFM_", "PYTEST_XDIST_", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST"))}
    return {**env, **extra}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("project")
    (path / "pytest.ini").write_text("[pytest]\n")
    (path / "test_cells.py").write_text(CELL_TEST)
    (path / "conftest.py").write_text(FAULT_CONFTEST)
    (path / "weights").mkdir()  # no checkpoints: the two controls need none
    return path


def _start(project: Path, data_dir: Path, cache: Path, reports: Path, run_id: str, **env: str) -> subprocess.Popen:
    """``pytest`` on the slice in its own process group (so a kill reaches every process of the run)."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
            f"--ecgfm-data-dir={data_dir}", f"--ecgfm-cache-dir={cache}", f"--ecgfm-weights-dir={project / 'weights'}",
            f"--ecgfm-reports-dir={reports}", f"--ecgfm-run-id={run_id}", *SLICE]
    log = open(reports.parent / f"{reports.name}-{run_id}.log", "wb")  # noqa: SIM115 - the child keeps its own copy
    try:
        return subprocess.Popen(args, cwd=project, env=_env(**env), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log.close()


def _output(reports: Path, run_id: str) -> str:
    return (reports.parent / f"{reports.name}-{run_id}.log").read_text(errors="replace")


def _finish(proc: subprocess.Popen, reports: Path, run_id: str) -> dict[str, tuple[dict, float]]:
    """Wait for a run; it must pass every cell. Returns what each cell computed and its encode time."""
    try:
        proc.wait(TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"run {run_id} took over {TIMEOUT_S} s:\n{_output(reports, run_id)[-3000:]}")
    out = _output(reports, run_id)
    assert proc.returncode == 0, out[-3000:]
    assert "CacheWarning" not in out, out[-3000:]  # nothing it found in the cache was damaged
    run = reports / run_id
    outcomes = [json.loads(line) for line in (run / "outcomes.jsonl").read_text().splitlines()]
    assert sorted(o["cell_id"] for o in outcomes) == CELLS and {o["outcome"] for o in outcomes} == {"passed"}
    assert json.loads((run / "run.json").read_text())["exitstatus"] == 0
    return _cells(run)


def _cells(run: Path) -> dict[str, tuple[dict, float]]:
    """cell id → (what it computed, its encode time); every line whole, each cell once."""
    lines = (run / "results.jsonl").read_text().splitlines()
    cells = {}
    for line in lines:
        d = json.loads(line)
        cells[d["cell_id"]] = ({k: d[k] for k in COMPUTED}, d["timings"]["encode_s"])
    assert len(cells) == len(lines)
    return cells


def _computed(cells: dict[str, tuple[dict, float]]) -> dict[str, dict]:
    return {cell: computed for cell, (computed, _) in cells.items()}


def _encoded(cells: dict[str, tuple[dict, float]]) -> list[str]:
    """The cells that encoded their dataset (the others read the embedding cache)."""
    return sorted(cell for cell, (_, encode_s) in cells.items() if encode_s > 0)


def _verified_cache(cache: Path) -> tuple[list[str], list[Path]]:
    """Every committed entry of the cache verifies (a CacheWarning is an error here, so nothing is deleted).
    Returns the embedding entries' models and the folders below the cache that are not committed entries."""
    models, stray = [], []
    embeddings = EmbeddingCache(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        for bucket in sorted((cache / "embeddings").iterdir()):
            for entry in sorted(p for p in bucket.iterdir() if p.is_dir()):
                if not (entry / MANIFEST).exists():
                    stray.append(entry)
                    continue
                loaded = embeddings.load(entry.name)
                assert loaded is not None and loaded.hit and len(loaded.keys) == loaded.X.shape[0] > 0, entry
                models.append(loaded.manifest["description"]["model"])
        prepared = [p for bucket in (cache / "prepared").iterdir() for p in bucket.iterdir() if p.is_dir()]
        for entry in prepared:
            if not (entry / "manifest.json").exists():
                stray.append(entry)
                continue
            assert len(_load_entry(entry, entry.name).keys) > 0, entry
    committed_prepared = [p for p in prepared if p not in stray]
    assert len(committed_prepared) == len(MODELS), committed_prepared  # one per model family's input, once
    return sorted(models), stray


@pytest.fixture(scope="module")
def serial(project: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, float]]:
    """An uninterrupted run alone on a fresh cache: the results every other run must reproduce."""
    tmp = tmp_path_factory.mktemp("serial")
    cells = _finish(_start(project, data_dir, tmp / "cache", tmp / "reports", "serial"), tmp / "reports", "serial")
    assert sorted(cells) == CELLS
    assert _encoded(cells) == [f"{m}-{TASKS[0]}-frac100" for m in sorted(MODELS)]  # one encode per model
    assert _verified_cache(tmp / "cache") == (sorted(MODELS), [])
    return cells


@pytest.mark.real_data
def test_kill_9_while_writing_a_cache_entry_then_rerun_gives_the_uninterrupted_results(
        project: Path, data_dir: Path, serial, tmp_path: Path):
    cache, reports, blocked = tmp_path / "cache", tmp_path / "reports", tmp_path / "blocked"
    # the second model's embedding entry: the first model's cells are done and its entry committed
    proc = _start(project, data_dir, cache, reports, "killed",
                  ECGFM_FAULT_BLOCK_ENTRY="2", ECGFM_FAULT_SIGNAL=str(blocked))
    deadline = time.monotonic() + TIMEOUT_S
    while not blocked.exists():
        assert proc.poll() is None, f"the run ended before the fault point:\n{_output(reports, 'killed')[-3000:]}"
        assert time.monotonic() < deadline, "the run never reached the fault point"
        time.sleep(0.05)
    half = Path(blocked.read_text()).parent  # the entry's temp folder: data files written, no manifest
    assert half.name.startswith(".") and (half / "emb.npy").exists() and not (half / MANIFEST).exists()
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    _gone(proc.pid)

    # what the killed run left: whole result lines of the cells it finished, its first model's entry whole
    killed = _cells(reports / "killed")
    assert sorted(killed) == [f"{MODELS[0]}-{t}-frac100" for t in sorted(TASKS)], killed
    assert _computed(killed) == {c: v for c, v in _computed(serial).items() if c in killed}
    assert not (reports / "killed" / "run.json").exists()
    models, stray = _verified_cache(cache)
    assert models == [MODELS[0]] and stray == [half]  # the half entry is only a dot-named temp folder

    # the same command again (a new run id, the same cache) completes with the uninterrupted run's results
    again = _finish(_start(project, data_dir, cache, reports, "again"), reports, "again")
    assert _computed(again) == _computed(serial)
    assert _encoded(again) == [f"{MODELS[1]}-{TASKS[0]}-frac100"]  # the killed run's committed entry was reused
    models, stray = _verified_cache(cache)
    assert models == sorted(MODELS)  # one entry per (model, dataset), each whole
    assert stray == []  # the killed writer's temp folder was swept by the next writer of that entry


def _gone(pgid: int, timeout: float = 30) -> None:
    """Every process of the killed run's group has exited (none left to finish a write after the kill)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"processes of group {pgid} still alive after SIGKILL"
        time.sleep(0.1)


@pytest.mark.real_data
def test_two_runs_started_together_on_one_empty_cache_equal_a_serial_run(
        project: Path, data_dir: Path, serial, tmp_path: Path):
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    env = {"ECGFM_FAULT_BARRIER": str(barrier), "ECGFM_FAULT_BARRIER_N": "2"}
    procs = {name: _start(project, data_dir, cache, tmp_path / f"reports-{name}", name, **env) for name in ("a", "b")}
    runs = {name: _finish(proc, tmp_path / f"reports-{name}", name) for name, proc in procs.items()}
    assert len(list(barrier.iterdir())) == 2  # both were running when the first cell started
    assert _computed(runs["a"]) == _computed(runs["b"]) == _computed(serial)
    # each (model, dataset) was encoded once, by one of the two runs; the other waited and read it
    encoded = _encoded(runs["a"]) + _encoded(runs["b"])
    assert sorted(c.split("-")[0] for c in encoded) == sorted(MODELS), encoded
    assert _verified_cache(cache) == (sorted(MODELS), [])  # one entry per (model, dataset), none corrupt
