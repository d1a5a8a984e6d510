from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CustomerRef(_message.Message):
    __slots__ = ("customer_id", "inline")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    INLINE_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    inline: InlineFeatures
    def __init__(self, customer_id: _Optional[str] = ..., inline: _Optional[_Union[InlineFeatures, _Mapping]] = ...) -> None: ...

class InlineFeatures(_message.Message):
    __slots__ = ("key", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, key: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class FeatureMatrix(_message.Message):
    __slots__ = ("rows", "cols", "float32_le")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    FLOAT32_LE_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    float32_le: bytes
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ..., float32_le: _Optional[bytes] = ...) -> None: ...

class RowError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class RowFailure(_message.Message):
    __slots__ = ("row", "error")
    ROW_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    row: int
    error: RowError
    def __init__(self, row: _Optional[int] = ..., error: _Optional[_Union[RowError, _Mapping]] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("product_id", "name", "category", "price")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    name: str
    category: str
    price: float
    def __init__(self, product_id: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ...) -> None: ...

class CustomerAttribute(_message.Message):
    __slots__ = ("name", "kind", "number", "text", "values", "granted", "channel")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    number: float
    text: str
    values: _containers.RepeatedScalarFieldContainer[str]
    granted: bool
    channel: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., number: _Optional[float] = ..., text: _Optional[str] = ..., values: _Optional[_Iterable[str]] = ..., granted: _Optional[bool] = ..., channel: _Optional[str] = ...) -> None: ...
