"""What the sync and asyncio clients share: requests built and answers parsed here, once.

A client method is a *flow*: a generator that yields the gRPC calls it needs (Call) and receives each
call's answer, then returns the method's result. ScoringClient runs a flow with blocking calls,
AsyncScoringClient awaits the same flow's calls on grpc.aio: both give the same results from the same code.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generator, Iterable, Iterator, Mapping, Sequence, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from tenure.errors import TenureError
from tenure.v1 import common_pb2, inference_pb2, recommendation_pb2, scoring_pb2, segmentation_pb2

if TYPE_CHECKING:
    import pandas as pd
else:
    from tenure.lazy import LazyModule

    pd = LazyModule("pandas")  # imported at first use: the services import this package for its channel

T = TypeVar("T")
STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
"""gRPC status code number -> name (RowError.code is a number)."""


class TenureRpcError(TenureError):
    """A call to a Tenure service failed: `code` (grpc.StatusCode) and `details` (the server's message, which
    says what was expected), `method` the RPC. Every client method raises this instead of grpc.RpcError
    (kept as __cause__); per-row errors of batch methods are not raised but returned in an `error` column."""

    def __init__(self, code: grpc.StatusCode, details: str, method: str = "") -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.method = method


def rpc_error(err: grpc.RpcError, method: str) -> TenureRpcError:
    """The typed error of a failed call (grpc.Call and grpc.aio errors alike)."""
    code_fn, details_fn = getattr(err, "code", None), getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    details = details_fn() if callable(details_fn) else str(err)
    return TenureRpcError(code or grpc.StatusCode.UNKNOWN, details or "", method)


@dataclass(frozen=True)
class Call:
    """One gRPC call a flow needs: `method` of the client's service stub (or of the health stub)."""

    method: str
    request: Any
    """A message, or an iterable of messages for a client-streaming method."""
    stream: bool = False
    """Server streaming: the flow receives the list of answers."""
    bulk: bool = False
    """Takes the client's bulk deadline (bulk_timeout) instead of its per-call one (timeout)."""
    health: bool = False
    """A grpc.health.v1.Health method instead of the service's."""
    events: bool = False
    """A tenure.v1.EventService method (every service serves it) instead of the client's service."""


Flow = Generator[Call, Any, T]


def row_error(error: common_pb2.RowError) -> str:
    """A row's error as one string: 'NOT_FOUND: unknown customer id ...'."""
    return f"{STATUS_NAMES.get(error.code, str(error.code))}: {error.message}"


def _opt(message: Any, field: str) -> float:
    return float(getattr(message, field)) if message.HasField(field) else float("nan")


def _enum_name(enum: Any, value: int, prefix: str) -> str | None:
    return enum.Name(value).removeprefix(prefix).lower() if value else None


def _versions(models: Iterable[common_pb2.ModelVersion]) -> list[str]:
    return [f"{m.name}/{m.version}" for m in models]


# ---------------------------------------------------------------------------------------------- health


def health(service: str = "") -> Flow[str]:
    """The serving status name of the server ("" = overall) or of one service: SERVING, NOT_SERVING, ..."""
    answer = yield Call("Check", health_pb2.HealthCheckRequest(service=service), health=True)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


# --------------------------------------------------------------------------------------------- scoring

SCORE_COLUMNS = ["customer_id", "churn_probability", "churn_band", "churn_horizon_days", "lookalike_score", "error"]
PREDICT_COLUMNS = ["customer_id", "churn_probability", "churn_band", "expected_days_to_churn", "churn_reasons",
                   "clv_historic", "clv_predicted", "clv_total", "purchase_7d", "purchase_30d", "purchase_90d",
                   "expected_days_to_next", "next_purchase_date", "avg_days_between_orders", "top_channel", "channels",
                   "lookalike_score", "uplift", "uplift_group", "best_hour", "best_weekday", "send_timezone", "error"]
STREAM_COLUMNS = ["customer_id", "churn_probability", "lookalike_score", "error"]


def _ref(customer: str | common_pb2.CustomerRef) -> common_pb2.CustomerRef:
    if isinstance(customer, common_pb2.CustomerRef):
        return customer
    if not isinstance(customer, str):
        raise TypeError(f"a customer is an id (str) or a CustomerRef, got {type(customer).__name__}")
    return common_pb2.CustomerRef(customer_id=customer)


