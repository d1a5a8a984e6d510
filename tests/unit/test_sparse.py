"""tenure.sparse.CSR (what the services read the affinity matrices into) gives scipy's answers, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tenure.sparse import CSR, column_sums, dense_times


def matrices(seed: int, shape: tuple[int, int], density: float) -> tuple[sp.csr_matrix, CSR]:
    m = sp.random(*shape, density=density, format="csr", dtype=np.float32, random_state=seed)
    m.data[:] = np.random.default_rng(seed).uniform(0.01, 0.99, m.nnz).astype(np.float32)
    return m, CSR(m.data, m.indices, m.indptr, m.shape)


def test_rows_and_dense_rows_match_scipy() -> None:
    ref, csr = matrices(1, (50, 40), 0.1)
    for rows in [3, np.int64(7), np.array([0, 49, 3, 3]), np.array([], dtype=np.int64), np.flatnonzero(np.ones(50))]:
        assert np.array_equal(csr[rows].toarray(), ref[rows].toarray())
    assert csr[5].toarray().dtype == np.float32 and csr.nnz == ref.nnz


def test_products_and_column_sums_match_scipy_bit_for_bit() -> None:
    ref, csr = matrices(2, (300, 300), 0.08)
    weights = np.log1p(np.random.default_rng(3).poisson(0.3, (4, 300)).astype(np.float32))
    assert np.array_equal(dense_times(weights, csr), np.asarray((ref.T @ weights.T).T))
    assert np.array_equal(dense_times(weights, ref), np.asarray((ref.T @ weights.T).T))
    picked = np.array([2, 17, 150])
    expected = np.asarray(ref[picked].multiply(-1).log1p().sum(axis=0)).ravel()
    got = column_sums(csr[picked], np.log1p(-csr[picked].data))
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_inconsistent_arrays_are_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        CSR(np.ones(3, np.float32), np.array([0, 1, 2]), np.array([0, 2]), (1, 3))
    with pytest.raises(ValueError, match="out of range"):
        CSR(np.ones(1, np.float32), np.array([5]), np.array([0, 1]), (1, 3))
