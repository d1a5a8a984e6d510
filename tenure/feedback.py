"""Recommendation feedback: impressions, clicks and purchases, kept in one SQLite file under the
recommendation service's state directory (state_dir/feedback.sqlite).

Three readers:
- the Recommend hot path asks which products a customer was shown recently without a click or
  purchase (`FeedbackStore.recently_shown`). That is answered from an in-memory index (customer ->
  product -> latest impression and latest click/purchase time), updated on every `record`, built
  from the file for the last `index_days` at start and topped up from the file now and then, so
  events recorded by another worker process on the same state directory arrive too;
- training reads the events (`read_events`) and turns observed outcomes into labelled rows of the
  propensity training set (training.propensity);
- the click-through report (`FeedbackStore.report`, or `position_report` on a DataFrame of events).

Timestamps are Unix seconds of wall-clock time (the time the event happened, as the caller says;
0 means when the server received it).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Collection, Iterable, Sequence

import numpy as np
import pandas as pd

from tenure import sqlite
from tenure.errors import InvalidInput, TenureError, TooLarge, UnknownCustomer, UnknownProduct

log = logging.getLogger(__name__)

IMPRESSION, CLICK, PURCHASE = 1, 2, 3
"""Event kinds, as in the contract's FeedbackKind enum."""
KIND_NAMES = {IMPRESSION: "impression", CLICK: "click", PURCHASE: "purchase"}
MAX_EVENTS_PER_CALL = 10_000
MAX_POSITION = 1_000
MAX_ID_CHARS = 200
MAX_IMPRESSIONS_PER_CUSTOMER = 100
"""Impressions of one customer in one RecordFeedback call (a list shown holds at most 100 products,
Recommend's largest k); more are refused one by one (RESOURCE_EXHAUSTED), the rest are recorded."""
MAX_RECENTLY_SHOWN = 50
"""Recommend leaves out at most this many recently shown products (the most recently shown), so
that however many impressions were recorded, a customer's recommendations never run dry."""
MAX_INDEX_PRODUCTS_PER_CUSTOMER = 200
"""Products remembered per customer in the in-memory index (least recently updated dropped first)."""
MAX_INDEX_ENTRIES = 1_000_000
"""Customer x product entries in the in-memory index of one process (~0.2 KB each, measured: ~210 MB
at this bound); beyond that the customers updated least recently are dropped from the index (not
from the file): their recently shown products are not left out until they are shown something
again. The service sets it from ServiceSettings.feedback_index_max_entries."""
MAX_FUTURE_S = 86_400.0
"""Timestamps may run ahead of the server's clock by this much (clock skew), not more."""
SECONDS_PER_DAY = 86_400.0
EVENT_COLUMNS = ("customer_id", "product_id", "kind", "position", "request_id", "timestamp")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, customer_id TEXT NOT NULL,
    product_id TEXT NOT NULL, kind INTEGER NOT NULL CHECK (kind IN (1, 2, 3)), position INTEGER NOT NULL,
    request_id TEXT NOT NULL, received REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""


@dataclass(frozen=True)
class FeedbackEvent:
    customer_id: str
    product_id: str
    kind: int
    position: int = 0
    """1-based position in the list shown (0: unknown)."""
    request_id: str = ""
    timestamp: float = 0.0
    """Unix seconds; 0: when it is recorded."""


def check_event(event: FeedbackEvent, now: float, products: Collection[str] | None = None,
                customers: Collection[str] | None = None) -> FeedbackEvent:
    """The event with its timestamp resolved (0 -> now), or InvalidInput / UnknownProduct /
    UnknownCustomer saying what is wrong. products: the catalogue's ids; customers: the feature
    store's ids (None: not checked)."""
    cid, pid = event.customer_id, event.product_id
    if not cid:
        raise InvalidInput("customer_id is empty")
    if len(cid) > MAX_ID_CHARS:
        raise InvalidInput(f"customer_id has {len(cid)} characters; at most {MAX_ID_CHARS}")
    if customers is not None and cid not in customers:
        raise UnknownCustomer(f"customer {cid[:100]!r} is not in the feature store; feedback is recorded for "
                              "known customers only")
    if not pid:
        raise InvalidInput("product_id is empty")
    if products is not None and pid not in products:
        raise UnknownProduct(f"product {pid[:100]!r} is not in the catalogue")
    if event.kind not in KIND_NAMES:
        raise InvalidInput(f"kind {event.kind}; expected 1 (impression), 2 (click) or 3 (purchase)")
    if not 0 <= event.position <= MAX_POSITION:
        raise InvalidInput(f"position {event.position}; expected 0 (unknown) or 1..{MAX_POSITION}")
    if len(event.request_id) > MAX_ID_CHARS:
        raise InvalidInput(f"request_id has {len(event.request_id)} characters; at most {MAX_ID_CHARS}")
    ts = event.timestamp
    if not math.isfinite(ts) or ts < 0:
        raise InvalidInput(f"timestamp {ts}; expected Unix seconds >= 0 (0: now)")
    if ts == 0:
        return replace(event, timestamp=now)
    if ts > now + MAX_FUTURE_S:
        raise InvalidInput(f"timestamp {ts:.0f} is {(ts - now) / 3600:.1f} h in the future")
    return event


