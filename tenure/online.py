"""The online feature store: events (orders, returns) update a customer's features at once.

Training writes, next to the snapshot, the *seed* (online.npz in the features version): for every
customer the sums and counts the features are made of (FeatureSpace.customer_stats), the orders and
purchase lines still inside the features' time windows, the products bought, the demographics and
the BG/NBD x Gamma-Gamma parameters. An event loads the customer's state (from the store, else
from the seed), applies its lines, and recomputes the feature vector with FeatureSpace.columns, the
same formulas the batch uses: replaying a month of events onto the seed gives the batch snapshot at
the month's end (tests/integration/test_online_parity.py).

A vector is "as of" one second after the customer's latest event (features look strictly before
their as-of time); customers without events keep the snapshot's row, as of its cutoff. A new
snapshot version starts a fresh namespace: events since its cutoff are replayed (e.g. from Kafka).

Stores (OnlineStore): EmbeddedStore (a dict in the service process, the default) and RedisStore
(redis://..., shared by replicas and services; each batch is one optimistic transaction over the
customers' keys, so replicas never lose each other's updates). Both remember event ids for the
retention window: a replayed event changes nothing.
"""
from __future__ import annotations

import io
import json
import logging
import math
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from tenure.features import (
    UNKNOWN,
    BtydParams,
    FeatureSpace,
    TxArrays,
    btyd_days,
    btyd_spend_from_rfm,
    rfm_from_days,
)

if TYPE_CHECKING:
    import pandas as pd

    from tenure.store import FeatureSnapshot

log = logging.getLogger(__name__)

SEED_FILE = "online.npz"
SECOND = 1.0 / 86_400.0
ORDER_WINDOW_DAYS = 366.0
"""Orders kept per customer: the longest order window of the features (orders_365d) and a day."""
LINE_WINDOW_DAYS = 361.0
"""Purchase lines kept: the longest spend window (spend_prev_180d ends 360 days back) and a day."""
SCALARS = ("n_orders", "first_t", "last_t", "last_gap", "gap_n", "gap_sum", "gap_sq", "spend_total", "buy_value",
           "buy_lines", "buy_qty", "ret_lines", "ret_sum", "day_n", "day_first", "day_last", "day_first_amount",
           "day_base", "day_last_amount")
"""A state's sums and counts (`customer_stats` names; day_*: the purchase days of the BG/NBD summary, day_base
the value of every day before the last)."""
_S = {name: i for i, name in enumerate(SCALARS)}
UNKNOWN_SIGNUP_DAY = 1e9
"""A signup day far in the future (as features.NO_SIGNUP): days_since_signup falls back to tenure."""
MAX_EVENTS = 10_000
MAX_LINES = 1_000

APPLIED, DUPLICATE, REJECTED, BEFORE_SNAPSHOT = "applied", "duplicate", "rejected", "before_snapshot"


# -- the seed: every customer's state at the snapshot's cutoff -------------------------------------------


