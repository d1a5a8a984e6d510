"""GetSegments, the 360-degree view and StreamSegmentChanges follow events at once (the online feature store).

Real servers (own server per test: events do not leak into the session's), generated stubs, a real redis-server.
Expected segments are computed in-process from the same event applied to a fresh embedded store: RFM bands with
tenure.segments.percentile_scores against the base, the lifecycle rules with the base's median gap, the clusters
and grid models on the row.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import numpy as np
import pytest

from services.core.predictions import bands
from services.core.runtime import column_index
from services.segmentation.engine import STAGE_NAMES, Segmenter
from tenure.online import Event, Line, OnlineFeatures
from tenure.segments import lifecycle_stage, percentile_scores, rfm_segment
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot
from tenure.v1 import events_pb2, events_pb2_grpc
from tenure.v1 import segmentation_pb2 as spb
from tenure.v1 import segmentation_pb2_grpc as sgrpc

FAMILY = {spb.SEGMENT_FAMILY_RFM: "rfm", spb.SEGMENT_FAMILY_LIFECYCLE: "lifecycle",
          spb.SEGMENT_FAMILY_CLUSTER: "cluster", spb.SEGMENT_FAMILY_GRID: "grid"}
BAND = {0: "unknown", 1: "low", 2: "medium", 3: "high"}


@pytest.fixture(scope="module")
def segmenter(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Segmenter:
    """The re-scoring in-process (no log): the base the expectations are computed against."""
    return Segmenter.load(trained_repo, ServiceSettings(models_dir=trained_repo,
                                                        state_dir=tmp_path_factory.mktemp("seg-state")))


def order(eid: str, cid: str, at: float, snapshot: FeatureSnapshot, amount: float = 20.0) -> events_pb2.Event:
    pid = str(snapshot.catalog.product_ids[0])
    return events_pb2.Event(event_id=eid, customer_id=cid, timestamp=at, order=events_pb2.OrderEvent(
        order_id="o-" + eid, channel="web", lines=[events_pb2.EventLine(
            product_id=pid, category=str(snapshot.catalog.categories[0]), quantity=1, amount=amount)]))


def online_row(snapshot: FeatureSnapshot, event: events_pb2.Event) -> np.ndarray:
    """The customer's row after the event, from a fresh embedded store in this process."""
    online = OnlineFeatures.open(snapshot, snapshot.version_dir, "", 3600.0)
    line = event.order.lines[0]
    summary = online.ingest([Event(event.event_id, event.customer_id, event.timestamp, "order",
                                   [Line(line.product_id, line.category, line.quantity, line.amount)],
                                   event.order.channel, event.order.order_id)])
    assert summary.applied == 1
    row = online.vector(event.customer_id)
    assert row is not None
    return row


def expected(seg: Segmenter, x: np.ndarray) -> dict[str, Any]:
    """The segments of feature row x against the re-scoring's base, from the definitions."""
    names, X = seg.snapshot.feature_names, seg.snapshot.X
    c = {n: i for i, n in enumerate(names)}
    one = x.reshape(1, -1)
    r = percentile_scores(X[:, c["recency_days"]], one[:, c["recency_days"]], higher_is_better=False)
    f = percentile_scores(X[:, c["orders_total"]], one[:, c["orders_total"]])
    m = percentile_scores(X[:, c["spend_total"]], one[:, c["spend_total"]])
    gaps = X[:, c["gap_mean_days"]][X[:, c["gap_mean_days"]] > 0]
    stage = int(lifecycle_stage(one[:, c["recency_days"]], one[:, c["tenure_days"]], one[:, c["gap_mean_days"]],
                                float(np.median(gaps)))[0])
    assert seg.clusters is not None and seg.grid_churn is not None  # the small shop trains every model
    cluster = int(seg.clusters.predict(np.ascontiguousarray(one[:, column_index(names, seg.clusters.features,
                                                                                   "clusters")]))[0])
    s = seg.settings
    churn = int(bands(seg.predictor.score("churn", one), s.churn_band_medium, s.churn_band_high)[0])
    purchase = int(bands(np.asarray(seg.predictor.score("purchase_30d", one), np.float32), s.purchase_band_medium,
                         s.purchase_band_high)[0])
    segment = str(rfm_segment(r, f, m)[0])
    return {"rfm": (int(r[0]), int(f[0]), int(m[0])), "rfm_segment": segment, "stage": stage, "cluster": cluster,
            "grid": (churn, purchase),
            "names": {"rfm": segment, "lifecycle": STAGE_NAMES[stage], "cluster": str(seg.cluster_names[cluster]),
                      "grid": f"{BAND[churn]} churn / {BAND[purchase]} purchase"}}


