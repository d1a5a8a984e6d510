"""Point-in-time features: one implementation shared by training and serving.

Everything here looks only at transactions strictly before a cutoff, so a model trained on
features at cutoff T with labels from [T, T + H) never sees the future. Training computes the
same features at the latest cutoff and writes them to the feature snapshot the services read;
the services never recompute them differently.

Two families:
- customer features (`FeatureSpace.customer_features`): recency, frequency, monetary, tenure,
  inter-purchase gaps and their regularity, spend trend, category and channel mix, returns,
  demographics. All values are finite (unknowns use documented sentinels, usually -1) so that
  a NaN arriving at a service is always a caller error.
- customer x product affinity (`AffinityState`): purchase history per product, co-purchase
  neighbours, popularity, repeat rates; `AffinityState.candidates` turns them into candidate
  products and pair features for the propensity model, vectorised over a batch of customers.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from tenure.attributes import feature_columns as attribute_feature_columns
from tenure.attributes import feature_names as attribute_feature_names
from tenure.attributes import feature_spec
from tenure.attributes import unknown_values as attribute_unknowns
from tenure.sparse import CSRLike, dense_times

if TYPE_CHECKING:
    import pandas as pd
    import scipy.sparse as sp  # training builds the matrices (imported where used: serving runs without SciPy)

    from tenure.data import Shop
else:
    from tenure.lazy import LazyModule

    pd = LazyModule("pandas")  # training uses it; the services load FeatureSpace and AffinityState without pandas

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400.0
UNKNOWN = -1.0
NO_SIGNUP = "2262-01-01"
"""The signup date of a customer without one: far in the future, so days_since_signup falls back to tenure."""
MAX_LEVELS = 20
"""One-hot / share columns per categorical variable; rarer levels fold into the last kept one."""

BASE_FEATURES: tuple[str, ...] = (
    "recency_days",
    "tenure_days",
    "orders_total",
    "orders_90d",
    "orders_365d",
    "spend_total",
    "avg_order_value",
    "spend_180d",
    "spend_prev_180d",
    "spend_trend",
    "gap_mean_days",
    "gap_cv",
    "last_gap_days",
    "recency_over_gap",
    "items_per_order",
    "distinct_products",
    "distinct_categories",
    "return_line_share",
    "return_value_share",
    "avg_unit_price",
)

PAIR_FEATURES: tuple[str, ...] = (
    "hist_count",
    "hist_days_since",
    "co_score",
    "co_score_per_item",
    "cat_share",
    "pop_90d",
    "pop_all",
    "pop_in_cat",
    "repeat_rate",
    "price",
    "price_ratio",
    "cust_recency_days",
    "cust_orders_total",
    "cust_orders_90d",
    "cust_avg_unit_price",
)

CUSTOMER_PAIR_COLUMNS = ("recency_days", "orders_total", "orders_90d", "avg_unit_price")
"""The customer's own columns at the end of PAIR_FEATURES (cust_*), in order."""

# Candidate sources, in the order of the contract's CandidateSource enum (1-based there).
SOURCE_HISTORY, SOURCE_CO_PURCHASE, SOURCE_CATEGORY_POPULAR, SOURCE_POPULAR = 1, 2, 3, 4


def to_days(ts: pd.Series | pd.DatetimeIndex | np.ndarray | pd.Timestamp) -> Any:
    """Datetimes -> float days since the epoch (fast arithmetic on plain arrays)."""
    if isinstance(ts, pd.Timestamp):
        return ts.value / 1e9 / SECONDS_PER_DAY
    values = np.asarray(ts, dtype="datetime64[s]").astype(np.int64)
    return values / SECONDS_PER_DAY


def _top_levels(values: pd.Series, weights: pd.Series | None = None) -> tuple[str, ...]:
    counts = (weights if weights is not None else pd.Series(1.0, index=values.index)).groupby(
        values.astype(str)
    ).sum()
    counts = counts[counts.index != ""]
    return tuple(sorted(counts.sort_values(ascending=False).index[:MAX_LEVELS].tolist()))


