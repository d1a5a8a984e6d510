from tenure.v1 import common_pb2 as _common_pb2
from tenure.v1 import recommendation_pb2 as _recommendation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_OUTCOME_UNSPECIFIED: _ClassVar[EventOutcome]
    EVENT_APPLIED: _ClassVar[EventOutcome]
    EVENT_DUPLICATE: _ClassVar[EventOutcome]
    EVENT_REJECTED: _ClassVar[EventOutcome]
    EVENT_BEFORE_SNAPSHOT: _ClassVar[EventOutcome]
EVENT_OUTCOME_UNSPECIFIED: EventOutcome
EVENT_APPLIED: EventOutcome
EVENT_DUPLICATE: EventOutcome
EVENT_REJECTED: EventOutcome
EVENT_BEFORE_SNAPSHOT: EventOutcome

class EventLine(_message.Message):
    __slots__ = ("product_id", "category", "quantity", "amount")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    category: str
    quantity: float
    amount: float
    def __init__(self, product_id: _Optional[str] = ..., category: _Optional[str] = ..., quantity: _Optional[float] = ..., amount: _Optional[float] = ...) -> None: ...

class OrderEvent(_message.Message):
    __slots__ = ("order_id", "channel", "lines")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    channel: str
    lines: _containers.RepeatedCompositeFieldContainer[EventLine]
    def __init__(self, order_id: _Optional[str] = ..., channel: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[EventLine, _Mapping]]] = ...) -> None: ...

class ReturnEvent(_message.Message):
    __slots__ = ("order_id", "lines")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    lines: _containers.RepeatedCompositeFieldContainer[EventLine]
    def __init__(self, order_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[EventLine, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "customer_id", "timestamp", "order", "return_lines", "feedback")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    RETURN_LINES_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    customer_id: str
    timestamp: float
    order: OrderEvent
    return_lines: ReturnEvent
    feedback: _recommendation_pb2.FeedbackEvent
    def __init__(self, event_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., timestamp: _Optional[float] = ..., order: _Optional[_Union[OrderEvent, _Mapping]] = ..., return_lines: _Optional[_Union[ReturnEvent, _Mapping]] = ..., feedback: _Optional[_Union[_recommendation_pb2.FeedbackEvent, _Mapping]] = ...) -> None: ...

class IngestEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class EventResult(_message.Message):
    __slots__ = ("index", "event_id", "outcome", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    outcome: EventOutcome
    error: _common_pb2.RowError
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., outcome: _Optional[_Union[EventOutcome, str]] = ..., error: _Optional[_Union[_common_pb2.RowError, _Mapping]] = ...) -> None: ...

class IngestEventsResponse(_message.Message):
    __slots__ = ("received", "applied", "duplicates", "before_snapshot", "rejected", "results", "customers_changed")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMERS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    received: int
    applied: int
    duplicates: int
    before_snapshot: int
    rejected: int
    results: _containers.RepeatedCompositeFieldContainer[EventResult]
    customers_changed: int
    def __init__(self, received: _Optional[int] = ..., applied: _Optional[int] = ..., duplicates: _Optional[int] = ..., before_snapshot: _Optional[int] = ..., rejected: _Optional[int] = ..., results: _Optional[_Iterable[_Union[EventResult, _Mapping]]] = ..., customers_changed: _Optional[int] = ...) -> None: ...
