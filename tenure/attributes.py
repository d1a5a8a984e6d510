"""What customers told us: demographic and zero-party attributes from the customers file.

A shop's customers file may hold more than the canonical columns (tenure.data.CUSTOMER_COLUMNS):
household size, declared interests ("running;cycling"), a newsletter preference, consents per
channel ("sms_opt_in": yes/no). A :class:`CustomersMapping` (the ``"customers"`` object of the
column mapping JSON, or ``tenure train --customers-mapping``) names the source column of each
canonical field and the extra columns to keep, each with a kind:

* ``number``  - a float (empty: unknown);
* ``text``    - one value (empty: unknown);
* ``set``     - several values in one cell, split on ``separator`` (default ``";"``);
* ``consent`` - a channel the customer allowed (truthy: yes/true/1/opt-in/granted) or refused
  (falsy: no/false/0/opt-out/refused); empty is unknown. Needs ``channel``.

A kind left out is inferred from the values (every value a number: number; any value holding the
separator: set; else text; consent is never inferred: it needs a channel). ``"interests"`` names
the set attribute whose values are catalogue categories (Recommend's declared_interests_only).

Carried in :attr:`tenure.data.Shop.customers` by a column naming convention, so that any
DataFrame operation and the Parquet round trip (write_shop / read_shop) keep the kinds:
``number:<name>``, ``text:<name>``, ``set:<name>``, ``interests:<name>`` (a set of categories) and
``consent:<name>:<channel>``. Numbers and consents are float64 (consent 1 allowed, 0 refused,
NaN unknown), text and sets are strings ("" unknown / empty; set values joined by ``|``, sorted).

Serving reads :data:`ATTRIBUTES_FILE`, written beside the feature snapshot (one row per snapshot
customer, numpy only, no pickle): :class:`AttributeTable`.
"""
from __future__ import annotations

import functools
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tenure.errors import DataError, InvalidInput

if TYPE_CHECKING:
    import pandas as pd
else:
    from tenure.lazy import LazyModule

    pd = LazyModule("pandas")  # the services read AttributeTable without pandas

KINDS: tuple[str, ...] = ("number", "text", "set", "consent")
"""Kinds of the mapping (and of the contract's CustomerAttribute.kind)."""
INTERESTS = "interests"
"""Column-name kind of the set attribute that holds declared interests (a set of categories)."""
SET_JOIN = "|"
"""How set values are joined in Shop.customers."""
ATTRIBUTES_FILE = "attributes.npz"
"""The serving table, beside snapshot.npz in the feature snapshot's version directory."""
CONSENT_WORDS_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0", "opt-in", "optin", "opt_in", "in", "granted",
                                "allowed", "allow", "subscribed", "on"})
CONSENT_WORDS_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0", "opt-out", "optout", "opt_out", "out",
                                 "refused", "denied", "deny", "unsubscribed", "off"})
CONSENT_STATES = ("yes", "no", "unknown")
"""How a consent is named in audience conditions and profiles."""
MAX_LEVELS = 20
"""Feature columns per text / set attribute (the most frequent values)."""
MAX_SERVED_LEVELS = 1_000
"""Distinct values of a text / set attribute kept in the serving table (the most frequent)."""
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
RESERVED_NAMES = frozenset({
    "customer_id", "signup_date", "age", "gender", "region", "timezone",
    # audience fields (services.segmentation.audience) and Predictions parts
    "churn", "days_to_churn", "purchase_7d", "purchase_30d", "purchase_90d", "next_purchase_days", "clv",
    "clv_predicted", "clv_historic", "lookalike", "cluster", "grid", "recency_days", "orders", "monetary",
    "rfm_segment", "lifecycle", "uplift", "uplift_group", "best_hour", "best_weekday", "send_timezone",
    "next_send_at", "channel", "channels", "days_since_signup",
})
RESERVED_PREFIXES = ("cat_share_", "chan_share_", "gender_", "region_", "attr_", "bgnbd_gg_spend_")
"""Feature-name prefixes an attribute name must not start with (tenure.features)."""


