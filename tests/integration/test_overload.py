"""Overload, malformed bytes, deadlines and cancellation, through real servers on port 0.

Latency under a flood is a benchmark, not a test: these tests check the mechanisms. Calls are held
in flight with the servers' test hooks (services.core.handlers.CallLimiter.hook, WORK.hook), which
block a real handler thread the way a long computation would; nothing is mocked.
"""
from __future__ import annotations

import queue
import random
import threading
import time
from typing import Any, Callable, Iterator

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core import handlers
from services.scoring.__main__ import make_service as make_scoring
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot
from tenure.v1 import common_pb2, inference_pb2, inference_pb2_grpc, recommendation_pb2, scoring_pb2, scoring_pb2_grpc
from tenure.v1 import segmentation_pb2 as spb

SAFETY_S = 60.0
"""Only a safety net: every wait below ends on the event it waits for."""


@pytest.fixture(scope="module")
def ids(snapshot: FeatureSnapshot) -> list[str]:
    return [str(c) for c in snapshot.customer_ids]


def wait_for(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + SAFETY_S
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


def by_id(*customer_ids: str) -> scoring_pb2.ScoreRequest:
    return scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=i) for i in customer_ids])


def code_of(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


class HeldStream:
    """A StreamScore call kept open (after one answered chunk) from a feed the test controls."""

    def __init__(self, stub: scoring_pb2_grpc.ScoringServiceStub, customer_ids: list[str], chunk_id: int) -> None:
        self.feed: queue.Queue[scoring_pb2.ScoreChunk | None] = queue.Queue()
        self.call = stub.StreamScore(iter(self.feed.get, None), timeout=SAFETY_S * 2)
        self.feed.put(scoring_pb2.ScoreChunk(chunk_id=chunk_id, customer_ids=customer_ids))
        assert next(self.call).chunk_id == chunk_id

    def close(self) -> None:
        self.feed.put(None)
        assert list(self.call) == []


# --- malformed bytes ----------------------------------------------------------------------------------


def mutations(valid: bytes, rng: random.Random, n: int) -> Iterator[bytes]:
    """Truncations, bit flips and random bytes (a third each), plus a few classic broken encodings."""
    yield from (b"\xff" * 10, b"\x08" + b"\xff" * 11, b"\x0a\x7f" + b"a", b"\x0f", b"\x00")
    for i in range(n):
        kind = i % 3
        if kind == 0 and len(valid) > 1:
            yield valid[:rng.randrange(1, len(valid))]
        elif kind == 1:
            flipped = bytearray(valid)
            for _ in range(rng.randint(1, 3)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            yield bytes(flipped)
        else:
            yield rng.randbytes(rng.randint(1, 64))


def test_malformed_bytes_are_invalid_argument_on_every_service(  # type: ignore[no-untyped-def]
        scoring_server, recommendation_server, segmentation_server, channel_to, ids, snapshot) -> None:
    n_features = len(snapshot.feature_names)
    row = np.asarray(snapshot.X[0], np.float32)
    cases: list[tuple[Any, str, Message, bool]] = [
        (scoring_server, "/tenure.v1.ScoringService/Score", scoring_pb2.ScoreRequest(customers=[
            common_pb2.CustomerRef(customer_id=ids[0]),
            common_pb2.CustomerRef(inline=common_pb2.InlineFeatures(key="k", values=row.tolist()))]), False),
        (scoring_server, "/tenure.v1.ScoringService/Predict", scoring_pb2.PredictRequest(customer_ids=ids[:3]), False),
        (scoring_server, "/inference.GRPCInferenceService/ModelInfer", inference_pb2.ModelInferRequest(
            model_name="churn", inputs=[inference_pb2.ModelInferRequest.InferInputTensor(
                name="features", datatype="FP32", shape=[1, n_features])],
            raw_input_contents=[row.tobytes()]), False),
        (scoring_server, "/tenure.v1.ScoringService/StreamScore", scoring_pb2.ScoreChunk(
            chunk_id=1, customer_ids=ids[:2]), True),
        (recommendation_server, "/tenure.v1.RecommendationService/Recommend",
         recommendation_pb2.RecommendRequest(customer_id=ids[0], k=5), False),
        (segmentation_server, "/tenure.v1.SegmentationService/GetSegments",
         spb.GetSegmentsRequest(customer_ids=ids[:3]), False),
        (segmentation_server, "/tenure.v1.SegmentationService/ExportAudience", spb.AudienceQuery(
            conditions=[spb.Condition(field="churn", op=spb.CONDITION_OP_GE, value=0.5)], limit=3), False),
    ]
    rng = random.Random(20261130)
    refused = total = 0
    for server, path, valid, streaming in cases:
        channel = channel_to(server)
        request_type = type(valid)
        if streaming:
            call = channel.stream_stream(path, request_serializer=None, response_deserializer=None)
        elif path.endswith("ExportAudience"):
            call = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
        else:
            call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
        for raw in mutations(valid.SerializeToString(), rng, 45 if streaming else 60):
            try:
                request_type.FromString(raw)
                decodable = True
            except DecodeError:
                decodable = False
            details = ""
            try:
                if streaming:
                    list(call(iter([raw]), timeout=SAFETY_S))
                elif path.endswith("ExportAudience"):
                    list(call(raw, timeout=SAFETY_S))
                else:
                    call(raw, timeout=SAFETY_S)
                code = grpc.StatusCode.OK
            except grpc.RpcError as err:
                code = err.code()
                details = err.details() or ""
            total += 1
            assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (path, raw, details)
            if not decodable:
                refused += 1
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (path, raw, code)
                assert f"not a valid {request_type.DESCRIPTOR.full_name} message" in details
        ok = call(iter([valid.SerializeToString()]), timeout=SAFETY_S) if streaming else None
        if ok is not None:
            assert len(list(ok)) == 1  # the server answers a valid call afterwards
    assert total >= 400 and refused >= total // 3
    score = scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server)).Score(by_id(ids[0]), timeout=SAFETY_S)
    assert len(score.results) == 1  # still serving


