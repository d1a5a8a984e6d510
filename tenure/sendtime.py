"""Send-time optimisation: at what hour and on which weekday each customer is most likely to act.

Training (pandas, scipy; imported at first use) and serving (numpy and zoneinfo only) share this module.

Events: a customer's distinct orders (returns excluded; an order's time is its first line's) and, when
recorded, their recommendation clicks (tenure.feedback, weight CLICK_WEIGHT), each in the customer's
local time: the transactions' naive timestamps are in the shop's zone (Shop.timezone), converted per
customer when the customers file gives an IANA `timezone` (empty: the shop's), DST-correct.

The estimate, for the hour of day (24 bins) and the weekday (7 bins) separately, is empirical Bayes
in three levels: shop -> rhythm segment -> customer.

* Rhythm segments: a mixture of K Dirichlet-multinomial components fitted by EM to the customers' own
  counts. A customer's segment is soft: its weight on each component is the posterior given their
  events, so with no events the prior is the shop's pattern, with one event at 21:00 it leans to the
  evening segments, with many it is theirs. Why this grouping and not region or channel: what hides a
  customer's rhythm in the shop-wide pattern is their rhythm type (early bird, lunch, evening, night
  owl), which region and channel carry little of; the mixture finds the types in any shop's data.
  K = 1 is plain shrinkage to the shop. Each segment's pattern is itself shrunk to the shop's,
  (segment counts + a * shop) / (N_k + a).
* Customer: posterior mean (smoothed own counts + a * segment prior) / (n + a); own_weight = n / (n + a).
  The concentration a is fitted by maximising the Dirichlet-multinomial marginal likelihood of the
  customers' counts (never on a later window).
* Choices made on a validation window (the 90 days before the window they are tested or served on):
  K from CANDIDATE_K and, for the hours, a circular Gaussian smoothing of the own counts (sigma in
  CANDIDATE_SIGMA hours) that helps sparse customers; by the mean log-likelihood of each customer's
  first order in that window.

Evaluation (`evaluate`): the whole procedure (choices on [h - 180 d, h - 90 d), fit before the
holdout cutoff h = data end - 90 d) is tested on each customer's first order after h (customers with an
event before h): hit rate of the predicted best 3-hour window against the shop-wide best window and
a window centred on the customer's last-order hour; best weekday against the shop's and the last
order's; mean log-likelihood of the hour against the shop's distribution. The served table repeats the
procedure at the data end (choices on its last 90 days, fit on everything).

Served: SENDTIME_FILE beside the feature snapshot, rows in the snapshot's customer order, plus the
shop's pattern for customers the table lacks (`SendTimes`).
"""
from __future__ import annotations

import io
import logging
import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from tenure.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
else:
    from tenure.lazy import LazyModule

    pd = LazyModule("pandas")

log = logging.getLogger(__name__)

SENDTIME_FILE = "sendtime.npz"
HOURS, WEEKDAYS = 24, 7
WINDOW_HOURS = 3
CLICK_WEIGHT = 0.5
"""A recommendation click counts as half an order: it shows when the customer reads, not when they buy."""
HOLDOUT_DAYS = 90
CANDIDATE_K = (1, 4, 8)
CANDIDATE_SIGMA = (0.0, 0.75, 1.5)
MIN_EVENTS = 200
"""Fewer timestamped orders than this: no estimate."""
MIN_TEST_CUSTOMERS = 30
MIN_TIME_OF_DAY_SHARE = 0.05
"""Orders with a time of day other than midnight, at least this share: else the data has dates only."""
EM_ITERATIONS = 25
_EPS = 1e-12


# -- training: events in local time --------------------------------------------------------------------------


@dataclass
class Events:
    """Timestamped events in the customers' local time, one per order (or click)."""

    customer: np.ndarray
    """Customer code (index into `customer_ids`)."""
    hour: np.ndarray
    weekday: np.ndarray
    day: np.ndarray
    """Shop-time day number (days since 1970-01-01) of the event; used to split windows."""
    weight: np.ndarray
    is_order: np.ndarray
    customer_ids: np.ndarray
    zone: np.ndarray
    """Each customer's IANA zone (the shop's where unknown)."""
    shop_zone: str


