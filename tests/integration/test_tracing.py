"""OpenTelemetry tracing: spans reach a real OTLP/gRPC collector, the 360 view's trace spans both services."""
from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from services.demo import wait_serving
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot
from tenure.v1 import segmentation_pb2 as spb
from tenure.v1 import segmentation_pb2_grpc

WAIT_S = 60.0
"""Safety timeout for spans to arrive (the exporter batches them every OTEL_BSP_SCHEDULE_DELAY ms)."""
SEG_360 = "/tenure.v1.SegmentationService/GetCustomer360"
RECOMMEND = "/tenure.v1.RecommendationService/Recommend"
ROOT = Path(__file__).resolve().parents[2]


class Span:
    """A received span with its resource's service.name and its attributes as plain values."""

    def __init__(self, service: str, span: trace_pb2.Span) -> None:
        self.service = service
        self.name = span.name
        self.kind = span.kind
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent_id = span.parent_span_id.hex()
        self.status_code = span.status.code
        self.attributes: dict[str, Any] = {a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
                                           for a in span.attributes}


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.changed = threading.Condition()

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for rs in request.resource_spans:
            service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
            received += [Span(service, s) for ss in rs.scope_spans for s in ss.spans]
        with self.changed:
            self.spans += received
            self.changed.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, found: Callable[[list[Span]], Any]) -> Any:
        """found(spans) once it is truthy; fails after WAIT_S."""
        with self.changed:
            result = self.changed.wait_for(lambda: found(list(self.spans)), timeout=WAIT_S)
        assert result, f"spans not received within {WAIT_S}s; got {[(s.service, s.name) for s in self.spans]}"
        return result


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    received = Collector()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(received, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield received, port
    server.stop(0)


@pytest.fixture(scope="module")
def traced(trained_repo: Path, collector: tuple[Collector, int],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Collector, str, list[Any]]]:
    """Recommendation and segmentation servers exporting to the collector; (collector, segmentation target,
    services)."""
    from services.recommendation.__main__ import make_service as make_recommendation
    from services.segmentation.__main__ import make_service as make_segmentation

    received, port = collector
    started: list[Any] = []
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export every 100 ms instead of 5 s: a quicker test
        env.delenv("OTEL_SERVICE_NAME", raising=False)
        try:
            for make, target in ((make_recommendation, ""), (make_segmentation, "rec")):
                settings = ServiceSettings(models_dir=trained_repo, state_dir=tmp_path_factory.mktemp("state"),
                                           otlp_endpoint=f"127.0.0.1:{port}", reload_interval_s=0,
                                           recommendation_target=target and f"127.0.0.1:{started[0].port}")
                service = make(settings, "127.0.0.1:0")
                service.start()
                started.append(service)
                wait_serving(f"127.0.0.1:{service.port}")
            yield received, f"127.0.0.1:{started[1].port}", started
        finally:
            for service in reversed(started):
                service.stop(0.5)