# -- specs and the column naming convention ---------------------------------------------------------------


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute as carried in Shop.customers (see the module docstring)."""

    name: str
    kind: str
    """number, text, set or consent."""
    channel: str = ""
    """consent: the channel it is about."""
    interests: bool = False
    """set: the declared interests (values are catalogue categories)."""

    @property
    def column(self) -> str:
        if self.kind == "consent":
            return f"consent:{self.name}:{self.channel}"
        return f"{INTERESTS if self.interests else self.kind}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "channel": self.channel, "interests": self.interests}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AttributeSpec:
        return cls(str(d["name"]), str(d["kind"]), str(d.get("channel", "")), bool(d.get("interests", False)))


def parse_column(column: str) -> AttributeSpec | None:
    """The attribute a Shop.customers column holds (None for a canonical or unrelated column)."""
    kind, sep, rest = str(column).partition(":")
    if not sep or not rest:
        return None
    if kind == "consent":
        name, sep2, channel = rest.partition(":")
        return AttributeSpec(name, "consent", channel) if sep2 and name and channel else None
    if kind == INTERESTS:
        return AttributeSpec(rest, "set", interests=True)
    if kind in ("number", "text", "set"):
        return AttributeSpec(rest, kind)
    return None


def attribute_specs(customers: pd.DataFrame | None) -> list[AttributeSpec]:
    """The attributes a customers frame carries, in column order."""
    if customers is None:
        return []
    return [s for s in (parse_column(c) for c in customers.columns) if s is not None]


def check_name(name: str, where: str) -> None:
    """An attribute name must be an identifier that collides with no canonical column, feature or field."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DataError(f"{where}: attribute name {str(name)[:64]!r} must start with a letter and hold only "
                        "letters, digits and '_' (at most 64)")
    low = name.lower()
    if low in RESERVED_NAMES:
        raise DataError(f"{where}: attribute name {name!r} collides with a canonical column or an audience field; "
                        "choose another name")
    if low.startswith(RESERVED_PREFIXES):
        raise DataError(f"{where}: attribute name {name!r} starts with a feature prefix "
                        f"({', '.join(RESERVED_PREFIXES)}); choose another name")
    from tenure.features import BASE_FEATURES

    if low in BASE_FEATURES:
        raise DataError(f"{where}: attribute name {name!r} collides with the customer feature of that name; "
                        "choose another name")


# -- the mapping --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeMapping:
    """One extra column to keep: its source column, kind (None: inferred) and options."""

    column: str
    kind: str | None = None
    separator: str = ";"
    channel: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"column": self.column}
        if self.kind is not None:
            out["kind"] = self.kind
        if self.separator != ";":
            out["separator"] = self.separator
        if self.channel:
            out["channel"] = self.channel
        return out


_CANONICAL_FIELDS = ("customer_id", "signup_date", "age", "gender", "region", "timezone")


