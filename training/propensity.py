"""Propensity: P(customer buys product p in the next H days), the ranker behind recommendations.

Candidates come from the customer's history, co-purchase neighbours, popular products of the
customer's categories and global popularity (tenure.features.AffinityState.candidates, the same
code the recommendation service runs). The model is trained at cutoff end - 2H with labels from
the following H days and evaluated at end - H on customers who bought in the last H days, next
to two baselines: global popularity and the customer's own repeat frequency (popularity fill).

Recommendation feedback (tenure.feedback: impressions, clicks, purchases recorded by the service)
adds observed outcomes to the training set: one row per (customer, product) shown, labelled 1 if
a click or purchase of that product by that customer followed one of its impressions within the
horizon, else 0 (`feedback_rows`). Feedback timestamps are wall-clock times, often after the
data's end, so these rows are featurised at the training cutoff like every other training row:
the customer's state as the training set sees it, not at the moment of the impression. They only
ever enter the training set, never the holdout evaluation, so the holdout metrics stay comparable
between runs with and without feedback.
"""
from __future__ import annotations

import logging
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from tenure.data import Shop
from tenure.features import (
    PAIR_FEATURES,
    AffinityState,
    FeatureSpace,
    TxArrays,
    customer_columns,
    to_days,
)
from training import metrics as M
from training.lgbm import fit_classifier, positive_proba

log = logging.getLogger(__name__)
BATCH = 1_000
K = 10


