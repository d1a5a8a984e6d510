from tenure.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RiskBand(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_BAND_UNSPECIFIED: _ClassVar[RiskBand]
    RISK_BAND_LOW: _ClassVar[RiskBand]
    RISK_BAND_MEDIUM: _ClassVar[RiskBand]
    RISK_BAND_HIGH: _ClassVar[RiskBand]
RISK_BAND_UNSPECIFIED: RiskBand
RISK_BAND_LOW: RiskBand
RISK_BAND_MEDIUM: RiskBand
RISK_BAND_HIGH: RiskBand

class ScoreRequest(_message.Message):
    __slots__ = ("customers", "scores")
    CUSTOMERS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    customers: _containers.RepeatedCompositeFieldContainer[_common_pb2.CustomerRef]
    scores: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customers: _Optional[_Iterable[_Union[_common_pb2.CustomerRef, _Mapping]]] = ..., scores: _Optional[_Iterable[str]] = ...) -> None: ...

class Scores(_message.Message):
    __slots__ = ("churn_probability", "churn_band", "lookalike_score", "churn_horizon_days")
    CHURN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CHURN_BAND_FIELD_NUMBER: _ClassVar[int]
    LOOKALIKE_SCORE_FIELD_NUMBER: _ClassVar[int]
    CHURN_HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    churn_probability: float
    churn_band: RiskBand
    lookalike_score: float
    churn_horizon_days: int
    def __init__(self, churn_probability: _Optional[float] = ..., churn_band: _Optional[_Union[RiskBand, str]] = ..., lookalike_score: _Optional[float] = ..., churn_horizon_days: _Optional[int] = ...) -> None: ...

class CustomerScore(_message.Message):
    __slots__ = ("customer_id", "scores", "error")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    scores: Scores
    error: _common_pb2.RowError
    def __init__(self, customer_id: _Optional[str] = ..., scores: _Optional[_Union[Scores, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.RowError, _Mapping]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("results", "models", "missing_models")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MISSING_MODELS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CustomerScore]
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelVersion]
    missing_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, results: _Optional[_Iterable[_Union[CustomerScore, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[_common_pb2.ModelVersion, _Mapping]]] = ..., missing_models: _Optional[_Iterable[str]] = ...) -> None: ...

class ScoreChunk(_message.Message):
    __slots__ = ("chunk_id", "customer_ids", "features", "scores")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_IDS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    chunk_id: int
    customer_ids: _containers.RepeatedScalarFieldContainer[str]
    features: _common_pb2.FeatureMatrix
    scores: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chunk_id: _Optional[int] = ..., customer_ids: _Optional[_Iterable[str]] = ..., features: _Optional[_Union[_common_pb2.FeatureMatrix, _Mapping]] = ..., scores: _Optional[_Iterable[str]] = ...) -> None: ...