def _ragged(codes: np.ndarray, n: int, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Values grouped by code (stable: the arrays' order within a code) as (indptr, *values)."""
    order = np.argsort(codes, kind="stable")
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(codes, minlength=n), out=indptr[1:])
    return (indptr, *(v[order] for v in values))


def build_seed(space: FeatureSpace, arrays: TxArrays, T: float, customers: pd.DataFrame | None,
               present: np.ndarray, btyd_params: BtydParams | None) -> dict[str, np.ndarray]:
    """The seed arrays at day T: rows are the snapshot's customers (codes `present`, its row order; their ids are the
    snapshot's) then every other customer code (known customers without an order before T: extra_ids), as plain
    arrays for online.npz. Product indices are the snapshot catalogue's (arrays.product_ids)."""
    C = arrays.n_customers
    rest = np.setdiff1d(np.arange(C), present)
    rows = np.concatenate([present, rest]).astype(np.int64)
    where = np.empty(C, np.int64)
    where[rows] = np.arange(C)  # code -> seed row
    stats = space.customer_stats(arrays, T)
    n_days, first, last, first_amount, total = btyd_days(arrays, T)
    # day_base + day_last_amount = total; the last day's value alone is the last day group's sum
    m = (arrays.t < T) & ~arrays.is_return
    day = np.floor(arrays.t[m])
    last_day_value = np.bincount(arrays.cust[m], weights=np.where(day == last[arrays.cust[m]], arrays.amount[m], 0.0),
                                 minlength=C)
    scal = {**stats, "day_n": n_days, "day_first": first, "day_last": last, "day_first_amount": first_amount,
            "day_base": total - last_day_value, "day_last_amount": last_day_value}
    S = np.column_stack([scal[name] for name in SCALARS])[rows]
    static, signup = space.demographics(arrays, customers)
    om = (arrays.o_t < T) & (arrays.o_t >= T - ORDER_WINDOW_DAYS)
    o_ptr, o_t = _ragged(where[arrays.o_cust[om]], C, arrays.o_t[om])
    lm = m & (arrays.t >= T - LINE_WINDOW_DAYS)
    l_ptr, l_t, l_a = _ragged(where[arrays.cust[lm]], C, arrays.t[lm], arrays.amount[lm])
    # products bought: count and last day per (customer, product)
    P = arrays.n_products
    key = arrays.cust[m] * P + arrays.prod[m]
    keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    last_t = np.full(len(keys), -np.inf)
    np.maximum.at(last_t, inverse, arrays.t[m])
    p_ptr, p_idx, p_count, p_last = _ragged(where[keys // P], C, keys % P, counts.astype(np.float64), last_t)
    out = {
        "extra_ids": arrays.customer_ids[rest].astype(str), "n_present": np.asarray(len(present), np.int64),
        "scalars": S, "cat_value": stats["cat_value"][rows], "cat_lines": stats["cat_lines"][rows],
        "chan_n": stats["chan_n"][rows],
        "static": np.column_stack(static)[rows] if static else np.zeros((C, 0)),
        "o_ptr": o_ptr, "o_t": o_t, "l_ptr": l_ptr, "l_t": l_t, "l_a": l_a,
        "p_ptr": p_ptr, "p_idx": p_idx, "p_count": p_count, "p_last": p_last,
        "cutoff_day": np.asarray(T, np.float64),
        "btyd_params": np.asarray(json.dumps(btyd_params)),
    }
    if signup is not None:
        out["signup"] = signup[rows]
    return out


def seed_bytes(seed: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **seed)  # type: ignore[arg-type]  # uncompressed: the services map it and read only the rows events touch
    return buf.getvalue()


class Seed:
    """online.npz of a features version, mapped: a row is read when an event first touches its customer."""

    def __init__(self, path: Path, snapshot: FeatureSnapshot) -> None:
        from tenure.store import _mapped

        self.path = path
        with zipfile.ZipFile(path) as archive:
            names = tuple(n[:-4] for n in archive.namelist())
        mapped = _mapped(path, tuple(n for n in names if n not in ("extra_ids", "btyd_params")))
        with np.load(path, allow_pickle=False) as npz:
            z = {n: mapped[n] if n in mapped else npz[n] for n in names}
        self.z = z
        self.n_present = int(z["n_present"])
        if self.n_present != len(snapshot.customer_ids):
            raise ValueError(f"{path}: seed has {self.n_present} snapshot customers, the snapshot {len(snapshot.customer_ids)}")
        self.snapshot_index = snapshot.index
        self.extra = {cid: self.n_present + i for i, cid in enumerate(z["extra_ids"].tolist())}
        self.product_ids = snapshot.catalog.product_ids  # the affinity columns: the seed's product indices
        self.cutoff_day = float(z["cutoff_day"])
        params = json.loads(str(z["btyd_params"]))
        self.btyd_params: BtydParams | None = params

    def row(self, cid: str) -> int | None:
        row = self.snapshot_index.get(cid)
        return row if row is not None else self.extra.get(cid)

    def state(self, cid: str) -> dict[str, Any] | None:
        """The customer's state at the cutoff, None for a customer the seed does not hold."""
        r = self.row(cid)
        if r is None:
            return None
        z = self.z

        def span(ptr: str) -> slice:
            return slice(int(z[ptr][r]), int(z[ptr][r + 1]))

        o, ln, p = span("o_ptr"), span("l_ptr"), span("p_ptr")
        state = {
            "s": [float(v) for v in z["scalars"][r]],
            "cv": [float(v) for v in z["cat_value"][r]], "cl": [float(v) for v in z["cat_lines"][r]],
            "ch": [float(v) for v in z["chan_n"][r]], "st": [float(v) for v in z["static"][r]],
            "su": float(z["signup"][r]) if "signup" in z else None,
            "o": [float(v) for v in z["o_t"][o]],
            "l": [[float(t), float(a)] for t, a in zip(z["l_t"][ln], z["l_a"][ln])],
            "p": {str(self.product_ids[i]): [float(c), float(t)] for i, c, t in zip(z["p_idx"][p], z["p_count"][p], z["p_last"][p])},
            "ev": -math.inf,
        }
        return state


def empty_state(space: FeatureSpace) -> dict[str, Any]:
    """A customer the seed does not hold: no history, demographics unknown (until the next training)."""
    s = [0.0] * len(SCALARS)
    s[_S["last_gap"]] = UNKNOWN
    static = space.unknown_static()  # age unknown, no gender/region level, attributes unknown
    K, H = max(len(space.categories), 1), max(len(space.channels), 1)
    return {"s": s, "cv": [0.0] * K, "cl": [0.0] * K, "ch": [0.0] * H, "st": static,
            "su": UNKNOWN_SIGNUP_DAY if space.has_signup else None, "o": [], "l": [], "p": {}, "ev": -math.inf}


# -- events ----------------------------------------------------------------------------------------


@dataclass
class Line:
    product_id: str
    category: str
    quantity: float
    amount: float


@dataclass
class Event:
    """One event, as the services receive it (EventService) or a replay reads it."""

    event_id: str
    customer_id: str
    timestamp: float
    """Unix seconds."""
    kind: str
    """"order", "return" or "feedback"."""
    lines: list[Line] = field(default_factory=list)
    channel: str = ""
    order_id: str = ""
    payload: Any = None
    """The feedback event (kind "feedback")."""

    def check(self) -> str | None:
        """What is wrong with the event (a message saying what was expected), or None."""
        if not self.event_id:
            return "event_id is empty; expected a unique idempotency key per event"
        if len(self.event_id) > 256:
            return f"event_id has {len(self.event_id)} characters; expected at most 256"
        if not self.customer_id:
            return "customer_id is empty; expected the customer's id"
        if not (math.isfinite(self.timestamp) and self.timestamp > 0):
            return f"timestamp={self.timestamp}; expected Unix seconds > 0"
        if self.kind == "feedback":
            return None
        if self.kind not in ("order", "return"):
            return "the event has no kind; expected one of order, return_lines, feedback"
        if not self.lines:
            return f"the {self.kind} has no lines; expected at least one"
        if len(self.lines) > MAX_LINES:
            return f"the {self.kind} has {len(self.lines)} lines; expected at most {MAX_LINES}"
        for i, line in enumerate(self.lines):
            if not line.product_id:
                return f"line {i}: product_id is empty"
            if not (math.isfinite(line.quantity) and (line.quantity > 0 or (self.kind == "return" and line.quantity < 0))):
                return f"line {i}: quantity={line.quantity}; expected a number > 0 (returned units may be negative)"
            if not math.isfinite(line.amount):
                return f"line {i}: amount={line.amount}; expected a finite number"
        return None


@dataclass
class Outcome:
    index: int
    event_id: str
    outcome: str
    error: str = ""
    code: str = "INVALID_ARGUMENT"
    """The gRPC status name of a rejection: INVALID_ARGUMENT (the event is wrong), RESOURCE_EXHAUSTED (a bound)."""


@dataclass
class IngestSummary:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    before_snapshot: int = 0
    rejected: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    """Every event that was not applied."""
    changed: list[tuple[str, str]] = field(default_factory=list)
    """(customer, the last event applied to it) per customer whose features changed."""

    def add(self, other: "IngestSummary", offset: int = 0) -> None:
        self.received += other.received
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.before_snapshot += other.before_snapshot
        self.rejected += other.rejected
        self.outcomes += [Outcome(o.index + offset, o.event_id, o.outcome, o.error) for o in other.outcomes]
        self.changed += other.changed


def _apply(state: dict[str, Any], event: Event, t: float, cat_code: Callable[[Line], int], chan_code: int) -> None:
    """Apply an order or a return at day t to a state (in place), as the batch sums would count its lines."""
    s, S = state["s"], _S
    if event.kind == "return":
        for line in event.lines:
            a = -abs(line.amount)
            s[S["spend_total"]] += a
            s[S["ret_lines"]] += 1.0
            s[S["ret_sum"]] += a
        state["ev"] = t
        return
    day = math.floor(t)
    products = state["p"]
    for line in event.lines:
        a = line.amount
        s[S["spend_total"]] += a
        s[S["buy_value"]] += a
        s[S["buy_lines"]] += 1.0
        s[S["buy_qty"]] += line.quantity
        k = cat_code(line)
        if k >= 0:
            state["cv"][k] += a
            state["cl"][k] += 1.0
        state["l"].append([t, a])
        count, _ = products.get(line.product_id, (0.0, t))
        products[line.product_id] = [count + 1.0, t]
        if s[S["day_n"]] == 0:
            s[S["day_n"]], s[S["day_first"]], s[S["day_last"]] = 1.0, float(day), float(day)
            s[S["day_first_amount"]] = a
            s[S["day_last_amount"]] = a
        elif day > s[S["day_last"]]:
            s[S["day_n"]] += 1.0
            s[S["day_last"]] = float(day)
            s[S["day_base"]] += s[S["day_last_amount"]]
            s[S["day_last_amount"]] = a
        else:
            s[S["day_last_amount"]] += a
            if day == s[S["day_first"]]:
                s[S["day_first_amount"]] += a
    if s[S["n_orders"]] > 0:
        gap = t - s[S["last_t"]]
        s[S["gap_n"]] += 1.0
        s[S["gap_sum"]] += gap
        s[S["gap_sq"]] += gap * gap
        s[S["last_gap"]] = gap
    else:
        s[S["first_t"]] = t
    s[S["last_t"]] = t
    s[S["n_orders"]] += 1.0
    state["o"].append(t)
    if chan_code >= 0:
        state["ch"][chan_code] += 1.0
    state["ev"] = t
    state["o"] = [v for v in state["o"] if v >= t - ORDER_WINDOW_DAYS]
    state["l"] = [v for v in state["l"] if v[0] >= t - LINE_WINDOW_DAYS]


def _window_sum(values: list[float], low: float, high: float) -> float:
    acc = 0.0  # in order, one addition at a time: as np.bincount sums the batch's lines
    for v in values:
        if low <= v < high:
            acc += 1.0
    return acc


def vectors_at(space: FeatureSpace, states: list[dict[str, Any]], T: np.ndarray,
               btyd_params: BtydParams | None) -> np.ndarray:
    """Feature rows (float32, `space.names` order) of states at days T (one per state): FeatureSpace.columns."""
    B = len(states)
    S = np.array([st["s"] for st in states], np.float64).reshape(B, len(SCALARS))
    stats = {name: S[:, i] for i, name in enumerate(SCALARS)}
    o90, o365, s180, sprev = (np.zeros(B) for _ in range(4))
    for i, st in enumerate(states):
        t = float(T[i])
        o90[i] = _window_sum(st["o"], t - 90, t)
        o365[i] = _window_sum(st["o"], t - 365, t)
        recent = prev = 0.0
        for lt, a in st["l"]:
            if t - 180 <= lt < t:
                recent += a
            elif t - 360 <= lt < t - 180:
                prev += a
        s180[i], sprev[i] = recent, prev
    stats.update(orders_90=o90, orders_365=o365, s180=s180, sprev=sprev,
                 distinct_products=np.array([float(len(st["p"])) for st in states]),
                 cat_value=np.array([st["cv"] for st in states], np.float64).reshape(B, -1),
                 cat_lines=np.array([st["cl"] for st in states], np.float64).reshape(B, -1),
                 chan_n=np.array([st["ch"] for st in states], np.float64).reshape(B, -1))
    static_m = np.array([st["st"] for st in states], np.float64).reshape(B, -1)
    static = list(static_m.T)
    signup = np.array([st["su"] for st in states], np.float64) if space.has_signup else None
    btyd = None
    if space.btyd_horizons:
        rfm = rfm_from_days(stats["day_n"], stats["day_first"], stats["day_last"], stats["day_first_amount"],
                            stats["day_base"] + stats["day_last_amount"], T)  # type: ignore[arg-type]
        btyd = btyd_spend_from_rfm(rfm, space.btyd_horizons, btyd_params)
    return np.column_stack(space.columns(stats, T, static, signup, btyd)).astype(np.float32)  # type: ignore[arg-type]


# -- stores ----------------------------------------------------------------------------------------


Changes = list[tuple[str, str]]


class OnlineStore:
    """Where states, vectors and seen event ids live (one namespace per snapshot version)."""

    kind = "abstract"

    def transact(self, customers: list[str], event_ids: list[str],
                 work: Callable[[list[Any], list[bool]], tuple[dict[str, tuple[Any, bytes]], list[str], Changes]]
                 ) -> Changes:
        """Read the customers' states and whether the event ids were seen, run work(states, seen) -> (writes
        {customer: (state, vector bytes)}, event ids to remember, changes), and write its result atomically
        (retried when another writer changed one of the customers meanwhile). Returns the changes."""
        raise NotImplementedError

    def vector(self, customer: str) -> bytes | None:
        raise NotImplementedError

    def vectors(self, customers: list[str]) -> list[bytes | None]:
        return [self.vector(c) for c in customers]

    def state(self, customer: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def entry(self, customer: str) -> tuple[bytes | None, dict[str, Any] | None]:
        """(vector, state) of a customer, read at one moment (one round trip with Redis)."""
        return self.vector(customer), self.state(customer)

    def seen(self, event_ids: list[str]) -> list[bool]:
        """Whether each event id was remembered (applied) before."""
        out: list[bool] = []

        def read(states: list[Any], seen: list[bool]) -> tuple[dict[str, tuple[Any, bytes]], list[str], Changes]:
            out[:] = seen
            return {}, [], []

        self.transact([], event_ids, read)
        return out

    def remember(self, event_ids: list[str]) -> None:
        """Remember event ids applied outside transact (feedback recorded by the recommendation service)."""
        self.transact([], event_ids, lambda states, seen: ({}, list(event_ids), []))

    def subscribe(self, listener: Callable[[Changes], None]) -> None:
        """listener(changes) after every committed batch, whichever process ingested it."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise when the store cannot be reached."""

    def close(self) -> None:
        pass


class EmbeddedStore(OnlineStore):
    """In the service process: dicts under one lock; the newest `max_event_ids` event ids are remembered."""

    kind = "embedded"

    def __init__(self, max_event_ids: int = 1_000_000) -> None:
        self._states: dict[str, Any] = {}
        self._vectors: dict[str, bytes] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._max = max_event_ids
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Changes], None]] = []

    def transact(self, customers: list[str], event_ids: list[str],
                 work: Callable[[list[Any], list[bool]], tuple[dict[str, tuple[Any, bytes]], list[str], Changes]]
                 ) -> Changes:
        with self._lock:
            states = [self._states.get(c) for c in customers]
            seen = [e in self._seen for e in event_ids]
            writes, remember, changes = work(states, seen)
            for c, (state, vec) in writes.items():
                self._states[c] = state
                self._vectors[c] = vec
            for e in remember:
                self._seen[e] = None
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
        for listener in list(self._listeners):
            listener(changes)
        return changes

    def vector(self, customer: str) -> bytes | None:
        return self._vectors.get(customer)

    def state(self, customer: str) -> dict[str, Any] | None:
        return self._states.get(customer)

    def subscribe(self, listener: Callable[[Changes], None]) -> None:
        self._listeners.append(listener)


_REMEMBER = "for _, k in ipairs(KEYS) do redis.call('SET', k, '1', 'PX', ARGV[1]) end"
"""RedisStore: set every key of KEYS to 1 with a TTL of ARGV[1] ms."""


class RedisStore(OnlineStore):
    """A shared Redis (redis://HOST:PORT[/DB]): keys <prefix>c:<customer> (state, JSON), <prefix>v:<customer>
    (vector, float32 bytes), <prefix>e:<event id> (seen, with a TTL); batches published on <prefix>changes."""

    kind = "redis"

    def __init__(self, url: str, namespace: str, retention_s: float) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self.prefix = f"tenure:{namespace}:"
        self.retention_ms = max(int(retention_s * 1000), 1)
        self._pubsub: Any = None
        self._thread: Any = None
        self._listeners: list[Callable[[Changes], None]] = []

    def ping(self) -> None:
        self.client.ping()

    def transact(self, customers: list[str], event_ids: list[str],
                 work: Callable[[list[Any], list[bool]], tuple[dict[str, tuple[Any, bytes]], list[str], Changes]]
                 ) -> Changes:
        import redis

        p = self.prefix
        keys = [p + "c:" + c for c in customers] + [p + "e:" + e for e in event_ids]
        while True:
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*keys)
                    values = pipe.mget(keys) if keys else []
                    states = [json.loads(v) if v is not None else None for v in values[:len(customers)]]
                    seen = [v is not None for v in values[len(customers):]]
                    writes, remember, changes = work(states, seen)
                    pipe.multi()
                    if writes:  # one MSET of every state and vector: one command instead of two per customer
                        pipe.mset({k: v for c, (state, vec) in writes.items()
                                   for k, v in ((p + "c:" + c, json.dumps(state, separators=(",", ":"),
                                                                          check_circular=False)), (p + "v:" + c, vec))})
                    if remember:  # every seen event id with its TTL: one script call instead of a SET per event
                        pipe.eval(_REMEMBER, len(remember), *(p + "e:" + e for e in remember), self.retention_ms)
                    if changes:
                        pipe.publish(p + "changes", json.dumps(changes, separators=(",", ":")))
                    pipe.execute()
                    return changes
                except redis.WatchError:
                    continue  # another replica changed one of these customers: read again

    def vector(self, customer: str) -> bytes | None:
        value = self.client.get(self.prefix + "v:" + customer)
        return value if isinstance(value, bytes) else None

    def vectors(self, customers: list[str]) -> list[bytes | None]:
        if not customers:
            return []
        return [v if isinstance(v, bytes) else None for v in self.client.mget([self.prefix + "v:" + c for c in customers])]

    def state(self, customer: str) -> dict[str, Any] | None:
        value = self.client.get(self.prefix + "c:" + customer)
        return json.loads(value) if value is not None else None

    def entry(self, customer: str) -> tuple[bytes | None, dict[str, Any] | None]:
        vec, state = self.client.mget([self.prefix + "v:" + customer, self.prefix + "c:" + customer])
        return (vec if isinstance(vec, bytes) else None), (json.loads(state) if state is not None else None)

    def subscribe(self, listener: Callable[[Changes], None]) -> None:
        self._listeners.append(listener)
        if self._pubsub is not None:
            return
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)

        def handle(message: dict[str, Any]) -> None:
            try:
                changes = [(str(c), str(e)) for c, e in json.loads(message["data"])]
            except (ValueError, TypeError) as exc:
                log.warning("online store: a malformed change message was ignored (%s)", exc)
                return
            for fn in list(self._listeners):
                fn(changes)

        self._pubsub.subscribe(**{self.prefix + "changes": handle})
        self._thread = self._pubsub.run_in_thread(sleep_time=0.05, daemon=True)

    def subscribed(self) -> bool:
        """True once the subscription is active (a test waits on it before publishing)."""
        return self._pubsub is not None and bool(self._pubsub.subscribed)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread.join(timeout=5.0)  # it polls every 50 ms; closing the connection under it would raise
            self._thread = None
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None
        self.client.close()


