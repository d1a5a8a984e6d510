"""How calls reach the servicers: decoding, call classes, admission, expired and cancelled work.

Every servicer is registered through `register`, a generic handler built from its service
descriptor instead of the generated add_XServicer_to_server:

- requests arrive as raw bytes and are decoded here: bytes that are not a valid message of the
  method's request type are the client's error (INVALID_ARGUMENT), never INTERNAL (which is what
  grpcio answers when a request_deserializer raises);
- each call is classified (`call_class`): "control" (readiness, metadata: a small pool of its
  own, so they answer however busy the handler threads are), "fast" (small unary calls), "bulk"
  (unary calls over many rows, whole-base work) and "stream" (bounded by StreamSlots). At most
  settings.bulk_calls bulk calls run at once; one more is refused at once with
  RESOURCE_EXHAUSTED and a retry hint instead of taking a thread that short calls need
  (`server_threads` keeps a reserve of threads beyond streams and bulk calls);
- a call whose deadline passed (or whose caller went away) before it started is not started;
- big work runs in chunks (`chunks`) that stop once the caller is gone.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NoReturn

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from services.core.errors import clip
from tenure.errors import Cancelled, DeadlineExpired, InvalidInput
from tenure.settings import ServiceSettings

CONTROL, FAST, BULK, STREAM = "control", "fast", "bulk", "stream"
CONTROL_THREADS = 2
"""Threads of the pool that serves control calls (and the health check) apart from the others."""
FAST_RESERVE = 2
"""Handler threads kept beyond max_streams + bulk_calls: short calls always find one."""
BULK_ROWS = 256
"""A Predict, GetSegments, RecordFeedback or lookalike call over more rows (customers, ids, events) than
this is a bulk call: every model, reasons, segments or a database write per row (Predict for 10,000
customers is ~1 CPU-s)."""
MODEL_RUN_BULK_ROWS = 4096
"""Score and ModelInfer run one model over their rows (10,000 rows in tens of ms): bulk above this, so that
the batches a client sends to ModelInfer (1,024 rows, say) stay fast calls."""
INGEST_BULK_EVENTS = 2_000
"""IngestEvents of more events is a bulk call (~0.1 ms of work per event)."""
RETRY_PUSHBACK_MS = 500
"""Sent with a refused bulk call as grpc-retry-pushback-ms: a client's retry policy waits that long."""

CONTROL_METHODS = frozenset({
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
    "/inference.GRPCInferenceService/ModelReady",
    "/inference.GRPCInferenceService/ServerMetadata",
    "/inference.GRPCInferenceService/ModelMetadata",
    "/tenure.v1.ScoringService/GetModelInfo",
    "/tenure.v1.SegmentationService/DescribeSegments",
})
BULK_METHODS = frozenset({
    "/tenure.v1.SegmentationService/ProfileGroup",  # over the whole customer base
})
ROWS: dict[str, tuple[Callable[[Any], int], int]] = {
    "/tenure.v1.ScoringService/Score": (lambda r: len(r.customers), MODEL_RUN_BULK_ROWS),
    "/tenure.v1.ScoringService/Predict": (lambda r: len(r.customer_ids), BULK_ROWS),
    "/tenure.v1.SegmentationService/GetSegments": (lambda r: len(r.customer_ids), BULK_ROWS),
    "/tenure.v1.SegmentationService/StartLookalikeJob": (lambda r: len(r.seed_customer_ids), BULK_ROWS),
    "/tenure.v1.RecommendationService/RecordFeedback": (lambda r: len(r.events), BULK_ROWS),
    "/tenure.v1.EventService/IngestEvents": (lambda r: len(r.events), INGEST_BULK_EVENTS),
    "/inference.GRPCInferenceService/ModelInfer": (lambda r: _infer_rows(r.inputs), MODEL_RUN_BULK_ROWS),
}
"""Rows of a unary request and the rows above which it is a bulk call, for the methods whose cost grows
with them."""


def _infer_rows(inputs: Any) -> int:
    """Rows of a ModelInfer request: the largest first dimension of its inputs."""
    if len(inputs) == 1:  # the common case, without a generator
        shape = inputs[0].shape
        return shape[0] if shape else 0
    return max((t.shape[0] for t in inputs if t.shape), default=0)


def call_class(method: str, request: Message | None, streaming: bool) -> str:
    if streaming:
        return STREAM
    if method in CONTROL_METHODS:
        return CONTROL
    if method in BULK_METHODS:
        return BULK
    sized = ROWS.get(method)
    if sized is None or request is None:
        return FAST
    rows, limit = sized
    return BULK if rows(request) > limit else FAST


def server_threads(settings: ServiceSettings) -> int:
    """Handler threads: settings.server_threads, and at least enough that streams and bulk calls
    at their bounds leave FAST_RESERVE threads to short calls."""
    return max(settings.server_threads, settings.max_streams + settings.bulk_calls + FAST_RESERVE)


