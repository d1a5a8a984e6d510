"""Churn reasons in plain words, risk bands and expected time to churn, computed at serving.

Reasons come from per-feature contributions (see training/contrib.py: path contributions of the
churn model, in log-odds, summing to its margin). Only features pushing *toward* churn
(contribution > 0) are reasons; the top k are taken largest first (ties: lower column first) and
each is written with the customer's own values from the feature row, one template per feature
family (features as laid out by `tenure.features.FeatureSpace.names`), with a generic
"<feature> = <value>" for anything else. The selection is numpy over the whole batch; only the
<= k texts per row are formatted in Python.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Reason", "ReasonWriter", "top_positive", "top_reasons", "risk_band", "risk_bands",
           "expected_days_to_churn"]


class Reason(NamedTuple):
    """One reason: the feature, its contribution (log-odds toward churn) and the sentence."""

    feature: str
    contribution: float
    text: str


def top_positive(contributions: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k largest positive contributions, largest first (ties: lower column first).

    Returns (columns int64 [N, k], -1 where a row has fewer than k positive values; values float64
    [N, k], 0 there). NaN counts as not positive."""
    c = np.asarray(contributions, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"contributions must be 2-D [rows, features], got shape {c.shape}")
    k = min(k, c.shape[1])
    masked = np.where(c > 0, c, -np.inf)
    cols = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(masked, cols, axis=1)
    ok = vals > 0
    return np.where(ok, cols, -1), np.where(ok, vals, 0.0)


# ---- value formatting: the same few rules everywhere, so texts show the values as stored -------------

