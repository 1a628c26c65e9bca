"""Root conftest: shared data fixtures for tests/ and benchmarks/, hypothesis profiles, GPU skips.

The ecgfm plugin itself loads through its pytest11 entry point.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SHARED = REPO.parent / "shared"

try:  # the [test] extra; the benchmark job (core install) loads this conftest too and needs no hypothesis
    from hypothesis import HealthCheck, settings
except ImportError:
    pass
else:
    settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", max_examples=100, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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


def pytest_collection_modifyitems(config, items):
    """`gpu` tests need CUDA; torch is imported only when such tests were collected."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
        for item in gpu_items:
            item.add_marker(skip)
