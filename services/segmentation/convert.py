"""Pure conversions between segmentation protobuf messages and engine results."""
from __future__ import annotations

import numpy as np

from services.core.convert import model_versions, row_error
from services.core.errors import strip_paths
from services.segmentation.changes import Move, Rescoring
from services.segmentation.engine import BAND_NAMES, Segmenter, SegmentRows
from services.segmentation.jobs import JobStatus
from tenure.profile import ProfileRow
from tenure.v1 import common_pb2
from tenure.v1 import segmentation_pb2 as pb


def cluster_message(seg: Segmenter, cid: int) -> pb.Cluster:
    info = seg.cluster_info[cid] if 0 <= cid < len(seg.cluster_info) else {"name": f"cluster {cid}", "description": ""}
    return pb.Cluster(id=cid, name=str(info["name"]), description=str(info["description"]))


def grid_message(churn: int, purchase: int) -> pb.GridCell:
    return pb.GridCell(churn=pb.GridBand.ValueType(churn), purchase=pb.GridBand.ValueType(purchase),
                       name=f"{BAND_NAMES[churn]} churn / {BAND_NAMES[purchase]} purchase")


def segments_message(seg: Segmenter, rows: SegmentRows, i: int) -> pb.Segments:
    """The cluster and the grid cell are left unset when their models are missing."""
    return pb.Segments(
        rfm=pb.RfmScores(recency=int(rows.r[i]), frequency=int(rows.f[i]), monetary=int(rows.m[i])),
        rfm_segment=str(rows.segment[i]), lifecycle_stage=pb.LifecycleStage.ValueType(int(rows.stage[i])),
        recency_days=float(rows.recency[i]), orders=int(rows.orders[i]), monetary=float(rows.monetary[i]),
        cluster=cluster_message(seg, int(rows.cluster[i])) if rows.cluster is not None else None,
        grid=grid_message(int(rows.grid_churn[i]), int(rows.grid_purchase[i]))
        if rows.grid_churn is not None and rows.grid_purchase is not None else None)


def segments_response(seg: Segmenter, ids: list[str], rows: SegmentRows) -> pb.GetSegmentsResponse:
    return pb.GetSegmentsResponse(results=[
        pb.CustomerSegments(customer_id=cid, error=row_error(rows.errors[i])) if i in rows.errors else
        pb.CustomerSegments(customer_id=cid, segments=segments_message(seg, rows, i))
        for i, cid in enumerate(ids)], missing_models=seg.segment_missing)


def rescoring_message(r: Rescoring | None) -> pb.Rescoring:
    if r is None:
        return pb.Rescoring()
    return pb.Rescoring(id=r.id, snapshot_cutoff=r.snapshot_cutoff, at=r.at, models=model_versions(r.models))


def _counts(pairs: list[tuple[str, int, float]]) -> list[pb.SegmentCount]:
    return [pb.SegmentCount(segment=name, customers=n, share=share) for name, n, share in pairs]


def catalog(seg: Segmenter) -> pb.SegmentCatalog:
    s = seg.settings
    return pb.SegmentCatalog(
        rfm_rules=[pb.RfmRule(segment=r.name, recency_min=r.r_min, recency_max=r.r_max,
                              frequency_monetary_min=r.fm_min, frequency_monetary_max=r.fm_max) for r in seg.rules],
        rfm_segments=_counts(seg.counts(seg.segment)),
        lifecycle_stages=_counts(seg.counts(seg.stage_names())),
        clusters=[cluster_message(seg, int(c["id"])) for c in seg.cluster_info],
        cluster_counts=_counts(seg.counts(seg.cluster_names[seg.cluster])) if seg.cluster is not None else [],
        grid_cells=_counts(seg.counts(seg.grid_names())) if seg.grid_churn is not None else [],
        churn_thresholds=[s.churn_band_medium, s.churn_band_high],
        purchase_thresholds=[s.purchase_band_medium, s.purchase_band_high],
        customers=len(seg.snapshot.customer_ids),
        rescoring=rescoring_message(seg.rescoring),
        missing_models=seg.missing,
    )


def change_message(m: Move) -> pb.SegmentChange:
    return pb.SegmentChange(sequence=m.seq, customer_id=m.customer_id, family=pb.SegmentFamily.ValueType(m.family),
                            from_segment=m.from_segment, to_segment=m.to_segment, rescoring_id=m.rescoring_id, at=m.at,
                            event_id=m.event_id)


def member(cid: str, score: float, rank: int, model: common_pb2.ModelVersion) -> pb.AudienceMember:
    return pb.AudienceMember(customer_id=cid, score=score, rank=rank, model=model)


def profile_report(rows: list[ProfileRow], group_size: int, base_size: int) -> pb.ProfileReport:
    return pb.ProfileReport(group_size=group_size, base_size=base_size, features=[
        pb.ProfileFeature(feature=r.feature, kind=r.kind,
                          group_value=np.nan if r.group_mean is None else float(r.group_mean),
                          base_value=np.nan if r.base_mean is None else float(r.base_mean),
                          index=None if r.index is None else float(r.index), distinctiveness=float(r.distinctiveness))
        for r in rows])


def job_message(job: JobStatus) -> pb.Job:
    return pb.Job(job_id=job.job_id, state=pb.JobState.ValueType(job.state), progress=job.progress,
                  message=strip_paths(job.message),  # a failed job's reason may name files of the server
                  model=common_pb2.ModelVersion(name=job.model[0], version=job.model[1]) if job.model else None,
                  metrics=job.metrics, seed_found=job.seed_found, seed_unknown=job.seed_unknown)
