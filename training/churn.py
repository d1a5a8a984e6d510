"""Churn: P(no purchase in the next H days) for customers active in the last year.

Time split: the holdout cutoff is the last one whose label window fits in the data
(end - H; H is the asked horizon or, for a short history, the longest label window that fits,
see training.windows); training cutoffs step back from (holdout - H) so that no training label window
overlaps the holdout window. Early stopping uses a customer split of the training rows only.
Baselines on the same holdout rows: recency alone, and BG/NBD (expected purchases in H days, and
P(no purchase in H days); `baseline_bgnbd_best_auc` is the better of the two). Trees are small with
well-populated leaves (CHURN_TREE_PARAMS); bgnbd_gg_spend_* feature columns, when the space has
them, are not used (tenure.features.without_btyd): they did not help on validation.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from tenure.data import Shop
from tenure.features import FeatureSpace, TxArrays, to_days, without_btyd
from training import evaluation as E
from training import metrics as M
from training.btyd import BetaGeoFitter, rfm_summary
from training.lgbm import fit_classifier, positive_proba
from training.windows import History, LabelPlan, NotEnoughHistory, bgnbd_exponent, extrapolation_note, label_plan

log = logging.getLogger(__name__)

CHURN_TREE_PARAMS: dict[str, int] = {"num_leaves": 7, "min_child_samples": 200}
"""Small, well-populated leaves. Chosen on validation splits that end before the holdout cutoff
(cutoffs end - 2H / labels to end - H) of CDNOW and The Complete Journey: AUC 0.807 vs 0.805 and
0.911 vs 0.902 for LightGBM's defaults here (31 leaves, 50 rows), with lower ECE on both. Churn
labels are noisy and the signal is mostly recency/frequency, so deep trees fit noise."""


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

    def cutoffs(self, end: pd.Timestamp, plan: LabelPlan | None = None) -> tuple[list[pd.Timestamp], pd.Timestamp]:
        plan = plan or LabelPlan(self.horizon_days, self.cutoff_step_days, self.n_train_cutoffs, False)
        H = pd.Timedelta(days=plan.label_days)
        holdout = end - H
        train = [holdout - H - pd.Timedelta(days=plan.cutoff_step_days * k) for k in range(plan.n_train_cutoffs)]
        return train, holdout

    def fit(self, shop: Shop, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp) -> "ChurnModel":
        """Labels of `label_days_` = the asked horizon, or the longest window the history allows
        (training.windows); a shorter window is extended to the asked horizon by a survival power
        calibrated on BG/NBD at the end of the data (`horizon_exponent_`, 1 when not needed)."""
        history = History.of(shop.transactions)
        plan = label_plan(history, self.horizon_days, "churn", self.cutoff_step_days, self.n_train_cutoffs)
        self.label_days_ = plan.label_days
        train_cutoffs, holdout_cutoff = self.cutoffs(end, plan)
        sets = [churn_set(space, arrays, shop.customers, c, self.label_days_, self.active_window_days)
                for c in train_cutoffs if history.has_features(c)]
        if not sets:
            raise NotEnoughHistory(f"churn: not enough history for a {self.label_days_}-day label window: "
                                   f"{history.describe()}")
        X = np.concatenate([s.X for s in sets])
        y = np.concatenate([s.y for s in sets])
        groups = np.concatenate([s.codes for s in sets])
        # a small shop keeps leaves of 5% of its rows (at least 20) instead of 200
        min_leaf = int(np.clip(len(y) // 20, 20, CHURN_TREE_PARAMS["min_child_samples"]))
        self.model_: lgb.LGBMClassifier = fit_classifier(without_btyd(X, space.names), y, groups, seed=self.seed,
                                                         threads=self.threads,
                                                         num_leaves=CHURN_TREE_PARAMS["num_leaves"],
                                                         min_child_samples=min_leaf)
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
        self.evaluation_ = self._curves(arrays, h, p, recency, bgf, s, expected)
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
            **bgnbd_no_purchase_baseline(bgf, s, h.y, self.label_days_),
            "bgnbd_params": {k: float(v) for k, v in bgf.params_.items()},
        }

    def _curves(self, arrays: TxArrays, h: LabelledSet, p: np.ndarray, recency: np.ndarray, bgf: BetaGeoFitter,
                s: pd.DataFrame, expected: np.ndarray) -> dict[str, Any]:
        """The holdout curves of evaluation.json (training.evaluation): ROC / gains of the model, recency
        and BG/NBD, reliability of the model and BG/NBD P(no purchase), BG/NBD's expected vs actual
        purchases in the label window."""
        from training.purchase import bgnbd_purchase_probabilities

        f, r, t = s["frequency"].to_numpy(), s["recency"].to_numpy(), s["T"].to_numpy()
        p_none = 1.0 - bgnbd_purchase_probabilities(bgf, f, r, t, [self.label_days_])[:, 0]
        T = to_days(h.cutoff)
        window = (arrays.o_t >= T) & (arrays.o_t < T + self.label_days_)
        # BG/NBD counts purchase days (several orders on one day are one purchase)
        days = np.unique(np.stack([arrays.o_cust[window], np.floor(arrays.o_t[window])]).astype(np.int64), axis=1)
        actual = np.bincount(days[0], minlength=arrays.n_customers)[h.codes]
        return {**E.binary_evaluation(h.y, {"model": p, "recency": recency, "BG/NBD": -expected},
                                      {"model": p, "BG/NBD": np.nan_to_num(p_none, nan=0.5)}),
                "positive": "no purchase in the label window (churned)", "label_days": self.label_days_,
                "bgnbd": E.bgnbd_diagnostics(f, recency, actual, expected, self.label_days_)}


def bgnbd_no_purchase_baseline(bgf: BetaGeoFitter, summary: pd.DataFrame, y: np.ndarray,
                               horizon_days: float) -> dict[str, float]:
    """BG/NBD's other churn score: P(no purchase in the next horizon_days) = 1 - P(alive) x
    P(a purchase | alive), next to the expected-purchases one; `baseline_bgnbd_best_auc` is the
    better of the two (the bar the model has to clear)."""
    from training.purchase import bgnbd_purchase_probabilities

    p_buy = bgnbd_purchase_probabilities(bgf, summary["frequency"].to_numpy(), summary["recency"].to_numpy(),
                                         summary["T"].to_numpy(), [horizon_days])[:, 0]
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(
        horizon_days, summary["frequency"].to_numpy(), summary["recency"].to_numpy(), summary["T"].to_numpy())
    auc_none = M.roc_auc(y, 1.0 - p_buy)
    return {"baseline_bgnbd_p_none_auc": auc_none,
            "baseline_bgnbd_p_none_ece": M.expected_calibration_error(y, 1.0 - p_buy),
            "baseline_bgnbd_best_auc": max(auc_none, M.roc_auc(y, -np.asarray(expected, np.float64)))}
