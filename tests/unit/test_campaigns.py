"""Campaign logs (tenure.campaigns): the loader's errors and the synthetic shop's randomised campaigns."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tenure.campaigns import (
    CAMPAIGN_COLUMNS,
    TRUE_UPLIFT,
    CampaignMapping,
    add_campaigns,
    load_campaigns,
    validate_campaigns,
)
from tenure.data import DataError, Shop, read_shop, validate_transactions, write_shop
from tenure.features import FeatureSpace
from tenure.synthetic import generate_shop

GOOD = ("customer_id,campaign_id,treated,sent_at\n"
        "C1,spring,true,2025-03-01 10:00\n"
        "C2,spring,false,2025-03-01 10:00\n"
        "C1,summer,control,2025-06-01\n"
        "C3,summer,yes,2025-06-01\n")


def write(tmp_path: Path, text: str, name: str = "campaigns.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_canonical_csv_loads(tmp_path: Path) -> None:
    frame = load_campaigns(write(tmp_path, GOOD))
    assert list(frame.columns) == list(CAMPAIGN_COLUMNS)
    assert frame["treated"].tolist() == [True, False, False, True]
    assert frame["sent_at"].dtype == np.dtype("datetime64[ns]") and frame["sent_at"].iloc[0].hour == 10
    validate_campaigns(frame)
    frame.to_parquet(tmp_path / "c.parquet")
    pd.testing.assert_frame_equal(load_campaigns(tmp_path / "c.parquet"), frame)


@pytest.mark.parametrize("text, message", [
    ("customer_id,campaign_id,sent_at\nC1,a,2025-01-01\n", "missing column 'treated' (for treated)"),
    ("customer_id,campaign_id,treated,sent_at\nC1,a,true,2025-01-01\nC2,a,true,not a date\n",
     "line 3, column 'sent_at': cannot parse 'not a date' as a date"),
    ("customer_id,campaign_id,treated,sent_at\nC1,a,maybe,2025-01-01\n",
     "line 2, column 'treated': cannot parse 'maybe' as true/false"),
    ("customer_id,campaign_id,treated,sent_at\nC1,a,,2025-01-01\n", "line 2, column 'treated': missing true/false"),
    ("customer_id,campaign_id,treated,sent_at\nC1,a,true,2025-01-01\nC1,a,false,2025-01-01\n",
     "line 3: customer 'C1' is listed twice in campaign 'a'"),
    ("customer_id,campaign_id,treated,sent_at\n,a,true,2025-01-01\n", "line 2, column 'customer_id': missing"),
])
def test_bad_files_fail_naming_the_line_and_what_was_expected(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=None) as err:
        load_campaigns(write(tmp_path, text))
    assert message in str(err.value)


def test_unknown_customers_are_dropped_and_counted_all_unknown_fails(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    frame = load_campaigns(write(tmp_path, GOOD), customers=pd.Series(["C1", "C2"]))
    assert sorted(set(frame["customer_id"])) == ["C1", "C2"] and len(frame) == 3
    assert "dropped 1 of 4 campaign rows" in caplog.text
    with pytest.raises(DataError, match="none of the 4 rows names a customer of the shop"):
        load_campaigns(write(tmp_path, GOOD), customers=pd.Series(["X9"]))


def test_a_mapping_names_the_columns_and_the_group_words(tmp_path: Path) -> None:
    text = "hh;promo;group;date\n7;p1;Holdout;01/02/2025\n8;p1;mailed;01/02/2025\n"
    mapping_file = write(tmp_path, json.dumps({"customer_id": "hh", "campaign_id": "promo", "treated": "group",
                                               "sent_at": "date", "dayfirst": True, "treated_values": ["mailed"]}),
                         "mapping.json")
    frame = load_campaigns(write(tmp_path, text), CampaignMapping.from_json(mapping_file))
    assert frame["customer_id"].tolist() == ["7", "8"] and frame["treated"].tolist() == [False, True]
    assert frame["sent_at"].iloc[0] == pd.Timestamp("2025-02-01")
    with pytest.raises(DataError, match="unknown keys"):
        CampaignMapping.from_dict({"customer": "x"})


# -- synthetic campaigns ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shops() -> tuple[Shop, Shop]:
    """The same shop without and with campaigns."""
    return generate_shop(2_000, seed=5, n_products=200, campaigns=False), generate_shop(2_000, seed=5, n_products=200)


def labels(shop: Shop, window_days: int = 14) -> np.ndarray:
    """Per campaign row: an order within the window after the send."""
    assert shop.campaigns is not None
    buys = shop.transactions[~shop.transactions["is_return"]].drop_duplicates("order_id")[["customer_id", "ts"]]
    c = shop.campaigns.reset_index(drop=True).reset_index()
    m = c.merge(buys, on="customer_id", how="left")
    hit = (m["ts"] >= m["sent_at"]) & (m["ts"] < m["sent_at"] + pd.Timedelta(days=window_days))
    return hit.groupby(m["index"]).any().reindex(c["index"], fill_value=False).to_numpy()


def test_synthetic_campaigns_are_valid_deterministic_and_persisted(shops, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plain, shop = shops
    assert plain.campaigns is None and shop.campaigns is not None
    validate_transactions(shop.transactions)
    validate_campaigns(shop.campaigns)
    c = shop.campaigns
    assert c["campaign_id"].nunique() == 8 and TRUE_UPLIFT in c
    windows = c.groupby("campaign_id")["sent_at"].min().sort_values()
    assert (windows.diff().dropna() > pd.Timedelta(days=14)).all()  # windows do not overlap
    assert (windows + pd.Timedelta(days=14) <= shop.transactions["ts"].max()).all()
    assert shop.transactions["order_id"].is_unique is False  # lines of one order share it
    orders = shop.transactions[~shop.transactions["is_return"]].drop_duplicates("order_id")
    assert orders["order_id"].str.fullmatch(r"O\d{7}").all()
    again = generate_shop(2_000, seed=5, n_products=200)
    pd.testing.assert_frame_equal(again.transactions, shop.transactions)
    pd.testing.assert_frame_equal(again.campaigns, shop.campaigns)
    back = read_shop(write_shop(shop, tmp_path / "shop"))
    assert back.campaigns is not None
    pd.testing.assert_frame_equal(back.campaigns, shop.campaigns)


def test_treated_and_control_are_balanced_on_the_features(shops) -> None:  # type: ignore[no-untyped-def]
    _, shop = shops
    c = shop.campaigns
    assert c is not None
    assert 0.4 < (~c["treated"]).mean() < 0.6
    space = FeatureSpace.fit(shop)
    arrays = space.encode(shop)
    first = c[c["campaign_id"] == c["campaign_id"].min()]
    codes, X = space.customer_features(arrays, first["sent_at"].min().normalize(), shop.customers)
    rows = np.searchsorted(codes, pd.Index(arrays.customer_ids).get_indexer(first["customer_id"]))
    treated = first["treated"].to_numpy()
    for name in ("recency_days", "orders_total", "spend_total", "return_line_share", "age"):
        v = X[rows, space.names.index(name)].astype(np.float64)
        smd = (v[treated].mean() - v[~treated].mean()) / v.std()
        assert abs(smd) < 0.15, (name, smd)  # standardised mean difference: randomised


def test_applying_the_true_uplift_moves_observed_conversion_by_about_its_mean(shops) -> None:  # type: ignore[no-untyped-def]
    _, shop = shops
    c = shop.campaigns
    assert c is not None
    y = labels(shop)
    t = c["treated"].to_numpy()
    observed = y[t].mean() - y[~t].mean()
    true = c[TRUE_UPLIFT].mean()
    assert 0.05 < true < 0.2
    assert observed == pytest.approx(true, abs=0.035)  # ~7,000 rows: the difference's standard error is ~0.009
    # and by type: the sleeping dogs' (negative) and the persuadables' (large) effects show
    dogs, persuadable = c[TRUE_UPLIFT].to_numpy() < 0, c[TRUE_UPLIFT].to_numpy() >= 0.15
    assert y[dogs & t].mean() - y[dogs & ~t].mean() < -0.05
    assert y[persuadable & t].mean() - y[persuadable & ~t].mean() > 0.15


def test_a_short_history_gets_fewer_campaigns_or_none() -> None:
    short = generate_shop(300, seed=3, n_products=100, start="2025-06-01", end="2025-12-31")
    assert short.campaigns is not None and 2 <= short.campaigns["campaign_id"].nunique() < 8
    tiny = generate_shop(200, seed=3, n_products=100, start="2025-10-01", end="2025-12-31")
    assert tiny.campaigns is None
    assert add_campaigns(tiny, 3) is tiny
