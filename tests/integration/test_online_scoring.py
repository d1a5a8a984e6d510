"""Score, Predict and StreamScore read the online feature store: an order event changes the customer's next answer
(through real servers and the generated stubs; the reference is onnxruntime on the artifact files, run in this
process on the online row an in-process OnlineFeatures computes from the same events)."""
from __future__ import annotations

import datetime as dt
import math
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from services.core.events import to_event
from tenure.artifacts import latest_valid
from tenure.online import OnlineFeatures
from tenure.store import FeatureSnapshot
from tenure.v1 import common_pb2, events_pb2, events_pb2_grpc, scoring_pb2, scoring_pb2_grpc

DAY = 86_400.0


class Reference:
    """The in-process models: onnxruntime on the churn and lookalike artifact files."""

    def __init__(self, repo: Path, snapshot: FeatureSnapshot) -> None:
        self.sessions = {}
        self.cols = {}
        for name in ("churn", "lookalike"):
            vdir, manifest = latest_valid(repo, name)
            self.sessions[name] = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
            self.cols[name] = [snapshot.feature_names.index(f) for f in manifest.features]

    def __call__(self, row: np.ndarray) -> tuple[float, float]:
        X = np.asarray(row, np.float32).reshape(1, -1)
        out = [float(self.sessions[n].run(["probabilities"], {"features": X[:, self.cols[n]]})[0][0, 1])
               for n in ("churn", "lookalike")]
        return out[0], out[1]


@pytest.fixture(scope="module")
def reference(trained_repo: Path, snapshot: FeatureSnapshot) -> Reference:
    return Reference(trained_repo, snapshot)


def order(event_id: str, cid: str, ts: float, pid: str, amount: float = 25.0, channel: str = "web") -> events_pb2.Event:
    return events_pb2.Event(event_id=event_id, customer_id=cid, timestamp=ts, order=events_pb2.OrderEvent(
        order_id="o-" + event_id, channel=channel,
        lines=[events_pb2.EventLine(product_id=pid, category="", quantity=1, amount=amount)]))


def ingest(stub: events_pb2_grpc.EventServiceStub, *events: events_pb2.Event) -> events_pb2.IngestEventsResponse:
    return stub.IngestEvents(events_pb2.IngestEventsRequest(events=list(events)))


def score(stub: scoring_pb2_grpc.ScoringServiceStub, *ids: str) -> list[scoring_pb2.CustomerScore]:
    resp = stub.Score(scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=i) for i in ids]))
    return list(resp.results)


def pair(r: scoring_pb2.CustomerScore) -> tuple[float, float]:
    assert not r.HasField("error"), r.error.message
    return r.scores.churn_probability, r.scores.lookalike_score


def stubs(ch: grpc.Channel) -> tuple[scoring_pb2_grpc.ScoringServiceStub, events_pb2_grpc.EventServiceStub]:
    return scoring_pb2_grpc.ScoringServiceStub(ch), events_pb2_grpc.EventServiceStub(ch)


def product(snapshot: FeatureSnapshot) -> str:
    return str(next(iter(snapshot.catalog.index)))


def test_an_order_changes_the_next_score_and_predict_embedded(serve, trained_repo, snapshot, reference) -> None:  # type: ignore[no-untyped-def]
    scoring, events = stubs(serve("scoring", trained_repo))
    cutoff, pid = snapshot.cutoff.timestamp(), product(snapshot)
    i, j = 7, 8
    cid, other = str(snapshot.customer_ids[i]), str(snapshot.customer_ids[j])
    before = pair(score(scoring, cid)[0])
    assert before == pytest.approx(reference(snapshot.X[i]), abs=1e-6)

    ev = order("a-1", cid, cutoff + 3 * DAY, pid, 25.0)
    resp = ingest(events, ev)
    assert (resp.applied, resp.customers_changed, resp.rejected) == (1, 1, 0)
    # the same event through the online features of this process: the row the server must now score
    online = OnlineFeatures.open(snapshot, snapshot.version_dir, "", 3600)
    try:
        online.ingest([to_event(ev)])
        found = online.entry(cid)
    finally:
        online.close()
    assert found is not None
    row, as_of, _ = found
    recency = snapshot.feature_names.index("recency_days")
    assert snapshot.X[i, recency] > 1.0 and row[recency] == pytest.approx(1 / DAY)  # 1 s after the order
    after = pair(score(scoring, cid)[0])
    assert after != before
    assert after == pytest.approx(reference(row), abs=1e-6)

    # a batch call: one store read, the online row over the snapshot's, the other customer as before
    both = score(scoring, other, cid)
    assert pair(both[0]) == pytest.approx(reference(snapshot.X[j]), abs=1e-6)
    assert pair(both[1]) == pytest.approx(after, abs=1e-6)
    # a StreamScore chunk too
    [chunk] = list(scoring.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=1, customer_ids=[other, cid])])))
    churn = np.frombuffer(chunk.churn_probability, np.float32)
    assert churn.tolist() == pytest.approx([both[0].scores.churn_probability, after[0]], abs=1e-6)

    # Predict: the same online row for the predictions, the reasons' values and the historic value
    [p] = scoring.Predict(scoring_pb2.PredictRequest(customer_ids=[cid], reasons=3)).results
    assert not p.HasField("error"), p.error.message
    assert p.predictions.churn.probability == pytest.approx(after[0], abs=1e-6)
    names = snapshot.feature_names
    for reason in p.predictions.churn.reasons:
        assert reason.value == pytest.approx(float(row[names.index(reason.feature)]), rel=1e-6)
    assert p.predictions.clv.historic == pytest.approx(float(row[names.index("spend_total")]), rel=1e-6)
    purchase = p.predictions.purchase
    if purchase.HasField("next_purchase_date"):  # dated from the time the online row is as of
        expected = dt.datetime.fromtimestamp(as_of + purchase.expected_days_to_next * DAY, dt.timezone.utc).date()
        assert abs((dt.date.fromisoformat(purchase.next_purchase_date) - expected).days) <= 1


