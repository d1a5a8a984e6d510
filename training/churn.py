"""Churn: P(no purchase in the next H days) for customers active in the last year.

Time split: the holdout cutoff is the last one whose label window fits in the data
(end - H; H is the asked horizon or, for a short history, the longest label window that fits,
see training.windows); training cutoffs step back from (holdout - H) so that no training label window
overlaps the holdout window. Early stopping uses a customer split of the training rows only.
Baselines on the same holdout rows: recency alone, and BG/NBD expected purchases in H days.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from tenure.data import Shop
from tenure.features import FeatureSpace, TxArrays, to_days
from training import metrics as M
from training.btyd import BetaGeoFitter, rfm_summary
from training.lgbm import fit_classifier, positive_proba
from training.windows import History, NotEnoughHistory, bgnbd_exponent, extrapolation_note

log = logging.getLogger(__name__)


@dataclass
class LabelledSet:
    codes: np.ndarray
    X: np.ndarray
    y: np.ndarray
    cutoff: pd.Timestamp


def churn_set(space: FeatureSpace, arrays: TxArrays, customers: pd.DataFrame | None,
              cutoff: pd.Timestamp, horizon_days: int, active_window_days: int) -> LabelledSet:
    """Features at cutoff and label 1 = no purchase in [cutoff, cutoff + horizon)."""
    codes, X = space.customer_features(arrays, cutoff, customers)
    active = X[:, space.names.index("recency_days")] <= active_window_days
    T = to_days(cutoff)
    bought = arrays.purchasers_between(T, T + horizon_days)
    return LabelledSet(codes[active], X[active], (~bought[codes[active]]).astype(np.int32), cutoff)


class ChurnModel:
    """LightGBM churn classifier trained on stacked point-in-time cutoffs."""

    def __init__(self, horizon_days: int = 90, active_window_days: int = 365, n_train_cutoffs: int = 3,
                 cutoff_step_days: int = 30, seed: int = 7, threads: int = 2) -> None:
        self.horizon_days = horizon_days
        self.active_window_days = active_window_days
        self.n_train_cutoffs = n_train_cutoffs
        self.cutoff_step_days = cutoff_step_days
        self.seed = seed
        self.threads = threads

    def cutoffs(self, end: pd.Timestamp, label_days: int | None = None) -> tuple[list[pd.Timestamp], pd.Timestamp]:
        H = pd.Timedelta(days=label_days or self.horizon_days)
        holdout = end - H
        train = [holdout - H - pd.Timedelta(days=self.cutoff_step_days * k) for k in range(self.n_train_cutoffs)]
        return train, holdout

    def fit(self, shop: Shop, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp) -> "ChurnModel":
        """Labels of `label_days_` = the asked horizon, or the longest window the history allows
        (training.windows); a shorter window is extended to the asked horizon by a survival power
        calibrated on BG/NBD at the end of the data (`horizon_exponent_`, 1 when not needed)."""
        history = History.of(shop.transactions)
        self.label_days_ = history.label_days(self.horizon_days, "churn")
        train_cutoffs, holdout_cutoff = self.cutoffs(end, self.label_days_)
        sets = [churn_set(space, arrays, shop.customers, c, self.label_days_, self.active_window_days)
                for c in train_cutoffs if history.has_features(c)]
        if not sets:
            raise NotEnoughHistory(f"churn: not enough history for a {self.label_days_}-day label window: "
                                   f"{history.describe()}")
        X = np.concatenate([s.X for s in sets])
        y = np.concatenate([s.y for s in sets])
        groups = np.concatenate([s.codes for s in sets])
        self.model_: lgb.LGBMClassifier = fit_classifier(X, y, groups, seed=self.seed, threads=self.threads)
        self.feature_names_ = space.names
        self.train_cutoffs_ = [s.cutoff for s in sets]
        self.holdout_cutoff_ = holdout_cutoff
        self.train_rows_ = int(len(y))
        self.holdout_ = churn_set(space, arrays, shop.customers, holdout_cutoff, self.label_days_,
                                  self.active_window_days)
        self.horizon_exponent_ = (1.0 if self.label_days_ >= self.horizon_days else
                                  bgnbd_exponent(shop.transactions, end, self.label_days_, self.horizon_days))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return positive_proba(self.model_, X)

    def evaluate(self, shop: Shop, arrays: TxArrays) -> dict[str, Any]:
        """Holdout metrics of the model next to the recency-only and BG/NBD baselines."""
        h = self.holdout_
        p = self.predict(h.X)
        recency = h.X[:, self.feature_names_.index("recency_days")]
        summary = rfm_summary(shop.transactions, h.cutoff)
        bgf = BetaGeoFitter(penalizer_coef=0.001).fit(summary["frequency"], summary["recency"], summary["T"])
        ids = arrays.customer_ids[h.codes]
        s = summary.reindex(ids)
        expected = bgf.conditional_expected_number_of_purchases_up_to_time(
            self.label_days_, s["frequency"].to_numpy(), s["recency"].to_numpy(), s["T"].to_numpy())
        expected = np.asarray(expected, dtype=np.float64)
        return {
            "horizon_days": self.horizon_days,
            "label_days": self.label_days_,
            "horizon_exponent": self.horizon_exponent_,
            "note": extrapolation_note(self.label_days_, self.horizon_days, self.horizon_exponent_),
            "holdout_cutoff": str(h.cutoff.date()),
            "holdout_rows": int(len(h.y)),
            "holdout_churn_rate": float(h.y.mean()),
            "auc": M.roc_auc(h.y, p),
            "lift_at_10pct": M.lift_at(h.y, p, 0.1),
            "brier": M.brier(h.y, p),
            "ece": M.expected_calibration_error(h.y, p),
            "baseline_recency_auc": M.roc_auc(h.y, recency),
            "baseline_recency_lift_at_10pct": M.lift_at(h.y, recency, 0.1),
            "baseline_bgnbd_auc": M.roc_auc(h.y, -expected),
            "baseline_bgnbd_lift_at_10pct": M.lift_at(h.y, -expected, 0.1),
            "bgnbd_params": {k: float(v) for k, v in bgf.params_.items()},
        }
