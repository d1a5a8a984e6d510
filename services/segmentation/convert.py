"""Pure conversions between segmentation protobuf messages and engine results."""
from __future__ import annotations

from services.core.convert import row_error
from services.segmentation.engine import SegmentRows
from tenure.v1 import common_pb2, segmentation_pb2


def segments_response(ids: list[str], rows: SegmentRows) -> segmentation_pb2.GetSegmentsResponse:
    results = []
    for i, cid in enumerate(ids):
        if i in rows.errors:
            results.append(segmentation_pb2.CustomerSegments(customer_id=cid, error=row_error(rows.errors[i])))
            continue
        results.append(segmentation_pb2.CustomerSegments(customer_id=cid, segments=segmentation_pb2.Segments(
            rfm=segmentation_pb2.RfmScores(recency=int(rows.r[i]), frequency=int(rows.f[i]), monetary=int(rows.m[i])),
            rfm_segment=str(rows.segment[i]), lifecycle_stage=segmentation_pb2.LifecycleStage.ValueType(int(rows.stage[i])),
            recency_days=float(rows.recency[i]), orders=int(rows.orders[i]), monetary=float(rows.monetary[i]))))
    return segmentation_pb2.GetSegmentsResponse(results=results)


def member(cid: str, score: float, rank: int, model: common_pb2.ModelVersion) -> segmentation_pb2.AudienceMember:
    return segmentation_pb2.AudienceMember(customer_id=cid, score=score, rank=rank, model=model)
