from tenure.v1 import common_pb2 as _common_pb2
from tenure.v1 import recommendation_pb2 as _recommendation_pb2
from tenure.v1 import scoring_pb2 as _scoring_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LifecycleStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIFECYCLE_STAGE_UNSPECIFIED: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_NEW: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_ACTIVE: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_AT_RISK: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_LAPSED: _ClassVar[LifecycleStage]
    LIFECYCLE_STAGE_LOST: _ClassVar[LifecycleStage]

class GridBand(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRID_BAND_UNSPECIFIED: _ClassVar[GridBand]
    GRID_BAND_LOW: _ClassVar[GridBand]
    GRID_BAND_MEDIUM: _ClassVar[GridBand]
    GRID_BAND_HIGH: _ClassVar[GridBand]

class SegmentFamily(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEGMENT_FAMILY_UNSPECIFIED: _ClassVar[SegmentFamily]
    SEGMENT_FAMILY_RFM: _ClassVar[SegmentFamily]
    SEGMENT_FAMILY_LIFECYCLE: _ClassVar[SegmentFamily]
    SEGMENT_FAMILY_CLUSTER: _ClassVar[SegmentFamily]
    SEGMENT_FAMILY_GRID: _ClassVar[SegmentFamily]

class ConditionOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONDITION_OP_UNSPECIFIED: _ClassVar[ConditionOp]
    CONDITION_OP_GE: _ClassVar[ConditionOp]
    CONDITION_OP_LE: _ClassVar[ConditionOp]
    CONDITION_OP_GT: _ClassVar[ConditionOp]
    CONDITION_OP_LT: _ClassVar[ConditionOp]
    CONDITION_OP_IN: _ClassVar[ConditionOp]
    CONDITION_OP_TOP_PERCENT: _ClassVar[ConditionOp]
    CONDITION_OP_BOTTOM_PERCENT: _ClassVar[ConditionOp]
    CONDITION_OP_EQ: _ClassVar[ConditionOp]
    CONDITION_OP_NOT_IN: _ClassVar[ConditionOp]
    CONDITION_OP_BETWEEN: _ClassVar[ConditionOp]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
LIFECYCLE_STAGE_UNSPECIFIED: LifecycleStage
LIFECYCLE_STAGE_NEW: LifecycleStage
LIFECYCLE_STAGE_ACTIVE: LifecycleStage
LIFECYCLE_STAGE_AT_RISK: LifecycleStage
LIFECYCLE_STAGE_LAPSED: LifecycleStage
LIFECYCLE_STAGE_LOST: LifecycleStage
GRID_BAND_UNSPECIFIED: GridBand
GRID_BAND_LOW: GridBand
GRID_BAND_MEDIUM: GridBand
GRID_BAND_HIGH: GridBand
SEGMENT_FAMILY_UNSPECIFIED: SegmentFamily
SEGMENT_FAMILY_RFM: SegmentFamily
SEGMENT_FAMILY_LIFECYCLE: SegmentFamily
SEGMENT_FAMILY_CLUSTER: SegmentFamily
SEGMENT_FAMILY_GRID: SegmentFamily
CONDITION_OP_UNSPECIFIED: ConditionOp
CONDITION_OP_GE: ConditionOp
CONDITION_OP_LE: ConditionOp
CONDITION_OP_GT: ConditionOp
CONDITION_OP_LT: ConditionOp
CONDITION_OP_IN: ConditionOp
CONDITION_OP_TOP_PERCENT: ConditionOp
CONDITION_OP_BOTTOM_PERCENT: ConditionOp
CONDITION_OP_EQ: ConditionOp
CONDITION_OP_NOT_IN: ConditionOp
CONDITION_OP_BETWEEN: ConditionOp
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState

class GetSegmentsRequest(_message.Message):
    __slots__ = ("customer_ids",)
    CUSTOMER_IDS_FIELD_NUMBER: _ClassVar[int]
    customer_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RfmScores(_message.Message):
    __slots__ = ("recency", "frequency", "monetary")
    RECENCY_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    recency: int
    frequency: int
    monetary: int
    def __init__(self, recency: _Optional[int] = ..., frequency: _Optional[int] = ..., monetary: _Optional[int] = ...) -> None: ...

class Segments(_message.Message):
    __slots__ = ("rfm", "rfm_segment", "lifecycle_stage", "recency_days", "orders", "monetary", "cluster", "grid")
    RFM_FIELD_NUMBER: _ClassVar[int]
    RFM_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    RECENCY_DAYS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    rfm: RfmScores
    rfm_segment: str
    lifecycle_stage: LifecycleStage
    recency_days: float
    orders: int
    monetary: float
    cluster: Cluster
    grid: GridCell
    def __init__(self, rfm: _Optional[_Union[RfmScores, _Mapping]] = ..., rfm_segment: _Optional[str] = ..., lifecycle_stage: _Optional[_Union[LifecycleStage, str]] = ..., recency_days: _Optional[float] = ..., orders: _Optional[int] = ..., monetary: _Optional[float] = ..., cluster: _Optional[_Union[Cluster, _Mapping]] = ..., grid: _Optional[_Union[GridCell, _Mapping]] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("id", "name", "description")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    description: str
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class GridCell(_message.Message):
    __slots__ = ("churn", "purchase", "name")
    CHURN_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    churn: GridBand
    purchase: GridBand
    name: str
    def __init__(self, churn: _Optional[_Union[GridBand, str]] = ..., purchase: _Optional[_Union[GridBand, str]] = ..., name: _Optional[str] = ...) -> None: ...

class CustomerSegments(_message.Message):
    __slots__ = ("customer_id", "segments", "error")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    segments: Segments
    error: _common_pb2.RowError
    def __init__(self, customer_id: _Optional[str] = ..., segments: _Optional[_Union[Segments, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.RowError, _Mapping]] = ...) -> None: ...

class GetSegmentsResponse(_message.Message):
    __slots__ = ("results", "missing_models")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_MODELS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CustomerSegments]
    missing_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, results: _Optional[_Iterable[_Union[CustomerSegments, _Mapping]]] = ..., missing_models: _Optional[_Iterable[str]] = ...) -> None: ...

class LookalikeAudienceRequest(_message.Message):
    __slots__ = ("size", "include_seed", "min_score", "model")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SEED_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    size: int
    include_seed: bool
    min_score: float
    model: str
    def __init__(self, size: _Optional[int] = ..., include_seed: _Optional[bool] = ..., min_score: _Optional[float] = ..., model: _Optional[str] = ...) -> None: ...

class AudienceMember(_message.Message):
    __slots__ = ("customer_id", "score", "rank", "model")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    score: float
    rank: int
    model: _common_pb2.ModelVersion
    def __init__(self, customer_id: _Optional[str] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ..., model: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ...) -> None: ...

class DescribeSegmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RfmRule(_message.Message):
    __slots__ = ("segment", "recency_min", "recency_max", "frequency_monetary_min", "frequency_monetary_max")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    RECENCY_MIN_FIELD_NUMBER: _ClassVar[int]
    RECENCY_MAX_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_MONETARY_MIN_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_MONETARY_MAX_FIELD_NUMBER: _ClassVar[int]
    segment: str
    recency_min: int
    recency_max: int
    frequency_monetary_min: float
    frequency_monetary_max: float
    def __init__(self, segment: _Optional[str] = ..., recency_min: _Optional[int] = ..., recency_max: _Optional[int] = ..., frequency_monetary_min: _Optional[float] = ..., frequency_monetary_max: _Optional[float] = ...) -> None: ...

class SegmentCount(_message.Message):
    __slots__ = ("segment", "customers", "share")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    segment: str
    customers: int
    share: float
    def __init__(self, segment: _Optional[str] = ..., customers: _Optional[int] = ..., share: _Optional[float] = ...) -> None: ...

class SegmentCatalog(_message.Message):
    __slots__ = ("rfm_rules", "rfm_segments", "lifecycle_stages", "clusters", "cluster_counts", "grid_cells", "churn_thresholds", "purchase_thresholds", "customers", "rescoring", "missing_models")
    RFM_RULES_FIELD_NUMBER: _ClassVar[int]
    RFM_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGES_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_COUNTS_FIELD_NUMBER: _ClassVar[int]
    GRID_CELLS_FIELD_NUMBER: _ClassVar[int]
    CHURN_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    RESCORING_FIELD_NUMBER: _ClassVar[int]
    MISSING_MODELS_FIELD_NUMBER: _ClassVar[int]
    rfm_rules: _containers.RepeatedCompositeFieldContainer[RfmRule]
    rfm_segments: _containers.RepeatedCompositeFieldContainer[SegmentCount]
    lifecycle_stages: _containers.RepeatedCompositeFieldContainer[SegmentCount]
    clusters: _containers.RepeatedCompositeFieldContainer[Cluster]
    cluster_counts: _containers.RepeatedCompositeFieldContainer[SegmentCount]
    grid_cells: _containers.RepeatedCompositeFieldContainer[SegmentCount]
    churn_thresholds: _containers.RepeatedScalarFieldContainer[float]
    purchase_thresholds: _containers.RepeatedScalarFieldContainer[float]
    customers: int
    rescoring: Rescoring
    missing_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rfm_rules: _Optional[_Iterable[_Union[RfmRule, _Mapping]]] = ..., rfm_segments: _Optional[_Iterable[_Union[SegmentCount, _Mapping]]] = ..., lifecycle_stages: _Optional[_Iterable[_Union[SegmentCount, _Mapping]]] = ..., clusters: _Optional[_Iterable[_Union[Cluster, _Mapping]]] = ..., cluster_counts: _Optional[_Iterable[_Union[SegmentCount, _Mapping]]] = ..., grid_cells: _Optional[_Iterable[_Union[SegmentCount, _Mapping]]] = ..., churn_thresholds: _Optional[_Iterable[float]] = ..., purchase_thresholds: _Optional[_Iterable[float]] = ..., customers: _Optional[int] = ..., rescoring: _Optional[_Union[Rescoring, _Mapping]] = ..., missing_models: _Optional[_Iterable[str]] = ...) -> None: ...