# --- call classes -------------------------------------------------------------------------------------


def test_bulk_calls_beyond_the_bound_are_refused_while_short_calls_and_health_answer(  # type: ignore[no-untyped-def]
        trained_repo, start_server, channel_to, ids) -> None:
    server = start_server(make_scoring, trained_repo, server_threads=2, max_streams=2, bulk_calls=2)
    calls: handlers.CallLimiter = server.service.calls
    gate = threading.Event()
    calls.hook = lambda method, kind: gate.wait(SAFETY_S) if kind == handlers.BULK else None
    channel = channel_to(server)
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    big = scoring_pb2.PredictRequest(customer_ids=ids[:handlers.BULK_ROWS + 1])
    try:
        streams = [HeldStream(stub, ids[:3], i) for i in range(2)]  # both stream slots, each holding a thread
        held = [stub.Predict.future(big, timeout=SAFETY_S * 2) for _ in range(2)]  # both bulk slots
        wait_for(lambda: calls.stats.bulk_running == 2, "two bulk calls in flight")

        err = code_of(lambda: stub.Predict(big, timeout=SAFETY_S))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "TENURE_BULK_CALLS" in err.details()
        assert dict(err.trailing_metadata() or ())["grpc-retry-pushback-ms"] == str(handlers.RETRY_PUSHBACK_MS)
        err = code_of(lambda: list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(customer_ids=ids[:2])]),
                                                    timeout=SAFETY_S)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "2 streams" in err.details()

        # Short calls and health still find a thread while every bulk and stream slot is busy.
        assert len(stub.Score(by_id(ids[0]), timeout=SAFETY_S).results) == 1
        assert len(stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids[:3]), timeout=SAFETY_S).results) == 3
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=SAFETY_S)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        oip = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert oip.ServerReady(inference_pb2.ServerReadyRequest(), timeout=SAFETY_S).ready
        assert calls.stats.refused == 1 and calls.stats.bulk_running == 2

        gate.set()
        assert [len(f.result().results) for f in held] == [len(big.customer_ids)] * 2
        for stream in streams:
            stream.close()
        assert len(stub.Predict(big, timeout=SAFETY_S).results) == len(big.customer_ids)  # the slots are free again
    finally:
        gate.set()
        calls.hook = None


