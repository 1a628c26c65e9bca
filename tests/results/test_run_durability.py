"""results.jsonl stays whole lines through a full disk and a crash (issue 17, case 8): an append is a whole line
or nothing, and a torn last line left by a power loss is skipped by every reader with a warning naming the
file and line, so merge and compare still read the run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from ecgfm_suite.errors import DataError, EcgfmWarning
from ecgfm_suite.results import RunDir
from ecgfm_suite.results.merge import merge_runs
from ecgfm_suite.results.synthetic import synthetic_matrix, synthetic_result
from tests.test_io_and_registry import (
    needs_proc_fd,
    needs_rlimit,
    record_syncs,
    run_on_a_full_disk,
)

CELLS = synthetic_matrix(1, 2, 2)


def _run(tmp_path: Path, n: int = 3, *, name: str = "run1", first: int = 0) -> RunDir:
    """A run of cells ``CELLS[first:first + n]``, each with its result and test outcome."""
    run = RunDir.create(tmp_path / "reports", name)
    rng = np.random.default_rng(first)
    for cell in CELLS[first:first + n]:
        run.append(synthetic_result(cell, (0, 1), rng))
        run.append_outcome({"cell_id": cell.id, "outcome": "passed"})
    return run


def _tear_last_line(path: Path) -> int:
    """Cut the last line in half, as a power loss mid-append does; returns its line number."""
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    return len(lines)


@needs_rlimit
def test_a_full_disk_mid_append_leaves_the_file_whole_and_names_it(tmp_path):
    run = _run(tmp_path, n=2)
    before = run.results_path.read_bytes()
    child = run_on_a_full_disk(f"""
        import numpy as np
        from ecgfm_suite.results import RunDir
        from ecgfm_suite.results.synthetic import synthetic_matrix, synthetic_result
        result = synthetic_result(synthetic_matrix(1, 1, 3)[2], (0, 1), np.random.default_rng(0))
        disk_full_after({len(before) + 100})
        try:
            RunDir({str(run.path)!r}).append(result)
        except OSError as exc:
            print(exc)
    """)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == (f"[Errno 27] cannot append a line (File too large); the file is as it was: "
                                    f"'{run.results_path}'")
    assert run.results_path.read_bytes() == before
    assert [r.cell_id for r in run.results()] == [c.id for c in CELLS[:2]]


def test_readers_skip_a_torn_last_line_with_a_warning_naming_file_and_line(tmp_path):
    run = _run(tmp_path)
    for path, read in ((run.results_path, run.results), (run.outcomes_path, run.outcomes)):
        line = _tear_last_line(path)
        with pytest.warns(EcgfmWarning, match=f"^{re.escape(str(path))}: skipped line {line}, torn"):
            got = read()
        assert sorted(r.cell_id if hasattr(r, "cell_id") else r for r in got) == sorted(c.id for c in CELLS[:2])


def test_a_bad_line_before_the_last_is_an_error_naming_file_and_line(tmp_path):
    run = _run(tmp_path)
    lines = run.results_path.read_text().splitlines(keepends=True)
    run.results_path.write_text(lines[0] + "{oops\n" + "".join(lines[1:]))
    with pytest.raises(DataError, match=f"^{re.escape(str(run.results_path))}: line 2 is not JSON"):
        run.results()
    run.results_path.write_text(lines[0] + '{"schema_version": 1}\n')  # JSON, but not a result
    with pytest.raises(DataError, match=f"^{re.escape(str(run.results_path))}: line 2 is not a cell result"):
        run.results()


def test_the_next_append_cuts_off_a_torn_line_so_the_run_stays_readable(tmp_path):
    """Another worker appending after a crash would otherwise glue its line to the torn one (a bad middle line)."""
    run = _run(tmp_path, n=2)
    _tear_last_line(run.results_path)
    with pytest.warns(EcgfmWarning, match=f"^{re.escape(str(run.results_path))}: cut off a torn last line"):
        run.append(synthetic_result(CELLS[2], (0, 1), np.random.default_rng(1)))
    assert [r.cell_id for r in run.results()] == [CELLS[0].id, CELLS[2].id]


def test_merge_and_compare_read_a_run_whose_last_line_is_torn(tmp_path):
    from ecgfm_suite.gate.compare import load_entries

    whole, torn = _run(tmp_path, 2, name="a"), _run(tmp_path, 2, name="b", first=2)
    lost = json.loads(torn.results_path.read_text().splitlines()[-1])["cell_id"]
    _tear_last_line(torn.results_path)
    with pytest.warns(EcgfmWarning, match=f"^{re.escape(str(torn.results_path))}: skipped line 2, torn"):
        merged = merge_runs([whole.path, torn.path], tmp_path / "out" / "merged", plan=[c.id for c in CELLS])
    assert merged.missing == (lost,)  # named as missing; every other cell merged
    assert sorted(r.cell_id for r in merged.results) == sorted(c.id for c in CELLS if c.id != lost)
    with pytest.warns(EcgfmWarning, match="skipped line 2, torn"):
        entries = load_entries(torn.path)
    assert list(entries) == [CELLS[2].id]


@needs_proc_fd
def test_run_files_and_the_latest_link_are_fsynced_with_their_folder(tmp_path, monkeypatch):
    run = _run(tmp_path, n=1)
    events = record_syncs(monkeypatch)
    run.append(synthetic_result(CELLS[1], (0, 1), np.random.default_rng(1)))
    assert events == [("fsync", str(run.results_path.resolve()))]
    events.clear()
    run.write_meta({"run_id": "run1"})
    run.link_latest()
    folder, parent = str(run.path.resolve()), str(run.path.parent.resolve())
    assert events[1:] == [("replace", os.path.join(folder, "run.json")), ("fsync", folder),
                          ("replace", os.path.join(parent, "latest")), ("fsync", parent)]
