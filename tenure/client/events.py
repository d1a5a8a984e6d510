"""Events for the EventService of every Tenure service: build them from plain Python values (or the JSON-lines
format of `tenure ingest`), send them in batches, read the summary.

    from tenure.client import ScoringClient, order_event
    event = order_event("e-1001", "C000042", "2026-11-30T09:15:00Z", [("P0007", "books", 1, 24.90)],
                        order_id="o-77", channel="web")
    with ScoringClient("127.0.0.1:50051") as client:
        summary = client.ingest_events([event])    # tenure.v1.IngestEventsResponse: received, applied, ...

The JSON-lines format (one event per line; what event_from_dict reads):

    {"event_id": "e-1001", "customer_id": "C000042", "timestamp": "2026-11-30T09:15:00Z", "kind": "order",
     "order_id": "o-77", "channel": "web",
     "lines": [{"product_id": "P0007", "category": "books", "quantity": 1, "amount": 24.90}]}
    {"event_id": "e-1002", "customer_id": "C000042", "timestamp": 1796030100, "kind": "return", "order_id": "o-77",
     "lines": [{"product_id": "P0007", "quantity": 1, "amount": 24.90}]}
    {"event_id": "e-1003", "customer_id": "C000042", "timestamp": 1796030200, "kind": "feedback",
     "product_id": "P0009", "feedback_kind": "click", "position": 2, "request_id": "r-1"}

timestamp: Unix seconds (a number) or ISO 8601 (UTC unless it carries an offset). Base install only.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping, Sequence, Union

from tenure.client.core import Call, Flow
from tenure.v1 import events_pb2, recommendation_pb2

MAX_BATCH_EVENTS = 10_000
"""At most this many events in one IngestEvents call (the server's limit)."""
DEFAULT_BATCH_EVENTS = 1_000
KINDS = ("order", "return", "feedback")
FEEDBACK_KINDS = {"impression": recommendation_pb2.FEEDBACK_KIND_IMPRESSION,
                  "click": recommendation_pb2.FEEDBACK_KIND_CLICK, "purchase": recommendation_pb2.FEEDBACK_KIND_PURCHASE}
OUTCOME_NAMES = {v.number: v.name.removeprefix("EVENT_").lower() for v in events_pb2.EventOutcome.DESCRIPTOR.values}
"""EventOutcome number -> 'applied', 'duplicate', 'rejected', 'before_snapshot'."""
LineLike = Union[events_pb2.EventLine, Mapping[str, Any], Sequence[Any]]
EventLike = Union[events_pb2.Event, Mapping[str, Any]]
_LINE_FIELDS = ("product_id", "category", "quantity", "amount")


def unix_seconds(value: float | int | str | datetime) -> float:
    """Unix seconds from a number, an ISO 8601 string or a datetime (naive: UTC)."""
    if isinstance(value, bool):
        raise ValueError(f"timestamp {value!r}: expected Unix seconds or an ISO 8601 date/time")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"timestamp {value!r}: expected Unix seconds or an ISO 8601 date/time such as "
                             "2026-11-30T09:15:00Z") from None
    if isinstance(value, datetime):
        return (value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value).timestamp()
    raise ValueError(f"timestamp {value!r}: expected Unix seconds or an ISO 8601 date/time")


def event_line(line: LineLike) -> events_pb2.EventLine:
    """An EventLine from itself, a mapping (product_id, category, quantity, amount) or a tuple in that order
    (quantity defaults to 1, category to the catalogue's)."""
    if isinstance(line, events_pb2.EventLine):
        return line
    if isinstance(line, Mapping):
        unknown = set(line) - set(_LINE_FIELDS)
        if unknown:
            raise ValueError(f"line fields {sorted(unknown)}: expected only {', '.join(_LINE_FIELDS)}")
        fields = dict(line)
    elif isinstance(line, Sequence) and not isinstance(line, (str, bytes)):
        if not 2 <= len(line) <= 4:
            raise ValueError(f"line {line!r}: expected (product_id, category, quantity, amount)")
        fields = dict(zip(_LINE_FIELDS, line)) if len(line) == 4 else {"product_id": line[0], "amount": line[-1]}
    else:
        raise ValueError(f"line {line!r}: expected a mapping or a (product_id, category, quantity, amount) tuple")
    if not fields.get("product_id"):
        raise ValueError("a line needs a product_id")
    if "amount" not in fields:
        raise ValueError(f"line of {fields['product_id']}: amount is missing")
    try:
        quantity, amount = float(fields.get("quantity", 1) or 0), float(fields["amount"])
    except (TypeError, ValueError):
        raise ValueError(f"line of {fields['product_id']}: quantity and amount must be numbers") from None
    return events_pb2.EventLine(product_id=str(fields["product_id"]), category=str(fields.get("category") or ""),
                                quantity=quantity, amount=amount)


def order_event(event_id: str, customer_id: str, timestamp: float | str | datetime, lines: Iterable[LineLike], *,
                order_id: str = "", channel: str = "") -> events_pb2.Event:
    """A placed order: lines as EventLines, mappings or (product_id, category, quantity, amount) tuples."""
    return events_pb2.Event(event_id=event_id, customer_id=customer_id, timestamp=unix_seconds(timestamp),
                            order=events_pb2.OrderEvent(order_id=order_id, channel=channel,
                                                        lines=[event_line(x) for x in lines]))


