"""Label windows that fit a shop's history, and the survival power that extends them."""
from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from tenure.data import NO_PRODUCT, ColumnMapping, load_transactions
from tenure.errors import DataError, NotEnoughHistory
from tenure.settings import TrainSettings
from training.export import extend_horizon_graph, extended_positive_proba, lightgbm_to_onnx, onnx_positive_proba
from training.windows import History, LabelPlan, horizon_exponent, label_plan


def history(days: int) -> History:
    start = pd.Timestamp("2025-01-01 09:30")
    return History.of(pd.DataFrame({"ts": [start, start + pd.Timedelta(days=days - 1, hours=3)]}))


def test_label_windows_shrink_to_fit_and_never_exceed_the_asked_horizon() -> None:
    assert history(1095).label_days(90, "churn") == 90  # three years: the asked horizon
    h = history(75)
    assert h.days == 75 and h.feature_days == 18
    assert h.label_days(90, "churn") == (75 - 18) // 2 == 28
    assert h.label_days(7, "purchase") == 7
    assert history(273).label_days(91, "clv") == 91


def test_a_short_history_trains_on_shorter_windows_with_weekly_cutoffs() -> None:
    long = label_plan(history(1095), 90, "churn", 30, 3)
    assert long == LabelPlan(90, 30, 3, False)  # the caller's own cutoffs
    short = label_plan(history(75), 90, "churn", 30, 3)
    assert short == LabelPlan((75 - 18) // 4, 7, 8, True)  # four 14-day windows fit, cutoffs a week apart
    assert label_plan(history(35), 90, "churn", 30, 3).label_days == 7  # (35 - 14) // 3


def test_not_enough_history_names_what_there_is_and_what_is_needed() -> None:
    with pytest.raises(NotEnoughHistory) as err:
        history(20).label_days(90, "churn")
    text = str(err.value)
    assert "churn: not enough history: the orders span 20 days (2025-01-01 to 2025-01-20)" in text
    assert "a 90-day horizon needs 194 days" in text and "shortest label window Tenure trains needs 28 days" in text
    assert isinstance(err.value, DataError)


def test_horizon_exponent_matches_the_mean_and_is_below_constant_hazard_when_customers_drop_out() -> None:
    rng = np.random.default_rng(0)
    rates = rng.gamma(0.5, 1 / 20, size=20_000)  # heterogeneous Poisson rates per day
    none_28, none_90 = np.exp(-rates * 28), np.exp(-rates * 90)
    assert horizon_exponent(none_28, none_90) == pytest.approx(90 / 28, rel=1e-9)  # each customer's own hazard
    alive = rng.uniform(0.3, 1.0, size=20_000)  # customers who left never buy again, however long the horizon
    none_28, none_90 = 1 - alive * (1 - none_28), 1 - alive * (1 - none_90)
    k = horizon_exponent(none_28, none_90)
    assert np.mean(none_28 ** k) == pytest.approx(np.mean(none_90), rel=1e-9)
    assert 1.0 < k < 90 / 28 - 0.1


@pytest.mark.parametrize("positive_is_none", [True, False])
def test_the_extended_onnx_graph_matches_lightgbm(positive_is_none: bool) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2_000, 4)).astype(np.float32)
    y = (X[:, 0] + rng.normal(scale=0.5, size=2_000) > 0).astype(int)
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1).fit(X, y)
    base = lightgbm_to_onnx(model, 4)
    onnx_bytes = extend_horizon_graph(base, 1.7, positive_is_none)
    got = onnx_positive_proba(onnx_bytes, X)
    np.testing.assert_allclose(got, extended_positive_proba(model, X, 1.7, positive_is_none), atol=1e-5)
    raw = onnx_positive_proba(base, X)
    expected = raw ** 1.7 if positive_is_none else 1 - (1 - raw) ** 1.7
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_an_order_log_without_products_order_ids_or_quantities(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("cust;day;total\nA;2025-01-03;10.5\nA;2025-01-09;-4\nB;2025-01-04;7\nB;2025-01-04;7\n"
                    "B;2025-01-05;3\n")
    tx, report = load_transactions(path, ColumnMapping.from_dict({"customer_id": "cust", "ts": "day",
                                                                  "amount": "total"}))
    assert list(tx["product_id"].unique()) == [NO_PRODUCT] and (tx["quantity"].abs() == 1).all()
    assert list(tx["order_id"]) == ["A@20250103T000000", "B@20250104T000000", "B@20250105T000000",
                                    "A@20250109T000000"]
    assert report.dropped == {"duplicate_line": 1} and report.returns == 1  # the refund of 4
    assert tx.loc[tx["order_id"] == "A@20250109T000000", "amount"].item() == -4.0
    summary = report.summary()
    assert "no product column" in summary and "no order id column" in summary and "no channel column" in summary


def test_timestamps_with_offsets_are_converted_to_the_shop_time_zone(tmp_path: Path) -> None:
    path = tmp_path / "tz.csv"
    path.write_text("c,o,ts,p,q,a\nA,1,2025-03-01T23:30:00+00:00,X,1,5\nA,2,2025-03-02 08:00:00,X,1,5\n"
                    "B,3,2025-03-02T10:00:00-0500,X,1,5\nB,4,2025-03-03T01:00:00Z,X,1,5\n")
    base = {"customer_id": "c", "order_id": "o", "ts": "ts", "product_id": "p", "quantity": "q", "amount": "a"}
    tx, report = load_transactions(path, ColumnMapping.from_dict({**base, "timezone": "Europe/Berlin"}))
    assert dict(zip(tx["order_id"], tx["ts"].astype(str))) == {
        "1": "2025-03-02 00:30:00", "2": "2025-03-02 08:00:00", "3": "2025-03-02 16:00:00",
        "4": "2025-03-03 02:00:00"}
    assert "3 timestamps with a UTC offset converted to Europe/Berlin; 1 without one taken as Europe/Berlin" \
        in report.summary()
    utc, _ = load_transactions(path, ColumnMapping.from_dict(base))
    assert dict(zip(utc["order_id"], utc["ts"].astype(str)))["3"] == "2025-03-02 15:00:00"
    with pytest.raises(DataError, match="'timezone' must be a time zone name"):
        ColumnMapping.from_dict({**base, "timezone": "Mars/Olympus"})


def test_a_header_only_file_says_there_is_nothing_to_train_on(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("customer_id,order_id,ts,product_id,quantity,amount\n")
    with pytest.raises(DataError, match="empty.csv: no transactions to train on: .*read 0 rows"):
        load_transactions(path)


def test_training_settings_layer_file_environment_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"churn_horizon_days": 60, "purchase_horizons": [30, 7], "clv_horizon_days": 200}))
    monkeypatch.setenv("TENURE_CLV_HORIZON_DAYS", "120")
    s = TrainSettings.from_sources(config, purchase_horizons="14,7")
    assert (s.churn_horizon_days, s.clv_horizon_days, s.purchase_horizons) == (60, 120, (7, 14))
    config.write_text(json.dumps({"churn_horizon": 60}))
    with pytest.raises(DataError, match="unknown training settings churn_horizon;"):
        TrainSettings.from_sources(config)
    with pytest.raises(DataError, match="clv_horizon_days: expected a whole number of days, got 'a year'"):
        TrainSettings.from_sources(None, clv_horizon_days="a year")