def test_replicas_sharing_redis_see_each_others_events(serve, trained_repo, snapshot, reference, redis_url) -> None:  # type: ignore[no-untyped-def]
    a_scoring, a_events = stubs(serve("scoring", trained_repo, online_store=redis_url))
    b_scoring, b_events = stubs(serve("scoring", trained_repo, online_store=redis_url))
    tag = uuid.uuid4().hex[:10]
    cutoff, pid = snapshot.cutoff.timestamp(), product(snapshot)
    k = len(snapshot.customer_ids) - 11  # customers the other tests leave alone
    cid = str(snapshot.customer_ids[k])
    online = OnlineFeatures.open(snapshot, snapshot.version_dir, redis_url, 3600)  # reads the servers' Redis
    try:
        before = pair(score(b_scoring, cid)[0])
        ev = order(f"{tag}-1", cid, cutoff + 40 * DAY, pid, 30.0)
        assert ingest(a_events, ev).applied == 1
        after = pair(score(b_scoring, cid)[0])  # the other replica: the ingest had committed when it returned
        row = online.vector(cid)
        assert row is not None and after != before
        assert after == pytest.approx(reference(row), abs=1e-6)

        replay = ingest(b_events, ev)  # the same event id again, on the other replica
        assert (replay.applied, replay.duplicates) == (0, 1)
        assert [r.outcome for r in replay.results] == [events_pb2.EVENT_DUPLICATE]
        assert pair(score(a_scoring, cid)[0]) == after
        np.testing.assert_array_equal(online.vector(cid), row)

        new = f"new-{tag}"  # a customer the snapshot does not hold: NOT_FOUND until their first order
        [unknown] = score(b_scoring, new)
        assert unknown.HasField("error") and unknown.error.code == grpc.StatusCode.NOT_FOUND.value[0]
        assert ingest(a_events, order(f"{tag}-2", new, cutoff + 41 * DAY, pid, 12.0)).applied == 1
        first = pair(score(b_scoring, new)[0])
        new_row = online.vector(new)
        assert new_row is not None and first == pytest.approx(reference(new_row), abs=1e-6)
        [p] = b_scoring.Predict(scoring_pb2.PredictRequest(customer_ids=[new])).results
        assert not p.HasField("error") and p.predictions.churn.probability == pytest.approx(first[0], abs=1e-6)
    finally:
        online.close()