@dataclass(frozen=True)
class CustomersMapping:
    """Which column of the customers file feeds each canonical field, and which extra columns to
    keep as attributes (see the module docstring). JSON form::

        {"customer_id": "id", "age": "age_years", "region": "state", "timezone": "tz",
         "attributes": {
            "household_size": {"column": "hh", "kind": "number"},
            "interests": {"column": "declared", "kind": "set", "separator": ";"},
            "newsletter": "newsletter_pref",
            "consent_sms": {"column": "sms_opt_in", "kind": "consent", "channel": "sms"}},
         "interests": "interests"}

    A string value of ``attributes`` is the column alone (kind inferred). Canonical fields left out
    are read from the column of their own name when the file has it.
    """

    customer_id: str = "customer_id"
    signup_date: str | None = None
    age: str | None = None
    gender: str | None = None
    region: str | None = None
    timezone: str | None = None
    attributes: dict[str, AttributeMapping] = field(default_factory=dict)
    interests: str | None = None
    date_format: str | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "customers mapping") -> CustomersMapping:
        if not isinstance(data, Mapping):
            raise DataError(f"{where}: must be a JSON object, got {type(data).__name__}")
        items = {str(k): v for k, v in data.items() if not str(k).startswith("_")}
        known = set(_CANONICAL_FIELDS) | {"attributes", "interests", "date_format"}
        unknown = sorted(set(items) - known)
        if unknown:
            raise DataError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
        for name in (*_CANONICAL_FIELDS, "interests", "date_format"):
            value = items.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise DataError(f"{where}: '{name}' must be a non-empty string or null, got {value!r}")
        raw_attrs = items.pop("attributes", None) or {}
        if not isinstance(raw_attrs, Mapping):
            raise DataError(f"{where}: 'attributes' must be an object {{name: column or {{column, kind, ...}}}}")
        attrs: dict[str, AttributeMapping] = {}
        for name, spec in raw_attrs.items():
            at = f"{where}: attribute {str(name)[:64]!r}"
            check_name(str(name), f"{where}: attributes")
            attrs[str(name)] = _attribute_mapping(spec, at)
        interests = items.get("interests")
        if interests is not None:
            if interests not in attrs:
                raise DataError(f"{where}: 'interests' names {interests!r}, which is not one of the attributes "
                                f"({', '.join(attrs) or 'none'})")
            if attrs[interests].kind not in (None, "set"):
                raise DataError(f"{where}: 'interests' must name a set attribute; {interests!r} is "
                                f"{attrs[interests].kind}")
        lowered = [n.lower() for n in attrs]
        if len(set(lowered)) != len(lowered):
            raise DataError(f"{where}: attribute names must differ in more than letter case")
        return cls(customer_id=items.get("customer_id") or "customer_id", signup_date=items.get("signup_date"),
                   age=items.get("age"), gender=items.get("gender"), region=items.get("region"),
                   timezone=items.get("timezone"), attributes=attrs, interests=interests,
                   date_format=items.get("date_format"))

    @classmethod
    def from_json(cls, path: str | Path) -> CustomersMapping:
        from tenure.data import read_json_object

        path = Path(path)
        data = read_json_object(path, "customers mapping")
        if isinstance(data.get("customers"), dict):
            data = data["customers"]  # a whole column mapping file: its "customers" object
        return cls.from_dict(data, str(path))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {n: getattr(self, n) for n in _CANONICAL_FIELDS if getattr(self, n) is not None}
        out["attributes"] = {n: a.to_dict() for n, a in self.attributes.items()}
        if self.interests is not None:
            out["interests"] = self.interests
        if self.date_format is not None:
            out["date_format"] = self.date_format
        return out

    def sources(self, found: list[str], where: str) -> dict[str, str]:
        """canonical field -> source column (the mapped ones, and the unmapped ones the file has under their
        own name); DataError naming a mapped column the file lacks."""
        out: dict[str, str] = {}
        for name in _CANONICAL_FIELDS:
            source = getattr(self, name)
            if source is not None:
                if source not in found:
                    raise DataError(f"{where}: missing column '{source}' (for {name}); columns found: {found}")
                out[name] = source
            elif name in found:
                out[name] = name
        for name, a in self.attributes.items():
            if a.column not in found:
                raise DataError(f"{where}: missing column '{a.column}' (for attribute {name!r}); columns found: "
                                f"{found}")
        return out


def _attribute_mapping(spec: Any, where: str) -> AttributeMapping:
    if isinstance(spec, str) and spec:
        return AttributeMapping(column=spec)
    if not isinstance(spec, Mapping):
        raise DataError(f"{where}: expected a column name or an object {{\"column\", \"kind\", ...}}, got {spec!r}")
    allowed = {"column", "kind", "separator", "channel"}
    unknown = sorted(set(map(str, spec)) - allowed)
    if unknown:
        raise DataError(f"{where}: unknown keys {unknown}; known keys are {sorted(allowed)}")
    column, kind = spec.get("column"), spec.get("kind")
    separator, channel = spec.get("separator", ";"), spec.get("channel", "")
    if not isinstance(column, str) or not column:
        raise DataError(f"{where}: 'column' must name a source column, got {column!r}")
    if kind is not None and kind not in KINDS:
        raise DataError(f"{where}: kind {kind!r}; expected one of {', '.join(KINDS)} (or leave it out to infer it)")
    if not isinstance(separator, str) or not separator:
        raise DataError(f"{where}: 'separator' must be a non-empty string, got {separator!r}")
    if not isinstance(channel, str):
        raise DataError(f"{where}: 'channel' must be a channel name, got {channel!r}")
    if channel and kind is None:
        kind = "consent"
    if kind == "consent" and not channel:
        raise DataError(f"{where}: a consent needs 'channel' (the channel it allows or refuses, e.g. \"sms\")")
    if channel and kind != "consent":
        raise DataError(f"{where}: 'channel' is for kind consent, not {kind}")
    if separator != ";" and kind not in (None, "set"):
        raise DataError(f"{where}: 'separator' is for kind set, not {kind}")
    return AttributeMapping(column=column, kind=kind, separator=separator, channel=channel.strip())


