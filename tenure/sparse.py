"""A compressed-sparse-row matrix in plain numpy: what the services need of the affinity matrices.

The feature snapshot's affinity matrices (purchase history, co-purchase) are CSR. Training builds
them with scipy.sparse; the services read them into `CSR`, which offers only the operations the
recommendation engine uses, so that serving does not load SciPy. Both kinds work wherever this
module's functions take a matrix (they read only data, indices, indptr and shape), and the
arithmetic follows scipy's order in float32, so answers are the same bit for bit.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class CSRLike(Protocol):
    """scipy.sparse.csr_matrix (training) or `CSR` (serving)."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray

    @property
    def shape(self) -> tuple[int, int]: ...

    def __getitem__(self, rows: Any) -> Any: ...

    def toarray(self) -> np.ndarray: ...


class CSR:
    """Rows r of an n x m matrix: values data[indptr[r]:indptr[r + 1]] in columns indices[same]."""

    __slots__ = ("data", "indices", "indptr", "_shape")

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]) -> None:
        n_rows, n_cols = int(shape[0]), int(shape[1])
        if len(indptr) != n_rows + 1 or len(data) != len(indices) or (len(indptr) and indptr[-1] != len(data)):
            raise ValueError(f"inconsistent CSR arrays for shape {shape}: {len(data)} values, {len(indices)} "
                             f"column indices, {len(indptr)} row pointers")
        if len(indices) and (indices.min() < 0 or indices.max() >= n_cols):
            raise ValueError(f"CSR column index out of range 0..{n_cols - 1}")
        self.data, self.indices, self.indptr = data, indices, indptr
        self._shape = (n_rows, n_cols)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def nnz(self) -> int:
        return len(self.data)

    def __getitem__(self, rows: int | np.integer | np.ndarray | list[int]) -> "CSR":
        """The given rows (an index or an array of them), as a CSR matrix."""
        picked = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        if picked.ndim != 1:
            raise IndexError("CSR supports row selection only")
        picked = np.where(picked < 0, picked + self._shape[0], picked)
        if len(picked) and (picked.min() < 0 or picked.max() >= self._shape[0]):
            raise IndexError(f"row index out of range 0..{self._shape[0] - 1}")
        starts, ends = self.indptr[picked], self.indptr[picked + 1]
        lengths = ends - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(self.indptr.dtype)
        # Positions of the picked rows' entries, row after row.
        take = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return CSR(self.data[take], self.indices[take], indptr, (len(picked), self._shape[1]))

    def toarray(self) -> np.ndarray:
        out = np.zeros(self._shape, dtype=self.data.dtype)
        out[self.row_of_entries(), self.indices] = self.data
        return out

    def row_of_entries(self) -> np.ndarray:
        """The row of every stored entry (the COO row array)."""
        return np.repeat(np.arange(self._shape[0]), np.diff(self.indptr))


def dense_times(weights: np.ndarray, matrix: CSRLike) -> np.ndarray:
    """weights (B x n, dense) @ matrix (n x m, CSR): B x m, dtype of weights * matrix values.

    Each output column accumulates its terms in row order, as scipy's `(matrix.T @ weights.T).T`
    does, so the results are identical to it."""
    n, m = matrix.shape
    if weights.ndim != 2 or weights.shape[1] != n:
        raise ValueError(f"dimension mismatch: {weights.shape} @ {matrix.shape}")
    if not isinstance(matrix, CSR):  # scipy (training, many rows at once): its own kernel, same order
        scipy_matrix: Any = matrix
        return np.asarray((scipy_matrix.T @ weights.T).T)
    rows = np.repeat(np.arange(n), np.diff(matrix.indptr))
    out = np.zeros((weights.shape[0], m), dtype=np.result_type(weights.dtype, matrix.data.dtype))
    for b in range(weights.shape[0]):
        np.add.at(out[b], matrix.indices, weights[b, rows] * matrix.data)
    return out


def column_sums(matrix: CSRLike, values: np.ndarray | None = None) -> np.ndarray:
    """Per column, the sum over rows of the stored values (or of `values`, one per stored entry),
    accumulated in row order like scipy's `matrix.sum(axis=0)`; length m, dtype of the values."""
    values = matrix.data if values is None else values
    out = np.zeros(matrix.shape[1], dtype=values.dtype)
    np.add.at(out, matrix.indices, values)
    return out