def return_event(event_id: str, customer_id: str, timestamp: float | str | datetime, lines: Iterable[LineLike], *,
                 order_id: str = "") -> events_pb2.Event:
    """Returned lines (amount: the refunded value, positive or negative)."""
    return events_pb2.Event(event_id=event_id, customer_id=customer_id, timestamp=unix_seconds(timestamp),
                            return_lines=events_pb2.ReturnEvent(order_id=order_id,
                                                                lines=[event_line(x) for x in lines]))


def feedback_event(event_id: str, customer_id: str, timestamp: float | str | datetime, product_id: str,
                   kind: str, *, position: int = 0, request_id: str = "") -> events_pb2.Event:
    """Recommendation feedback (kind 'impression', 'click' or 'purchase'); only the recommendation service
    records it (the others report it REJECTED)."""
    if kind not in FEEDBACK_KINDS:
        raise ValueError(f"feedback kind {kind!r}: expected one of {', '.join(FEEDBACK_KINDS)}")
    t = unix_seconds(timestamp)
    return events_pb2.Event(event_id=event_id, customer_id=customer_id, timestamp=t,
                            feedback=recommendation_pb2.FeedbackEvent(
                                customer_id=customer_id, product_id=product_id, kind=FEEDBACK_KINDS[kind],
                                position=int(position), request_id=request_id, timestamp=t))


_COMMON = {"event_id", "customer_id", "timestamp", "kind"}
_ALLOWED = {"order": _COMMON | {"order_id", "channel", "lines"}, "return": _COMMON | {"order_id", "lines"},
            "feedback": _COMMON | {"product_id", "feedback_kind", "position", "request_id"}}


def event_from_dict(obj: Mapping[str, Any]) -> events_pb2.Event:
    """One event of the JSON-lines format (module docstring); ValueError saying what is wrong. Unknown fields
    are refused (a misspelt field would otherwise be dropped silently); the server checks the rest."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    unknown = set(obj) - _ALLOWED[kind]
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))} for a {kind} event; expected "
                         + ", ".join(sorted(_ALLOWED[kind])))
    for name in ("event_id", "customer_id", "timestamp"):
        if obj.get(name) in (None, ""):
            raise ValueError(f"{name} is missing")
    event_id, customer_id, timestamp = str(obj["event_id"]), str(obj["customer_id"]), obj["timestamp"]
    if kind == "feedback":
        return feedback_event(event_id, customer_id, timestamp, str(obj.get("product_id") or ""),
                              str(obj.get("feedback_kind") or ""), position=int(obj.get("position") or 0),
                              request_id=str(obj.get("request_id") or ""))
    lines = obj.get("lines")
    if not isinstance(lines, list) or not lines:
        raise ValueError(f"lines: expected a non-empty list of {{{', '.join(_LINE_FIELDS)}}} objects")
    for i, line in enumerate(lines):
        if not isinstance(line, Mapping):
            raise ValueError(f"lines[{i}]: expected an object with {', '.join(_LINE_FIELDS)}")
    if kind == "order":
        return order_event(event_id, customer_id, timestamp, lines, order_id=str(obj.get("order_id") or ""),
                           channel=str(obj.get("channel") or ""))
    return return_event(event_id, customer_id, timestamp, lines, order_id=str(obj.get("order_id") or ""))


def read_jsonl(lines: Iterable[str]) -> Iterator[tuple[int, events_pb2.Event | str]]:
    """(line number, event or what is wrong with the line) per non-blank line of the JSON-lines format."""
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            yield number, event_from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            yield number, f"not JSON: {exc.msg} at column {exc.colno}"
        except (ValueError, TypeError, OverflowError) as exc:
            yield number, str(exc)


def to_event(event: EventLike) -> events_pb2.Event:
    return event if isinstance(event, events_pb2.Event) else event_from_dict(event)


def merge(total: events_pb2.IngestEventsResponse, part: events_pb2.IngestEventsResponse, offset: int) -> None:
    """Add one batch's summary to a running total (in place); the batch's indexes shift by offset. customers_changed
    becomes a sum over the batches (a customer changed by two batches counts twice), as in a stream's summary."""
    for name in ("received", "applied", "duplicates", "before_snapshot", "rejected", "customers_changed"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    for r in part.results:
        total.results.add().CopyFrom(r)
        total.results[-1].index = r.index + offset


def chunks(events: Iterable[EventLike], batch_events: int) -> Iterator[list[events_pb2.Event]]:
    if not 1 <= batch_events <= MAX_BATCH_EVENTS:
        raise ValueError(f"batch_events={batch_events}: expected 1 to {MAX_BATCH_EVENTS:,}")
    batch: list[events_pb2.Event] = []
    for e in events:
        batch.append(to_event(e))
        if len(batch) == batch_events:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest_events(events: Iterable[EventLike], batch_events: int = DEFAULT_BATCH_EVENTS,
                  stream: bool = False) -> Flow[events_pb2.IngestEventsResponse]:
    """IngestEvents per batch of batch_events (one summary for all; indexes count from the first event), or one
    StreamIngestEvents call carrying every batch (stream=True; events are read lazily as they are sent, so a
    malformed mapping fails the whole call instead of raising ValueError before it)."""
    if stream:
        requests = (events_pb2.IngestEventsRequest(events=b) for b in chunks(events, batch_events))
        return (yield Call("StreamIngestEvents", requests, bulk=True, events=True))
    total = events_pb2.IngestEventsResponse()
    for batch in chunks(events, batch_events):
        part = yield Call("IngestEvents", events_pb2.IngestEventsRequest(events=batch), bulk=True, events=True)
        merge(total, part, offset=total.received)
    return total

