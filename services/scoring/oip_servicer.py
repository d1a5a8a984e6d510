"""inference.GRPCInferenceService (Open Inference Protocol) over every model of the repository."""
from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import grpc

import tenure
from services.core.errors import status_for
from services.core.models import ModelSet
from services.core.runtime import Holder
from services.core.server import grpc_errors
from services.core.streaming import ordered_map
from services.scoring import oip_convert as convert
from tenure.errors import TenureError
from tenure.v1 import inference_pb2 as pb
from tenure.v1 import inference_pb2_grpc

STREAM_WINDOW = 8
"""Requests of one ModelStreamInfer call in flight at once."""


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class InferenceServicer(inference_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, holder: Holder[ModelSet], max_rows: int) -> None:
        self.holder = holder
        self.max_rows = max_rows

    async def _infer(self, request: pb.ModelInferRequest, deadline: float | None) -> pb.ModelInferResponse:
        served = self.holder.get().get(request.model_name, request.model_version)
        feeds = convert.decode_inputs(request, served, self.max_rows)
        chosen = convert.requested_outputs(request, served)
        if served.batcher is not None:
            results = await served.batcher.submit(next(iter(feeds.values())), deadline)
        else:
            results = await asyncio.to_thread(served.model.run_all, feeds)
        return convert.encode_response(request, served, results, chosen)

    @grpc_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        return await self._infer(request, deadline_of(context))

    @grpc_errors
    async def ModelStreamInfer(self, request_iterator: AsyncIterator[pb.ModelInferRequest],
                               context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ModelStreamInferResponse]:
        deadline = deadline_of(context)

        async def one(request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
            try:
                return pb.ModelStreamInferResponse(infer_response=await self._infer(request, deadline))
            except TenureError as err:  # one bad request fails only its own response
                code, message = status_for(err)
                return pb.ModelStreamInferResponse(error_message=f"{code.name}: {message}")

        async for response in ordered_map(request_iterator, one, STREAM_WINDOW):
            yield response

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.holder.current is not None)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        models = self.holder.current
        served = models.models.get(request.name) if models is not None else None
        ready = served is not None and request.version in ("", served.version)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="tenure", version=tenure.__version__, extensions=[])

    @grpc_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        return convert.metadata(self.holder.get().get(request.name, request.version))