def _num(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e6 else f"{v:,.0f}"


def _count(v: float, one: str, many: str) -> str:
    n = int(round(v))
    return f"{n} {one if n == 1 else many}"


def _days(v: float) -> str:
    return _count(v, "day", "days")


def _money(v: float) -> str:
    return f"{v:,.2f}"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%" if 0 < abs(v) < 0.01 else f"{100 * v:.0f}%"


def _times(v: float) -> str:
    return f"{v:.1f}x"


Template = Callable[[Sequence[float], float], str]


class ReasonWriter:
    """Reasons for rows of one feature layout. Build once per model version, reuse for every batch."""

    def __init__(self, feature_names: Sequence[str], k: int = 3) -> None:
        self.names = list(feature_names)
        self.k = k
        self._col = {n: i for i, n in enumerate(self.names)}
        self._templates: list[Template] = [self._template(n) for n in self.names]

    # -- public --------------------------------------------------------------------------------------

    def explain(self, contributions: np.ndarray, X: np.ndarray, k: int | None = None) -> list[list[Reason]]:
        """Rows of contributions ([N, F] or [N, F + 1] with the bias last) and features [N, F] ->
        up to k reasons per row, largest contribution first."""
        C, X = self._check(contributions, X)
        cols, vals = top_positive(C, self.k if k is None else k)
        out: list[list[Reason]] = []
        names, templates = self.names, self._templates
        for row, rc, rv in zip(X.tolist(), cols.tolist(), vals.tolist()):
            out.append([Reason(names[j], v, templates[j](row, row[j])) for j, v in zip(rc, rv) if j >= 0])
        return out

    def explain_values(self, contributions: Sequence[float], x: Sequence[float], k: int | None = None) -> list[Reason]:
        """`explain` of one row given as plain floats (contributions [F] or [F + 1] with the bias
        last, features [F]): the same reasons in the same order, without numpy's per-call cost (the
        per-request path)."""
        F = len(self.names)
        if len(x) != F or len(contributions) not in (F, F + 1):
            raise ValueError(f"expected {F} features and {F} or {F + 1} contributions, "
                             f"got {len(x)} and {len(contributions)}")
        # (-value, column) ascending = largest first, ties lower column first (explain's stable sort);
        # NaN is not > 0, so it is never a reason.
        top = heapq.nsmallest(self.k if k is None else k,
                              [(-v, j) for j, v in enumerate(contributions[:F]) if v > 0])
        names, templates = self.names, self._templates
        return [Reason(names[j], -v, templates[j](x, x[j])) for v, j in top]

    def explain_row(self, contributions: np.ndarray, x: np.ndarray, k: int | None = None) -> list[Reason]:
        """One row: contributions [F] or [F + 1], features [F]."""
        return self.explain(np.asarray(contributions)[None, :], np.asarray(x)[None, :], k)[0]

    def text(self, feature: str | int, x: np.ndarray) -> str:
        """The sentence for one feature of one feature row."""
        j = self._col[feature] if isinstance(feature, str) else int(feature)
        row = np.asarray(x, dtype=np.float64).tolist()
        return self._templates[j](row, row[j])

    # -- internals -----------------------------------------------------------------------------------

    def _check(self, contributions: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        C = np.asarray(contributions)
        X = np.asarray(X, dtype=np.float64)
        F = len(self.names)
        if X.ndim != 2 or X.shape[1] != F:
            raise ValueError(f"features must be [rows, {F}], got shape {X.shape}")
        if C.ndim != 2 or C.shape[0] != X.shape[0] or C.shape[1] not in (F, F + 1):
            raise ValueError(f"contributions must be [{X.shape[0]}, {F}] or [{X.shape[0]}, {F + 1}] "
                             f"(bias last), got shape {C.shape}")
        return C[:, :F], X

    def _get(self, row: Sequence[float], name: str) -> float | None:
        j = self._col.get(name)
        return None if j is None else row[j]

    def _template(self, name: str) -> Template:
        exact: dict[str, Template] = {
            "recency_days": self._recency,
            "recency_over_gap": self._recency_over_gap,
            "tenure_days": lambda r, v: f"customer for {'only ' if v < 180 else ''}{_days(v)}",
            "orders_total": lambda r, v: f"{'only ' if v < 3.5 else ''}{_count(v, 'order', 'orders')} so far",
            "orders_90d": lambda r, v: self._orders_in(v, "the last 90 days"),
            "orders_365d": lambda r, v: self._orders_in(v, "the last 12 months"),
            "spend_total": lambda r, v: f"{_money(v)} spent in total",
            "avg_order_value": lambda r, v: f"average order value {_money(v)}",
            "spend_180d": self._spend_180d,
            "spend_prev_180d": self._spend_prev_180d,
            "spend_trend": self._spend_trend,
            "gap_mean_days": lambda r, v: ("no repeat order yet" if v < 0 else f"usually {_days(v)} between orders"),
            "gap_cv": lambda r, v: ("too few orders to show a rhythm" if v < 0 else
                                    f"{'irregular' if v >= 0.5 else 'regular'} order rhythm "
                                    f"(gaps vary by {_pct(v)})"),
            "last_gap_days": self._last_gap,
            "items_per_order": lambda r, v: f"{'small baskets: ' if v < 2 else ''}{v:.1f} items per order",
            "distinct_products": lambda r, v: (f"bought {'only ' if v < 3.5 else ''}"
                                               f"{_count(v, 'different product', 'different products')}"),
            "distinct_categories": lambda r, v: (f"buys in {'only ' if v < 1.5 else ''}"
                                                 f"{_count(v, 'category', 'categories')}"),
            "return_line_share": lambda r, v: f"returns {_pct(v)} of items",
            "return_value_share": lambda r, v: f"returned {_pct(v)} of the value bought",
            "avg_unit_price": lambda r, v: f"average item price {_money(v)}",
            "age": lambda r, v: "age unknown" if v < 0 else f"age {int(round(v))}",
            "days_since_signup": lambda r, v: f"signed up {_days(v)} ago",
        }
        if name in exact:
            return exact[name]
        for prefix, make in (("cat_share_", self._cat_share), ("chan_share_", self._chan_share),
                             ("gender_", self._gender), ("region_", self._region)):
            if name.startswith(prefix) and len(name) > len(prefix):
                return make(name[len(prefix):])
        return lambda r, v: f"{name} = {_num(v)}"

    def _recency(self, row: Sequence[float], v: float) -> str:
        gap = self._get(row, "gap_mean_days")
        head = f"no purchase for {_days(v)}"
        if gap is None or gap <= 0:
            orders = self._get(row, "orders_total")
            return head + (" since the only order" if orders is not None and round(orders) == 1 else "")
        ratio = v / max(gap, 1.0)
        if ratio >= 1.05:
            return f"{head}, {_times(ratio)} the usual gap of {_days(gap)}"
        return f"{head} (usually {_days(gap)} between orders)"

    def _recency_over_gap(self, row: Sequence[float], v: float) -> str:
        recency = self._get(row, "recency_days")
        since = f", last order {_days(recency)} ago" if recency is not None else ""
        if v < 0:  # UNKNOWN: fewer than two orders
            return "no repeat order yet" + since
        gap = self._get(row, "gap_mean_days")
        usual = f" of {_days(gap)}" if gap is not None and gap > 0 else ""
        ago = f" ({_days(recency)})" if recency is not None else ""
        if v >= 1:
            return f"overdue: {_times(v)} the usual gap{usual} since the last order{ago}"
        return f"{_times(v)} the usual gap{usual} since the last order{ago}, not yet due"

    @staticmethod
    def _orders_in(v: float, window: str) -> str:
        if round(v) == 0:
            return f"0 orders in {window}"
        return f"{'only ' if v < 1.5 else ''}{_count(v, 'order', 'orders')} in {window}"

    def _spend_180d(self, row: Sequence[float], v: float) -> str:
        prev = self._get(row, "spend_prev_180d")
        before = f" ({_money(prev)} in the 6 months before)" if prev is not None else ""
        return f"spent {_money(v)} in the last 6 months{before}"

    def _spend_prev_180d(self, row: Sequence[float], v: float) -> str:
        recent = self._get(row, "spend_180d")
        since = f", {_money(recent)} in the last 6 months" if recent is not None else ""
        return f"spent {_money(v)} in the previous half-year{since}"

    def _spend_trend(self, row: Sequence[float], v: float) -> str:
        recent, prev = self._get(row, "spend_180d"), self._get(row, "spend_prev_180d")
        if recent is None or prev is None:
            return f"spend trend {v:+.2f} (-1 = all spend in the earlier half-year, +1 = all recent)"
        if prev > 0:
            change = (recent - prev) / prev
            word = "down" if change < 0 else "up"
            return (f"spending {word} {_pct(abs(change))} on the previous half-year "
                    f"({_money(recent)} vs {_money(prev)})")
        if recent > 0:
            return f"spent {_money(recent)} in the last 6 months, nothing in the 6 months before"
        return "nothing spent in the last 12 months"

    def _last_gap(self, row: Sequence[float], v: float) -> str:
        if v < 0:
            return "only one order so far"
        gap = self._get(row, "gap_mean_days")
        usual = f" (usually {_days(gap)})" if gap is not None and gap > 0 else ""
        return f"last gap between orders {_days(v)}{usual}"

    @staticmethod
    def _cat_share(level: str) -> Template:
        def text(row: Sequence[float], v: float) -> str:
            if v >= 0.5:
                return f"buys mostly in {level} ({_pct(v)} of spend)"
            if v > 0:
                return f"{level} is {_pct(v)} of spend"
            return f"no purchases in {level} (0% of spend)"
        return text

    @staticmethod
    def _chan_share(level: str) -> Template:
        def text(row: Sequence[float], v: float) -> str:
            if v >= 0.5:
                return f"orders mostly via {level} ({_pct(v)} of orders)"
            if v > 0:
                return f"{_pct(v)} of orders via {level}"
            return f"never orders via {level} (0% of orders)"
        return text

    @staticmethod
    def _gender(level: str) -> Template:
        return lambda row, v: f"gender {level}" if v >= 0.5 else f"gender not {level}"

    @staticmethod
    def _region(level: str) -> Template:
        return lambda row, v: f"lives in region {level}" if v >= 0.5 else f"lives outside region {level}"


def top_reasons(contributions: np.ndarray, X: np.ndarray, feature_names: Sequence[str],
                k: int = 3) -> list[list[Reason]]:
    """One-off convenience: `ReasonWriter(feature_names).explain(contributions, X, k)`."""
    return ReasonWriter(feature_names, k).explain(contributions, X)


# ---- risk bands and time to churn ---------------------------------------------------------------------

def _check_bands(medium: float, high: float) -> None:
    if not 0.0 <= medium <= high <= 1.0:
        raise ValueError(f"band thresholds need 0 <= medium <= high <= 1, got medium={medium}, high={high}")


def risk_band(p: float, medium: float = 0.33, high: float = 0.66) -> str:
    """"high" if p >= high, "medium" if p >= medium, else "low" (thresholds inclusive, like the
    scoring service's bands); "unknown" for NaN."""
    _check_bands(medium, high)
    if math.isnan(p):
        return "unknown"
    return "high" if p >= high else "medium" if p >= medium else "low"


def risk_bands(p: np.ndarray, medium: float = 0.33, high: float = 0.66) -> np.ndarray:
    """`risk_band` over an array (object array of str)."""
    _check_bands(medium, high)
    p = np.asarray(p, dtype=np.float64)
    out = np.where(p >= high, "high", np.where(p >= medium, "medium", "low")).astype(object)
    out[np.isnan(p)] = "unknown"
    return out


def expected_days_to_churn(
    p: np.ndarray,
    horizon_days: float,
    recency_days: np.ndarray | None = None,
    gap_mean_days: np.ndarray | None = None,
    overdue_factor: float = 2.0,
    max_days: float | None = None,
) -> np.ndarray:
    """Expected days from the snapshot until the customer churns, from the churn probability.

    Definition. The churn model gives p = P(churn within the horizon H), churn meaning no purchase
    in [T, T + H). Assume churn strikes at a constant hazard lambda from the snapshot T on,
    calibrated so that P(churn time <= H) = p:  lambda = -ln(1 - p) / H, and the churn time
    tau ~ Exponential(lambda) with mean 1 / lambda = H / -ln(1 - p)  (p = 0.5, H = 90 -> 130 days).

    Overdue floor (when recency_days and gap_mean_days are given): a churn cannot be told apart
    from an ordinary pause before the silence exceeds `overdue_factor` x the customer's usual gap,
    i.e. for d0 = max(overdue_factor * gap_mean_days - recency_days, 0) more days (d0 = 0 without a
    usual gap: one-order customers, gap_mean_days = -1). The result is then the expected time until
    churn has both happened and become visible: E[max(tau, d0)] = d0 + exp(-lambda d0) / lambda.

    Honesty notes: this re-expresses p (plus the floor) under the constant-hazard assumption; it is
    not a separately fitted survival model and says nothing the data past H could confirm, so
    values are capped at `max_days` (default 10 x H). p = 1 -> d0 (0 without floor); p = 0 ->
    max_days; NaN p -> NaN. Vectorised over rows; returns float64.
    """
    if horizon_days <= 0:
        raise ValueError("horizon_days must be positive")
    cap = 10.0 * horizon_days if max_days is None else float(max_days)
    p = np.asarray(p, dtype=np.float64)
    q = np.clip(p, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        rate = -np.log1p(-q) / horizon_days  # lambda; 0 for p = 0, inf for p = 1
    d0 = np.zeros_like(q)
    if recency_days is not None and gap_mean_days is not None:
        gap = np.asarray(gap_mean_days, dtype=np.float64)
        rec = np.asarray(recency_days, dtype=np.float64)
        d0 = np.where(gap > 0, np.maximum(overdue_factor * gap - rec, 0.0), 0.0) * np.ones_like(q)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        tail = np.where(rate > 0, np.exp(-rate * d0) / np.where(rate > 0, rate, 1.0), np.inf)
        tail = np.where(np.isinf(rate), 0.0, tail)
    days = np.minimum(d0 + tail, cap)
    return np.where(np.isnan(p), np.nan, days)
