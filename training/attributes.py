"""Customers-file attributes as features: kept only when they help, measured before the test window.

The churn model's setup (training.churn.ChurnModel: stacked training cutoffs, label window H) is
trained twice with the validation split that ends where the holdout begins (training cutoffs
before end - 3H, validation cutoff end - 2H, its labels up to end - H = the holdout cutoff): once
on the feature space without the attribute columns, once with them. The attribute columns join
the features of every model when the validation AUC improves by at least ATTRIBUTE_MARGIN; the
test window never takes part in the decision. For honesty the result also reports the holdout
AUC of both (the same setup at the real cutoffs), next to the recency baseline.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import pandas as pd

from tenure.attributes import attribute_specs, feature_names
from tenure.data import Shop
from tenure.features import FeatureSpace, TxArrays
from tenure.settings import TrainSettings
from training import metrics as M
from training.churn import ChurnModel

log = logging.getLogger(__name__)

ATTRIBUTE_MARGIN = 0.002
"""Validation AUC gain the attribute columns must bring to join the features."""
RESULT_NAME = "attributes"


def _auc(shop: Shop, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp,
         settings: TrainSettings) -> tuple[float, float, int]:
    """(churn AUC, recency AUC, rows) of the churn setup whose evaluation cutoff is end - H."""
    model = ChurnModel(settings.churn_horizon_days, settings.active_window_days, seed=settings.seed,
                       threads=settings.lgbm_threads).fit(shop, space, arrays, end)
    h = model.holdout_
    recency = h.X[:, space.names.index("recency_days")]
    return M.roc_auc(h.y, model.predict(h.X)), M.roc_auc(h.y, recency), int(len(h.y))


def choose_attribute_features(shop: Shop, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp,
                              settings: TrainSettings) -> tuple[FeatureSpace, dict[str, Any]]:
    """(the feature space every model uses: `space` with the attribute columns when they help on
    validation, else `space`; the result entry {"name": "attributes", "metrics" | "skipped"})."""
    specs = attribute_specs(shop.customers)
    if not specs:
        return space, {"name": RESULT_NAME, "skipped": "the customers table has no attribute columns (map them "
                                                        "with a customers mapping: tenure.attributes)"}
    t0 = time.perf_counter()
    with_attrs = dataclasses.replace(space, attributes=FeatureSpace.fit(shop, attributes=True).attributes)
    probe = ChurnModel(settings.churn_horizon_days, settings.active_window_days)
    from training.windows import History, label_plan

    plan = label_plan(History.of(shop.transactions), settings.churn_horizon_days, "churn",
                      probe.cutoff_step_days, probe.n_train_cutoffs)
    H = pd.Timedelta(days=plan.label_days)
    validation_end = end - H  # the validation labels end where the holdout's begin
    val_without, val_recency, val_rows = _auc(shop, space, arrays, validation_end, settings)
    val_with, _, _ = _auc(shop, with_attrs, arrays, validation_end, settings)
    keep = bool(val_with - val_without >= ATTRIBUTE_MARGIN)
    hold_without, hold_recency, hold_rows = _auc(shop, space, arrays, end, settings)
    hold_with, _, _ = _auc(shop, with_attrs, arrays, end, settings)
    metrics = {
        "attributes": [s.name for s in specs],
        "attribute_columns": len(feature_names(with_attrs.attributes)),
        "kept": keep,
        "margin": ATTRIBUTE_MARGIN,
        "validation_cutoff": str((validation_end - H).date()),
        "validation_rows": val_rows,
        "validation_auc_without": val_without,
        "validation_auc_with": val_with,
        "validation_baseline_recency_auc": val_recency,
        "holdout_cutoff": str((end - H).date()),
        "holdout_rows": hold_rows,
        "holdout_auc_without": hold_without,
        "holdout_auc_with": hold_with,
        "baseline_recency_auc": hold_recency,
        "label_days": plan.label_days,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info("attributes as churn features: validation AUC %.4f with vs %.4f without -> %s", val_with, val_without,
             "kept" if keep else "left out")
    return (with_attrs if keep else space), {"name": RESULT_NAME, "metrics": metrics}


def metrics_rows(m: dict[str, Any], dataset: str) -> list[str]:
    """The rows of training.pipeline.metrics_table for the attributes result."""
    decision = "kept as features" if m["kept"] else "left out of the features"
    return [
        f"| {dataset} | attributes -> churn (validation {m['validation_cutoff']}) | auc with / without | "
        f"{m['validation_auc_with']:.3f} / {m['validation_auc_without']:.3f} | recency | "
        f"{m['validation_baseline_recency_auc']:.3f} |",
        f"| {dataset} | attributes -> churn (holdout {m['holdout_cutoff']}) | auc with / without | "
        f"{m['holdout_auc_with']:.3f} / {m['holdout_auc_without']:.3f} | recency | {m['baseline_recency_auc']:.3f} |",
        f"| {dataset} | attributes | decision (margin {m['margin']}) | {decision} | | |",
    ]

