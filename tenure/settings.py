"""Typed settings read from the environment (prefix TENURE_). Units are part of the names."""
from __future__ import annotations

import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# --- settings validation (part: settings validation) -------------------------------------------------
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
_BOOL_ALLOWED = "true or false (1/0, yes/no, on/off)"


@dataclass(frozen=True)
class Limit:
    """What a setting allows beyond its type: a closed range [lo, hi], a set of choices, non-empty text."""

    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    nonempty: bool = False
    pattern: str = ""
    """Text must match this regular expression in full (`pattern_text` says it in words)."""
    pattern_text: str = ""


class _Invalid(Exception):
    """A value that is not allowed; `allowed` says what would be (the caller adds where it came from)."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


def _type_args(hint: Any) -> tuple[Any, bool]:
    """(the underlying type, whether None is allowed) of a field's type hint: `Path | None` -> (Path, True)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else hint), True
    return hint, False


def _describe(hint: Any, limit: Limit | None) -> str:
    """What a setting allows, in words: 'a whole number from 1 to 1024'."""
    base, optional = _type_args(hint)
    if limit is not None and limit.pattern:
        text = limit.pattern_text
    elif limit is not None and limit.choices:
        text = "one of " + ", ".join(limit.choices)
    elif base is bool:
        text = _BOOL_ALLOWED
    elif base in (int, float):
        kind = "a whole number" if base is int else "a number"
        lo, hi = (limit.lo, limit.hi) if limit is not None else (None, None)
        fmt = (lambda v: f"{v:g}") if base is float else (lambda v: f"{int(v)}")
        if lo is not None and hi is not None:
            text = f"{kind} from {fmt(lo)} to {fmt(hi)}"
        elif lo is not None:
            text = f"{kind} of at least {fmt(lo)}"
        elif hi is not None:
            text = f"{kind} of at most {fmt(hi)}"
        else:
            text = kind
    elif base is Path:
        text = "a path"
    elif base is str:
        text = "non-empty text" if limit is not None and limit.nonempty else "text"
    elif typing.get_origin(base) is tuple:
        text = "a list (comma-separated in the environment)"
    else:
        text = f"a {getattr(base, '__name__', base)}"
    return f"{text} (or empty/null for none)" if optional else text


def _parse_text(raw: str, hint: Any, limit: Limit | None) -> Any:
    """A setting's text (environment variable, string in the settings file) as a value of the field's type."""
    base, optional = _type_args(hint)
    text = raw.strip()
    if optional and text == "":
        return None
    try:
        if base is bool:
            word = text.lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise ValueError(raw)
        if base is int:
            return int(text)
        if base is float:
            return float(text)
        if base is Path:
            return Path(text)
        if typing.get_origin(base) is tuple:
            return tuple(item.strip() for item in text.split(",") if item.strip())
    except ValueError as exc:
        raise _Invalid(_describe(hint, limit)) from exc
    return raw


def _check(value: Any, hint: Any, limit: Limit | None) -> Any:
    """The value (normalised: int -> float for float fields, str -> Path, list -> tuple) if its type and
    limits allow it; _Invalid otherwise. Types this does not know are accepted as they are."""
    base, optional = _type_args(hint)
    if value is None:
        if optional:
            return None
        raise _Invalid(_describe(hint, limit))
    bad = _Invalid(_describe(hint, limit))
    if base is bool:
        if not isinstance(value, bool):
            raise bad
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        value = float(value)
    elif base is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise bad
        value = Path(value)
    elif base is str:
        if not isinstance(value, str):
            raise bad
    elif typing.get_origin(base) is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise bad
        value = tuple(value)
    if limit is not None:
        if limit.choices and value not in limit.choices:
            raise bad
        if limit.nonempty and not str(value).strip():
            raise bad
        if limit.pattern and not re.fullmatch(limit.pattern, str(value)):
            raise bad
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (limit.lo is not None and value < limit.lo) or (limit.hi is not None and value > limit.hi):
                raise bad
    return value


def _env_name(name: str) -> str:
    return f"TENURE_{name.upper()}"


