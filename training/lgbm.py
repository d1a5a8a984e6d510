"""The LightGBM classifier every binary model here uses, with early stopping on a validation split."""
from __future__ import annotations

from typing import Callable

import lightgbm as lgb
import numpy as np


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
) -> lgb.LGBMClassifier:
    """Fit with early stopping; the validation rows are whole groups (customers) drawn from the
    training window only, so the holdout window is never used for tuning."""
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    valid_groups = rng.choice(uniq, size=max(1, int(len(uniq) * valid_fraction)), replace=False)
    is_valid = np.isin(groups, valid_groups)
    model = lgb.LGBMClassifier(
        n_estimators=n_estimators,
        learning_rate=learning_rate,
        num_leaves=num_leaves,
        min_child_samples=min_child_samples,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        reg_lambda=1.0,
        n_jobs=threads,
        random_state=seed,
        verbose=-1,
    )
    model.fit(
        X[~is_valid], y[~is_valid],
        eval_X=(X[is_valid],),
        eval_y=(y[is_valid],),
        eval_metric="binary_logloss",
        callbacks=[lgb.early_stopping(50, verbose=False), *(callbacks or [])],
    )
    return model


def positive_proba(model: lgb.LGBMClassifier, X: np.ndarray) -> np.ndarray:
    """P(class 1) per row."""
    return np.asarray(model.predict_proba(X))[:, 1]
