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
        import json

        from tenure.errors import DataError

        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        if config is not None:
            try:
                data = json.loads(Path(config).read_text(encoding="utf-8"))
            except OSError as exc:
                raise DataError(f"{config}: cannot read the training config: {exc}") from exc
            except json.JSONDecodeError as exc:
                raise DataError(f"{config}: the training config is not valid JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise DataError(f"{config}: the training config must be a JSON object")
            unknown = sorted(set(data) - set(known))
            if unknown:
                raise DataError(f"{config}: unknown training settings {unknown}; known: {sorted(known)}")
            values.update(data)
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
