"""Conversions every service shares: domain errors to per-row errors, model versions."""
from __future__ import annotations

from services.core.errors import status_for
from tenure.errors import TenureError
from tenure.v1 import common_pb2


def row_error(err: TenureError) -> common_pb2.RowError:
    code, message = status_for(err)
    return common_pb2.RowError(code=code.value[0], message=message)


def model_versions(pairs: list[tuple[str, str]]) -> list[common_pb2.ModelVersion]:
    return [common_pb2.ModelVersion(name=n, version=v) for n, v in pairs]
