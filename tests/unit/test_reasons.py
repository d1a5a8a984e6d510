"""Reasons name exactly the largest positive contributions of the served contributions model, in
order, with the customer's own values; risk bands; expected days to churn."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tenure.data import Shop
from tenure.features import FeatureSpace
from tenure.reasons import (
    Reason,
    ReasonWriter,
    expected_days_to_churn,
    risk_band,
    risk_bands,
    top_positive,
    top_reasons,
)
from training.churn import ChurnModel
from training.contrib import contributions_onnx, onnx_contributions


@pytest.fixture(scope="module")
def served(small_shop: Shop) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(holdout feature rows, their ONNX contributions incl. bias, feature names)."""
    space = FeatureSpace.fit(small_shop)
    arrays = space.encode(small_shop)
    end = small_shop.transactions["ts"].max().normalize() + pd.Timedelta(days=1)
    model = ChurnModel(threads=1).fit(small_shop, space, arrays, end)
    X = model.holdout_.X
    return X, onnx_contributions(contributions_onnx(model.model_, len(space.names)), X), space.names


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%" if 0 < abs(v) < 0.01 else f"{100 * v:.0f}%"


def value_token(name: str, row: dict[str, float]) -> str:
    """How the customer's own value must appear in the text (the spec, written independently)."""
    v = row[name]
    if name in ("recency_days", "tenure_days", "days_since_signup"):
        return f"{round(v)} day"
    if name in ("gap_mean_days", "last_gap_days"):
        return "order" if v < 0 else f"{round(v)} day"
    if name in ("orders_total", "orders_90d", "orders_365d", "distinct_products", "distinct_categories"):
        return f"{round(v)} "
    if name in ("spend_total", "avg_order_value", "spend_180d", "spend_prev_180d", "avg_unit_price"):
        return f"{v:,.2f}"
    if name == "spend_trend":
        recent, prev = row["spend_180d"], row["spend_prev_180d"]
        if prev > 0:
            return _pct(abs(recent - prev) / prev)
        return f"{recent:,.2f}" if recent > 0 else "nothing spent"
    if name == "recency_over_gap":
        return "no repeat order yet" if v < 0 else f"{v:.1f}x"
    if name == "gap_cv":
        return "too few orders" if v < 0 else _pct(v)
    if name == "items_per_order":
        return f"{v:.1f} items"
    if name.startswith(("cat_share_", "chan_share_")) or name.startswith("return_"):
        return _pct(v)
    if name == "age":
        return "unknown" if v < 0 else f"age {round(v)}"
    if name.startswith(("gender_", "region_")):
        return name.split("_", 1)[1]
    return f"{name} = "