def score(customers: Iterable[str | common_pb2.CustomerRef], scores: Sequence[str] = ()) -> Flow[pd.DataFrame]:
    """Score: one row per customer, in order; a failed row has NaN scores and its `error`."""
    answer = yield Call("Score", scoring_pb2.ScoreRequest(customers=[_ref(c) for c in customers], scores=scores))
    rows = []
    for r in answer.results:
        s = r.scores
        rows.append((r.customer_id, _opt(s, "churn_probability"),
                     _enum_name(scoring_pb2.RiskBand, s.churn_band, "RISK_BAND_"), int(s.churn_horizon_days),
                     _opt(s, "lookalike_score"), row_error(r.error) if r.HasField("error") else None))
    frame = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    frame.attrs.update(models=_versions(answer.models), missing_models=list(answer.missing_models))
    return frame


def model_info() -> Flow[scoring_pb2.ModelInfo]:
    return (yield Call("GetModelInfo", scoring_pb2.GetModelInfoRequest()))


def _prediction_row(r: scoring_pb2.CustomerPredictions) -> tuple[Any, ...]:
    nan = float("nan")
    if r.HasField("error"):
        return (r.customer_id, nan, None, nan, [], nan, nan, nan, nan, nan, nan, nan, None, nan, None, {}, nan,
                nan, None, None, None, None, row_error(r.error))
    p = r.predictions
    c, v, u = p.churn, p.clv, p.purchase
    has_c, has_v = p.HasField("churn"), p.HasField("clv")
    has_up, has_st = p.HasField("uplift"), p.HasField("send_time")
    return (r.customer_id, c.probability if has_c else nan,
            _enum_name(scoring_pb2.RiskBand, c.band, "RISK_BAND_") if has_c else None,
            c.expected_days_to_churn if has_c else nan, [x.text for x in c.reasons],
            v.historic if has_v else nan, v.predicted if has_v else nan, v.total if has_v else nan,
            _opt(u, "probability_7d"), _opt(u, "probability_30d"), _opt(u, "probability_90d"),
            _opt(u, "expected_days_to_next"), u.next_purchase_date if u.HasField("next_purchase_date") else None,
            _opt(u, "avg_days_between_orders"),
            # the best channel the customer allows: refused channels come last (opted_out), none if all are refused
            next((ch.channel for ch in p.channels if not ch.opted_out), None),
            {ch.channel: ch.probability for ch in p.channels}, _opt(p, "lookalike_score"),
            p.uplift.uplift if has_up else nan, p.uplift.group if has_up else None,
            p.send_time.best_hour if has_st else None, p.send_time.best_weekday if has_st else None,
            p.send_time.timezone if has_st else None, None)


