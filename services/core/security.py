"""Transport security and access control: TLS / mutual TLS, bearer tokens with scopes.

Server side (ServiceSettings): tls_cert_file + tls_key_file serve TLS, tls_client_ca_file also
requires and verifies client certificates (mutual TLS), tokens_file makes every call (except the
health check, and reflection while reflection_open) present `authorization: Bearer <token>`, each
token limited to the methods its entry allows. Tokens are read from a file only (or a secret mounted
as one), never from the command line or a plain environment value; the file is re-read when it changes.

Tokens file (JSON)::

    {"tokens": [
      {"name": "checkout", "token_sha256": "<hex sha256 of the token>",
       "allow": ["tenure.v1.RecommendationService/Recommend", "tenure.v1.RecommendationService/RecommendForBasket"]},
      {"name": "admin", "token": "<the token itself>", "allow": ["*"]}
    ]}

allow entries: "*" (everything), "<package.Service>/*" (every method of a service),
"<package.Service>/<Method>" (one method).

Client side (tenure.client.channel, re-exported here: client_channel): every client Tenure ships (the CLI,
the demo, the segmentation service's calls to the recommendation service) reads the same environment variables:
TENURE_TLS_CA_FILE (CA that signed the server's certificate: TLS), TENURE_TLS_CLIENT_CERT_FILE +
TENURE_TLS_CLIENT_KEY_FILE (mutual TLS), TENURE_TLS_SERVER_NAME (name to verify instead of the
target's host), TENURE_TOKEN_FILE (file holding the bearer token to send).
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import os
import re
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import grpc

# The client side (channels, TLS and token options) lives in tenure.client.channel, part of the base install;
# re-exported here for the servers and older imports.
from tenure.client.channel import ClientSettings as ClientSettings
from tenure.client.channel import SecurityConfigError as SecurityConfigError
from tenure.client.channel import client_channel as client_channel
from tenure.client.channel import is_loopback as is_loopback
from tenure.client.channel import read_file as _read
from tenure.client.channel import read_token as read_token

log = logging.getLogger(__name__)

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
"""Methods callable without a token: load balancers and orchestrators probe health unauthenticated."""
REFLECTION_PREFIX = "/grpc.reflection."
MIN_TOKEN_CHARS = 16
_ALLOW = re.compile(r"^(\*|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+/(\*|[A-Za-z_][A-Za-z0-9_]*))$")
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
GENERATE_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


# ---------------------------------------------------------------------------------------------- server


def server_credentials(cert_file: str, key_file: str, client_ca_file: str = "") -> grpc.ServerCredentials:
    """TLS credentials of the server; with client_ca_file, clients must show a certificate it signed.
    Checked here (files readable, PEM, key matching the certificate) so that a mistake stops the
    server at start with one message rather than failing every handshake later."""
    if not (cert_file and key_file):
        raise SecurityConfigError("TLS needs both tls_cert_file and tls_key_file (TENURE_TLS_CERT_FILE, "
                                  "TENURE_TLS_KEY_FILE)")
    cert, key = _read(cert_file, "TLS certificate file"), _read(key_file, "TLS key file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, ValueError) as exc:
        raise SecurityConfigError(f"the TLS certificate {cert_file} and key {key_file} are not a PEM certificate "
                                  f"and its matching private key: {exc}") from exc
    client_ca = None
    if client_ca_file:
        client_ca = _read(client_ca_file, "client CA file")
        try:
            ssl.create_default_context(cafile=client_ca_file)
        except (ssl.SSLError, ValueError) as exc:
            raise SecurityConfigError(f"the client CA file {client_ca_file} is not PEM certificates: {exc}") from exc
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


@dataclass(frozen=True)
class Token:
    name: str
    digest: bytes
    """sha256 of the token: compared in constant time, and what is kept in memory."""
    allow: tuple[str, ...]

    def allows(self, method: str) -> bool:
        """method: 'package.Service/Method'."""
        service = method.split("/", 1)[0]
        return any(a == "*" or a == method or a == f"{service}/*" for a in self.allow)


def parse_tokens(data: Any, source: str) -> tuple[Token, ...]:
    """The tokens of a tokens file (see the module docstring); every mistake names the entry."""
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SecurityConfigError(f"{source}: expected a JSON object {{\"tokens\": [{{\"name\": ..., \"token\" or "
                                  "\"token_sha256\": ..., \"allow\": [...]}}, ...]}} with at least one token")
    tokens: list[Token] = []
    for i, entry in enumerate(entries):
        where = f"{source}: tokens[{i}]"
        if not isinstance(entry, dict):
            raise SecurityConfigError(f"{where}: expected an object with name, token or token_sha256, allow")
        unknown = sorted(set(entry) - {"name", "token", "token_sha256", "allow"})
        if unknown:
            raise SecurityConfigError(f"{where}: unknown keys {unknown}; known: name, token, token_sha256, allow")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SecurityConfigError(f"{where}: 'name' must be a non-empty string (it names the caller in logs)")
        where = f"{source}: token {name!r}"
        if any(t.name == name for t in tokens):
            raise SecurityConfigError(f"{where}: the name is used twice; names must be unique")
        plain, hashed = entry.get("token"), entry.get("token_sha256")
        if (plain is None) == (hashed is None):
            raise SecurityConfigError(f"{where}: give exactly one of 'token' or 'token_sha256'")
        if plain is not None:
            if not isinstance(plain, str) or len(plain.strip()) < MIN_TOKEN_CHARS or plain != plain.strip():
                raise SecurityConfigError(f"{where}: 'token' must be a string of at least {MIN_TOKEN_CHARS} characters "
                                          f"without surrounding spaces; generate one with {GENERATE_HINT}")
            digest = hashlib.sha256(plain.encode()).digest()
        else:
            if not isinstance(hashed, str) or not _SHA256_HEX.match(hashed):
                raise SecurityConfigError(f"{where}: 'token_sha256' must be 64 hex digits (sha256 of the token)")
            digest = bytes.fromhex(hashed)
        allow = entry.get("allow")
        if not isinstance(allow, list) or not allow or not all(isinstance(a, str) and _ALLOW.match(a) for a in allow):
            raise SecurityConfigError(f"{where}: 'allow' must be a non-empty list of \"*\", \"package.Service/*\" or "
                                      f"\"package.Service/Method\", got {allow!r}")
        twin = next((t.name for t in tokens if hmac.compare_digest(t.digest, digest)), None)
        if twin is not None:
            raise SecurityConfigError(f"{where}: the same token as token {twin!r}; give each caller its own")
        tokens.append(Token(name, digest, tuple(allow)))
    return tuple(tokens)


def load_tokens(path: str) -> tuple[Token, ...]:
    raw = _read(path, "tokens file")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SecurityConfigError(f"{path}: the tokens file is not valid JSON: {exc}") from exc
    return parse_tokens(data, path)


class TokenTable:
    """The tokens of a file, re-read when the file changes (rotation without a restart); a change
    that does not parse is logged and the previous tokens stay in force."""

    CHECK_EVERY_S = 1.0

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp = self._stat()
        self.tokens = load_tokens(path)
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.path)
        except OSError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> tuple[Token, ...]:
        now = time.monotonic()
        if now - self._checked < self.CHECK_EVERY_S or not self._lock.acquire(blocking=False):
            return self.tokens
        try:
            self._checked = now
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self.tokens = load_tokens(self.path)
                    log.info("tokens file reloaded: %d token(s)", len(self.tokens))
                except SecurityConfigError as exc:
                    log.error("tokens file changed but cannot be used; keeping the previous tokens: %s", exc)
            return self.tokens
        finally:
            self._lock.release()

    def find(self, presented: str) -> Token | None:
        """The token entry whose digest matches; every entry is compared (no early exit)."""
        digest = hashlib.sha256(presented.encode("utf-8", errors="surrogatepass")).digest()
        found = None
        for token in self.current():
            if hmac.compare_digest(token.digest, digest):
                found = token
        return found


class _Throttled:
    """Log a repeated event at most once per interval, with the number of occurrences since."""

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._count: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, level: int, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self._count[key] += 1
            if now - self._last.get(key, -1e9) < self.interval_s:
                return
            self._last[key] = now
            n = self._count.pop(key)
        log.log(level, msg + " (%d time(s) since the last such message)", *args, n)


def _denying(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str,
             note: Callable[[grpc.ServicerContext], None]) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that answers code/message without reading the request."""

    def deny(_request: Any, context: grpc.ServicerContext) -> Any:
        note(context)
        context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class AuthInterceptor(grpc.ServerInterceptor):
    """Bearer tokens with scopes: no or unknown token -> UNAUTHENTICATED, a valid token calling a
    method its entry does not allow -> PERMISSION_DENIED (naming the token's name, never the token)."""

    def __init__(self, tokens: TokenTable, reflection_open: bool = True) -> None:
        self.tokens = tokens
        self.open_prefixes = OPEN_PREFIXES + ((REFLECTION_PREFIX,) if reflection_open else ())
        self._log = _Throttled()

    def _decide(self, method: str, metadata: Iterable[tuple[str, Any]]) -> tuple[grpc.StatusCode, str, str] | None:
        values = [v for k, v in metadata if k == "authorization"]
        if not values:
            return (grpc.StatusCode.UNAUTHENTICATED, "this server requires a token: send the metadata "
                    "'authorization: Bearer <token>'", "no token")
        value = values[0]
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        scheme, _, presented = value.strip().partition(" ")
        presented = presented.strip()
        if len(values) > 1 or scheme.lower() != "bearer" or not presented:
            return (grpc.StatusCode.UNAUTHENTICATED, "expected one 'authorization: Bearer <token>' metadata entry",
                    "malformed authorization")
        token = self.tokens.find(presented)
        if token is None:
            return (grpc.StatusCode.UNAUTHENTICATED, "the bearer token is not valid on this server", "unknown token")
        name = method.lstrip("/")
        if not token.allows(name):
            return (grpc.StatusCode.PERMISSION_DENIED, f"token {token.name!r} may not call {name}; it may call: "
                    f"{', '.join(token.allow)}", f"token {token.name!r} out of scope")
        return None

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        if method.startswith(self.open_prefixes):
            return continuation(handler_call_details)
        denied = self._decide(method, handler_call_details.invocation_metadata or ())
        handler = continuation(handler_call_details)
        if denied is None or handler is None:
            return handler
        code, message, why = denied

        def note(context: grpc.ServicerContext) -> None:
            level = logging.WARNING if code == grpc.StatusCode.PERMISSION_DENIED else logging.INFO
            self._log(level, f"{why}:{method}", "%s: %s denied to %s (%s)", code.name, method, context.peer(), why)

        return _denying(handler, code, message, note)


def server_interceptors(tokens_file: str, reflection_open: bool) -> list[grpc.ServerInterceptor]:
    """The auth interceptor when a tokens file is configured (none otherwise: every call is allowed)."""
    if not tokens_file:
        return []
    table = TokenTable(tokens_file)
    log.info("bearer tokens required (%d token(s): %s); health%s open", len(table.tokens),
             ", ".join(t.name for t in table.tokens), " and reflection" if reflection_open else "")
    return [AuthInterceptor(table, reflection_open)]


def warn_if_exposed(address: str, tls: bool, client_certs: bool, tokens: bool) -> None:
    """Binding beyond loopback without TLS or authentication is allowed (a mesh may do both) but worth a line."""
    if is_loopback(address):
        return
    if not tls and not tokens:
        log.warning("listening on %s without TLS or tokens: anyone who can reach it can call every method; "
                    "set TENURE_TLS_CERT_FILE/TENURE_TLS_KEY_FILE and TENURE_TOKENS_FILE", address)
    elif not tls:
        log.warning("listening on %s with tokens but without TLS: tokens travel in clear text", address)
    elif not (tokens or client_certs):
        log.warning("listening on %s with TLS but without tokens or client certificates: any client that can "
                    "connect can call every method", address)