# -- parsing a customers file's attribute columns ----------------------------------------------------------


def _text(s: pd.Series) -> pd.Series:
    missing = s.isna()
    out = s.astype("str").str.strip()
    return out.mask(missing | (out == ""))


def infer_kind(values: pd.Series, separator: str = ";") -> str:
    """number when every non-empty value is a number, set when a value holds the separator, else text."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return "number"
    if pd.api.types.is_numeric_dtype(values.dtype):
        return "number"
    text = _text(values).dropna()
    if text.empty:
        return "text"
    if bool(pd.to_numeric(text, errors="coerce").notna().all()):
        return "number"
    if bool(text.str.contains(separator, regex=False).any()):
        return "set"
    return "text"


def parse_attributes(raw: pd.DataFrame, where: Any, mapping: CustomersMapping) -> pd.DataFrame:
    """The attribute columns (named by the convention) of the customers rows in `raw` (indexed by data row;
    `where` is tenure.data's row namer). DataError names the line, column and value that cannot be parsed."""
    from tenure.data import _fail_first

    out = pd.DataFrame(index=raw.index)
    for name, a in mapping.attributes.items():
        source = raw[a.column]
        kind = a.kind or infer_kind(source, a.separator)
        spec = AttributeSpec(name, kind, a.channel, interests=name == mapping.interests)
        if kind == "number":
            src = source.astype("float64") if pd.api.types.is_bool_dtype(source.dtype) else source
            text = src if pd.api.types.is_numeric_dtype(src.dtype) else _text(src)
            number = pd.to_numeric(text, errors="coerce").astype("float64")
            bad = (number.isna() & text.notna()) | np.isinf(number.fillna(0.0))
            _fail_first(bad, source, where, a.column, f"a number (attribute {name!r} is a number)")
            out[spec.column] = number
        elif kind == "text":
            out[spec.column] = _text(source).fillna("").astype("str")
        elif kind == "set":
            text = _text(source)
            if bool(text.fillna("").str.contains(SET_JOIN, regex=False).any()) and a.separator != SET_JOIN:
                bad = text.fillna("").str.contains(SET_JOIN, regex=False)
                _fail_first(bad, source, where, a.column, f"a set of values separated by {a.separator!r}",
                            f" ('{SET_JOIN}' may not appear in a value)")
            parts = text.fillna("").str.split(a.separator, regex=False)
            out[spec.column] = parts.map(lambda vs: SET_JOIN.join(sorted({v.strip() for v in vs if v.strip()})))\
                .astype("str")
        else:  # consent
            out[spec.column] = _consent(source, where, a.column, name)
    return out


def _consent(source: pd.Series, where: Any, column: str, name: str) -> pd.Series:
    from tenure.data import _fail_first

    if pd.api.types.is_bool_dtype(source.dtype):
        return source.astype("float64")
    if pd.api.types.is_numeric_dtype(source.dtype):
        values = source.astype("float64")
        bad = values.notna() & ~values.isin([0.0, 1.0])
        _fail_first(bad, source, where, column, f"a consent (attribute {name!r}: yes/no, true/false, 1/0, empty "
                    "for unknown)")
        return values
    low = _text(source).str.lower()
    yes, no = low.isin(CONSENT_WORDS_TRUE), low.isin(CONSENT_WORDS_FALSE)
    _fail_first(low.notna() & ~yes & ~no, source, where, column,
                f"a consent (attribute {name!r}: yes/no, true/false, 1/0, opt-in/opt-out, empty for unknown)")
    return pd.Series(np.where(yes, 1.0, np.where(no, 0.0, np.nan)), index=source.index)


def check_timezones(raw: pd.Series, where: Any, column: str) -> pd.Series:
    """IANA zone names ("" where empty); DataError naming the first line with an unknown zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from tenure.data import _fail_first

    text = _text(raw)
    bad_values = set()
    for value in text.dropna().unique().tolist():
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            bad_values.add(value)
    _fail_first(text.isin(bad_values), raw, where, column, "an IANA time zone name",
                " (e.g. 'Europe/Berlin', 'America/New_York', 'UTC')")
    return text.fillna("").astype("str")


# -- columns of one attribute ---------------------------------------------------------------------------


def set_values(texts: Any) -> list[list[str]]:
    return [[v for v in str(t).split(SET_JOIN) if v] if isinstance(t, str) and t else [] for t in texts]


def top_values(spec: AttributeSpec, values: pd.Series, limit: int) -> list[str]:
    """The most frequent values of a text / set attribute (ties by value), at most `limit`, sorted."""
    if spec.kind == "text":
        counts = values[values != ""].value_counts()
    else:
        counts = pd.Series([v for vs in set_values(values) for v in vs], dtype="object").value_counts()
    if counts.empty:
        return []
    frame = pd.DataFrame({"v": counts.index.astype(str), "n": counts.to_numpy()})
    frame = frame.sort_values(["n", "v"], ascending=[False, True], kind="mergesort")
    return sorted(frame["v"].head(limit).tolist())


FeatureAttributes = tuple[tuple[str, tuple[str, ...]], ...]
"""FeatureSpace.attributes: per attribute its Shop.customers column (name, kind, channel by the convention)
and the levels of its one-hot / multi-hot columns (text, set; () for numbers and consents)."""


def feature_spec(customers: pd.DataFrame | None) -> FeatureAttributes:
    """The attribute feature columns of FeatureSpace (tenure.features): per attribute its column and levels."""
    out = []
    for spec in attribute_specs(customers):
        assert customers is not None
        levels = top_values(spec, customers[spec.column], MAX_LEVELS) if spec.kind in ("text", "set") else []
        out.append((spec.column, tuple(levels)))
    return tuple(out)


def _spec(column: str) -> AttributeSpec:
    spec = parse_column(column)
    if spec is None:
        raise ValueError(f"{column!r} is not an attribute column")
    return spec


def feature_names(features: FeatureAttributes) -> list[str]:
    names: list[str] = []
    for column, levels in features:
        spec = _spec(column)
        if spec.kind in ("text", "set"):
            names += [f"attr_{spec.name}_{v}" for v in levels]
        else:
            names.append(f"attr_{spec.name}")
    return names


def feature_columns(features: FeatureAttributes, table: pd.DataFrame | None, n: int,
                    unknown: float) -> list[np.ndarray]:
    """The feature columns (feature_names order, float64) for `table` (customers reindexed to the rows; None:
    every row unknown). Numbers: the value or `unknown`; text: one-hot over the levels; set: multi-hot;
    consent: 1 allowed, 0 refused, -1 unknown."""
    cols: list[np.ndarray] = []
    for column, levels in features:
        kind = _spec(column).kind
        present = table is not None and column in table.columns
        if kind in ("number", "consent"):
            v = table[column].to_numpy(np.float64) if present else np.full(n, np.nan)  # type: ignore[index]
            cols.append(np.where(np.isfinite(v), v, unknown if kind == "number" else -1.0))
        elif kind == "text":
            text = table[column].fillna("").astype(str) if present else pd.Series([""] * n)  # type: ignore[index]
            codes = pd.Index(list(levels)).get_indexer(text)
            cols += [(codes == i).astype(np.float64) for i in range(len(levels))]
        else:
            sets = set_values(table[column].fillna("").tolist()) if present else [[]] * n  # type: ignore[index]
            index = {v: i for i, v in enumerate(levels)}
            M = np.zeros((n, len(levels)))
            for r, vs in enumerate(sets):
                for v in vs:
                    j = index.get(v)
                    if j is not None:
                        M[r, j] = 1.0
            cols += list(M.T)
    return cols


def unknown_values(features: FeatureAttributes, unknown: float) -> list[float]:
    """The attribute feature values of a customer the customers file does not hold."""
    out: list[float] = []
    for column, levels in features:
        kind = _spec(column).kind
        if kind in ("text", "set"):
            out += [0.0] * len(levels)
        else:
            out.append(unknown if kind == "number" else -1.0)
    return out


# -- the serving table ------------------------------------------------------------------------------------


def table_bytes(customers: pd.DataFrame | None, customer_ids: np.ndarray) -> bytes | None:
    """ATTRIBUTES_FILE for the snapshot's customers (None when the shop has no attributes)."""
    specs = attribute_specs(customers)
    if not specs or customers is None:
        return None
    table = customers.drop_duplicates("customer_id").set_index("customer_id").reindex(
        pd.Index(np.asarray(customer_ids, dtype=object).astype(str)))
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, spec in enumerate(specs):
        col = table[spec.column]
        entry: dict[str, Any] = spec.to_dict()
        if spec.kind in ("number", "consent"):
            values = col.to_numpy(np.float64)
            arrays[f"a{i}"] = values if spec.kind == "number" else np.where(np.isnan(values), -1, values).astype(np.int8)
        elif spec.kind == "text":
            text = col.fillna("").astype(str)
            levels = top_values(spec, text, MAX_SERVED_LEVELS)
            arrays[f"a{i}"] = pd.Index(levels).get_indexer(text).astype(np.int32)
            entry["levels"] = levels
        else:
            text = col.fillna("").astype(str)
            levels = top_values(spec, text, MAX_SERVED_LEVELS)
            index = {v: j for j, v in enumerate(levels)}
            M = np.zeros((len(text), len(levels)), bool)
            for r, vs in enumerate(set_values(text.tolist())):
                for v in vs:
                    j = index.get(v)
                    if j is not None:
                        M[r, j] = True
            arrays[f"a{i}"] = M
            entry["levels"] = levels
        meta.append(entry)
    buf = io.BytesIO()
    np.savez(buf, spec=np.asarray(json.dumps(meta)), n=np.asarray(len(customer_ids), np.int64), **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


@dataclass
class Attribute:
    spec: AttributeSpec
    values: np.ndarray
    """number: float64 (NaN unknown); consent: int8 (1, 0, -1 unknown); text: int32 codes (-1 unknown);
    set: bool (rows, levels)."""
    levels: list[str]

    @property
    def field_kind(self) -> str:
        return self.spec.kind


class AttributeTable:
    """The attributes of the snapshot's customers (row i = snapshot row i), for the services."""

    def __init__(self, attributes: list[Attribute], n: int) -> None:
        self.attributes = attributes
        self.n = n
        self.by_name = {a.spec.name: a for a in attributes}
        self.interest: Attribute | None = next((a for a in attributes if a.spec.interests), None)
        self._refused: dict[int, frozenset[str]] = {}
        consents = [a for a in attributes if a.spec.kind == "consent"]
        for a in consents:
            for r in np.flatnonzero(a.values == 0).tolist():
                self._refused[r] = self._refused.get(r, frozenset()) | {a.spec.channel.lower()}

    @classmethod
    def from_bytes(cls, data: bytes | Path) -> AttributeTable:
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        with np.load(source, allow_pickle=False) as z:
            meta = json.loads(str(z["spec"]))
            n = int(z["n"])
            attributes = [Attribute(AttributeSpec.from_dict(m), z[f"a{i}"], list(m.get("levels", [])))
                          for i, m in enumerate(meta)]
        for a in attributes:
            if len(a.values) != n:
                raise ValueError(f"{ATTRIBUTES_FILE}: attribute {a.spec.name!r} has {len(a.values)} rows, expected {n}")
        return cls(attributes, n)

    @staticmethod
    def for_snapshot(snapshot: Any) -> AttributeTable | None:
        """The table beside a loaded snapshot (None: the shop has no attributes, or an in-memory snapshot)."""
        vdir = getattr(snapshot, "version_dir", None)
        if vdir is None:
            return None
        table = _load_cached(str(Path(vdir) / ATTRIBUTES_FILE))
        if table is not None and table.n != len(snapshot.customer_ids):
            raise ValueError(f"{vdir}/{ATTRIBUTES_FILE}: {table.n} rows for {len(snapshot.customer_ids)} snapshot "
                             "customers")
        return table

    # -- one customer ----------------------------------------------------------------------------

    def refused(self, row: int) -> frozenset[str]:
        """Channels (lower case) the customer at snapshot row `row` refused (-1: none known)."""
        return self._refused.get(row, frozenset()) if row >= 0 else frozenset()

    def interests(self, row: int) -> list[str]:
        a = self.interest
        if a is None or row < 0:
            return []
        return [a.levels[j] for j in np.flatnonzero(a.values[row]).tolist()]

    def values_of(self, row: int) -> list[dict[str, Any]]:
        """The customer's attributes as CustomerAttribute fields (every attribute; unknown ones empty)."""
        out: list[dict[str, Any]] = []
        for a in self.attributes:
            item: dict[str, Any] = {"name": a.spec.name, "kind": a.spec.kind}
            v = a.values[row]
            if a.spec.kind == "number":
                if v == v:
                    item["number"] = float(v)
            elif a.spec.kind == "text":
                item["text"] = a.levels[int(v)] if v >= 0 else ""
            elif a.spec.kind == "set":
                item["values"] = sorted(a.levels[j] for j in np.flatnonzero(v).tolist())
            else:
                item["channel"] = a.spec.channel
                if v >= 0:
                    item["granted"] = bool(v == 1)
            out.append(item)
        return out

    # -- audiences ----------------------------------------------------------------------------------

    def condition(self, name: str, op: str, values: list[str], value: float, value_max: float,
                  where: str) -> np.ndarray:
        """Rows matching one audience condition on attribute `name`; op is the ConditionOp's short name
        (EQ, IN, NOT_IN, BETWEEN, GE, LE, GT, LT). InvalidInput says what was expected otherwise.
        Numbers: an unknown value matches no condition. Text: EQ one value, IN any, NOT_IN none (unknown
        matches NOT_IN). Sets: EQ contains, IN contains any, NOT_IN contains none. Consents: EQ / IN /
        NOT_IN over "yes", "no", "unknown"."""
        a = self.by_name[name]
        kind = a.spec.kind
        if kind == "number":
            return number_condition(a.values, op, values, value, value_max, where, known_only=True)
        words = self._words(a, op, values, where)
        if kind == "consent":
            state = np.where(a.values == 1, 0, np.where(a.values == 0, 1, 2))
            hit = np.isin(state, [CONSENT_STATES.index(w) for w in words])
        elif kind == "text":
            codes = [a.levels.index(w) for w in words]
            hit = np.isin(a.values, codes)
        else:
            cols = [a.levels.index(w) for w in words]
            hit = np.asarray(a.values[:, cols].any(axis=1), bool)
        return ~hit if op == "NOT_IN" else hit

    def _words(self, a: Attribute, op: str, values: list[str], where: str) -> list[str]:
        kind = a.spec.kind
        known = list(CONSENT_STATES) if kind == "consent" else a.levels
        if op not in ("EQ", "IN", "NOT_IN"):
            raise InvalidInput(f"{where}: a {kind} attribute takes op EQ, IN or NOT_IN with names in values, not {op}")
        if op == "EQ" and len(values) != 1:
            raise InvalidInput(f"{where}: EQ on a {kind} attribute takes exactly one name in values, got {len(values)}")
        if not values:
            raise InvalidInput(f"{where}: {op} on a {kind} attribute takes names in values")
        lookup = set(known)
        for v in values:
            if v not in lookup:
                expect = ("yes (granted), no (refused) or unknown" if kind == "consent"
                          else ", ".join(known)[:600] or "(no values in the data)")
                raise InvalidInput(f"{where}: unknown value {v[:64]!r}; expected one of: {expect}")
        return list(values)

    # -- profiles ----------------------------------------------------------------------------------

    def profile(self, group: np.ndarray) -> list[dict[str, Any]]:
        """Per attribute value: the group's share (or mean, for numbers) next to the base's, with the
        standardised difference (tenure.profile's conventions). group: bool mask over the rows."""
        rows: list[dict[str, Any]] = []
        g = np.asarray(group, bool)

        def add(feature: str, values: np.ndarray, known: np.ndarray) -> None:
            base_n, group_n = int(known.sum()), int((known & g).sum())
            if base_n == 0:
                return
            base_mean = float(values[known].mean())
            base_std = float(values[known].std())
            group_mean = float(values[known & g].mean()) if group_n else math.nan
            smd = (group_mean - base_mean) / base_std if group_n and base_std > 1e-12 else 0.0
            index = 100.0 * group_mean / base_mean if group_n and abs(base_mean) > 1e-12 else None
            rows.append({"feature": feature, "group_mean": group_mean if group_n else None, "base_mean": base_mean,
                         "index": index, "smd": smd, "group_known": group_n, "base_known": base_n})

        everyone = np.ones(self.n, bool)
        for a in self.attributes:
            name, kind = a.spec.name, a.spec.kind
            if kind == "number":
                add(name, np.nan_to_num(a.values), ~np.isnan(a.values))
            elif kind == "consent":
                for code, state in ((1, "yes"), (0, "no"), (-1, "unknown")):
                    add(f"{name}={state}", (a.values == code).astype(np.float64), everyone)
            elif kind == "text":
                for j, level in enumerate(a.levels[:MAX_LEVELS]):
                    add(f"{name}={level}", (a.values == j).astype(np.float64), everyone)
            else:
                for j, level in enumerate(a.levels[:MAX_LEVELS]):
                    add(f"{name}={level}", a.values[:, j].astype(np.float64), everyone)
        return rows


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> AttributeTable | None:
    """Version directories are immutable: one read per snapshot version and process."""
    p = Path(path)
    if not p.exists():
        return None
    return AttributeTable.from_bytes(p)


NUMBER_OPS = ("EQ", "IN", "NOT_IN", "BETWEEN", "GE", "LE", "GT", "LT")


def parse_numbers(values: list[str], where: str) -> list[float]:
    numbers = []
    for j, text in enumerate(values):
        try:
            number = float(text)
        except ValueError:
            raise InvalidInput(f"{where}: values[{j}] {text[:64]!r} is not a number; a numeric field takes numbers "
                               "(e.g. \"3\", \"0.5\")") from None
        if not math.isfinite(number):
            raise InvalidInput(f"{where}: values[{j}] {text[:64]!r} is not a finite number")
        numbers.append(number)
    return numbers


def number_condition(field_values: np.ndarray, op: str, values: list[str], value: float, value_max: float,
                     where: str, known_only: bool = False) -> np.ndarray:
    """A numeric condition (attribute numbers; services.segmentation.audience uses its EQ, NOT_IN and BETWEEN
    for every numeric field). known_only: NaN rows match nothing, NOT_IN included."""
    v = np.asarray(field_values)
    known = ~np.isnan(v) if v.dtype.kind == "f" else np.ones(len(v), bool)
    for name, x in (("value", value), ("value_max", value_max)):
        if not math.isfinite(x):
            raise InvalidInput(f"{where}: {name} {x} is not a finite number")
    if op in ("IN", "NOT_IN"):
        if values and value != 0:
            raise InvalidInput(f"{where}: numeric {op} takes its numbers in values or one number in value, not both")
        numbers = np.asarray(parse_numbers(values, where) if values else [value], v.dtype)
        hit = np.isin(v, numbers)
        return hit if op == "IN" else (~hit & known if known_only else ~hit)
    if values:
        raise InvalidInput(f"{where}: values are for op IN / NOT_IN; {op} on a numeric field takes one number in value"
                           + (" (and value_max)" if op == "BETWEEN" else ""))
    if op == "EQ":
        return v == np.asarray(value, v.dtype)
    if op == "BETWEEN":
        if value_max < value:
            raise InvalidInput(f"{where}: BETWEEN needs value <= value_max, got {value} > {value_max}")
        return (v >= value) & (v <= value_max)
    comparisons = {"GE": np.greater_equal, "LE": np.less_equal, "GT": np.greater, "LT": np.less}
    if op not in comparisons:
        raise InvalidInput(f"{where}: op {op} does not apply to a number; expected EQ, IN, NOT_IN, BETWEEN, GE, LE, "
                           "GT or LT")
    return comparisons[op](v, value)


def attribute_files(customers: pd.DataFrame | None, customer_ids: np.ndarray) -> dict[str, bytes]:
    """{ATTRIBUTES_FILE: the serving table} for write_snapshot's extra files ({} without attributes)."""
    data = table_bytes(customers, customer_ids)
    return {} if data is None else {ATTRIBUTES_FILE: data}
