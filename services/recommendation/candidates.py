"""Candidates and pair features for one customer per request, from arrays prepared once per snapshot.

`AffinityState.candidates` (tenure.features) is the definition: training builds the propensity
model's rows with it, for many customers at once. `CandidateIndex.candidates` gives the same
answer bit for bit (tests/integration/test_recommendation_candidates.py) for one customer, at a fraction of
the cost: the customer's history row is read straight from the CSR arrays, the co-purchase sum
visits only the rows of products the customer bought (zero weights add +0.0, which changes
nothing, so skipping them keeps every float32 sum as it was), and the per-product columns and
customer column positions are looked up once at load.
"""
from __future__ import annotations

import numpy as np

from tenure.features import CUSTOMER_PAIR_COLUMNS, PAIR_FEATURES, UNKNOWN, AffinityState
from tenure.store import FeatureSnapshot

N_PAIR = len(PAIR_FEATURES)
PRODUCT_BLOCK = slice(5, 10)
"""PAIR_FEATURES columns that depend on the product only: pop_90d, pop_all, pop_in_cat, repeat_rate, price."""
CUSTOMER_BLOCK = slice(11, 11 + len(CUSTOMER_PAIR_COLUMNS))
LAYOUT = ("hist_count", "hist_days_since", "co_score", "co_score_per_item", "cat_share", "pop_90d", "pop_all",
          "pop_in_cat", "repeat_rate", "price", "price_ratio", *(f"cust_{c}" for c in CUSTOMER_PAIR_COLUMNS))
"""The PAIR_FEATURES order `candidates` fills (AffinityState.pair_matrix's)."""
if PAIR_FEATURES != LAYOUT:
    raise ImportError(f"PAIR_FEATURES changed ({PAIR_FEATURES}); update CandidateIndex.candidates to match")


