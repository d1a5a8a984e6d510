"""SegmentationService: convert, compute, convert."""
from __future__ import annotations

from typing import Iterator

import grpc

from services.core.runtime import Holder
from services.core.server import grpc_errors
from services.segmentation import convert
from services.segmentation.engine import Segmenter
from tenure.errors import TooLarge
from tenure.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc

MAX_IDS = 10_000


class SegmentationServicer(segmentation_pb2_grpc.SegmentationServiceServicer):
    def __init__(self, holder: Holder[Segmenter]) -> None:
        self.holder = holder

    @grpc_errors
    def GetSegments(self, request: segmentation_pb2.GetSegmentsRequest,
                    context: grpc.ServicerContext) -> segmentation_pb2.GetSegmentsResponse:
        seg = self.holder.get()
        ids = list(request.customer_ids)
        if len(ids) > MAX_IDS:
            raise TooLarge(f"{len(ids)} customer ids in one call; at most {MAX_IDS}")
        rows = seg.segments(ids)
        return convert.segments_response(ids, rows)

    @grpc_errors
    def StreamLookalikeAudience(self, request: segmentation_pb2.LookalikeAudienceRequest,
                                context: grpc.ServicerContext) -> Iterator[segmentation_pb2.AudienceMember]:
        seg = self.holder.get()
        model = common_pb2.ModelVersion(name=seg.lookalike.name, version=seg.lookalike.version)
        for cid, score, rank in seg.audience(request.size, request.include_seed, request.min_score):
            yield convert.member(cid, score, rank, model)
