"""Fixtures for tests/ only (the root conftest.py holds those that tests/ and benchmarks/ share)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.s3_server import s3_endpoint, s3_url  # noqa: F401  (fixtures of the object-storage tests)


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic data dir on which benchmark cells run end to end without the real data: LUDB's native
    layout, 60 records, fixed seed (``fixtures/benchmark_data.py``), written once per session (about 0.5 s)."""
    from fixtures.benchmark_data import write_benchmark_data

    return write_benchmark_data(tmp_path_factory.mktemp("synthetic-data")).root


@pytest.fixture(scope="session")
def analysis_cache_dir(request: pytest.FixtureRequest) -> Path:
    """One cache dir for every analysis test, kept between runs (numba's compiled UMAP/shap kernels live there)."""
    return request.config.cache.mkdir("ecgfm-suite-analysis")