def test_reasons_are_the_largest_positive_contributions(served: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    X, C, names = served
    writer = ReasonWriter(names)
    reasons = writer.explain(C, X)
    assert len(reasons) == len(X)
    seen: set[str] = set()
    for i, got in enumerate(reasons):
        c = C[i, :-1].tolist()  # without the bias
        want = [j for j in sorted(range(len(names)), key=lambda j: (-c[j], j)) if c[j] > 0][:3]
        assert [r.feature for r in got] == [names[j] for j in want], i
        assert [r.contribution for r in got] == [c[j] for j in want]
        row = dict(zip(names, X[i].astype(np.float64).tolist()))
        for r in got:
            assert value_token(r.feature, row) in r.text, (r, row[r.feature])
            seen.add(r.feature)
    assert len(seen) >= 8  # many families exercised, not one feature everywhere
    assert {"recency_days", "spend_trend"} & seen


def test_reasons_of_a_large_batch_are_those_of_each_row(served: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    # A 1,000-row batch (the held-out rows repeated) gets, row for row, the reasons of the row alone.
    # (Its speed is not asserted here: a wall-clock bound fails on a busy or slower box.)
    X, C, names = served
    big_X, big_C = np.resize(X, (1000, X.shape[1])), np.resize(C, (1000, C.shape[1]))
    writer = ReasonWriter(names)
    batch = writer.explain(big_C, big_X)
    assert len(batch) == 1000
    for i in range(0, 1000, 37):
        assert batch[i] == writer.explain_row(C[i % len(X)], X[i % len(X)]), i
    per_row = writer.explain(C, X)
    assert all(batch[i] == per_row[i % len(X)] for i in range(1000))


NAMES = ["recency_days", "orders_total", "spend_180d", "spend_prev_180d", "spend_trend", "gap_mean_days",
         "return_line_share", "cat_share_Tea", "chan_share_email", "region_Islands", "gender_F", "age", "foo"]


def row(**values: float) -> np.ndarray:
    base = dict.fromkeys(NAMES, 0.0) | {"gap_mean_days": -1.0, "age": 40.0, "orders_total": 3.0}
    return np.array([{**base, **values}[n] for n in NAMES], np.float32)


def test_templates() -> None:
    w = ReasonWriter(NAMES)
    assert w.text("recency_days", row(recency_days=140, gap_mean_days=45)) == \
        "no purchase for 140 days, 3.1x the usual gap of 45 days"
    assert w.text("recency_days", row(recency_days=20, gap_mean_days=45)) == \
        "no purchase for 20 days (usually 45 days between orders)"
    assert w.text("recency_days", row(recency_days=200, orders_total=1)) == "no purchase for 200 days since the only order"
    assert w.text("spend_trend", row(spend_180d=40, spend_prev_180d=100, spend_trend=-0.42)) == \
        "spending down 60% on the previous half-year (40.00 vs 100.00)"
    assert w.text("orders_total", row(orders_total=1)) == "only 1 order so far"
    assert w.text("orders_total", row(orders_total=12)) == "12 orders so far"
    assert w.text("return_line_share", row(return_line_share=0.25)) == "returns 25% of items"
    assert w.text("cat_share_Tea", row(cat_share_Tea=0.8)) == "buys mostly in Tea (80% of spend)"
    assert w.text("cat_share_Tea", row(cat_share_Tea=0.0)) == "no purchases in Tea (0% of spend)"
    assert w.text("chan_share_email", row(chan_share_email=0.2)) == "20% of orders via email"
    assert w.text("region_Islands", row(region_Islands=1)) == "lives in region Islands"
    assert w.text("gender_F", row(gender_F=0)) == "gender not F"
    assert w.text("age", row(age=-1)) == "age unknown"
    assert w.text("foo", row(foo=1.5)) == "foo = 1.5"
    w2 = ReasonWriter(["recency_days", "gap_mean_days", "recency_over_gap"])
    assert w2.text("recency_over_gap", np.array([90, 30, 3], np.float32)) == \
        "overdue: 3.0x the usual gap of 30 days since the last order (90 days)"
    assert w2.text("recency_over_gap", np.array([90, -1, -1], np.float32)) == "no repeat order yet, last order 90 days ago"


def test_selection_edge_cases() -> None:
    w = ReasonWriter(NAMES)
    c = np.zeros(len(NAMES) + 1)
    c[NAMES.index("foo")] = 0.5
    c[NAMES.index("age")] = 0.5  # tie: lower column first
    c[NAMES.index("recency_days")] = -2.0  # pushes away from churn: never a reason
    c[NAMES.index("orders_total")] = np.nan
    c[-1] = 9.0  # bias is not a feature
    got = w.explain_row(c, row())
    assert [r.feature for r in got] == ["age", "foo"]
    assert all(isinstance(r, Reason) for r in got)
    assert top_reasons(c[None, :-1], row()[None], NAMES, k=1)[0][0].feature == "age"
    cols, vals = top_positive(np.array([[-1.0, 0.0], [0.2, 0.3]]), k=3)
    assert cols.tolist() == [[-1, -1], [1, 0]] and vals.tolist() == [[0.0, 0.0], [0.3, 0.2]]
    with pytest.raises(ValueError, match="contributions"):
        w.explain(np.zeros((2, 3)), np.zeros((2, len(NAMES))))
    with pytest.raises(ValueError, match="features"):
        w.explain(np.zeros((2, len(NAMES))), np.zeros((2, 3)))


def test_risk_bands_at_thresholds() -> None:
    assert risk_band(0.0) == "low"
    assert risk_band(np.nextafter(0.33, 0)) == "low"
    assert risk_band(0.33) == "medium"
    assert risk_band(np.nextafter(0.66, 0)) == "medium"
    assert risk_band(0.66) == "high" and risk_band(1.0) == "high"
    assert risk_band(0.5, medium=0.2, high=0.5) == "high"
    assert risk_band(0.19, medium=0.2, high=0.5) == "low"
    assert risk_band(float("nan")) == "unknown"
    with pytest.raises(ValueError):
        risk_band(0.5, medium=0.7, high=0.6)
    p = np.array([0.0, 0.3299, 0.33, 0.6599, 0.66, 1.0, np.nan])
    assert risk_bands(p).tolist() == [risk_band(float(x)) for x in p]


def test_expected_days_to_churn() -> None:
    H = 90.0
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0, np.nan])
    d = expected_days_to_churn(p, H)
    assert d[2] == pytest.approx(H / math.log(2))  # P(churn <= H) = 0.5 under a constant hazard
    assert d[0] == 10 * H and d[4] == 0.0 and np.isnan(d[5])  # capped; certain; unknown
    assert np.all(np.diff(d[:5]) < 0)  # higher risk -> sooner
    # The constant-hazard model reproduces p: P(tau <= H) = 1 - exp(-H / E[tau]).
    np.testing.assert_allclose(1 - np.exp(-H / d[1:4]), p[1:4])

    # Overdue floor: usual gap 30 days, silent for 20 -> not visibly lapsed for 2 x 30 - 20 = 40 days.
    floor = expected_days_to_churn(np.array([0.5, 0.5, 1.0]), H, recency_days=np.array([20.0, 80.0, 20.0]),
                                   gap_mean_days=np.array([30.0, 30.0, 30.0]))
    lam = math.log(2) / H
    tau = np.random.default_rng(0).exponential(1 / lam, 400_000)
    assert floor[0] == pytest.approx(40 + math.exp(-lam * 40) / lam)
    assert floor[0] == pytest.approx(np.maximum(tau, 40).mean(), rel=0.01)
    assert floor[1] == pytest.approx(d[2]) and floor[2] == 40.0  # already overdue; certain churn
    single = expected_days_to_churn(np.array([0.5]), H, recency_days=np.array([20.0]), gap_mean_days=np.array([-1.0]))
    assert single[0] == pytest.approx(d[2])  # no usual gap (one order): no floor
    assert expected_days_to_churn(np.array([0.01]), H, max_days=365)[0] == 365
