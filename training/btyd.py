"""Buy-'til-you-die models: RFM summaries, BG/NBD and Gamma-Gamma.

This module re-implements, on top of numpy/scipy only, the parts of the (archived)
``lifetimes`` package the project relies on:

* :func:`rfm_summary` turns the canonical transactions frame into the per-customer
  ``frequency / recency / T / monetary_value`` summary (``lifetimes`` conventions),
  optionally with hold-out columns for back-testing.
* :class:`BetaGeoFitter` is the BG/NBD model of Fader, Hardie & Lee (2005),
  "Counting your customers the easy way", Marketing Science 24(2).
* :class:`GammaGammaFitter` is the spend model of Fader & Hardie (2013),
  "The Gamma-Gamma model of monetary value".

Both fitters follow the estimator convention used across the project: hyper-parameters
in ``__init__``, ``fit()`` returns ``self``, fitted attributes end with ``_``, and inputs
are validated once, raising :class:`ValueError` with one clear message.
"""

from __future__ import annotations

import contextlib
import logging
import time as _time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize
from scipy.special import betaln, digamma, gammaln

from tenure.btyd_math import _hyp2f1, conditional_expected, expected_average_profit, log_odds_dead

try:  # optional: installed with scikit-learn; keeps BLAS single-threaded while optimising
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = [
    "BetaGeoFitter",
    "GammaGammaFitter",
    "NotFittedError",
    "rfm_summary",
]

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

_REQUIRED_COLUMNS = ("customer_id", "ts", "amount", "is_return")
# Log-parameters are kept inside this box so that exp() never over/underflows.
_LOG_PARAM_BOUNDS = (-25.0, 25.0)


class NotFittedError(ValueError, AttributeError):
    """Raised when a prediction method is called before ``fit``."""


# --------------------------------------------------------------------------- RFM summary


