"""RankMe and linear CKA against known answers and an independent kernel (HSIC) implementation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from ecgfm_suite.analysis import representation as rp
from ecgfm_suite.errors import DataError


def _hsic_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """CKA from centred linear Gram matrices (Kornblith et al., eq. 3), independent of the feature-space form."""
    n = len(X)
    H = np.eye(n) - 1.0 / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return float(np.sum(K * L) / np.sqrt(np.sum(K * K) * np.sum(L * L)))


@pytest.mark.parametrize("k", [1, 3, 10])
def test_rankme_of_k_equal_directions_is_k(k):
    U = ortho_group.rvs(50, random_state=k)[:, :k]
    V = ortho_group.rvs(20, random_state=k + 1)[:k]
    assert rp.rankme(U @ V * 3.0) == pytest.approx(k, rel=1e-4)


def test_rankme_of_a_random_rank_k_matrix_is_at_most_k():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 64))
    assert 1.0 < rp.rankme(X) <= 5.0 + 1e-6
    assert rp.rankme(np.zeros((4, 3))) == 0.0
    with pytest.raises(DataError):
        rp.rankme(np.full((3, 3), np.nan))


def test_cka_is_one_for_the_same_representation_up_to_rotation_and_scale():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 16))
    Q = ortho_group.rvs(16, random_state=2)
    assert rp.linear_cka(X, X) == pytest.approx(1.0)
    assert rp.linear_cka(X, 5.0 * X @ Q + 3.0) == pytest.approx(1.0)


def test_cka_of_unrelated_representations_is_low_and_matches_the_kernel_form():
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(400, 8)), rng.normal(size=(400, 12))
    assert rp.linear_cka(X, Y) < 0.1
    Z = np.c_[X[:, :4], rng.normal(size=(400, 4))]  # shares half of X's directions
    for a, b in ((X, Y), (X, Z), (Z, Y)):
        assert rp.linear_cka(a, b) == pytest.approx(_hsic_cka(a, b), rel=1e-9)
    assert 0.3 < rp.linear_cka(X, Z) < 0.8


def test_cka_matrix_is_symmetric_with_unit_diagonal():
    rng = np.random.default_rng(4)
    names, M = rp.cka_matrix({"b": rng.normal(size=(50, 3)), "a": rng.normal(size=(50, 5))})
    assert names == ["a", "b"] and np.allclose(np.diag(M), 1.0) and M[0, 1] == M[1, 0]
    with pytest.raises(DataError):
        rp.linear_cka(np.ones((5, 2)), np.ones((4, 2)))