def test_360_view_is_one_trace_over_both_services(traced: tuple[Collector, str, list[Any]],
                                                  snapshot: FeatureSnapshot) -> None:
    received, target, _ = traced
    cid = str(snapshot.customer_ids[0])
    with grpc.insecure_channel(target) as channel:
        view = segmentation_pb2_grpc.SegmentationServiceStub(channel).GetCustomer360(
            spb.Customer360Request(customer_id=cid, recommendations=3), timeout=30)
    assert view.recommendations and not view.recommendations_error

    def the_call(spans: list[Span]) -> tuple[Span, Span, Span] | None:
        seg = [s for s in spans if s.name == SEG_360 and s.service == "tenure-segmentation"
               and s.kind == trace_pb2.Span.SPAN_KIND_SERVER]
        for top in seg:
            rec = [s for s in spans if s.trace_id == top.trace_id and s.name == RECOMMEND]
            client = [s for s in rec if s.kind == trace_pb2.Span.SPAN_KIND_CLIENT]
            server = [s for s in rec if s.kind == trace_pb2.Span.SPAN_KIND_SERVER]
            if client and server:
                return top, client[0], server[0]
        return None

    seg, client, rec = received.wait_for(the_call)
    # One trace: the 360 view's server span -> its client call -> the recommendation service's server span.
    assert seg.trace_id == client.trace_id == rec.trace_id and len(seg.trace_id) == 32
    assert seg.parent_id == ""  # the test's call carried no trace context: the 360 view starts the trace
    assert client.parent_id == seg.span_id and client.service == "tenure-segmentation"
    assert rec.parent_id == client.span_id and rec.service == "tenure-recommendation"
    assert seg.attributes["rpc.service"] == "tenure.v1.SegmentationService"
    assert seg.attributes["rpc.method"] == "GetCustomer360"
    assert rec.attributes["rpc.method"] == "Recommend" and rec.attributes["rpc.grpc.status_code"] == 0
    # The models each call used, as its answer names them; and what each service had loaded.
    assert seg.attributes["tenure.models"].split(",") == [f"{m.name}@{m.version}" for m in view.models]
    rec_model = next(m for m in view.models if m.name == "propensity")
    assert rec.attributes["tenure.models"] == f"{rec_model.name}@{rec_model.version}"
    for span in (seg, rec):
        loaded = span.attributes["tenure.loaded_models"].split(",")
        assert loaded and all("@" in item for item in loaded), loaded
    assert f"{rec_model.name}@{rec_model.version}" in rec.attributes["tenure.loaded_models"].split(",")
    churn = next(f"{m.name}@{m.version}" for m in view.models if m.name == "churn")
    assert churn in seg.attributes["tenure.loaded_models"].split(",")
    # Health checks (wait_serving polls them) are not traced.
    assert not [s for s in received.spans if s.name.startswith("/grpc.health")]


