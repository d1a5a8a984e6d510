"""Typed clients of the Tenure services, sync and asyncio, with pandas in and out where it fits.

    from tenure.client import ScoringClient
    with ScoringClient("127.0.0.1:50051") as scoring:
        frame = scoring.predict(["C000001", "C000002"])   # one row per id; unknown ids in `error`

One class per service (ScoringClient, RecommendationClient, SegmentationClient, InferenceClient for the
Open Inference Protocol) and an asyncio twin of each (AsyncScoringClient, ...). Every call has a deadline
(timeout, 10 s; bulk calls bulk_timeout, 600 s; per call timeout=...), idempotent calls are retried on
UNAVAILABLE through the gRPC service config (RETRY_SERVICE_CONFIG), TLS / mutual TLS / a bearer token
are constructor options (or from_env(): the TENURE_TLS_* and TENURE_TOKEN_FILE variables). A failed call
raises TenureRpcError (.code, .details); a failed row of a batch is returned in its `error` column.
Every client also sends events (ingest_events; order_event / return_event build them, tenure.client.events), as
all three services serve tenure.v1.EventService; round_robin=True balances over every address of the target.

Base install only: no onnxruntime, onnx, prometheus or OpenTelemetry is imported.
"""
from tenure.client.aio import (
    AsyncBaseClient,
    AsyncEventClient,
    AsyncInferenceClient,
    AsyncRecommendationClient,
    AsyncScoringClient,
    AsyncSegmentationClient,
)
from tenure.client.channel import (
    MESSAGE_OPTIONS,
    RETRY_OPTIONS,
    RETRY_SERVICE_CONFIG,
    ROUND_ROBIN_OPTIONS,
    ROUND_ROBIN_SERVICE_CONFIG,
    ClientSettings,
    SecurityConfigError,
    client_channel,
    open_channel,
)
from tenure.client.core import STATUS_NAMES, TenureRpcError, recommendations_frame, where
from tenure.client.events import (
    OUTCOME_NAMES,
    event_from_dict,
    event_line,
    feedback_event,
    order_event,
    read_jsonl,
    return_event,
)
from tenure.client.sync import (
    DEFAULT_BULK_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    NO_DEADLINE,
    BaseClient,
    EventClient,
    InferenceClient,
    RecommendationClient,
    ScoringClient,
    SegmentationClient,
)

__all__ = [
    "AsyncBaseClient", "AsyncEventClient", "AsyncInferenceClient", "AsyncRecommendationClient", "AsyncScoringClient",
    "AsyncSegmentationClient", "BaseClient", "ClientSettings", "DEFAULT_BULK_TIMEOUT_S", "DEFAULT_TIMEOUT_S",
    "EventClient", "InferenceClient", "MESSAGE_OPTIONS", "NO_DEADLINE", "OUTCOME_NAMES", "RETRY_OPTIONS",
    "RETRY_SERVICE_CONFIG", "ROUND_ROBIN_OPTIONS", "ROUND_ROBIN_SERVICE_CONFIG", "RecommendationClient",
    "STATUS_NAMES", "ScoringClient", "SecurityConfigError", "SegmentationClient", "TenureRpcError", "client_channel",
    "event_from_dict", "event_line", "feedback_event", "open_channel", "order_event", "read_jsonl",
    "recommendations_frame", "return_event", "where",
]
