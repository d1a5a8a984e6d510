"""Blocking clients: one per service, each a context manager over one channel."""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from tenure.client import core
from tenure.client import events as ev
from tenure.client.channel import (
    MESSAGE_OPTIONS,
    RETRY_OPTIONS,
    ROUND_ROBIN_OPTIONS,
    ChannelPlan,
    plan_channel,
    sync_channel,
)
from tenure.client.core import Call, ConditionLike, Flow, TenureRpcError, rpc_error
from tenure.v1 import (
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    recommendation_pb2,
    recommendation_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    segmentation_pb2,
    segmentation_pb2_grpc,
)

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")
C = TypeVar("C", bound="BaseClient")
DEFAULT_TIMEOUT_S = 10.0
"""Deadline of every call unless the method's timeout= says otherwise."""
DEFAULT_BULK_TIMEOUT_S = 600.0
"""Deadline of bulk calls: StreamScore, ExportAudience, ProfileGroup, StreamLookalikeAudience, WatchJob."""
NO_DEADLINE = float("inf")
"""timeout=NO_DEADLINE: a call without a deadline (e.g. following segment changes for hours)."""


def deadline(call: Call, timeout: float | None, default: float, bulk: float) -> float | None:
    """The deadline of one call in seconds (None: none)."""
    chosen = timeout if timeout is not None else (bulk if call.bulk else default)
    return None if chosen == NO_DEADLINE else chosen


