"""The one table from domain exceptions to gRPC status codes, for calls and for batch rows."""
from __future__ import annotations

import logging
import re

import grpc

from tenure.errors import (
    ArtifactError,
    Cancelled,
    DataError,
    DeadlineExpired,
    FeatureOff,
    InvalidInput,
    ModelUnavailable,
    NotEnoughHistory,
    StaleCursor,
    StoreUnavailable,
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
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    FeatureOff: grpc.StatusCode.FAILED_PRECONDITION,
}
MAX_MESSAGE_CHARS = 1_000
"""Status messages are capped: they may quote client input and must stay bounded."""


log = logging.getLogger(__name__)
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"(),;:<>\[\]{}]+")
"""An absolute POSIX path in a message (not part of a URL, a ratio like 1/2, or a relative path)."""


def status_for(err: TenureError) -> tuple[grpc.StatusCode, str]:
    """The status of a domain error and its message for the client: absolute server paths shortened
    to their last two parts (strip_paths; the full message stays in the server's log), clipped."""
    code = grpc.StatusCode.INTERNAL
    for cls in type(err).__mro__:
        if cls in STATUS:
            code = STATUS[cls]
            break
    text = str(err)
    message = strip_paths(text)
    if message != text:
        log.debug("%s to the client as %r: %s", code.name, message[:200], text)
    return code, clip(message)


def strip_paths(message: str) -> str:
    """Absolute paths shortened to ".../<parent>/<name>": clients learn which model version or file is
    meant, never where the server keeps its repository or state."""
    def short(m: re.Match[str]) -> str:
        parts = [p for p in m.group(0).split("/") if p]
        return ".../" + "/".join(parts[-2:]) if parts else m.group(0)
    return ABSOLUTE_PATH.sub(short, message)


def clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 3] + "..."
