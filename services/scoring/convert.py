"""Pure conversions between scoring protobuf messages and numpy arrays."""
from __future__ import annotations

import struct
from typing import Any

import numpy as np

from services.core.convert import row_error
from services.core.wire import field, varint
from services.scoring.engine import RowScores
from tenure.errors import InvalidInput, TenureError
from tenure.v1 import common_pb2, scoring_pb2


def refs_to_matrix(refs: list[common_pb2.CustomerRef], n_features: int, lookup) -> tuple[list[str], np.ndarray, dict[int, TenureError], list[int]]:  # type: ignore[no-untyped-def]
    """Ids and feature rows for a Score request: ids are looked up, inline rows checked for width.

    Returns keys, rows, per-row errors so far, and the indices of the inline rows (only those can
    hold NaN: stored features are finite by construction).
    """
    if len(refs) == 1 and refs[0].WhichOneof("customer") == "customer_id":  # the common per-request call
        key = refs[0].customer_id
        X1, missing = lookup([key])
        return [key], X1, missing, []
    keys: list[str] = []
    X = np.zeros((len(refs), n_features), np.float32)
    errors: dict[int, TenureError] = {}
    id_rows: list[int] = []
    inline_rows: list[int] = []
    for i, ref in enumerate(refs):
        kind = ref.WhichOneof("customer")
        if kind == "customer_id":
            keys.append(ref.customer_id)
            id_rows.append(i)
        elif kind == "inline":
            keys.append(ref.inline.key)
            values = ref.inline.values
            if len(values) != n_features:
                errors[i] = InvalidInput(f"row {i}: {len(values)} inline features, expected {n_features} "
                                         "(see GetModelInfo.customer_features for the order)")
            else:
                X[i] = np.asarray(values, np.float32)
                inline_rows.append(i)
        else:
            keys.append("")
            errors[i] = InvalidInput(f"row {i}: set customer_id or inline features")
    if id_rows:
        Xi, missing = lookup([keys[i] for i in id_rows])
        X[id_rows] = Xi
        errors.update({id_rows[j]: err for j, err in missing.items()})
    return keys, X, errors, inline_rows


def score_response(keys: list[str], scores: RowScores, bands: np.ndarray | None, horizon_days: int,
                   versions: list[common_pb2.ModelVersion], missing: tuple[str, ...]) -> scoring_pb2.ScoreResponse:
    """Scores of the rows; a score that was not computed (not asked for, or its model is missing)
    is left unset."""
    churn, look, errors = scores.churn, scores.lookalike, scores.errors
    results = []
    for i, key in enumerate(keys):
        if i in errors:
            results.append(scoring_pb2.CustomerScore(customer_id=key, error=row_error(errors[i])))
        elif churn is not None and look is not None and bands is not None:  # the common case: both
            results.append(scoring_pb2.CustomerScore(customer_id=key, scores=scoring_pb2.Scores(
                churn_probability=float(churn[i]), churn_band=scoring_pb2.RiskBand.ValueType(int(bands[i])),
                lookalike_score=float(look[i]), churn_horizon_days=horizon_days)))
        else:
            parts: dict[str, Any] = {}
            if churn is not None and bands is not None:
                parts.update(churn_probability=float(churn[i]), churn_horizon_days=horizon_days,
                             churn_band=scoring_pb2.RiskBand.ValueType(int(bands[i])))
            if look is not None:
                parts["lookalike_score"] = float(look[i])
            results.append(scoring_pb2.CustomerScore(customer_id=key, scores=scoring_pb2.Scores(**parts)))
    return scoring_pb2.ScoreResponse(results=results, models=versions, missing_models=missing)




def score_response_tail(versions: list[common_pb2.ModelVersion], missing: tuple[str, ...]) -> bytes:
    """The fields of a ScoreResponse after its results (models, missing_models), serialised: the same
    for every call on one loaded scorer."""
    return scoring_pb2.ScoreResponse(models=versions, missing_models=missing).SerializeToString()


def score_response_bytes(keys: list[str], scores: RowScores, bands: np.ndarray | None, horizon_days: int,
                         tail: bytes) -> bytes | None:
    """score_response(...).SerializeToString() written directly for the common answer (every row scored,
    churn and lookalike both computed; tail from score_response_tail); None otherwise."""
    churn, look = scores.churn, scores.lookalike
    if scores.errors or churn is None or look is None or bands is None:
        return None
    horizon = b" " + varint(horizon_days) if horizon_days else b""  # field 4 varint (b" " == 4 << 3)
    parts = []
    for i, key in enumerate(keys):
        band = int(bands[i])
        body = (b"\x0d" + struct.pack("<f", float(churn[i]))  # field 1, float; then 2 (enum), 3 (float), 4
                + (b"\x10" + varint(band) if band else b"") + b"\x1d" + struct.pack("<f", float(look[i])) + horizon)
        parts.append(field(1, (field(1, key.encode()) if key else b"") + field(2, body)))
    parts.append(tail)
    return b"".join(parts)


def chunk_matrix(chunk: scoring_pb2.ScoreChunk, n_features: int) -> np.ndarray | None:
    """Inline features of a stream chunk as a (rows, n_features) view, or None when absent."""
    fm = chunk.features
    if fm.rows == 0 and not fm.float32_le:
        return None
    n = len(chunk.customer_ids)
    if fm.rows != n:
        raise InvalidInput(f"chunk {chunk.chunk_id}: features.rows={fm.rows} but {n} customer_ids; one id per row")
    if fm.cols != n_features:
        raise InvalidInput(f"chunk {chunk.chunk_id}: features.cols={fm.cols}, expected {n_features}")
    if len(fm.float32_le) != fm.rows * fm.cols * 4:
        raise InvalidInput(f"chunk {chunk.chunk_id}: features.float32_le has {len(fm.float32_le)} bytes, "
                           f"expected rows*cols*4 = {fm.rows * fm.cols * 4}")
    return np.frombuffer(fm.float32_le, dtype="<f4").reshape(fm.rows, fm.cols)


def chunk_result(chunk: scoring_pb2.ScoreChunk, scores: RowScores, n: int,
                 missing: tuple[str, ...], nan_for_missing: bool) -> scoring_pb2.ScoreChunkResult:
    """nan_for_missing (the chunk asked for every score): the columns of missing models are NaN
    for every row; otherwise a score not computed is empty bytes."""
    nan = np.full(n, np.nan, "<f4").tobytes() if nan_for_missing and missing else b""

    def column(values: np.ndarray | None, name: str) -> bytes:
        if values is not None:
            return values.astype("<f4").tobytes()
        return nan if name in missing else b""

    return scoring_pb2.ScoreChunkResult(
        chunk_id=chunk.chunk_id,
        customer_ids=chunk.customer_ids,
        churn_probability=column(scores.churn, "churn"),
        lookalike_score=column(scores.lookalike, "lookalike"),
        failures=[common_pb2.RowFailure(row=i, error=row_error(e)) for i, e in sorted(scores.errors.items())],
        missing_models=missing,
    )