def pair_batches(state: AffinityState, space: FeatureSpace, codes: np.ndarray, Xc: np.ndarray,
                 n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(rows, candidates, sources, pair features) for feature rows in batches."""
    out = []
    for start in range(0, len(Xc), BATCH):
        rows = np.arange(start, min(start + BATCH, len(Xc)))
        idx = codes[rows]
        cust = customer_columns(space.names, Xc[rows], space.categories)
        cand, src, Xp = state.candidates(state.hist[idx].toarray(), state.hist_last[idx].toarray(), cust, n)
        out.append((rows, cand, src, Xp))
    return out


def pair_features(state: AffinityState, hist_rows: np.ndarray, products: np.ndarray,
                  cust: dict[str, np.ndarray]) -> np.ndarray:
    """PAIR_FEATURES (float32, n x len(PAIR_FEATURES)) for n given (customer, product) pairs: the
    same values `AffinityState.candidates` computes for a candidate, without choosing candidates.

    hist_rows: the pairs' rows of state.hist; products: their product indices; cust: customer
    columns (tenure.features.customer_columns) of the pairs' customers, one row per pair.
    """
    n = len(products)
    if n == 0:
        return np.zeros((0, len(PAIR_FEATURES)), np.float32)
    uniq, inv = np.unique(hist_rows, return_inverse=True)
    hist = state.hist[uniq].tocsr()
    weights = hist.copy()
    weights.data = np.log1p(weights.data).astype(np.float32)
    co_matrix = (weights @ state.cond).tocsr()  # == (cond.T @ weights.T).T of candidates()
    co = np.asarray(co_matrix[inv, products], dtype=np.float32).ravel()
    count = np.asarray(hist[inv, products], dtype=np.float32).ravel()
    last = np.asarray(state.hist_last[uniq].tocsr()[inv, products], dtype=np.float32).ravel()
    n_hist = np.maximum(np.asarray((weights > 0).sum(axis=1)).ravel(), 1)[inv].astype(np.float32)
    cat = state.product_cat[products]
    cat_share = cust["cat_share"]
    if state.n_categories and cat_share.shape[1]:
        share = np.where(cat >= 0, cat_share[np.arange(n), np.maximum(cat, 0)], 0.0)
    else:
        share = np.zeros(n, np.float32)
    return state.pair_matrix(products, count, last, co, n_hist, share, cust)


def feedback_labels(feedback: pd.DataFrame | None, horizon_days: float) -> pd.DataFrame:
    """One row per (customer_id, product_id) with an impression (or a click/purchase, which
    implies one): label 1 if a click or purchase of the product by the customer came at or after
    one of its impressions and within horizon_days of it (an engagement without a recorded
    impression counts as shown and engaged), else 0."""
    cols = ["customer_id", "product_id", "label"]
    if feedback is None or feedback.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c != "label" else np.int32) for c in cols})
    ev = feedback[["customer_id", "product_id", "kind", "timestamp"]].astype(
        {"customer_id": str, "product_id": str, "kind": np.int64, "timestamp": np.float64})
    ev = ev[np.isfinite(ev["timestamp"])]
    imp = ev[ev["kind"] == 1].sort_values("timestamp", kind="stable")
    eng = ev[ev["kind"] != 1].sort_values("timestamp", kind="stable")
    # Each impression's first engagement at or after it (same customer and product).
    nxt = pd.merge_asof(imp[["customer_id", "product_id", "timestamp"]].reset_index(drop=True),
                        eng[["customer_id", "product_id", "timestamp"]].rename(columns={"timestamp": "engaged_at"}),
                        left_on="timestamp", right_on="engaged_at", by=["customer_id", "product_id"],
                        direction="forward")
    hit = (nxt["engaged_at"] - nxt["timestamp"]).to_numpy() < horizon_days * 86_400.0  # NaN (none) -> False
    shown = nxt[["customer_id", "product_id"]].assign(label=hit.astype(np.int32))
    shown = shown.groupby(["customer_id", "product_id"], as_index=False, sort=False)["label"].max()
    pairs = eng[["customer_id", "product_id"]].drop_duplicates()
    known = pd.MultiIndex.from_frame(pairs).isin(pd.MultiIndex.from_frame(shown[["customer_id", "product_id"]]))
    engaged_only = pairs[~known].assign(label=np.int32(1))
    out = pd.concat([shown, engaged_only], ignore_index=True)
    return out.sort_values(["customer_id", "product_id"], kind="stable").reset_index(drop=True)[cols]


class PropensityModel:
    def __init__(self, horizon_days: int = 30, n_candidates_train: int = 100, n_candidates_eval: int = 200,
                 train_customers: int = 10_000, eval_customers: int = 5_000, seed: int = 7, threads: int = 2) -> None:
        self.horizon_days = horizon_days
        self.n_candidates_train = n_candidates_train
        self.n_candidates_eval = n_candidates_eval
        self.train_customers = train_customers
        self.eval_customers = eval_customers
        self.seed = seed
        self.threads = threads

    def _state(self, shop: Shop, arrays: TxArrays, products: pd.DataFrame, cutoff: pd.Timestamp) -> AffinityState:
        return AffinityState.build(arrays, cutoff, product_cat=products["cat_code"].to_numpy(np.int64),
                                   price=products["price"].to_numpy(np.float64))

    def fit(self, shop: Shop, space: FeatureSpace, arrays: TxArrays, products: pd.DataFrame,
            end: pd.Timestamp, feedback: pd.DataFrame | None = None) -> "PropensityModel":
        """feedback: recorded events (tenure.feedback.FeedbackStore.read_events), or None; their
        observed outcomes become extra training rows (see the module docstring)."""
        H = pd.Timedelta(days=self.horizon_days)
        self.holdout_cutoff_ = end - H
        self.train_cutoff_ = end - 2 * H
        rng = np.random.default_rng(self.seed)
        codes, Xc = space.customer_features(arrays, self.train_cutoff_, shop.customers)
        recent = Xc[:, space.names.index("recency_days")] <= 180
        pick = np.flatnonzero(recent)
        pick = np.sort(rng.choice(pick, size=min(self.train_customers, len(pick)), replace=False))
        state = self._state(shop, arrays, products, self.train_cutoff_)
        T = to_days(self.train_cutoff_)
        labels = arrays.bought_between(T, T + self.horizon_days)
        Xs, ys, gs = [], [], []
        for rows, cand, _src, Xp in pair_batches(state, space, codes[pick], Xc[pick], self.n_candidates_train):
            y = np.take_along_axis(labels[codes[pick][rows]].toarray() > 0, np.maximum(cand, 0), axis=1)
            valid = (cand >= 0).ravel()
            Xs.append(Xp[valid])
            ys.append(y.ravel()[valid].astype(np.int32))
            gs.append(np.repeat(codes[pick][rows], cand.shape[1])[valid])
        Xf, yf, gf = self._feedback_rows(feedback, space, arrays, state, codes, Xc)
        X, y, g = np.concatenate([*Xs, Xf]), np.concatenate([*ys, yf]), np.concatenate([*gs, gf])
        log.info("propensity: %d pairs from %d customers + %d feedback rows (%d skipped), %.2f%% positive",
                 len(y) - len(yf), len(pick), len(yf), self.feedback_skipped_, 100 * y.mean())
        self.model_: lgb.LGBMClassifier = fit_classifier(X, y, g, seed=self.seed, threads=self.threads,
                                                         min_child_samples=100)
        self.train_rows_ = int(len(y))
        self.check_rows_ = X[rng.choice(len(X), size=min(2_000, len(X)), replace=False)]
        return self

    def _feedback_rows(self, feedback: pd.DataFrame | None, space: FeatureSpace, arrays: TxArrays,
                       state: AffinityState, codes: np.ndarray,
                       Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pair features at the training cutoff, labels, customer codes) of the feedback pairs whose
        customer had bought before the cutoff and whose product the data knows; others are skipped."""
        labels = feedback_labels(feedback, self.horizon_days)
        cust_code = pd.Index(arrays.customer_ids).get_indexer(labels["customer_id"].to_numpy(object))
        row_of = np.full(arrays.n_customers, -1, np.int64)
        row_of[codes] = np.arange(len(codes))
        rows = np.where(cust_code >= 0, row_of[np.maximum(cust_code, 0)], -1)
        prod = pd.Index(arrays.product_ids).get_indexer(labels["product_id"].to_numpy(object))
        ok = (rows >= 0) & (prod >= 0)
        rows, prod = rows[ok], prod[ok]
        y = labels["label"].to_numpy(np.int32)[ok]
        self.feedback_events_ = 0 if feedback is None else int(len(feedback))
        self.feedback_rows_ = int(ok.sum())
        self.feedback_positive_rows_ = int(y.sum())
        self.feedback_skipped_ = int((~ok).sum())
        cust = customer_columns(space.names, Xc[rows], space.categories)
        return pair_features(state, codes[rows], prod, cust), y, codes[rows]

    def feedback_metrics(self) -> dict[str, int]:
        """How much recorded feedback the last fit used (training rows only, never the holdout)."""
        return {"feedback_events": self.feedback_events_, "feedback_rows": self.feedback_rows_,
                "feedback_positive_rows": self.feedback_positive_rows_,
                "feedback_skipped_pairs": self.feedback_skipped_}

    def evaluate(self, shop: Shop, space: FeatureSpace, arrays: TxArrays, products: pd.DataFrame) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed + 1)
        cutoff = self.holdout_cutoff_
        codes, Xc = space.customer_features(arrays, cutoff, shop.customers)
        T = to_days(cutoff)
        actual_all = arrays.bought_between(T, T + self.horizon_days)
        buyers = np.flatnonzero(np.asarray(actual_all[codes].sum(axis=1)).ravel() > 0)
        pick = np.sort(rng.choice(buyers, size=min(self.eval_customers, len(buyers)), replace=False))
        state = self._state(shop, arrays, products, cutoff)
        model_top, cand_hits, cand_sizes = [], 0.0, []
        for rows, cand, _src, Xp in pair_batches(state, space, codes[pick], Xc[pick], self.n_candidates_eval):
            p = positive_proba(self.model_, Xp).reshape(cand.shape)
            p = np.where(cand >= 0, p, -np.inf)
            # fewer than K candidates (a tiny catalogue): top_k gives -1 for the empty slots, which must stay
            # empty (as an index, -1 would repeat the last candidate)
            idx = M.top_k_from_scores(p, K)
            top = np.where(idx >= 0, np.take_along_axis(cand, np.maximum(idx, 0), axis=1), -1)
            model_top.append(top)
            act = actual_all[codes[pick][rows]].toarray() > 0
            in_cand = np.take_along_axis(act, np.maximum(cand, 0), axis=1) & (cand >= 0)
            cand_hits += float((in_cand.sum(axis=1) / np.maximum(act.sum(axis=1), 1)).sum())
            cand_sizes.append((cand >= 0).sum(axis=1))
        rec_model = np.concatenate(model_top)
        actual = sp.csr_matrix(actual_all[codes[pick]] > 0)
        hist = state.hist[codes[pick]].toarray()
        pop_scores = np.broadcast_to(state.pop_90d, hist.shape)
        rec_pop = M.top_k_from_scores(np.array(pop_scores), K)
        rec_repeat = M.top_k_from_scores(hist * 1e3 + pop_scores, K)
        return {
            "holdout_cutoff": str(cutoff.date()),
            "holdout_customers": int(len(pick)),
            "candidates_per_customer": float(np.concatenate(cand_sizes).mean()),
            "candidate_recall": cand_hits / len(pick),
            "recall_at_10": M.recall_at_k(rec_model, actual),
            "ndcg_at_10": M.ndcg_at_k(rec_model, actual),
            "baseline_popularity_recall_at_10": M.recall_at_k(rec_pop, actual),
            "baseline_popularity_ndcg_at_10": M.ndcg_at_k(rec_pop, actual),
            "baseline_repeat_recall_at_10": M.recall_at_k(rec_repeat, actual),
            "baseline_repeat_ndcg_at_10": M.ndcg_at_k(rec_repeat, actual),
            **self.feedback_metrics(),
        }