def test_concurrent_calls_beyond_max_concurrent_rpcs_are_refused_at_once(  # type: ignore[no-untyped-def]
        trained_repo, start_server, channel_to, ids) -> None:
    server = start_server(make_scoring, trained_repo, max_concurrent_rpcs=3, bulk_calls=3)
    calls: handlers.CallLimiter = server.service.calls
    gate = threading.Event()
    calls.hook = lambda method, kind: gate.wait(SAFETY_S) if kind == handlers.BULK else None
    stub = scoring_pb2_grpc.ScoringServiceStub(channel_to(server))
    big = scoring_pb2.PredictRequest(customer_ids=ids[:handlers.BULK_ROWS + 1])
    try:
        held = [stub.Predict.future(big, timeout=SAFETY_S * 2) for _ in range(3)]
        wait_for(lambda: calls.stats.bulk_running == 3, "three calls in flight")
        err = code_of(lambda: stub.Score(by_id(ids[0]), timeout=SAFETY_S))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        gate.set()
        assert all(len(f.result().results) == len(big.customer_ids) for f in held)
        assert len(stub.Score(by_id(ids[0]), timeout=SAFETY_S).results) == 1
    finally:
        gate.set()
        calls.hook = None


# --- idle streams -------------------------------------------------------------------------------------


def test_idle_streams_end_and_free_their_slot(trained_repo, start_server, channel_to, ids, snapshot) -> None:  # type: ignore[no-untyped-def]
    server = start_server(make_scoring, trained_repo, max_streams=1, stream_idle_timeout_s=1.0)
    channel = channel_to(server)
    oip = inference_pb2_grpc.GRPCInferenceServiceStub(channel)
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    silent: queue.Queue[inference_pb2.ModelInferRequest | None] = queue.Queue()
    try:
        err = code_of(lambda: list(oip.ModelStreamInfer(iter(silent.get, None), timeout=SAFETY_S)))  # sends nothing
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "TENURE_STREAM_IDLE_TIMEOUT_S" in err.details()
    finally:
        silent.put(None)
    # A stream that was answered and then goes quiet ends the same way, after its answers.
    feed: queue.Queue[scoring_pb2.ScoreChunk | None] = queue.Queue()
    try:
        call = stub.StreamScore(iter(feed.get, None), timeout=SAFETY_S)
        feed.put(scoring_pb2.ScoreChunk(chunk_id=3, customer_ids=ids[:2]))
        assert next(call).chunk_id == 3
        err = code_of(lambda: next(call))
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        feed.put(None)
    # The slot (max_streams=1) is free again.
    [answer] = list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=4, customer_ids=ids[:2])]),
                                     timeout=SAFETY_S))
    assert answer.chunk_id == 4


# --- request size -------------------------------------------------------------------------------------


def test_oversized_requests_are_refused_before_the_handler(trained_repo, start_server, channel_to, snapshot) -> None:  # type: ignore[no-untyped-def]
    server = start_server(make_scoring, trained_repo, max_request_bytes=64 * 1024)
    calls: handlers.CallLimiter = server.service.calls
    stub = scoring_pb2_grpc.ScoringServiceStub(channel_to(server))
    row = np.asarray(snapshot.X[0], np.float32).tolist()
    big = scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(inline=common_pb2.InlineFeatures(
        key=f"k{i}", values=row)) for i in range(300)])
    assert big.ByteSize() > 64 * 1024
    before = dict(calls.stats.started), calls.stats.malformed
    err = code_of(lambda: stub.Score(big, timeout=SAFETY_S))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (dict(calls.stats.started), calls.stats.malformed) == before  # no handler saw it
    small = scoring_pb2.ScoreRequest(customers=list(big.customers)[:3])
    assert len(stub.Score(small, timeout=SAFETY_S).results) == 3