class BaseClient:
    """A channel to one Tenure service with TLS / token options, deadlines and the retry policy; health()
    and wait_until_serving() on any service (BaseClient itself is a health-only client).

    target: host:port. timeout: default deadline of a call (s); bulk_timeout: of bulk calls. ca_file: CA of
    the server's certificate (TLS); cert_file + key_file: client certificate (mutual TLS); server_name: the
    name to verify instead of the target's host; token or token_file: bearer token sent with every call.
    options: extra gRPC channel options. environ: TENURE_* variables to read for what is not given
    (from_env passes os.environ; by default none are read). round_robin: spread calls over every address the
    target resolves to (gRPC's round_robin policy; e.g. dns:///tenure-scoring-headless.tenure.svc.cluster.local:50051,
    a headless Service's pod addresses) instead of one connection to the first address.
    Every client also sends events (ingest_events): all three services serve tenure.v1.EventService."""

    _stub_class: Any = None

    def __init__(self, target: str, *, timeout: float = DEFAULT_TIMEOUT_S, bulk_timeout: float = DEFAULT_BULK_TIMEOUT_S,
                 ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None,
                 server_name: str | None = None, token: str | None = None, token_file: str | None = None,
                 options: Sequence[tuple[str, Any]] = (), environ: Mapping[str, str] | None = None,
                 round_robin: bool = False) -> None:
        self.target = target
        self.timeout = timeout
        self.bulk_timeout = bulk_timeout
        self.plan: ChannelPlan = plan_channel(
            target, [*(ROUND_ROBIN_OPTIONS if round_robin else RETRY_OPTIONS), *MESSAGE_OPTIONS, *options],
            ca_file=ca_file, cert_file=cert_file,
            key_file=key_file, server_name=server_name, token_file=token_file, token=token,
            environ=environ if environ is not None else {})
        self._metadata = self.plan.metadata
        self._open()

    @classmethod
    def from_env(cls: type[C], target: str, **kwargs: Any) -> C:
        """A client configured by TENURE_TLS_CA_FILE, TENURE_TLS_CLIENT_CERT_FILE / _KEY_FILE,
        TENURE_TLS_SERVER_NAME and TENURE_TOKEN_FILE, keyword arguments overriding them."""
        return cls(target, environ=os.environ, **kwargs)

    def _open(self) -> None:
        self.channel: grpc.Channel = sync_channel(self.plan)
        self._stub = self._stub_class(self.channel) if self._stub_class is not None else None
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._events = events_pb2_grpc.EventServiceStub(self.channel)

    def _callable(self, call: Call) -> Any:
        return getattr(self._health if call.health else self._events if call.events else self._stub, call.method)

    def _invoke(self, call: Call, timeout: float | None) -> Any:
        t = deadline(call, timeout, self.timeout, self.bulk_timeout)
        try:
            answer = self._callable(call)(call.request, timeout=t, metadata=self._metadata)
            return list(answer) if call.stream else answer
        except grpc.RpcError as err:
            raise rpc_error(err, call.method) from err

    def _run(self, flow: Flow[T], timeout: float | None = None) -> T:
        """Run a flow of core with blocking calls."""
        try:
            call = next(flow)
            while True:
                call = flow.send(self._invoke(call, timeout))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _iterate(self, call: Call, timeout: float | None) -> Iterator[Any]:
        """A server stream, lazily."""
        try:
            yield from self._callable(call)(call.request, timeout=deadline(call, timeout, self.timeout,
                                                                           self.bulk_timeout),
                                            metadata=self._metadata)
        except grpc.RpcError as err:
            raise rpc_error(err, call.method) from err

    def health(self, service: str = "", *, timeout: float | None = None) -> str:
        """grpc.health.v1 status of the server ("") or of one service: 'SERVING', 'NOT_SERVING', ..."""
        return self._run(core.health(service), timeout)

    def wait_until_serving(self, timeout_s: float = 60.0, check: Callable[[], None] | None = None) -> None:
        """Block until the server reports SERVING (models loaded and warm); TimeoutError after timeout_s.
        check() is called between attempts (e.g. to raise when the server's process has exited)."""
        end = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < end:
            if check is not None:
                check()
            try:
                last = self.health(timeout=min(1.0, max(0.05, end - time.monotonic())))
                if last == "SERVING":
                    return
            except TenureRpcError as err:  # e.g. UNAVAILABLE while starting, or a TLS handshake that fails
                last = f"{err.code.name}: {err.details[:200]}"
            time.sleep(0.2)
        raise TimeoutError(f"{self.target} not SERVING after {timeout_s:.0f}s (last: {last})")

    def ingest_events(self, events: Iterable[ev.EventLike], *, batch_events: int = ev.DEFAULT_BATCH_EVENTS,
                      stream: bool = False, timeout: float | None = None) -> events_pb2.IngestEventsResponse:
        """Send events (tenure.v1.Events, or mappings in the JSON-lines format of tenure.client.events; build
        them with order_event / return_event / feedback_event) in IngestEvents calls of batch_events (at most
        10,000), or as one StreamIngestEvents stream (stream=True). Returns the summary of all of them: received,
        applied, duplicates, before_snapshot, rejected, customers_changed, and `results` for every event not
        applied (index counted from the first event; OUTCOME_NAMES). Rejected events are in the summary, not
        raised; a failed call raises TenureRpcError (the batches before it were applied: send them again, event
        ids make that harmless). timeout: per call (default: the bulk deadline)."""
        return self._run(ev.ingest_events(events, batch_events, stream), timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventClient(BaseClient):
    """tenure.v1.EventService on any of the three services: ingest_events (every client has it too)."""


class ScoringClient(BaseClient):
    """tenure.v1.ScoringService: scores, every prediction, bulk scoring of a DataFrame."""

    _stub_class = scoring_pb2_grpc.ScoringServiceStub

    def model_info(self, *, timeout: float | None = None) -> scoring_pb2.ModelInfo:
        """Loaded models, missing ones, the feature order of inline features, max_batch_rows."""
        return self._run(core.model_info(), timeout)

    def score(self, customers: Iterable[str | common_pb2.CustomerRef], scores: Sequence[str] = (), *,
              timeout: float | None = None) -> pd.DataFrame:
        """Score a few customers (ids or CustomerRef): columns customer_id, churn_probability, churn_band,
        churn_horizon_days, lookalike_score, error (None when scored; per row, not raised)."""
        return self._run(core.score(customers, scores), timeout)

    def predict(self, customer_ids: Iterable[str], *, reasons: int = 0, batch_rows: int = 1_000,
                timeout: float | None = None) -> pd.DataFrame:
        """Every prediction about known customers, one row per id (columns: core.PREDICT_COLUMNS); an unknown
        id gets its error in the `error` column. attrs: models, missing_models, snapshot_cutoff."""
        return self._run(core.predict(customer_ids, reasons, batch_rows), timeout)

    def score_frame(self, frame: pd.DataFrame, *, id_column: str = "customer_id", scores: Sequence[str] = (),
                    chunk_rows: int = 10_000, inline: bool | None = None,
                    timeout: float | None = None) -> pd.DataFrame:
        """Bulk scoring (StreamScore) of a DataFrame of ids, or of features when it has every column of
        model_info().customer_features (inline=None; True / False forces). Columns customer_id,
        churn_probability, lookalike_score, error; the input's index; attrs inline_features, models."""
        return self._run(core.score_frame(frame, id_column, scores, chunk_rows, inline), timeout)

    def stream_score(self, chunks: Iterable[scoring_pb2.ScoreChunk], *,
                     timeout: float | None = None) -> Iterator[scoring_pb2.ScoreChunkResult]:
        """StreamScore, raw and lazy: one result per chunk, in order (see core.score_chunks)."""
        return self._iterate(Call("StreamScore", chunks, stream=True, bulk=True), timeout)


class RecommendationClient(BaseClient):
    """tenure.v1.RecommendationService: recommendations and feedback."""

    _stub_class = recommendation_pb2_grpc.RecommendationServiceStub

    def recommend(self, customer_id: str, k: int = 0, *, exclude: Sequence[str] = (), category: str = "",
                  include_recently_shown: bool = False, declared_interests_only: bool = False,
                  timeout: float | None = None) -> recommendation_pb2.RecommendResponse:
        """Top-k products for a known customer (k 0: 10); core.recommendations_frame(answer) for a DataFrame."""
        return self._run(core.recommend(customer_id, k, exclude, category, include_recently_shown,
                                        declared_interests_only), timeout)

    def recommend_for_basket(self, items: Iterable[str | tuple[str, int] | recommendation_pb2.BasketItem], *,
                             customer_id: str = "", k: int = 0, exclude: Sequence[str] = (),
                             timeout: float | None = None) -> recommendation_pb2.RecommendResponse:
        """Complements of a basket: product ids, (product_id, quantity) pairs or BasketItems."""
        return self._run(core.recommend_for_basket(items, customer_id, k, exclude), timeout)

    def record_feedback(self, events: Iterable[recommendation_pb2.FeedbackEvent | Mapping[str, Any]] | pd.DataFrame,
                        *, timeout: float | None = None) -> recommendation_pb2.RecordFeedbackResponse:
        """Record events (FeedbackEvents, mappings or DataFrame rows; kind 'impression' / 'click' / 'purchase');
        refused events are in the answer's failures, not raised."""
        return self._run(core.record_feedback(events), timeout)

    def feedback_report(self, since: float = 0.0, until: float = 0.0, *,
                        timeout: float | None = None) -> recommendation_pb2.FeedbackReport:
        return self._run(core.feedback_report(since, until), timeout)


class SegmentationClient(BaseClient):
    """tenure.v1.SegmentationService: segments, audiences, profiles, lookalike jobs, the 360-degree view."""

    _stub_class = segmentation_pb2_grpc.SegmentationServiceStub

    def get_segments(self, customer_ids: Iterable[str], *, timeout: float | None = None) -> pd.DataFrame:
        """One row per id (columns core.SEGMENT_COLUMNS); an unknown id gets its error in `error`."""
        return self._run(core.get_segments(customer_ids), timeout)

    def describe_segments(self, *, timeout: float | None = None) -> segmentation_pb2.SegmentCatalog:
        return self._run(core.describe_segments(), timeout)

    def export_audience(self, *conditions: ConditionLike, order_by: str = "", limit: int = 0, cursor: str = "",
                        timeout: float | None = None) -> pd.DataFrame:
        """Members matching every condition (core.where(...) or (field, op, value) tuples), as a DataFrame;
        attrs: count, base, rescoring_id, skipped."""
        return self._run(core.export_audience(core.audience_query(conditions, order_by, limit, cursor)), timeout)

    def profile_group(self, *, rfm_segment: str | None = None, lifecycle: str | None = None,
                      cluster: int | None = None, conditions: Iterable[ConditionLike] | None = None, top: int = 0,
                      timeout: float | None = None) -> pd.DataFrame:
        """One group against the base, features most distinctive first; attrs group_size, base_size."""
        return self._run(core.profile_group(rfm_segment=rfm_segment, lifecycle=lifecycle, cluster=cluster,
                                            conditions=conditions, top=top), timeout)

    def lookalike_audience(self, size: int, *, model: str = "", include_seed: bool = False, min_score: float = 0.0,
                           timeout: float | None = None) -> pd.DataFrame:
        return self._run(core.lookalike_audience(size, model, include_seed, min_score), timeout)

    def start_lookalike_job(self, name: str, seed_customer_ids: Iterable[str], *,
                            timeout: float | None = None) -> segmentation_pb2.Job:
        return self._run(core.start_lookalike_job(name, seed_customer_ids), timeout)

    def watch_job(self, job_id: str, *, timeout: float | None = None) -> Iterator[segmentation_pb2.Job]:
        """The job's state now and at every change until it finishes."""
        return self._iterate(core.watch_job_call(job_id), timeout)

    def segment_changes(self, after_sequence: int = 0, *, follow: bool = False, families: Sequence[str | int] = (),
                        timeout: float | None = None) -> Iterator[segmentation_pb2.SegmentChange]:
        """Segment moves after a sequence number; follow=True keeps the stream open (and has no deadline
        unless timeout is given)."""
        if follow and timeout is None:
            timeout = NO_DEADLINE
        return self._iterate(core.segment_changes_call(after_sequence, follow, families), timeout)

    def customer_360(self, customer_id: str, recommendations: int = 0, *,
                     timeout: float | None = None) -> segmentation_pb2.Customer360:
        return self._run(core.customer_360(customer_id, recommendations), timeout)


class InferenceClient(BaseClient):
    """The Open Inference Protocol (KServe v2) of the scoring service: any loaded model on raw tensors."""

    _stub_class = inference_pb2_grpc.GRPCInferenceServiceStub

    def live(self, *, timeout: float | None = None) -> bool:
        return self._run(core.server_live(), timeout)

    def ready(self, model: str | None = None, version: str = "", *, timeout: float | None = None) -> bool:
        """Whether the server (model None) or one model (version) is ready."""
        return self._run(core.server_ready() if model is None else core.model_ready(model, version), timeout)

    def server_metadata(self, *, timeout: float | None = None) -> inference_pb2.ServerMetadataResponse:
        return self._run(core.server_metadata(), timeout)

    def model_metadata(self, name: str, version: str = "", *,
                       timeout: float | None = None) -> inference_pb2.ModelMetadataResponse:
        return self._run(core.model_metadata(name, version), timeout)

    def infer(self, model: str, inputs: Mapping[str, Any] | Any, *, version: str = "", outputs: Sequence[str] = (),
              request_id: str = "", timeout: float | None = None) -> dict[str, Any]:
        """ModelInfer: numpy inputs by name (or one array for a one-input model), numpy outputs by name."""
        return self._run(core.infer(model, inputs, version, outputs, request_id), timeout)