class ScoreChunkResult(_message.Message):
    __slots__ = ("chunk_id", "customer_ids", "churn_probability", "lookalike_score", "failures", "missing_models")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_IDS_FIELD_NUMBER: _ClassVar[int]
    CHURN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    LOOKALIKE_SCORE_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    MISSING_MODELS_FIELD_NUMBER: _ClassVar[int]
    chunk_id: int
    customer_ids: _containers.RepeatedScalarFieldContainer[str]
    churn_probability: bytes
    lookalike_score: bytes
    failures: _containers.RepeatedCompositeFieldContainer[_common_pb2.RowFailure]
    missing_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chunk_id: _Optional[int] = ..., customer_ids: _Optional[_Iterable[str]] = ..., churn_probability: _Optional[bytes] = ..., lookalike_score: _Optional[bytes] = ..., failures: _Optional[_Iterable[_Union[_common_pb2.RowFailure, _Mapping]]] = ..., missing_models: _Optional[_Iterable[str]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("customer_features", "models", "churn_horizon_days", "snapshot_cutoff", "max_batch_rows", "missing_models")
    CUSTOMER_FEATURES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CHURN_HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    MISSING_MODELS_FIELD_NUMBER: _ClassVar[int]
    customer_features: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelVersion]
    churn_horizon_days: int
    snapshot_cutoff: str
    max_batch_rows: int
    missing_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, customer_features: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[_Union[_common_pb2.ModelVersion, _Mapping]]] = ..., churn_horizon_days: _Optional[int] = ..., snapshot_cutoff: _Optional[str] = ..., max_batch_rows: _Optional[int] = ..., missing_models: _Optional[_Iterable[str]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("customer_ids", "reasons")
    CUSTOMER_IDS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    customer_ids: _containers.RepeatedScalarFieldContainer[str]
    reasons: int
    def __init__(self, customer_ids: _Optional[_Iterable[str]] = ..., reasons: _Optional[int] = ...) -> None: ...

class ChurnReason(_message.Message):
    __slots__ = ("feature", "contribution", "text", "value")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    feature: str
    contribution: float
    text: str
    value: float
    def __init__(self, feature: _Optional[str] = ..., contribution: _Optional[float] = ..., text: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class ChurnPrediction(_message.Message):
    __slots__ = ("probability", "band", "expected_days_to_churn", "reasons", "horizon_days")
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    BAND_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_DAYS_TO_CHURN_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    probability: float
    band: RiskBand
    expected_days_to_churn: float
    reasons: _containers.RepeatedCompositeFieldContainer[ChurnReason]
    horizon_days: int
    def __init__(self, probability: _Optional[float] = ..., band: _Optional[_Union[RiskBand, str]] = ..., expected_days_to_churn: _Optional[float] = ..., reasons: _Optional[_Iterable[_Union[ChurnReason, _Mapping]]] = ..., horizon_days: _Optional[int] = ...) -> None: ...

class ClvPrediction(_message.Message):
    __slots__ = ("historic", "predicted", "total", "horizon_days")
    HISTORIC_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    historic: float
    predicted: float
    total: float
    horizon_days: int
    def __init__(self, historic: _Optional[float] = ..., predicted: _Optional[float] = ..., total: _Optional[float] = ..., horizon_days: _Optional[int] = ...) -> None: ...

class PurchasePrediction(_message.Message):
    __slots__ = ("probability_7d", "probability_30d", "probability_90d", "expected_days_to_next", "next_purchase_date", "avg_days_between_orders")
    PROBABILITY_7D_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_30D_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_90D_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_DAYS_TO_NEXT_FIELD_NUMBER: _ClassVar[int]
    NEXT_PURCHASE_DATE_FIELD_NUMBER: _ClassVar[int]
    AVG_DAYS_BETWEEN_ORDERS_FIELD_NUMBER: _ClassVar[int]
    probability_7d: float
    probability_30d: float
    probability_90d: float
    expected_days_to_next: float
    next_purchase_date: str
    avg_days_between_orders: float
    def __init__(self, probability_7d: _Optional[float] = ..., probability_30d: _Optional[float] = ..., probability_90d: _Optional[float] = ..., expected_days_to_next: _Optional[float] = ..., next_purchase_date: _Optional[str] = ..., avg_days_between_orders: _Optional[float] = ...) -> None: ...

class ChannelAffinity(_message.Message):
    __slots__ = ("channel", "probability", "opted_out")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    OPTED_OUT_FIELD_NUMBER: _ClassVar[int]
    channel: str
    probability: float
    opted_out: bool
    def __init__(self, channel: _Optional[str] = ..., probability: _Optional[float] = ..., opted_out: _Optional[bool] = ...) -> None: ...

class SendTime(_message.Message):
    __slots__ = ("best_hour", "best_window_start_hour", "best_weekday", "hour_distribution", "weekday_distribution", "timezone", "events", "own_weight")
    BEST_HOUR_FIELD_NUMBER: _ClassVar[int]
    BEST_WINDOW_START_HOUR_FIELD_NUMBER: _ClassVar[int]
    BEST_WEEKDAY_FIELD_NUMBER: _ClassVar[int]
    HOUR_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    WEEKDAY_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    OWN_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    best_hour: int
    best_window_start_hour: int
    best_weekday: int
    hour_distribution: _containers.RepeatedScalarFieldContainer[float]
    weekday_distribution: _containers.RepeatedScalarFieldContainer[float]
    timezone: str
    events: int
    own_weight: float
    def __init__(self, best_hour: _Optional[int] = ..., best_window_start_hour: _Optional[int] = ..., best_weekday: _Optional[int] = ..., hour_distribution: _Optional[_Iterable[float]] = ..., weekday_distribution: _Optional[_Iterable[float]] = ..., timezone: _Optional[str] = ..., events: _Optional[int] = ..., own_weight: _Optional[float] = ...) -> None: ...

class UpliftPrediction(_message.Message):
    __slots__ = ("uplift", "p_treated", "p_control", "group", "window_days")
    UPLIFT_FIELD_NUMBER: _ClassVar[int]
    P_TREATED_FIELD_NUMBER: _ClassVar[int]
    P_CONTROL_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    uplift: float
    p_treated: float
    p_control: float
    group: str
    window_days: int
    def __init__(self, uplift: _Optional[float] = ..., p_treated: _Optional[float] = ..., p_control: _Optional[float] = ..., group: _Optional[str] = ..., window_days: _Optional[int] = ...) -> None: ...

class Predictions(_message.Message):
    __slots__ = ("churn", "clv", "purchase", "channels", "lookalike_score", "send_time", "uplift")
    CHURN_FIELD_NUMBER: _ClassVar[int]
    CLV_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    LOOKALIKE_SCORE_FIELD_NUMBER: _ClassVar[int]
    SEND_TIME_FIELD_NUMBER: _ClassVar[int]
    UPLIFT_FIELD_NUMBER: _ClassVar[int]
    churn: ChurnPrediction
    clv: ClvPrediction
    purchase: PurchasePrediction
    channels: _containers.RepeatedCompositeFieldContainer[ChannelAffinity]
    lookalike_score: float
    send_time: SendTime
    uplift: UpliftPrediction
    def __init__(self, churn: _Optional[_Union[ChurnPrediction, _Mapping]] = ..., clv: _Optional[_Union[ClvPrediction, _Mapping]] = ..., purchase: _Optional[_Union[PurchasePrediction, _Mapping]] = ..., channels: _Optional[_Iterable[_Union[ChannelAffinity, _Mapping]]] = ..., lookalike_score: _Optional[float] = ..., send_time: _Optional[_Union[SendTime, _Mapping]] = ..., uplift: _Optional[_Union[UpliftPrediction, _Mapping]] = ...) -> None: ...

class CustomerPredictions(_message.Message):
    __slots__ = ("customer_id", "predictions", "error")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    predictions: Predictions
    error: _common_pb2.RowError
    def __init__(self, customer_id: _Optional[str] = ..., predictions: _Optional[_Union[Predictions, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.RowError, _Mapping]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("results", "models", "snapshot_cutoff", "missing_models")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    MISSING_MODELS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CustomerPredictions]
    models: _containers.RepeatedCompositeFieldContainer[_common_pb2.ModelVersion]
    snapshot_cutoff: str
    missing_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, results: _Optional[_Iterable[_Union[CustomerPredictions, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[_common_pb2.ModelVersion, _Mapping]]] = ..., snapshot_cutoff: _Optional[str] = ..., missing_models: _Optional[_Iterable[str]] = ...) -> None: ...
