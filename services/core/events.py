"""EventService (all three services): events in, the online feature store updated (tenure.online).

One OnlineHub per service instance holds the online features of the loaded snapshot: the engine that
loads a snapshot (Scorer, Recommender, Segmenter) attaches it, and keeps the same store across model
reloads of the same snapshot version (the embedded store's state survives a churn model update); a new
snapshot version opens a new namespace. TENURE_ONLINE_STORE=off serves the snapshot only.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterator

import grpc

from tenure.errors import FeatureOff, ModelUnavailable, StoreUnavailable, TooLarge
from tenure.online import MAX_EVENTS, Changes, Event, IngestSummary, Line, OnlineFeatures
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot
from tenure.v1 import common_pb2, events_pb2, events_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = "tenure.v1.EventService"
KEEP_VERSIONS = 2
"""Snapshot versions whose online features a hub keeps (the serving one and the one before, for a swap)."""
_OUTCOME = {"duplicate": events_pb2.EVENT_DUPLICATE, "rejected": events_pb2.EVENT_REJECTED,
            "before_snapshot": events_pb2.EVENT_BEFORE_SNAPSHOT}


class OnlineHub:
    """The online features of a service instance's snapshot (None when settings.online_store is "off")."""

    def __init__(self, settings: ServiceSettings,
                 feedback: Callable[[list[Event]], list[str | None]] | None = None) -> None:
        self.url = settings.online_store
        self.off = self.url == "off"
        self.retention_s = settings.event_retention_s
        self.max_new_customers = settings.online_max_new_customers
        self.feedback = feedback
        self._lock = threading.Lock()
        self._by_version: dict[str, OnlineFeatures] = {}
        self._listeners: list[Callable[[OnlineFeatures, Changes], None]] = []
        self.current: OnlineFeatures | None = None
        if not self.off and self.url in ("", "embedded") and settings.workers != 1:
            log.warning("TENURE_WORKERS=%s with the embedded online store: each worker process keeps its own, so an "
                        "event changes only the worker that ingested it; share one with TENURE_ONLINE_STORE=redis://...",
                        settings.workers)

    def attach(self, snapshot: FeatureSnapshot) -> OnlineFeatures | None:
        """The online features of `snapshot` (opened once per snapshot version, then shared); becomes current."""
        if self.off:
            return None
        with self._lock:
            online = self._by_version.get(snapshot.version)
            if online is None:
                online = OnlineFeatures.open(snapshot, snapshot.version_dir, self.url, self.retention_s, self.feedback,
                                             self.max_new_customers)
                for listener in self._listeners:
                    self._subscribe(online, listener)
                self._by_version[snapshot.version] = online
                for old in list(self._by_version)[:-KEEP_VERSIONS]:
                    self._by_version.pop(old).close()
            self.current = online
            return online

    @staticmethod
    def _subscribe(online: OnlineFeatures, listener: Callable[[OnlineFeatures, Changes], None]) -> None:
        online.store.subscribe(lambda changes: listener(online, changes))

    def listen(self, listener: Callable[[OnlineFeatures, Changes], None]) -> None:
        """listener(online features, [(customer, event id)]) after each applied batch, on every snapshot version's
        store (with Redis: batches any replica or service applied)."""
        with self._lock:
            self._listeners.append(listener)
            for online in self._by_version.values():
                self._subscribe(online, listener)

    def require(self) -> OnlineFeatures:
        if self.off:
            raise FeatureOff("events are off on this server (TENURE_ONLINE_STORE=off): answers come from the "
                             "snapshot only; set online_store to empty (embedded) or redis://HOST:PORT")
        online = self.current
        if online is None:
            raise ModelUnavailable("no feature snapshot is loaded yet; retry when the service is SERVING")
        return online

    def close(self) -> None:
        with self._lock:
            for online in self._by_version.values():
                online.close()
            self._by_version.clear()
            self.current = None


def to_event(e: events_pb2.Event) -> Event:
    kind = e.WhichOneof("kind")
    if kind == "order":
        return Event(e.event_id, e.customer_id, e.timestamp, "order", _lines(e.order.lines), e.order.channel,
                     e.order.order_id)
    if kind == "return_lines":
        return Event(e.event_id, e.customer_id, e.timestamp, "return", _lines(e.return_lines.lines), "",
                     e.return_lines.order_id)
    if kind == "feedback":
        return Event(e.event_id, e.customer_id or e.feedback.customer_id, e.timestamp or e.feedback.timestamp,
                     "feedback", payload=e.feedback)
    return Event(e.event_id, e.customer_id, e.timestamp, "")


def _lines(lines: Any) -> list[Line]:
    return [Line(x.product_id, x.category, x.quantity, x.amount) for x in lines]


def to_response(summary: IngestSummary) -> events_pb2.IngestEventsResponse:
    return events_pb2.IngestEventsResponse(
        received=summary.received, applied=summary.applied, duplicates=summary.duplicates,
        before_snapshot=summary.before_snapshot, rejected=summary.rejected, customers_changed=len(summary.changed),
        results=[events_pb2.EventResult(index=o.index, event_id=o.event_id[:256], outcome=_OUTCOME[o.outcome],
                                        error=common_pb2.RowError(code=grpc.StatusCode[o.code].value[0],
                                                                  message=o.error[:1000]) if o.error else None)
                 for o in summary.outcomes])


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, hub: OnlineHub) -> None:
        self.hub = hub

    def _ingest(self, request: events_pb2.IngestEventsRequest) -> IngestSummary:
        n = len(request.events)
        if n > MAX_EVENTS:
            raise TooLarge(f"{n:,} events in one call; at most {MAX_EVENTS:,} (send more calls, or a stream)")
        online = self.hub.require()
        events = [to_event(e) for e in request.events]
        try:
            return online.ingest(events)
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"the online feature store cannot be reached ({type(exc).__name__}); nothing "
                                   "of this batch was applied: retry it (event ids make a retry safe)") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("redis"):
                raise StoreUnavailable(f"the online feature store failed ({type(exc).__name__}: {str(exc)[:200]}); "
                                       "nothing of this batch was applied: retry it") from exc
            raise

    def IngestEvents(self, request: events_pb2.IngestEventsRequest,
                     context: grpc.ServicerContext) -> events_pb2.IngestEventsResponse:
        return to_response(self._ingest(request))

    def StreamIngestEvents(self, request_iterator: Iterator[events_pb2.IngestEventsRequest],
                           context: grpc.ServicerContext) -> events_pb2.IngestEventsResponse:
        total = IngestSummary()
        for request in request_iterator:
            total.add(self._ingest(request), offset=total.received)
        return to_response(total)