def open_store(url: str, namespace: str, retention_s: float) -> OnlineStore:
    """"" or "embedded" -> EmbeddedStore; redis://... / rediss://... / unix://... -> RedisStore."""
    if url in ("", "embedded"):
        return EmbeddedStore()
    if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        return RedisStore(url, namespace, retention_s)
    raise ValueError(f"online_store={url[:100]!r}; expected empty (embedded), off, or redis://HOST:PORT[/DB]")


# -- the online features of a snapshot ---------------------------------------------------------------


class OnlineFeatures:
    """Events -> states -> vectors for one feature snapshot; reads for the services."""

    def __init__(self, snapshot: FeatureSnapshot, seed: Seed | None, store: OnlineStore,
                 feedback: Callable[[list[Event]], list[str | None]] | None = None,
                 max_new_customers: int = 50_000) -> None:
        self.snapshot = snapshot
        self.max_new_customers = max_new_customers if store.kind == "embedded" else None
        """Customers the snapshot lacks that the (in-process) store may hold; None: no bound (Redis bounds itself)."""
        self.new_customers = 0
        self.space = snapshot.space
        self.seed = seed
        self.store = store
        self.feedback = feedback
        """Records feedback events (the recommendation service): a message per event that failed, None if recorded."""
        self.cutoff_s = snapshot.cutoff.timestamp()
        self.btyd_params = seed.btyd_params if seed is not None else None
        self.n_features = len(snapshot.feature_names)
        self._cats = {c: i for i, c in enumerate(self.space.categories)}
        self._chans = {c: i for i, c in enumerate(self.space.channels)}
        self._catalog_cat = snapshot.catalog.index, snapshot.catalog.categories

    @classmethod
    def open(cls, snapshot: FeatureSnapshot, version_dir: Path | None, url: str, retention_s: float,
             feedback: Callable[[list[Event]], list[str | None]] | None = None,
             max_new_customers: int = 50_000) -> "OnlineFeatures":
        seed_path = Path(version_dir) / SEED_FILE if version_dir is not None else None
        seed = Seed(seed_path, snapshot) if seed_path is not None and seed_path.exists() else None
        if seed is None:
            log.warning("features %s has no %s (written by an older training): events apply to customers "
                        "without a seed only; retrain to seed every customer", snapshot.version, SEED_FILE)
        return cls(snapshot, seed, open_store(url, snapshot.version or "features", retention_s), feedback,
                   max_new_customers)

    def _cat_code(self, line: Line) -> int:
        cat = line.category
        if not cat:
            index, categories = self._catalog_cat
            i = index.get(line.product_id)
            cat = str(categories[i]) if i is not None else ""
        return self._cats.get(cat, -1)

    def _initial(self, cid: str) -> dict[str, Any] | None:
        """The customer's state at the cutoff: the seed's; None when there is a seed and it lacks the customer
        but the snapshot holds them (cannot happen with a matching seed)."""
        if self.seed is not None:
            state = self.seed.state(cid)
            if state is not None:
                return state
        if self.seed is None and cid in self.snapshot.index:
            return None  # no seed: the snapshot's customers cannot be updated exactly
        return empty_state(self.space)

    def ingest(self, events: list[Event]) -> IngestSummary:
        """Apply a batch (events of one customer in the given order); every event gets an outcome."""
        summary = IngestSummary(received=len(events))
        if len(events) > MAX_EVENTS:
            raise ValueError(f"{len(events)} events in one batch; expected at most {MAX_EVENTS}")
        valid: list[int] = []
        feedback: list[int] = []
        for i, ev in enumerate(events):
            problem = ev.check()
            if problem is not None:
                summary.outcomes.append(Outcome(i, ev.event_id, REJECTED, problem))
            elif ev.kind == "feedback":
                feedback.append(i)
            else:
                valid.append(i)
        if not valid:
            if feedback:  # after the orders of the batch: feedback for a customer's first order is accepted
                self._feedback(events, feedback, summary)
            summary.outcomes.sort(key=lambda o: o.index)
            summary.rejected = sum(o.outcome == REJECTED for o in summary.outcomes)
            return summary
        customers = sorted({events[i].customer_id for i in valid})
        event_ids = [events[i].event_id for i in valid]
        results: dict[int, Outcome] = {}

        def work(stored: list[Any], seen: list[bool]) -> tuple[dict[str, tuple[Any, bytes]], list[str], Changes]:
            results.clear()
            states = dict(zip(customers, stored))
            seen_ids = {e for e, s in zip(event_ids, seen) if s}
            touched: dict[str, str] = {}
            remember: list[str] = []
            for i in valid:
                ev = events[i]
                if ev.event_id in seen_ids:
                    results[i] = Outcome(i, ev.event_id, DUPLICATE)
                    continue
                t = math.floor(ev.timestamp) / 86_400.0  # whole seconds, as the batch reads timestamps
                if ev.timestamp < self.cutoff_s:
                    results[i] = Outcome(i, ev.event_id, BEFORE_SNAPSHOT)
                    seen_ids.add(ev.event_id)
                    continue
                state = states.get(ev.customer_id)
                if state is None:
                    if self.max_new_customers is not None and ev.customer_id not in self.snapshot.index:
                        # only the embedded store is bounded here: it runs `work` once, under its lock
                        if self.new_customers >= self.max_new_customers:
                            results[i] = Outcome(i, ev.event_id, REJECTED, f"the online store already holds "
                                                 f"{self.max_new_customers:,} customers the snapshot does not know "
                                                 "(TENURE_ONLINE_MAX_NEW_CUSTOMERS); the next training includes them",
                                                 "RESOURCE_EXHAUSTED")
                            continue
                        self.new_customers += 1
                    state = self._initial(ev.customer_id)
                    if state is None:
                        results[i] = Outcome(i, ev.event_id, REJECTED, "the snapshot's customers cannot be updated "
                                             "online: its features version has no online seed (retrain)")
                        continue
                    states[ev.customer_id] = state
                if t < state["ev"]:
                    results[i] = Outcome(i, ev.event_id, REJECTED, f"the event at {ev.timestamp:.0f} is older than "
                                         f"the customer's latest applied event ({state['ev'] * 86_400:.0f}); events "
                                         "apply in time order per customer (the next training counts it)")
                    continue
                _apply(state, ev, t, self._cat_code, self._chans.get(ev.channel, -1) if ev.kind == "order" else -1)
                seen_ids.add(ev.event_id)
                remember.append(ev.event_id)
                touched[ev.customer_id] = ev.event_id
                results[i] = Outcome(i, ev.event_id, APPLIED)
            if not touched:
                return {}, remember, []
            names = list(touched)
            todo = [states[c] for c in names]
            T = np.array([st["ev"] + SECOND for st in todo])
            X = vectors_at(self.space, todo, T, self.btyd_params)
            writes: dict[str, tuple[Any, bytes]] = {}
            for c, st, row, at in zip(names, todo, X, T):
                # the row and its as-of day; none for a customer without an order (only returns): not scored
                writes[c] = (st, row.tobytes() + np.float64(at).tobytes() if st["s"][_S["n_orders"]] > 0 else b"")
            return writes, remember, [(c, touched[c]) for c in names]

        summary.changed = self.store.transact(customers, event_ids, work)
        if feedback:
            self._feedback(events, feedback, summary)
        for i in sorted(results):
            o = results[i]
            if o.outcome == APPLIED:
                summary.applied += 1
            else:
                summary.outcomes.append(o)
                summary.duplicates += o.outcome == DUPLICATE
                summary.before_snapshot += o.outcome == BEFORE_SNAPSHOT
        summary.outcomes.sort(key=lambda o: o.index)
        summary.rejected = sum(o.outcome == REJECTED for o in summary.outcomes)
        return summary

    def _feedback(self, events: list[Event], idx: list[int], summary: IngestSummary) -> None:
        if self.feedback is None:
            for i in idx:
                summary.outcomes.append(Outcome(i, events[i].event_id, REJECTED, "feedback events are recorded by "
                                                "the recommendation service; send them there"))
            return
        # Recorded once per event id: ids seen before (or twice in the batch) are duplicates. An id is remembered
        # after its event was recorded, so a failure in between records it again on the retry (at least once).
        seen = self.store.seen([events[i].event_id for i in idx])
        fresh: list[int] = []
        ids: set[str] = set()
        for i, was in zip(idx, seen):
            if was or events[i].event_id in ids:
                summary.outcomes.append(Outcome(i, events[i].event_id, DUPLICATE))
                summary.duplicates += 1
            else:
                fresh.append(i)
                ids.add(events[i].event_id)
        recorded: list[str] = []
        for i, problem in zip(fresh, self.feedback([events[i] for i in fresh]) if fresh else []):
            if problem is None:
                summary.applied += 1
                recorded.append(events[i].event_id)
            else:
                summary.outcomes.append(Outcome(i, events[i].event_id, REJECTED, problem))
        if recorded:
            self.store.remember(recorded)

    # -- reads --------------------------------------------------------------------------------------

    def _decode(self, blob: bytes | None) -> np.ndarray | None:
        if not blob:
            return None
        return np.frombuffer(blob, np.float32, self.n_features)

    def vector(self, customer: str) -> np.ndarray | None:
        """The customer's online feature row (read-only float32), None without events since the snapshot."""
        return self._decode(self.store.vector(customer))

    def vectors(self, customers: list[str]) -> dict[int, np.ndarray]:
        """{position in customers: online row} for the customers that have one."""
        out: dict[int, np.ndarray] = {}
        for i, blob in enumerate(self.store.vectors(customers)):
            row = self._decode(blob)
            if row is not None:
                out[i] = row
        return out

    def dated(self, customers: list[str]) -> dict[int, tuple[np.ndarray, float]]:
        """{position in customers: (online row, Unix seconds it is as of)} in one store read."""
        out: dict[int, tuple[np.ndarray, float]] = {}
        n = self.n_features
        for i, blob in enumerate(self.store.vectors(customers)):
            if blob:  # the row (float32), then its as-of day (float64)
                out[i] = (np.frombuffer(blob, np.float32, n), float(np.frombuffer(blob, np.float64, 1, 4 * n)[0]) * 86_400.0)
        return out

    def entry(self, customer: str) -> tuple[np.ndarray, float, dict[str, tuple[float, float]]] | None:
        """(online row, Unix seconds it is as of, products bought: product id -> (purchase lines, last purchase
        day)) read at one moment; None without an online row."""
        blob, state = self.store.entry(customer)
        if not blob or state is None:
            return None
        n = self.n_features
        products = {p: (float(c), float(t)) for p, (c, t) in state["p"].items()}
        return np.frombuffer(blob, np.float32, n), float(np.frombuffer(blob, np.float64, 1, 4 * n)[0]) * 86_400.0, products

    def vectors_at(self, customers: Iterable[str], T: float) -> tuple[list[str], np.ndarray]:
        """Every listed customer's row at day T from its current state (the store's, else the seed's): the
        customers with an order before T and their rows (what a batch snapshot at T gives)."""
        names, states = [], []
        for c in customers:
            st = self.store.state(c) or (self.seed.state(c) if self.seed is not None else None)
            if st is not None and st["s"][_S["n_orders"]] > 0:
                names.append(c)
                states.append(st)
        if not states:
            return [], np.zeros((0, self.n_features), np.float32)
        return names, vectors_at(self.space, states, np.full(len(states), T), self.btyd_params)

    def close(self) -> None:
        self.store.close()
