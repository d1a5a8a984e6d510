"""OpenTelemetry tracing of the services' calls, exported over OTLP/gRPC (settings.otlp_endpoint).

Off (the default, empty otlp_endpoint): nothing of OpenTelemetry is imported. On: each server has a
TracerProvider of its own (not the process-global one: tests and tools run several servers in one
process), a server span per call (the OpenTelemetry gRPC instrumentation's interceptor, outermost, so
that the span covers the token check and the error mapping too) with the models and versions involved,
and client spans on the calls one service makes to another (the 360-degree view asks the
recommendation service): the trace context travels in the call's metadata (W3C traceparent), so the
callee's span is a child of the caller's.

Attributes besides the instrumentation's rpc.*: `tenure.models`, the models the answer names
("churn@20261129T101500Z,clv@..."); `tenure.loaded_models`, every artifact the called gRPC service had
loaded when the call began (models and feature snapshot, "name@version,...").
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from tenure.errors import ConfigError
from tenure.settings import ServiceSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from services.core.runtime import Holder

log = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 3.0
"""At shutdown, how long the spans still queued may take to reach the collector (also the timeout of
each export): a drain waits at most this long for them."""
UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
"""Health checks and reflection get no spans (probes every few seconds would bury the calls)."""
MODEL_VERSION = "tenure.v1.ModelVersion"


def service_name(grpc_service: str) -> str:
    """The resource's service.name for a server: tenure.v1.ScoringService -> tenure-scoring."""
    short = grpc_service.rsplit(".", 1)[-1]
    if short.endswith("Service"):
        short = short[: -len("Service")]
    return f"tenure-{short.lower()}"


def start_tracing(settings: ServiceSettings, name: str) -> "Tracing | None":
    """The tracing of one server named `name` (service.name), or None when settings.otlp_endpoint is empty."""
    if not settings.otlp_endpoint:
        return None
    return Tracing(settings, name)


class Tracing:
    """One server's TracerProvider (batching OTLP/gRPC exporter), its server interceptor and traced channels."""

    def __init__(self, settings: ServiceSettings, name: str) -> None:
        import os

        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        endpoint = settings.otlp_endpoint
        tls = endpoint.startswith("https://") or bool(settings.otlp_ca_file)
        for scheme in ("https://", "http://"):
            endpoint = endpoint.removeprefix(scheme)
        credentials = None
        if tls:
            ca = None
            if settings.otlp_ca_file:
                try:
                    with open(settings.otlp_ca_file, "rb") as f:
                        ca = f.read()
                except OSError as err:
                    raise ConfigError(f"setting otlp_ca_file (TENURE_OTLP_CA_FILE): cannot read "
                                      f"{settings.otlp_ca_file}: {err.strerror or err}") from None
            credentials = grpc.ssl_channel_credentials(root_certificates=ca)
        # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES (read by Resource.create) win over the default name.
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": name}
        self.name = name
        self.endpoint = endpoint
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create(attributes),
            # A call that arrives with a trace context follows its caller's decision (one whole trace or none).
            sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
        )
        self.provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, insecure=not tls, credentials=credentials, timeout=FLUSH_TIMEOUT_S)))
        self._shut = threading.Event()
        log.info("tracing to %s (%s, service.name %s, sampled %.3g of traces)", endpoint,
                 "TLS" if tls else "plaintext", name, settings.trace_sample_ratio)

    def server_interceptor(self, holders: Mapping[str, "Holder[Any]"]) -> grpc.ServerInterceptor:
        """A span per call (health and reflection aside), with the models of the gRPC service called
        (holders: full service name -> its holder) and those the answer names."""
        from opentelemetry.instrumentation.grpc import filters, server_interceptor

        skip = filters.any_of(*(filters.service_prefix(p) for p in UNTRACED_SERVICES))
        return _ModelSpans(server_interceptor(tracer_provider=self.provider, filter_=filters.negate(skip)), holders)

    def channel(self, channel: grpc.Channel) -> grpc.Channel:
        """`channel` with a client span per call whose context travels to the server called."""
        from opentelemetry.instrumentation.grpc import client_interceptor
        from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

        return intercept_channel(channel, client_interceptor(tracer_provider=self.provider))  # type: ignore[no-any-return]

    def shutdown(self) -> None:
        """Export the spans still queued (at most FLUSH_TIMEOUT_S, logged when they do not make it) and stop."""
        if self._shut.is_set():
            return
        self._shut.set()
        done = threading.Thread(target=self.provider.shutdown, name="trace-flush", daemon=True)
        done.start()
        done.join(FLUSH_TIMEOUT_S + 0.5)
        if done.is_alive():
            log.warning("tracing: spans still queued were not exported to %s within %.0fs", self.endpoint,
                        FLUSH_TIMEOUT_S)


def _models_text(pairs: Iterator[tuple[str, str]]) -> str:
    return ",".join(dict.fromkeys(f"{name}@{version}" for name, version in pairs if name and version))