def _check_zone(name: str, what: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DataError(f"{what}: {name!r} is not an IANA time zone name (e.g. 'Europe/Berlin')") from exc
    return name


def customer_zones(customers: pd.DataFrame | None, ids: np.ndarray, shop_zone: str) -> np.ndarray:
    """Each id's time zone: the customers file's `timezone` where given and valid, else the shop's."""
    zones = np.full(len(ids), shop_zone, dtype=object)
    if customers is None or "timezone" not in customers.columns:
        return zones
    given = customers[["customer_id", "timezone"]].dropna()
    given = given[given["timezone"].astype(str).str.strip() != ""]
    if given.empty:
        return zones
    by_id = pd.Series(given["timezone"].astype(str).str.strip().to_numpy(),
                      index=given["customer_id"].astype(str).to_numpy())
    by_id = by_id[~by_id.index.duplicated()]
    mapped = by_id.reindex(pd.Index(ids.astype(str))).to_numpy(object)
    for name in {z for z in mapped if isinstance(z, str)}:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("customers: time zone %r is not an IANA name; those customers use the shop's (%s)",
                        name[:64], shop_zone)
            mapped[mapped == name] = None
    known = np.array([isinstance(z, str) for z in mapped], bool)
    zones[known] = mapped[known]
    return zones


def has_time_of_day(ts: pd.Series) -> bool:
    """Whether the timestamps carry a time of day (not all at midnight, as in CDNOW)."""
    if len(ts) == 0:
        return False
    values = ts.to_numpy("datetime64[ns]").astype(np.int64)
    return float(np.mean(values % (86_400 * 10**9) != 0)) >= MIN_TIME_OF_DAY_SHARE


def local_parts(ts_shop: np.ndarray, zones: np.ndarray, shop_zone: str) -> tuple[np.ndarray, np.ndarray]:
    """Hour and weekday (0 Monday) of naive shop-time timestamps in each event's zone, DST-correct."""
    hour = np.empty(len(ts_shop), np.int64)
    weekday = np.empty(len(ts_shop), np.int64)
    index = pd.DatetimeIndex(ts_shop)
    for zone in pd.unique(zones):
        at = np.flatnonzero(zones == zone)
        local = index[at]
        if zone != shop_zone:
            local = (local.tz_localize(shop_zone, ambiguous=np.zeros(len(at), bool), nonexistent="shift_forward")
                     .tz_convert(zone))
        hour[at] = local.hour.to_numpy()
        weekday[at] = local.day_of_week.to_numpy()
    return hour, weekday


def order_events(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct order (returns excluded): customer_id, ts (its first line's)."""
    sales = transactions.loc[~transactions["is_return"].to_numpy(bool), ["customer_id", "order_id", "ts"]]
    first = sales.groupby(["customer_id", "order_id"], sort=False, observed=True)["ts"].min()
    return first.reset_index()[["customer_id", "ts"]]


def build_events(shop: Any, feedback: pd.DataFrame | None = None) -> Events:
    """The shop's orders (and clicks) in local time; DataError when there is nothing to estimate from."""
    shop_zone = _check_zone(getattr(shop, "timezone", "UTC") or "UTC", "shop time zone")
    orders = order_events(shop.transactions)
    if len(orders) < MIN_EVENTS:
        raise DataError(f"send time: {len(orders)} orders; at least {MIN_EVENTS} are needed")
    if not has_time_of_day(orders["ts"]):
        raise DataError("send time: the timestamps carry no time of day (every order at midnight): "
                        "best hours cannot be estimated")
    ids_o = orders["customer_id"].astype(str).to_numpy(object)
    ts = orders["ts"].to_numpy("datetime64[ns]")
    weights = np.ones(len(orders))
    is_order = np.ones(len(orders), bool)
    clicks = None
    if feedback is not None and len(feedback) and {"customer_id", "kind", "timestamp"} <= set(feedback.columns):
        clicks = feedback[(feedback["kind"] == 2) & feedback["customer_id"].notna()]
        clicks = clicks if len(clicks) else None
    ids_all = ids_o if clicks is None else np.concatenate([ids_o, clicks["customer_id"].astype(str).to_numpy(object)])
    customer_ids, codes = np.unique(ids_all.astype(str), return_inverse=True)
    zones = customer_zones(shop.customers, customer_ids, shop_zone)
    hour, weekday = local_parts(ts, zones[codes[:len(orders)]], shop_zone)
    day = ts.astype("datetime64[D]").astype(np.int64)
    if clicks is not None:
        # Unix seconds (UTC): into the shop's zone for the windows, the customer's for the hour
        utc = pd.DatetimeIndex(pd.to_datetime(clicks["timestamp"].to_numpy(np.float64), unit="s", utc=True))
        c_codes = codes[len(orders):]
        shop_local = utc.tz_convert(shop_zone).tz_localize(None).to_numpy("datetime64[ns]")
        c_hour, c_weekday = local_parts(shop_local, zones[c_codes], shop_zone)
        hour, weekday = np.concatenate([hour, c_hour]), np.concatenate([weekday, c_weekday])
        day = np.concatenate([day, shop_local.astype("datetime64[D]").astype(np.int64)])
        weights = np.concatenate([weights, np.full(len(clicks), CLICK_WEIGHT)])
        is_order = np.concatenate([is_order, np.zeros(len(clicks), bool)])
    return Events(customer=codes.astype(np.int64), hour=hour, weekday=weekday, day=day, weight=weights,
                  is_order=is_order, customer_ids=customer_ids.astype(object), zone=zones, shop_zone=shop_zone)


def bin_counts(customer: np.ndarray, bins: np.ndarray, weight: np.ndarray, n_customers: int, n_bins: int) -> np.ndarray:
    """(n_customers, n_bins) weighted event counts."""
    flat = np.bincount(customer * n_bins + bins, weights=weight, minlength=n_customers * n_bins)
    return flat.reshape(n_customers, n_bins)


# -- training: the hierarchical estimate ---------------------------------------------------------------------


def circular_kernel(n_bins: int, sigma: float) -> np.ndarray:
    """(n_bins, n_bins) column-stochastic circular Gaussian kernel (identity for sigma 0)."""
    if sigma <= 0:
        return np.eye(n_bins)
    d = np.arange(n_bins)
    dist = np.minimum(np.abs(d[:, None] - d[None, :]), n_bins - np.abs(d[:, None] - d[None, :]))
    k = np.exp(-0.5 * (dist / sigma) ** 2)
    return k / k.sum(axis=0, keepdims=True)


def _dm_loglik(counts: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(C, K): Dirichlet-multinomial log-likelihood (without the multinomial coefficient, the same for
    every component) of each row of counts under each component's parameters alpha (K, B)."""
    from scipy.special import gammaln

    n = counts.sum(axis=1)
    rows, cols = np.nonzero(counts)
    c = counts[rows, cols]
    terms = gammaln(c[:, None] + alpha[:, cols].T) - gammaln(alpha[:, cols].T)  # (nnz, K)
    out = np.zeros((len(counts), len(alpha)))
    if len(rows):
        _sum_rows(out, rows, terms)
    a0 = alpha.sum(axis=1)
    return out + gammaln(a0)[None, :] - gammaln(n[:, None] + a0[None, :])


def _sum_rows(out: np.ndarray, rows: np.ndarray, terms: np.ndarray) -> None:
    """out[rows] += terms with rows sorted ascending (np.nonzero's order): reduceat per run of a row."""
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    out[rows[starts]] += np.add.reduceat(terms, starts, axis=0)


@dataclass
class Rhythm:
    """A fitted hierarchical estimate over one cycle (hours or weekdays)."""

    shop: np.ndarray
    """(B,) the shop's pattern."""
    segments: np.ndarray
    """(K, B) the segments' patterns (each shrunk to the shop's)."""
    mix: np.ndarray
    """(K,) the segments' shares among customers with events."""
    concentration: float
    sigma: float = 0.0
    """Circular smoothing of the own counts, in bins (0: none)."""

    def prior(self, counts: np.ndarray) -> np.ndarray:
        """(C, B): each customer's segment pattern, the segments weighted by their posterior given the counts."""
        if len(self.segments) == 1:
            return np.repeat(self.segments, len(counts), axis=0)
        log_r = np.log(self.mix + _EPS)[None, :] + _dm_loglik(counts, self.concentration * self.segments)
        log_r -= log_r.max(axis=1, keepdims=True)
        r = np.exp(log_r)
        r /= r.sum(axis=1, keepdims=True)
        return r @ self.segments

    def posterior(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(C, B) distributions and (C,) own weights n / (n + a)."""
        n = counts.sum(axis=1)
        own = counts @ circular_kernel(counts.shape[1], self.sigma).T if self.sigma > 0 else counts
        a = self.concentration
        P = (own + a * self.prior(counts)) / (n + a)[:, None]
        return P / P.sum(axis=1, keepdims=True), n / (n + a)


def _marginal(counts: np.ndarray, segments: np.ndarray, mix: np.ndarray, a: float) -> float:
    ll = np.log(mix + _EPS)[None, :] + _dm_loglik(counts, a * segments)
    top = ll.max(axis=1)
    return float(np.sum(top + np.log(np.exp(ll - top[:, None]).sum(axis=1))))


def _fit_concentration(counts: np.ndarray, segments: np.ndarray, mix: np.ndarray) -> float:
    """argmax over a of the mixture's Dirichlet-multinomial marginal likelihood (golden section on log a)."""
    lo, hi = math.log(0.05), math.log(1000.0)
    g = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = _marginal(counts, segments, mix, math.exp(x1)), _marginal(counts, segments, mix, math.exp(x2))
    for _ in range(18):
        if f1 > f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - g * (hi - lo)
            f1 = _marginal(counts, segments, mix, math.exp(x1))
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + g * (hi - lo)
            f2 = _marginal(counts, segments, mix, math.exp(x2))
    return float(math.exp((lo + hi) / 2))


def fit_rhythm(counts: np.ndarray, k: int, sigma: float = 0.0, seed: int = 0) -> Rhythm:
    """The hierarchical estimate from (C, B) counts: K segments by EM, the concentration by marginal likelihood."""
    counts = np.asarray(counts, np.float64)
    n = counts.sum(axis=1)
    B = counts.shape[1]
    total = counts.sum(axis=0)
    if total.sum() <= 0:
        raise DataError("send time: no events to estimate from")
    shop = (total + 0.5) / (total.sum() + 0.5 * B)
    data = counts[n > 0]
    if k <= 1 or len(data) < 10 * k:
        seg, mix = shop[None, :], np.ones(1)
        return Rhythm(shop, seg, mix, _fit_concentration(data, seg, mix), sigma)
    # start: k-means++ centres among the profiles of customers with a few events
    rng = np.random.default_rng(seed)
    rich = data[data.sum(axis=1) >= 3]
    rich = rich if len(rich) >= 10 * k else data
    profiles = (rich @ circular_kernel(B, 1.0).T if B == HOURS else rich) / rich.sum(axis=1, keepdims=True)
    centres = [profiles[rng.integers(len(profiles))]]
    for _ in range(k - 1):
        d = np.min([((profiles - c) ** 2).sum(axis=1) for c in centres], axis=0)
        centres.append(profiles[rng.choice(len(profiles), p=d / d.sum()) if d.sum() > 0 else rng.integers(len(profiles))])
    segments = np.asarray(centres) * 0.7 + 0.3 * shop[None, :]
    segments /= segments.sum(axis=1, keepdims=True)
    mix = np.full(k, 1.0 / k)
    a = 10.0
    for it in range(EM_ITERATIONS):
        log_r = np.log(mix + _EPS)[None, :] + _dm_loglik(data, a * segments)
        log_r -= log_r.max(axis=1, keepdims=True)
        r = np.exp(log_r)
        r /= r.sum(axis=1, keepdims=True)
        mix = r.mean(axis=0)
        soft = r.T @ data  # (K, B)
        segments = (soft + a * shop[None, :]) / (soft.sum(axis=1, keepdims=True) + a)
        if it in (4, 12, EM_ITERATIONS - 2):
            a = _fit_concentration(data, segments, mix)
    keep = mix > 1e-4
    segments, mix = segments[keep], mix[keep] / mix[keep].sum()
    return Rhythm(shop, segments, mix, a, sigma)


def mean_loglik(P: np.ndarray, rows: np.ndarray, bins: np.ndarray) -> float:
    return float(np.mean(np.log(np.maximum(P[rows, bins], _EPS))))


def best_window(P: np.ndarray, width: int = WINDOW_HOURS) -> np.ndarray:
    """First hour of the circular `width`-hour window with the highest probability, per row of (C, 24)."""
    s = sum(np.roll(P, -j, axis=1) for j in range(width))
    return np.argmax(s, axis=1)


def in_window(start: np.ndarray, hour: np.ndarray, width: int = WINDOW_HOURS) -> np.ndarray:
    return (hour - start) % HOURS < width


def _first_after(ev: Events, start_day: int, end_day: int) -> tuple[np.ndarray, np.ndarray]:
    """Per customer with an event before start_day, the index of their first ORDER in [start_day, end_day)."""
    before = np.zeros(len(ev.customer_ids), bool)
    before[ev.customer[ev.day < start_day]] = True
    idx = np.flatnonzero(ev.is_order & (ev.day >= start_day) & (ev.day < end_day) & before[ev.customer])
    # events are in order-table order, not time order: the earliest day (then hour) per customer
    order = np.lexsort((ev.hour[idx], ev.day[idx], ev.customer[idx]))
    idx = idx[order]
    first = np.r_[True, ev.customer[idx][1:] != ev.customer[idx][:-1]] if len(idx) else np.zeros(0, bool)
    idx = idx[first]
    return ev.customer[idx], idx


def _counts_before(ev: Events, day: int) -> tuple[np.ndarray, np.ndarray]:
    m = ev.day < day
    C = len(ev.customer_ids)
    return (bin_counts(ev.customer[m], ev.hour[m], ev.weight[m], C, HOURS),
            bin_counts(ev.customer[m], ev.weekday[m], ev.weight[m], C, WEEKDAYS))


@dataclass
class Choice:
    k_hour: int
    sigma: float
    k_weekday: int
    validation: dict[str, float]


def choose(ev: Events, start_day: int, end_day: int, seed: int = 0) -> Choice:
    """K and sigma for the hours, K for the weekdays, by the mean log-likelihood of each customer's first
    order in [start_day, end_day) under the estimate fitted on the events before start_day."""
    hours, weekdays = _counts_before(ev, start_day)
    rows, idx = _first_after(ev, start_day, end_day)
    if len(rows) < MIN_TEST_CUSTOMERS:
        return Choice(CANDIDATE_K[-1], CANDIDATE_SIGMA[1], CANDIDATE_K[1], {"validation_customers": float(len(rows))})
    best_h: tuple[float, int, float] = (-math.inf, 1, 0.0)
    scores: dict[str, float] = {"validation_customers": float(len(rows))}
    for k in CANDIDATE_K:
        fit = fit_rhythm(hours, k, seed=seed)
        for sigma in CANDIDATE_SIGMA:
            fit.sigma = sigma
            P, _ = fit.posterior(hours[rows])
            ll = mean_loglik(P, np.arange(len(rows)), ev.hour[idx])
            scores[f"validation_hour_loglik_k{k}_s{sigma:g}"] = round(ll, 4)
            if ll > best_h[0]:
                best_h = (ll, k, sigma)
    best_w: tuple[float, int] = (-math.inf, 1)
    for k in CANDIDATE_K[:2]:
        fit = fit_rhythm(weekdays, k, seed=seed)
        P, _ = fit.posterior(weekdays[rows])
        ll = mean_loglik(P, np.arange(len(rows)), ev.weekday[idx])
        scores[f"validation_weekday_loglik_k{k}"] = round(ll, 4)
        if ll > best_w[0]:
            best_w = (ll, k)
    return Choice(best_h[1], best_h[2], best_w[1], scores)


def _fit_on(ev: Events, day: int, choice: Choice, seed: int) -> tuple[Rhythm, Rhythm, np.ndarray, np.ndarray]:
    hours, weekdays = _counts_before(ev, day)
    return fit_rhythm(hours, choice.k_hour, choice.sigma, seed), fit_rhythm(weekdays, choice.k_weekday, 0.0, seed), \
        hours, weekdays


def _day_number(t: pd.Timestamp) -> int:
    return int(np.datetime64(pd.Timestamp(t).normalize().to_datetime64(), "D").astype(np.int64))


MIN_WINDOW_DAYS = 14
MIN_HISTORY_DAYS = 14
"""The shortest holdout (and validation) window, and the history the first fit needs before them."""


def holdout_days(shop: Any) -> int:
    """The holdout and validation windows' length: HOLDOUT_DAYS, or for a short history the longest that leaves
    MIN_HISTORY_DAYS before them; DataError when even MIN_WINDOW_DAYS do not fit."""
    ts = shop.transactions["ts"]
    span = int((pd.Timestamp(ts.max()).normalize() - pd.Timestamp(ts.min()).normalize()).days) + 1
    days = min(HOLDOUT_DAYS, (span - MIN_HISTORY_DAYS) // 2)
    if days < MIN_WINDOW_DAYS:
        raise DataError(f"send time: not enough history: the orders span {span} days; a validation and a holdout "
                        f"window of at least {MIN_WINDOW_DAYS} days each after {MIN_HISTORY_DAYS} days of history "
                        f"need {2 * MIN_WINDOW_DAYS + MIN_HISTORY_DAYS}")
    return days


def evaluate(shop: Any, feedback: pd.DataFrame | None = None, seed: int = 0,
             events: Events | None = None) -> dict[str, Any]:
    """Holdout metrics of the send-time estimate against its baselines (see the module docstring)."""
    ev = events or build_events(shop, feedback)
    days = holdout_days(shop)
    end = _day_number(pd.Timestamp(shop.transactions["ts"].max())) + 1
    cutoff, val_start = end - days, end - 2 * days
    choice = choose(ev, val_start, cutoff, seed)
    hour_fit, weekday_fit, hours, weekdays = _fit_on(ev, cutoff, choice, seed)
    rows, idx = _first_after(ev, cutoff, end)
    if len(rows) < MIN_TEST_CUSTOMERS:
        raise DataError(f"send time: {len(rows)} customers order in the last {days} days after an earlier "
                        f"order; at least {MIN_TEST_CUSTOMERS} are needed for the holdout")
    P, own = hour_fit.posterior(hours[rows])
    W, _ = weekday_fit.posterior(weekdays[rows])
    h_true, w_true = ev.hour[idx], ev.weekday[idx]
    shop_start = int(best_window(hour_fit.shop[None, :])[0])
    # the customer's last event before the cutoff: its hour and weekday
    before = np.flatnonzero((ev.day < cutoff) & ev.is_order)
    last_order = np.lexsort((ev.hour[before], ev.day[before], ev.customer[before]))
    b = before[last_order]
    last = np.full(len(ev.customer_ids), -1)
    last[ev.customer[b]] = b  # later rows overwrite: the last one
    li = last[rows]
    has_last = li >= 0
    last_hour = np.where(has_last, ev.hour[np.maximum(li, 0)], shop_start + 1)
    last_weekday = np.where(has_last, ev.weekday[np.maximum(li, 0)], int(np.argmax(weekday_fit.shop)))
    n_prior = hours[rows].sum(axis=1)
    m: dict[str, Any] = {
        "holdout_days": days, "holdout_customers": int(len(rows)),
        "holdout_cutoff": str(np.datetime64(cutoff, "D")),
        "train_events": int(np.sum(ev.day < cutoff)),
        "median_prior_events": float(np.median(n_prior)),
        "window_hit_rate": float(np.mean(in_window(best_window(P), h_true))),
        "baseline_shop_window_hit_rate": float(np.mean(in_window(np.full(len(rows), shop_start), h_true))),
        "baseline_last_order_window_hit_rate": float(np.mean(in_window((last_hour - 1) % HOURS, h_true))),
        "weekday_hit_rate": float(np.mean(np.argmax(W, axis=1) == w_true)),
        "baseline_shop_weekday_hit_rate": float(np.mean(int(np.argmax(weekday_fit.shop)) == w_true)),
        "baseline_last_order_weekday_hit_rate": float(np.mean(last_weekday == w_true)),
        "hour_loglik": mean_loglik(P, np.arange(len(rows)), h_true),
        "baseline_shop_hour_loglik": float(np.mean(np.log(hour_fit.shop[h_true]))),
        "chance_window_hit_rate": WINDOW_HOURS / HOURS,
        "k_hour": choice.k_hour, "sigma_hours": choice.sigma, "k_weekday": choice.k_weekday,
        "concentration_hour": round(hour_fit.concentration, 3),
        "concentration_weekday": round(weekday_fit.concentration, 3),
        "mean_own_weight": float(np.mean(own)),
        "customers_other_zone": int(np.sum(ev.zone != ev.shop_zone)),
        "timezone": ev.shop_zone,
    }
    sparse = n_prior <= 2
    if sparse.sum() >= MIN_TEST_CUSTOMERS:
        m["window_hit_rate_sparse"] = float(np.mean(in_window(best_window(P[sparse]), h_true[sparse])))
        m["baseline_shop_window_hit_rate_sparse"] = float(np.mean(in_window(np.full(int(sparse.sum()), shop_start),
                                                                           h_true[sparse])))
    for key, value in list(m.items()):
        if isinstance(value, float):
            m[key] = round(value, 4)
    m.update(choice.validation)
    return m


def metrics_rows(m: dict[str, Any], dataset: str) -> list[str]:
    """training.pipeline.metrics_table's rows of the "send-time" result."""
    label = f"send time ({m['holdout_days']} d, {m['holdout_customers']:,} customers)"
    rows = [f"| {dataset} | {label} | best 3-h window hit rate | {m['window_hit_rate']:.3f} | shop-wide best window | "
            f"{m['baseline_shop_window_hit_rate']:.3f} |",
            f"| {dataset} | {label} | best 3-h window hit rate | {m['window_hit_rate']:.3f} | window at last order's hour | "
            f"{m['baseline_last_order_window_hit_rate']:.3f} |",
            f"| {dataset} | {label} | best weekday hit rate | {m['weekday_hit_rate']:.3f} | shop-wide best weekday | "
            f"{m['baseline_shop_weekday_hit_rate']:.3f} |",
            f"| {dataset} | {label} | best weekday hit rate | {m['weekday_hit_rate']:.3f} | last order's weekday | "
            f"{m['baseline_last_order_weekday_hit_rate']:.3f} |",
            f"| {dataset} | {label} | mean log-likelihood of the hour | {m['hour_loglik']:.3f} | shop's hour distribution | "
            f"{m['baseline_shop_hour_loglik']:.3f} |"]
    if "window_hit_rate_sparse" in m:
        rows.append(f"| {dataset} | {label} | window hit rate, <= 2 prior orders | {m['window_hit_rate_sparse']:.3f} | "
                    f"shop-wide best window | {m['baseline_shop_window_hit_rate_sparse']:.3f} |")
    return rows


# -- the served table ----------------------------------------------------------------------------------------


def table_bytes(shop: Any, cutoff: pd.Timestamp, customer_ids: np.ndarray, feedback: pd.DataFrame | None = None,
                seed: int = 0) -> bytes:
    """SENDTIME_FILE's contents for the snapshot's customers (rows in `customer_ids` order), fitted on the
    events before `cutoff` with K and sigma chosen on its last window. DataError when it cannot be estimated."""
    ev = build_events(shop, feedback)
    end = _day_number(cutoff)
    choice = choose(ev, end - holdout_days(shop), end, seed)  # too short a history: DataError, no table
    hour_fit, weekday_fit, hours, weekdays = _fit_on(ev, end, choice, seed)
    pos = pd.Index(ev.customer_ids.astype(str)).get_indexer(np.asarray(customer_ids).astype(str))
    known = pos >= 0
    H = np.zeros((len(pos), HOURS))
    W = np.zeros((len(pos), WEEKDAYS))
    H[known], W[known] = hours[pos[known]], weekdays[pos[known]]
    P, own = hour_fit.posterior(H)
    Q, _ = weekday_fit.posterior(W)
    names = sorted(set(ev.zone[pos[known]].tolist()) | {ev.shop_zone})
    code = {z: i for i, z in enumerate(names)}
    zone_codes = np.full(len(pos), code[ev.shop_zone], np.uint16)
    zone_codes[known] = np.array([code[z] for z in ev.zone[pos[known]]], np.uint16)
    zone_codes_from_file = customer_zones(shop.customers, np.asarray(customer_ids).astype(str), ev.shop_zone)
    for i in np.flatnonzero(~known):  # customers without events: their zone still counts for the sending
        z = zone_codes_from_file[i]
        if z not in code:
            code[z] = len(names)
            names.append(z)
        zone_codes[i] = code[z]
    buf = io.BytesIO()
    np.savez_compressed(
        buf, hour=P.astype(np.float16), weekday=Q.astype(np.float16), events=H.sum(axis=1).astype(np.float32),
        own_weight=own.astype(np.float16), zone=zone_codes, zones=np.array(names, dtype=str),
        # a customer the table lacks is answered as one without events (the segments' mix: the shop's pattern)
        shop_hour=hour_fit.posterior(np.zeros((1, HOURS)))[0][0].astype(np.float32),
        shop_weekday=weekday_fit.posterior(np.zeros((1, WEEKDAYS)))[0][0].astype(np.float32),
        shop_zone=np.array(ev.shop_zone), params=np.array([choice.k_hour, choice.sigma, choice.k_weekday,
                                                           hour_fit.concentration, weekday_fit.concentration]))
    log.info("send time: %d customers (%d with events), K=%d sigma=%g (hours), K=%d (weekdays), a=%.2f / %.2f",
             len(pos), int(known.sum()), choice.k_hour, choice.sigma, choice.k_weekday, hour_fit.concentration,
             weekday_fit.concentration)
    return buf.getvalue()


def snapshot_files(shop: Any, cutoff: pd.Timestamp, customer_ids: np.ndarray,
                   feedback: pd.DataFrame | None = None) -> dict[str, bytes]:
    """{SENDTIME_FILE: table} for write_snapshot's extra files; {} (logged) when the data cannot support it:
    the snapshot never fails for it."""
    try:
        return {SENDTIME_FILE: table_bytes(shop, cutoff, customer_ids, feedback)}
    except DataError as exc:
        log.info("no send-time table: %s", exc)
    except Exception:  # noqa: BLE001 - the snapshot must not fail for an optional table
        log.warning("no send-time table: estimation failed", exc_info=True)
    return {}


# -- serving (numpy and zoneinfo only) -----------------------------------------------------------------------


class SendTimes:
    """The served table of one feature snapshot version: per snapshot row, and the shop's pattern for others."""

    def __init__(self, path: Path, n_rows: int) -> None:
        with np.load(path, allow_pickle=False) as z:
            hour = z["hour"].astype(np.float32)
            weekday = z["weekday"].astype(np.float32)
            self.events = z["events"].astype(np.float64)
            self.own_weight = z["own_weight"].astype(np.float32)
            self.zone = z["zone"].astype(np.int64)
            self.zones = [str(s) for s in z["zones"].tolist()]
            shop_hour, shop_weekday = z["shop_hour"].astype(np.float64), z["shop_weekday"].astype(np.float64)
            self.shop_zone = str(z["shop_zone"])
        if len(hour) != n_rows:
            raise ValueError(f"{path}: {len(hour)} rows; the snapshot has {n_rows} customers")
        self.hour = hour / hour.sum(axis=1, keepdims=True)
        self.weekday = weekday / weekday.sum(axis=1, keepdims=True)
        self.best_hour = np.argmax(self.hour, axis=1)
        self.best_window = best_window(self.hour)
        self.best_weekday = np.argmax(self.weekday, axis=1)
        self.shop_hour = shop_hour / shop_hour.sum()
        self.shop_weekday = shop_weekday / shop_weekday.sum()
        self._shop = {
            "best_hour": int(np.argmax(self.shop_hour)), "best_window_start_hour": int(best_window(self.shop_hour[None, :])[0]),
            "best_weekday": int(np.argmax(self.shop_weekday)), "hour_distribution": self.shop_hour.tolist(),
            "weekday_distribution": self.shop_weekday.tolist(), "timezone": self.shop_zone, "events": 0,
            "own_weight": 0.0}
        self._next: dict[tuple[str, int, float], str] = {}

    def fields(self, row: int) -> dict[str, Any]:
        """The SendTime message's fields of a snapshot row (-1: a customer the table lacks: the shop's pattern)."""
        if row < 0:
            return dict(self._shop)
        return {"best_hour": int(self.best_hour[row]), "best_window_start_hour": int(self.best_window[row]),
                "best_weekday": int(self.best_weekday[row]), "hour_distribution": self.hour[row].tolist(),
                "weekday_distribution": self.weekday[row].tolist(), "timezone": self.zones[self.zone[row]],
                "events": int(round(self.events[row])), "own_weight": float(self.own_weight[row])}

    def zone_of(self, row: int) -> str:
        return self.zones[self.zone[row]] if row >= 0 else self.shop_zone

    def next_send_at(self, row: int, now: datetime) -> str:
        """The next start of the row's best hour in its zone strictly after `now` (aware), ISO 8601 UTC."""
        zone = self.zone_of(row)
        hour = int(self.best_hour[row]) if row >= 0 else self._shop["best_hour"]
        key = (zone, hour, now.timestamp())
        got = self._next.get(key)
        if got is None:
            got = next_start(hour, zone, now)
            if len(self._next) > 10_000:
                self._next.clear()
            self._next[key] = got
        return got


def next_start(hour: int, zone: str, now: datetime) -> str:
    """The first instant after `now` at which the wall clock in `zone` reads hour:00 (a day whose hour:00
    does not exist, at a DST change, is skipped), as ISO 8601 in UTC."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    day = local.date()
    for add in range(3):
        d = day + timedelta(days=add)
        candidate = datetime(d.year, d.month, d.day, hour, tzinfo=tz)
        utc = candidate.astimezone(timezone.utc)
        if utc.astimezone(tz).hour != hour:  # not a wall time of that day (spring forward)
            continue
        if utc > now.astimezone(timezone.utc):
            return utc.isoformat().replace("+00:00", "Z")
    raise AssertionError("unreachable: a wall hour exists on one of three days")


_cache: dict[str, SendTimes | None] = {}
_cache_lock = threading.Lock()


def for_snapshot(snapshot: Any) -> SendTimes | None:
    """The snapshot version's table (loaded once per version directory; None when it has none)."""
    vdir = getattr(snapshot, "version_dir", None)
    if vdir is None:
        return None
    key = str(vdir)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    path = Path(vdir) / SENDTIME_FILE
    table: SendTimes | None = None
    if path.exists():
        try:
            table = SendTimes(path, len(snapshot.customer_ids))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("send-time table %s not loaded: %s", path, exc)
    with _cache_lock:
        if len(_cache) >= 8:
            _cache.pop(next(iter(_cache)))
        _cache[key] = table
    return table