@dataclass
class CallStats:
    """Counters (sums since start) of what the handlers did with calls."""

    started: dict[str, int] = field(default_factory=lambda: {CONTROL: 0, FAST: 0, BULK: 0, STREAM: 0})
    refused: int = 0
    """Bulk calls refused (RESOURCE_EXHAUSTED) because bulk_calls were already running."""
    malformed: int = 0
    """Requests that were not valid messages (INVALID_ARGUMENT)."""
    expired: int = 0
    """Calls not started: their deadline had passed (or their caller had gone) when they got a thread."""
    bulk_running: int = 0


class CallLimiter:
    """Admission of the calls of one server (a worker process)."""

    def __init__(self, bulk_calls: int) -> None:
        self.bulk_calls = max(1, bulk_calls)
        self._bulk = threading.BoundedSemaphore(self.bulk_calls)
        self._lock = threading.Lock()
        self.stats = CallStats()
        self.hook: Callable[[str, str], None] | None = None
        """Tests only: called with (method, call class) once a call is admitted, before its deadline is
        checked again and its handler runs (it can hold a call in flight, as a long computation would)."""

    def _count(self, name: str, delta: int = 1) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + delta)

    @contextmanager
    def admit(self, method: str, kind: str, context: grpc.ServicerContext) -> Iterator[None]:
        """Run a call of this class, or refuse it (bulk beyond the bound) or drop it (expired)."""
        bulk = self.enter(method, kind, context)
        try:
            yield
        finally:
            if bulk:
                self.leave()

    def enter(self, method: str, kind: str, context: grpc.ServicerContext) -> bool:
        """`admit` without a context manager (the unary path: one frame less per call): True when the
        call holds a bulk slot, to give back with `leave` once it ends."""
        bulk = kind == BULK
        if bulk and not self._bulk.acquire(blocking=False):
            self._count("refused")
            context.set_trailing_metadata((("grpc-retry-pushback-ms", str(RETRY_PUSHBACK_MS)),))
            _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                   f"{self.bulk_calls} bulk call(s) (Predict, GetSegments or RecordFeedback over {BULK_ROWS} rows, "
                   f"Score or ModelInfer over {MODEL_RUN_BULK_ROWS}, or whole-base work) are already "
                   f"running on this worker (at most {self.bulk_calls}, TENURE_BULK_CALLS); retry in "
                   f"{RETRY_PUSHBACK_MS} ms, or send smaller calls")
        try:
            if bulk:
                self._count("bulk_running")
            with self._lock:
                self.stats.started[kind] += 1
            if self.hook is not None:
                self.hook(method, kind)
            refuse_if_gone(context, self)
        except BaseException:
            if bulk:
                self.leave()
            raise
        return bulk

    def leave(self) -> None:
        """A bulk call ended: its slot is free."""
        self._count("bulk_running", -1)
        self._bulk.release()


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, clip(message))
    raise AssertionError("unreachable: context.abort raises")


def refuse_if_gone(context: grpc.ServicerContext, limiter: CallLimiter | None = None) -> None:
    """Work whose deadline has passed, or whose caller went away, is not started."""
    remaining = context.time_remaining()
    expired = remaining is not None and remaining <= 0
    if expired or not context.is_active():
        if limiter is not None:
            limiter._count("expired")
        if expired:
            _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED,
                   "the deadline had passed before the call started; it was not computed")
        _abort(context, grpc.StatusCode.CANCELLED, "the caller went away before the call started")


class MalformedRequest(InvalidInput):
    """Request bytes that are not a valid message of the method's request type."""


def _decode(raw: bytes, message: type[Message]) -> Message:
    try:
        return message.FromString(raw)
    except (DecodeError, ValueError, TypeError) as err:  # upb raises DecodeError; keep it to the client's fault
        raise MalformedRequest(f"request is not a valid {message.DESCRIPTOR.full_name} message "
                               f"({len(raw)} bytes): {err}") from None