def got(segments: spb.Segments) -> dict[str, Any]:
    return {"rfm": (segments.rfm.recency, segments.rfm.frequency, segments.rfm.monetary),
            "rfm_segment": segments.rfm_segment, "stage": int(segments.lifecycle_stage),
            "cluster": segments.cluster.id, "grid": (int(segments.grid.churn), int(segments.grid.purchase))}


def snapshot_names(seg: Segmenter, cid: str) -> dict[str, str]:
    row = int(seg.snapshot.rows([cid])[0])
    return {"rfm": str(seg.segment[row]), "lifecycle": STAGE_NAMES[int(seg.stage[row])],
            "cluster": str(seg.cluster_names[seg.cluster[row]]) if seg.cluster is not None else "",
            "grid": str(seg.grid_names()[row])}


def lapsed(seg: Segmenter, n: int) -> list[str]:
    """Customers whose RFM segment and lifecycle stage an order today must change: lapsed or lost, recency score
    1 (an order makes them the most recent customers of the base)."""
    rows = np.flatnonzero((seg.stage >= 4) & (seg.r == 1))
    assert len(rows) >= n
    return [str(seg.snapshot.customer_ids[i]) for i in rows[:n]]


class Follower:
    """A StreamSegmentChanges(follow=True) subscription read on a thread into a queue."""

    def __init__(self, stub: sgrpc.SegmentationServiceStub) -> None:
        self.call = stub.StreamSegmentChanges(spb.SegmentChangesRequest(follow=True))
        self.got: queue.Queue[spb.SegmentChange] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for m in self.call:
                self.got.put(m)
        except grpc.RpcError as err:  # cancelled at the end of the test
            assert err.code() == grpc.StatusCode.CANCELLED

    def take(self, n: int) -> list[spb.SegmentChange]:
        return [self.got.get(timeout=120) for _ in range(n)]


@pytest.fixture
def follower() -> Iterator[Callable[[sgrpc.SegmentationServiceStub], Follower]]:
    made: list[Follower] = []

    def make(stub: sgrpc.SegmentationServiceStub) -> Follower:
        made.append(f := Follower(stub))
        return f

    yield make
    for f in made:
        f.call.cancel()


def check_moves(moves: list[spb.SegmentChange], cid: str, event_id: str, before: dict[str, str],
                after: dict[str, str]) -> None:
    """Exactly the families whose segment differs, each from its old segment to its new one, with the event id."""
    changed = {fam for fam in after if after[fam] != before.get(fam, "")}
    assert changed, "the chosen event must move the customer"
    assert {FAMILY[m.family] for m in moves} == changed and len(moves) == len(changed)
    for m in moves:
        fam = FAMILY[m.family]
        assert (m.customer_id, m.event_id, m.rescoring_id) == (cid, event_id, 0)
        assert (m.from_segment, m.to_segment) == (before.get(fam, ""), after[fam])
    seqs = [m.sequence for m in moves]
    assert seqs == sorted(seqs)


def test_segment_rows_of_the_base_equal_the_rescoring(segmenter: Segmenter) -> None:
    """The online path (searchsorted bands, the models on rows) gives a base member its re-scoring segments."""
    rows = segmenter.segment_rows(segmenter.snapshot.X)
    for name in ("r", "f", "m", "segment", "stage", "cluster", "grid_churn", "grid_purchase"):
        assert np.array_equal(getattr(rows, name), getattr(segmenter, name)), name


