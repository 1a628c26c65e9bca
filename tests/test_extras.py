"""Installable extras: pyproject.toml's split, the one-line error naming a missing extra at each call site,
and where the run/test/bench commands find the benchmarks of an installed (non-editable) package."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ecgfm_suite import cli
from ecgfm_suite.errors import SpecError
from ecgfm_suite.extras import (
    EXTRAS,
    MissingExtra,
    install_hint,
    require,
    require_for_url,
)

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
#: distributions that only an extra may bring: the core install runs the benchmark without them
EXTRA_ONLY = {"s3fs", "onnx", "onnxruntime", "pytest-html", "pytest-benchmark", "hypothesis", "moto", "ruff", "mypy"}


def _name(requirement: str) -> str:
    return requirement.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()


def _self_extras(requirements: list[str]) -> set[str]:
    """The extras an extra pulls in by naming ecgfm-suite itself (``ecgfm-suite[s3,onnx]``)."""
    return {e.strip() for r in requirements if _name(r) == "ecgfm-suite" for e in r[r.index("[") + 1:-1].split(",")}


def test_the_core_install_has_no_extra_only_dependency():
    assert {_name(r) for r in PROJECT["dependencies"]} & EXTRA_ONLY == set()
    assert "torch>=2.13" in PROJECT["dependencies"]


def test_extras_are_the_documented_ones_and_test_and_all_include_the_others():
    extras = PROJECT["optional-dependencies"]
    assert set(extras) == set(EXTRAS)
    assert _self_extras(extras["test"]) == set(EXTRAS) - {"test", "all"}
    assert _self_extras(extras["all"]) == set(EXTRAS) - {"all"}
    brought = {_name(r) for name in extras for r in extras[name]} - {"ecgfm-suite"}
    assert brought >= EXTRA_ONLY
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert all(f"ecgfm-suite[{name}]" in readme or f"`[{name}]`" in readme for name in EXTRAS)


def test_require_returns_the_module():
    assert require("json", "s3", "a test").dumps({}) == "{}"


def test_a_missing_module_is_one_line_naming_the_extra_and_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # makes `import s3fs` raise ImportError
    with pytest.raises(MissingExtra) as exc:
        require("s3fs", "s3", "an s3:// URL")
    message = str(exc.value)
    assert message == "an s3:// URL needs s3fs, which the 's3' extra installs: pip install 'ecgfm-suite[s3]'"
    assert isinstance(exc.value, SpecError)  # callers that catch configuration errors catch it


def test_a_submodule_of_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "moto", None)
    monkeypatch.delitem(sys.modules, "moto.server", raising=False)  # imported by an earlier test in this process
    with pytest.raises(MissingExtra, match=r"needs moto\.server, which the 'test' extra installs"):
        require("moto.server", "test", "the S3 test server")


def test_an_installed_module_failing_on_its_own_import_keeps_the_cause(tmp_path, monkeypatch):
    (tmp_path / "ecgfm_half_installed.py").write_text("import ecgfm_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtra) as exc:
        require("ecgfm_half_installed", "onnx", "an ONNX encoder")
    assert "\n" not in str(exc.value) and "ecgfm_absent_dependency" in str(exc.value)


def test_an_s3_url_without_s3fs_names_the_s3_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(MissingExtra, match=r"^an s3:// URL needs s3fs, .*'ecgfm-suite\[s3\]'$"):
        require_for_url("S3://bucket/cache")
    for url in ("memory://x", "gs://bucket/x", "/local/path", "file:///tmp/x"):
        require_for_url(url)  # no extra of ours brings these backends


def test_an_unknown_extra_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        install_hint("gpu")


def test_an_onnx_encoder_without_onnxruntime_names_the_onnx_extra(tmp_path, monkeypatch):
    from ecgfm_suite.models.catalog import MODELS
    from ecgfm_suite.models.exported import load_onnx
    from ecgfm_suite.models.spec import ModelSpec

    spec = ModelSpec(id="user_onnx", family="onnx", loader="ecgfm_suite.models.exported:load_onnx", embed_dim=4,
                     input_spec=MODELS.get("random_cnn").input_spec, control=False, default=False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtra, match=r"^an ONNX encoder needs onnxruntime, .*'ecgfm-suite\[onnx\]'$"):
        load_onnx(spec, tmp_path / "encoder.onnx")


@pytest.mark.parametrize(("command", "module", "extra"), [("test", "hypothesis", "test"),
                                                          ("bench", "pytest_benchmark", "bench")])
def test_test_and_bench_without_their_extra_stop_before_pytest(command, module, extra, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(cli, "_pytest", lambda args: pytest.fail("pytest must not start"))
    assert cli.main([command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"pip install 'ecgfm-suite[{extra}]'" in err


def test_the_root_conftest_loads_without_hypothesis():
    """The benchmark job (core install, no hypothesis) loads the repo's conftest.py too. In a subprocess:
    this session's hypothesis plugin wraps every fixture definition."""
    code = ("import runpy, sys; sys.modules['hypothesis'] = None; "
            f"print(sorted(k for k in runpy.run_path({str(REPO / 'conftest.py')!r}) if k.endswith('_dir')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['data_dir', 'parity_dir']"


def _make_checkout(folder: Path) -> Path:
    (folder / "benchmarks").mkdir(parents=True)
    (folder / "benchmarks" / "test_matrix.py").write_text("")
    (folder / "pytest.ini").write_text("[pytest]\n")
    return folder


def test_the_package_finds_its_checkout_or_the_one_it_is_run_in(tmp_path):
    site = tmp_path / "venv" / "site-packages"  # a non-editable install: no benchmarks beside the package
    site.mkdir(parents=True)
    repo = _make_checkout(tmp_path / "repo")
    (repo / "docs").mkdir()
    assert cli.find_checkout(REPO, repo) == REPO  # the checkout this package was imported from comes first
    assert cli.find_checkout(site, repo / "docs") == repo  # else the working directory or one above it
    assert cli.find_checkout(site, tmp_path) is None
    assert cli.ROOT == REPO


def test_run_outside_a_checkout_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "-k", "random_cnn"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "an ecgfm-suite checkout" in err and str(tmp_path) in err


def test_require_installed_finds_a_module_without_importing_it(tmp_path, monkeypatch):
    """pytest must import its plugins itself (to rewrite their assertions): `test` checks hypothesis is there
    without importing it (an import before pytest.main made pytest warn 'cannot be rewritten')."""
    from ecgfm_suite.extras import require_installed

    (tmp_path / "ecgfm_not_imported_yet.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    require_installed("ecgfm_not_imported_yet", "test", "ecgfm-suite test")
    assert "ecgfm_not_imported_yet" not in sys.modules
    monkeypatch.setitem(sys.modules, "ecgfm_blocked", None)
    with pytest.raises(MissingExtra, match="needs ecgfm_blocked, which the 'test' extra installs"):
        require_installed("ecgfm_blocked", "test", "ecgfm-suite test")