def _read_settings_file(path: Path, known: Any, what: str = "settings", error: type[Exception] | None = None
                        ) -> dict[str, Any]:
    """A settings file: a JSON object of field names (the same names as TENURE_<FIELD>, lower case);
    anything else raises `error` (ConfigError unless given) naming the file and what was expected."""
    import json

    from tenure.errors import ConfigError

    fail = error or ConfigError
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise fail(f"{what} file {path}: cannot read it: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise fail(f"{what} file {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise fail(f"{what} file {path}: expected a JSON object of {what}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise fail(f"{what} file {path}: unknown {what} {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return data
# --- end settings validation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSettings:
    """Settings of one gRPC service process. Every field can be set as TENURE_<FIELD> in the env, or in a
    JSON settings file of field names (TENURE_SETTINGS_FILE or `tenure serve --settings FILE`); values are
    checked at start (types; ranges and choices in SERVICE_LIMITS): a bad one is a ConfigError."""

    models_dir: Path = Path("models")
    """Model repository root: models/<name>/<version>/{model.onnx,manifest.json}."""
    host: str = "127.0.0.1"
    """Address to bind. Use 0.0.0.0 / [::] in containers."""
    scoring_port: int = 50051
    recommendation_port: int = 50052
    segmentation_port: int = 50053
    ort_threads: int = 1
    """onnxruntime intra-op threads per session (spinning is always off); 0 = the CPU quota / workers."""
    tree_backend: str = "auto"
    """auto: a model whose version holds a compiled forest (training.compiled) runs it once it matches
    onnxruntime on sample rows; onnxruntime: always onnxruntime."""
    workers: int = 1
    """Server processes sharing the port (SO_REUSEPORT); 0 = one per CPU of the quota."""
    max_batch_rows_per_run: int = 1024
    """Most rows the dynamic batcher puts in one onnxruntime run."""
    max_queue_delay_us: int = 0
    """How long the batcher may wait for more rows when a batch is not full (0: never wait)."""
    max_queue_rows: int = 100_000
    """Rows waiting per model beyond which calls get RESOURCE_EXHAUSTED instead of queueing."""
    stream_window: int = 4
    """Chunks of one bulk stream processed at once; beyond that the server stops reading (flow control)."""
    max_batch_rows: int = 10_000
    """Most rows in one Score request / stream chunk; larger -> RESOURCE_EXHAUSTED."""
    pin_workers: bool = True
    """With workers > 1 and at least as many cores, pin each worker process to a core of its own."""
    server_threads: int = 8
    """Handler threads per worker process: calls running at once (a stream holds one for its whole
    length). More calls than this wait for a free thread, up to max_concurrent_rpcs. Measured here:
    8 threads answer single-row calls at ~1.2x the req/s of 16 at concurrency 64 (less GIL handoff).
    At least max_streams + bulk_calls + 2 run (see bulk_calls), so that short calls always find one."""
    max_streams: int = 4
    """Streaming calls (StreamScore, ModelStreamInfer, audiences) running at once per worker; more
    get RESOURCE_EXHAUSTED, so that streams never hold every handler thread and starve short calls."""
    max_concurrent_rpcs: int = 256
    """Calls accepted at once (running or waiting for a thread); beyond that the server answers
    RESOURCE_EXHAUSTED instead of queueing."""
    shutdown_grace_s: float = 10.0
    """On SIGTERM: stop accepting, let in-flight calls finish for this long."""
    churn_band_medium: float = 0.33
    churn_band_high: float = 0.66
    purchase_band_medium: float = 0.2
    """P(purchase within 30 days) at or above this is a "medium" purchase band of the targeting grid."""
    purchase_band_high: float = 0.5
    """... and at or above this "high"."""
    state_dir: Path = Path("state")
    """Where services keep what they record: segment moves, feedback events."""
    recommendation_target: str = ""
    """host:port of the recommendation service, for the 360-degree view (empty: host:recommendation_port)."""
    recommend_exclude_bought_days: float = 1.0
    """Recommend leaves out products a customer with events since the snapshot bought within this many days of their
    latest event (what they just bought at the checkout; 0: never)."""
    feedback_exclude_days: float = 7.0
    """Recommend leaves out products shown to the customer this recently without a click (0: never)."""
    online_store: str = ""
    """The online feature store that events (EventService) update and every call reads: empty = embedded, in the
    service process; redis://HOST:PORT[/DB] = a shared Redis (any Redis-protocol server) that replicas and the three
    services share; off = no events, answers from the snapshot only."""
    event_retention_s: float = 7 * 86_400.0
    """How long an event id is remembered: a replay within this window changes nothing (Redis key TTL; the embedded
    store keeps the newest 1,000,000 ids)."""
    online_max_new_customers: int = 50_000
    """The embedded online store holds at most this many customers the snapshot does not know (created by events);
    further events for yet more new customers are REJECTED until the next snapshot (memory stays bounded; a shared
    Redis is bounded by its own maxmemory)."""
    reload_interval_s: float = 5.0
    """Poll the repository for new versions (and PINNED) every N seconds; a version is served once it is
    complete, verifies and loads (0 = load once at start). (part: model lifecycle)"""
    # --- security (part: security) ---------------------------------------------------------------------
    tls_cert_file: str = ""
    """PEM certificate (chain) the server presents; with tls_key_file the port serves TLS only."""
    tls_key_file: str = ""
    """PEM private key of tls_cert_file."""
    tls_client_ca_file: str = ""
    """Mutual TLS: PEM CA(s); clients must present a certificate they signed (needs tls_cert_file)."""
    tokens_file: str = ""
    """JSON file of bearer tokens and the methods each may call (services/core/security.py); empty: no
    token needed. Re-read when it changes. Health is always open."""
    reflection_open: bool = True
    """With tokens_file: server reflection callable without a token (False: it needs a token allowing it)."""
    # --- end security ------------------------------------------------------------------------------------
    # --- overload (part: overload, decoding, deadlines, cancellation) ----------------------------------
    max_request_bytes: int = 16 * 1024 * 1024
    """Largest request message (each message of a stream); grpc refuses a bigger one with
    RESOURCE_EXHAUSTED before reading it into memory. 16 MiB holds the largest valid request with room
    to spare: max_batch_rows (10,000) rows of inline features (measured: 2.7 MB for a 59-feature
    snapshot with 22-character keys, 4.7 MB as one FP64 ModelInfer tensor)."""
    stream_idle_timeout_s: float = 30.0
    """A request stream (StreamScore, ModelStreamInfer) that sends nothing for this long while none of
    its requests is being answered ends with DEADLINE_EXCEEDED and frees its slot (max_streams)."""
    bulk_calls: int = 2
    """Bulk unary calls (Predict, GetSegments, RecordFeedback, lookalike seeds over 256 rows; Score and
    ModelInfer over 4,096; ProfileGroup) running at once per worker; one more gets RESOURCE_EXHAUSTED at once
    with a retry hint. The server runs max(server_threads, max_streams + bulk_calls + 2) handler
    threads, so small calls always find one; health and readiness have a pool of their own."""
    switch_interval_ms: float = 1.0
    """How long a service thread may hold the GIL while another waits (sys.setswitchinterval; Python's default
    is 5 ms): shorter keeps a one-customer call quick while bulk calls run (make faults, scenario b)."""
    # --- end overload ------------------------------------------------------------------------------------
    # --- process faults (part: process faults) ---------------------------------------------------------
    shutdown_lame_duck_s: float = 0.5
    """On SIGTERM: first keep serving every call this long (health already NOT_SERVING, part of
    shutdown_grace_s) so that calls clients sent before the signal are taken in before the server shuts."""
    # --- end process faults ------------------------------------------------------------------------------
    # --- input validation, feedback abuse (part: input validation) ---------------------------------------
    feedback_index_max_entries: int = 1_000_000
    """Customer x product entries of the recommendation service's in-memory recently-shown index, per
    worker (~0.2 KB each: 1,000,000 is ~210 MB at most, measured); beyond it the customers updated least
    recently leave the index (their events stay in feedback.sqlite)."""
    # --- end input validation ----------------------------------------------------------------------------
    # --- tracing (part: tracing) ---------------------------------------------------------------------------
    otlp_endpoint: str = ""
    """host:port of an OpenTelemetry collector's OTLP/gRPC receiver (e.g. collector:4317; https://host:port
    for TLS): a span per call is exported there. Empty: tracing is off (OpenTelemetry is not even imported).
    OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES override the resource (default service.name tenure-<service>)."""
    otlp_ca_file: str = ""
    """PEM CA(s) that signed the collector's certificate: the export uses TLS (empty: plaintext, unless
    otlp_endpoint starts with https://, then TLS with the system's CAs)."""
    trace_sample_ratio: float = 1.0
    """Share of traces recorded (0..1) for calls that arrive without a trace context; a call that carries
    one follows its caller's decision."""
    # --- end tracing -------------------------------------------------------------------------------------
    # --- metrics and logs (part: metrics) ----------------------------------------------------------------
    metrics_port: int = 0
    """Prometheus /metrics on this port (0: off), per service process: each service needs its own (with
    --workers N the parent serves it once for all workers). `tenure run` gives scoring this port,
    recommendation +1, segmentation +2."""
    metrics_host: str = "127.0.0.1"
    """Address the /metrics endpoint binds (0.0.0.0 in containers)."""
    access_log: str = "errors"
    """JSON access-log lines: "all" (one per call), "errors" (calls that did not end OK) or "off". Measured
    (make bench, 2-core VM): "all" costs ModelInfer 1 row c=1 ~18% of its req/s (p99 1.44x the bare handler's
    vs 1.20x with "errors"), hence the default."""
    # --- end metrics -------------------------------------------------------------------------------------

    # --- settings validation (part: settings validation) ---------------------------------------------
    def __post_init__(self) -> None:
        """Every field is type-checked (fields without a SERVICE_LIMITS entry too) and range-checked; a
        bad value raises ConfigError naming the setting, what it got and what is allowed."""
        from tenure.errors import ConfigError

        hints = _field_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                checked = _check(value, hints.get(f.name, Any), SERVICE_LIMITS.get(f.name))
            except _Invalid as bad:
                raise ConfigError(f"setting {f.name} ({_env_name(f.name)}): got {value!r}; allowed: {bad.allowed}") \
                    from None
            if checked is not value:
                object.__setattr__(self, f.name, checked)
        for low, high in (("churn_band_medium", "churn_band_high"), ("purchase_band_medium", "purchase_band_high")):
            if getattr(self, low, 0.0) > getattr(self, high, 1.0):
                raise ConfigError(f"settings {low} ({_env_name(low)}) and {high} ({_env_name(high)}): got "
                                  f"{getattr(self, low)!r} > {getattr(self, high)!r}; allowed: {low} <= {high}")

    @classmethod
    def from_env(cls, settings_file: Path | str | None = None, *, only: frozenset[str] | None = None,
                 **overrides: Any) -> "ServiceSettings":
        """Defaults < settings file (JSON object of field names; `settings_file`, else TENURE_SETTINGS_FILE)
        < TENURE_<FIELD> environment variables < overrides (CLI flags; None = not given). A bad value is a
        ConfigError naming where it came from (the variable, the file's key or the flag).
        only: read just these fields (the others keep their defaults, their values are not looked at);
        a settings file with an unknown key is still an error."""
        from tenure.errors import ConfigError

        hints = _field_hints(cls)
        known = {f.name for f in fields(cls)}
        wanted = known if only is None else known & only
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown settings {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        path = settings_file if settings_file is not None else (os.environ.get("TENURE_SETTINGS_FILE") or None)
        sources: list[tuple[str, dict[str, Any]]] = []
        if path is not None:
            data = _read_settings_file(Path(path), known)
            sources.append((f"settings file {path}: ", {k: v for k, v in data.items() if k in wanted}))
        env = {name: os.environ[_env_name(name)] for name in wanted if _env_name(name) in os.environ}
        sources.append(("env", env))
        sources.append(("flag", {k: v for k, v in overrides.items() if v is not None}))
        values: dict[str, Any] = {}
        for where, given in sources:
            for name, raw in given.items():
                label = (_env_name(name) if where == "env" else f"--{name.replace('_', '-')}" if where == "flag"
                         else where + name)
                hint, limit = hints.get(name, Any), SERVICE_LIMITS.get(name)
                try:
                    value = _parse_text(raw, hint, limit) if isinstance(raw, str) else raw
                    values[name] = _check(value, hint, limit)
                except _Invalid as bad:
                    raise ConfigError(f"{label}: got {raw!r}; allowed: {bad.allowed}") from None
        return cls(**values)
    # --- end settings validation ---------------------------------------------------------------------


# --- settings validation (part: settings validation) -----------------------------------------------------
SERVICE_LIMITS: dict[str, Limit] = {
    "host": Limit(nonempty=True),
    "scoring_port": Limit(0, 65535),
    "recommendation_port": Limit(0, 65535),
    "segmentation_port": Limit(0, 65535),
    "ort_threads": Limit(0, 256),
    "tree_backend": Limit(choices=("auto", "onnxruntime")),
    "workers": Limit(0, 256),
    "max_batch_rows_per_run": Limit(1, 1_000_000),
    "max_queue_delay_us": Limit(0, 10_000_000),
    "max_queue_rows": Limit(1, 100_000_000),
    "stream_window": Limit(1, 1024),
    "max_batch_rows": Limit(1, 10_000_000),
    "server_threads": Limit(1, 1024),
    "max_streams": Limit(1, 1024),
    "max_concurrent_rpcs": Limit(1, 1_000_000),
    "shutdown_grace_s": Limit(0, 3600),
    "churn_band_medium": Limit(0, 1),
    "churn_band_high": Limit(0, 1),
    "purchase_band_medium": Limit(0, 1),
    "purchase_band_high": Limit(0, 1),
    "feedback_exclude_days": Limit(0, 3650),
    "reload_interval_s": Limit(0, 86400),
}
"""Ranges and choices of ServiceSettings fields; a field without an entry is still type-checked."""
# --- overload (part: overload, decoding, deadlines, cancellation) ---
SERVICE_LIMITS.update({
    "max_request_bytes": Limit(1024, 2**31 - 1),
    "stream_idle_timeout_s": Limit(0.01, 86400),
    "bulk_calls": Limit(1, 1024),
    "switch_interval_ms": Limit(0.1, 100),
})
# --- end overload ---
# --- process faults (part: process faults) ---
SERVICE_LIMITS.update({"shutdown_lame_duck_s": Limit(0, 60)})
# --- end process faults ---
# --- input validation (part: input validation) ---
SERVICE_LIMITS.update({"feedback_index_max_entries": Limit(1_000, 1_000_000_000)})
# --- end input validation ---
# --- tracing (part: tracing) ---
SERVICE_LIMITS.update({"trace_sample_ratio": Limit(0, 1)})
# --- end tracing ---
# --- metrics (part: metrics) ---
SERVICE_LIMITS.update({"metrics_port": Limit(0, 65535), "metrics_host": Limit(nonempty=True),
                       "access_log": Limit(choices=("all", "errors", "off"))})
# --- end metrics ---
SERVICE_LIMITS.update({
    "online_store": Limit(pattern=r"|off|embedded|(redis|rediss|unix)://\S+",
                          pattern_text="empty (the embedded store), off, or redis://HOST:PORT[/DB] (rediss://, unix://)"),
    "event_retention_s": Limit(1, 10 * 365 * 86_400),
    "online_max_new_customers": Limit(0, 100_000_000),
    "recommend_exclude_bought_days": Limit(0, 3650),
})

_HINTS: dict[type, dict[str, Any]] = {}


def _field_hints(cls: type) -> dict[str, Any]:
    """A settings class's field types, resolved once per class (the annotations are strings here)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def service_settings_or_exit(prog: str) -> ServiceSettings:
    """ServiceSettings.from_env() for an entry point (`python -m services.X`): a bad setting is one line on
    stderr and exit code 2 (TENURE_DEBUG=1: the traceback)."""
    import sys

    from tenure.errors import ConfigError

    try:
        return ServiceSettings.from_env()
    except ConfigError as exc:
        if os.environ.get("TENURE_DEBUG", "").strip().lower() in TRUE_WORDS:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
# --- end settings validation ---------------------------------------------------------------------------


# --- CLI settings (part: CLI) ----------------------------------------------------------------------------
STORAGE_FIELDS = frozenset({"models_dir", "state_dir"})


def storage_dirs(models_dir: Path | str | None = None, state_dir: Path | str | None = None,
                 settings_file: Path | str | None = None) -> tuple[Path, Path]:
    """(model repository, state directory) as the services resolve them: the argument (a CLI flag; None =
    not given) > TENURE_MODELS_DIR / TENURE_STATE_DIR > the settings file (`settings_file`, else
    TENURE_SETTINGS_FILE) > "models" / "state". Only these two settings are read and checked, so that a
    bad service-only setting does not stop `tenure train`; a bad one of these is a ConfigError."""
    settings = ServiceSettings.from_env(settings_file, only=STORAGE_FIELDS, models_dir=models_dir,
                                        state_dir=state_dir)
    return settings.models_dir, settings.state_dir
# --- end CLI settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSettings:
    """Training knobs. Each can be set in a JSON config file (`tenure train --config FILE`, keys =
    field names), as TENURE_<FIELD> in the environment, or by a CLI flag; later ones win."""

    churn_horizon_days: int = 90
    """Churn = no order within this many days (a shorter history trains a shorter label window
    and extends it to this horizon, see training.windows)."""
    clv_horizon_days: int = 365
    """Predicted CLV covers this many days after the cutoff."""
    purchase_horizons: tuple[int, ...] = (7, 30, 90)
    """P(an order within each of these many days); the services know 7, 30 and 90."""
    channel_horizon_days: int = 90
    propensity_horizon_days: int = 30
    active_window_days: int = 365
    """Churn is modelled for customers with an order in this many days before the cutoff."""
    uplift_window_days: int = 14
    """Campaign uplift: a purchase counts when it falls within this many days after the send."""
    n_candidates_train: int = 100
    n_candidates_eval: int = 200
    propensity_train_customers: int = 10_000
    seed: int = 7
    lgbm_threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))


    def __post_init__(self) -> None:
        from tenure.errors import DataError

        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if f.name != "seed" and any(isinstance(v, int) and not isinstance(v, bool) and v < 1 for v in values):
                raise DataError(f"training setting {f.name}: must be at least 1, got {value}")
        if not self.purchase_horizons:
            raise DataError("training setting purchase_horizons: give at least one horizon, e.g. 7,30,90")

    @classmethod
    def from_sources(cls, config: Path | None = None, **overrides: Any) -> "TrainSettings":
        """Defaults < config file (JSON object of field names) < TENURE_<FIELD> env < overrides (not None)."""
        from tenure.errors import DataError

        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        if config is not None:
            values.update(_read_settings_file(config, known, "training settings", DataError))
        for name in known:
            raw = os.environ.get(f"TENURE_{name.upper()}")
            if raw is not None:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        out: dict[str, Any] = {}
        for name, value in values.items():
            try:
                if name == "purchase_horizons":
                    out[name] = parse_horizons(value)
                elif known[name].type == "int" and not isinstance(value, int):
                    out[name] = int(value)
                else:
                    out[name] = value
            except (TypeError, ValueError) as exc:
                raise DataError(f"training setting {name}: expected a whole number of days, got {value!r}") from exc
        return cls(**out)


def parse_horizons(value: Any) -> tuple[int, ...]:
    """'7,30,90', [7, 30, 90] or (7,) -> (7, 30, 90): sorted, distinct whole days."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(sorted({int(str(v).strip()) for v in items if str(v).strip()}))


def cpu_quota() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota (containers)."""
    n = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return n
