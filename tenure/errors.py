"""Domain exceptions. Services map them to gRPC status codes in one table (services/core/errors.py)."""
from __future__ import annotations


class TenureError(Exception):
    """Base of every error Tenure raises on purpose."""


class DataError(TenureError):
    """Input data (files, columns, values) is not what was expected."""


class NotEnoughHistory(DataError):
    """The data's history is too short for even the shortest label window of a model."""


class ArtifactError(TenureError):
    """A model artifact is missing, corrupt or does not match its manifest."""

    def __init__(self, message: str, model: str = "") -> None:
        super().__init__(message)
        self.model = model


class ModelUnavailable(TenureError):
    """A model the call needs is not loaded (yet)."""


class UnknownCustomer(TenureError):
    """A customer id the feature store does not know."""


class UnknownProduct(TenureError):
    """A product id the catalogue does not know."""


class InvalidInput(TenureError):
    """A request value is malformed: wrong feature count, NaN, out-of-range k, ..."""


class TooLarge(TenureError):
    """A request exceeds a configured bound (rows per batch, audience size)."""


class DeadlineExpired(TenureError):
    """The caller's deadline passed before the work started; it was dropped, not computed."""


class UnknownModel(TenureError):
    """A model name or version the repository does not hold."""


class Cancelled(TenureError):
    """The caller cancelled (or its connection closed) before the work started; it was dropped."""


class StaleCursor(TenureError):
    """A cursor from an earlier state (e.g. before a re-scoring): the caller must start again."""


class StoreUnavailable(TenureError):
    """The online feature store (Redis) cannot be reached: retry later."""


class FeatureOff(TenureError):
    """A call needs a feature the server's configuration turned off (e.g. TENURE_ONLINE_STORE=off)."""


class ConfigError(ValueError):
    """A setting (environment, settings file, flag) is malformed or out of its allowed range: the process
    does not start. Not a TenureError: it never reaches a call, so it has no gRPC status."""
