"""Protobuf wire format by hand, for replies written straight to bytes (ModelInfer, Score): varints and
length-delimited fields. Tests compare these bytes with the message serialiser's."""
from __future__ import annotations

_SMALL = [bytes((i,)) for i in range(128)]


def varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited field (string, bytes, message, packed repeated), written even when empty."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def field_if(number: int, payload: bytes) -> bytes:
    """field(), left out when the payload is empty (a proto3 string or bytes field at its default)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload if payload else b""
