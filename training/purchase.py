"""Purchase timing: P(any purchase in the next 7 / 30 / 90 days) and the expected next order date.

One LightGBM binary classifier per horizon h on the churn model's customer features (serving feeds
the snapshot row to each exported ONNX model). Time split as in :mod:`training.churn`: the holdout
cutoff is ``end - max(horizons)`` for every horizon (so the next-order evaluation sees all three
probabilities at one cutoff); the training cutoffs of horizon h step back from ``holdout - h``, so
no training label window overlaps the holdout window. Early stopping uses whole customers held out
from the training rows (:func:`training.lgbm.fit_classifier`). Rows: every customer with a
purchase before the cutoff, or only those active in ``active_window_days`` when it is set.

Baselines on the same holdout rows: recency alone (AUC) and BG/NBD (fitted by
:mod:`training.btyd` at the holdout cutoff): P(at least one purchase in (T, T + h]) =
P(alive) x (1 - ((alpha + T) / (alpha + T + h)) ** (r + x)); an alive customer cannot drop out
before her next purchase, and her purchase rate given the history is Gamma(r + x, alpha + T).

Next order (:func:`next_purchase_days`, pure numpy, what serving calls): the three probabilities
define a cumulative distribution of the time to the next order on [0, 90] with a piecewise-
constant hazard on [0, 7), [7, 30), [30, 90). The predicted time is its median *given a purchase
within 90 days* (the time beyond 90 days is not identified by the models; serving reports P(90)
next to the date). It is evaluated on the holdout customers who did buy within 90 days (MAE in
days) next to the naive "last order + average gap" (clipped to the window, population median gap
for one-order customers) and to the same function fed with BG/NBD's probabilities.

Average days between orders (:func:`average_gap_days`): the customer's observed mean gap
(``gap_mean_days``) when she has two or more orders, else the gap of a Poisson process with the
predicted 90-day purchase probability, ``90 / -ln(1 - P(90))``.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from tenure.data import Shop
from tenure.features import UNKNOWN, FeatureSpace, TxArrays, to_days
from tenure.timing import HORIZONS, average_gap_days, next_purchase_days
from training import evaluation as E
from training import metrics as M
from training.btyd import BetaGeoFitter, rfm_summary
from training.clv import customer_groups
from training.export import export_binary
from training.lgbm import fit_classifier, positive_proba
from training.windows import History, bgnbd_exponent, extrapolation_note, label_plan

log = logging.getLogger(__name__)

def naive_next_purchase_days(gap_mean_days: np.ndarray, recency_days: np.ndarray, fallback_gap_days: float,
                             window_days: float) -> np.ndarray:
    """Baseline: last order + average gap (the fallback gap for one-order customers), as days
    from the cutoff clipped to [0, window_days]."""
    gap = np.where(np.asarray(gap_mean_days) >= 0, gap_mean_days, fallback_gap_days)
    return np.clip(gap - np.asarray(recency_days, dtype=np.float64), 0.0, window_days)


def bgnbd_purchase_probabilities(bgf: BetaGeoFitter, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray,
                                 horizons: Sequence[float]) -> np.ndarray:
    """(N, K) BG/NBD P(at least one purchase in (T, T + h]) per horizon (time unit of the fit)."""
    p_alive = bgf.conditional_probability_alive(frequency, recency, T)
    r, alpha = bgf.params_["r"], bgf.params_["alpha"]
    h = np.asarray(horizons, dtype=np.float64)[None, :]
    x = np.asarray(frequency, dtype=np.float64)[:, None]
    big_t = np.asarray(T, dtype=np.float64)[:, None]
    none_if_alive = np.exp((r + x) * (np.log(alpha + big_t) - np.log(alpha + big_t + h)))
    return p_alive[:, None] * (1.0 - none_if_alive)


def first_order_days(arrays: TxArrays, start_day: float, window_days: float) -> np.ndarray:
    """Per customer code: days from start_day to the first order in [start, start + window); NaN if none."""
    m = (arrays.o_t >= start_day) & (arrays.o_t < start_day + window_days)
    cust, t = arrays.o_cust[m], arrays.o_t[m]
    out = np.full(arrays.n_customers, np.nan)
    # orders are sorted by (customer, time): the first occurrence of a customer is her first order
    first_cust, first_idx = np.unique(cust, return_index=True)
    out[first_cust] = t[first_idx] - start_day
    return out


@dataclass
class PurchaseSet:
    codes: np.ndarray
    X: np.ndarray
    y: np.ndarray
    """(N, K) 0/1: any purchase within each horizon."""
    cutoff: pd.Timestamp


def purchase_set(space: FeatureSpace, arrays: TxArrays, customers: pd.DataFrame | None, cutoff: pd.Timestamp,
                 horizons: Sequence[int], active_window_days: int | None) -> PurchaseSet:
    """Features at cutoff and, per horizon h, label 1 = a purchase in [cutoff, cutoff + h)."""
    codes, X = space.customer_features(arrays, cutoff, customers)
    if active_window_days is not None:
        keep = X[:, space.names.index("recency_days")] <= active_window_days
        codes, X = codes[keep], X[keep]
    T = to_days(cutoff)
    y = np.column_stack([arrays.purchasers_between(T, T + h)[codes] for h in horizons]).astype(np.int32)
    return PurchaseSet(codes, X, y, cutoff)


class PurchaseModel:
    """One LightGBM classifier per horizon, trained on stacked point-in-time cutoffs."""

    def __init__(self, horizons: Sequence[int] = HORIZONS, n_train_cutoffs: int = 3, cutoff_step_days: int = 30,
                 active_window_days: int | None = None, min_history_days: int = 60, seed: int = 7,
                 threads: int = 1, baseline_penalizer: float = 0.0) -> None:
        self.horizons = self.asked_horizons = tuple(sorted(int(h) for h in horizons))
        self.n_train_cutoffs = n_train_cutoffs
        self.cutoff_step_days = cutoff_step_days
        self.active_window_days = active_window_days
        self.min_history_days = min_history_days
        self.seed = seed
        self.threads = threads
        self.baseline_penalizer = baseline_penalizer

    def cutoffs(self, end: pd.Timestamp) -> tuple[dict[int, list[pd.Timestamp]], pd.Timestamp]:
        """({horizon: training cutoffs}, holdout cutoff = end - max horizon)."""
        holdout = end - pd.Timedelta(days=max(self.horizons))
        step = pd.Timedelta(days=self.cutoff_step_days)
        train = {h: [holdout - pd.Timedelta(days=h) - step * k for k in range(self.n_train_cutoffs)]
                 for h in self.horizons}
        return train, holdout

    def fit(self, shop: Shop, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp) -> "PurchaseModel":
        """One model per label window. A horizon longer than the history allows (training.windows) is
        trained on the longest window that fits and extended by a BG/NBD-calibrated survival power
        (`label_of_`, `exponent_` per asked horizon)."""
        history = History.of(shop.transactions)
        plan = label_plan(history, max(self.asked_horizons), "purchase", self.cutoff_step_days, self.n_train_cutoffs)
        longest = plan.label_days
        self.cutoff_step_days, self.n_train_cutoffs = plan.cutoff_step_days, plan.n_train_cutoffs
        self.label_of_ = {h: min(h, longest) for h in self.asked_horizons}
        self.exponent_ = {h: 1.0 if lab >= h else bgnbd_exponent(shop.transactions, end, lab, h)
                          for h, lab in self.label_of_.items()}
        self.horizons = tuple(sorted(set(self.label_of_.values())))
        train, holdout = self.cutoffs(pd.Timestamp(end))
        first = to_days(history.first)
        self.min_history_days = min(self.min_history_days, history.feature_days)
        self.models_: dict[int, lgb.LGBMClassifier] = {}
        self.train_cutoffs_: dict[int, list[pd.Timestamp]] = {}
        self.train_rows_: dict[int, int] = {}
        window = max(self.horizons)
        window_sets: list[PurchaseSet] = []
        for k, h in enumerate(self.horizons):
            sets = [purchase_set(space, arrays, shop.customers, c, (h,), self.active_window_days)
                    for c in train[h] if to_days(c) - first >= self.min_history_days]
            if not sets:
                raise ValueError(f"not enough history for a {h}-day purchase model")
            X = np.concatenate([s.X for s in sets])
            y = np.concatenate([s.y[:, 0] for s in sets])
            groups = customer_groups(arrays, np.concatenate([s.codes for s in sets]))
            self.models_[h] = fit_classifier(X, y, groups, seed=self.seed + k, threads=self.threads)
            self.train_cutoffs_[h] = [s.cutoff for s in sets]
            self.train_rows_[h] = int(len(y))
            if h == window:
                window_sets = sets
        # naive baseline's gap for one-order customers, and the constant baseline: training rows only
        gaps = np.concatenate([s.X[:, space.names.index("gap_mean_days")] for s in window_sets])
        gaps = gaps[gaps >= 0]
        self.fallback_gap_days_ = float(np.median(gaps)) if len(gaps) else float(window)
        firsts = np.concatenate([first_order_days(arrays, to_days(s.cutoff), window)[s.codes] for s in window_sets])
        firsts = firsts[np.isfinite(firsts)]
        self.constant_next_days_ = float(np.median(firsts)) if len(firsts) else window / 2.0
        self.feature_names_ = space.names
        self.holdout_cutoff_ = holdout
        self.holdout_ = purchase_set(space, arrays, shop.customers, holdout, self.horizons, self.active_window_days)
        log.info("purchase: horizons %s, training rows %s, holdout %s", self.horizons, self.train_rows_, holdout.date())
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(N, K) P(any purchase within each horizon), columns in `horizons` order (raw model outputs)."""
        return np.column_stack([positive_proba(self.models_[h], X) for h in self.horizons])

    def next_purchase(self, X: np.ndarray) -> pd.DataFrame:
        """Per row: days to the next order (given one within the longest horizon) and average gap."""
        if self.horizons != HORIZONS:
            raise ValueError(f"next_purchase needs horizons {HORIZONS}, the model has {self.horizons}")
        P = self.predict(X)
        gap = X[:, self.feature_names_.index("gap_mean_days")]
        return pd.DataFrame({
            "next_purchase_days": next_purchase_days(P[:, 0], P[:, 1], P[:, 2]),
            "average_gap_days": average_gap_days(gap, P[:, 2], HORIZONS[-1]),
        })

    def evaluate(self, shop: Shop, arrays: TxArrays) -> dict[str, Any]:
        """Holdout AUC / Brier per horizon next to recency and BG/NBD, and next-order MAE in days."""
        h = self.holdout_
        P = self.predict(h.X)
        recency = h.X[:, self.feature_names_.index("recency_days")]
        summary = rfm_summary(shop.transactions, h.cutoff)
        bgf = BetaGeoFitter(penalizer_coef=self.baseline_penalizer).fit(
            summary["frequency"], summary["recency"], summary["T"])
        rows = summary.reindex(arrays.customer_ids[h.codes])
        B = bgnbd_purchase_probabilities(bgf, rows["frequency"].to_numpy(), rows["recency"].to_numpy(),
                                         rows["T"].to_numpy(), self.horizons)
        out: dict[str, Any] = {
            "holdout_cutoff": str(h.cutoff.date()),
            "holdout_rows": int(len(h.y)),
            **{f"train_rows_{d}d": n for d, n in self.train_rows_.items()},
        }
        self.evaluation_: dict[int, dict[str, Any]] = {}
        for k, d in enumerate(self.horizons):
            y = h.y[:, k]
            self.evaluation_[d] = {**E.binary_evaluation(y, {"model": P[:, k], "BG/NBD": B[:, k], "recency": -recency},
                                                         {"model": P[:, k], "BG/NBD": np.nan_to_num(B[:, k], nan=0.5)}),
                                   "positive": f"a purchase within {d} days", "label_days": d}
            out |= {
                f"positive_rate_{d}d": float(y.mean()),
                f"auc_{d}d": M.roc_auc(y, P[:, k]),
                f"brier_{d}d": M.brier(y, P[:, k]),
                f"baseline_bgnbd_auc_{d}d": M.roc_auc(y, B[:, k]),
                f"baseline_bgnbd_brier_{d}d": M.brier(y, B[:, k]),
                f"baseline_recency_auc_{d}d": M.roc_auc(y, -recency),
            }
        if self.horizons == HORIZONS:
            out |= self._evaluate_next_purchase(arrays, P, B)
        return out

    def _evaluate_next_purchase(self, arrays: TxArrays, P: np.ndarray, B: np.ndarray) -> dict[str, Any]:
        h, window = self.holdout_, HORIZONS[-1]
        actual = first_order_days(arrays, to_days(h.cutoff), window)[h.codes]
        bought = np.isfinite(actual)
        X = h.X[bought]
        gap = X[:, self.feature_names_.index("gap_mean_days")]
        recency = X[:, self.feature_names_.index("recency_days")]
        model = next_purchase_days(P[bought, 0], P[bought, 1], P[bought, 2])
        bgnbd = next_purchase_days(B[bought, 0], B[bought, 1], B[bought, 2])
        naive = naive_next_purchase_days(gap, recency, self.fallback_gap_days_, window)
        a = actual[bought]
        return {
            "next_purchase_rows": int(bought.sum()),
            "next_purchase_mae_days": float(np.mean(np.abs(model - a))),
            "baseline_naive_next_purchase_mae_days": float(np.mean(np.abs(naive - a))),
            "baseline_bgnbd_next_purchase_mae_days": float(np.mean(np.abs(bgnbd - a))),
            "baseline_constant_next_purchase_mae_days": float(np.mean(np.abs(self.constant_next_days_ - a))),
            "constant_next_purchase_days": self.constant_next_days_,
            "next_purchase_one_order_share": float(np.mean(gap == UNKNOWN)),
            "fallback_gap_days": self.fallback_gap_days_,
        }