def predict(customer_ids: Iterable[str], reasons: int = 0, batch_rows: int = 1_000) -> Flow[pd.DataFrame]:
    """Predict in batches of batch_rows ids: one row per id, in order; an unknown id has its `error` (NOT_FOUND)
    and NaN / None elsewhere; parts whose model is missing are NaN / None (attrs['missing_models'])."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    ids = [str(c) for c in customer_ids]
    rows: list[tuple[Any, ...]] = []
    attrs: dict[str, Any] = {"models": [], "missing_models": [], "snapshot_cutoff": ""}
    for start in range(0, len(ids), batch_rows):
        answer = yield Call("Predict", scoring_pb2.PredictRequest(customer_ids=ids[start:start + batch_rows],
                                                                  reasons=reasons))
        rows.extend(_prediction_row(r) for r in answer.results)
        attrs.update(models=_versions(answer.models), missing_models=list(answer.missing_models),
                     snapshot_cutoff=answer.snapshot_cutoff)
    frame = pd.DataFrame(rows, columns=PREDICT_COLUMNS)
    frame.attrs.update(attrs)
    return frame


def score_chunks(ids: Sequence[str], X: np.ndarray | None, plan: Sequence[tuple[int, int]],
                 scores: Sequence[str] = ()) -> Iterator[scoring_pb2.ScoreChunk]:
    """StreamScore chunks: chunk k holds rows plan[k] = (start, stop) of ids (and of X, packed, when given)."""
    for number, (start, stop) in enumerate(plan):
        chunk = scoring_pb2.ScoreChunk(chunk_id=number, customer_ids=ids[start:stop], scores=scores)
        if X is not None:
            block = np.ascontiguousarray(X[start:stop], dtype="<f4")
            chunk.features.CopyFrom(common_pb2.FeatureMatrix(rows=len(block), cols=block.shape[1],
                                                             float32_le=block.tobytes()))
        yield chunk


def chunk_plan(start: int, stop: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(a + step, stop)) for a in range(start, stop, step)]


def chunk_columns(result: scoring_pb2.ScoreChunkResult) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """(churn, lookalike, errors) of one ScoreChunkResult; a score not asked for is NaN."""
    n = len(result.customer_ids)
    churn = np.frombuffer(result.churn_probability, "<f4") if result.churn_probability else np.full(n, np.nan, "f4")
    look = np.frombuffer(result.lookalike_score, "<f4") if result.lookalike_score else np.full(n, np.nan, "f4")
    if len(churn) != n or len(look) != n:
        raise TenureRpcError(grpc.StatusCode.INTERNAL, f"chunk {result.chunk_id}: {n} ids but {len(churn)} churn and "
                             f"{len(look)} lookalike values", "StreamScore")
    errors: list[str | None] = [None] * n
    for failure in result.failures:
        errors[failure.row] = row_error(failure.error)
    return churn, look, errors


def inline_features(frame: pd.DataFrame, features: Sequence[str], use: bool | None) -> np.ndarray | None:
    """The frame's feature matrix in ModelInfo order when it is to be sent inline (use None: when the frame
    has every feature column), else None (ids only: the service looks them up)."""
    has_all = all(f in frame.columns for f in features)
    if use and not has_all:
        missing = [f for f in features if f not in frame.columns]
        raise ValueError(f"inline features need every column of ModelInfo.customer_features; missing {missing[:10]}")
    if not (has_all if use is None else use):
        return None
    return np.column_stack([frame[f].to_numpy(dtype=np.float32) for f in features])


def score_frame(frame: pd.DataFrame, id_column: str = "customer_id", scores: Sequence[str] = (),
                chunk_rows: int = 10_000, inline: bool | None = None) -> Flow[pd.DataFrame]:
    """StreamScore over a frame: the ids of id_column, with the feature columns packed when the frame has
    every feature the model takes (inline None) or when inline=True. One row per input row, same index."""
    if id_column not in frame.columns:
        raise ValueError(f"no column {id_column!r}; columns are {list(frame.columns)[:20]}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    info = yield from model_info()
    ids = [str(v) for v in frame[id_column]]
    X = inline_features(frame, list(info.customer_features), inline)
    plan = chunk_plan(0, len(ids), min(chunk_rows, info.max_batch_rows or chunk_rows))
    churn, look = np.full(len(ids), np.nan, np.float32), np.full(len(ids), np.nan, np.float32)
    errors: list[str | None] = [None] * len(ids)
    missing: set[str] = set()
    results = (yield Call("StreamScore", score_chunks(ids, X, plan, scores), stream=True, bulk=True)) if plan else []
    for result in results:
        start, stop = plan[result.chunk_id]
        c, lk, e = chunk_columns(result)
        churn[start:stop], look[start:stop], errors[start:stop] = c, lk, e
        missing.update(result.missing_models)
    if len(results) != len(plan):
        raise TenureRpcError(grpc.StatusCode.INTERNAL, f"{len(results)} result chunks for {len(plan)} sent",
                             "StreamScore")
    out = pd.DataFrame({"customer_id": ids, "churn_probability": churn, "lookalike_score": look,
                        "error": pd.Series(errors, dtype=object)}, columns=STREAM_COLUMNS)
    out.index = frame.index
    out.attrs.update(models=_versions(info.models), missing_models=sorted(missing),
                     inline_features=X is not None)
    return out


# -------------------------------------------------------------------------------------- recommendation

FEEDBACK_KINDS = {"impression": recommendation_pb2.FEEDBACK_KIND_IMPRESSION,
                  "click": recommendation_pb2.FEEDBACK_KIND_CLICK, "purchase": recommendation_pb2.FEEDBACK_KIND_PURCHASE}
RECOMMENDATION_COLUMNS = ["rank", "product_id", "name", "category", "price", "score", "source"]


def recommend(customer_id: str, k: int = 0, exclude: Sequence[str] = (), category: str = "",
              include_recently_shown: bool = False,
              declared_interests_only: bool = False) -> Flow[recommendation_pb2.RecommendResponse]:
    return (yield Call("Recommend", recommendation_pb2.RecommendRequest(
        customer_id=customer_id, k=k, exclude_product_ids=exclude, category=category,
        include_recently_shown=include_recently_shown, declared_interests_only=declared_interests_only)))


def _basket_item(item: str | tuple[str, int] | recommendation_pb2.BasketItem) -> recommendation_pb2.BasketItem:
    if isinstance(item, recommendation_pb2.BasketItem):
        return item
    if isinstance(item, str):
        return recommendation_pb2.BasketItem(product_id=item, quantity=1)
    product_id, quantity = item
    return recommendation_pb2.BasketItem(product_id=product_id, quantity=quantity)


def recommend_for_basket(items: Iterable[str | tuple[str, int] | recommendation_pb2.BasketItem],
                         customer_id: str = "", k: int = 0,
                         exclude: Sequence[str] = ()) -> Flow[recommendation_pb2.RecommendResponse]:
    return (yield Call("RecommendForBasket", recommendation_pb2.RecommendForBasketRequest(
        items=[_basket_item(i) for i in items], customer_id=customer_id, k=k, exclude_product_ids=exclude)))


def feedback_event(event: recommendation_pb2.FeedbackEvent | Mapping[str, Any]) -> recommendation_pb2.FeedbackEvent:
    """A FeedbackEvent from itself or a mapping (customer_id, product_id, kind: 'impression' / 'click' /
    'purchase' or the enum, position, request_id, timestamp)."""
    if isinstance(event, recommendation_pb2.FeedbackEvent):
        return event
    fields = {k: v for k, v in event.items() if v is not None and not (isinstance(v, float) and np.isnan(v))}
    kind = fields.get("kind")
    if isinstance(kind, str):
        if kind.lower() not in FEEDBACK_KINDS:
            raise ValueError(f"feedback kind {kind!r}: expected one of {', '.join(FEEDBACK_KINDS)}")
        fields["kind"] = FEEDBACK_KINDS[kind.lower()]
    for key in ("position", "kind"):
        if key in fields:
            fields[key] = int(fields[key])
    return recommendation_pb2.FeedbackEvent(**fields)


def record_feedback(events: Iterable[recommendation_pb2.FeedbackEvent | Mapping[str, Any]] | pd.DataFrame
                    ) -> Flow[recommendation_pb2.RecordFeedbackResponse]:
    """RecordFeedback (never retried: it appends). A DataFrame has one event per row."""
    rows = events.to_dict("records") if isinstance(events, pd.DataFrame) else events
    return (yield Call("RecordFeedback", recommendation_pb2.RecordFeedbackRequest(
        events=[feedback_event(e) for e in rows])))


def feedback_report(since: float = 0.0, until: float = 0.0) -> Flow[recommendation_pb2.FeedbackReport]:
    return (yield Call("GetFeedbackReport", recommendation_pb2.FeedbackReportRequest(since=since, until=until)))


def recommendations_frame(answer: recommendation_pb2.RecommendResponse | Iterable[recommendation_pb2.Recommendation]
                          ) -> pd.DataFrame:
    """The items of a RecommendResponse (or Customer360.recommendations) as a DataFrame, best first."""
    items = answer.items if isinstance(answer, recommendation_pb2.RecommendResponse) else answer
    return pd.DataFrame([(i.rank, i.product.product_id, i.product.name, i.product.category, i.product.price, i.score,
                          _enum_name(recommendation_pb2.CandidateSource, i.source, "CANDIDATE_SOURCE_"))
                         for i in items], columns=RECOMMENDATION_COLUMNS)


# ---------------------------------------------------------------------------------------- segmentation

OPS = {">=": segmentation_pb2.CONDITION_OP_GE, "<=": segmentation_pb2.CONDITION_OP_LE,
       ">": segmentation_pb2.CONDITION_OP_GT, "<": segmentation_pb2.CONDITION_OP_LT,
       "in": segmentation_pb2.CONDITION_OP_IN, "top%": segmentation_pb2.CONDITION_OP_TOP_PERCENT,
       "bottom%": segmentation_pb2.CONDITION_OP_BOTTOM_PERCENT, "==": segmentation_pb2.CONDITION_OP_EQ,
       "not in": segmentation_pb2.CONDITION_OP_NOT_IN, "between": segmentation_pb2.CONDITION_OP_BETWEEN}
SEGMENT_COLUMNS = ["customer_id", "rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_segment", "lifecycle",
                   "recency_days", "orders", "monetary", "cluster_id", "cluster", "grid", "error"]
AUDIENCE_COLUMNS = ["customer_id", "position", "churn", "clv_predicted", "purchase_30d", "uplift", "rfm_segment", "lifecycle",
                    "best_hour", "best_weekday", "send_timezone", "next_send_at", "cursor"]
ConditionLike = segmentation_pb2.Condition | tuple[str, str, Any]


def where(field: str, op: str, value: Any) -> segmentation_pb2.Condition:
    """An audience condition: where("churn", ">=", 0.6), where("clv", "top%", 25),
    where("rfm_segment", "in", ["At Risk", "Can't Lose Them"]), where("uplift_group", "not in", ["sure_thing"]),
    where("household_size", "between", (2, 4)), where("interests", "==", "Coffee"), where("consent_sms", "==", "yes").
    Ops: >=, <=, >, <, ==, between, in, not in, top%, bottom%. "==" with text (a segment name, a text or set
    attribute's value, a consent's yes/no/unknown) compares names; with a number, numbers."""
    if op not in OPS:
        raise ValueError(f"condition op {op!r}: expected one of {', '.join(OPS)}")
    if op in ("in", "not in") or (op == "==" and isinstance(value, str)):
        values = [value] if isinstance(value, (str, int, float)) else list(value)
        return segmentation_pb2.Condition(field=field, op=OPS[op], values=[str(v) for v in values])
    if op == "between":
        low, high = value
        return segmentation_pb2.Condition(field=field, op=OPS[op], value=float(low), value_max=float(high))
    return segmentation_pb2.Condition(field=field, op=OPS[op], value=float(value))


def _condition(c: ConditionLike) -> segmentation_pb2.Condition:
    return c if isinstance(c, segmentation_pb2.Condition) else where(*c)


def audience_query(conditions: Iterable[ConditionLike] = (), order_by: str = "", limit: int = 0,
                   cursor: str = "") -> segmentation_pb2.AudienceQuery:
    return segmentation_pb2.AudienceQuery(conditions=[_condition(c) for c in conditions], order_by=order_by,
                                          limit=limit, cursor=cursor)


def _segments_row(r: segmentation_pb2.CustomerSegments) -> tuple[Any, ...]:
    if r.HasField("error"):
        return (r.customer_id, 0, 0, 0, None, None, float("nan"), 0, float("nan"), None, None, None, row_error(r.error))
    g = r.segments
    return (r.customer_id, g.rfm.recency, g.rfm.frequency, g.rfm.monetary, g.rfm_segment,
            _enum_name(segmentation_pb2.LifecycleStage, g.lifecycle_stage, "LIFECYCLE_STAGE_"), g.recency_days,
            g.orders, g.monetary, g.cluster.id if g.HasField("cluster") else None,
            g.cluster.name if g.HasField("cluster") else None, g.grid.name if g.HasField("grid") else None, None)


def get_segments(customer_ids: Iterable[str]) -> Flow[pd.DataFrame]:
    """GetSegments: one row per id, in order; an unknown id has its `error`."""
    answer = yield Call("GetSegments", segmentation_pb2.GetSegmentsRequest(customer_ids=[str(c) for c in customer_ids]))
    frame = pd.DataFrame([_segments_row(r) for r in answer.results], columns=SEGMENT_COLUMNS)
    frame.attrs["missing_models"] = list(answer.missing_models)
    return frame


def describe_segments() -> Flow[segmentation_pb2.SegmentCatalog]:
    return (yield Call("DescribeSegments", segmentation_pb2.DescribeSegmentsRequest()))


def export_audience(query: segmentation_pb2.AudienceQuery) -> Flow[pd.DataFrame]:
    """ExportAudience as a DataFrame of members (absent scores NaN); the header in attrs: count (the whole
    audience), base, rescoring_id, skipped. Resume with cursor=frame['cursor'].iloc[-1]."""
    items = yield Call("ExportAudience", query, stream=True, bulk=True)
    header = items[0].header if items and items[0].HasField("header") else segmentation_pb2.AudienceHeader()
    rows = [(m.customer_id, m.position, _opt(m, "churn"), _opt(m, "clv_predicted"), _opt(m, "purchase_30d"),
             _opt(m, "uplift"), m.rfm_segment, m.lifecycle, _opt(m, "best_hour"), _opt(m, "best_weekday"), m.send_timezone,
             m.next_send_at, m.cursor) for m in (i.member for i in items if i.HasField("member"))]
    frame = pd.DataFrame(rows, columns=AUDIENCE_COLUMNS)
    frame.attrs.update(count=header.count, base=header.base, rescoring_id=header.rescoring_id,
                       skipped=header.skipped)
    return frame


def profile_group(*, rfm_segment: str | None = None, lifecycle: str | None = None, cluster: int | None = None,
                  conditions: Iterable[ConditionLike] | None = None, top: int = 0) -> Flow[pd.DataFrame]:
    """ProfileGroup for exactly one group: a DataFrame of features, most distinctive first (index NaN when
    the base value is 0); attrs: group_size, base_size."""
    if sum(v is not None for v in (rfm_segment, lifecycle, cluster, conditions)) != 1:
        raise ValueError("profile_group needs exactly one of rfm_segment, lifecycle, cluster, conditions")
    request = segmentation_pb2.ProfileRequest(top=top)
    if rfm_segment is not None:
        request.rfm_segment = rfm_segment
    elif lifecycle is not None:
        request.lifecycle = lifecycle
    elif cluster is not None:
        request.cluster = cluster
    else:
        request.audience.CopyFrom(audience_query(conditions or ()))
    report = yield Call("ProfileGroup", request, bulk=True)
    frame = pd.DataFrame([(f.feature, f.kind, f.group_value, f.base_value, _opt(f, "index"), f.distinctiveness)
                          for f in report.features],
                         columns=["feature", "kind", "group_value", "base_value", "index", "distinctiveness"])
    frame.attrs.update(group_size=report.group_size, base_size=report.base_size)
    return frame


def lookalike_audience(size: int, model: str = "", include_seed: bool = False,
                       min_score: float = 0.0) -> Flow[pd.DataFrame]:
    """StreamLookalikeAudience: customer_id, score, rank, model (name/version), best first."""
    members = yield Call("StreamLookalikeAudience", segmentation_pb2.LookalikeAudienceRequest(
        size=size, model=model, include_seed=include_seed, min_score=min_score), stream=True, bulk=True)
    return pd.DataFrame([(m.customer_id, m.score, m.rank, f"{m.model.name}/{m.model.version}") for m in members],
                        columns=["customer_id", "score", "rank", "model"])


def start_lookalike_job(name: str, seed_customer_ids: Iterable[str]) -> Flow[segmentation_pb2.Job]:
    """StartLookalikeJob (never retried: it starts a job)."""
    return (yield Call("StartLookalikeJob", segmentation_pb2.LookalikeJobRequest(
        name=name, seed_customer_ids=[str(c) for c in seed_customer_ids])))


def customer_360(customer_id: str, recommendations: int = 0) -> Flow[segmentation_pb2.Customer360]:
    return (yield Call("GetCustomer360", segmentation_pb2.Customer360Request(
        customer_id=customer_id, recommendations=recommendations)))


def watch_job_call(job_id: str) -> Call:
    return Call("WatchJob", segmentation_pb2.WatchJobRequest(job_id=job_id), stream=True, bulk=True)


def segment_changes_call(after_sequence: int = 0, follow: bool = False, families: Sequence[str | int] = ()) -> Call:
    """families: names (rfm, lifecycle, cluster, grid) or SegmentFamily numbers."""
    numbers: list[Any] = [f if isinstance(f, int) else
                          segmentation_pb2.SegmentFamily.Value("SEGMENT_FAMILY_" + f.upper()) for f in families]
    return Call("StreamSegmentChanges", segmentation_pb2.SegmentChangesRequest(
        after_sequence=after_sequence, follow=follow, families=numbers), stream=True, bulk=True)


# ------------------------------------------------------------------------------------------- inference

DATATYPES: dict[str, str] = {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4",
                             "INT16": "<i2", "INT8": "i1", "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2",
                             "UINT8": "u1", "BOOL": "?"}
_BY_KIND = {np.dtype(v).newbyteorder("=") if np.dtype(v).itemsize > 1 else np.dtype(v): k
            for k, v in DATATYPES.items()}


def datatype_of(arr: np.ndarray) -> str:
    """The Open Inference Protocol datatype of a numpy array (str / bytes / object arrays: BYTES)."""
    if arr.dtype.kind in "OSU":
        return "BYTES"
    found = _BY_KIND.get(arr.dtype.newbyteorder("="))
    if found is None:
        raise TypeError(f"no Open Inference Protocol datatype for numpy {arr.dtype}")
    return found


def encode_tensor(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in arr.ravel()]
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)
    return np.ascontiguousarray(arr, dtype=DATATYPES[datatype]).tobytes()


def decode_tensor(raw: bytes, datatype: str, shape: Sequence[int]) -> np.ndarray:
    if datatype == "BYTES":
        out, at = [], 0
        while at < len(raw):
            (n,) = struct.unpack_from("<I", raw, at)
            out.append(raw[at + 4:at + 4 + n])
            at += 4 + n
        return np.array(out, dtype=object).reshape(list(shape))
    return np.frombuffer(raw, DATATYPES[datatype]).reshape(list(shape))


def model_metadata(name: str, version: str = "") -> Flow[inference_pb2.ModelMetadataResponse]:
    return (yield Call("ModelMetadata", inference_pb2.ModelMetadataRequest(name=name, version=version)))


def infer(model: str, inputs: Mapping[str, np.ndarray] | np.ndarray, version: str = "", outputs: Sequence[str] = (),
          request_id: str = "") -> Flow[dict[str, np.ndarray]]:
    """ModelInfer with raw tensors: inputs by name (a single array: the model's only input, named from its
    metadata); returns the outputs by name as numpy arrays of their shape."""
    if not isinstance(inputs, Mapping):
        meta = yield from model_metadata(model, version)
        if len(meta.inputs) != 1:
            raise ValueError(f"model {model!r} takes {len(meta.inputs)} inputs "
                             f"({', '.join(t.name for t in meta.inputs)}): pass a dict of arrays by name")
        want = meta.inputs[0].datatype
        arr = np.asarray(inputs)
        inputs = {meta.inputs[0].name: arr.astype(DATATYPES[want]) if want in DATATYPES else arr}
    req = inference_pb2.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, value in inputs.items():
        arr = np.asarray(value)
        datatype = datatype_of(arr)
        req.inputs.add(name=name, datatype=datatype, shape=list(arr.shape))
        req.raw_input_contents.append(encode_tensor(arr, datatype))
    for name in outputs:
        req.outputs.add(name=name)
    answer = yield Call("ModelInfer", req)
    return {o.name: decode_tensor(raw, o.datatype, o.shape) for o, raw in zip(answer.outputs, answer.raw_output_contents)}


def server_ready() -> Flow[bool]:
    return bool((yield Call("ServerReady", inference_pb2.ServerReadyRequest())).ready)


def model_ready(name: str, version: str = "") -> Flow[bool]:
    return bool((yield Call("ModelReady", inference_pb2.ModelReadyRequest(name=name, version=version))).ready)


def server_live() -> Flow[bool]:
    return bool((yield Call("ServerLive", inference_pb2.ServerLiveRequest())).live)


def server_metadata() -> Flow[inference_pb2.ServerMetadataResponse]:
    return (yield Call("ServerMetadata", inference_pb2.ServerMetadataRequest()))
