"""inference.GRPCInferenceService (Open Inference Protocol) over every model of the repository."""
from __future__ import annotations

from typing import Iterator

import grpc
import numpy as np

import tenure
from services.core.errors import status_for
from services.core.models import ModelSet, ServedModel
from services.core.runtime import Holder
from services.core.server import deadline_of
from services.core.streaming import StreamSlots, ordered_map
from services.scoring import oip_convert as convert
from tenure.artifacts import safe_name
from tenure.errors import TenureError
from tenure.v1 import inference_pb2 as pb
from tenure.v1 import inference_pb2_grpc

STREAM_WINDOW = 8
"""Requests of one ModelStreamInfer call in flight at once."""


class InferenceServicer(inference_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, holder: Holder[ModelSet], max_rows: int, streams: StreamSlots) -> None:
        self.holder = holder
        self.streams = streams
        self.max_rows = max_rows

    def _run(self, request: pb.ModelInferRequest, context: grpc.ServicerContext,
             deadline: float | None) -> tuple[ServedModel, list[np.ndarray], list[int]]:
        served = self.holder.get().get(request.model_name, request.model_version)
        feeds = convert.decode_inputs(request, served, self.max_rows)
        chosen = convert.requested_outputs(request, served)
        if served.batcher is not None:
            results = served.batcher.submit(next(iter(feeds.values())), deadline, context.is_active)
        else:
            results = served.model.run_all(feeds)
        return served, results, chosen

    def _infer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext,
               deadline: float | None) -> pb.ModelInferResponse:
        return convert.encode_response(request, *self._run(request, context, deadline))

    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> bytes:
        """The serialised ModelInferResponse (services.core.handlers sends bytes as they are)."""
        return convert.encode_response_bytes(request, *self._run(request, context, deadline_of(context)))

    def ModelStreamInfer(self, request_iterator: Iterator[pb.ModelInferRequest],
                         context: grpc.ServicerContext) -> Iterator[pb.ModelStreamInferResponse]:
        deadline = deadline_of(context)

        def one(request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
            try:
                return pb.ModelStreamInferResponse(infer_response=self._infer(request, context, deadline))
            except TenureError as err:  # one bad request fails only its own response
                code, message = status_for(err)
                return pb.ModelStreamInferResponse(error_message=f"{code.name}: {message}")

        with self.streams.hold():
            yield from ordered_map(request_iterator, one, STREAM_WINDOW, self.streams.idle_timeout_s)

    def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.holder.ready)  # at least one model loaded

    def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.ServicerContext) -> pb.ModelReadyResponse:
        safe_name(request.name, "model name")
        if request.version:
            safe_name(request.version, "model version")
        models = self.holder.current
        served = models.models.get(request.name) if models is not None else None
        ready = served is not None and request.version in ("", served.version)
        return pb.ModelReadyResponse(ready=ready)

    def ServerMetadata(self, request: pb.ServerMetadataRequest,
                       context: grpc.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="tenure", version=tenure.__version__, extensions=[])

    def ModelMetadata(self, request: pb.ModelMetadataRequest,
                      context: grpc.ServicerContext) -> pb.ModelMetadataResponse:
        return convert.metadata(self.holder.get().get(request.name, request.version))
