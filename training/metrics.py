"""Evaluation metrics: ranking (AUC, lift), top-k recommendation and calibration.

Pure numpy (plus ``sklearn.metrics.roc_auc_score`` and scipy sparse matrices for the
"actual" side of recommendation metrics). Every function validates its inputs once and
raises :class:`ValueError` with one clear message.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import roc_auc_score

__all__ = [
    "brier",
    "calibration_table",
    "expected_calibration_error",
    "lift_at",
    "ndcg_at_k",
    "recall_at_k",
    "roc_auc",
    "top_k_from_scores",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- validation


def _binary_labels(name: str, y: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    values = arr.astype(np.float64)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"{name} must contain only 0/1 (or bool) labels")
    return values


def _scores(name: str, score: ArrayLike, n: int) -> NDArray[np.float64]:
    arr = np.asarray(score, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values but the labels have {n}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN/inf)")
    return arr


def _probabilities(y: ArrayLike, p: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    labels = _binary_labels("y", y)
    probs = _scores("p", p, labels.shape[0])
    if ((probs < 0) | (probs > 1)).any():
        raise ValueError("p must be probabilities in [0, 1]")
    return labels, probs


# --------------------------------------------------------------------------- ranking


def roc_auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve; tied scores count one half (Mann-Whitney).

    Raises ``ValueError`` when ``y_true`` holds only one class.
    """
    y = _binary_labels("y_true", y_true)
    s = _scores("score", score, y.shape[0])
    if y.min() == y.max():
        raise ValueError("roc_auc is undefined when y_true contains only one class")
    return float(roc_auc_score(y, s))


def lift_at(y_true: ArrayLike, score: ArrayLike, fraction: float = 0.1) -> float:
    """Positive rate among the top ``fraction`` by score divided by the overall positive rate.

    The top group holds ``ceil(fraction * n)`` rows; ties in score are broken by row
    order (stable sort), so the result is deterministic.
    """
    y = _binary_labels("y_true", y_true)
    s = _scores("score", score, y.shape[0])
    if not (0.0 < fraction <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    base = y.mean()
    if base == 0.0:
        raise ValueError("lift is undefined when y_true has no positive")
    n_top = max(1, int(np.ceil(fraction * y.shape[0] - 1e-9)))
    top = np.argsort(-s, kind="stable")[:n_top]
    return float(y[top].mean() / base)


# --------------------------------------------------------------------------- top-k


def top_k_from_scores(
    scores: np.ndarray, k: int, exclude_mask: np.ndarray | None = None
) -> NDArray[np.int64]:
    """Indices of the ``k`` best items per user, best first.

    Parameters
    ----------
    scores:
        ``(n_users, n_items)`` scores, higher is better (no NaN).
    k:
        Number of items per user (``>= 1``).
    exclude_mask:
        Optional boolean ``(n_users, n_items)``; ``True`` items are never recommended
        (e.g. already bought).

    Returns
    -------
    numpy.ndarray
        ``(n_users, k)`` int64 item indices. Ties are broken by the lower item index.
        Items with score ``-inf`` or excluded are never returned: a user with fewer
        than ``k`` eligible items gets ``-1`` in the trailing slots (also when
        ``k > n_items``).

    Uses a partition to find each row's k-th best score (O(n_items)), selects the
    strictly better items plus the lowest-indexed ties, then sorts only those ``k``.
    """
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_users, n_items), got shape {arr.shape}")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    work = arr.astype(np.float64, copy=True)
    if np.isnan(work).any() or np.isposinf(work).any():
        raise ValueError("scores must not contain NaN or +inf")
    if exclude_mask is not None:
        mask = np.asarray(exclude_mask)
        if mask.shape != work.shape or mask.dtype != np.bool_:
            raise ValueError(f"exclude_mask must be a boolean array of shape {work.shape}")
        work[mask] = -np.inf

    n_users, n_items = work.shape
    k_eff = min(int(k), n_items)
    out = np.full((n_users, int(k)), -1, dtype=np.int64)
    if n_users == 0 or n_items == 0:
        return out

    # k-th largest score per row, then all strictly larger items + the lowest-indexed ties.
    kth = -np.partition(-work, k_eff - 1, axis=1)[:, k_eff - 1 : k_eff]
    above = work > kth
    ties = work == kth
    need = k_eff - above.sum(axis=1, keepdims=True)
    selected = above | (ties & (np.cumsum(ties, axis=1) <= need))
    items = np.nonzero(selected)[1].reshape(n_users, k_eff)  # ascending item index per row
    chosen = np.take_along_axis(work, items, axis=1)
    order = np.argsort(-chosen, axis=1, kind="stable")  # stable: ties keep lower index first
    items = np.take_along_axis(items, order, axis=1)
    chosen = np.take_along_axis(chosen, order, axis=1)
    out[:, :k_eff] = np.where(np.isneginf(chosen), -1, items)
    return out


