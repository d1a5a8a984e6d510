"""Purchase timing from the purchase-within-7/30/90-days probabilities: pure numpy, shared by
training (evaluation) and the services (next purchase date, average days between orders)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HORIZONS: tuple[int, ...] = (7, 30, 90)
_EPS = 1e-9


def _cumulative_probabilities(probs: Sequence[np.ndarray]) -> np.ndarray:
    """(N, K) P(purchase within horizon k), clipped into (0, 1) and made non-decreasing in k
    (separate models need not be)."""
    P = np.column_stack([np.asarray(p, dtype=np.float64).ravel() for p in probs])
    return np.maximum.accumulate(np.clip(P, _EPS, 1.0 - _EPS), axis=1)


def next_purchase_days(p7: np.ndarray, p30: np.ndarray, p90: np.ndarray,
                       horizons: Sequence[int] = HORIZONS) -> np.ndarray:
    """Median days from the cutoff to the next order, given an order within the last horizon.

    P(within h) for the three horizons define survival S(h) = 1 - P; the hazard is constant
    between horizons (and from 0 to the first), so S(t) = S(a) exp(-lambda (t - a)) on [a, b).
    The result t solves 1 - S(t) = (1 - S(90)) / 2 and lies in (0, 90].
    """
    P = _cumulative_probabilities([p7, p30, p90])
    edges = np.concatenate([[0.0], np.asarray(horizons, dtype=np.float64)])
    if len(edges) != P.shape[1] + 1 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"horizons must be {P.shape[1]} increasing positive day counts, got {horizons}")
    S = np.column_stack([np.ones(len(P)), 1.0 - P])  # survival at each edge
    target = 1.0 - 0.5 * P[:, -1]
    # first interval whose end survival is at or below the target
    k = np.argmax(S[:, 1:] <= target[:, None], axis=1)
    rows = np.arange(len(P))
    s_start, s_end = S[rows, k], S[rows, k + 1]
    start, width = edges[k], edges[k + 1] - edges[k]
    # s_start > target >= s_end, so the hazard is positive
    hazard = np.log(s_start / s_end) / width
    return start + np.clip(np.log(s_start / target) / hazard, 0.0, width)


def average_gap_days(gap_mean_days: np.ndarray, p90: np.ndarray, horizon_days: int = 90) -> np.ndarray:
    """Average days between orders: the observed mean gap (2+ orders), else the mean gap of a
    Poisson process with P(at least one order in horizon_days) = p90."""
    gap = np.asarray(gap_mean_days, dtype=np.float64)
    p = np.clip(np.asarray(p90, dtype=np.float64), _EPS, 1.0 - _EPS)
    implied = horizon_days / -np.log1p(-p)
    return np.where(gap >= 0, gap, implied)
