from tenure.v1 import common_pb2 as _common_pb2
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
LIFECYCLE_STAGE_UNSPECIFIED: LifecycleStage
LIFECYCLE_STAGE_NEW: LifecycleStage
LIFECYCLE_STAGE_ACTIVE: LifecycleStage
LIFECYCLE_STAGE_AT_RISK: LifecycleStage
LIFECYCLE_STAGE_LAPSED: LifecycleStage
LIFECYCLE_STAGE_LOST: LifecycleStage

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
    __slots__ = ("rfm", "rfm_segment", "lifecycle_stage", "recency_days", "orders", "monetary")
    RFM_FIELD_NUMBER: _ClassVar[int]
    RFM_SEGMENT_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_STAGE_FIELD_NUMBER: _ClassVar[int]
    RECENCY_DAYS_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    MONETARY_FIELD_NUMBER: _ClassVar[int]
    rfm: RfmScores
    rfm_segment: str
    lifecycle_stage: LifecycleStage
    recency_days: float
    orders: int
    monetary: float
    def __init__(self, rfm: _Optional[_Union[RfmScores, _Mapping]] = ..., rfm_segment: _Optional[str] = ..., lifecycle_stage: _Optional[_Union[LifecycleStage, str]] = ..., recency_days: _Optional[float] = ..., orders: _Optional[int] = ..., monetary: _Optional[float] = ...) -> None: ...

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
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CustomerSegments]
    def __init__(self, results: _Optional[_Iterable[_Union[CustomerSegments, _Mapping]]] = ...) -> None: ...

class LookalikeAudienceRequest(_message.Message):
    __slots__ = ("size", "include_seed", "min_score")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SEED_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    size: int
    include_seed: bool
    min_score: float
    def __init__(self, size: _Optional[int] = ..., include_seed: _Optional[bool] = ..., min_score: _Optional[float] = ...) -> None: ...

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
