"""First-use set-up for ``python3 -m ecgfm_suite``: a ``.venv`` at the repo root, then the CLI in it.

Standard library only: this runs under whatever ``python3`` the user has. torch is installed as
the CPU build (``torch==2.13.0``) on machines without an NVIDIA driver, and unpinned (CUDA build)
where ``nvidia-smi`` exists, so GPU users are not capped. ``run`` installs the core package, ``test``
and ``bench`` its ``[test]`` extra. The stamp in the venv records the pyproject.toml digest and the
extras installed: a changed pyproject.toml or a command needing an extra the venv lacks reinstalls
(keeping the extras it had), anything else starts at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
STAMP_NAME = ".ecgfm-suite-installed"
CPU_TORCH = "torch==2.13.0"
#: commands whose run needs an extra: the test suite imports hypothesis, moto and every optional backend
COMMAND_EXTRAS: dict[str, frozenset[str]] = {"test": frozenset({"test"}), "bench": frozenset({"test"})}

#: runs a command and returns its exit status; ``quiet`` hides its output (a probe, not an install step)
Call = Callable[[Sequence[str], bool], int]


def _call(cmd: Sequence[str], quiet: bool = False) -> int:
    return subprocess.run(list(cmd), check=False, capture_output=quiet).returncode


@dataclass(frozen=True)
class Stamp:
    """What the venv was installed from: the pyproject.toml digest and the extras."""

    pyproject: str
    extras: frozenset[str] = field(default_factory=frozenset)

    def covers(self, pyproject: str, extras: Iterable[str]) -> bool:
        return self.pyproject == pyproject and self.extras >= frozenset(extras)

    def dumps(self) -> str:
        return json.dumps({"pyproject": self.pyproject, "extras": sorted(self.extras)})

    @classmethod
    def read(cls, path: Path) -> Stamp | None:
        """The stamp at ``path``; None where absent. An older bare digest counts as no extras."""
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        try:
            raw = json.loads(text)
        except ValueError:
            raw = None
        if not isinstance(raw, dict):
            return cls(text)
        return cls(str(raw.get("pyproject", "")), frozenset(raw.get("extras") or ()))


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def pyproject_digest(root: Path) -> str:
    return hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()


def extras_for(argv: Sequence[str]) -> frozenset[str]:
    """The extras a command line needs (``test`` and ``bench`` → ``[test]``; everything else the core)."""
    return COMMAND_EXTRAS.get(argv[0], frozenset()) if argv else frozenset()


def install_target(root: str | Path, extras: Iterable[str]) -> str:
    """``root`` or ``root[a,b]``: what ``pip install -e`` gets."""
    names = sorted(set(extras))
    return f"{root}[{','.join(names)}]" if names else str(root)


def torch_requirement() -> str:
    """CPU wheel without an NVIDIA driver; otherwise let pip pick the CUDA build."""
    return "torch" if shutil.which("nvidia-smi") else CPU_TORCH


def _installed(python: Path, stamp_path: Path) -> Stamp | None:
    return Stamp.read(stamp_path) if python.exists() else None


def _step(call: Call, cmd: Sequence[str], venv: Path) -> None:
    """One install step; a failure ends the set-up with one line (pip has printed why above it)."""
    status = call(cmd, False)
    if status != 0:
        raise SystemExit(f"ecgfm-suite: setting up {venv} failed: {' '.join(map(str, cmd))} exited {status}")


def ensure_venv(extras: Iterable[str] = (), *, root: Path = ROOT, call: Call = _call) -> Path:
    """``root/.venv`` with the package and ``extras`` installed (editable); its python."""
    extras = frozenset(extras)
    venv = root / ".venv"
    python, stamp_path = venv_python(venv), venv / STAMP_NAME
    wanted = pyproject_digest(root)
    stamp = _installed(python, stamp_path)
    if stamp is not None and stamp.covers(wanted, extras):
        return python
    import fcntl

    with open(root / ".venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two first uses at once: one installs, the other waits
        stamp = _installed(python, stamp_path)
        if stamp is not None and stamp.covers(wanted, extras):
            return python
        extras |= stamp.extras if stamp is not None else frozenset()  # a reinstall keeps the venv's extras
        print(f"ecgfm-suite: setting up {venv} ({install_target('ecgfm-suite', extras)}; a few minutes)",
              file=sys.stderr)
        if not python.exists():
            _step(call, [sys.executable, "-m", "venv", str(venv)], venv)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        if call([str(python), "-c", "import torch"], True) != 0:
            _step(call, [*pip, torch_requirement()], venv)
        _step(call, [*pip, "-e", install_target(root, extras)], venv)
        stamp_path.write_text(Stamp(wanted, extras).dumps(), encoding="utf-8")
    return python


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    checkout = (ROOT / "pyproject.toml").is_file()  # else an installed package: its environment is set up
    python = ensure_venv(extras_for(argv)) if checkout else None  # in the venv too: `run`, then `test` adds [test]
    if python is None or Path(sys.prefix).resolve() == VENV.resolve():
        from .cli import main as cli_main

        return cli_main(argv)
    os.execv(str(python), [str(python), "-m", "ecgfm_suite", *argv])
    return 0  # pragma: no cover - execv does not return
