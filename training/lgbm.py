"""The LightGBM settings and early stopping every Tenure model shares: classifiers and regressors."""
from __future__ import annotations

from typing import Any, Callable

import lightgbm as lgb
import numpy as np


def fit_early_stopped(
    model: lgb.LGBMModel,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    eval_metric: str,
    seed: int,
    valid_fraction: float = 0.15,
    callbacks: list[Callable[..., None]] | None = None,
) -> lgb.LGBMModel:
    """Fit with early stopping; the validation rows are whole groups (customers) drawn from the
    training window only, so the holdout window is never used for tuning."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    valid_groups = rng.choice(uniq, size=max(1, int(len(uniq) * valid_fraction)), replace=False)
    is_valid = np.isin(groups, valid_groups)
    model.fit(
        X[~is_valid], y[~is_valid],
        eval_X=(X[is_valid],),
        eval_y=(y[is_valid],),
        eval_metric=eval_metric,
        callbacks=[lgb.early_stopping(50, verbose=False), *(callbacks or [])],
    )
    return model


def params(*, seed: int, threads: int, n_estimators: int, learning_rate: float, num_leaves: int,
           min_child_samples: int) -> dict[str, Any]:
    """The boosting settings every Tenure model shares (row and column subsampling, L2)."""
    return {"n_estimators": n_estimators, "learning_rate": learning_rate, "num_leaves": num_leaves,
            "min_child_samples": min_child_samples, "subsample": 0.8, "subsample_freq": 1,
            "colsample_bytree": 0.8, "reg_lambda": 1.0, "n_jobs": threads, "random_state": seed, "verbose": -1}


def fit_classifier(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    seed: int,
    threads: int,
    n_estimators: int = 600,
    learning_rate: float = 0.05,
    num_leaves: int = 31,
    min_child_samples: int = 50,
    valid_fraction: float = 0.15,
    callbacks: list[Callable[..., None]] | None = None,
    multiclass: bool = False,
) -> lgb.LGBMClassifier:
    """Binary (or multiclass) classifier; see fit_early_stopped."""
    model = lgb.LGBMClassifier(objective="multiclass" if multiclass else None, **params(
        seed=seed, threads=threads, n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
        min_child_samples=min_child_samples))
    fit_early_stopped(model, X, y, groups, eval_metric="multi_logloss" if multiclass else "binary_logloss",
                      seed=seed, valid_fraction=valid_fraction, callbacks=callbacks)
    return model


def fit_regressor(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    seed: int,
    threads: int,
    objective: str = "poisson",
    n_estimators: int = 1000,
    learning_rate: float = 0.03,
    num_leaves: int = 15,
    min_child_samples: int = 50,
    valid_fraction: float = 0.15,
) -> lgb.LGBMRegressor:
    """Regression (Poisson by default) with early stopping on the same objective; see fit_early_stopped."""
    model = lgb.LGBMRegressor(objective=objective, **params(
        seed=seed, threads=threads, n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
        min_child_samples=min_child_samples))
    fit_early_stopped(model, X, y, groups, eval_metric=objective, seed=seed, valid_fraction=valid_fraction)
    return model


def positive_proba(model: lgb.LGBMClassifier, X: np.ndarray) -> np.ndarray:
    """P(class 1) per row."""
    return np.asarray(model.predict_proba(X))[:, 1]