@dataclass
class TxArrays:
    """Transactions encoded once as integer codes and float days, for fast cutoff slicing."""

    customer_ids: np.ndarray
    product_ids: np.ndarray
    cust: np.ndarray
    order: np.ndarray
    prod: np.ndarray
    cat: np.ndarray
    t: np.ndarray
    amount: np.ndarray
    qty: np.ndarray
    is_return: np.ndarray
    # Order level (purchase orders only), sorted by customer then time.
    o_cust: np.ndarray
    o_t: np.ndarray
    o_chan: np.ndarray
    categories: tuple[str, ...]
    channels: tuple[str, ...]

    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)

    @property
    def n_products(self) -> int:
        return len(self.product_ids)

    @classmethod
    def from_shop(cls, shop: Shop, categories: tuple[str, ...], channels: tuple[str, ...]) -> "TxArrays":
        tx = shop.transactions
        cust, customer_ids = pd.factorize(tx["customer_id"], sort=True)
        if shop.products is not None and len(shop.products):
            product_ids = np.asarray(sorted(set(shop.products["product_id"]) | set(tx["product_id"].unique())), dtype=object)
        else:
            product_ids = np.asarray(sorted(tx["product_id"].unique()), dtype=object)
        prod = pd.Index(product_ids).get_indexer(tx["product_id"])
        cat = _codes(tx["category"], categories) if "category" in tx else np.full(len(tx), -1, np.int16)
        chan = _codes(tx["channel"], channels) if "channel" in tx else np.full(len(tx), -1, np.int16)
        t = to_days(tx["ts"])
        is_return = tx["is_return"].to_numpy(bool)
        amount = tx["amount"].to_numpy(np.float64)
        qty = tx["quantity"].to_numpy(np.float64)

        order = pd.factorize(tx["order_id"])[0].astype(np.int64)
        buy = ~is_return
        orders = pd.DataFrame(
            {
                "order": order[buy],
                "cust": cust[buy],
                "t": t[buy],
                "chan": chan[buy],
            }
        )
        agg = orders.groupby("order", sort=False).agg(cust=("cust", "first"), t=("t", "min"), chan=("chan", "first"))
        agg = agg.sort_values(["cust", "t"], kind="stable")
        return cls(
            customer_ids=np.asarray(customer_ids, dtype=object),
            product_ids=product_ids,
            cust=cust.astype(np.int64),
            order=order,
            prod=prod.astype(np.int64),
            cat=cat,
            t=t,
            amount=amount,
            qty=qty,
            is_return=is_return,
            o_cust=agg["cust"].to_numpy(np.int64),
            o_t=agg["t"].to_numpy(np.float64),
            o_chan=agg["chan"].to_numpy(np.int64),
            categories=categories,
            channels=channels,
        )

    def purchasers_between(self, start: float, end: float) -> np.ndarray:
        """Boolean per customer code: any purchase order with start <= t < end."""
        m = (self.o_t >= start) & (self.o_t < end)
        return np.bincount(self.o_cust[m], minlength=self.n_customers) > 0

    def bought_between(self, start: float, end: float) -> sp.csr_matrix:
        """Customer x product matrix of purchase-line counts with start <= t < end."""
        import scipy.sparse as sp

        m = (~self.is_return) & (self.t >= start) & (self.t < end)
        return sp.csr_matrix(
            (np.ones(int(m.sum()), np.float32), (self.cust[m], self.prod[m])),
            shape=(self.n_customers, self.n_products),
        )


def _codes(values: pd.Series, levels: tuple[str, ...]) -> np.ndarray:
    """Map values to indices of levels; values outside the kept levels -> -1."""
    return pd.Index(levels).get_indexer(values.astype(str)).astype(np.int16)


