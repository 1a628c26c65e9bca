"""``--ecgfm-thresholds`` / ``ECGFM_THRESHOLDS`` / ``ecgfm_thresholds`` and ``compare --thresholds``: a named
file must exist, the default one may be absent with a warning that names it."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from ecgfm_suite import cli
from ecgfm_suite.engine.settings import resolve
from ecgfm_suite.errors import SpecError
from ecgfm_suite.gate.thresholds import ThresholdsWarning, thresholds_file

REPO = Path(__file__).resolve().parents[2]
DEFAULT = Path("benchmarks/thresholds.yml")


def test_the_option_defaults_to_the_committed_file_below_the_rootdir():
    assert resolve(env={}).thresholds == DEFAULT
    assert resolve(env={"ECGFM_THRESHOLDS": "~/t.yml"}).thresholds == Path("~/t.yml").expanduser()
    assert resolve(cli={"thresholds": "/a.yml"}, env={"ECGFM_THRESHOLDS": "/b.yml"}).thresholds == Path("/a.yml")
    assert resolve(ini={"thresholds": "ci/t.yml"}, env={}).thresholds == Path("ci/t.yml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the repo's own default exists: no warning
        assert thresholds_file(DEFAULT, root=REPO, named_by=None) == REPO / DEFAULT


def test_a_named_file_that_is_absent_is_one_line_naming_it(tmp_path):
    with pytest.raises(SpecError) as exc:
        thresholds_file(Path("ci/thresholds.yml"), root=tmp_path, named_by="ECGFM_THRESHOLDS")
    assert str(exc.value) == (f"{tmp_path / 'ci' / 'thresholds.yml'}: the thresholds file named by ECGFM_THRESHOLDS "
                              "does not exist")
    with pytest.raises(SpecError, match="named by --ecgfm-thresholds is not a file"):
        thresholds_file(tmp_path, root=tmp_path, named_by="--ecgfm-thresholds")


def test_the_default_absent_warns_that_floors_are_off(tmp_path):
    with pytest.warns(ThresholdsWarning) as caught:
        path = thresholds_file(DEFAULT, root=tmp_path, named_by=None)
    assert path == tmp_path / DEFAULT
    message = str(caught[0].message)
    assert message.startswith(f"{tmp_path / DEFAULT} not found: no metric floors apply") and "\n" not in message


def test_named_relative_and_absolute_paths(tmp_path):
    (tmp_path / "t.yml").write_text("schema_version: 1\n")
    assert thresholds_file(Path("t.yml"), root=tmp_path, named_by="ecgfm_thresholds") == tmp_path / "t.yml"
    assert thresholds_file(tmp_path / "t.yml", root=REPO, named_by="ecgfm_thresholds") == tmp_path / "t.yml"


@pytest.fixture
def compared(monkeypatch, tmp_path) -> list[Path]:
    """The thresholds file ``ecgfm-suite compare`` hands on (the comparison itself is tested in test_gate)."""
    seen: list[Path] = []

    def fake(run_a: Path, run_b: Path, thresholds: Path) -> SimpleNamespace:
        seen.append(thresholds)
        return SimpleNamespace(failed=False, table=lambda: "table")

    monkeypatch.setattr("ecgfm_suite.gate.compare.compare_paths", fake)
    monkeypatch.setattr(cli, "ROOT", tmp_path / "checkout")
    monkeypatch.delenv("ECGFM_THRESHOLDS", raising=False)
    return seen


def test_compare_defaults_to_the_checkouts_file_and_warns_when_it_is_absent(compared, tmp_path, capsys):
    assert cli.main(["compare", "a", "b"]) == 0
    assert compared == [tmp_path / "checkout" / DEFAULT]
    err = capsys.readouterr().err
    assert err.startswith("ecgfm-suite: warning: ") and err.count("\n") == 1 and str(compared[0]) in err


def test_compare_thresholds_flag_is_relative_to_the_working_directory(compared, tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.yml").write_text("schema_version: 1\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["compare", "a", "b", "--thresholds", "mine.yml"]) == 0
    assert compared == [tmp_path / "mine.yml"] and capsys.readouterr().err == ""
    assert cli.main(["compare", "a", "b", "--thresholds", "typo.yml"]) == 2
    assert capsys.readouterr().err == (f"ecgfm-suite: error: {tmp_path / 'typo.yml'}: the thresholds file named by "
                                       "--thresholds does not exist\n")
    assert len(compared) == 1


def test_compare_reads_ecgfm_thresholds_below_the_checkout(compared, tmp_path, monkeypatch, capsys):
    (tmp_path / "checkout" / "ci").mkdir(parents=True)
    (tmp_path / "checkout" / "ci" / "t.yml").write_text("schema_version: 1\n")
    monkeypatch.setenv("ECGFM_THRESHOLDS", "ci/t.yml")
    assert cli.main(["compare", "a", "b"]) == 0
    assert compared == [tmp_path / "checkout" / "ci" / "t.yml"]
    monkeypatch.setenv("ECGFM_THRESHOLDS", "ci/typo.yml")
    assert cli.main(["compare", "a", "b"]) == 2
    assert "ci/typo.yml: the thresholds file named by ECGFM_THRESHOLDS does not exist" in capsys.readouterr().err
