"""Channels to Tenure services: TLS / mutual TLS, a bearer token, the retry policy; sync and asyncio.

Every client Tenure ships (tenure.client, the CLI, the demo, the segmentation service's calls to the
recommendation service) reads the same environment variables, each overridden by an explicit argument:
TENURE_TLS_CA_FILE (CA that signed the server's certificate: TLS), TENURE_TLS_CLIENT_CERT_FILE +
TENURE_TLS_CLIENT_KEY_FILE (mutual TLS), TENURE_TLS_SERVER_NAME (name to verify instead of the target's
host), TENURE_TOKEN_FILE (file holding the bearer token to send).

Base install only: grpcio and tenure.errors, nothing of the serving stack.
"""
from __future__ import annotations

import collections
import ipaddress
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import grpc

from tenure.errors import ConfigError, TenureError

log = logging.getLogger("tenure.client")

_IDEMPOTENT: list[dict[str, str]] = [
    {"service": "tenure.v1.ScoringService"},
    {"service": "inference.GRPCInferenceService"},
    {"service": "grpc.health.v1.Health"},
    {"service": "tenure.v1.EventService", "method": "IngestEvents"},  # idempotent by event_id
    *({"service": "tenure.v1.RecommendationService", "method": m}
      for m in ("Recommend", "RecommendForBasket", "GetFeedbackReport")),
    *({"service": "tenure.v1.SegmentationService", "method": m}
      for m in ("GetSegments", "DescribeSegments", "StreamSegmentChanges", "ExportAudience", "ProfileGroup",
                "StreamLookalikeAudience", "WatchJob", "GetCustomer360")),
]
RETRY_SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": _IDEMPOTENT,
        "retryPolicy": {
            "maxAttempts": 5,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
})
"""gRPC service config of Tenure's clients: a call that ends UNAVAILABLE (the worker it reached died or
shut down, the connection broke before an answer) is tried again, up to 5 attempts with exponential
backoff; with several workers (or replicas) the retry reaches one that serves. Only idempotent
methods: RecordFeedback (appends events) and StartLookalikeJob (starts a job) are never retried.
A stream is retried only until its first answer arrives (gRPC's rule)."""
RETRY_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.enable_retries", 1), ("grpc.service_config", RETRY_SERVICE_CONFIG))
"""Channel options carrying RETRY_SERVICE_CONFIG."""
ROUND_ROBIN_SERVICE_CONFIG = json.dumps({**json.loads(RETRY_SERVICE_CONFIG),
                                         "loadBalancingConfig": [{"round_robin": {}}]})
"""RETRY_SERVICE_CONFIG with gRPC's round_robin load balancing: one connection to every address the target
resolves to (e.g. the pods behind a headless Kubernetes Service, dns:///NAME.NAMESPACE.svc.cluster.local:PORT),
calls spread over those that are connected; re-resolved when a connection drops. A retry of a failed call
goes to the next address."""
ROUND_ROBIN_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.enable_retries", 1),
                                                    ("grpc.service_config", ROUND_ROBIN_SERVICE_CONFIG))
"""Channel options carrying ROUND_ROBIN_SERVICE_CONFIG (tenure.client's round_robin=True)."""
MESSAGE_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.max_receive_message_length", 64 << 20),
                                                ("grpc.max_send_message_length", 64 << 20))
"""Channel options for bulk calls: messages up to 64 MiB (a chunk of 10,000 rows of inline features is ~3 MB)."""


class SecurityConfigError(ConfigError, TenureError):
    """TLS files, a token file or the tokens file are missing, unreadable or malformed: the server (or
    client) does not start. A ConfigError like any bad setting, and a TenureError so that the CLI
    prints it as one line."""


