"""Holdout evaluation data saved next to each model (evaluation.json), for `tenure report`.

Training is the only place that has the holdout predictions; this module turns them into small
curves and tables (ROC downsampled to ~200 points, cumulative gains, lift by decile, calibration
bins, spend by decile, BG/NBD frequency / recency expectation, feature importance). The file is
listed with its sha256 in the manifest like every other file of a version. Pure numpy.
"""
from __future__ import annotations

import json
import math
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.metrics import roc_curve

from training import metrics as M

EVALUATION_FILE = "evaluation.json"
SCHEMA = 1
ROC_POINTS = 200
GAINS_POINTS = 100
TOP_FEATURES = 25


def _round(value: Any) -> Any:
    """Floats to 5 significant digits (NaN/inf -> None), recursively: keeps the file small."""
    if isinstance(value, dict):
        return {str(k): _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    if isinstance(value, (np.integer, bool, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return float(f"{v:.5g}") if math.isfinite(v) else None
    return value


def to_bytes(evaluation: dict[str, Any]) -> bytes:
    """The evaluation.json content: {"schema": 1, ...} with rounded floats (key order kept: the model's
    curves first, then its baselines')."""
    return json.dumps(_round({"schema": SCHEMA, **evaluation}), separators=(",", ":")).encode()


def roc_points(y: np.ndarray, score: np.ndarray, max_points: int = ROC_POINTS) -> list[list[float]]:
    """[[fpr, tpr], ...] from (0, 0) to (1, 1), both non-decreasing, at most max_points (+ends)."""
    fpr, tpr, _ = roc_curve(np.asarray(y), np.asarray(score, dtype=np.float64), drop_intermediate=True)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(np.int64))
        fpr, tpr = fpr[keep], tpr[keep]
    points = [[float(a), float(b)] for a, b in zip(fpr, tpr)]
    if points[0] != [0.0, 0.0]:
        points.insert(0, [0.0, 0.0])
    if points[-1] != [1.0, 1.0]:
        points.append([1.0, 1.0])
    return points


def gains_points(y: np.ndarray, score: np.ndarray, n_points: int = GAINS_POINTS) -> list[list[float]]:
    """Cumulative gains: [[share of customers targeted (best score first), share of positives found]]."""
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    found = np.concatenate([[0.0], np.cumsum(y[order])]) / max(y.sum(), 1.0)
    shares = np.linspace(0.0, 1.0, n_points + 1)
    idx = np.round(shares * len(y)).astype(np.int64)
    return [[float(s), float(found[i])] for s, i in zip(shares, idx)]


def lift_by_decile(y: np.ndarray, score: np.ndarray) -> list[float]:
    """Positive rate of each score decile (best first) / the overall positive rate."""
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    base = y.mean() if len(y) else 0.0
    return [float(part.mean() / base) if len(part) and base > 0 else math.nan
            for part in np.array_split(y[order], 10)]


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> list[dict[str, Any]]:
    """Reliability table: one entry per equal-width bin (counts sum to the number of rows)."""
    table = M.calibration_table(y, np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0), n_bins)
    return [{"lower": float(r.bin_lower), "upper": float(r.bin_upper), "mean_predicted": float(r.mean_predicted),
             "observed_rate": float(r.observed_rate), "count": int(r.count)} for r in table.itertuples()]


def binary_evaluation(y: np.ndarray, scores: dict[str, np.ndarray],
                      probabilities: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Curves of a binary model and its baselines on the same holdout rows.

    scores: name -> ranking score (higher = more likely positive; "model" first); probabilities:
    name -> calibrated P(positive) for the reliability curves."""
    y = np.asarray(y).astype(np.int64)
    out: dict[str, Any] = {"kind": "binary", "rows": int(len(y)), "positives": int(y.sum()), "curves": {},
                           "calibration": {}}
    if len(y) == 0 or y.min() == y.max():
        out["note"] = "the holdout has one class only: no curves"
        return out
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        out["curves"][name] = {"auc": M.roc_auc(y, s), "roc": roc_points(y, s), "gains": gains_points(y, s),
                               "lift_by_decile": lift_by_decile(y, s)}
    for name, p in (probabilities or {}).items():
        out["calibration"][name] = calibration_bins(y, p)
    return out


def spend_deciles(predicted: np.ndarray, actual: np.ndarray,
                  baseline: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Mean predicted vs actual spend (and the baseline's) per decile of the predicted spend, highest first."""
    predicted, actual = np.asarray(predicted, np.float64), np.asarray(actual, np.float64)
    order = np.argsort(-predicted, kind="stable")
    out = []
    for d, rows in enumerate(np.array_split(order, 10), start=1):
        if not len(rows):
            continue
        row: dict[str, Any] = {"decile": d, "customers": int(len(rows)), "predicted": float(predicted[rows].mean()),
                               "actual": float(actual[rows].mean())}
        if baseline is not None:
            row["baseline"] = float(np.asarray(baseline, np.float64)[rows].mean())
        out.append(row)
    return out


FREQUENCY_GROUPS = (0, 1, 2, 3, 4, 5, 6, 7)
"""Repeat-purchase counts of the BG/NBD frequency table; the last group is 'this many or more'."""
RECENCY_EDGES_DAYS = (0, 30, 60, 90, 180, 270, 365, 540, 730)


def bgnbd_diagnostics(frequency: np.ndarray, recency_days: np.ndarray, actual: np.ndarray, expected: np.ndarray,
                      horizon_days: float) -> dict[str, Any]:
    """BG/NBD's fit on the holdout: mean actual vs expected purchases in the next horizon_days, by
    repeat-purchase count at the cutoff and by days since the last purchase (the classic
    calibration-vs-holdout diagnostic)."""
    frequency = np.asarray(frequency, np.float64)
    recency_days = np.asarray(recency_days, np.float64)
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    ok = np.isfinite(frequency) & np.isfinite(expected) & np.isfinite(recency_days)
    frequency, recency_days, actual, expected = frequency[ok], recency_days[ok], actual[ok], expected[ok]

    def group(mask: np.ndarray, label: str) -> dict[str, Any] | None:
        if not mask.any():
            return None
        return {"group": label, "customers": int(mask.sum()), "actual": float(actual[mask].mean()),
                "expected": float(expected[mask].mean())}

    last = FREQUENCY_GROUPS[-1]
    by_frequency = [group(frequency == f if f < last else frequency >= f, str(f) if f < last else f"{f}+")
                    for f in FREQUENCY_GROUPS]
    edges = list(RECENCY_EDGES_DAYS) + [math.inf]
    by_recency = [group((recency_days >= lo) & (recency_days < hi),
                        f"{lo}-{hi}" if math.isfinite(hi) else f"{lo}+") for lo, hi in zip(edges[:-1], edges[1:])]
    return {"horizon_days": float(horizon_days), "rows": int(ok.sum()),
            "by_frequency": [g for g in by_frequency if g], "by_recency": [g for g in by_recency if g]}


def feature_importance(model: lgb.LGBMModel, feature_names: list[str], top: int = TOP_FEATURES) -> list[dict[str, Any]]:
    """The top features by total gain (with their share of the model's gain); [] for a model without splits."""
    try:
        gain = np.asarray(model.booster_.feature_importance(importance_type="gain"), dtype=np.float64)
    except (AttributeError, ValueError, lgb.basic.LightGBMError):
        return []
    if len(gain) != len(feature_names) or not gain.sum() > 0:
        return []
    order = np.argsort(-gain, kind="stable")[:top]
    return [{"feature": feature_names[i], "gain": float(gain[i]), "share": float(gain[i] / gain.sum())}
            for i in order if gain[i] > 0]


def evaluation_file(model: lgb.LGBMModel, feature_names: list[str],
                    evaluation: dict[str, Any] | None) -> dict[str, bytes]:
    """{"evaluation.json": ...} for write_artifact: the given curves plus the feature importance."""
    return {EVALUATION_FILE: to_bytes({**(evaluation or {}),
                                       "feature_importance": feature_importance(model, feature_names)})}