def train_purchase(shop: Shop, repo: Path, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp, *,
                   horizons: Sequence[int] = HORIZONS, seed: int = 7, threads: int = 1, name_prefix: str = "purchase",
                   data_fingerprint: str = "") -> list[dict[str, Any]]:
    """Fit, evaluate and export one ONNX binary model per horizon (models `<prefix>_<h>d`)."""
    model = PurchaseModel(horizons=horizons, seed=seed, threads=threads).fit(shop, space, arrays, end)
    metrics = model.evaluate(shop, arrays)
    results = []
    for h in model.asked_horizons:
        name, label, exponent = f"{name_prefix}_{h}d", model.label_of_[h], model.exponent_[h]
        path = export_binary(
            repo, name, model.models_[label], space.names, model.holdout_.X[:5_000],
            metrics={**metrics, "horizon_days": h, "label_days": label, "horizon_exponent": exponent,
                     "note": extrapolation_note(label, h, exponent)},
            training_window={"data_start": str(shop.transactions["ts"].min().date()),
                             "train_cutoffs": ",".join(str(c.date()) for c in model.train_cutoffs_[label]),
                             "holdout_cutoff": str(model.holdout_cutoff_.date()),
                             "holdout_label_end": str((model.holdout_cutoff_ + pd.Timedelta(days=label)).date())},
            params={"horizon_days": h, "label_days": label, "horizons": list(model.asked_horizons),
                    "dataset": shop.name, "fallback_gap_days": model.fallback_gap_days_},
            data_fingerprint=data_fingerprint,
            horizon_exponent=exponent,
            evaluation=model.evaluation_.get(label),
        )
        results.append({"name": name, "path": str(path), "metrics": metrics | {"horizon_days": h, "label_days": label}})
    return results
