"""The synthetic shop: tenure.synthetic.generate_shop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tenure.data import CUSTOMER_COLUMNS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, Shop, validate_transactions
from tenure.synthetic import generate_shop

END = "2025-12-31"


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_shop(n_customers=2_000, seed=11)


def _orders(tx: pd.DataFrame) -> pd.DataFrame:
    """One row per purchase order (returns excluded)."""
    return tx[~tx["is_return"]].drop_duplicates("order_id")[["customer_id", "order_id", "ts"]]


def test_same_seed_same_frames_other_seed_differs(shop: Shop) -> None:
    again = generate_shop(n_customers=2_000, seed=11)
    pd.testing.assert_frame_equal(again.transactions, shop.transactions)
    pd.testing.assert_frame_equal(again.customers, shop.customers)
    pd.testing.assert_frame_equal(again.products, shop.products)
    other = generate_shop(n_customers=2_000, seed=12)
    assert not other.transactions.equals(shop.transactions)


def test_canonical_columns_and_dtypes(shop: Shop) -> None:
    tx = shop.transactions
    validate_transactions(tx)  # columns, dtypes, no missing values, sorted by (ts, order_id)
    assert list(tx.columns) == list(REQUIRED_COLUMNS) + ["category", "channel"]
    assert set(tx.columns) - set(REQUIRED_COLUMNS) <= set(OPTIONAL_COLUMNS)
    for col in ("customer_id", "order_id", "product_id", "category", "channel"):
        assert pd.api.types.is_string_dtype(tx[col].dtype), col
    assert tx["ts"].dtype == np.dtype("datetime64[ns]")
    assert tx["quantity"].dtype == np.float64 and tx["amount"].dtype == np.float64
    assert tx["is_return"].dtype == np.bool_
    assert tx["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert tx["order_id"].str.fullmatch(r"R?O\d{7}").all()
    assert set(tx["channel"]) == {"email", "sms", "push", "web", "social"}

    customers = shop.customers
    canonical = [c for c in customers.columns if ":" not in c]  # then the form attributes (tenure.attributes)
    assert canonical[:5] == ["customer_id", "signup_date", "age", "gender", "region"]
    assert set(canonical) <= set(CUSTOMER_COLUMNS)
    from tenure.attributes import attribute_specs

    specs = {s.name: s for s in attribute_specs(customers)}
    assert set(specs) == {"household_size", "interests", "newsletter", "consent_email", "consent_sms", "consent_push"}
    assert specs["interests"].interests and specs["consent_sms"].channel == "sms"
    declared = (customers["interests:interests"] != "").mean()
    assert 0.3 < declared < 0.5  # ~40% declare interests
    refused = (customers["consent:consent_sms:sms"] == 0).mean()
    assert 0.10 < refused < 0.20  # ~15% refuse sms
    assert customers["customer_id"].is_unique and len(customers) == 2_000
    assert customers["signup_date"].dtype == np.dtype("datetime64[ns]")
    assert customers["age"].between(18, 80).all()
    assert set(customers["gender"]) == {"F", "M", "X"}
    assert customers["region"].nunique() == 8


def test_baskets_and_quantities_are_plausible(shop: Shop) -> None:
    sales = shop.transactions[~shop.transactions["is_return"]]
    lines_per_order = sales.groupby("order_id").size()
    assert lines_per_order.min() >= 1 and lines_per_order.max() <= 8
    assert 2.3 < lines_per_order.mean() < 3.8
    assert not sales.duplicated(["order_id", "product_id"]).any()
    assert (sales["quantity"] >= 1).all() and sales["quantity"].isin([1, 2, 3]).mean() > 0.85
    assert (sales["amount"] > 0).all()
    orders_per_customer = sales.groupby("customer_id")["order_id"].nunique()
    assert (orders_per_customer <= 2).mean() > 0.2  # many buy once or twice
    assert (orders_per_customer >= 10).mean() > 0.1  # and some buy often


def test_returns_present_negative_and_tied_to_a_purchase(shop: Shop) -> None:
    tx = shop.transactions
    returns = tx[tx["is_return"]]
    rate = len(returns) / (~tx["is_return"]).sum()
    assert 0.015 < rate < 0.05
    assert (returns["quantity"] < 0).all() and (returns["amount"] < 0).all()
    assert returns["order_id"].str.startswith("RO").all()
    original = tx[~tx["is_return"]].set_index(["order_id", "product_id"])
    keys = list(zip(returns["order_id"].str[1:], returns["product_id"], strict=True))
    matched = original.loc[keys]
    assert (matched["customer_id"].to_numpy() == returns["customer_id"].to_numpy()).all()
    assert (matched["ts"].to_numpy() < returns["ts"].to_numpy()).all()
    assert (-returns["quantity"].to_numpy() <= matched["quantity"].to_numpy()).all()


def test_every_product_has_name_category_and_price(shop: Shop) -> None:
    products = shop.products
    assert list(products.columns) == ["product_id", "name", "category", "price"]
    assert len(products) == 2_000 and products["product_id"].is_unique
    assert products["product_id"].str.fullmatch(r"P\d{5}").all()
    assert products["name"].str.len().gt(5).all() and products["name"].is_unique
    assert products["category"].nunique() == 20
    assert (products["price"] > 0).all()
    sold = set(shop.transactions["product_id"])
    assert sold <= set(products["product_id"])
    # line categories agree with the catalogue
    cat = products.set_index("product_id")["category"]
    tx = shop.transactions
    assert (tx["category"].to_numpy() == cat.loc[tx["product_id"]].to_numpy()).all()


def test_orders_within_signup_and_end(shop: Shop) -> None:
    tx = shop.transactions
    signup = shop.customers.set_index("customer_id")["signup_date"]
    assert (tx["ts"].to_numpy() >= signup.loc[tx["customer_id"]].to_numpy()).all()
    assert tx["ts"].max() < pd.Timestamp(END) + pd.Timedelta(days=1)
    assert tx["ts"].min() >= pd.Timestamp("2023-01-01")
    # acquisition continues: some customers sign up and buy in the last quarter
    late = shop.customers["signup_date"] >= pd.Timestamp("2025-10-01")
    assert late.sum() > 20
    assert tx["customer_id"].isin(shop.customers.loc[late, "customer_id"]).any()


def test_some_customers_come_back_after_a_long_pause(shop: Shop) -> None:
    orders = _orders(shop.transactions).sort_values(["customer_id", "ts"])
    gap = orders.groupby("customer_id")["ts"].diff()
    comebacks = orders.loc[gap > pd.Timedelta(days=180), "customer_id"].nunique()
    assert comebacks >= 20


def test_holiday_season_busier_than_summer(shop: Shop) -> None:
    orders = _orders(shop.transactions)
    month = orders["ts"].dt.month
    # per day, over the same years (2023-2025 each contain both windows)
    holiday = month.isin([11, 12]).sum() / (61 * 3)
    summer = month.isin([6, 7]).sum() / (61 * 3)
    assert holiday > 1.2 * summer


@pytest.mark.slow
def test_default_size() -> None:
    shop = generate_shop()
    assert 700_000 <= len(shop.transactions) <= 1_500_000
    assert len(shop.customers) == 40_000 and len(shop.products) == 2_000
