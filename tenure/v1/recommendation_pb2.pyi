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
CANDIDATE_SOURCE_UNSPECIFIED: CandidateSource
CANDIDATE_SOURCE_HISTORY: CandidateSource
CANDIDATE_SOURCE_CO_PURCHASE: CandidateSource
CANDIDATE_SOURCE_CATEGORY_POPULAR: CandidateSource
CANDIDATE_SOURCE_POPULAR: CandidateSource

class RecommendRequest(_message.Message):
    __slots__ = ("customer_id", "k", "exclude_product_ids", "category")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    k: int
    exclude_product_ids: _containers.RepeatedScalarFieldContainer[str]
    category: str
    def __init__(self, customer_id: _Optional[str] = ..., k: _Optional[int] = ..., exclude_product_ids: _Optional[_Iterable[str]] = ..., category: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("items", "model", "candidates_scored")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_SCORED_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Recommendation]
    model: _common_pb2.ModelVersion
    candidates_scored: int
    def __init__(self, items: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ..., candidates_scored: _Optional[int] = ...) -> None: ...
