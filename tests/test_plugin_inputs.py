"""Wrong inputs through pytest (issue 17): what the user named must exist and make sense, or pytest stops with a
one-line usage error naming it, instead of skipping every cell and exiting 0 or writing a wrong answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.layouts import write_ludb

CELL_TEST = (Path(__file__).resolve().parents[1] / "benchmarks" / "test_matrix.py").read_text()
#: a cell that the old code skipped (absent checkpoint or data) and exited 0 on
CELL = ("--ecgfm-tasks=ludb_sex", "--ecgfm-scarcity=frac100", "--ecgfm-seeds=1", "--ecgfm-n-boot=20")


@pytest.fixture
def bench(pytester: pytest.Pytester, synthetic_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    pytester.makepyfile(test_cells=CELL_TEST)
    cache = tmp_path_factory.mktemp("cache")

    def common(*args: str, data: Path = synthetic_data_dir) -> list[str]:
        return ["-p", "no:randomly", f"--ecgfm-data-dir={data}", f"--ecgfm-cache-dir={cache}",
                f"--ecgfm-weights-dir={pytester.path / 'weights'}", f"--ecgfm-reports-dir={pytester.path / 'reports'}",
                *args]

    pytester.common = common  # type: ignore[attr-defined]
    return pytester


def _usage_error(result: pytest.RunResult, *needles: str) -> str:
    """The one line pytest printed for our usage error (no traceback), holding every needle."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    lines = [line for line in result.stderr.lines if "ecgfm-suite:" in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr.str(), result.stderr.str()
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("where", ["flag", "env", "ini"])
def test_a_named_checkpoint_that_is_not_there_is_a_usage_error(bench, monkeypatch, where):
    """Before: the model's cells skipped and pytest exited 0, so CI gating a checkpoint with a typo was green."""
    typo = bench.path / "typo.pt"
    args = bench.common("--ecgfm-models=ecg_fm", *CELL)
    if where == "flag":
        args.append(f"--ecgfm-checkpoint=ecg_fm={typo}")
    elif where == "env":
        monkeypatch.setenv("ECGFM_CHECKPOINT", f"ecg_fm={typo}")
    else:
        bench.makeini(f"[pytest]\necgfm_checkpoints = ecg_fm={typo}\n")
    source = {"flag": "--ecgfm-checkpoint", "env": "ECGFM_CHECKPOINT", "ini": "ecgfm_checkpoints"}[where]
    _usage_error(bench.runpytest(*args), f"{typo}: checkpoint of ecg_fm named by {source} does not exist")
    # with random init allowed too: the path the user typed means that file
    _usage_error(bench.runpytest(*args, "--ecgfm-allow-random-init"), str(typo), "does not exist")


def test_a_model_file_checkpoint_that_cannot_load_is_a_usage_error(bench):
    (bench.path / "ckpt").mkdir()
    bench.makefile(".yml", mine="id: my_merl\nfamily: merl\ncheckpoint: ckpt\n")
    result = bench.runpytest(*bench.common(f"--ecgfm-model-file={bench.path / 'mine.yml'}", "--ecgfm-models=my_merl",
                                           *CELL))
    _usage_error(result, "mine.yml", f"checkpoint {bench.path / 'ckpt'} is a directory")


@pytest.mark.slow
def test_random_init_is_allowed_only_for_an_absent_default_checkpoint_and_is_printed(bench):
    args = bench.common("-rs", "--ecgfm-models=ecgfm_ked", "--ecgfm-run-id=r", *CELL)
    skipped = bench.runpytest(*args)
    skipped.assert_outcomes(skipped=1)  # the documented behaviour: skipped, naming the expected path
    skipped.stdout.fnmatch_lines([f"*no checkpoint for ecgfm_ked: expected {bench.path / 'weights'}/ecgfm_ked/*"])
    ran = bench.runpytest(*args[:-1], "--ecgfm-run-id=random", "--ecgfm-allow-random-init")
    ran.assert_outcomes(passed=1)
    ran.stdout.fnmatch_lines(["*warnings summary*", "*ecgfm_ked: no checkpoint at *, running with RANDOM weights*"])
    (line,) = (bench.path / "reports" / "random" / "results.jsonl").read_text().splitlines()
    assert json.loads(line)["random_init"] is True


