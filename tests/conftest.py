"""Shared test fixtures: where the real shared data and parity fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real shared ECG data (``ECGFM_DATA_DIR`` or ``../shared/ecg-data``); skip if absent."""
    path = Path(os.environ.get("ECGFM_DATA_DIR", SHARED / "ecg-data")).expanduser().resolve()
    if not (path / "README.md").exists() and not any(path.glob("*")):
        pytest.skip(f"real ECG data not found at {path} (set ECGFM_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """Official-code parity fixtures (``ECGFM_PARITY_DIR`` or ``../shared/fm-parity``); skip if absent."""
    path = Path(os.environ.get("ECGFM_PARITY_DIR", SHARED / "fm-parity")).expanduser().resolve()
    if not path.is_dir():
        pytest.skip(f"parity fixtures not found at {path} (set ECGFM_PARITY_DIR)")
    return path