def test_a_refused_call_has_its_status_code(traced: tuple[Collector, str, list[Any]]) -> None:
    """NOT_FOUND is the caller's fault: the span records the code but is no server error (OpenTelemetry's
    gRPC conventions: only UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS are)."""
    received, target, _ = traced
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as err:
        segmentation_pb2_grpc.SegmentationServiceStub(channel).GetCustomer360(
            spb.Customer360Request(customer_id="no-such-customer-traced"), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    def refused(spans: list[Span]) -> Span | None:
        return next((s for s in spans if s.name == SEG_360
                     and s.attributes.get("rpc.grpc.status_code") == grpc.StatusCode.NOT_FOUND.value[0]), None)

    span = received.wait_for(refused)
    assert span.status_code == trace_pb2.Status.STATUS_CODE_UNSET
    assert "tenure.models" not in span.attributes  # no answer, no models used


def test_control_calls_keep_their_own_thread_pool(traced: tuple[Collector, str, list[Any]]) -> None:
    """The instrumentation rewraps each handler; a control call (readiness, metadata) must still run in the
    control pool, not wait for a busy handler thread."""
    from services.core.handlers import control_behavior

    _, _, services = traced
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        behavior = control_behavior(lambda request, context: request, pool)
        handler = grpc.unary_unary_rpc_method_handler(behavior)

        class Details(grpc.HandlerCallDetails):
            method = "/tenure.v1.SegmentationService/DescribeSegments"
            invocation_metadata = ()

        interceptor = services[1].tracing.server_interceptor(services[1].holders)
        wrapped = interceptor.intercept_service(lambda _details: handler, Details())
        assert wrapped.unary_unary is not behavior
        assert wrapped.unary_unary.experimental_thread_pool is pool
    finally:
        pool.shutdown()


def test_tracing_off_imports_no_opentelemetry(tmp_path: Path) -> None:
    """Off by default, at no cost: building the services does not even import OpenTelemetry."""
    code = (
        "import sys\n"
        "from tenure.settings import ServiceSettings\n"
        "from services.scoring.__main__ import make_service as scoring\n"
        "from services.segmentation.__main__ import make_service as segmentation\n"
        "from services.recommendation.__main__ import make_service as recommendation\n"
        f"settings = ServiceSettings(models_dir={str(tmp_path)!r}, state_dir={str(tmp_path / 'state')!r})\n"
        "built = [make(settings, '127.0.0.1:0') for make in (scoring, segmentation, recommendation)]\n"
        "assert all(service.tracing is None for service in built)\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("TENURE_", "OTEL_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_spans_of_the_last_calls_are_flushed_at_sigterm(trained_repo: Path, collector: tuple[Collector, int],
                                                        snapshot: FeatureSnapshot, tmp_path: Path) -> None:
    """`tenure serve --otlp-endpoint`: a call answered just before SIGTERM still reaches the collector (the
    exporter's 5 s batching delay has not passed; the drain flushes it)."""
    import json
    import os
    import signal

    from tenure.v1 import recommendation_pb2, recommendation_pb2_grpc

    received, port = collector
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENURE_", "OTEL_"))}
    env.update(TENURE_SHUTDOWN_LAME_DUCK_S="0", TENURE_RELOAD_INTERVAL_S="0")
    proc = subprocess.Popen([sys.executable, "-m", "tenure.cli", "serve", "recommendation", "--port", "0",
                             "--models", str(trained_repo), "--state", str(tmp_path / "state"),
                             "--otlp-endpoint", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    try:
        listening = None
        lines = []
        for line in proc.stderr or ():  # structured logs: one JSON object per line
            lines.append(line)
            if line.startswith("{") and "listening on port" in (msg := json.loads(line)["msg"]):
                listening = int(msg.rsplit(" ", 1)[1])
                break
        assert listening, "".join(lines)
        threading.Thread(target=lambda: [None for _ in proc.stderr or ()], daemon=True).start()
        wait_serving(f"127.0.0.1:{listening}")
        cid = str(snapshot.customer_ids[1])
        with grpc.insecure_channel(f"127.0.0.1:{listening}") as channel:
            answer = recommendation_pb2_grpc.RecommendationServiceStub(channel).Recommend(
                recommendation_pb2.RecommendRequest(customer_id=cid, k=2), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        # Exited: whatever it exported has been received (the exporter waits for the collector's answer).
        # Only this test calls Recommend directly (the 360 view's calls have a parent span).
        spans = [s for s in received.spans if s.name == RECOMMEND and s.parent_id == ""]
        assert len(spans) == 1 and spans[0].service == "tenure-recommendation"
        assert spans[0].attributes["tenure.models"] == f"{answer.model.name}@{answer.model.version}"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_answers_sent_pre_serialised_still_name_their_models(trained_repo: Path, collector: tuple[Collector, int],
                                                             snapshot: FeatureSnapshot,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    """Score and ModelInfer answer with bytes they serialised themselves: their spans still say which
    models answered."""
    import numpy as np

    from services.scoring.__main__ import make_service as make_scoring
    from tenure.v1 import common_pb2, inference_pb2, inference_pb2_grpc, scoring_pb2, scoring_pb2_grpc

    received, port = collector
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        env.delenv("OTEL_SERVICE_NAME", raising=False)
        service = make_scoring(ServiceSettings(models_dir=trained_repo, state_dir=tmp_path_factory.mktemp("state"),
                                               otlp_endpoint=f"127.0.0.1:{port}", reload_interval_s=0),
                               "127.0.0.1:0")
        service.start()
    try:
        wait_serving(f"127.0.0.1:{service.port}")
        cid = str(snapshot.customer_ids[2])
        with grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            score = scoring_pb2_grpc.ScoringServiceStub(channel).Score(
                scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=cid)]), timeout=30)
            x = np.ascontiguousarray(snapshot.X[:1], dtype="<f4")
            req = inference_pb2.ModelInferRequest(model_name="churn", id="traced-1")
            req.inputs.add(name="features", datatype="FP32", shape=list(x.shape))
            req.raw_input_contents.append(x.tobytes())
            infer = inference_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=30)
        assert score.results[0].HasField("scores") and infer.id == "traced-1"

        def spans_of(spans: list[Span]) -> tuple[Span, Span] | None:
            mine = [s for s in spans if s.kind == trace_pb2.Span.SPAN_KIND_SERVER and s.service == "tenure-scoring"]
            got = ([s for s in mine if s.name == "/tenure.v1.ScoringService/Score"],
                   [s for s in mine if s.name == "/inference.GRPCInferenceService/ModelInfer"])
            return (got[0][-1], got[1][-1]) if got[0] and got[1] else None

        score_span, infer_span = received.wait_for(spans_of)
        assert score_span.attributes["tenure.models"].split(",") == [f"{m.name}@{m.version}" for m in score.models]
        assert infer_span.attributes["tenure.models"] == f"churn@{infer.model_version}"
    finally:
        service.stop(0.5)
