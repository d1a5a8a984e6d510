"""Typed settings read from the environment (prefix TENURE_). Units are part of the names."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _env_value(name: str, default: Any) -> Any:
    raw = os.environ.get(f"TENURE_{name.upper()}")
    if raw is None:
        return default
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, Path):
        return Path(raw)
    return type(default)(raw)


@dataclass(frozen=True)
class ServiceSettings:
    """Settings of one gRPC service process. Every field can be set as TENURE_<FIELD> in the env."""

    models_dir: Path = Path("models")
    """Model repository root: models/<name>/<version>/{model.onnx,manifest.json}."""
    host: str = "127.0.0.1"
    """Address to bind. Use 0.0.0.0 / [::] in containers."""
    scoring_port: int = 50051
    recommendation_port: int = 50052
    segmentation_port: int = 50053
    ort_threads: int = 1
    """onnxruntime intra-op threads per session (spinning is always off); 0 = the CPU quota / workers."""
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
    8 threads answer single-row calls at ~1.2x the req/s of 16 at concurrency 64 (less GIL handoff)."""
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
    feedback_exclude_days: float = 7.0
    """Recommend leaves out products shown to the customer this recently without a click (0: never)."""
    reload_interval_s: float = 0.0
    """Poll the repository for newer versions every N seconds (0 = load once at start)."""

    @classmethod
    def from_env(cls, **overrides: Any) -> "ServiceSettings":
        values = {f.name: _env_value(f.name, f.default) for f in fields(cls)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class TrainSettings:
    """Training knobs (the CLI flags map onto these)."""

    churn_horizon_days: int = 90
    clv_horizon_days: int = 365
    """Predicted CLV covers this many days after the cutoff."""
    propensity_horizon_days: int = 30
    active_window_days: int = 365
    """Churn is modelled for customers with an order in this many days before the cutoff."""
    n_candidates_train: int = 100
    n_candidates_eval: int = 200
    propensity_train_customers: int = 10_000
    seed: int = 7
    lgbm_threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))


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
