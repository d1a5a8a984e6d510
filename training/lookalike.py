"""Lookalike: how much a customer resembles a seed audience, trained as seed vs rest.

Default seed: the top decile by net spend. For that seed the spend columns are left out of the
model, otherwise it would only re-learn the seed's definition; the lookalikes it finds share
the seed's behaviour (frequency, rhythm, category and channel mix) instead. Any list of ids can
be the seed, and then every feature is used. Holdout: a random quarter of customers (lookalike
is a similarity, not a forecast), compared with cosine similarity to the seed's centroid.
"""
from __future__ import annotations

from typing import Any, Callable

import lightgbm as lgb
import numpy as np

from training import evaluation as E
from training import metrics as M
from training.lgbm import fit_classifier, positive_proba

VALUE_FEATURES = ("spend_total", "avg_order_value", "spend_180d", "spend_prev_180d", "avg_unit_price")


def default_seed(feature_names: list[str], X: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Rows of the top `fraction` by net spend."""
    spend = X[:, feature_names.index("spend_total")]
    n = max(1, int(round(len(spend) * fraction)))
    return np.sort(np.argsort(-spend, kind="stable")[:n])


class LookalikeModel:
    def __init__(self, seed: int = 7, threads: int = 2, holdout_fraction: float = 0.25) -> None:
        self.seed = seed
        self.threads = threads
        self.holdout_fraction = holdout_fraction

    def fit(self, feature_names: list[str], X: np.ndarray, seed_rows: np.ndarray,
            exclude: tuple[str, ...] = (), progress: Callable[[float], None] | None = None) -> "LookalikeModel":
        """progress, if given, is called with the fraction of boosting rounds done (at most)."""
        self.features_ = [n for n in feature_names if n not in exclude]
        self.columns_ = np.array([feature_names.index(n) for n in self.features_])
        y = np.zeros(len(X), np.int32)
        y[seed_rows] = 1
        rng = np.random.default_rng(self.seed)
        holdout = rng.random(len(X)) < self.holdout_fraction
        Xm = X[:, self.columns_]
        rows = np.arange(len(X))
        rounds = 300

        def report(env: lgb.callback.CallbackEnv) -> None:
            if progress is not None and env.iteration % 10 == 0:
                progress(env.iteration / rounds)

        self.model_: lgb.LGBMClassifier = fit_classifier(Xm[~holdout], y[~holdout], rows[~holdout],
                                                         seed=self.seed, threads=self.threads, n_estimators=rounds,
                                                         callbacks=[report])
        self.holdout_rows_ = rows[holdout]
        self.y_ = y
        self.X_ = Xm
        return self

    def predict(self, X_full: np.ndarray) -> np.ndarray:
        return positive_proba(self.model_, X_full[:, self.columns_])

    def evaluate(self) -> dict[str, Any]:
        h = self.holdout_rows_
        y, Xm = self.y_[h], self.X_[h]
        p = positive_proba(self.model_, Xm)
        train = np.setdiff1d(np.arange(len(self.y_)), h)
        mu, sd = self.X_[train].mean(axis=0), self.X_[train].std(axis=0) + 1e-9
        centroid = ((self.X_[train][self.y_[train] == 1] - mu) / sd).mean(axis=0)
        Z = (Xm - mu) / sd
        cos = Z @ centroid / (np.linalg.norm(Z, axis=1) * np.linalg.norm(centroid) + 1e-9)
        self.evaluation_ = {**E.binary_evaluation(y, {"model": p, "centroid cosine": cos}),
                            "positive": "in the seed"}
        return {
            "holdout_rows": int(len(h)),
            "seed_share": float(self.y_.mean()),
            "auc": M.roc_auc(y, p),
            "lift_at_10pct": M.lift_at(y, p, 0.1),
            "baseline_centroid_cosine_auc": M.roc_auc(y, cos),
            "baseline_centroid_cosine_lift_at_10pct": M.lift_at(y, cos, 0.1),
        }