def rfm_summary(
    transactions: pd.DataFrame,
    cutoff: pd.Timestamp,
    *,
    time_unit_days: float = 1.0,
    observation_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Per-customer RFM summary in the ``lifetimes`` conventions.

    Only non-return lines (``is_return == False``) with ``ts < cutoff`` count. Lines are
    aggregated per customer and calendar day, so several orders on one day make one
    purchase whose value is the day's summed ``amount``.

    Time convention (``lifetimes`` ``calibration_and_holdout_data`` / Fader-Hardie): a
    purchase is placed at the start of its calendar day and ``T`` runs from the first
    purchase day to the *last calendar day of the calibration window* (``cutoff - 1 day``
    for a midnight cutoff), so a customer whose last purchase is on the final day has
    ``recency == T``. ``cutoff=2024-01-01`` here equals ``lifetimes``'
    ``calibration_period_end="2023-12-31"``. With this convention the summary of the
    CDNOW 1/10 sample at ``cutoff=1997-10-01`` is identical to Fader & Hardie's file.

    Parameters
    ----------
    transactions:
        Canonical transactions frame (needs ``customer_id``, ``ts``, ``amount``,
        ``is_return``; other columns are ignored).
    cutoff:
        End of the calibration period (exclusive).
    time_unit_days:
        Length of one time unit in days (1 = days, 7 = weeks).
    observation_end:
        If given, end (exclusive) of a hold-out window ``[cutoff, observation_end)``;
        adds ``frequency_holdout`` (distinct purchase days in the window),
        ``monetary_holdout`` (summed ``amount`` of the window's non-return lines, i.e.
        gross spend, consistent with ``monetary_value``) and ``duration_holdout``
        (window length in time units).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (customers with at least one non-return line before
        ``cutoff``, sorted), columns ``frequency`` (distinct purchase days - 1),
        ``recency`` (first to last purchase day), ``T`` (first purchase day to the last
        calibration day, see above), ``monetary_value`` (mean value of the repeat purchase
        days, 0 when ``frequency == 0``) and the optional hold-out columns. Times are in
        units of ``time_unit_days``.
    """
    cutoff_ts, end_ts = _validate_summary_inputs(
        transactions, cutoff, time_unit_days, observation_end
    )
    unit = pd.Timedelta(days=float(time_unit_days))
    unit_seconds = unit.total_seconds()
    # Last calendar day (partly) inside the calibration window: lifetimes measures T up to
    # the start of that day, i.e. from purchase day to ``calibration_period_end`` inclusive.
    last_calibration_day = cutoff_ts.ceil("D") - pd.Timedelta(days=1)

    purchases = transactions.loc[
        ~transactions["is_return"].to_numpy(dtype=bool), ["customer_id", "ts", "amount"]
    ]
    ts = purchases["ts"]
    calib = purchases.loc[(ts < cutoff_ts).to_numpy()]

    daily = _daily_spend(calib)
    by_customer = daily.groupby("customer_id", sort=True)
    first_day = by_customer["day"].min()
    last_day = by_customer["day"].max()
    n_days = by_customer.size()
    total = by_customer["amount"].sum()
    # ``daily`` is sorted by (customer_id, day), so the first row of each group is the first day.
    first_amount = daily.drop_duplicates("customer_id", keep="first").set_index("customer_id")[
        "amount"
    ]

    frequency = (n_days - 1).astype(np.float64)
    repeat_spend = total - first_amount.reindex(total.index)
    monetary = np.where(frequency > 0, repeat_spend / frequency.where(frequency > 0, 1.0), 0.0)

    out = pd.DataFrame(
        {
            "frequency": frequency.to_numpy(),
            "recency": (last_day - first_day).dt.total_seconds().to_numpy() / unit_seconds,
            "T": (last_calibration_day - first_day).dt.total_seconds().to_numpy() / unit_seconds,
            "monetary_value": np.asarray(monetary, dtype=np.float64),
        },
        index=pd.Index(first_day.index, name="customer_id"),
    )

    if end_ts is not None:
        window = purchases.loc[((ts >= cutoff_ts) & (ts < end_ts)).to_numpy()]
        window = window.loc[window["customer_id"].isin(out.index).to_numpy()]
        hold_daily = _daily_spend(window)
        hold = hold_daily.groupby("customer_id", sort=True)
        out["frequency_holdout"] = (
            hold.size().reindex(out.index, fill_value=0).to_numpy(dtype=np.float64)
        )
        out["monetary_holdout"] = (
            hold["amount"].sum().reindex(out.index, fill_value=0.0).to_numpy(dtype=np.float64)
        )
        out["duration_holdout"] = float((end_ts - cutoff_ts) / unit)

    logger.debug("rfm_summary: %d customers before %s", len(out), cutoff_ts)
    return out


def _daily_spend(lines: pd.DataFrame) -> pd.DataFrame:
    """Sum ``amount`` per (customer_id, calendar day); sorted by customer then day."""
    frame = pd.DataFrame(
        {
            "customer_id": lines["customer_id"].reset_index(drop=True),
            "day": lines["ts"].dt.normalize().reset_index(drop=True),  # keeps a tz, if any
            "amount": lines["amount"].astype(np.float64).reset_index(drop=True),
        }
    )
    return frame.groupby(["customer_id", "day"], sort=True)["amount"].sum().reset_index()


def _validate_summary_inputs(
    transactions: pd.DataFrame,
    cutoff: pd.Timestamp,
    time_unit_days: float,
    observation_end: pd.Timestamp | None,
) -> tuple[pd.Timestamp, pd.Timestamp | None]:
    if not isinstance(transactions, pd.DataFrame):
        raise ValueError(
            f"transactions must be a pandas DataFrame, got {type(transactions).__name__}"
        )
    missing = [c for c in _REQUIRED_COLUMNS if c not in transactions.columns]
    if missing:
        raise ValueError(f"transactions is missing required column(s): {missing}")
    if not pd.api.types.is_datetime64_any_dtype(transactions["ts"]):
        raise ValueError(f"transactions['ts'] must be datetime64, got {transactions['ts'].dtype}")
    if transactions["ts"].isna().any():
        raise ValueError("transactions['ts'] contains missing timestamps")
    if transactions["customer_id"].isna().any():
        raise ValueError("transactions['customer_id'] contains missing ids")
    if not np.isfinite(transactions["amount"].to_numpy(dtype=np.float64)).all():
        raise ValueError("transactions['amount'] must be finite")
    if not (np.isfinite(time_unit_days) and time_unit_days > 0):
        raise ValueError(f"time_unit_days must be a positive finite number, got {time_unit_days!r}")

    tz = getattr(transactions["ts"].dt, "tz", None)

    def _stamp(name: str, value: Any) -> pd.Timestamp:
        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a timestamp, got {value!r}") from exc
        if pd.isna(stamp):
            raise ValueError(f"{name} must be a timestamp, got {value!r}")
        if (stamp.tz is None) != (tz is None):
            raise ValueError(
                f"{name} ({stamp}) and transactions['ts'] (tz={tz}) must both be tz-naive "
                "or both tz-aware"
            )
        return stamp

    cutoff_ts = _stamp("cutoff", cutoff)
    end_ts = None
    if observation_end is not None:
        end_ts = _stamp("observation_end", observation_end)
        if end_ts <= cutoff_ts:
            raise ValueError(f"observation_end ({end_ts}) must be after cutoff ({cutoff_ts})")
    return cutoff_ts, end_ts


# --------------------------------------------------------------------------- shared helpers


def _as_1d(name: str, values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN/inf)")
    return arr


def _validate_rfm(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, *, allow_empty: bool = False
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = _as_1d("frequency", frequency)
    t_x = _as_1d("recency", recency)
    big_t = _as_1d("T", T)
    if not (len(x) == len(t_x) == len(big_t)):
        raise ValueError(
            "frequency, recency and T must have the same length, "
            f"got {len(x)}, {len(t_x)}, {len(big_t)}"
        )
    if len(x) == 0 and not allow_empty:
        raise ValueError("at least one customer is required")
    problems = []
    if (x < 0).any() or (x != np.round(x)).any():
        problems.append("frequency must be non-negative integers")
    if (t_x < 0).any():
        problems.append("recency must be >= 0")
    if (big_t < 0).any():
        problems.append("T must be >= 0")
    if (t_x > big_t * (1 + 1e-9) + 1e-12).any():
        problems.append("recency must be <= T")
    if ((x == 0) & (t_x != 0)).any():
        problems.append("recency must be 0 when frequency is 0")
    if problems:
        raise ValueError("invalid RFM inputs: " + "; ".join(problems))
    return x, t_x, big_t


def _minimize_log_params(
    objective: Callable[[FloatArray], tuple[float, FloatArray]], n_params: int, name: str
) -> tuple[FloatArray, bool]:
    """Minimise ``objective`` (value and gradient) over log-parameters starting at 0:
    L-BFGS-B with the analytic gradient, polished by Nelder-Mead if it does not converge."""
    bounds = [_LOG_PARAM_BOUNDS] * n_params
    x0 = np.zeros(n_params)
    # L-BFGS-B's tiny 4x4 linear algebra goes through BLAS; a multi-threaded BLAS on a
    # busy machine spends ~5 ms per iteration spinning threads (20x the whole fit).
    single_thread = (
        threadpool_limits(limits=1, user_api="blas")
        if threadpool_limits is not None
        else contextlib.nullcontext()
    )
    with single_thread:
        res = optimize.minimize(
            objective,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
        )
    best, converged = res, bool(res.success)
    if not converged:
        logger.info(
            "%s: L-BFGS-B did not converge (%s); polishing with Nelder-Mead", name, res.message
        )
        nm = optimize.minimize(  # type: ignore[call-overload]  # stubs lack xatol/fatol
            lambda log_params: objective(log_params)[0],
            res.x,
            method="Nelder-Mead",
            bounds=bounds,
            options={"maxiter": 20000, "xatol": 1e-10, "fatol": 1e-13},
        )
        if nm.fun <= best.fun:
            best = nm
        converged = bool(nm.success)
    if not converged:
        logger.warning("%s: optimiser did not converge: %s", name, best.message)
    at_bound = np.abs(best.x) >= _LOG_PARAM_BOUNDS[1] - 1e-3
    if at_bound.any():
        logger.warning(
            "%s: parameter(s) %s ran to the edge of [exp(%g), exp(%g)]: the data do not identify "
            "the model (e.g. no heterogeneity or no dropout); predictions may be unreliable",
            name,
            np.flatnonzero(at_bound).tolist(),
            *_LOG_PARAM_BOUNDS,
        )
    return np.asarray(best.x, dtype=np.float64), converged


# --------------------------------------------------------------------------- BG/NBD


class BetaGeoFitter:
    """BG/NBD model (Fader, Hardie & Lee 2005) fitted by maximum likelihood.

    Transactions of an alive customer follow a Poisson process with rate
    ``lambda ~ Gamma(r, alpha)``; after each purchase the customer drops out with
    probability ``p ~ Beta(a, b)``.

    Parameters
    ----------
    penalizer_coef:
        L2 penalty ``penalizer_coef * sum(params**2)`` (natural-scale ``r, alpha, a, b``)
        added to the mean negative log-likelihood, as in ``lifetimes``. ``0`` is plain MLE.

    Attributes
    ----------
    params_:
        ``{"r", "alpha", "a", "b"}`` after ``fit``.
    log_likelihood_:
        Total (unpenalised) log-likelihood at ``params_``.
    converged_:
        Whether the optimiser reported convergence.
    n_customers_:
        Number of customers fitted.
    """

    def __init__(self, penalizer_coef: float = 0.0) -> None:
        self.penalizer_coef = penalizer_coef

    # ----------------------------------------------------------------- fitting
    def fit(self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> BetaGeoFitter:
        """Fit ``r, alpha, a, b`` on per-customer ``frequency`` (repeat purchases),
        ``recency`` and ``T`` (same time unit); returns ``self``."""
        if not (np.isfinite(self.penalizer_coef) and self.penalizer_coef >= 0):
            raise ValueError(
                f"penalizer_coef must be a non-negative number, got {self.penalizer_coef!r}"
            )
        x, t_x, big_t = _validate_rfm(frequency, recency, T)

        # Many customers share the same (x, t_x, T): fit on the unique rows with weights.
        rows, weights = np.unique(np.column_stack([x, t_x, big_t]), axis=0, return_counts=True)
        ux, utx, ut = rows[:, 0], rows[:, 1], rows[:, 2]
        w = weights.astype(np.float64)
        n = w.sum()
        penalty = float(self.penalizer_coef)

        def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
            params = np.exp(log_params)
            ll, grad = self._log_likelihood_and_grad(params, ux, utx, ut)
            value = -(w @ ll) / n + penalty * np.sum(params**2)
            # chain rule to log-parameters: d/d(log p) = p * d/dp
            return float(value), (-(w @ grad) / n + 2.0 * penalty * params) * params

        start = _time.perf_counter()
        log_params, converged = _minimize_log_params(objective, 4, "BetaGeoFitter")
        params = np.exp(log_params)
        self.params_: dict[str, float] = dict(
            zip(("r", "alpha", "a", "b"), map(float, params), strict=True)
        )
        self.log_likelihood_: float = float(w @ self._log_likelihood(params, ux, utx, ut))
        self.converged_: bool = converged
        self.n_customers_: int = int(n)
        logger.info(
            "BetaGeoFitter: fitted %d customers (%d unique rows) in %.2fs: %s, LL=%.2f",
            self.n_customers_,
            len(w),
            _time.perf_counter() - start,
            {k: round(v, 4) for k, v in self.params_.items()},
            self.log_likelihood_,
        )
        return self

    @staticmethod
    def _log_likelihood(
        params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> FloatArray:
        """Per-customer BG/NBD log-likelihood (FHL 2005 eq. 6), vectorised."""
        return BetaGeoFitter._log_likelihood_and_grad(params, x, t_x, T)[0]

    @staticmethod
    def _log_likelihood_and_grad(
        params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per-customer log-likelihood and its gradient ``(n, 4)`` w.r.t. ``r, alpha, a, b``.

        ``ll = A1 + A2 + log(exp(A3) + [x > 0] exp(A4))`` with
        ``A1 = lnG(r+x) - lnG(r) + r ln(alpha)``, ``A2 = lnB(a, b+x) - lnB(a, b)``,
        ``A3 = -(r+x) ln(alpha+T)``, ``A4 = ln a - ln(b+x-1) - (r+x) ln(alpha+t_x)``.
        """
        r, alpha, a, b = params
        rx = r + x
        log_at = np.log(alpha + T)
        log_atx = np.log(alpha + t_x)
        repeat = x > 0
        bx1 = np.where(repeat, b + x - 1.0, 1.0)  # b + x - 1, only used where x > 0
        a1 = gammaln(rx) - gammaln(r) + r * np.log(alpha)
        a2 = betaln(a, b + x) - betaln(a, b)
        a3 = -rx * log_at
        # Second term only exists for x > 0 (dropout right after the last purchase).
        a4 = np.where(repeat, np.log(a) - np.log(bx1) - rx * log_atx, -np.inf)
        mix = np.logaddexp(a3, a4)
        w3 = np.exp(a3 - mix)
        w4 = np.exp(a4 - mix)  # 0 where x == 0

        grad = np.empty((x.shape[0], 4))
        grad[:, 0] = digamma(rx) - digamma(r) + np.log(alpha) - w3 * log_at - w4 * log_atx
        grad[:, 1] = r / alpha - w3 * rx / (alpha + T) - w4 * rx / (alpha + t_x)
        dig_abx = digamma(a + b + x)
        grad[:, 2] = digamma(a + b) - dig_abx + w4 / a
        grad[:, 3] = digamma(b + x) - dig_abx - digamma(b) + digamma(a + b) - w4 / bx1
        return a1 + a2 + mix, grad

    # ----------------------------------------------------------------- predictions
    def _check_fitted(self) -> tuple[float, float, float, float]:
        if not hasattr(self, "params_"):
            raise NotFittedError("BetaGeoFitter is not fitted yet; call fit() first")
        p = self.params_
        return p["r"], p["alpha"], p["a"], p["b"]

    def _log_odds_dead(self, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
        """``log(1/P(alive) - 1)``: ``-inf`` for x = 0 (never-repeat customers are alive)."""
        return log_odds_dead(self._check_fitted(), x, t_x, T)

    def conditional_probability_alive(
        self, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """P(customer still alive at T | x, t_x, T) (FHL 2005 eq. 13 / Fader et al. note)."""
        x, t_x, big_t = _validate_rfm(frequency, recency, T, allow_empty=True)
        return np.exp(-np.logaddexp(0.0, self._log_odds_dead(x, t_x, big_t)))

    def conditional_expected_number_of_purchases_up_to_time(
        self, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
    ) -> FloatArray:
        """E[Y(t) | x, t_x, T]: expected purchases in ``(T, T + t]`` (FHL 2005 eq. 10).

        ``t`` may be a scalar or an array broadcastable with the customers. The Gauss
        hypergeometric term is evaluated after Euler's transformation,
        ``((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)
        = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)``, whose first two parameters do not
        grow with ``x``; this keeps ``hyp2f1`` accurate for heavy buyers. The "dead"
        odds are combined in log space so huge ``(alpha+T)/(alpha+t_x)`` ratios cannot
        overflow. (The formula has a removable singularity at ``a == 1``.)
        """
        self._check_fitted()
        x, t_x, big_t = _validate_rfm(frequency, recency, T, allow_empty=True)
        t_arr = np.asarray(t, dtype=np.float64)
        if not np.isfinite(t_arr).all() or (t_arr < 0).any():
            raise ValueError("t must be finite and >= 0")
        try:
            np.broadcast_shapes(t_arr.shape, x.shape)
        except ValueError as exc:
            raise ValueError(
                f"t of shape {t_arr.shape} does not broadcast with {x.shape[0]} customers"
            ) from exc
        return self._conditional_expected(t_arr, x, t_x, big_t)

    def _conditional_expected(
        self, t: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
    ) -> FloatArray:
        """Unvalidated, broadcasting core of the conditional expectation (tenure.btyd_math, which the online
        feature store evaluates without SciPy installed)."""
        return conditional_expected(self._check_fitted(), t, x, t_x, T)

    def expected_number_of_purchases_up_to_time(self, t: ArrayLike) -> FloatArray:
        """E[X(t)] for a customer who made her first purchase at time 0 (FHL 2005 eq. 9);
        repeat purchases only."""
        r, alpha, a, b = self._check_fitted()
        t_arr = np.asarray(t, dtype=np.float64)
        if not np.isfinite(t_arr).all() or (t_arr < 0).any():
            raise ValueError("t must be finite and >= 0")
        z = t_arr / (alpha + t_arr)
        # Euler transform as above: (alpha/(alpha+t))^r 2F1(r, b; a+b-1; z)
        #   = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b-1; z)
        tail = np.exp((a - 1.0) * np.log1p(-z)) * _hyp2f1(a + b - 1.0 - r, a - 1.0, a + b - 1.0, z)
        return np.where(t_arr == 0, 0.0, (a + b - 1.0) / (a - 1.0) * (1.0 - tail))

    def __repr__(self) -> str:
        fitted = (
            f", params_={ {k: round(v, 4) for k, v in self.params_.items()} }"
            if hasattr(self, "params_")
            else ""
        )
        return f"BetaGeoFitter(penalizer_coef={self.penalizer_coef}{fitted})"


# --------------------------------------------------------------------------- Gamma-Gamma


class GammaGammaFitter:
    """Gamma-Gamma model of average transaction value (Fader & Hardie 2013).

    A customer's transaction values are ``Gamma(p, nu)`` with ``nu ~ Gamma(q, v)``; the
    model assumes spend is independent of the purchase process.

    Parameters
    ----------
    penalizer_coef:
        L2 penalty ``penalizer_coef * sum(params**2)`` added to the mean negative
        log-likelihood (``lifetimes`` convention). ``0`` is plain MLE.

    Attributes
    ----------
    params_:
        ``{"p", "q", "v"}`` after ``fit``.
    log_likelihood_:
        Total (unpenalised) log-likelihood on the customers used.
    converged_:
        Whether the optimiser reported convergence.
    n_customers_:
        Number of customers used (``frequency > 0`` and ``monetary_value > 0``).
    """

    def __init__(self, penalizer_coef: float = 0.0) -> None:
        self.penalizer_coef = penalizer_coef

    def fit(self, frequency: ArrayLike, monetary_value: ArrayLike) -> GammaGammaFitter:
        """Fit ``p, q, v`` on repeat-purchase counts and mean repeat-purchase values.

        Customers with ``frequency == 0`` or ``monetary_value == 0`` carry no spend
        information and are skipped (their count is logged); negative values are an error.
        Returns ``self``.
        """
        if not (np.isfinite(self.penalizer_coef) and self.penalizer_coef >= 0):
            raise ValueError(
                f"penalizer_coef must be a non-negative number, got {self.penalizer_coef!r}"
            )
        x, m = self._validate(frequency, monetary_value)
        keep = (x > 0) & (m > 0)
        if keep.sum() < 2:
            raise ValueError(
                "GammaGammaFitter needs at least 2 customers with frequency > 0 "
                "and monetary_value > 0"
            )
        if (~keep).any():
            logger.info(
                "GammaGammaFitter: skipping %d customers with frequency or monetary_value == 0",
                (~keep).sum(),
            )
        x, m = x[keep], m[keep]
        penalty = float(self.penalizer_coef)
        n = float(len(x))

        def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
            params = np.exp(log_params)
            ll, grad = self._log_likelihood_and_grad(params, x, m)
            value = -ll.sum() / n + penalty * np.sum(params**2)
            return float(value), (-grad.sum(axis=0) / n + 2.0 * penalty * params) * params

        start = _time.perf_counter()
        log_params, converged = _minimize_log_params(objective, 3, "GammaGammaFitter")
        params = np.exp(log_params)
        self.params_: dict[str, float] = dict(zip(("p", "q", "v"), map(float, params), strict=True))
        self.log_likelihood_: float = float(self._log_likelihood(params, x, m).sum())
        self.converged_: bool = converged
        self.n_customers_: int = int(n)
        logger.info(
            "GammaGammaFitter: fitted %d customers in %.2fs: %s, LL=%.2f",
            self.n_customers_,
            _time.perf_counter() - start,
            {k: round(v, 4) for k, v in self.params_.items()},
            self.log_likelihood_,
        )
        if self.params_["q"] <= 1:
            logger.warning("GammaGammaFitter: q <= 1, the population mean spend is infinite")
        return self

    @staticmethod
    def _validate(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[FloatArray, FloatArray]:
        x = _as_1d("frequency", frequency)
        m = _as_1d("monetary_value", monetary_value)
        if len(x) != len(m):
            raise ValueError(
                f"frequency and monetary_value must have the same length, got {len(x)} and {len(m)}"
            )
        if (x < 0).any() or (x != np.round(x)).any():
            raise ValueError("frequency must be non-negative integers")
        if (m < 0).any():
            raise ValueError("monetary_value must be >= 0")
        return x, m

    @staticmethod
    def _log_likelihood(params: FloatArray, x: FloatArray, m: FloatArray) -> FloatArray:
        """Per-customer log-likelihood of the mean ``m`` of ``x`` transaction values."""
        return GammaGammaFitter._log_likelihood_and_grad(params, x, m)[0]

    @staticmethod
    def _log_likelihood_and_grad(
        params: FloatArray, x: FloatArray, m: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Log-likelihood per customer and its gradient ``(n, 3)`` w.r.t. ``p, q, v``."""
        p, q, v = params
        px = p * x
        log_vxm = np.log(v + x * m)
        ll = (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(v)
            + (px - 1.0) * np.log(m)
            + px * np.log(x)
            - (px + q) * log_vxm
        )
        dig = digamma(px + q)
        grad = np.empty((x.shape[0], 3))
        grad[:, 0] = x * (dig - digamma(px) + np.log(m) + np.log(x) - log_vxm)
        grad[:, 1] = dig - digamma(q) + np.log(v) - log_vxm
        grad[:, 2] = q / v - (px + q) / (v + x * m)
        return ll, grad

    def _check_fitted(self) -> tuple[float, float, float]:
        if not hasattr(self, "params_"):
            raise NotFittedError("GammaGammaFitter is not fitted yet; call fit() first")
        return self.params_["p"], self.params_["q"], self.params_["v"]

    def conditional_expected_average_profit(
        self, frequency: ArrayLike, monetary_value: ArrayLike
    ) -> FloatArray:
        """E[Z | x, z_bar] = p (v + x z_bar) / (p x + q - 1): a weighted mean of the
        population mean ``p v / (q - 1)`` and the customer's observed mean; customers with
        ``frequency == 0`` get the population mean."""
        p, q, v = self._check_fitted()
        x, m = self._validate(frequency, monetary_value)
        return expected_average_profit(p, q, v, x, m)

    def customer_lifetime_value(
        self,
        bgf: BetaGeoFitter,
        frequency: ArrayLike,
        recency: ArrayLike,
        T: ArrayLike,
        monetary_value: ArrayLike,
        time: float,
        discount_rate: float = 0.0,
        freq_days: float = 1.0,
    ) -> FloatArray:
        """Expected (discounted) spend over the next ``time`` units.

        Choice made here (simple, documented): CLV = expected purchases from the BG/NBD
        ``bgf`` x expected average spend from this model,

        * ``time`` is the horizon in the models' time unit (the ``time_unit_days`` the
          summary was built with), and ``freq_days`` is the length of that unit in days;
        * ``discount_rate`` is a rate per 30-day month (the ``lifetimes`` convention):
          the horizon is cut into 30-day buckets (the last one partial), the purchases
          expected in bucket ``k`` (``k = 1, 2, ...``) are discounted by
          ``(1 + discount_rate) ** k``. With ``discount_rate == 0`` this is exactly
          ``E[Y(time) | x, t_x, T] * E[Z | x, z_bar]``.

        No margin is applied: the result is expected revenue.
        """
        self._check_fitted()
        if not isinstance(bgf, BetaGeoFitter):
            raise ValueError(f"bgf must be a fitted BetaGeoFitter, got {type(bgf).__name__}")
        bgf._check_fitted()
        for name, value, ok in (
            ("time", time, np.isfinite(time) and time >= 0),
            ("discount_rate", discount_rate, np.isfinite(discount_rate) and discount_rate > -1),
            ("freq_days", freq_days, np.isfinite(freq_days) and freq_days > 0),
        ):
            if not ok:
                raise ValueError(f"invalid {name}: {value!r}")
        x, t_x, big_t = _validate_rfm(frequency, recency, T, allow_empty=True)
        spend = self.conditional_expected_average_profit(x, monetary_value)
        if len(spend) != len(x):
            raise ValueError("monetary_value must have the same length as frequency")

        if discount_rate == 0.0:
            purchases = bgf.conditional_expected_number_of_purchases_up_to_time(time, x, t_x, big_t)
            return purchases * spend

        month = 30.0 / freq_days  # one 30-day bucket in model units
        edges = np.append(np.arange(0.0, time, month), time)[:, None]  # (n_buckets + 1, 1)
        cumulative = bgf._conditional_expected(
            edges, x[None, :], t_x[None, :], big_t[None, :]
        )  # (n_buckets + 1, n_customers)
        per_bucket = np.diff(cumulative, axis=0)
        factors = (1.0 + discount_rate) ** -np.arange(1, per_bucket.shape[0] + 1, dtype=np.float64)
        return (factors @ per_bucket) * spend
