from tenure.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CandidateSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CANDIDATE_SOURCE_UNSPECIFIED: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_HISTORY: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_CO_PURCHASE: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_CATEGORY_POPULAR: _ClassVar[CandidateSource]
    CANDIDATE_SOURCE_POPULAR: _ClassVar[CandidateSource]

class FeedbackKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_KIND_UNSPECIFIED: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_IMPRESSION: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_CLICK: _ClassVar[FeedbackKind]
    FEEDBACK_KIND_PURCHASE: _ClassVar[FeedbackKind]
CANDIDATE_SOURCE_UNSPECIFIED: CandidateSource
CANDIDATE_SOURCE_HISTORY: CandidateSource
CANDIDATE_SOURCE_CO_PURCHASE: CandidateSource
CANDIDATE_SOURCE_CATEGORY_POPULAR: CandidateSource
CANDIDATE_SOURCE_POPULAR: CandidateSource
FEEDBACK_KIND_UNSPECIFIED: FeedbackKind
FEEDBACK_KIND_IMPRESSION: FeedbackKind
FEEDBACK_KIND_CLICK: FeedbackKind
FEEDBACK_KIND_PURCHASE: FeedbackKind

class RecommendRequest(_message.Message):
    __slots__ = ("customer_id", "k", "exclude_product_ids", "category", "include_recently_shown", "declared_interests_only")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RECENTLY_SHOWN_FIELD_NUMBER: _ClassVar[int]
    DECLARED_INTERESTS_ONLY_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    k: int
    exclude_product_ids: _containers.RepeatedScalarFieldContainer[str]
    category: str
    include_recently_shown: bool
    declared_interests_only: bool
    def __init__(self, customer_id: _Optional[str] = ..., k: _Optional[int] = ..., exclude_product_ids: _Optional[_Iterable[str]] = ..., category: _Optional[str] = ..., include_recently_shown: _Optional[bool] = ..., declared_interests_only: _Optional[bool] = ...) -> None: ...

class BasketItem(_message.Message):
    __slots__ = ("product_id", "quantity")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class RecommendForBasketRequest(_message.Message):
    __slots__ = ("items", "customer_id", "k", "exclude_product_ids")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BasketItem]
    customer_id: str
    k: int
    exclude_product_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[_Union[BasketItem, _Mapping]]] = ..., customer_id: _Optional[str] = ..., k: _Optional[int] = ..., exclude_product_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("product", "score", "rank", "source")
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    product: _common_pb2.Product
    score: float
    rank: int
    source: CandidateSource
    def __init__(self, product: _Optional[_Union[_common_pb2.Product, _Mapping]] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ..., source: _Optional[_Union[CandidateSource, str]] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "model", "candidates_scored", "request_id", "excluded_recently_shown", "categories_applied")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_SCORED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_RECENTLY_SHOWN_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_APPLIED_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Recommendation]
    model: _common_pb2.ModelVersion
    candidates_scored: int
    request_id: str
    excluded_recently_shown: int
    categories_applied: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ..., candidates_scored: _Optional[int] = ..., request_id: _Optional[str] = ..., excluded_recently_shown: _Optional[int] = ..., categories_applied: _Optional[_Iterable[str]] = ...) -> None: ...

class FeedbackEvent(_message.Message):
    __slots__ = ("customer_id", "product_id", "kind", "position", "request_id", "timestamp")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    product_id: str
    kind: FeedbackKind
    position: int
    request_id: str
    timestamp: float
    def __init__(self, customer_id: _Optional[str] = ..., product_id: _Optional[str] = ..., kind: _Optional[_Union[FeedbackKind, str]] = ..., position: _Optional[int] = ..., request_id: _Optional[str] = ..., timestamp: _Optional[float] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FeedbackEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FeedbackEvent, _Mapping]]] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("recorded", "failures")
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    failures: _containers.RepeatedCompositeFieldContainer[_common_pb2.RowFailure]
    def __init__(self, recorded: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[_common_pb2.RowFailure, _Mapping]]] = ...) -> None: ...

class FeedbackReportRequest(_message.Message):
    __slots__ = ("since", "until")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    since: float
    until: float
    def __init__(self, since: _Optional[float] = ..., until: _Optional[float] = ...) -> None: ...

class PositionStats(_message.Message):
    __slots__ = ("position", "impressions", "clicks", "purchases", "click_through_rate", "conversion_rate")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    PURCHASES_FIELD_NUMBER: _ClassVar[int]
    CLICK_THROUGH_RATE_FIELD_NUMBER: _ClassVar[int]
    CONVERSION_RATE_FIELD_NUMBER: _ClassVar[int]
    position: int
    impressions: int
    clicks: int
    purchases: int
    click_through_rate: float
    conversion_rate: float
    def __init__(self, position: _Optional[int] = ..., impressions: _Optional[int] = ..., clicks: _Optional[int] = ..., purchases: _Optional[int] = ..., click_through_rate: _Optional[float] = ..., conversion_rate: _Optional[float] = ...) -> None: ...

class FeedbackReport(_message.Message):
    __slots__ = ("positions", "total")
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[PositionStats]
    total: PositionStats
    def __init__(self, positions: _Optional[_Iterable[_Union[PositionStats, _Mapping]]] = ..., total: _Optional[_Union[PositionStats, _Mapping]] = ...) -> None: ...
