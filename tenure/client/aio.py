"""asyncio clients on grpc.aio: the same methods as tenure.client.sync, awaited; the same flows (core)."""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable, Mapping, Sequence, TypeVar

import grpc
from grpc_health.v1 import health_pb2_grpc

from tenure.client import core
from tenure.client import events as ev
from tenure.client.channel import aio_channel
from tenure.client.core import Call, ConditionLike, Flow, TenureRpcError, rpc_error
from tenure.client.sync import NO_DEADLINE, BaseClient, deadline
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


class AsyncBaseClient(BaseClient):
    """BaseClient on a grpc.aio channel: create it inside a running event loop; `async with` or await close()."""

    def _open(self) -> None:
        self.channel: grpc.aio.Channel = aio_channel(self.plan)  # type: ignore[assignment]
        self._stub = self._stub_class(self.channel) if self._stub_class is not None else None
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._events = events_pb2_grpc.EventServiceStub(self.channel)

    async def _ainvoke(self, call: Call, timeout: float | None) -> Any:
        t = deadline(call, timeout, self.timeout, self.bulk_timeout)
        try:
            answer = self._callable(call)(call.request, timeout=t, metadata=self._metadata)
            return [item async for item in answer] if call.stream else await answer
        except grpc.RpcError as err:
            raise rpc_error(err, call.method) from err

    async def _arun(self, flow: Flow[T], timeout: float | None = None) -> T:
        """Run a flow of core, awaiting its calls."""
        try:
            call = next(flow)
            while True:
                call = flow.send(await self._ainvoke(call, timeout))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _aiterate(self, call: Call, timeout: float | None) -> AsyncIterator[Any]:
        try:
            async for item in self._callable(call)(call.request, metadata=self._metadata,
                                                   timeout=deadline(call, timeout, self.timeout, self.bulk_timeout)):
                yield item
        except grpc.RpcError as err:
            raise rpc_error(err, call.method) from err

    async def health(self, service: str = "", *, timeout: float | None = None) -> str:  # type: ignore[override]
        return await self._arun(core.health(service), timeout)

    async def wait_until_serving(self, timeout_s: float = 60.0,  # type: ignore[override]
                                 check: Callable[[], None] | None = None) -> None:
        end = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < end:
            if check is not None:
                check()
            try:
                last = await self.health(timeout=min(1.0, max(0.05, end - time.monotonic())))
                if last == "SERVING":
                    return
            except TenureRpcError as err:
                last = f"{err.code.name}: {err.details[:200]}"
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.target} not SERVING after {timeout_s:.0f}s (last: {last})")

    async def ingest_events(self, events: Iterable[ev.EventLike], *,  # type: ignore[override]
                            batch_events: int = ev.DEFAULT_BATCH_EVENTS, stream: bool = False,
                            timeout: float | None = None) -> events_pb2.IngestEventsResponse:
        """BaseClient.ingest_events, awaited."""
        return await self._arun(ev.ingest_events(events, batch_events, stream), timeout)

    async def close(self) -> None:  # type: ignore[override]
        await self.channel.close()

    def __enter__(self: T) -> T:
        raise TypeError("an asyncio client: use `async with`, not `with`")

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncEventClient(AsyncBaseClient):
    """EventClient on asyncio."""


class AsyncScoringClient(AsyncBaseClient):
    """ScoringClient on asyncio."""

    _stub_class = scoring_pb2_grpc.ScoringServiceStub

    async def model_info(self, *, timeout: float | None = None) -> scoring_pb2.ModelInfo:
        return await self._arun(core.model_info(), timeout)

    async def score(self, customers: Iterable[str | common_pb2.CustomerRef], scores: Sequence[str] = (), *,
                    timeout: float | None = None) -> pd.DataFrame:
        return await self._arun(core.score(customers, scores), timeout)

    async def predict(self, customer_ids: Iterable[str], *, reasons: int = 0, batch_rows: int = 1_000,
                      timeout: float | None = None) -> pd.DataFrame:
        return await self._arun(core.predict(customer_ids, reasons, batch_rows), timeout)

    async def score_frame(self, frame: pd.DataFrame, *, id_column: str = "customer_id", scores: Sequence[str] = (),
                          chunk_rows: int = 10_000, inline: bool | None = None,
                          timeout: float | None = None) -> pd.DataFrame:
        return await self._arun(core.score_frame(frame, id_column, scores, chunk_rows, inline), timeout)

    def stream_score(self, chunks: Iterable[scoring_pb2.ScoreChunk], *,
                     timeout: float | None = None) -> AsyncIterator[scoring_pb2.ScoreChunkResult]:
        return self._aiterate(Call("StreamScore", chunks, stream=True, bulk=True), timeout)