class CandidateIndex:
    """Per-snapshot arrays for `candidates`; immutable after construction, shared by all threads."""

    def __init__(self, snapshot: FeatureSnapshot) -> None:
        aff: AffinityState = snapshot.affinity
        self.aff = aff
        self.X = snapshot.X
        self.n_products = P = aff.n_products
        names = {n: i for i, n in enumerate(snapshot.feature_names)}
        self.cust_cols = np.array([names[n] for n in CUSTOMER_PAIR_COLUMNS], np.intp)
        self.share_cols = np.array([names[f"cat_share_{c}"] for c in snapshot.space.categories], np.intp)
        self.hist_data, self.hist_indices, self.hist_indptr = aff.hist.data, aff.hist.indices, aff.hist.indptr
        self.last_data, self.last_indices, self.last_indptr = aff.hist_last.data, aff.hist_last.indices, \
            aff.hist_last.indptr
        self.cond_data, self.cond_indices, self.cond_indptr = aff.cond.data, aff.cond.indices, aff.cond.indptr
        self.has_cat = aff.product_cat >= 0
        self.cat_index = np.maximum(aff.product_cat, 0)
        self.use_share = bool(aff.n_categories and len(self.share_cols))
        self.popular = 0.5 * aff.pop_90d  # float32, as AffinityState.candidates computes it
        self.product_block = np.stack([aff.pop_90d, aff.pop_all, aff.pop_in_cat, aff.repeat_rate, aff.price],
                                      axis=-1).astype(np.float32)
        self.empty_share = np.zeros(P, np.float32)
        self.all_products = np.arange(P)
        self.avg_price = CUSTOMER_PAIR_COLUMNS.index("avg_unit_price")

    def history(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Dense purchase counts and last-purchase days (+1) of snapshot row `row`, length n_products."""
        hist = np.zeros(self.n_products, self.hist_data.dtype)
        last = np.zeros(self.n_products, self.last_data.dtype)
        s, e = self.hist_indptr[row], self.hist_indptr[row + 1]
        hist[self.hist_indices[s:e]] = self.hist_data[s:e]
        s, e = self.last_indptr[row], self.last_indptr[row + 1]
        last[self.last_indices[s:e]] = self.last_data[s:e]
        return hist, last

    def _co_purchase(self, weights: np.ndarray) -> np.ndarray:
        """weights @ cond over the rows with a non-zero weight, each column summed in row order
        (tenure.sparse.dense_times, whose zero-weight terms add +0.0)."""
        rows = np.flatnonzero(weights)
        out = np.zeros(self.n_products, np.result_type(weights.dtype, self.cond_data.dtype))
        if not len(rows):
            return out
        starts, ends = self.cond_indptr[rows], self.cond_indptr[rows + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        if not total:
            return out
        offsets = np.cumsum(lengths) - lengths
        take = np.repeat(starts - offsets, lengths) + np.arange(total)
        np.add.at(out, self.cond_indices[take], np.repeat(weights[rows], lengths) * self.cond_data[take])
        return out

    def online_history(self, products: dict[str, tuple[float, float]], as_of_day: float,
                       index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """`history` of a customer of the online store: products (id -> (purchase lines, last purchase day),
        tenure.online.OnlineFeatures.products) as dense counts and days between the last purchase and the
        row's as-of day, + 1 (hist_last's convention). Ids the catalogue (`index`) lacks are left out."""
        hist = np.zeros(self.n_products, self.hist_data.dtype)
        last = np.zeros(self.n_products, self.last_data.dtype)
        known = [(index[p], c, t) for p, (c, t) in products.items() if p in index]
        if known:
            idx = np.array([k[0] for k in known], np.intp)
            hist[idx] = np.array([k[1] for k in known], np.float64)
            last[idx] = (as_of_day - np.array([k[2] for k in known], np.float64) + 1).astype(np.float32)
        return hist, last

    def candidates(self, row: int, n: int, exclude: np.ndarray | None = None,
                   boost: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """AffinityState.candidates for the one customer of snapshot row `row` (its hist, hist_last and
        customer columns): (cand length n, -1 for empty slots; source length n; X n x len(PAIR_FEATURES))."""
        hist, last = self.history(row)
        return self.candidates_of(hist, last, self.X[row], n, exclude, boost)

    def candidates_of(self, hist: np.ndarray, last: np.ndarray, features: np.ndarray, n: int,
                      exclude: np.ndarray | None = None,
                      boost: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`candidates` of a customer given by dense history rows (`history`, `online_history`) and a feature row
        (the snapshot's, or the online store's: same column order)."""
        P = self.n_products
        cust = features[self.cust_cols].astype(np.float32)
        cat_share = features[self.share_cols].astype(np.float32)

        weights = np.log1p(hist)
        if boost is not None:
            weights = weights + boost
        co = self._co_purchase(weights).astype(np.float32, copy=False)
        n_hist = np.maximum((weights > 0).sum(keepdims=True), 1)
        share_pp = np.where(self.has_cat, cat_share[self.cat_index], 0.0) if self.use_share else self.empty_share
        cat_pop = share_pp * self.aff.pop_in_cat

        bought = 3.0 * (hist > 0)
        co_part = 2.0 * co / np.maximum(co.max(keepdims=True), 1e-9)
        cat_part = 1.0 * cat_pop / np.maximum(cat_pop.max(keepdims=True), 1e-9)
        priority = bought + co_part
        priority += cat_part
        priority += self.popular
        if exclude is not None:
            priority[exclude] = -np.inf
        n = min(n, P)
        cand = np.argpartition(-priority, n - 1)[:n] if n < P else self.all_products.copy()
        cand_prio = priority[cand]
        order = np.argsort(-cand_prio, kind="stable")
        cand = cand[order]
        empty = ~np.isfinite(cand_prio[order])
        parts = np.stack([bought[cand], co_part[cand], cat_part[cand], self.popular[cand]])
        source = np.argmax(parts, axis=0) + 1
        cand = np.where(empty, -1, cand)
        source = np.where(empty, 0, source)

        safe = np.maximum(cand, 0)
        X = np.empty((n, N_PAIR), np.float32)
        count, days, co_c, share = hist[safe], last[safe], co[safe], share_pp[safe]
        X[:, 0] = count
        X[:, 1] = np.where(days > 0, days - 1, UNKNOWN)
        X[:, 2] = co_c
        X[:, 3] = co_c / n_hist
        X[:, 4] = share
        X[:, PRODUCT_BLOCK] = self.product_block[safe]
        X[:, 10] = X[:, 9] / np.maximum(cust[self.avg_price:self.avg_price + 1], 1e-3)
        X[:, CUSTOMER_BLOCK] = cust
        return cand, source, X