def _handler(method: MethodDescriptor, behavior: Callable[..., Any], limiter: CallLimiter,
             control_pool: ThreadPoolExecutor) -> grpc.RpcMethodHandler:
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_type: type[Message] = message_factory.GetMessageClass(method.input_type)
    serialize_message = message_factory.GetMessageClass(method.output_type).SerializeToString
    sized = path in ROWS  # else the call class is the same for every call
    fixed_kind = call_class(path, None, method.server_streaming or method.client_streaming)

    def serialize(response: Any) -> bytes:
        """A behavior may return its response already serialised (bytes): sent as it is."""
        return response if type(response) is bytes else serialize_message(response)

    def decode(raw: bytes, context: grpc.ServicerContext) -> Message:
        try:
            return _decode(raw, request_type)
        except MalformedRequest as err:
            limiter._count("malformed")
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))

    def requests(raw_iterator: Iterator[bytes]) -> Iterator[Message]:
        for raw in raw_iterator:
            try:
                yield _decode(raw, request_type)
            except MalformedRequest:
                limiter._count("malformed")
                raise  # a TenureError: the interceptor (services.core.interceptor) answers INVALID_ARGUMENT

    def unary_unary(raw: bytes, context: grpc.ServicerContext) -> Any:
        refuse_if_gone(context, limiter)
        request = decode(raw, context)
        bulk = limiter.enter(path, call_class(path, request, False) if sized else fixed_kind, context)
        try:
            return behavior(request, context)
        finally:
            if bulk:
                limiter.leave()

    def unary_stream(raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
        refuse_if_gone(context, limiter)
        request = decode(raw, context)
        with limiter.admit(path, call_class(path, request, True), context):
            yield from behavior(request, context)

    def stream_unary(raw_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        refuse_if_gone(context, limiter)
        with limiter.admit(path, STREAM, context), _malformed_stream(context):
            return behavior(requests(raw_iterator), context)

    def stream_stream(raw_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[Any]:
        refuse_if_gone(context, limiter)
        with limiter.admit(path, STREAM, context), _malformed_stream(context):
            yield from behavior(requests(raw_iterator), context)

    make: Callable[..., grpc.RpcMethodHandler]
    handle: Callable[..., Any]
    if method.client_streaming:
        make, handle = ((grpc.stream_stream_rpc_method_handler, stream_stream) if method.server_streaming
                        else (grpc.stream_unary_rpc_method_handler, stream_unary))
    else:
        make, handle = ((grpc.unary_stream_rpc_method_handler, unary_stream) if method.server_streaming
                        else (grpc.unary_unary_rpc_method_handler, unary_unary))
    if path in CONTROL_METHODS:
        _serve_in(control_pool, handle)
    return make(handle, request_deserializer=None, response_serializer=serialize)


@contextmanager
def _malformed_stream(context: grpc.ServicerContext) -> Iterator[None]:
    """A malformed message in a request stream that escaped the servicer ends the call with INVALID_ARGUMENT."""
    try:
        yield
    except MalformedRequest as err:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))


def register(server: grpc.Server, service_name: str, servicer: Any, limiter: CallLimiter,
             control_pool: ThreadPoolExecutor) -> None:
    """Serve every method of `service_name` (a service of the default descriptor pool: the generated
    tenure.v1 modules are imported) from the servicer's method of the same name."""
    service = descriptor_pool.Default().FindServiceByName(service_name)
    handlers = {m.name: _handler(m, getattr(servicer, m.name), limiter, control_pool) for m in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, handlers),))
    server.add_registered_method_handlers(service_name, handlers)


def control_behavior(behavior: Callable[..., Any], control_pool: ThreadPoolExecutor) -> Callable[..., Any]:
    """`behavior` served from the control pool (e.g. the health check): a function object of its own,
    so that the pool is this server's."""
    def control(request: Any, context: grpc.ServicerContext) -> Any:
        return behavior(request, context)

    _serve_in(control_pool, control)
    return control


def _serve_in(pool: ThreadPoolExecutor, behavior: Any) -> None:
    """grpcio runs the calls of a behavior with this attribute in that pool instead of the server's."""
    behavior.experimental_thread_pool = pool


@dataclass
class WorkStats:
    """Chunks of big work (Predict, audiences) computed, and how cancellation stopped them."""

    chunks: int = 0
    stopped: int = 0
    """Calls that stopped between chunks because the caller had gone (cancel, deadline)."""
    after_end: int = 0
    """Chunks that finished after their call had ended: at most one per stopped call (the one running)."""
    hook: Callable[[grpc.ServicerContext], None] | None = None
    """Tests only: called with the call's context after each chunk."""


WORK = WorkStats()
_WORK_LOCK = threading.Lock()


def chunks(context: grpc.ServicerContext, n: int, size: int) -> Iterator[range]:
    """range(0, n) in pieces of `size`; between them, stop (Cancelled / DeadlineExpired) once the
    caller has gone away or the deadline has passed, so that a cancelled call stops within a chunk."""
    ended = threading.Event()
    if not context.add_callback(ended.set):  # the call has already ended
        ended.set()
    for start in range(0, n, size):
        if ended.is_set() or not context.is_active():
            with _WORK_LOCK:
                WORK.stopped += 1
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                raise DeadlineExpired(f"the deadline passed after {start} of {n} rows; the rest was not computed")
            raise Cancelled(f"the caller went away after {start} of {n} rows; the rest was not computed")
        yield range(start, min(n, start + size))
        with _WORK_LOCK:
            WORK.chunks += 1
            if ended.is_set():
                WORK.after_end += 1
        if WORK.hook is not None:
            WORK.hook(context)