def test_bad_events_are_rejected_alone_and_limits_hold(serve, trained_repo, snapshot, reference) -> None:  # type: ignore[no-untyped-def]
    scoring, events = stubs(serve("scoring", trained_repo))
    cutoff, pid = snapshot.cutoff.timestamp(), product(snapshot)
    c1, c2 = str(snapshot.customer_ids[20]), str(snapshot.customer_ids[21])
    nan = order("b-nan", c2, cutoff + 2 * DAY, pid, math.nan)
    batch = [order("b-1", c1, cutoff + 5 * DAY, pid), order("", c1, cutoff + 6 * DAY, pid), nan,
             order("b-2", c2, cutoff + 3 * DAY, pid), order("b-old", c1, cutoff + 4 * DAY, pid),
             order("b-before", c2, cutoff - DAY, pid)]
    resp = ingest(events, *batch)
    assert (resp.received, resp.applied, resp.rejected, resp.before_snapshot) == (6, 2, 3, 1)
    got = {r.index: r for r in resp.results}
    assert sorted(got) == [1, 2, 4, 5]
    assert "event_id is empty" in got[1].error.message
    assert "amount=nan" in got[2].error.message
    assert "older than the customer's latest applied event" in got[4].error.message
    assert all(got[i].outcome == events_pb2.EVENT_REJECTED and got[i].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
               for i in (1, 2, 4))
    assert got[5].outcome == events_pb2.EVENT_BEFORE_SNAPSHOT
    online = OnlineFeatures.open(snapshot, snapshot.version_dir, "", 3600)
    try:
        online.ingest([to_event(batch[0]), to_event(batch[3])])  # the two the server applied
        for cid in (c1, c2):
            assert pair(score(scoring, cid)[0]) == pytest.approx(reference(online.vector(cid)), abs=1e-6)
    finally:
        online.close()

    # a stream of requests: indices count across the stream
    streamed = events.StreamIngestEvents(iter([
        events_pb2.IngestEventsRequest(events=[order("s-1", c1, cutoff + 7 * DAY, pid)]),
        events_pb2.IngestEventsRequest(events=[order("s-2", c2, cutoff + 7 * DAY, pid), order("s-1", c1, cutoff + 7 * DAY, pid)]),
    ]))
    assert (streamed.received, streamed.applied, streamed.duplicates) == (3, 2, 1)
    assert [(r.index, r.outcome) for r in streamed.results] == [(2, events_pb2.EVENT_DUPLICATE)]

    too_many = [order(f"x-{n}", c1, cutoff + 8 * DAY, pid) for n in range(10_001)]
    with pytest.raises(grpc.RpcError) as err:
        ingest(events, *too_many)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "10,000" in (err.value.details() or "")


def test_the_embedded_store_holds_a_bounded_number_of_new_customers(serve, trained_repo, snapshot) -> None:  # type: ignore[no-untyped-def]
    """Events for customers the snapshot lacks create them, up to online_max_new_customers; past it each such event
    is REJECTED alone (RESOURCE_EXHAUSTED) while known and already-created customers still apply."""
    scoring, events = stubs(serve("scoring", trained_repo, online_max_new_customers=3))
    cutoff, pid = snapshot.cutoff.timestamp(), product(snapshot)
    known = str(snapshot.customer_ids[30])
    new = [f"NEW-{n}" for n in range(5)]
    resp = ingest(events, *[order(f"n-{c}", c, cutoff + DAY, pid) for c in new], order("n-known", known, cutoff + DAY, pid))
    assert (resp.received, resp.applied, resp.rejected) == (6, 4, 2)
    assert [(r.index, r.outcome, r.error.code) for r in resp.results] == [
        (i, events_pb2.EVENT_REJECTED, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]) for i in (3, 4)]
    assert "already holds 3 customers the snapshot does not know" in resp.results[0].error.message
    again = ingest(events, order("n-again", new[0], cutoff + 2 * DAY, pid), order("n-more", "NEW-9", cutoff + DAY, pid))
    assert (again.applied, again.rejected) == (1, 1)  # a created customer takes more events; a fourth new one not
    results = score(scoring, new[0], new[4])
    assert not results[0].HasField("error") and 0.0 <= results[0].scores.churn_probability <= 1.0
    assert results[1].error.code == grpc.StatusCode.NOT_FOUND.value[0]


def test_online_store_off_refuses_events_and_scores_the_snapshot(serve, trained_repo, snapshot, reference) -> None:  # type: ignore[no-untyped-def]
    scoring, events = stubs(serve("scoring", trained_repo, online_store="off"))
    cid = str(snapshot.customer_ids[30])
    with pytest.raises(grpc.RpcError) as err:
        ingest(events, order("off-1", cid, snapshot.cutoff.timestamp() + DAY, product(snapshot)))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "TENURE_ONLINE_STORE=off" in (err.value.details() or "")
    assert pair(score(scoring, cid)[0]) == pytest.approx(reference(snapshot.X[30]), abs=1e-6)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of this test alone (the test stops it)."""
    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen([exe, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    url = f"unix://{sock}"
    client = redis.Redis.from_url(url)
    try:
        while True:
            assert proc.poll() is None, f"redis-server exited with {proc.returncode}"
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.02)  # the server starting (not an event of the system under test)
        yield url, proc
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_redis_down_is_unavailable_not_stale_answers(serve, trained_repo, snapshot, own_redis: tuple[str, Any]) -> None:  # type: ignore[no-untyped-def]
    url, proc = own_redis
    scoring, _ = stubs(serve("scoring", trained_repo, online_store=url))
    cid = str(snapshot.customer_ids[40])
    pair(score(scoring, cid)[0])
    proc.kill()
    proc.wait()
    for call in (lambda: score(scoring, cid), lambda: score(scoring, cid, str(snapshot.customer_ids[41])),
                 lambda: scoring.Predict(scoring_pb2.PredictRequest(customer_ids=[cid]))):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "online feature store cannot be reached" in (err.value.details() or "")