def test_an_order_moves_a_lapsed_customer_at_once(trained_repo: Path, segmenter: Segmenter, serve: Any,
                                                  follower: Any, closed_port: int) -> None:
    snapshot = segmenter.snapshot
    channel = serve("segmentation", trained_repo, recommendation_target=f"127.0.0.1:{closed_port}")
    stub, events = sgrpc.SegmentationServiceStub(channel), events_pb2_grpc.EventServiceStub(channel)
    a, b = lapsed(segmenter, 2)
    stream = follower(stub)
    at = snapshot.cutoff.timestamp() + 3600
    e1 = order("seg-e1", a, at, snapshot)
    want = expected(segmenter, online_row(snapshot, e1))
    before = got(stub.GetSegments(spb.GetSegmentsRequest(customer_ids=[a])).results[0].segments)
    assert before["stage"] >= 4 and before["rfm"][0] == 1

    reply = events.IngestEvents(events_pb2.IngestEventsRequest(events=[e1]))
    assert (reply.applied, reply.customers_changed) == (1, 1)
    now = stub.GetSegments(spb.GetSegmentsRequest(customer_ids=[a, b])).results
    assert got(now[0].segments) == {k: v for k, v in want.items() if k != "names"}  # at once
    assert now[0].segments.rfm_segment != segmenter.segment[snapshot.rows([a])[0]]
    assert got(now[1].segments)["stage"] >= 4  # untouched customers keep the re-scoring's
    changed_a = {f for f, v in want["names"].items() if v != snapshot_names(segmenter, a)[f]}
    check_moves(stream.take(len(changed_a)), a, "seg-e1", snapshot_names(segmenter, a), want["names"])

    # A replayed event changes nothing and records nothing: the next move the stream hears is the next event's.
    assert events.IngestEvents(events_pb2.IngestEventsRequest(events=[e1])).duplicates == 1
    e2 = order("seg-e2", b, at + 60, snapshot)
    want_b = expected(segmenter, online_row(snapshot, e2))
    events.IngestEvents(events_pb2.IngestEventsRequest(events=[e2]))
    changed_b = {f for f, v in want_b["names"].items() if v != snapshot_names(segmenter, b)[f]}
    check_moves(stream.take(len(changed_b)), b, "seg-e2", snapshot_names(segmenter, b), want_b["names"])

    # A customer the snapshot does not hold: segments (not NOT_FOUND) and a 360 view from the online row, and
    # their first segments are moves from nothing.
    e3 = order("seg-e3", "brand-new-customer", at + 120, snapshot, amount=55.0)
    row = online_row(snapshot, e3)
    want_new = expected(segmenter, row)
    events.IngestEvents(events_pb2.IngestEventsRequest(events=[e3]))
    res = stub.GetSegments(spb.GetSegmentsRequest(customer_ids=["brand-new-customer"])).results[0]
    assert not res.HasField("error") and got(res.segments) == {k: v for k, v in want_new.items() if k != "names"}
    check_moves(stream.take(4), "brand-new-customer", "seg-e3", {}, want_new["names"])
    view = stub.GetCustomer360(spb.Customer360Request(customer_id="brand-new-customer"))
    assert [f.value for f in view.features] == pytest.approx(row.astype(np.float64).tolist())
    assert got(view.segments) == got(res.segments) and view.predictions.HasField("churn")

    # Resuming after a sequence number: the event moves are in the one ordered log, after the (empty) re-scoring's.
    every = list(stub.StreamSegmentChanges(spb.SegmentChangesRequest()))
    assert [m.event_id for m in every] == ["seg-e1"] * len(changed_a) + ["seg-e2"] * len(changed_b) + ["seg-e3"] * 4
    assert list(stub.StreamSegmentChanges(spb.SegmentChangesRequest(after_sequence=every[1].sequence))) == every[2:]