@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_named_data_dir_that_does_not_exist_is_a_usage_error(bench, monkeypatch, where):
    """Before: every cell skipped with 'no data' and pytest exited 0."""
    missing = bench.path / "no-such-data"
    if where == "flag":
        result = bench.runpytest(*bench.common("--ecgfm-models=random_cnn", *CELL, data=missing))
        source = "--ecgfm-data-dir"
    else:
        monkeypatch.setenv("ECGFM_DATA_DIR", str(missing))
        result = bench.runpytest(*[a for a in bench.common("--ecgfm-models=random_cnn", *CELL)
                                   if not a.startswith("--ecgfm-data-dir")])
        source = "ECGFM_DATA_DIR"
    _usage_error(result, f"{missing}: the data dir named by {source} does not exist")


def test_the_default_data_dir_absent_skips_naming_it(bench, monkeypatch):
    monkeypatch.delenv("ECGFM_DATA_DIR", raising=False)
    args = [a for a in bench.common("-rs", "--ecgfm-models=random_cnn", *CELL) if not a.startswith("--ecgfm-data-dir")]
    result = bench.runpytest(*args)  # pytester's HOME is its own folder: the default dir is not there
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*none of ludb found below {bench.path}/.cache/ecgfm-suite/data*"])


@pytest.fixture
def ludb_without_table(tmp_path: Path) -> Path:
    """A data dir holding LUDB's records and annotation files but not ludb.csv; returns the LUDB root."""
    root = write_ludb(tmp_path / "data" / "ludb").root
    for record in ("1", "2"):
        (root / "data" / f"{record}.avf").touch()  # LUDB's per-lead annotation files
    (root / "ludb.csv").unlink()
    return root


def test_a_dataset_without_its_label_table_names_the_file(bench, ludb_without_table):
    """Before: LUDB records without ludb.csv were not recognised, so its cells skipped as 'no data' (exit 0).
    Now the cell's skip names the missing table, and a run whose every cell skipped fails."""
    root = ludb_without_table
    result = bench.runpytest(*bench.common("-rs", "--ecgfm-models=random_cnn", *CELL, data=root.parent))
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*ecgfm-suite: FAILED: every selected cell (1) was skipped*ludb.csv is missing*"])
    result.stdout.fnmatch_lines(
        [f"SKIPPED*{root / 'ludb.csv'}: ludb has no records: its label table ludb.csv is missing"])


def test_planning_default_levels_on_a_dataset_without_its_label_table_skips_naming_it(bench, ludb_without_table):
    root = ludb_without_table
    args = [a for a in bench.common("-rs", "--ecgfm-models=random_cnn", *CELL, data=root.parent)
            if not a.startswith("--ecgfm-scarcity")]  # planning the task's default levels reads its labels
    result = bench.runpytest(*args)
    result.assert_outcomes(skipped=2)  # frac10 and frac100, planned without labels, skipped with the reason
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*its label table ludb.csv is missing*"])


@pytest.mark.parametrize("option, needle", [
    ("--ecgfm-seeds=1,1", "--ecgfm-seeds: seed 1 listed more than once"),
    ("--ecgfm-probes=linear,banana", "--ecgfm-probes: unknown probe 'banana' (known: knn, linear, mlp)"),
    ("--ecgfm-run-id=latest", "--ecgfm-run-id: 'latest' is the link to the newest run"),
    ("--ecgfm-run-id=../x", "--ecgfm-run-id: a run id is one folder name"),
    ("--ecgfm-run-id=/tmp/elsewhere", "--ecgfm-run-id: a run id is one folder name"),
])
def test_bad_values_are_refused_at_configure_time(bench, option, needle):
    """Before: the seed counted twice, the probe failed only when a cell ran, the run id wrote through the
    latest link or outside the reports dir. ``--collect-only``: nothing runs, the values are still checked."""
    _usage_error(bench.runpytest(*bench.common("--collect-only", "--ecgfm-models=random_cnn", *CELL, option)), needle)
    assert not (bench.path / "x").exists() and not (bench.path / "reports").exists()
