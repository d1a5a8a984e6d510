"""Customer attributes (tenure.attributes): the customers mapping, parsing, kinds, the round trip, features, and
the audience semantics of the serving table."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tenure.attributes import (
    ATTRIBUTES_FILE,
    AttributeSpec,
    AttributeTable,
    CustomersMapping,
    attribute_files,
    attribute_specs,
    infer_kind,
    parse_column,
)
from tenure.data import CANONICAL, ColumnMapping, Shop, load_customers, read_shop, write_shop
from tenure.errors import DataError, InvalidInput
from tenure.features import UNKNOWN, FeatureSpace

CSV = """id,hh,declared,newsletter,sms_opt_in,tz,age,extra
a,3,Running;Cycling,weekly,yes,Europe/Berlin,30,x
b,,Coffee,,no,,41,y
c,1,,monthly,,America/New_York,,z
d,2,coffee; Running ,weekly,opt-out,UTC,55,w
"""
MAPPING = {"customer_id": "id", "timezone": "tz",
           "attributes": {"household_size": {"column": "hh", "kind": "number"},
                          "interests": {"column": "declared", "kind": "set"},
                          "newsletter": "newsletter",
                          "consent_sms": {"column": "sms_opt_in", "channel": "sms"}},
           "interests": "interests"}


@pytest.fixture
def customers_csv(tmp_path: Path) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text(CSV)
    return path


def test_mapping_loads_every_kind(customers_csv: Path) -> None:
    out = load_customers(customers_csv, mapping=CustomersMapping.from_dict(MAPPING))
    assert list(out["customer_id"]) == ["a", "b", "c", "d"]
    assert list(out["timezone"]) == ["Europe/Berlin", "", "America/New_York", "UTC"]
    np.testing.assert_array_equal(out["number:household_size"].to_numpy(), [3, np.nan, 1, 2])
    assert list(out["interests:interests"]) == ["Cycling|Running", "Coffee", "", "Running|coffee"]
    assert list(out["text:newsletter"]) == ["weekly", "", "monthly", "weekly"]
    np.testing.assert_array_equal(out["consent:consent_sms:sms"].to_numpy(), [1, 0, np.nan, 0])
    assert "extra" not in out.columns  # not mapped: not kept
    specs = attribute_specs(out)
    assert [s.name for s in specs] == ["household_size", "interests", "newsletter", "consent_sms"]
    assert specs[1].interests and specs[3] == AttributeSpec("consent_sms", "consent", "sms")
    # without a mapping: today's behaviour (the canonical columns by name; timezone is one of them now)
    plain = customers_csv.with_name("plain.csv")
    plain.write_text(CSV.replace("id,", "customer_id,", 1).replace(",tz,", ",timezone,"))
    assert list(load_customers(plain).columns) == ["customer_id", "age", "timezone"]


def test_mapping_inside_the_column_mapping_and_its_round_trip() -> None:
    mapping = ColumnMapping.from_dict({"customer_id": "c", "ts": "t", "amount": "a", "customers": MAPPING})
    assert isinstance(mapping.customers, CustomersMapping)
    again = ColumnMapping.from_dict(mapping.to_dict())
    assert again.customers == mapping.customers
    assert CANONICAL.customers is None


@pytest.mark.parametrize("mapping, needle", [
    ({"attributes": {"x": {"column": "hh", "kind": "colour"}}}, "kind 'colour'; expected one of number"),
    ({"attributes": {"x": {"column": "sms_opt_in", "kind": "consent"}}}, "a consent needs 'channel'"),
    ({"attributes": {"recency_days": "hh"}}, "collides"),
    ({"attributes": {"churn": "hh"}}, "collides"),
    ({"attributes": {"attr_x": "hh"}}, "starts with a feature prefix"),
    ({"attributes": {"2x": "hh"}}, "must start with a letter"),
    ({"attributes": {"x": "hh"}, "interests": "y"}, "'interests' names 'y'"),
    ({"attributes": {"x": {"column": "hh", "kind": "number"}}, "interests": "x"}, "must name a set attribute"),
    ({"atributes": {}}, "unknown keys ['atributes']"),
    ({"attributes": {"x": {"column": "hh", "kind": "text", "separator": ","}}}, "'separator' is for kind set"),
])
def test_mapping_errors_say_what_was_expected(mapping: dict, needle: str) -> None:
    with pytest.raises(DataError, match=None) as err:
        CustomersMapping.from_dict(mapping)
    assert needle in str(err.value)


@pytest.mark.parametrize("column, value, needle", [
    ("hh", "three", "line 3, column 'hh': cannot parse 'three' as a number"),
    ("sms_opt_in", "maybe", "line 3, column 'sms_opt_in': cannot parse 'maybe' as a consent"),
    ("tz", "Mars/Olympus", "line 3, column 'tz': cannot parse 'Mars/Olympus' as an IANA time zone name"),
])
def test_unparseable_values_name_the_line(tmp_path: Path, column: str, value: str, needle: str) -> None:
    frame = pd.read_csv(pd.io.common.StringIO(CSV), dtype=str)
    frame.loc[1, column] = value
    path = tmp_path / "c.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_customers(path, mapping=CustomersMapping.from_dict(MAPPING))
    assert needle in str(err.value)


def test_unknown_column_is_named(customers_csv: Path) -> None:
    with pytest.raises(DataError, match=r"missing column 'hhs' \(for attribute 'household_size'\)"):
        load_customers(customers_csv, mapping=CustomersMapping.from_dict({"customer_id": "id",
                                                                          "attributes": {"household_size": "hhs"}}))


def test_kinds_are_inferred() -> None:
    assert infer_kind(pd.Series(["1", "2.5", None])) == "number"
    assert infer_kind(pd.Series(["a;b", "c"])) == "set"
    assert infer_kind(pd.Series(["a|b"]), separator="|") == "set"
    assert infer_kind(pd.Series(["weekly", "monthly"])) == "text"
    assert infer_kind(pd.Series(["3", "three"])) == "text"  # one value is not a number: text (say kind to be strict)
    assert parse_column("consent:consent_sms:sms") == AttributeSpec("consent_sms", "consent", "sms")
    assert parse_column("age") is None and parse_column("set:") is None


def _shop(customers: pd.DataFrame) -> Shop:
    tx = pd.DataFrame({"customer_id": ["a", "b", "a", "d"], "order_id": ["1", "2", "3", "4"],
                       "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-02-01", "2024-02-03"]).astype("datetime64[ns]"),
                       "product_id": ["p", "q", "p", "q"], "quantity": [1.0, 1.0, 2.0, 1.0],
                       "amount": [5.0, 7.0, 10.0, 7.0], "is_return": [False] * 4})
    for c in ("customer_id", "order_id", "product_id"):
        tx[c] = tx[c].astype("str")
    return Shop(name="t", transactions=tx, customers=customers, products=None)


def test_attributes_survive_write_shop_read_shop(customers_csv: Path, tmp_path: Path) -> None:
    customers = load_customers(customers_csv, mapping=CustomersMapping.from_dict(MAPPING))
    back = read_shop(write_shop(_shop(customers), tmp_path / "shop"))
    assert back.customers is not None
    assert attribute_specs(back.customers) == attribute_specs(customers)
    pd.testing.assert_frame_equal(back.customers, customers)


def test_feature_space_with_attributes(customers_csv: Path) -> None:
    customers = load_customers(customers_csv, mapping=CustomersMapping.from_dict(MAPPING))
    shop = _shop(customers)
    plain = FeatureSpace.fit(shop)
    space = FeatureSpace.fit(shop, attributes=True)
    assert not plain.attributes and FeatureSpace.from_dict(plain.to_dict()) == plain
    assert FeatureSpace.from_dict(space.to_dict()) == space  # serialised with the snapshot
    old = space.to_dict()
    del old["attributes"]
    assert FeatureSpace.from_dict(old).attributes == ()  # older snapshots
    extra = [n for n in space.names if n not in plain.names]
    assert extra == ["attr_household_size", "attr_interests_Coffee", "attr_interests_Cycling",
                     "attr_interests_Running", "attr_interests_coffee", "attr_newsletter_monthly",
                     "attr_newsletter_weekly", "attr_consent_sms"]
    arrays = space.encode(shop)
    codes, X = space.customer_features(arrays, pd.Timestamp("2024-03-01"), customers)
    ids = list(arrays.customer_ids[codes])
    at = {n: X[:, space.names.index(n)] for n in extra}
    a, d = ids.index("a"), ids.index("d")
    assert at["attr_household_size"][a] == 3 and at["attr_consent_sms"][a] == 1 and at["attr_consent_sms"][d] == 0
    assert at["attr_interests_Running"][a] == 1 and at["attr_interests_Coffee"][a] == 0
    assert at["attr_newsletter_weekly"][d] == 1
    # a customer the customers table does not hold: every attribute unknown, as the online store's new customer
    lonely = dataclasses.replace(shop, customers=customers[customers["customer_id"] != "b"])
    static, _ = space.demographics(space.encode(lonely), lonely.customers)
    b = list(arrays.customer_ids).index("b")
    assert [float(col[b]) for col in static] == space.unknown_static()
    assert space.unknown_static()[-8:] == [UNKNOWN, 0, 0, 0, 0, 0, 0, -1.0]
    assert X[ids.index("b"), space.names.index("attr_consent_sms")] == 0  # b refused sms


def _table(customers: pd.DataFrame) -> AttributeTable:
    ids = customers["customer_id"].to_numpy()
    data = attribute_files(customers, ids)[ATTRIBUTES_FILE]
    return AttributeTable.from_bytes(data)


def test_audience_semantics_on_a_small_table(customers_csv: Path) -> None:
    t = _table(load_customers(customers_csv, mapping=CustomersMapping.from_dict(MAPPING)))

    def rows(name: str, op: str, values: list[str] = [], value: float = 0, value_max: float = 0) -> list[int]:  # noqa: B006
        return np.flatnonzero(t.condition(name, op, values, value, value_max, "c")).tolist()

    assert rows("household_size", "EQ", value=3) == [0]
    assert rows("household_size", "BETWEEN", value=1, value_max=2) == [2, 3]
    assert rows("household_size", "GE", value=2) == [0, 3]
    assert rows("household_size", "NOT_IN", ["3"]) == [2, 3]  # an unknown number matches nothing
    assert rows("newsletter", "EQ", ["weekly"]) == [0, 3]
    assert rows("newsletter", "NOT_IN", ["weekly"]) == [1, 2]  # unknown text is none of them
    assert rows("interests", "EQ", ["Running"]) == [0, 3]  # contains
    assert rows("interests", "IN", ["Coffee", "Cycling"]) == [0, 1]  # contains any
    assert rows("interests", "NOT_IN", ["Running"]) == [1, 2]  # contains none
    assert rows("consent_sms", "EQ", ["no"]) == [1, 3]
    assert rows("consent_sms", "EQ", ["unknown"]) == [2]
    assert rows("consent_sms", "IN", ["yes", "unknown"]) == [0, 2]
    for name, op, values, needle in (
            ("newsletter", "GE", [], "takes op EQ, IN or NOT_IN"),
            ("newsletter", "EQ", ["daily"], "unknown value 'daily'; expected one of: monthly, weekly"),
            ("newsletter", "EQ", ["weekly", "monthly"], "exactly one name"),
            ("consent_sms", "EQ", ["maybe"], "yes (granted), no (refused) or unknown"),
            ("household_size", "GE", ["1"], "values are for op IN / NOT_IN"),
            ("household_size", "TOP_PERCENT", [], "does not apply to a number")):
        with pytest.raises(InvalidInput, match=None) as err:
            rows(name, op, values)
        assert needle in str(err.value)
    with pytest.raises(InvalidInput, match="value <= value_max"):
        rows("household_size", "BETWEEN", value=3, value_max=1)
    assert t.refused(1) == {"sms"} and t.refused(0) == frozenset() and t.refused(-1) == frozenset()
    assert t.interests(0) == ["Cycling", "Running"]
    values = {a["name"]: a for a in t.values_of(1)}
    assert values["consent_sms"] == {"name": "consent_sms", "kind": "consent", "channel": "sms", "granted": False}
    assert "number" not in values["household_size"] and values["newsletter"]["text"] == ""
    profile = {r["feature"]: r for r in t.profile(np.array([True, False, False, True]))}
    assert profile["newsletter=weekly"]["group_mean"] == 1.0 and profile["newsletter=weekly"]["base_mean"] == 0.5
    assert profile["household_size"]["group_mean"] == 2.5 and profile["household_size"]["base_known"] == 3
