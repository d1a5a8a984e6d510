"""Purchase timing: next-order maths, BG/NBD probabilities, time split, no leakage, ONNX export, quality."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tenure.artifacts import latest_valid
from tenure.data import Shop
from tenure.features import FeatureSpace, TxArrays, to_days
from tenure.timing import average_gap_days, next_purchase_days
from training.btyd import BetaGeoFitter, rfm_summary
from training.export import onnx_positive_proba
from training.purchase import (
    PurchaseModel,
    bgnbd_purchase_probabilities,
    first_order_days,
    naive_next_purchase_days,
    purchase_set,
    train_purchase,
)


def _end(shop: Shop) -> pd.Timestamp:
    return shop.transactions["ts"].max().normalize() + pd.Timedelta(days=1)


# --------------------------------------------------------------------------- pure functions


def test_next_purchase_days_is_the_conditional_median_of_a_constant_hazard() -> None:
    rate = np.array([0.002, 0.01, 0.05, 0.3])  # purchases per day
    p = [1 - np.exp(-rate * h) for h in (7, 30, 90)]
    expected = -np.log(1 - 0.5 * p[2]) / rate  # F(t) = F(90) / 2
    got = next_purchase_days(*p)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    assert np.all(np.diff(got) < 0)  # more frequent buyers come back sooner


def test_next_purchase_days_uses_the_hazard_shape_and_tolerates_inconsistent_models() -> None:
    early = next_purchase_days(np.array([0.6]), np.array([0.62]), np.array([0.63]))
    late = next_purchase_days(np.array([0.01]), np.array([0.02]), np.array([0.6]))
    assert early[0] < 7 and 30 < late[0] < 90
    # a 30-day probability below the 7-day one (separate models) is lifted to it
    odd = next_purchase_days(np.array([0.4, 0.0]), np.array([0.2, 0.0]), np.array([0.5, 0.0]))
    assert np.all(np.isfinite(odd)) and np.all((odd > 0) & (odd <= 90))
    np.testing.assert_allclose(odd[0], next_purchase_days(np.array([0.4]), np.array([0.4]), np.array([0.5]))[0])
    with pytest.raises(ValueError, match="horizons"):
        next_purchase_days(np.array([0.1]), np.array([0.2]), np.array([0.3]), horizons=(7, 30))


def test_average_gap_and_naive_baseline() -> None:
    gap = average_gap_days(np.array([12.0, -1.0]), np.array([0.9, 1 - np.exp(-1.0)]))
    np.testing.assert_allclose(gap, [12.0, 90.0])  # P(90) = 1 - e^-1 <=> one order per 90 days
    naive = naive_next_purchase_days(np.array([30.0, 30.0, -1.0, 200.0]), np.array([10.0, 45.0, 5.0, 0.0]),
                                     fallback_gap_days=40.0, window_days=90.0)
    np.testing.assert_allclose(naive, [20.0, 0.0, 35.0, 90.0])


def test_bgnbd_probability_is_expected_purchases_for_a_tiny_window(small_shop: Shop) -> None:
    s = rfm_summary(small_shop.transactions, pd.Timestamp("2025-06-01"))
    bgf = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    x, tx, T = (s[c].to_numpy() for c in ("frequency", "recency", "T"))
    P = bgnbd_purchase_probabilities(bgf, x, tx, T, (0.01, 7, 30, 90))
    alive = bgf.conditional_probability_alive(x, tx, T)
    assert np.all(np.diff(P, axis=1) > 0) and np.all(P[:, -1] < alive)
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(0.01, x, tx, T)
    np.testing.assert_allclose(P[:, 0], expected, rtol=1e-3)


def test_first_order_days_matches_pandas(small_shop: Shop) -> None:
    space = FeatureSpace.fit(small_shop)
    arrays = space.encode(small_shop)
    cutoff = pd.Timestamp("2025-06-01")
    got = first_order_days(arrays, to_days(cutoff), 30)
    tx = small_shop.transactions
    window = tx[~tx["is_return"] & (tx["ts"] >= cutoff) & (tx["ts"] < cutoff + pd.Timedelta(days=30))]
    first = window.groupby("customer_id")["ts"].min()
    expected = pd.Series((first - cutoff).dt.total_seconds() / 86_400).reindex(arrays.customer_ids).to_numpy()
    np.testing.assert_allclose(got, expected, equal_nan=True, atol=1e-6)


# --------------------------------------------------------------------------- model


@pytest.fixture(scope="module")
def encoded(small_shop: Shop) -> tuple[FeatureSpace, TxArrays]:
    space = FeatureSpace.fit(small_shop)
    return space, space.encode(small_shop)


@pytest.fixture(scope="module")
def fitted(small_shop: Shop, encoded: tuple[FeatureSpace, TxArrays]) -> PurchaseModel:
    space, arrays = encoded
    return PurchaseModel(threads=1).fit(small_shop, space, arrays, _end(small_shop))


def test_cutoffs_never_overlap_the_holdout_window(small_shop: Shop, fitted: PurchaseModel) -> None:
    train, holdout = fitted.cutoffs(_end(small_shop))
    assert holdout == _end(small_shop) - pd.Timedelta(days=90)
    for h, cutoffs in train.items():
        assert len(cutoffs) == 3 and all(c + pd.Timedelta(days=h) <= holdout for c in cutoffs)
    assert fitted.train_cutoffs_ == train


def test_predictions_and_next_purchase_shapes(fitted: PurchaseModel) -> None:
    X = fitted.holdout_.X[:300]
    P = fitted.predict(X)
    assert P.shape == (300, 3) and np.all((P >= 0) & (P <= 1))
    nxt = fitted.next_purchase(X)
    assert list(nxt.columns) == ["next_purchase_days", "average_gap_days"] and len(nxt) == 300
    assert np.all((nxt["next_purchase_days"] > 0) & (nxt["next_purchase_days"] <= 90))
    assert np.all(nxt["average_gap_days"] > 0)


def test_features_and_model_ignore_data_after_the_holdout_cutoff(
        small_shop: Shop, encoded: tuple[FeatureSpace, TxArrays], fitted: PurchaseModel) -> None:
    space, arrays = encoded
    cutoff = fitted.holdout_cutoff_
    past = replace(small_shop, transactions=small_shop.transactions[small_shop.transactions["ts"] < cutoff]
                   .reset_index(drop=True))
    past_arrays = space.encode(past)
    full = purchase_set(space, arrays, small_shop.customers, cutoff, (7, 30, 90), None)
    cut = purchase_set(space, past_arrays, past.customers, cutoff, (7, 30, 90), None)
    assert np.array_equal(arrays.customer_ids[full.codes], past_arrays.customer_ids[cut.codes])
    np.testing.assert_array_equal(full.X, cut.X)
    assert cut.y.sum() == 0 and full.y[:, 2].sum() > 0

    refit = PurchaseModel(threads=1).fit(past, space, past_arrays, _end(small_shop))
    np.testing.assert_allclose(refit.predict(full.X), fitted.predict(full.X), rtol=1e-9)
    assert refit.fallback_gap_days_ == fitted.fallback_gap_days_
    assert refit.constant_next_days_ == fitted.constant_next_days_


def test_quality_on_small_synthetic_shop(small_shop: Shop, encoded: tuple[FeatureSpace, TxArrays],
                                         fitted: PurchaseModel) -> None:
    m = fitted.evaluate(small_shop, encoded[1])
    json.dumps(m)
    for h in (30, 90):
        assert m[f"auc_{h}d"] > max(m[f"baseline_bgnbd_auc_{h}d"], m[f"baseline_recency_auc_{h}d"])
        assert m[f"brier_{h}d"] < 1.05 * m[f"baseline_bgnbd_brier_{h}d"]
    assert m["auc_7d"] > m["baseline_recency_auc_7d"] and m["auc_7d"] > 0.85
    assert m["next_purchase_rows"] > 500
    assert m["next_purchase_mae_days"] < 0.8 * m["baseline_naive_next_purchase_mae_days"]
    assert m["next_purchase_mae_days"] < m["baseline_constant_next_purchase_mae_days"]


def test_export_one_onnx_model_per_horizon(small_shop: Shop, encoded: tuple[FeatureSpace, TxArrays],
                                           fitted: PurchaseModel, tmp_path: Path) -> None:
    space, arrays = encoded
    results = train_purchase(small_shop, tmp_path, space, arrays, _end(small_shop), threads=1)
    assert [r["name"] for r in results] == ["purchase_7d", "purchase_30d", "purchase_90d"]
    X = fitted.holdout_.X[:500]  # train_purchase fits the same (deterministic) models
    for k, h in enumerate((7, 30, 90)):
        vdir, manifest = latest_valid(tmp_path, f"purchase_{h}d")
        assert manifest.kind == "lightgbm-binary" and manifest.features == space.names
        assert manifest.params["horizon_days"] == h
        assert manifest.metrics["onnx_parity_max_abs_diff"] <= 1e-4
        got = onnx_positive_proba((vdir / "model.onnx").read_bytes(), X)
        np.testing.assert_allclose(got, fitted.predict(X)[:, k], atol=1e-4)
