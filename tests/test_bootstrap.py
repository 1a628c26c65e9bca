"""The first-use set-up of ``python3 -m ecgfm_suite``: which extras each command installs and when the venv
is reinstalled. A fake shell stands in for venv and pip: nothing is installed."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from ecgfm_suite import _bootstrap
from ecgfm_suite._bootstrap import (
    CPU_TORCH,
    STAMP_NAME,
    Stamp,
    ensure_venv,
    extras_for,
    install_target,
    pyproject_digest,
    venv_python,
)


class FakeShell:
    """Records every command; ``-m venv`` creates the venv's python, installing torch makes it importable."""

    def __init__(self, *, torch: bool = False, fail: str | None = None) -> None:
        self.torch = torch
        self.fail = fail  # an install whose last argument contains this exits 1
        self.calls: list[list[str]] = []

    def __call__(self, cmd: Sequence[str], quiet: bool) -> int:
        cmd = [str(c) for c in cmd]
        self.calls.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            python = venv_python(Path(cmd[3]))
            python.parent.mkdir(parents=True)
            python.touch()
        elif cmd[1:3] == ["-c", "import torch"]:
            assert quiet  # a probe, not an install step: its error output is not the user's concern
            return 0 if self.torch else 1
        elif "install" in cmd:
            if self.fail and self.fail in cmd[-1]:
                return 1
            self.torch = self.torch or cmd[-1].startswith("torch")
        return 0

    def installs(self) -> list[str]:
        """What each ``pip install`` installed (its last argument), in order; then forgets the calls."""
        out = [c[-1] for c in self.calls if "install" in c]
        self.calls.clear()
        return out


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "ecgfm-suite"\n')
    monkeypatch.setattr(_bootstrap.shutil, "which", lambda name: None)  # no NVIDIA driver
    return tmp_path


def _stamp(root: Path) -> Stamp | None:
    return Stamp.read(root / ".venv" / STAMP_NAME)


def test_commands_map_to_extras_and_targets():
    assert extras_for(["run", "-k", "x"]) == frozenset() and extras_for([]) == frozenset()
    assert extras_for(["test"]) == extras_for(["bench"]) == frozenset({"test"})
    assert extras_for(["compare", "a", "b"]) == frozenset()
    assert install_target(Path("/repo"), []) == "/repo"
    assert install_target(Path("/repo"), {"test", "s3"}) == "/repo[s3,test]"


def test_run_installs_cpu_torch_then_the_core_once(checkout):
    shell = FakeShell()
    python = ensure_venv(extras_for(["run"]), root=checkout, call=shell)
    assert python == venv_python(checkout / ".venv") and python.exists()
    assert shell.calls[0][1:] == ["-m", "venv", str(checkout / ".venv")]
    install = next(c for c in shell.calls if c[-1] == str(checkout))
    assert install[-2] == "-e"  # editable: the checkout's edits take effect without a reinstall
    assert shell.installs() == [CPU_TORCH, str(checkout)]
    assert _stamp(checkout) == Stamp(pyproject_digest(checkout), frozenset())
    ensure_venv(extras_for(["run"]), root=checkout, call=shell)
    assert shell.calls == []  # set up: starts at once


def test_test_after_run_adds_the_extra_and_run_after_test_reinstalls_nothing(checkout):
    shell = FakeShell()
    ensure_venv(extras_for(["run"]), root=checkout, call=shell)
    shell.installs()
    ensure_venv(extras_for(["test"]), root=checkout, call=shell)
    assert shell.installs() == [f"{checkout}[test]"]  # torch is there already
    assert _stamp(checkout).extras == {"test"}
    for command in ("run", "bench", "test", "models"):
        ensure_venv(extras_for([command]), root=checkout, call=shell)
    assert shell.calls == []


