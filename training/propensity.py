"""Propensity: P(customer buys product p in the next H days), the ranker behind recommendations.

Candidates come from the customer's history, co-purchase neighbours, popular products of the
customer's categories and global popularity (tenure.features.AffinityState.candidates, the same
code the recommendation service runs). The model is trained at cutoff end - 2H with labels from
the following H days and evaluated at end - H on customers who bought in the last H days, next
to two baselines: global popularity and the customer's own repeat frequency (popularity fill).
"""
from __future__ import annotations

import logging
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from tenure.data import Shop
from tenure.features import AffinityState, FeatureSpace, TxArrays, customer_columns, to_days
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
            end: pd.Timestamp) -> "PropensityModel":
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
        X, y, g = np.concatenate(Xs), np.concatenate(ys), np.concatenate(gs)
        log.info("propensity: %d pairs from %d customers, %.2f%% positive", len(y), len(pick), 100 * y.mean())
        self.model_: lgb.LGBMClassifier = fit_classifier(X, y, g, seed=self.seed, threads=self.threads,
                                                         min_child_samples=100)
        self.train_rows_ = int(len(y))
        self.check_rows_ = X[rng.choice(len(X), size=min(2_000, len(X)), replace=False)]
        return self

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
            top = np.take_along_axis(cand, M.top_k_from_scores(p, K), axis=1)
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
        }