@dataclass(frozen=True)
class FeatureSpace:
    """The customer feature vector's layout, fixed from the training data (vocabularies)."""

    categories: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    genders: tuple[str, ...] = ()
    has_age: bool = False
    has_signup: bool = False
    btyd_horizons: tuple[int, ...] = ()
    """Horizons (days) of the `bgnbd_gg_spend_{h}d` columns (see `btyd_spend_columns`); () = none."""
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Customers-file attributes as features (tenure.attributes.FeatureAttributes: column and levels; the
    `attr_*` columns after region_*); () = none (training keeps them only when they help, measured)."""

    @classmethod
    def fit(cls, shop: Shop, btyd_horizons: tuple[int, ...] = (), attributes: bool = False) -> "FeatureSpace":
        """attributes: also the customers file's attributes (tenure.attributes) as `attr_*` columns."""
        tx = shop.transactions
        buys = tx[~tx["is_return"]]
        cust = shop.customers
        return cls(
            categories=_top_levels(buys["category"], buys["amount"]) if "category" in tx else (),
            channels=_top_levels(buys["channel"]) if "channel" in tx else (),
            regions=_top_levels(cust["region"]) if cust is not None and "region" in cust else (),
            genders=_top_levels(cust["gender"]) if cust is not None and "gender" in cust else (),
            has_age=cust is not None and "age" in cust,
            has_signup=cust is not None and "signup_date" in cust,
            btyd_horizons=tuple(sorted({int(h) for h in btyd_horizons})),
            attributes=feature_spec(cust) if attributes else (),
        )

    @property
    def names(self) -> list[str]:
        names = list(BASE_FEATURES)
        names += [f"cat_share_{c}" for c in self.categories]
        names += [f"chan_share_{c}" for c in self.channels]
        if self.has_age:
            names.append("age")
        names += [f"gender_{g}" for g in self.genders]
        names += [f"region_{r}" for r in self.regions]
        names += attribute_feature_names(self.attributes)
        if self.has_signup:
            names.append("days_since_signup")
        names += [btyd_spend_name(h) for h in self.btyd_horizons]
        return names

    def to_dict(self) -> dict[str, Any]:
        return {
            "categories": list(self.categories), "channels": list(self.channels),
            "regions": list(self.regions), "genders": list(self.genders),
            "has_age": self.has_age, "has_signup": self.has_signup,
            "btyd_horizons": list(self.btyd_horizons),
            "attributes": [[column, list(levels)] for column, levels in self.attributes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSpace":
        return cls(
            categories=tuple(d["categories"]), channels=tuple(d["channels"]),
            regions=tuple(d["regions"]), genders=tuple(d["genders"]),
            has_age=bool(d["has_age"]), has_signup=bool(d["has_signup"]),
            btyd_horizons=tuple(int(h) for h in d.get("btyd_horizons", ())),  # absent in older snapshots
            attributes=tuple((str(c), tuple(str(v) for v in levels)) for c, levels in d.get("attributes", ())),
        )

    def encode(self, shop: Shop) -> TxArrays:
        return TxArrays.from_shop(shop, self.categories, self.channels)

    def customer_features(
        self, arrays: TxArrays, cutoff: pd.Timestamp, customers: pd.DataFrame | None = None,
        btyd_params: BtydParams | None | Literal["fit"] = "fit",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Features at `cutoff` for every customer with a purchase before it.

        btyd_params: the BG/NBD x Gamma-Gamma parameters of the bgnbd_gg_spend_* columns ("fit": fitted on the
        data before the cutoff, as training does; fit_btyd's result to use given ones, as the online store does).
        Returns (customer codes into arrays.customer_ids, float32 matrix in `self.names` order).
        """
        T = to_days(pd.Timestamp(cutoff))
        stats = self.customer_stats(arrays, T)
        present = np.flatnonzero(stats["n_orders"] > 0)
        static, signup = self.demographics(arrays, customers)
        btyd = None
        if self.btyd_horizons:
            params = fit_btyd(arrays, T) if btyd_params == "fit" else btyd_params
            btyd = btyd_spend_from_rfm(btyd_rfm(arrays, T), self.btyd_horizons, params)
        X = np.column_stack(self.columns(stats, T, static, signup, btyd))[present].astype(np.float32)
        return present, X

    def customer_stats(self, arrays: TxArrays, T: float) -> dict[str, np.ndarray]:
        """The per-customer sums and counts the features are made of, from the lines before day T (every
        customer code): what the online store keeps and updates event by event (tenure.online)."""
        C = arrays.n_customers
        om = arrays.o_t < T
        oc, ot, och = arrays.o_cust[om], arrays.o_t[om], arrays.o_chan[om]
        n_orders = np.bincount(oc, minlength=C).astype(np.float64)

        # Orders are sorted by (customer, t), so group edges give first/last order per customer.
        starts = np.flatnonzero(np.r_[True, oc[1:] != oc[:-1]])
        ends = np.r_[starts[1:], len(oc)] - 1
        first_t = np.zeros(C)
        last_t = np.zeros(C)
        first_t[oc[starts]] = ot[starts]
        last_t[oc[ends]] = ot[ends]
        same = oc[1:] == oc[:-1]
        gaps = np.diff(ot)[same]
        gap_cust = oc[1:][same]
        last_gap = np.full(C, UNKNOWN)
        multi = ends > starts
        last_gap[oc[ends[multi]]] = ot[ends[multi]] - ot[ends[multi] - 1]

        lm = arrays.t < T
        lc, lt, la, lq, lr = arrays.cust[lm], arrays.t[lm], arrays.amount[lm], arrays.qty[lm], arrays.is_return[lm]
        lp, lk = arrays.prod[lm], arrays.cat[lm]
        buy = ~lr
        recent = buy & (lt >= T - 180)
        prev = buy & (lt >= T - 360) & (lt < T - 180)
        P = arrays.n_products
        has_cat = buy & (lk >= 0)
        K = max(len(self.categories), 1)
        H = max(len(self.channels), 1)
        known = och >= 0
        return {
            "n_orders": n_orders,
            "first_t": first_t,
            "last_t": last_t,
            "last_gap": last_gap,
            "gap_n": np.bincount(gap_cust, minlength=C).astype(np.float64),
            "gap_sum": np.bincount(gap_cust, weights=gaps, minlength=C),
            "gap_sq": np.bincount(gap_cust, weights=gaps * gaps, minlength=C),
            "orders_90": np.bincount(oc[ot >= T - 90], minlength=C).astype(np.float64),
            "orders_365": np.bincount(oc[ot >= T - 365], minlength=C).astype(np.float64),
            "spend_total": np.bincount(lc, weights=la, minlength=C),
            "buy_value": np.bincount(lc[buy], weights=la[buy], minlength=C),
            "buy_lines": np.bincount(lc[buy], minlength=C).astype(np.float64),
            "buy_qty": np.bincount(lc[buy], weights=lq[buy], minlength=C),
            "ret_lines": np.bincount(lc[lr], minlength=C).astype(np.float64),
            "ret_sum": np.bincount(lc[lr], weights=la[lr], minlength=C),
            "s180": np.bincount(lc[recent], weights=la[recent], minlength=C),
            "sprev": np.bincount(lc[prev], weights=la[prev], minlength=C),
            "distinct_products": np.bincount(np.unique(lc[buy] * P + lp[buy]) // P, minlength=C).astype(np.float64),
            "cat_value": np.bincount(lc[has_cat] * K + lk[has_cat], weights=la[has_cat], minlength=C * K).reshape(C, K),
            "cat_lines": np.bincount(lc[has_cat] * K + lk[has_cat], minlength=C * K).reshape(C, K).astype(np.float64),
            "chan_n": np.bincount(oc[known] * H + och[known], minlength=C * H).reshape(C, H).astype(np.float64),
        }

    def columns(self, s: dict[str, np.ndarray], T: float, static: list[np.ndarray], signup: np.ndarray | None,
                btyd: np.ndarray | None) -> list[np.ndarray]:
        """The feature columns (`self.names` order, float64) at day T from `customer_stats`-shaped sums, the
        static demographic columns, the signup days and the BG/NBD x GG spend columns: the one place the
        formulas live, for training's batch and the online store's updates alike."""
        n_orders, gap_n, gap_sum, gap_sq = s["n_orders"], s["gap_n"], s["gap_sum"], s["gap_sq"]
        with np.errstate(divide="ignore", invalid="ignore"):
            gap_mean = np.where(gap_n > 0, gap_sum / np.maximum(gap_n, 1), UNKNOWN)
            gap_var = np.maximum(gap_sq / np.maximum(gap_n, 1) - np.square(np.maximum(gap_mean, 0)), 0)
            gap_cv = np.where(gap_n > 1, np.sqrt(gap_var) / np.maximum(gap_mean, 1e-9), UNKNOWN)
            recency = T - s["last_t"]
            rec_over_gap = np.where(gap_n > 0, recency / np.maximum(gap_mean, 1.0), UNKNOWN)
        buy_value, buy_lines, s180, sprev = s["buy_value"], s["buy_lines"], s["s180"], s["sprev"]
        safe_orders = np.maximum(n_orders, 1)
        safe_value = np.maximum(buy_value, 1e-9)
        tenure = T - s["first_t"]
        cols: list[np.ndarray] = [
            recency,
            tenure,
            n_orders,
            s["orders_90"],
            s["orders_365"],
            s["spend_total"],
            buy_value / safe_orders,
            s180,
            sprev,
            (s180 - sprev) / (np.abs(s180) + np.abs(sprev) + 1.0),
            gap_mean,
            gap_cv,
            s["last_gap"],
            rec_over_gap,
            buy_lines / safe_orders,
            s["distinct_products"],
            (s["cat_lines"] > 0).sum(axis=1).astype(np.float64),
            s["ret_lines"] / np.maximum(buy_lines, 1),
            np.clip(-s["ret_sum"] / safe_value, 0, 10),
            buy_value / np.maximum(s["buy_qty"], 1e-9),
        ]
        if self.categories:
            shares = s["cat_value"] / safe_value[:, None]
            cols += list(np.clip(shares, 0, 1).T)
        if self.channels:
            cols += list((s["chan_n"] / safe_orders[:, None]).T)
        cols += static
        if signup is not None:
            days = T - signup
            cols.append(np.where(days >= 0, days, tenure))
        if btyd is not None:
            cols += list(btyd.T)
        return cols

    def demographics(self, arrays: TxArrays, customers: pd.DataFrame | None
                     ) -> tuple[list[np.ndarray], np.ndarray | None]:
        """(the demographic columns that do not change with time, per customer code; the signup day per code,
        far in the future where unknown, or None without a signup date)."""
        if not (self.has_age or self.genders or self.regions or self.has_signup or self.attributes):
            return [], None
        C = arrays.n_customers
        table = (customers.drop_duplicates("customer_id").set_index("customer_id")
                 .reindex(arrays.customer_ids) if customers is not None else None)
        cols: list[np.ndarray] = []
        if self.has_age:
            age = table["age"].to_numpy(np.float64) if table is not None else np.full(C, np.nan)
            cols.append(np.where(np.isfinite(age), age, UNKNOWN))
        for name, levels in (("gender", self.genders), ("region", self.regions)):
            if levels:
                codes = _codes(table[name].fillna(""), levels) if table is not None else np.full(C, -1)
                cols += [(codes == i).astype(np.float64) for i in range(len(levels))]
        if self.attributes:
            cols += attribute_feature_columns(self.attributes, table, C, UNKNOWN)
        signup_days = None
        if self.has_signup:
            signup = table["signup_date"] if table is not None else pd.Series(pd.NaT, index=range(C))
            signup_days = np.asarray(to_days(signup.fillna(pd.Timestamp(NO_SIGNUP)).to_numpy()), np.float64)
        return cols, signup_days

    def unknown_static(self) -> list[float]:
        """The static (demographics()) columns of a customer the customers table does not hold."""
        return (([UNKNOWN] if self.has_age else []) + [0.0] * (len(self.genders) + len(self.regions))
                + attribute_unknowns(self.attributes, UNKNOWN))


def btyd_spend_name(horizon_days: int) -> str:
    return f"bgnbd_gg_spend_{int(horizon_days)}d"


def without_btyd(X: np.ndarray, names: list[str]) -> np.ndarray:
    """X with the bgnbd_gg_spend_* columns set to UNKNOWN (a copy; X itself when there are none): a
    model trained on it never splits on them, yet takes the same input vector as the snapshot's.
    Used by models that blend the BG/NBD forecast afterwards or are better without it (measured)."""
    cols = [i for i, n in enumerate(names) if n.startswith("bgnbd_gg_spend_")]
    if not cols:
        return X
    X = X.copy()
    X[:, cols] = UNKNOWN
    return X


def btyd_rfm(arrays: TxArrays, T: float) -> tuple[np.ndarray, ...]:
    """RFM summary in days at cutoff day T, as training.btyd.rfm_summary computes it from the frame
    (purchase lines aggregated per calendar day; T measured to the last calendar day before the
    cutoff): (has a purchase, frequency, recency, T, monetary value), each per customer code."""
    return rfm_from_days(*btyd_days(arrays, T), T)


def btyd_days(arrays: TxArrays, T: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per customer code, from the purchase lines before day T grouped by calendar day: (days with a purchase,
    first such day, last such day, the first day's value, the value of all days)."""
    C = arrays.n_customers
    m = (arrays.t < T) & ~arrays.is_return
    daily = pd.DataFrame({"c": arrays.cust[m], "d": np.floor(arrays.t[m]).astype(np.int64), "a": arrays.amount[m]})
    daily = daily.groupby(["c", "d"], sort=True)["a"].sum().reset_index()
    c, d, a = daily["c"].to_numpy(), daily["d"].to_numpy().astype(np.float64), daily["a"].to_numpy()
    n_days = np.bincount(c, minlength=C).astype(np.float64)
    first, last, first_amount = np.zeros(C), np.zeros(C), np.zeros(C)
    if len(c):
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        ends = np.r_[starts[1:], len(c)] - 1
        first[c[starts]], last[c[ends]], first_amount[c[starts]] = d[starts], d[ends], a[starts]
    return n_days, first, last, first_amount, np.bincount(c, weights=a, minlength=C)


def rfm_from_days(n_days: np.ndarray, first: np.ndarray, last: np.ndarray, first_amount: np.ndarray,
                  total: np.ndarray, T: float) -> tuple[np.ndarray, ...]:
    """btyd_rfm's summary from btyd_days' sums (the online store keeps and updates those)."""
    frequency = np.maximum(n_days - 1, 0).astype(np.float64)
    monetary = np.where(frequency > 0, (total - first_amount) / np.maximum(frequency, 1), 0.0)
    return n_days > 0, frequency, last - first, (np.ceil(T) - 1) - first, monetary


BtydParams = dict[str, dict[str, float]]
"""Fitted BG/NBD ("bgf": r, alpha, a, b) and Gamma-Gamma ("ggf": p, q, v) parameters (JSON-able)."""


def fit_btyd(arrays: TxArrays, T: float) -> BtydParams | None:
    """BG/NBD and Gamma-Gamma fitted by maximum likelihood on the RFM summary before day T; None when they
    cannot be fitted (too few repeat buyers, no convergence): the spend columns are then 0."""
    from training.btyd import BetaGeoFitter, GammaGammaFitter  # the fitters live with the models

    present, x, t_x, big_t, monetary = btyd_rfm(arrays, T)
    idx = np.flatnonzero(present)
    if int((x[idx] > 0).sum()) < 20:
        return None
    try:
        bgf = BetaGeoFitter(penalizer_coef=0.0).fit(x[idx], t_x[idx], big_t[idx])
        ggf = GammaGammaFitter(penalizer_coef=0.0).fit(x[idx], np.maximum(monetary[idx], 0.0))  # skips zero-value buyers
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        log.warning("BG/NBD x Gamma-Gamma features not fitted at day %.0f (%s): using 0", T, exc)
        return None
    return {"bgf": {k: float(v) for k, v in bgf.params_.items()}, "ggf": {k: float(v) for k, v in ggf.params_.items()}}


def btyd_spend_from_rfm(rfm: tuple[np.ndarray, ...], horizons: tuple[int, ...], params: BtydParams | None) -> np.ndarray:
    """(customers, len(horizons)): BG/NBD x Gamma-Gamma expected spend over each horizon (undiscounted) from
    btyd_rfm's summary under `params`; UNKNOWN without a purchase, 0 everywhere without params."""
    from tenure.btyd_math import conditional_expected, expected_average_profit  # numpy only: the services use it

    present, x, t_x, big_t, monetary = rfm
    out = np.full((len(present), len(horizons)), UNKNOWN)
    idx = np.flatnonzero(present)
    if params is None:
        out[idx] = 0.0
        return out
    bgf, ggf = params["bgf"], params["ggf"]
    f = lambda v: np.asarray(v, np.float64).reshape(-1)  # noqa: E731 - as the fitters' input validation makes them
    xi, txi, Ti = f(x[idx]), f(t_x[idx]), f(big_t[idx])
    try:
        value = np.asarray(expected_average_profit(ggf["p"], ggf["q"], ggf["v"], xi, f(np.maximum(monetary[idx], 0.0))),
                           np.float64)
        for j, h in enumerate(horizons):
            expected = conditional_expected((bgf["r"], bgf["alpha"], bgf["a"], bgf["b"]), np.asarray(float(h)), xi, txi, Ti)
            out[idx, j] = np.asarray(expected, np.float64) * value
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        log.warning("BG/NBD x Gamma-Gamma features not evaluated (%s): using 0", exc)
        out[idx] = 0.0
    out[~np.isfinite(out)] = 0.0
    return out


def btyd_spend_columns(arrays: TxArrays, T: float, horizons: tuple[int, ...]) -> np.ndarray:
    """(n_customers, len(horizons)): BG/NBD x Gamma-Gamma expected spend over each horizon (undiscounted),
    both models fitted by maximum likelihood on the RFM summary before cutoff day T, i.e. the classical CLV
    forecast made point-in-time. UNKNOWN for customers without a purchase before T; 0 everywhere when the
    models cannot be fitted (too few repeat buyers)."""
    return btyd_spend_from_rfm(btyd_rfm(arrays, T), horizons, fit_btyd(arrays, T))


@dataclass
class AffinityState:
    """Customer x product affinity at a cutoff: what the recommender's candidates are made from.

    Rows of `hist` follow `customer_rows` (codes or snapshot rows, the caller's choice); columns
    are product indices. All per-product arrays have length n_products.
    """

    hist: CSRLike
    """Customer x product purchase-line counts before the cutoff."""
    hist_last: CSRLike
    """Same sparsity as hist: days between the product's last purchase and the cutoff, + 1."""
    cond: CSRLike
    """Product x product: P(j in the order | i in the order), top neighbours only.
    The three are scipy.sparse.csr_matrix when training builds them (`build`), tenure.sparse.CSR
    when a service reads the snapshot."""
    pop_90d: np.ndarray
    pop_all: np.ndarray
    pop_in_cat: np.ndarray
    repeat_rate: np.ndarray
    price: np.ndarray
    product_cat: np.ndarray
    n_categories: int
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def n_products(self) -> int:
        return len(self.price)

    @classmethod
    def build(cls, arrays: TxArrays, cutoff: pd.Timestamp, n_neighbours: int = 30,
              product_cat: np.ndarray | None = None, price: np.ndarray | None = None) -> "AffinityState":
        import scipy.sparse as sp

        T = to_days(pd.Timestamp(cutoff))
        C, P = arrays.n_customers, arrays.n_products
        m = (arrays.t < T) & ~arrays.is_return
        c, p, t = arrays.cust[m], arrays.prod[m], arrays.t[m]
        key = c * P + p
        frame = pd.DataFrame({"k": key, "t": t}).groupby("k", sort=True)["t"].agg(["size", "max"])
        keys = frame.index.to_numpy()
        rows, colsp = keys // P, keys % P
        hist = sp.csr_matrix((frame["size"].to_numpy(np.float32), (rows, colsp)), shape=(C, P))
        hist_last = sp.csr_matrix(((T - frame["max"].to_numpy() + 1).astype(np.float32), (rows, colsp)), shape=(C, P))

        buyers_all = np.bincount(colsp, minlength=P).astype(np.float64)
        repeaters = np.bincount(colsp[frame["size"].to_numpy() >= 2], minlength=P)
        recent = t >= T - 90
        buyers_90 = np.bincount(np.unique(key[recent]) % P, minlength=P).astype(np.float64)
        cats = product_cat if product_cat is not None else np.full(P, -1, np.int64)
        n_cat = int(cats.max()) + 1 if len(cats) and cats.max() >= 0 else 0
        cat_tot = np.bincount(cats[cats >= 0], weights=buyers_90[cats >= 0], minlength=max(n_cat, 1))
        pop_in_cat = np.where(cats >= 0, buyers_90 / np.maximum(cat_tot[np.maximum(cats, 0)], 1), 0)

        if price is None:
            amt, q = arrays.amount[m], arrays.qty[m]
            price = np.bincount(p, weights=amt, minlength=P) / np.maximum(np.bincount(p, weights=q, minlength=P), 1e-9)

        cond = _co_purchase(arrays, m, P, n_neighbours)
        return cls(
            hist=hist, hist_last=hist_last, cond=cond,
            pop_90d=(buyers_90 / max(buyers_90.max(), 1)).astype(np.float32),
            pop_all=np.log1p(buyers_all).astype(np.float32),
            pop_in_cat=pop_in_cat.astype(np.float32),
            repeat_rate=((repeaters + 1) / (buyers_all + 5)).astype(np.float32),
            price=np.asarray(price, np.float32), product_cat=cats.astype(np.int64), n_categories=n_cat,
        )

    def select_rows(self, rows: np.ndarray) -> "AffinityState":
        """The same state with hist rows re-indexed (e.g. customer codes -> snapshot rows)."""
        return AffinityState(
            hist=self.hist[rows], hist_last=self.hist_last[rows], cond=self.cond,
            pop_90d=self.pop_90d, pop_all=self.pop_all, pop_in_cat=self.pop_in_cat,
            repeat_rate=self.repeat_rate, price=self.price, product_cat=self.product_cat,
            n_categories=self.n_categories,
        )

    def candidates(
        self,
        hist: np.ndarray,
        hist_last: np.ndarray,
        cust: dict[str, np.ndarray],
        n: int,
        exclude: np.ndarray | None = None,
        boost: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate products and their pair features for a batch of B customers.

        hist, hist_last: dense B x P rows (from `hist` / `hist_last`, basket items may be added).
        cust: customer columns by name, each length B (recency_days, orders_total, orders_90d,
        avg_unit_price and cat_share, a B x n_categories matrix).
        exclude: B x P bool, never candidates (exclusions, category filters).
        boost: B x P extra co-purchase weight (a checkout basket), or None.
        Returns (cand B x n product indices, -1 for empty slots; source B x n; X (B*n) x len(PAIR_FEATURES)).
        """
        B, P = hist.shape
        weights = np.log1p(hist)
        if boost is not None:
            weights = weights + boost
        co = np.asarray(dense_times(weights, self.cond), dtype=np.float32)
        n_hist = np.maximum((weights > 0).sum(axis=1, keepdims=True), 1)
        cat_share = cust["cat_share"]
        if self.n_categories and cat_share.shape[1]:
            share_pp = np.where(self.product_cat >= 0, cat_share[:, np.maximum(self.product_cat, 0)], 0.0)
        else:
            share_pp = np.zeros((B, P), np.float32)
        cat_pop = share_pp * self.pop_in_cat

        parts = np.stack([
            3.0 * (hist > 0),
            2.0 * co / np.maximum(co.max(axis=1, keepdims=True), 1e-9),
            1.0 * cat_pop / np.maximum(cat_pop.max(axis=1, keepdims=True), 1e-9),
            0.5 * np.broadcast_to(self.pop_90d, (B, P)),
        ])
        priority = parts.sum(axis=0)
        if exclude is not None:
            priority = np.where(exclude, -np.inf, priority)
        n = min(n, P)
        cand = np.argpartition(-priority, n - 1, axis=1)[:, :n] if n < P else np.tile(np.arange(P), (B, 1))
        cand_prio = np.take_along_axis(priority, cand, axis=1)
        order = np.argsort(-cand_prio, axis=1, kind="stable")
        cand = np.take_along_axis(cand, order, axis=1)
        empty = ~np.isfinite(np.take_along_axis(cand_prio, order, axis=1))
        source = np.argmax(np.take_along_axis(parts, cand[None].repeat(4, 0), axis=2), axis=0) + 1
        cand = np.where(empty, -1, cand)
        source = np.where(empty, 0, source)

        safe = np.maximum(cand, 0)
        take = lambda m: np.take_along_axis(m, safe, axis=1)  # noqa: E731 - local gather shorthand
        per_customer = {name: cust[name][:, None] for name in CUSTOMER_PAIR_COLUMNS}
        X = self.pair_matrix(safe, take(hist), take(hist_last), take(co), n_hist, take(share_pp), per_customer)
        return cand, source, X.reshape(B * n, len(PAIR_FEATURES))

    def pair_matrix(self, products: np.ndarray, count: np.ndarray, last: np.ndarray, co: np.ndarray,
                    n_hist: np.ndarray, share: np.ndarray, cust: dict[str, np.ndarray]) -> np.ndarray:
        """PAIR_FEATURES (float32, last axis) for customer x product pairs of any shape (B x n
        candidates, or n given pairs): the one place the formulas live. Every argument broadcasts
        to the shape of `products`: purchase count and last-purchase day of the product (hist,
        hist_last), co-purchase score, items bought (n_hist), the customer's share of the product's
        category, and the customer columns of CUSTOMER_PAIR_COLUMNS."""
        price = self.price[products]
        cols = [
            count,
            np.where(last > 0, last - 1, UNKNOWN),
            co,
            co / n_hist,
            share,
            self.pop_90d[products],
            self.pop_all[products],
            self.pop_in_cat[products],
            self.repeat_rate[products],
            price,
            price / np.maximum(cust["avg_unit_price"], 1e-3),
            *(np.broadcast_to(cust[name], products.shape) for name in CUSTOMER_PAIR_COLUMNS),
        ]
        return np.stack(cols, axis=-1).astype(np.float32)


def _co_purchase(arrays: TxArrays, mask: np.ndarray, P: int, n_neighbours: int) -> sp.csr_matrix:
    """P(j bought in the same order | i bought), keeping each product's strongest neighbours."""
    import scipy.sparse as sp

    order_codes = pd.factorize(arrays.order[mask])[0]
    baskets = sp.csr_matrix((np.ones(len(order_codes), np.float32), (order_codes, arrays.prod[mask])),
                      shape=(int(order_codes.max()) + 1 if len(order_codes) else 0, P))
    baskets.sum_duplicates()
    baskets.data[:] = 1.0  # an order holds a product or not, whatever the line count
    co = (baskets.T @ baskets).tocsr()
    item_orders = np.asarray(co.diagonal()).astype(np.float64)
    co.setdiag(0)
    co.eliminate_zeros()
    co = co.tocoo()
    keep = co.data >= 2  # a single shared basket is noise
    rows, cols, vals = co.row[keep], co.col[keep], co.data[keep] / np.maximum(item_orders[co.row[keep]], 1)
    order = np.lexsort((-vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.searchsorted(rows, np.arange(P))
    rank = np.arange(len(rows)) - starts[rows]
    top = rank < n_neighbours
    return sp.csr_matrix((vals[top].astype(np.float32), (rows[top], cols[top])), shape=(P, P))


def customer_columns(names: list[str], X: np.ndarray, categories: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The customer columns `AffinityState.candidates` needs, picked by name from feature rows."""
    idx = {n: i for i, n in enumerate(names)}
    out = {n: X[:, idx[n]].astype(np.float32) for n in ("recency_days", "orders_total", "orders_90d", "avg_unit_price")}
    share_cols = [idx[f"cat_share_{c}"] for c in categories]
    out["cat_share"] = X[:, share_cols].astype(np.float32) if share_cols else np.zeros((len(X), 0), np.float32)
    return out


def product_table(shop: Shop, arrays: TxArrays, space: FeatureSpace) -> pd.DataFrame:
    """One row per product index: name, category, category code in the feature space, price."""
    tx = shop.transactions
    table = pd.DataFrame(index=pd.Index(arrays.product_ids, name="product_id"))
    if shop.products is not None and len(shop.products):
        prods = shop.products.drop_duplicates("product_id").set_index("product_id")
        table = table.join(prods[[c for c in ("name", "category", "price") if c in prods]])
    if "category" not in table and "category" in tx:
        table["category"] = tx.groupby("product_id")["category"].agg(lambda s: s.mode().iat[0])
    if "price" not in table or table["price"].isna().any():
        buys = tx[~tx["is_return"] & (tx["quantity"] > 0)]
        unit = (buys["amount"] / buys["quantity"]).groupby(buys["product_id"]).median()
        table["price"] = table.get("price", pd.Series(np.nan, index=table.index)).fillna(unit)
    table["name"] = table.get("name", pd.Series(dtype=object)).fillna(pd.Series(table.index, index=table.index))
    table["category"] = table.get("category", pd.Series(dtype=object)).fillna("")
    table["price"] = table["price"].fillna(0.0).astype(np.float64)
    table["cat_code"] = pd.Index(space.categories).get_indexer(table["category"].astype(str))
    return table