class Rescoring(_message.Message):
    __slots__ = ("id", "snapshot_cutoff", "at", "models")
    ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    id: int
    snapshot_cutoff: str
    at: float
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelVersion]
    def __init__(self, id: _Optional[int] = ..., snapshot_cutoff: _Optional[str] = ..., at: _Optional[float] = ..., models: _Optional[_Iterable[_Union[_common_pb2.ModelVersion, _Mapping]]] = ...) -> None: ...

class SegmentChangesRequest(_message.Message):
    __slots__ = ("after_sequence", "follow", "families")
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    FAMILIES_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    follow: bool
    families: _containers.RepeatedScalarFieldContainer[SegmentFamily]
    def __init__(self, after_sequence: _Optional[int] = ..., follow: _Optional[bool] = ..., families: _Optional[_Iterable[_Union[SegmentFamily, str]]] = ...) -> None: ...

class SegmentChange(_message.Message):
    __slots__ = ("sequence", "customer_id", "family", "from_segment", "to_segment", "rescoring_id", "at", "event_id")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    FROM_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    TO_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    RESCORING_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    customer_id: str
    family: SegmentFamily
    from_segment: str
    to_segment: str
    rescoring_id: int
    at: float
    event_id: str
    def __init__(self, sequence: _Optional[int] = ..., customer_id: _Optional[str] = ..., family: _Optional[_Union[SegmentFamily, str]] = ..., from_segment: _Optional[str] = ..., to_segment: _Optional[str] = ..., rescoring_id: _Optional[int] = ..., at: _Optional[float] = ..., event_id: _Optional[str] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("field", "op", "value", "values", "value_max")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    VALUE_MAX_FIELD_NUMBER: _ClassVar[int]
    field: str
    op: ConditionOp
    value: float
    values: _containers.RepeatedScalarFieldContainer[str]
    value_max: float
    def __init__(self, field: _Optional[str] = ..., op: _Optional[_Union[ConditionOp, str]] = ..., value: _Optional[float] = ..., values: _Optional[_Iterable[str]] = ..., value_max: _Optional[float] = ...) -> None: ...

class AudienceQuery(_message.Message):
    __slots__ = ("conditions", "order_by", "cursor", "limit")
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    order_by: str
    cursor: str
    limit: int
    def __init__(self, conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., order_by: _Optional[str] = ..., cursor: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class AudienceHeader(_message.Message):
    __slots__ = ("count", "base", "rescoring_id", "skipped")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    RESCORING_ID_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    count: int
    base: int
    rescoring_id: int
    skipped: int
    def __init__(self, count: _Optional[int] = ..., base: _Optional[int] = ..., rescoring_id: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class AudienceMemberRow(_message.Message):
    __slots__ = ("customer_id", "position", "cursor", "churn", "clv_predicted", "purchase_30d", "rfm_segment", "lifecycle", "uplift", "best_hour", "best_weekday", "send_timezone", "next_send_at")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    CHURN_FIELD_NUMBER: _ClassVar[int]
    CLV_PREDICTED_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_30D_FIELD_NUMBER: _ClassVar[int]
    RFM_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    UPLIFT_FIELD_NUMBER: _ClassVar[int]
    BEST_HOUR_FIELD_NUMBER: _ClassVar[int]
    BEST_WEEKDAY_FIELD_NUMBER: _ClassVar[int]
    SEND_TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEND_AT_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    position: int
    cursor: str
    churn: float
    clv_predicted: float
    purchase_30d: float
    rfm_segment: str
    lifecycle: str
    uplift: float
    best_hour: int
    best_weekday: int
    send_timezone: str
    next_send_at: str
    def __init__(self, customer_id: _Optional[str] = ..., position: _Optional[int] = ..., cursor: _Optional[str] = ..., churn: _Optional[float] = ..., clv_predicted: _Optional[float] = ..., purchase_30d: _Optional[float] = ..., rfm_segment: _Optional[str] = ..., lifecycle: _Optional[str] = ..., uplift: _Optional[float] = ..., best_hour: _Optional[int] = ..., best_weekday: _Optional[int] = ..., send_timezone: _Optional[str] = ..., next_send_at: _Optional[str] = ...) -> None: ...

class AudienceExportItem(_message.Message):
    __slots__ = ("header", "member")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    header: AudienceHeader
    member: AudienceMemberRow
    def __init__(self, header: _Optional[_Union[AudienceHeader, _Mapping]] = ..., member: _Optional[_Union[AudienceMemberRow, _Mapping]] = ...) -> None: ...

class ProfileRequest(_message.Message):
    __slots__ = ("rfm_segment", "lifecycle", "cluster", "audience", "top")
    RFM_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    rfm_segment: str
    lifecycle: str
    cluster: int
    audience: AudienceQuery
    top: int
    def __init__(self, rfm_segment: _Optional[str] = ..., lifecycle: _Optional[str] = ..., cluster: _Optional[int] = ..., audience: _Optional[_Union[AudienceQuery, _Mapping]] = ..., top: _Optional[int] = ...) -> None: ...

class ProfileFeature(_message.Message):
    __slots__ = ("feature", "kind", "group_value", "base_value", "index", "distinctiveness")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    GROUP_VALUE_FIELD_NUMBER: _ClassVar[int]
    BASE_VALUE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DISTINCTIVENESS_FIELD_NUMBER: _ClassVar[int]
    feature: str
    kind: str
    group_value: float
    base_value: float
    index: float
    distinctiveness: float
    def __init__(self, feature: _Optional[str] = ..., kind: _Optional[str] = ..., group_value: _Optional[float] = ..., base_value: _Optional[float] = ..., index: _Optional[float] = ..., distinctiveness: _Optional[float] = ...) -> None: ...

class ProfileReport(_message.Message):
    __slots__ = ("group_size", "base_size", "features")
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    BASE_SIZE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    group_size: int
    base_size: int
    features: _containers.RepeatedCompositeFieldContainer[ProfileFeature]
    def __init__(self, group_size: _Optional[int] = ..., base_size: _Optional[int] = ..., features: _Optional[_Iterable[_Union[ProfileFeature, _Mapping]]] = ...) -> None: ...

class LookalikeJobRequest(_message.Message):
    __slots__ = ("name", "seed_customer_ids")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEED_CUSTOMER_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    seed_customer_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., seed_customer_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "state", "progress", "message", "model", "metrics", "seed_found", "seed_unknown")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SEED_FOUND_FIELD_NUMBER: _ClassVar[int]
    SEED_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    progress: float
    message: str
    model: _common_pb2.ModelVersion
    metrics: _containers.ScalarMap[str, float]
    seed_found: int
    seed_unknown: int
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., seed_found: _Optional[int] = ..., seed_unknown: _Optional[int] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class Customer360Request(_message.Message):
    __slots__ = ("customer_id", "recommendations")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    recommendations: int
    def __init__(self, customer_id: _Optional[str] = ..., recommendations: _Optional[int] = ...) -> None: ...

class FeatureValue(_message.Message):
    __slots__ = ("name", "value", "base_mean")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    BASE_MEAN_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    base_mean: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., base_mean: _Optional[float] = ...) -> None: ...

class Customer360(_message.Message):
    __slots__ = ("customer_id", "key_features", "predictions", "segments", "recommendations", "recommendations_error", "models", "snapshot_cutoff", "features", "missing_models", "attributes")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FEATURES_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_ERROR_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    MISSING_MODELS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    key_features: _containers.RepeatedCompositeFieldContainer[FeatureValue]
    predictions: _scoring_pb2.Predictions
    segments: Segments
    recommendations: _containers.RepeatedCompositeFieldContainer[_recommendation_pb2.Recommendation]
    recommendations_error: str
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelVersion]
    snapshot_cutoff: str
    features: _containers.RepeatedCompositeFieldContainer[FeatureValue]
    missing_models: _containers.RepeatedScalarFieldContainer[str]
    attributes: _containers.RepeatedCompositeFieldContainer[_common_pb2.CustomerAttribute]
    def __init__(self, customer_id: _Optional[str] = ..., key_features: _Optional[_Iterable[_Union[FeatureValue, _Mapping]]] = ..., predictions: _Optional[_Union[_scoring_pb2.Predictions, _Mapping]] = ..., segments: _Optional[_Union[Segments, _Mapping]] = ..., recommendations: _Optional[_Iterable[_Union[_recommendation_pb2.Recommendation, _Mapping]]] = ..., recommendations_error: _Optional[str] = ..., models: _Optional[_Iterable[_Union[_common_pb2.ModelVersion, _Mapping]]] = ..., snapshot_cutoff: _Optional[str] = ..., features: _Optional[_Iterable[_Union[FeatureValue, _Mapping]]] = ..., missing_models: _Optional[_Iterable[str]] = ..., attributes: _Optional[_Iterable[_Union[_common_pb2.CustomerAttribute, _Mapping]]] = ...) -> None: ...
