"""GPU path: bf16 autocast encode on CUDA agrees with the CPU float32 encode (skipped without CUDA)."""

import numpy as np
import pytest


@pytest.mark.gpu
def test_cuda_encode_matches_cpu():
    from ecgfm_suite.models.catalog import MODELS
    from ecgfm_suite.models.controls import load_random_cnn

    spec = MODELS.get("random_cnn")
    x = np.random.default_rng(0).standard_normal((8, 12, 1000)).astype(np.float32)
    cpu = load_random_cnn(spec, None, device="cpu").encode(x)
    gpu = load_random_cnn(spec, None, device="cuda").encode(x)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, rtol=0.05, atol=0.05)  # bf16 autocast tolerance
