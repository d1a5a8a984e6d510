"""The one table from domain exceptions to gRPC status codes, for calls and for batch rows."""
from __future__ import annotations

import grpc

from tenure.errors import (
    ArtifactError,
    Cancelled,
    DataError,
    DeadlineExpired,
    InvalidInput,
    ModelUnavailable,
    NotEnoughHistory,
    StaleCursor,
    TenureError,
    TooLarge,
    UnknownCustomer,
    UnknownModel,
    UnknownProduct,
)


class ModelMissing(TenureError):
    """A call needs a model the repository does not hold: the shop's data could not support it (no
    products, no channels, too short a history) or it failed its checks and was not published.
    FAILED_PRECONDITION, not UNAVAILABLE: retrying does not help until the model is trained."""

    def __init__(self, message: str, model: str) -> None:
        super().__init__(message)
        self.model = model

    @classmethod
    def named(cls, model: str, needed_for: str = "") -> "ModelMissing":
        what = f" ({needed_for})" if needed_for else ""
        return cls(f"model {model!r} is not in the repository{what}: the shop's data could not support it, "
                   "or it was not published", model)


STATUS: dict[type[TenureError], grpc.StatusCode] = {
    UnknownCustomer: grpc.StatusCode.NOT_FOUND,
    UnknownProduct: grpc.StatusCode.NOT_FOUND,
    UnknownModel: grpc.StatusCode.NOT_FOUND,
    DeadlineExpired: grpc.StatusCode.DEADLINE_EXCEEDED,
    Cancelled: grpc.StatusCode.CANCELLED,
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    DataError: grpc.StatusCode.INVALID_ARGUMENT,
    NotEnoughHistory: grpc.StatusCode.FAILED_PRECONDITION,
    TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ModelUnavailable: grpc.StatusCode.UNAVAILABLE,
    StaleCursor: grpc.StatusCode.FAILED_PRECONDITION,
    ArtifactError: grpc.StatusCode.UNAVAILABLE,
    ModelMissing: grpc.StatusCode.FAILED_PRECONDITION,
}
MAX_MESSAGE_CHARS = 1_000
"""Status messages are capped: they may quote client input and must stay bounded."""


def status_for(err: TenureError) -> tuple[grpc.StatusCode, str]:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls], clip(str(err))
    return grpc.StatusCode.INTERNAL, clip(str(err))


def clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 3] + "..."