def _hits(
    recommended: np.ndarray, actual: sp.spmatrix | sp.sparray | np.ndarray
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """Validate and return (hit matrix (n_users, k), number of actual items per user)."""
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-D (n_users, k), got shape {rec.shape}")
    if rec.size and not np.issubdtype(rec.dtype, np.integer):
        raise ValueError(f"recommended must hold integer item indices, got dtype {rec.dtype}")
    rec = rec.astype(np.int64, copy=False)
    truth = sp.csr_array(actual if sp.issparse(actual) else np.asarray(actual))  # type: ignore[arg-type]
    if truth.ndim != 2:
        raise ValueError("actual must be a 2-D (n_users, n_items) matrix")
    n_users, n_items = truth.shape
    if rec.shape[0] != n_users:
        raise ValueError(f"recommended has {rec.shape[0]} users but actual has {n_users}")
    if rec.shape[1] == 0:
        raise ValueError("recommended must have at least one column (k >= 1)")
    if ((rec < -1) | (rec >= n_items)).any():
        raise ValueError(
            f"recommended item indices must be in [0, {n_items}) or -1 for an empty slot"
        )
    ordered = np.sort(rec, axis=1)
    if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any():
        raise ValueError("recommended contains the same item twice for a user")

    truth = truth.copy()
    truth.data = (truth.data > 0).astype(np.int8)
    truth.eliminate_zeros()
    n_actual = np.diff(truth.indptr).astype(np.int64)

    filled = rec >= 0
    users = np.broadcast_to(np.arange(n_users)[:, None], rec.shape)
    hits = np.zeros(rec.shape, dtype=bool)
    if filled.any():
        hits[filled] = np.asarray(truth[users[filled], rec[filled]]).ravel() > 0
    return hits, n_actual


def recall_at_k(recommended: np.ndarray, actual: sp.spmatrix | sp.sparray | np.ndarray) -> float:
    """Mean over users with at least one actual item of ``|rec ∩ actual| / min(|actual|, k)``.

    ``recommended`` is ``(n_users, k)`` item indices (``-1`` = empty slot, still counted in
    ``k``); ``actual`` is ``(n_users, n_items)`` sparse (bool or counts, ``> 0`` = bought)
    for the evaluation window. Normalising by ``min(|actual|, k)`` instead of ``|actual|``
    (the common convention for implicit-feedback top-k evaluation) makes a perfect top-k
    list score 1 even for users who bought more than ``k`` items, so the metric's range
    does not depend on basket sizes. Raises ``ValueError`` when no user has an actual item.
    """
    hits, n_actual = _hits(recommended, actual)
    users = n_actual > 0
    if not users.any():
        raise ValueError("recall_at_k is undefined: no user has an actual item")
    k = hits.shape[1]
    per_user = hits[users].sum(axis=1) / np.minimum(n_actual[users], k)
    return float(per_user.mean())


def ndcg_at_k(recommended: np.ndarray, actual: sp.spmatrix | sp.sparray | np.ndarray) -> float:
    """Mean NDCG@k with binary relevance over users with at least one actual item.

    ``DCG = sum_i rel_i / log2(i + 2)`` over slots ``i = 0..k-1``; the ideal DCG places
    ``min(|actual|, k)`` hits in the first slots. Inputs as in :func:`recall_at_k`.
    """
    hits, n_actual = _hits(recommended, actual)
    users = n_actual > 0
    if not users.any():
        raise ValueError("ndcg_at_k is undefined: no user has an actual item")
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = hits[users] @ discounts
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_actual[users], k)]
    return float((dcg / ideal).mean())


# --------------------------------------------------------------------------- calibration


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Brier score: mean squared difference between probability and 0/1 outcome."""
    labels, probs = _probabilities(y, p)
    return float(np.mean((probs - labels) ** 2))


def _bin_stats(
    labels: NDArray[np.float64], probs: NDArray[np.float64], n_bins: int
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    if (
        isinstance(n_bins, (bool, np.bool_))
        or not isinstance(n_bins, (int, np.integer))
        or n_bins < 1
    ):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    # Equal-width bins on [0, 1]: [0, 1/n), ..., [(n-1)/n, 1] (p == 1 goes to the last bin).
    idx = np.minimum((probs * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(np.int64)
    sum_p = np.bincount(idx, weights=probs, minlength=n_bins).astype(np.float64)
    sum_y = np.bincount(idx, weights=labels, minlength=n_bins).astype(np.float64)
    return counts, sum_p, sum_y


def expected_calibration_error(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """ECE = sum_b (n_b / n) |mean p_b - observed rate_b| over equal-width bins on [0, 1]."""
    labels, probs = _probabilities(y, p)
    _, sum_p, sum_y = _bin_stats(labels, probs, n_bins)
    return float(np.abs(sum_p - sum_y).sum() / labels.shape[0])


def calibration_table(y: ArrayLike, p: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table over ``n_bins`` equal-width bins on [0, 1].

    One row per bin (empty bins included, with NaN means): ``bin`` (0-based),
    ``bin_lower``, ``bin_upper``, ``mean_predicted``, ``observed_rate``, ``count``.
    """
    labels, probs = _probabilities(y, p)
    counts, sum_p, sum_y = _bin_stats(labels, probs, n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(counts > 0, sum_p / counts, np.nan)
        rate = np.where(counts > 0, sum_y / counts, np.nan)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "bin": np.arange(n_bins, dtype=np.int64),
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "mean_predicted": mean_p,
            "observed_rate": rate,
            "count": counts.astype(np.int64),
        }
    )