class AsyncRecommendationClient(AsyncBaseClient):
    """RecommendationClient on asyncio."""

    _stub_class = recommendation_pb2_grpc.RecommendationServiceStub

    async def recommend(self, customer_id: str, k: int = 0, *, exclude: Sequence[str] = (), category: str = "",
                        include_recently_shown: bool = False, declared_interests_only: bool = False,
                        timeout: float | None = None) -> recommendation_pb2.RecommendResponse:
        return await self._arun(core.recommend(customer_id, k, exclude, category, include_recently_shown,
                                               declared_interests_only), timeout)

    async def recommend_for_basket(self, items: Iterable[str | tuple[str, int] | recommendation_pb2.BasketItem], *,
                                   customer_id: str = "", k: int = 0, exclude: Sequence[str] = (),
                                   timeout: float | None = None) -> recommendation_pb2.RecommendResponse:
        return await self._arun(core.recommend_for_basket(items, customer_id, k, exclude), timeout)

    async def record_feedback(self, events: Iterable[recommendation_pb2.FeedbackEvent | Mapping[str, Any]]
                              | pd.DataFrame, *,
                              timeout: float | None = None) -> recommendation_pb2.RecordFeedbackResponse:
        return await self._arun(core.record_feedback(events), timeout)

    async def feedback_report(self, since: float = 0.0, until: float = 0.0, *,
                              timeout: float | None = None) -> recommendation_pb2.FeedbackReport:
        return await self._arun(core.feedback_report(since, until), timeout)


class AsyncSegmentationClient(AsyncBaseClient):
    """SegmentationClient on asyncio."""

    _stub_class = segmentation_pb2_grpc.SegmentationServiceStub

    async def get_segments(self, customer_ids: Iterable[str], *, timeout: float | None = None) -> pd.DataFrame:
        return await self._arun(core.get_segments(customer_ids), timeout)

    async def describe_segments(self, *, timeout: float | None = None) -> segmentation_pb2.SegmentCatalog:
        return await self._arun(core.describe_segments(), timeout)

    async def export_audience(self, *conditions: ConditionLike, order_by: str = "", limit: int = 0, cursor: str = "",
                              timeout: float | None = None) -> pd.DataFrame:
        return await self._arun(core.export_audience(core.audience_query(conditions, order_by, limit, cursor)),
                                timeout)

    async def profile_group(self, *, rfm_segment: str | None = None, lifecycle: str | None = None,
                            cluster: int | None = None, conditions: Iterable[ConditionLike] | None = None,
                            top: int = 0, timeout: float | None = None) -> pd.DataFrame:
        return await self._arun(core.profile_group(rfm_segment=rfm_segment, lifecycle=lifecycle, cluster=cluster,
                                                   conditions=conditions, top=top), timeout)

    async def lookalike_audience(self, size: int, *, model: str = "", include_seed: bool = False,
                                 min_score: float = 0.0, timeout: float | None = None) -> pd.DataFrame:
        return await self._arun(core.lookalike_audience(size, model, include_seed, min_score), timeout)

    async def start_lookalike_job(self, name: str, seed_customer_ids: Iterable[str], *,
                                  timeout: float | None = None) -> segmentation_pb2.Job:
        return await self._arun(core.start_lookalike_job(name, seed_customer_ids), timeout)

    def watch_job(self, job_id: str, *, timeout: float | None = None) -> AsyncIterator[segmentation_pb2.Job]:
        return self._aiterate(core.watch_job_call(job_id), timeout)

    def segment_changes(self, after_sequence: int = 0, *, follow: bool = False, families: Sequence[str | int] = (),
                        timeout: float | None = None) -> AsyncIterator[segmentation_pb2.SegmentChange]:
        if follow and timeout is None:
            timeout = NO_DEADLINE
        return self._aiterate(core.segment_changes_call(after_sequence, follow, families), timeout)

    async def customer_360(self, customer_id: str, recommendations: int = 0, *,
                           timeout: float | None = None) -> segmentation_pb2.Customer360:
        return await self._arun(core.customer_360(customer_id, recommendations), timeout)


class AsyncInferenceClient(AsyncBaseClient):
    """InferenceClient on asyncio."""

    _stub_class = inference_pb2_grpc.GRPCInferenceServiceStub

    async def live(self, *, timeout: float | None = None) -> bool:
        return await self._arun(core.server_live(), timeout)

    async def ready(self, model: str | None = None, version: str = "", *, timeout: float | None = None) -> bool:
        return await self._arun(core.server_ready() if model is None else core.model_ready(model, version), timeout)

    async def server_metadata(self, *, timeout: float | None = None) -> inference_pb2.ServerMetadataResponse:
        return await self._arun(core.server_metadata(), timeout)

    async def model_metadata(self, name: str, version: str = "", *,
                             timeout: float | None = None) -> inference_pb2.ModelMetadataResponse:
        return await self._arun(core.model_metadata(name, version), timeout)

    async def infer(self, model: str, inputs: Mapping[str, Any] | Any, *, version: str = "",
                    outputs: Sequence[str] = (), request_id: str = "", timeout: float | None = None) -> dict[str, Any]:
        return await self._arun(core.infer(model, inputs, version, outputs, request_id), timeout)