def check_events(events: Iterable[FeedbackEvent], now: float, products: Collection[str] | None = None,
                 customers: Collection[str] | None = None
                 ) -> tuple[list[FeedbackEvent], dict[int, TenureError]]:
    """The events of one call, each checked on its own (check_event), and at most
    MAX_IMPRESSIONS_PER_CUSTOMER impressions per customer (the later ones are refused with TooLarge).
    Returns the good events (timestamps resolved) and the refused ones' errors by index."""
    good: list[FeedbackEvent] = []
    failures: dict[int, TenureError] = {}
    impressions: dict[str, int] = {}
    for i, event in enumerate(events):
        try:
            checked = check_event(event, now, products, customers)
            if checked.kind == IMPRESSION:
                n = impressions.get(checked.customer_id, 0) + 1
                if n > MAX_IMPRESSIONS_PER_CUSTOMER:
                    raise TooLarge(f"more than {MAX_IMPRESSIONS_PER_CUSTOMER} impressions for customer "
                                   f"{checked.customer_id[:100]!r} in one call; at most {MAX_IMPRESSIONS_PER_CUSTOMER}")
                impressions[checked.customer_id] = n
            good.append(checked)
        except TenureError as err:
            failures[i] = err
    return good, failures


# ---------------------------------------------------------------------------------------------
# The click-through report
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PositionStats:
    position: int
    """1-based; 0 for an unknown position (and for the total)."""
    impressions: int
    clicks: int
    purchases: int

    @property
    def click_through_rate(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def conversion_rate(self) -> float:
        return self.purchases / self.impressions if self.impressions else 0.0


@dataclass(frozen=True)
class FeedbackReport:
    positions: list[PositionStats]
    """One per position that has any event, in position order."""
    total: PositionStats

    def to_frame(self) -> pd.DataFrame:
        """One row per position and a last row "total"."""
        rows = [*self.positions, self.total]
        return pd.DataFrame({
            "position": [str(s.position) for s in self.positions] + ["total"],
            "impressions": [s.impressions for s in rows],
            "clicks": [s.clicks for s in rows],
            "purchases": [s.purchases for s in rows],
            "click_through_rate": [s.click_through_rate for s in rows],
            "conversion_rate": [s.conversion_rate for s in rows],
        })

    def to_text(self) -> str:
        lines = [f"{'position':>8} {'impressions':>12} {'clicks':>8} {'purchases':>10} {'CTR':>8} {'conv.':>8}"]
        for s in [*self.positions, self.total]:
            label = "total" if s is self.total else ("?" if s.position == 0 else str(s.position))
            lines.append(f"{label:>8} {s.impressions:>12,} {s.clicks:>8,} {s.purchases:>10,} "
                         f"{s.click_through_rate:>8.2%} {s.conversion_rate:>8.2%}")
        return "\n".join(lines)


def report_from_counts(counts: Iterable[tuple[int, int, int]]) -> FeedbackReport:
    """(position, kind, number of events) triples -> the report."""
    table: dict[int, list[int]] = {}
    for position, kind, n in counts:
        if kind in KIND_NAMES:
            table.setdefault(int(position), [0, 0, 0])[int(kind) - 1] += int(n)
    positions = [PositionStats(p, *table[p]) for p in sorted(table)]
    total = PositionStats(0, *(sum(c[i] for c in table.values()) for i in range(3)))
    return FeedbackReport(positions, total)


def position_report(events: pd.DataFrame) -> FeedbackReport:
    """Click-through (clicks / impressions) and conversion (purchases / impressions) per position,
    from a DataFrame of events with columns position and kind (as `FeedbackStore.read_events`)."""
    if events.empty:
        return report_from_counts([])
    counts = events.groupby(["position", "kind"]).size()
    return report_from_counts((int(p), int(k), int(n)) for (p, k), n in counts.items())


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------

class FeedbackStore:
    """Feedback events in SQLite plus the in-memory index behind `recently_shown`; thread-safe.

    index_days: how far back the index reaches (the longest `days` recently_shown will be asked
    for; 0: no index, e.g. to read events for training). sync_interval_s: how often
    recently_shown/record look for events other processes wrote to the same file. The index is
    bounded: max_products_per_customer products per customer and max_entries in all (the customers
    updated least recently are dropped first), whatever is recorded.
    """

    def __init__(self, path: Path, index_days: float = 7.0, sync_interval_s: float = 1.0,
                 prune_interval_s: float = 600.0, max_entries: int = MAX_INDEX_ENTRIES,
                 max_products_per_customer: int = MAX_INDEX_PRODUCTS_PER_CUSTOMER) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.index_days = float(index_days)
        self.sync_interval_s = sync_interval_s
        self.prune_interval_s = prune_interval_s
        self.max_entries = max_entries
        self.max_products_per_customer = max_products_per_customer
        # customer -> product -> [latest impression, latest click or purchase] (Unix seconds); both
        # levels in the order of their last update (least recent first), for eviction
        self._index: OrderedDict[str, dict[str, list[float]]] = OrderedDict()
        self._entries = 0
        self.evicted = 0
        """Entries dropped to keep the index within its bounds (since start)."""
        self._warned = False
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._seq = 0
        self._synced_at = self._pruned_at = time.monotonic()
        with sqlite.connect(self.path) as db:
            db.executescript(SCHEMA)
        if self.index_days > 0:
            self._build_index(time.time())

    # -- writing ---------------------------------------------------------------------------------

    def record(self, events: Sequence[FeedbackEvent], now: float | None = None) -> int:
        """Append the events (all or none); each is checked first (InvalidInput on the first bad
        one, the catalogue is not consulted here). Returns how many were recorded."""
        now = time.time() if now is None else now
        checked = [check_event(e, now) for e in events]
        if not checked:
            return 0
        with sqlite.transaction(self.path) as db:
            before = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            db.executemany(
                "INSERT INTO events (ts, customer_id, product_id, kind, position, request_id, received) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                ((e.timestamp, e.customer_id, e.product_id, int(e.kind), int(e.position), e.request_id, now)
                 for e in checked))
            after = db.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        if self.index_days > 0:
            horizon = now - self.index_days * SECONDS_PER_DAY
            with self._lock:
                for e in checked:
                    if e.timestamp >= horizon:
                        self._apply(e.customer_id, e.product_id, e.kind, e.timestamp)
                if self._seq == before:  # nobody else wrote in between: no need to read these back
                    self._seq = int(after)
            self._maybe_sync()
            if time.monotonic() - self._pruned_at >= self.prune_interval_s:
                self.prune(now)
        return len(checked)

    # -- the index -------------------------------------------------------------------------------

    def _apply(self, customer_id: str, product_id: str, kind: int, ts: float) -> None:
        """Fold one event into the index (caller holds the lock). Idempotent: latest times only.
        Keeps the index within max_products_per_customer and max_entries."""
        index = self._index
        products = index.get(customer_id)
        if products is None:
            products = index[customer_id] = {}
        else:
            index.move_to_end(customer_id)
        entry = products.pop(product_id, None)  # re-inserted last: the most recently updated
        if entry is None:
            entry = [-math.inf, -math.inf]
            self._entries += 1
        products[product_id] = entry
        slot = 0 if kind == IMPRESSION else 1
        if ts > entry[slot]:
            entry[slot] = ts
        if len(products) > self.max_products_per_customer:
            del products[next(iter(products))]
            self._entries -= 1
            self.evicted += 1
        while self._entries > self.max_entries and len(index) > 1:
            _, dropped = index.popitem(last=False)
            self._entries -= len(dropped)
            self.evicted += len(dropped)
            if not self._warned:  # once: it says the bound is reached
                self._warned = True
                log.warning("feedback: the recently-shown index reached %d entries; the customers updated least "
                            "recently are dropped from it (not from %s)", self.max_entries, self.path.name)

    def _build_index(self, now: float) -> None:
        horizon = now - self.index_days * SECONDS_PER_DAY
        with sqlite.transaction(self.path, "DEFERRED") as db:  # one snapshot for both reads
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
            rows = db.execute("SELECT customer_id, product_id, kind = 1, MAX(ts) FROM events WHERE ts >= ? "
                              "GROUP BY customer_id, product_id, kind = 1", (horizon,)).fetchall()
        with self._lock:
            for cid, pid, is_impression, ts in rows:
                self._apply(cid, pid, IMPRESSION if is_impression else CLICK, float(ts))
            self._seq = max(self._seq, int(seq))

    def sync(self, now: float | None = None) -> int:
        """Fold in events written to the file since the last sync (by this or another process:
        folding one twice changes nothing). Returns how many rows were read."""
        now = time.time() if now is None else now
        horizon = now - self.index_days * SECONDS_PER_DAY
        with sqlite.connect(self.path) as db:
            rows = db.execute("SELECT seq, customer_id, product_id, kind, ts FROM events WHERE seq > ? ORDER BY seq",
                              (self._seq,)).fetchall()
        with self._lock:
            for seq, cid, pid, kind, ts in rows:
                if ts >= horizon:
                    self._apply(cid, pid, int(kind), float(ts))
                self._seq = max(self._seq, int(seq))
        self._synced_at = time.monotonic()
        return len(rows)

    def _maybe_sync(self) -> None:
        """When a sync is due, run one on a thread of its own: reading what other processes wrote
        must not hold up the Recommend call that noticed it was due."""
        if time.monotonic() - self._synced_at < self.sync_interval_s:
            return
        if not self._sync_lock.acquire(blocking=False):  # one is running
            return
        self._synced_at = time.monotonic()
        try:
            threading.Thread(target=self._background_sync, name="feedback-sync", daemon=True).start()
        except BaseException:
            self._sync_lock.release()
            raise

    def _background_sync(self) -> None:
        try:
            self.sync()
        except Exception:  # e.g. the file is busy for longer than the timeout: try again next time
            log.exception("feedback: reading new events from %s failed", self.path)
        finally:
            self._sync_lock.release()

    def prune(self, now: float | None = None, chunk: int = 5_000) -> int:
        """Drop index entries older than index_days, a chunk of customers at a time so that
        recently_shown never waits long for the lock. Returns how many were dropped."""
        now = time.time() if now is None else now
        horizon = now - self.index_days * SECONDS_PER_DAY
        self._pruned_at = time.monotonic()
        with self._lock:
            customers = list(self._index)
        removed = 0
        for start in range(0, len(customers), chunk):
            with self._lock:
                for cid in customers[start:start + chunk]:
                    products = self._index.get(cid)
                    if products is None:
                        continue
                    stale = [pid for pid, (imp, eng) in products.items() if max(imp, eng) < horizon]
                    for pid in stale:
                        del products[pid]
                    removed += len(stale)
                    self._entries -= len(stale)
                    if not products:
                        del self._index[cid]
        return removed

    def recently_shown(self, customer_id: str, now: float, days: float,
                       limit: int = MAX_RECENTLY_SHOWN) -> list[str]:
        """Products shown to the customer in the `days` before `now` (and at most index_days) whose
        latest impression no click or purchase of the customer has followed (at or after it): the
        `limit` most recently shown of them, most recent first."""
        if days <= 0 or self.index_days <= 0:
            return []
        self._maybe_sync()
        horizon = now - days * SECONDS_PER_DAY
        with self._lock:
            products = self._index.get(customer_id)
            if not products:
                return []
            shown = [(imp, pid) for pid, (imp, eng) in products.items() if imp >= horizon and imp > eng]
        shown.sort(key=lambda t: -t[0])
        return [pid for _, pid in shown[:limit]]

    def index_size(self) -> tuple[int, int]:
        """(customers, customer x product entries) in the index."""
        with self._lock:
            return len(self._index), self._entries

    # -- reading ---------------------------------------------------------------------------------

    def read_events(self, since: float | None = None, until: float | None = None) -> pd.DataFrame:
        """Events with since <= timestamp < until (None: unbounded), in the order recorded:
        customer_id, product_id, kind (1 impression, 2 click, 3 purchase), position, request_id,
        timestamp (Unix seconds)."""
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        with sqlite.connect(self.path) as db:
            rows = db.execute("SELECT customer_id, product_id, kind, position, request_id, ts FROM events "
                              "WHERE ts >= ? AND ts < ? ORDER BY seq", (lo, hi)).fetchall()
        frame = pd.DataFrame.from_records(rows, columns=list(EVENT_COLUMNS))
        return frame.astype({"customer_id": object, "product_id": object, "kind": np.int64,
                             "position": np.int64, "request_id": object, "timestamp": np.float64})

    def report(self, since: float | None = None, until: float | None = None) -> FeedbackReport:
        """Click-through and conversion by position for since <= timestamp < until (None: unbounded)."""
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        with sqlite.connect(self.path) as db:
            counts = db.execute("SELECT position, kind, COUNT(*) FROM events WHERE ts >= ? AND ts < ? "
                                "GROUP BY position, kind", (lo, hi)).fetchall()
        return report_from_counts(counts)