class _ModelSpans(grpc.ServerInterceptor):
    """The instrumentation's server interceptor, plus the tenure.* model attributes on its span; keeps a
    handler's own thread pool (handlers.control_behavior), which the instrumentation's wrapping drops."""

    def __init__(self, otel: grpc.ServerInterceptor, holders: Mapping[str, "Holder[Any]"]) -> None:
        self._otel = otel
        self._holders = dict(holders)
        self._loaded: dict[str, tuple[object, str]] = {}
        self._fields: dict[str, tuple[list[str], bool]] = {}

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        original: list[grpc.RpcMethodHandler | None] = []

        def annotated(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            handler = continuation(details)
            original.append(handler)
            return None if handler is None else _rewrap(handler, self._annotate(details.method))

        handler = self._otel.intercept_service(annotated, handler_call_details)
        if handler is not None and original and original[0] is not None:
            pool = getattr(_behavior(original[0]), "experimental_thread_pool", None)
            if pool is not None:
                _behavior(handler).experimental_thread_pool = pool  # type: ignore[attr-defined]
        return handler

    def _loaded_models(self, service: str) -> str:
        holder = self._holders.get(service)
        key = holder.loaded_key if holder is not None else None
        if key is None:
            return ""
        cached = self._loaded.get(service)
        if cached is not None and cached[0] is key:
            return cached[1]
        n = len(key) // 2
        text = _models_text(zip(key[:n], key[n:]))
        self._loaded[service] = (key, text)
        return text

    def _model_fields(self, method: str) -> tuple[list[str], bool]:
        """(names of the answer's ModelVersion fields, whether it has model_name/model_version) of a method."""
        found = self._fields.get(method)
        if found is None:
            found = ([], False)
            try:
                service, name = method.lstrip("/").split("/", 1)
                out = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name).output_type
            except (KeyError, ValueError):
                out = None
            if out is not None:
                found = ([f.name for f in out.fields if f.message_type is not None
                          and f.message_type.full_name == MODEL_VERSION],
                         "model_name" in out.fields_by_name and "model_version" in out.fields_by_name)
            self._fields[method] = found
        return found

    def _annotate(self, method: str) -> Callable[[Callable[..., Any], bool], Callable[..., Any]]:
        from opentelemetry import trace

        service = method.lstrip("/").split("/", 1)[0]
        fields, named = self._model_fields(method)

        def used(response: Any) -> str:
            if isinstance(response, bytes):  # an answer the servicer serialised itself (services.core.handlers)
                response = _answer_type(method).FromString(response)
            if not isinstance(response, Message):
                return ""
            pairs: list[tuple[str, str]] = []
            for name in fields:
                value = getattr(response, name)
                if isinstance(value, Message):
                    if response.HasField(name):
                        pairs.append((value.name, value.version))  # type: ignore[attr-defined]
                else:
                    pairs.extend((v.name, v.version) for v in value)
            if named:
                pairs.append((response.model_name, response.model_version))  # type: ignore[attr-defined]
            return _models_text(iter(pairs))

        def begin() -> Any:
            span = trace.get_current_span()
            if span.is_recording():
                loaded = self._loaded_models(service)
                if loaded:
                    span.set_attribute("tenure.loaded_models", loaded)
            return span

        def wrap(behavior: Callable[..., Any], response_streaming: bool) -> Callable[..., Any]:
            if response_streaming:
                def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                    span = begin()
                    pending = span.is_recording() and bool(fields or named)
                    for response in behavior(request, context):
                        if pending:
                            text = used(response)
                            if text:
                                span.set_attribute("tenure.models", text)
                                pending = False
                        yield response
                return stream

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                span = begin()
                response = behavior(request, context)
                if span.is_recording() and (fields or named):
                    text = used(response)
                    if text:
                        span.set_attribute("tenure.models", text)
                return response
            return unary

        return wrap


def _behavior(handler: grpc.RpcMethodHandler) -> Any:
    if handler.request_streaming:
        return handler.stream_stream if handler.response_streaming else handler.stream_unary
    return handler.unary_stream if handler.response_streaming else handler.unary_unary


def _rewrap(handler: grpc.RpcMethodHandler,
            wrap: Callable[[Callable[..., Any], bool], Callable[..., Any]]) -> grpc.RpcMethodHandler:
    """The handler with its behavior wrapped (serializers and thread pool kept)."""
    behavior = _behavior(handler)
    wrapped = wrap(behavior, handler.response_streaming)
    pool = getattr(behavior, "experimental_thread_pool", None)
    if pool is not None:
        wrapped.experimental_thread_pool = pool  # type: ignore[attr-defined]
    if handler.request_streaming:
        make = grpc.stream_stream_rpc_method_handler if handler.response_streaming else grpc.stream_unary_rpc_method_handler
    else:
        make = grpc.unary_stream_rpc_method_handler if handler.response_streaming else grpc.unary_unary_rpc_method_handler
    return make(wrapped, request_deserializer=handler.request_deserializer,  # type: ignore[operator]
                response_serializer=handler.response_serializer)


def _answer_type(method: str) -> type[Message]:
    """The response message class of a method ("/package.Service/Method")."""
    service, name = method.lstrip("/").split("/", 1)
    out = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name).output_type
    return message_factory.GetMessageClass(out)  # type: ignore[no-any-return]
