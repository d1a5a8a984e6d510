"""Prometheus metrics of a service process, and the HTTP endpoint that exposes them.

Names follow the Triton / MLServer style (tenure_<what>_<unit>). With several worker processes
(settings.workers > 1) the parent sets PROMETHEUS_MULTIPROC_DIR before it starts them (`multiprocess_dir`):
every worker writes its values to files there and the parent serves one endpoint that sums them
(prometheus_client's MultiProcessCollector), so a scrape sees the service once, not one worker at random.
prometheus_client chooses in-memory or file-backed values when it is first imported: this module must be
imported after the variable is set (spawned workers import it fresh).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from bisect import bisect_left
from typing import Any, Callable, Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client import multiprocess as _multiprocess

disable_created_metrics()  # no *_created series: half the lines of a scrape, and nothing here reads them
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):  # the operator's directory may not exist yet: values are files in it
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
QUEUE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)

REQUESTS = Counter("tenure_requests", "gRPC calls handled, by service, method and final status code",
                   ["service", "method", "code"])
DURATION = Histogram("tenure_request_duration_seconds", "Time from the handler's start to the call's status",
                     ["service", "method"], buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("tenure_requests_in_flight", "gRPC calls being handled now", ["service", "method"],
                  multiprocess_mode="livesum")
BATCH_ROWS = Histogram("tenure_batch_rows", "Rows per onnxruntime run of the dynamic batcher", ["model"],
                       buckets=ROW_BUCKETS)
BATCH_QUEUE = Histogram("tenure_batch_queue_seconds", "Time a request waited in the batcher's queue (0 when the "
                        "model was idle)", ["model"], buckets=QUEUE_BUCKETS)
ROWS_SCORED = Counter("tenure_rows_scored", "Rows a model computed (calls, not warm-up)", ["model", "version"])
MODEL_INFO = Gauge("tenure_model_info", "1 for each model version a service process serves (0 once replaced)",
                   ["model", "version"], multiprocess_mode="livemax")
MODEL_LOADED = Gauge("tenure_model_loaded_timestamp_seconds", "When the served model version was loaded (Unix s)",
                     ["model", "version"], multiprocess_mode="livemax")
SNAPSHOT_TIME = Gauge("tenure_feature_snapshot_timestamp_seconds", "Cutoff (as-of time, Unix s) of the feature "
                      "snapshot served; its age is time() - this", ["version"], multiprocess_mode="livemax")
SEGMENT_MOVES = Counter("tenure_segment_moves", "Customers whose segment changed (at a re-scoring or after an event), by family",
                        ["family"])
RESCORINGS = Counter("tenure_rescorings", "Re-scorings of the base recorded (a new snapshot or model version)")
FEEDBACK = Counter("tenure_feedback_events", "Feedback events received, by type and outcome (recorded/refused)",
                   ["type", "outcome"])

EXPORTED = ("tenure_requests_total", "tenure_request_duration_seconds", "tenure_requests_in_flight",
            "tenure_batch_rows", "tenure_batch_queue_seconds", "tenure_rows_scored_total", "tenure_model_info",
            "tenure_model_loaded_timestamp_seconds", "tenure_feature_snapshot_timestamp_seconds",
            "tenure_segment_moves_total", "tenure_rescorings_total", "tenure_feedback_events_total")
"""The metric names as scraped (counters get _total; histograms also _bucket, _sum and _count)."""

_served: dict[tuple[str, str], int] = {}
_served_lock = threading.Lock()


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def serve(port: int, host: str = "127.0.0.1") -> int:
    """Start the /metrics endpoint (a daemon thread) on host:port (0: any free port); the bound port.
    In multiprocess mode it sums the workers' files instead of this process's values."""
    registry: CollectorRegistry = REGISTRY
    if multiprocess():
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)


def multiprocess_dir() -> str:
    """Set PROMETHEUS_MULTIPROC_DIR for the workers about to start: the operator's (emptied of an earlier
    run's files) or a new temporary directory (removed by `cleanup_multiprocess_dir`)."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
        return path
    path = tempfile.mkdtemp(prefix="tenure-metrics-")
    os.environ[MULTIPROC_ENV] = path
    os.environ["TENURE_METRICS_TMPDIR"] = path
    return path


def cleanup_multiprocess_dir() -> None:
    path = os.environ.pop("TENURE_METRICS_TMPDIR", "")
    if path:
        shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """A worker is gone: its live gauges (in flight, served models) no longer count."""
    if multiprocess():
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def models_swapped(old: Iterable[tuple[str, str]], new: Iterable[tuple[str, str]]) -> None:
    """A holder of this process now serves `new` (model, version) pairs instead of `old`: tenure_model_info
    and its load time follow, counted per process (two holders may serve the same version)."""
    now = time.time()
    with _served_lock:
        for key in new:
            _served[key] = _served.get(key, 0) + 1
            if _served[key] == 1:
                MODEL_INFO.labels(*key).set(1)
                MODEL_LOADED.labels(*key).set(now)
        for key in old:
            left = _served.get(key, 0) - 1
            if left > 0:
                _served[key] = left
                continue
            _served.pop(key, None)
            MODEL_INFO.labels(*key).set(0)  # multiprocess files keep the series: 0 says "not served"
            MODEL_LOADED.labels(*key).set(0)
            if not multiprocess():
                MODEL_INFO.remove(*key)
                MODEL_LOADED.remove(*key)


_snapshots: dict[str, int] = {}


def snapshot_swapped(old: str, new: str, cutoff: Any) -> None:
    """A holder of this process serves the feature snapshot version `new` (as-of `cutoff`, a pandas
    Timestamp or datetime) instead of `old` ("" for none)."""
    stamp = getattr(cutoff, "timestamp", None)
    with _served_lock:
        if new and stamp is not None:
            _snapshots[new] = _snapshots.get(new, 0) + 1
            SNAPSHOT_TIME.labels(new).set(float(stamp()))
        if old and old in _snapshots:
            _snapshots[old] -= 1
            if _snapshots[old] <= 0:
                del _snapshots[old]
                SNAPSHOT_TIME.labels(old).set(0)
                if not multiprocess():
                    SNAPSHOT_TIME.remove(old)


def fast_observe(child: Any) -> Callable[[float], None]:
    """`child.observe` of a labelled Histogram child for the serving path: the same two value increments
    (the sum, the first bucket whose bound is >= the amount) without prometheus_client's per-call checks,
    which a labelled child always passes. Falls back to child.observe should the internals differ."""
    try:
        bounds, buckets, total = list(child._upper_bounds), list(child._buckets), child._sum
        assert len(bounds) == len(buckets) and bounds[-1] == float("inf") and hasattr(total, "inc")
    except (AttributeError, AssertionError):
        return child.observe  # type: ignore[no-any-return]
    add = total.inc

    def observe(amount: float) -> None:
        add(amount)
        if amount == amount:  # NaN is in no bucket (prometheus_client's loop finds none either)
            buckets[bisect_left(bounds, amount)].inc(1)

    return observe


def fast_add(child: Any) -> Callable[[float], None]:
    """`child.inc` of a labelled Counter child or a labelled (not "mostrecent") Gauge child for the serving
    path: the value's own increment (a gauge's dec is fast_add(child)(-1)); falls back to child.inc."""
    value = getattr(child, "_value", None)
    if value is None or not hasattr(value, "inc") or getattr(child, "_is_most_recent", False):
        return child.inc  # type: ignore[no-any-return]
    return value.inc  # type: ignore[no-any-return]
