"""The one server interceptor: errors to status, request metrics and the access log, for every call.

Each method's handler is wrapped once (handlers are static) and the wrapper is reused for every call;
per call it reads a clock twice, moves three pre-bound metric children and puts one tuple on a queue:
the access-log line is written by a thread of its own, off the serving path.

Errors: a domain error (tenure.errors.TenureError) ends the call with its status (services.core.errors.STATUS);
a grpc.RpcError (the call itself broke: the client cancelled) and a context.abort() pass through as they are;
anything else becomes INTERNAL with a generic message, its traceback logged.
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Iterator

import grpc

from services.core import metrics
from services.core.errors import status_for
from tenure.errors import TenureError

log = logging.getLogger(__name__)
access_log = logging.getLogger("tenure.access")
REQUEST_ID = "x-request-id"
"""Metadata key of the request id: the client's if it sent one, else generated; echoed in the trailers."""
ACCESS_LOG_MODES = ("all", "errors", "off")
_OK = grpc.StatusCode.OK
_CANCELLED = grpc.StatusCode.CANCELLED
_INTERNAL = grpc.StatusCode.INTERNAL


class _AccessLog:
    """Access-log entries queued by the serving threads, formatted and written by one daemon thread."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[Any, ...] | threading.Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, entry: tuple[Any, ...]) -> None:
        if self._thread is None:
            self._start()
        self.queue.put(entry)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._write, name="access-log", daemon=True)
                self._thread.start()

    def _write(self) -> None:
        while True:
            entry = self.queue.get()
            if isinstance(entry, threading.Event):
                entry.set()
                continue
            try:
                method, code, seconds, peer, request_id = entry
                level = logging.INFO if code in (_OK, _CANCELLED) or code.value[0] < 4 else logging.WARNING
                if access_log.isEnabledFor(level):  # makeRecord + handle: no caller lookup (Logger.log's findCaller)
                    duration_ms = round(seconds * 1000, 3)
                    access_log.handle(access_log.makeRecord(
                        access_log.name, level, __file__, 0, "%s %s %.3f ms", (method, code.name, duration_ms), None,
                        extra={"fields": {"method": method, "code": code.name, "duration_ms": duration_ms,
                                          "peer": peer, "request_id": request_id}}))
            except Exception:  # noqa: BLE001 - the log must never stop serving
                log.exception("writing an access-log line failed")

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until every entry queued so far is written (tests; a process about to exit)."""
        if self._thread is None:
            return True
        done = threading.Event()
        self.queue.put(done)
        return done.wait(timeout_s)


ACCESS = _AccessLog()
_ids = itertools.count(1)
_ID_PREFIX = f"{os.getpid():x}-{int(time.time()) & 0xFFFFFF:x}"


def _request_id(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID:
            return str(value)[:128]
    return f"{_ID_PREFIX}-{next(_ids)}"


def _echo(context: grpc.ServicerContext, request_id: str) -> None:
    try:
        sent = context.trailing_metadata() or ()
        context.set_trailing_metadata((*sent, (REQUEST_ID, request_id)))
    except Exception:  # noqa: BLE001 - a call that already ended keeps its trailers
        pass


def failure(err: Exception, context: grpc.ServicerContext, method: str) -> tuple[grpc.StatusCode, str | None]:
    """The status a call that raised `err` ends with, and the message to abort with (None: re-raise `err`,
    grpc already knows the status: the call broke, or the handler aborted it)."""
    if isinstance(err, grpc.RpcError):
        return _CANCELLED, None
    if isinstance(err, TenureError):
        return status_for(err)
    code = context.code()  # type: ignore[attr-defined]
    if type(err) is Exception and code is not None and code != _OK:  # context.abort() raised it
        return code, None
    log.error("%s failed", method, exc_info=err)
    return _INTERNAL, f"internal error in {method.lstrip('/')}"


class Interceptor(grpc.ServerInterceptor):
    """Errors to status, tenure_requests_total / duration / in-flight, and the access log (access_log:
    "all", "errors" (calls not OK) or "off")."""

    def __init__(self, access_log_mode: str = "errors") -> None:
        if access_log_mode not in ACCESS_LOG_MODES:
            raise ValueError(f"access_log={access_log_mode!r}; expected one of {ACCESS_LOG_MODES}")
        self.access_log = access_log_mode
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)  # a denied call's handler (security) replaces it once
        return wrapped

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` with every call counted, timed, logged and its errors mapped to status."""
        service, _, name = method.lstrip("/").rpartition("/")
        observe = metrics.fast_observe(metrics.DURATION.labels(service, name))
        in_flight = metrics.fast_add(metrics.IN_FLIGHT.labels(service, name))
        counters: dict[grpc.StatusCode, Callable[[float], None]] = {}
        log_all, log_errors = self.access_log == "all", self.access_log != "off"
        put = ACCESS.put

        def done(context: grpc.ServicerContext, code: grpc.StatusCode, start: float, request_id: str) -> None:
            seconds = time.perf_counter() - start
            in_flight(-1)
            observe(seconds)
            count = counters.get(code)
            if count is None:
                count = counters[code] = metrics.fast_add(metrics.REQUESTS.labels(service, name, code.name))
            count(1)
            if log_all or (log_errors and code is not _OK):
                put((method, code, seconds, context.peer(), request_id))

        def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                start = time.perf_counter()
                in_flight(1)
                request_id = _request_id(context)
                code = _OK
                try:
                    response = behavior(request, context)
                    code = context.code() or _OK  # type: ignore[attr-defined]
                    return response
                except Exception as err:
                    code, message = failure(err, context, method)
                    if message is None:
                        raise
                    context.abort(code, message)
                finally:
                    _echo(context, request_id)
                    done(context, code, start, request_id)
            return _keep_pool(behavior, call)

        def streaming(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                start = time.perf_counter()
                in_flight(1)
                request_id = _request_id(context)
                code = _OK
                try:
                    yield from behavior(request, context)
                    code = context.code() or _OK  # type: ignore[attr-defined]
                except GeneratorExit:  # grpc closed the stream: the client went away
                    code = _CANCELLED
                    raise
                except Exception as err:
                    code, message = failure(err, context, method)
                    if message is None:
                        raise
                    context.abort(code, message)
                finally:
                    _echo(context, request_id)
                    done(context, code, start, request_id)
            return _keep_pool(behavior, call)

        if handler.unary_unary is not None:
            return handler._replace(unary_unary=unary(handler.unary_unary))  # type: ignore[attr-defined]
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=unary(handler.stream_unary))  # type: ignore[attr-defined]
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=streaming(handler.unary_stream))  # type: ignore[attr-defined]
        return handler._replace(stream_stream=streaming(handler.stream_stream))  # type: ignore[attr-defined]


def _keep_pool(behavior: Callable[..., Any], call: Callable[..., Any]) -> Callable[..., Any]:
    """The wrapper runs where the behavior ran (handlers.control_behavior's own thread pool)."""
    pool = getattr(behavior, "experimental_thread_pool", None)
    if pool is not None:
        call.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return call