def test_test_first_installs_the_extra_and_run_then_reinstalls_nothing(checkout):
    shell = FakeShell()
    ensure_venv(extras_for(["test"]), root=checkout, call=shell)
    assert shell.installs() == [CPU_TORCH, f"{checkout}[test]"]
    ensure_venv(extras_for(["run"]), root=checkout, call=shell)
    assert shell.calls == []


def test_a_changed_pyproject_reinstalls_keeping_the_venvs_extras(checkout):
    shell = FakeShell()
    ensure_venv(extras_for(["test"]), root=checkout, call=shell)
    shell.installs()
    (checkout / "pyproject.toml").write_text('[project]\nname = "ecgfm-suite"\nversion = "2"\n')
    ensure_venv(extras_for(["run"]), root=checkout, call=shell)
    assert shell.installs() == [f"{checkout}[test]"]  # the extra's own requirements may have changed too
    assert _stamp(checkout) == Stamp(pyproject_digest(checkout), frozenset({"test"}))


def test_a_bare_digest_stamp_of_an_older_bootstrap_counts_as_no_extras(checkout):
    shell = FakeShell(torch=True)
    ensure_venv((), root=checkout, call=shell)
    (checkout / ".venv" / STAMP_NAME).write_text(pyproject_digest(checkout) + "\n")
    shell.installs()
    ensure_venv((), root=checkout, call=shell)
    assert shell.calls == []
    ensure_venv({"test"}, root=checkout, call=shell)
    assert shell.installs() == [f"{checkout}[test]"]


def test_a_stamp_without_its_python_is_a_fresh_set_up(checkout):
    (checkout / ".venv").mkdir()
    (checkout / ".venv" / STAMP_NAME).write_text(Stamp(pyproject_digest(checkout), frozenset({"test"})).dumps())
    shell = FakeShell()
    ensure_venv((), root=checkout, call=shell)
    assert shell.installs() == [CPU_TORCH, str(checkout)]  # a left-over stamp does not stand for a venv


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"extras": ["test"]}'])
def test_unreadable_stamps_never_match(tmp_path, text):
    path = tmp_path / STAMP_NAME
    assert Stamp.read(path) is None
    path.write_text(text)
    stamp = Stamp.read(path)
    assert stamp is not None and not stamp.covers("abc", ())


def test_a_failed_install_stops_with_one_line_and_leaves_no_stamp(checkout):
    shell = FakeShell(fail=str(checkout))
    with pytest.raises(SystemExit) as exc:
        ensure_venv({"test"}, root=checkout, call=shell)
    message = str(exc.value)
    assert "\n" not in message and f"{checkout}[test] exited 1" in message and "setting up" in message
    assert _stamp(checkout) is None


def test_with_an_nvidia_driver_pip_picks_the_cuda_build(checkout, monkeypatch):
    monkeypatch.setattr(_bootstrap.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    shell = FakeShell()
    ensure_venv((), root=checkout, call=shell)
    assert shell.installs()[0] == "torch"


def test_main_sets_up_the_commands_extras_even_inside_the_venv(monkeypatch):
    seen: list[object] = []
    monkeypatch.setattr(_bootstrap, "ensure_venv", lambda extras: seen.append(set(extras)) or Path("python"))
    monkeypatch.setattr(sys, "prefix", str(_bootstrap.VENV))
    monkeypatch.setattr("ecgfm_suite.cli.main", lambda argv: seen.append(argv) or 0)
    assert _bootstrap.main(["test", "-k", "x"]) == 0
    assert seen == [{"test"}, ["test", "-k", "x"]]


def test_main_of_an_installed_package_runs_the_cli_without_a_venv(tmp_path, monkeypatch):
    monkeypatch.setattr(_bootstrap, "ROOT", tmp_path)  # site-packages: no pyproject.toml beside the package
    monkeypatch.setattr(_bootstrap, "ensure_venv", lambda extras: pytest.fail("no venv for an installed package"))
    monkeypatch.setattr("ecgfm_suite.cli.main", lambda argv: 7)
    assert _bootstrap.main(["run"]) == 7
