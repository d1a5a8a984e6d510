"""Profile report: how a group of customers differs from the base, feature by feature.

For every feature the report gives the group's mean, the base's mean, the index
``100 * group mean / base mean`` and a distinctiveness score to sort by. Pure numpy: one pass over
the columns, so a 40k x 60 matrix profiles in a few milliseconds, and :class:`BaseStats` lets many
groups reuse the base side.

Conventions (all documented on the fields of :class:`ProfileRow`):

* Share / one-hot / flag features (``cat_share_*``, ``chan_share_*``, ``gender_*``, ``region_*`` and
  any column holding only 0/1) have the same arithmetic: their mean *is* the share (of spend, of
  orders, or of customers with the flag). ``kind`` tells the two apart for display.
* Unknown sentinels: the customer features encode "unknown" as -1 in a few columns (no gap for a
  one-order customer, no age; see :mod:`tenure.features`). For the columns in ``sentinel_features``
  (default :data:`SENTINEL_FEATURES`), values equal to the sentinel are left out of that column's
  means and standard deviation, on both sides; ``group_known`` / ``base_known`` count the rows that
  remain. Other columns keep -1 as a real value (``spend_trend`` is legitimately -1).
* Index: ``None`` when the base mean is 0 (or the column has no known value); a negative base mean
  gives the plain ratio of the signed means.
* Distinctiveness: the standardized mean difference ``|group mean - base mean| / base std``
  (``smd`` keeps the sign). It is scale-free, so spend in euros and shares in [0, 1] compare on one
  axis; for a 0/1 flag the base std is ``sqrt(p (1 - p))``. A column that is constant in the base,
  or has no known value in the group, scores 0.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SENTINEL = -1.0
SENTINEL_FEATURES: tuple[str, ...] = ("gap_mean_days", "gap_cv", "last_gap_days", "recency_over_gap", "age")
"""Customer feature columns where -1 means unknown (see tenure.features)."""
SHARE_PREFIXES: tuple[str, ...] = ("cat_share_", "chan_share_", "gender_", "region_")
_EPS = 1e-12
MOMENT_ROWS = 65_536
"""Rows per block of the column sums (bounded memory; bases up to this size sum as one block)."""


@dataclass(frozen=True)
class ProfileRow:
    """One feature of a profile report."""

    feature: str
    kind: str
    """'share' (share / one-hot / 0-1 flag: means are shares) or 'numeric'."""
    group_mean: float | None
    """Mean over the group's rows with a known value; None when there is none."""
    base_mean: float | None
    """Mean over the base's rows with a known value; None when there is none."""
    index: float | None
    """100 * group_mean / base_mean; None when the base mean is 0 or either mean is undefined."""
    smd: float
    """Signed standardized mean difference (group_mean - base_mean) / base_std (0 if undefined)."""
    distinctiveness: float
    """|smd|: the sort key, largest first."""
    group_known: int
    base_known: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BaseStats:
    """The base side of a profile: per-column known mask, means and std (compute once, reuse)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    sentinel_cols: np.ndarray
    """Bool per column: -1 means unknown in this column."""
    known_n: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_rows: int

    @classmethod
    def compute(cls, X: np.ndarray, names: Sequence[str], *, sentinel_features: Sequence[str] = SENTINEL_FEATURES,
                rows: np.ndarray | None = None) -> "BaseStats":
        """Stats of X (or of X[rows] when `rows`, a mask or indices, restricts the base)."""
        X = _check_matrix(X, names)
        base = X if rows is None else X[_as_indices(rows, len(X), "base")]
        sentinel_cols = np.isin(np.asarray(names, dtype=object), list(sentinel_features))
        n, mean, m2 = _column_moments(base, sentinel_cols)
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(np.maximum(m2 - mean * mean, 0.0))
        kinds = tuple(_kind(name, X[:, j]) for j, name in enumerate(names))
        return cls(tuple(names), kinds, sentinel_cols, n, mean, std, len(base))


def profile(X: np.ndarray, names: Sequence[str], group: np.ndarray, *, base: BaseStats | None = None,
            sentinel_features: Sequence[str] = SENTINEL_FEATURES, features: Sequence[str] | None = None,
            top: int | None = None) -> list[ProfileRow]:
    """Profile of the rows `group` (bool mask over X's rows, or row indices) against the base.

    The base is every row of X unless a precomputed `base` is given (BaseStats.compute can restrict
    it to a subset). `features` limits the report to those columns; `top` keeps the most
    distinctive rows only. Rows come sorted by distinctiveness (largest first; ties by column order).
    Raises ValueError for an empty group or malformed input.
    """
    X = _check_matrix(X, names)
    idx = _as_indices(group, len(X), "group")
    if len(idx) == 0:
        raise ValueError("profile: the group is empty (no customer matches); nothing to compare with the base")
    stats = base or BaseStats.compute(X, names, sentinel_features=sentinel_features)
    if stats.names != tuple(names):
        raise ValueError("profile: the base statistics were computed for other feature names")
    cols = np.arange(len(names)) if features is None else np.array([_column(names, f) for f in features], dtype=np.int64)

    g_n, g_mean, _ = _column_moments(X[idx][:, cols], stats.sentinel_cols[cols])
    b_n, b_mean, b_std = stats.known_n[cols], stats.mean[cols], stats.std[cols]
    defined = (g_n > 0) & (b_n > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        smd = np.where(defined & (b_std > _EPS), (g_mean - b_mean) / b_std, 0.0)
        index = np.where(defined & (np.abs(b_mean) > _EPS), 100.0 * g_mean / b_mean, np.nan)
    dist = np.abs(smd)
    order = np.argsort(-dist, kind="stable")
    if top is not None:
        order = order[:top]
    return [
        ProfileRow(
            feature=names[cols[j]], kind=stats.kinds[cols[j]],
            group_mean=float(g_mean[j]) if g_n[j] > 0 else None,
            base_mean=float(b_mean[j]) if b_n[j] > 0 else None,
            index=float(index[j]) if np.isfinite(index[j]) else None,
            smd=float(smd[j]), distinctiveness=float(dist[j]),
            group_known=int(g_n[j]), base_known=int(b_n[j]),
        )
        for j in order.tolist()
    ]


def _check_matrix(X: np.ndarray, names: Sequence[str]) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"profile: X must be 2-D (customers x features), got shape {X.shape}")
    if X.shape[1] != len(names):
        raise ValueError(f"profile: X has {X.shape[1]} columns but {len(names)} feature names were given")
    if len(X) == 0:
        raise ValueError("profile: the base is empty")
    return X


def _as_indices(rows: np.ndarray, n: int, what: str) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.dtype == np.bool_:
        if rows.shape != (n,):
            raise ValueError(f"profile: the {what} mask has shape {rows.shape}, expected ({n},)")
        return np.flatnonzero(rows)
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"profile: the {what} must be a boolean mask or integer row indices, got {rows.dtype}")
    rows = rows.astype(np.int64).ravel()
    if rows.size and (rows.min() < -n or rows.max() >= n):
        raise ValueError(f"profile: {what} row indices must be in [0, {n})")
    return rows


def _column_moments(A: np.ndarray, sentinel_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: known count, mean and mean of squares (sentinels excluded where flagged); in blocks of
    MOMENT_ROWS rows, so a base of a million rows needs no float64 copy of itself."""
    n = np.zeros(A.shape[1], np.int64)
    total, squares = np.zeros(A.shape[1]), np.zeros(A.shape[1])
    for start in range(0, len(A), MOMENT_ROWS):
        block = A[start:start + MOMENT_ROWS].astype(np.float64, copy=False)
        known = ~(sentinel_cols[None, :] & (block == SENTINEL))
        n += known.sum(axis=0)
        V = np.where(known, block, 0.0)
        total += V.sum(axis=0)
        squares += np.einsum("ij,ij->j", V, V)
    safe = np.maximum(n, 1)
    mean, m2 = total / safe, squares / safe
    return n.astype(np.int64), np.where(n > 0, mean, np.nan), np.where(n > 0, m2, np.nan)


def _kind(name: str, col: np.ndarray) -> str:
    if name.startswith(SHARE_PREFIXES):
        return "share"
    return "share" if bool(np.all((col == 0) | (col == 1))) else "numeric"


def _column(names: Sequence[str], feature: str) -> int:
    try:
        return list(names).index(feature)
    except ValueError:
        raise ValueError(f"profile: unknown feature {feature!r}") from None