def test_an_event_at_the_scoring_server_moves_segments_through_redis(trained_repo: Path, segmenter: Segmenter,
                                                                     serve: Any, follower: Any, closed_port: int,
                                                                     redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushall()
    snapshot = segmenter.snapshot
    channel = serve("segmentation", trained_repo, online_store=redis_url,
                    recommendation_target=f"127.0.0.1:{closed_port}")
    stub = sgrpc.SegmentationServiceStub(channel)
    topic = f"tenure:{snapshot.version}:changes"
    while not dict(client.pubsub_numsub(topic)).get(topic.encode(), 0):  # SERVING implies subscribed; confirm it
        pass
    scoring = events_pb2_grpc.EventServiceStub(serve("scoring", trained_repo, online_store=redis_url))
    a, b = lapsed(segmenter, 4)[2:]
    stream = follower(stub)
    at = snapshot.cutoff.timestamp() + 7200
    e1 = order("redis-e1", a, at, snapshot)
    want = expected(segmenter, online_row(snapshot, e1))
    assert scoring.IngestEvents(events_pb2.IngestEventsRequest(events=[e1])).applied == 1
    changed = {f for f, v in want["names"].items() if v != snapshot_names(segmenter, a)[f]}
    check_moves(stream.take(len(changed)), a, "redis-e1", snapshot_names(segmenter, a), want["names"])
    now = stub.GetSegments(spb.GetSegmentsRequest(customer_ids=[a])).results[0]
    assert got(now.segments) == {k: v for k, v in want.items() if k != "names"}

    assert scoring.IngestEvents(events_pb2.IngestEventsRequest(events=[e1])).duplicates == 1  # nothing published
    e2 = order("redis-e2", b, at + 60, snapshot)
    want_b = expected(segmenter, online_row(snapshot, e2))
    scoring.IngestEvents(events_pb2.IngestEventsRequest(events=[e2]))
    changed_b = {f for f, v in want_b["names"].items() if v != snapshot_names(segmenter, b)[f]}
    check_moves(stream.take(len(changed_b)), b, "redis-e2", snapshot_names(segmenter, b), want_b["names"])
    client.close()


def test_the_log_records_event_moves_against_the_current_assignment(tmp_path: Path) -> None:
    """In-process: the last online assignment (per snapshot version), else the re-scoring's, is what a move is
    from; the same change heard twice (two workers) is recorded once; one sequence with the re-scoring's moves."""
    from services.segmentation.changes import LIFECYCLE, RFM, SegmentLog

    log = SegmentLog(tmp_path / "segments.sqlite")
    log.record("k1", "2026-01-01", [], np.array(["a", "b"]), {RFM: np.array(["Lost", "Loyal"])})
    log.record("k2", "2026-01-01", [], np.array(["a", "b"]), {RFM: np.array(["Lost", "Champions"])})
    batch = {RFM: np.array(["Lost"]), LIFECYCLE: np.array(["lapsed"])}
    new = {RFM: np.array(["New"]), LIFECYCLE: np.array(["active"])}
    first = log.record_events("v1", ["a"], ["e1"], new, batch)
    assert [(m.family, m.from_segment, m.to_segment, m.event_id, m.rescoring_id) for m in first] == [
        (RFM, "Lost", "New", "e1", 0), (LIFECYCLE, "lapsed", "active", "e1", 0)]
    assert first[0].seq > 1  # after the re-scoring's move of b
    assert log.record_events("v1", ["a"], ["e1"], new, batch) == []  # heard again: nothing new
    back = log.record_events("v1", ["a"], ["e2"], {RFM: np.array(["Lost"]), LIFECYCLE: np.array(["active"])}, batch)
    assert [(m.from_segment, m.to_segment) for m in back] == [("New", "Lost")]
    # A new snapshot version starts from its re-scoring: the online assignments of v1 are gone.
    again = log.record_events("v2", ["a"], ["e3"], new, batch)
    assert [(m.from_segment, m.to_segment) for m in again] == [("Lost", "New"), ("lapsed", "active")]
    assert [m.seq for m in log.moves(0)] == sorted(m.seq for m in log.moves(0))
    assert [m.event_id for m in log.moves(0)] == ["", "e1", "e1", "e2", "e3", "e3"]


def test_an_older_log_gains_the_event_column(tmp_path: Path) -> None:
    from services.segmentation.changes import SegmentLog
    from tenure import sqlite

    path = tmp_path / "segments.sqlite"
    with sqlite.connect(path) as db:
        db.execute("CREATE TABLE moves (seq INTEGER PRIMARY KEY AUTOINCREMENT, rescoring_id INTEGER NOT NULL, "
                   "customer_id TEXT NOT NULL, family INTEGER NOT NULL, from_segment TEXT NOT NULL, "
                   "to_segment TEXT NOT NULL, at REAL NOT NULL)")
        db.execute("INSERT INTO moves (rescoring_id, customer_id, family, from_segment, to_segment, at) "
                   "VALUES (2, 'a', 1, 'Lost', 'New', 1.0)")
    log = SegmentLog(path)
    assert [(m.customer_id, m.rescoring_id, m.event_id) for m in log.moves(0)] == [("a", 2, "")]