def test_the_default_request_limit_holds_the_largest_valid_requests(scoring_server, channel_to, snapshot) -> None:  # type: ignore[no-untyped-def]
    settings = ServiceSettings()
    rows, n_features = settings.max_batch_rows, len(snapshot.feature_names)
    X = np.asarray(snapshot.X[np.arange(rows) % len(snapshot.X)], np.float32)
    score = scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(inline=common_pb2.InlineFeatures(
        key=f"customer-{i:012d}", values=X[i].tolist())) for i in range(rows)])
    infer = inference_pb2.ModelInferRequest(model_name="churn", inputs=[
        inference_pb2.ModelInferRequest.InferInputTensor(name="features", datatype="FP64", shape=[rows, n_features])],
        raw_input_contents=[X.astype(np.float64).tobytes()])
    assert max(score.ByteSize(), infer.ByteSize()) < settings.max_request_bytes / 2
    answer = scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server)).Score(score, timeout=SAFETY_S * 2)
    assert len(answer.results) == rows


# --- deadlines and cancellation -----------------------------------------------------------------------


def test_a_call_whose_deadline_passed_before_it_started_is_not_computed(  # type: ignore[no-untyped-def]
        trained_repo, start_server, channel_to, ids) -> None:
    server = start_server(make_scoring, trained_repo)
    calls: handlers.CallLimiter = server.service.calls
    gate, waiting = threading.Event(), threading.Event()

    def hold(method: str, kind: str) -> None:  # the call waits for a thread, as behind a busy pool
        if method.endswith("/Predict"):
            waiting.set()
            gate.wait(SAFETY_S)

    calls.hook = hold
    stub = scoring_pb2_grpc.ScoringServiceStub(channel_to(server))
    chunks_before, expired_before = handlers.WORK.chunks, calls.stats.expired
    try:
        err = code_of(lambda: stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids[:3]), timeout=0.5))
        assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert waiting.is_set()
        gate.set()
        wait_for(lambda: calls.stats.expired > expired_before, "the expired call to be dropped")
        assert handlers.WORK.chunks == chunks_before  # not one customer computed
    finally:
        gate.set()
        calls.hook = None
    assert len(stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids[:3]), timeout=SAFETY_S).results) == 3


def test_a_cancelled_predict_stops_within_one_chunk(trained_repo, start_server, channel_to, ids) -> None:  # type: ignore[no-untyped-def]
    from services.scoring.servicer import PREDICT_CHUNK_ROWS

    server = start_server(make_scoring, trained_repo, bulk_calls=1)
    stub = scoring_pb2_grpc.ScoringServiceStub(channel_to(server))
    n = min(len(ids), 8 * PREDICT_CHUNK_ROWS)
    assert n >= 4 * PREDICT_CHUNK_ROWS
    first = threading.Event()
    before = (handlers.WORK.chunks, handlers.WORK.stopped, handlers.WORK.after_end)

    def after_chunk(context: grpc.ServicerContext) -> None:
        # After the first chunk, go on only once the client's cancel has reached the server.
        if not first.is_set():
            first.set()
            end = time.monotonic() + SAFETY_S
            while context.is_active() and time.monotonic() < end:
                time.sleep(0.005)

    handlers.WORK.hook = after_chunk
    try:
        call = stub.Predict.future(scoring_pb2.PredictRequest(customer_ids=ids[:n]), timeout=SAFETY_S * 2)
        assert first.wait(SAFETY_S)
        call.cancel()
        wait_for(lambda: handlers.WORK.stopped > before[1], "the server to stop the cancelled call")
    finally:
        handlers.WORK.hook = None
    chunks = handlers.WORK.chunks - before[0]
    assert chunks == 1 and handlers.WORK.after_end - before[2] <= 1  # 1 of 8 chunks computed, none after
    assert call.cancelled()
    assert len(stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids[:3]), timeout=SAFETY_S).results) == 3
