"""SegmentationService: convert, compute, convert."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Iterator

import grpc
import numpy as np

from services.core.convert import model_versions, predictions_message
from services.core.runtime import Holder
from services.core.security import client_channel
from services.core.streaming import StreamSlots
from services.core.tracing import Tracing
from services.segmentation import convert
from services.segmentation.attributes import customer_attributes, with_attribute_rows
from services.segmentation.audience import Audiences
from services.segmentation.changes import MAX_SEQUENCE, SegmentLog
from services.segmentation.engine import STAGE_NAMES, Segmenter
from services.segmentation.jobs import Jobs
from tenure.errors import InvalidInput, TooLarge
from tenure.profile import profile
from tenure.settings import ServiceSettings
from tenure.v1 import common_pb2, recommendation_pb2, recommendation_pb2_grpc, segmentation_pb2_grpc
from tenure.v1 import segmentation_pb2 as pb

MAX_IDS = 10_000
MAX_360_RECOMMENDATIONS = 20
RECOMMEND_TIMEOUT_S = 2.0
KEY_FEATURES = ("recency_days", "tenure_days", "orders_total", "orders_365d", "spend_total", "avg_order_value",
                "gap_mean_days", "spend_trend", "distinct_categories", "return_value_share")


class SegmentationServicer(segmentation_pb2_grpc.SegmentationServiceServicer):
    def __init__(self, holder: Holder[Segmenter], settings: ServiceSettings, log: SegmentLog,
                 streams: StreamSlots, tracing: Tracing | None = None) -> None:
        self.holder = holder
        self.settings = settings
        self.log = log
        self.streams = streams
        self.jobs = Jobs(settings.models_dir, lambda: self.holder.get().snapshot, holder.refresh)
        self._audiences: tuple[Segmenter, Audiences] | None = None
        self._lock = threading.Lock()
        target = settings.recommendation_target or f"{settings.host}:{settings.recommendation_port}"
        # As any Tenure client: TLS / client certificate / token from TENURE_TLS_CA_FILE,
        # TENURE_TLS_CLIENT_CERT_FILE/KEY_FILE, TENURE_TLS_SERVER_NAME, TENURE_TOKEN_FILE (security.client_channel).
        # Traced (settings.otlp_endpoint): the recommendation service's span is a child of the 360 view's.
        channel = client_channel(target) if tracing is None else tracing.channel(client_channel(target))
        self._recommend = recommendation_pb2_grpc.RecommendationServiceStub(channel)

    def audiences(self) -> Audiences:
        """Audience fields of the loaded re-scoring (built once per loaded version)."""
        seg = self.holder.get()
        with self._lock:
            if self._audiences is None or self._audiences[0] is not seg:
                self._audiences = (seg, Audiences(seg))
            return self._audiences[1]

    def GetSegments(self, request: pb.GetSegmentsRequest, context: grpc.ServicerContext) -> pb.GetSegmentsResponse:
        seg = self.holder.get()
        ids = list(request.customer_ids)
        if len(ids) > MAX_IDS:
            raise TooLarge(f"{len(ids)} customer ids in one call; at most {MAX_IDS}")
        return convert.segments_response(seg, ids, seg.segments(ids))

    def DescribeSegments(self, request: pb.DescribeSegmentsRequest, context: grpc.ServicerContext) -> pb.SegmentCatalog:
        return convert.catalog(self.holder.get())

    def StreamSegmentChanges(self, request: pb.SegmentChangesRequest,
                             context: grpc.ServicerContext) -> Iterator[pb.SegmentChange]:
        families = {int(f) for f in request.families}
        allowed = {int(v): name for name, v in pb.SegmentFamily.items() if v}
        unknown = sorted(families - set(allowed))
        if unknown:
            raise InvalidInput(f"families: {unknown[0]} is not a segment family; expected some of "
                               + ", ".join(f"{name} ({v})" for v, name in sorted(allowed.items())) + " (empty: all)")
        if request.after_sequence > MAX_SEQUENCE:
            raise InvalidInput(f"after_sequence={request.after_sequence}; expected 0..{MAX_SEQUENCE} "
                               "(the last sequence received; 0: from the first move)")
        with self.streams.hold():
            for move in self.log.follow(request.after_sequence, families, request.follow, context.is_active):
                yield convert.change_message(move)

    def ExportAudience(self, request: pb.AudienceQuery, context: grpc.ServicerContext) -> Iterator[pb.AudienceExportItem]:
        began = datetime.now(timezone.utc)  # members' next_send_at: their best hour's next start after this
        aud = self.audiences()
        sel = aud.select(request, context.is_active)  # stops between conditions once the caller is gone
        end = len(sel.rows) if request.limit == 0 else min(len(sel.rows), sel.start + request.limit)
        t, seg = aud.seg.table, aud.seg
        stages = seg.stage_names()
        send = seg.predictor.send_times  # tenure.sendtime (None: the snapshot has no send-time table)
        with self.streams.hold():
            yield pb.AudienceExportItem(header=pb.AudienceHeader(count=len(sel.rows), base=len(aud.ids),
                                                                 rescoring_id=aud.rescoring_id, skipped=sel.start))
            has_purchase_30d = 30 in seg.predictor.horizons
            for pos in range(sel.start, end):
                row = int(sel.rows[pos])
                yield pb.AudienceExportItem(member=pb.AudienceMemberRow(
                    customer_id=str(aud.ids[row]), position=pos + 1, cursor=aud.cursor(sel.fingerprint, pos + 1),
                    churn=float(t.churn[row]) if t.churn is not None else None,
                    clv_predicted=float(t.clv_predicted[row]) if t.clv_predicted is not None else None,
                    purchase_30d=float(t.purchase[row, 1]) if has_purchase_30d else None,
                    uplift=float(t.uplift[row]) if t.uplift is not None else None,
                    best_hour=int(send.best_hour[row]) if send is not None else None,
                    best_weekday=int(send.best_weekday[row]) if send is not None else None,
                    send_timezone=send.zone_of(row) if send is not None else "",
                    next_send_at=send.next_send_at(row, began) if send is not None else "",
                    rfm_segment=str(seg.segment[row]), lifecycle=str(stages[row])))

    def ProfileGroup(self, request: pb.ProfileRequest, context: grpc.ServicerContext) -> pb.ProfileReport:
        seg = self.holder.get()
        kind = request.WhichOneof("group")
        if kind == "rfm_segment":
            mask = seg.segment == request.rfm_segment
            known = sorted({str(s) for s in seg.segment})
        elif kind == "lifecycle":
            mask = seg.stage_names() == request.lifecycle
            known = sorted(STAGE_NAMES.values())
        elif kind == "cluster":
            if seg.cluster is None:
                raise seg.missing_for("cluster", "a cluster group")
            mask = seg.cluster == request.cluster
            known = [str(c["id"]) for c in seg.cluster_info]
        elif kind == "audience":
            mask, known = self.audiences().mask(list(request.audience.conditions), context.is_active), []
        else:
            raise InvalidInput("group: set one of rfm_segment, lifecycle, cluster, audience")
        if not mask.any():
            detail = f"; known: {', '.join(known)[:400]}" if known else ""
            raise InvalidInput(f"the group ({kind}) has no customers{detail}")
        rows = profile(seg.snapshot.X, seg.snapshot.feature_names, mask, base=seg.base_stats,
                       top=request.top or None)
        rows = with_attribute_rows(rows, seg.predictor.attributes, mask, request.top or None)  # kind "attribute"
        return convert.profile_report(rows, int(mask.sum()), len(mask))

    def StreamLookalikeAudience(self, request: pb.LookalikeAudienceRequest,
                                context: grpc.ServicerContext) -> Iterator[pb.AudienceMember]:
        seg = self.holder.get()
        look = seg.lookalike(request.model)
        model = common_pb2.ModelVersion(name=look.model.name, version=look.model.version)
        with self.streams.hold():
            for cid, score, rank in seg.audience(request.size, request.include_seed, request.min_score, request.model):
                yield convert.member(cid, score, rank, model)

    def StartLookalikeJob(self, request: pb.LookalikeJobRequest, context: grpc.ServicerContext) -> pb.Job:
        return convert.job_message(self.jobs.start(request.name, list(request.seed_customer_ids)))

    def WatchJob(self, request: pb.WatchJobRequest, context: grpc.ServicerContext) -> Iterator[pb.Job]:
        with self.streams.hold():
            for job in self.jobs.watch(request.job_id, context.is_active):
                yield convert.job_message(job)

    def GetCustomer360(self, request: pb.Customer360Request, context: grpc.ServicerContext) -> pb.Customer360:
        seg = self.holder.get()
        k = request.recommendations or 5
        if k > MAX_360_RECOMMENDATIONS:
            raise InvalidInput(f"recommendations={k}; expected 0..{MAX_360_RECOMMENDATIONS} (0 means 5)")
        # the online row when events changed the customer since the snapshot (or made them a customer)
        X, segments = seg.customer(request.customer_id)  # NOT_FOUND, or INVALID_ARGUMENT for an empty id
        pred = seg.predictor
        table, reasons = pred.predict(X), pred.reasons(X)
        names = seg.snapshot.feature_names
        base = seg.base_stats.mean

        def value(j: int) -> pb.FeatureValue:
            return pb.FeatureValue(name=names[j], value=float(X[0, j]), base_mean=float(np.nan_to_num(base[j])))

        answer = pb.Customer360(
            customer_id=request.customer_id,
            key_features=[value(names.index(n)) for n in KEY_FEATURES if n in names],
            features=[value(j) for j in range(len(names))],
            predictions=predictions_message(pred, table, 0, reasons[0], X, pred.refused(request.customer_id),
                                            request.customer_id),
            segments=convert.segments_message(seg, segments, 0),
            attributes=customer_attributes(pred.attributes, seg.snapshot.index.get(request.customer_id, -1)),
            snapshot_cutoff=seg.snapshot.cutoff.isoformat(),
            missing_models=seg.missing,
        )
        models = seg.versions()
        try:
            rec = self._recommend.Recommend(recommendation_pb2.RecommendRequest(customer_id=request.customer_id, k=k),
                                            timeout=RECOMMEND_TIMEOUT_S)
            answer.recommendations.extend(rec.items)
            models.append((rec.model.name, rec.model.version))
        except grpc.RpcError as err:  # the rest of the view stands without them
            answer.recommendations_error = f"recommendation service: {err.code().name}: {str(err.details())[:300]}"
        answer.models.extend(model_versions(models))
        return answer
