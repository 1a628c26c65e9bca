"""First-use set-up for ``python3 -m ecgfm_suite``: a ``.venv`` at the repo root, then the CLI in it.

Standard library only: this runs under whatever ``python3`` the user has. torch is installed as
the CPU build (``torch==2.13.0``) on machines without an NVIDIA driver, and unpinned (CUDA build)
where ``nvidia-smi`` exists, so GPU users are not capped. Re-installs when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
STAMP = VENV / ".ecgfm-suite-installed"
CPU_TORCH = "torch==2.13.0"


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _wanted_stamp() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def torch_requirement() -> str:
    """CPU wheel without an NVIDIA driver; otherwise let pip pick the CUDA build."""
    return "torch" if shutil.which("nvidia-smi") else CPU_TORCH


def ensure_venv() -> Path:
    python = _venv_python()
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == _wanted_stamp():
        return python
    import fcntl

    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT / ".venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two first uses at once: one installs, the other waits
        if python.exists() and STAMP.exists() and STAMP.read_text().strip() == _wanted_stamp():
            return python
        print(f"ecgfm-suite: setting up {VENV} (first use; a few minutes)", file=sys.stderr)
        if not python.exists():
            subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        has_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode == 0
        if not has_torch:
            subprocess.check_call([*pip, torch_requirement()])
        subprocess.check_call([*pip, "-e", str(ROOT)])
        STAMP.write_text(_wanted_stamp())
    return python


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if Path(sys.prefix).resolve() == VENV.resolve():
        from .cli import main as cli_main

        return cli_main(argv)
    python = ensure_venv()
    os.execv(str(python), [str(python), "-m", "ecgfm_suite", *argv])
    return 0  # pragma: no cover - execv does not return
