"""Point-in-time customer features and affinities on a shop small enough to check by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tenure.data import Shop
from tenure.features import (
    PAIR_FEATURES,
    AffinityState,
    FeatureSpace,
    customer_columns,
    product_table,
)

CUTOFF = pd.Timestamp("2024-03-01")


def line(cust: str, order: str, day: str, prod: str, qty: float, amount: float, cat: str, chan: str,
         ret: bool = False) -> dict[str, object]:
    return {"customer_id": cust, "order_id": order, "ts": pd.Timestamp(day), "product_id": prod,
            "quantity": qty, "amount": amount, "is_return": ret, "category": cat, "channel": chan}


def make_shop(extra: list[dict[str, object]] | None = None) -> Shop:
    rows = [
        # A: three orders 10 and 20 days apart, one return, two categories.
        line("A", "o1", "2024-01-01", "p1", 1, 10.0, "Tea", "email"),
        line("A", "o1", "2024-01-01", "p2", 2, 30.0, "Coffee", "email"),
        line("A", "o2", "2024-01-11", "p1", 1, 10.0, "Tea", "web"),
        line("A", "o3", "2024-01-31", "p2", 1, 15.0, "Coffee", "email"),
        line("A", "r3", "2024-02-02", "p2", -1, -15.0, "Coffee", "email", ret=True),
        # B: one order.
        line("B", "o4", "2024-02-20", "p1", 1, 10.0, "Tea", "web"),
        # C: buys only after the cutoff -> no features at the cutoff.
        line("C", "o5", "2024-03-05", "p2", 1, 15.0, "Coffee", "web"),
    ] + (extra or [])
    tx = pd.DataFrame(rows).sort_values(["ts", "order_id"]).reset_index(drop=True)
    customers = pd.DataFrame({"customer_id": ["A", "B", "C"], "signup_date": pd.to_datetime(["2023-12-01"] * 3),
                              "age": [30.0, np.nan, 50.0], "gender": ["F", "M", "F"], "region": ["North", "South", "North"]})
    products = pd.DataFrame({"product_id": ["p1", "p2"], "name": ["Green Tea", "Espresso"],
                             "category": ["Tea", "Coffee"], "price": [10.0, 15.0]})
    return Shop("tiny", tx, customers, products)


def features_at(shop: Shop, cutoff: pd.Timestamp = CUTOFF, space: FeatureSpace | None = None) -> dict[str, dict[str, float]]:
    space = space or FeatureSpace.fit(shop)
    arrays = space.encode(shop)
    codes, X = space.customer_features(arrays, cutoff, shop.customers)
    return {str(arrays.customer_ids[c]): dict(zip(space.names, X[i].tolist())) for i, c in enumerate(codes)}


def test_values_by_hand() -> None:
    f = features_at(make_shop())
    assert set(f) == {"A", "B"}  # C has not bought yet at the cutoff
    a, b = f["A"], f["B"]
    assert a["recency_days"] == pytest.approx(30.0)   # last order 2024-01-31
    assert a["tenure_days"] == pytest.approx(60.0)
    assert a["orders_total"] == 3 and a["orders_90d"] == 3
    assert a["spend_total"] == pytest.approx(50.0)    # 65 bought - 15 returned
    assert a["avg_order_value"] == pytest.approx(65.0 / 3, rel=1e-6)
    assert a["gap_mean_days"] == pytest.approx(15.0)  # gaps 10 and 20
    assert a["gap_cv"] == pytest.approx(5.0 / 15.0, rel=1e-5)
    assert a["last_gap_days"] == pytest.approx(20.0)
    assert a["recency_over_gap"] == pytest.approx(2.0)
    assert a["return_line_share"] == pytest.approx(0.25)
    assert a["cat_share_Coffee"] == pytest.approx(45.0 / 65.0, rel=1e-5)
    assert a["chan_share_email"] == pytest.approx(2 / 3, rel=1e-5)
    assert a["age"] == 30 and a["gender_F"] == 1 and a["region_North"] == 1
    assert b["orders_total"] == 1 and b["gap_mean_days"] == -1 and b["gap_cv"] == -1
    assert b["age"] == -1  # unknown -> sentinel, never NaN
    assert all(np.isfinite(v) for v in a.values()) and all(np.isfinite(v) for v in b.values())


def test_no_leakage_from_after_the_cutoff() -> None:
    future = [line("A", "o9", "2024-03-02", "p1", 5, 50.0, "Tea", "sms"),
              line("B", "r4", "2024-03-10", "p1", -1, -10.0, "Tea", "web", ret=True)]
    # The vocabulary (columns) is fixed once; values at the cutoff must not move.
    space = FeatureSpace.fit(make_shop(future))
    assert "chan_share_sms" in space.names
    assert features_at(make_shop(), space=space) == features_at(make_shop(future), space=space)


def test_affinity_history_and_candidates() -> None:
    shop = make_shop()
    space = FeatureSpace.fit(shop)
    arrays = space.encode(shop)
    products = product_table(shop, arrays, space)
    state = AffinityState.build(arrays, CUTOFF, product_cat=products["cat_code"].to_numpy(np.int64),
                                price=products["price"].to_numpy(np.float64))
    a = int(np.flatnonzero(arrays.customer_ids == "A")[0])
    hist = state.hist[a].toarray()[0]
    assert hist.tolist() == [2.0, 2.0]               # p1 twice, p2 twice (the return is not a purchase)
    assert state.hist_last[a].toarray()[0].tolist() == [50.0 + 1, 30.0 + 1]  # days since last bought, +1
    codes, X = space.customer_features(arrays, CUTOFF, shop.customers)
    row = int(np.flatnonzero(codes == a)[0])
    cust = customer_columns(space.names, X[row:row + 1], space.categories)
    cand, source, Xp = state.candidates(state.hist[a].toarray(), state.hist_last[a].toarray(), cust, 5)
    assert cand.shape == (1, 2) and sorted(cand[0].tolist()) == [0, 1]
    assert set(source[0].tolist()) == {1}             # both from history
    assert Xp.shape == (2, len(PAIR_FEATURES)) and np.isfinite(Xp).all()
    excluded = state.candidates(state.hist[a].toarray(), state.hist_last[a].toarray(), cust, 5,
                                exclude=np.array([[True, False]]))[0]
    assert excluded.tolist() == [[1, -1]]


def test_btyd_spend_columns_are_the_bgnbd_gg_forecast_at_the_cutoff(small_shop: Shop) -> None:
    from tenure.features import btyd_spend_name
    from training.clv import bgnbd_gg_spend

    space = FeatureSpace.fit(small_shop, btyd_horizons=(365, 90, 90))
    assert space.btyd_horizons == (90, 365)
    assert space.names[-2:] == [btyd_spend_name(90), btyd_spend_name(365)]
    assert FeatureSpace.from_dict(space.to_dict()) == space
    old = space.to_dict()
    del old["btyd_horizons"]  # snapshots written before the field existed
    assert FeatureSpace.from_dict(old).btyd_horizons == ()
    arrays = space.encode(small_shop)
    cutoff = small_shop.transactions["ts"].max().normalize() - pd.Timedelta(days=200)
    codes, X = space.customer_features(arrays, cutoff, small_shop.customers)
    for j, h in ((-2, 90), (-1, 365)):
        base, _ = bgnbd_gg_spend(small_shop.transactions, cutoff, arrays.customer_ids[codes], h)
        np.testing.assert_allclose(X[:, j], base, rtol=1e-4, atol=1e-3)
    # the other columns are those of the space without them
    plain = FeatureSpace.fit(small_shop)
    codes0, X0 = plain.customer_features(arrays, cutoff, small_shop.customers)
    np.testing.assert_array_equal(codes0, codes)
    np.testing.assert_array_equal(X0, X[:, :-2])
