"""The BG/NBD and Gamma-Gamma forecasts given fitted parameters, in numpy (SciPy when installed).

training.btyd fits the models and calls these; the online feature store (tenure.online) evaluates the
bgnbd_gg_spend_* features with them in the services, which run without SciPy: there the Gauss
hypergeometric function is summed as a power series (`_hyp2f1_series`, converging for the |z| < 1 the
forecast uses), which agrees with SciPy's to ~1e-12 where both are defined.
"""
from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray

try:
    from scipy.special import hyp2f1 as _scipy_hyp2f1
except ImportError:  # a serving install
    _scipy_hyp2f1 = None

logger = logging.getLogger(__name__)
FloatArray = NDArray[np.float64]
BgfParams = tuple[float, float, float, float]
"""r, alpha, a, b."""


def _hyp2f1(a: ArrayLike, b: ArrayLike, c: ArrayLike, z: ArrayLike, quiet: bool = False) -> FloatArray:
    """``scipy.special.hyp2f1`` with a power-series fallback where it returns NaN/inf.

    scipy gives NaN for huge first parameters (e.g. a BG/NBD fit that degenerates to
    ``r, alpha -> inf``) even when ``z`` is tiny and the series converges at once. The
    fallback sums the series (vectorised over the failing entries) and keeps NaN where
    it cannot be trusted (no convergence or cancellation beyond 1e-8).
    """
    a_, b_, c_, z_ = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (a, b, c, z)))
    if _scipy_hyp2f1 is None:
        out = np.full(a_.shape, np.nan)
    else:
        out = np.array(_scipy_hyp2f1(a_, b_, c_, z_), dtype=np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = _hyp2f1_series(a_[bad], b_[bad], c_[bad], z_[bad])
        if not quiet and not np.isfinite(out[bad]).all():
            logger.warning("hyp2f1: %d value(s) could not be evaluated", (~np.isfinite(out)).sum())
    return out


def _hyp2f1_series(
    a: FloatArray, b: FloatArray, c: FloatArray, z: FloatArray, max_terms: int = 20000
) -> FloatArray:
    """Gauss series ``sum_n (a)_n (b)_n / ((c)_n n!) z^n`` for ``|z| < 1``."""
    total = np.ones_like(z)
    term = np.ones_like(z)
    largest = np.ones_like(z)
    converged = np.zeros(z.shape, dtype=bool)
    small_before = np.zeros(z.shape, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for n in range(max_terms):
            term = term * ((a + n) * (b + n) / ((c + n) * (n + 1.0)) * z)
            total = total + term
            largest = np.maximum(largest, np.abs(term))
            small = np.abs(term) <= 1e-17 * np.abs(total)
            converged = small & small_before  # two negligible terms in a row
            small_before = small
            if converged.all():
                break
        trusted = converged & np.isfinite(total) & (largest * 1e-16 <= 1e-8 * np.abs(total))
    return np.where(trusted, total, np.nan)


def log_odds_dead(params: BgfParams, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    """``log(1/P(alive) - 1)``: ``-inf`` for x = 0 (never-repeat customers are alive)."""
    r, alpha, a, b = params
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            x > 0,
            np.log(a)
            - np.log(np.maximum(b + x - 1.0, 1e-300))
            + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)),
            -np.inf,
        )


def conditional_expected(params: BgfParams, t: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
                         ) -> FloatArray:
    """E[Y(t) | x, t_x, T] of BG/NBD (FHL 2005 eq. 10), unvalidated and broadcasting (see
    training.btyd.BetaGeoFitter.conditional_expected_number_of_purchases_up_to_time)."""
    r, alpha, a, b = params
    t_b, x, t_x, big_t = np.broadcast_arrays(t, x, t_x, T)
    z = t_b / (alpha + big_t + t_b)
    c = a + b + x - 1.0
    tail = np.exp((a - 1.0) * np.log1p(-z)) * _hyp2f1(a + b - 1.0 - r, a - 1.0, c, z, quiet=True)
    bad = ~np.isfinite(tail)
    if bad.any():
        # a fit without identified dropout (a, b -> inf) makes the transformed series cancel;
        # the untransformed form converges there: ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; c; z)
        xb, Tb, tb, zb, cb = x[bad], big_t[bad], t_b[bad], z[bad], c[bad]
        tail[bad] = np.exp((r + xb) * (np.log(alpha + Tb) - np.log(alpha + Tb + tb))) * _hyp2f1(
            r + xb, b + xb, cb, zb)
    numerator = c / (a - 1.0) * (1.0 - tail)
    result = numerator * np.exp(-np.logaddexp(0.0, log_odds_dead(params, x, t_x, big_t)))
    return np.where(t_b == 0, 0.0, result)


def expected_average_profit(p: float, q: float, v: float, x: FloatArray, m: FloatArray) -> FloatArray:
    """Gamma-Gamma's E[Z | x, z_bar] = p (v + x z_bar) / (p x + q - 1)."""
    return p * (v + x * m) / (p * x + q - 1.0)