@dataclass(frozen=True)
class ClientSettings:
    """How a Tenure client reaches a Tenure service; each field from TENURE_<FIELD> unless given."""

    tls_ca_file: str = ""
    tls_client_cert_file: str = ""
    tls_client_key_file: str = ""
    tls_server_name: str = ""
    token_file: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: str | None) -> "ClientSettings":
        env = os.environ if environ is None else environ
        values = {name: env.get(f"TENURE_{name.upper()}", "") for name in cls.__dataclass_fields__}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def read_file(path: str, what: str) -> bytes:
    """The bytes of a TLS or token file; SecurityConfigError naming `what` when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SecurityConfigError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


def read_token(path: str) -> str:
    token = read_file(path, "token file").decode("utf-8", errors="replace").strip()
    if not token:
        raise SecurityConfigError(f"the token file {path} is empty; it should hold the bearer token on one line")
    return token


def is_loopback(address: str) -> bool:
    """Whether host:port (or [v6]:port, unix:path) only reaches this machine."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ChannelPlan:
    """What a channel to `target` needs, resolved from arguments and the environment (files read once)."""

    target: str
    options: tuple[tuple[str, Any], ...]
    credentials: grpc.ChannelCredentials | None
    """TLS credentials; None: plaintext."""
    token: str | None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Per-call metadata carrying the bearer token (empty without one)."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def plan_channel(target: str, options: Sequence[tuple[str, Any]] = (), *, ca_file: str | None = None,
                 cert_file: str | None = None, key_file: str | None = None, server_name: str | None = None,
                 token_file: str | None = None, token: str | None = None,
                 environ: Mapping[str, str] | None = None) -> ChannelPlan:
    """TLS when a CA (or a client certificate) is configured, mutual TLS with a client certificate, a bearer
    token when one is configured. Keyword arguments override the TENURE_* environment (ClientSettings)."""
    cfg = ClientSettings.from_env(environ, tls_ca_file=ca_file, tls_client_cert_file=cert_file,
                                  tls_client_key_file=key_file, tls_server_name=server_name, token_file=token_file)
    if token is None and cfg.token_file:
        token = read_token(cfg.token_file)
    if bool(cfg.tls_client_cert_file) != bool(cfg.tls_client_key_file):
        raise SecurityConfigError("mutual TLS needs both TENURE_TLS_CLIENT_CERT_FILE and TENURE_TLS_CLIENT_KEY_FILE")
    opts = list(options)
    if cfg.tls_server_name:
        opts.append(("grpc.ssl_target_name_override", cfg.tls_server_name))
    creds = None
    if cfg.tls_ca_file or cfg.tls_client_cert_file:
        creds = grpc.ssl_channel_credentials(
            root_certificates=read_file(cfg.tls_ca_file, "CA file") if cfg.tls_ca_file else None,
            private_key=read_file(cfg.tls_client_key_file, "client key file") if cfg.tls_client_key_file else None,
            certificate_chain=read_file(cfg.tls_client_cert_file, "client certificate file")
            if cfg.tls_client_cert_file else None)
    elif token and not is_loopback(target):
        log.warning("sending a bearer token to %s over plaintext; set TENURE_TLS_CA_FILE to use TLS", target)
    return ChannelPlan(target, tuple(opts), creds, token or None)


def sync_channel(plan: ChannelPlan) -> grpc.Channel:
    """A grpc.Channel for the plan (the token is not attached: send plan.metadata with each call)."""
    if plan.credentials is None:
        return grpc.insecure_channel(plan.target, options=list(plan.options))
    return grpc.secure_channel(plan.target, plan.credentials, options=list(plan.options))


def aio_channel(plan: ChannelPlan) -> grpc.aio.Channel:
    """A grpc.aio.Channel for the plan (the token is not attached: send plan.metadata with each call)."""
    if plan.credentials is None:
        return grpc.aio.insecure_channel(plan.target, options=list(plan.options))
    return grpc.aio.secure_channel(plan.target, plan.credentials, options=list(plan.options))


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                   "wait_for_ready", "compression")), grpc.ClientCallDetails):
    pass


class _BearerInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                         grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the bearer token to every call of a channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), *self._metadata]
        return _Details(details.method, details.timeout, metadata, details.credentials,
                        getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                              request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                               request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                               request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails,
                                request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)


def client_channel(target: str, options: Sequence[tuple[str, Any]] = (), *, ca_file: str | None = None,
                   cert_file: str | None = None, key_file: str | None = None, server_name: str | None = None,
                   token_file: str | None = None, token: str | None = None,
                   environ: Mapping[str, str] | None = None) -> grpc.Channel:
    """A channel to a Tenure service for raw stubs: TLS / mutual TLS and the bearer token on every call as
    plan_channel resolves them; a plain channel when nothing is configured. No retry policy unless `options`
    carry it (RETRY_OPTIONS)."""
    plan = plan_channel(target, options, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
                        server_name=server_name, token_file=token_file, token=token, environ=environ)
    channel = sync_channel(plan)
    return grpc.intercept_channel(channel, _BearerInterceptor(plan.metadata)) if plan.token else channel


def open_channel(target: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A channel to a Tenure service with the retry policy (and TLS / token from the TENURE_* environment)."""
    return client_channel(target, options=[*RETRY_OPTIONS, *options])
