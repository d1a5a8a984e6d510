"""Client helpers for batch jobs: stream a Parquet file of customers through StreamScore."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from tenure.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc

STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


@dataclass
class ScoreFileReport:
    rows: int
    failed: int
    inline_features: bool
    chunks: int


def _chunks(ids: list[str], X: np.ndarray | None, chunk_rows: int) -> Iterator[scoring_pb2.ScoreChunk]:
    for number, start in enumerate(range(0, len(ids), chunk_rows)):
        stop = min(start + chunk_rows, len(ids))
        chunk = scoring_pb2.ScoreChunk(chunk_id=number, customer_ids=ids[start:stop])
        if X is not None:
            block = np.ascontiguousarray(X[start:stop], dtype="<f4")
            chunk.features.CopyFrom(common_pb2.FeatureMatrix(rows=len(block), cols=block.shape[1],
                                                             float32_le=block.tobytes()))
        yield chunk


def score_file(target: str, input_path: Path, output_path: Path, *, id_column: str = "customer_id",
               chunk_rows: int = 10_000, progress: bool = True, timeout_s: float | None = None) -> ScoreFileReport:
    """Score every row of a Parquet file; the output has one row per input row, in order.

    When the file has every column of the service's customer feature list, the rows are sent
    as packed features; otherwise only ids are sent and the service looks them up.
    Output columns: customer_id, churn_probability, lookalike_score, error (null when scored).
    """
    table = pq.read_table(input_path)
    if id_column not in table.column_names:
        raise ValueError(f"{input_path}: no column {id_column!r}; columns are {table.column_names[:20]}")
    ids = [str(v) for v in table.column(id_column).to_pylist()]
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20),
                                                ("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        info = stub.GetModelInfo(scoring_pb2.GetModelInfoRequest(), timeout=30)
        features = list(info.customer_features)
        inline = all(f in table.column_names for f in features)
        X = np.column_stack([table.column(f).to_numpy().astype(np.float32) for f in features]) if inline else None
        chunk_rows = min(chunk_rows, info.max_batch_rows)
        churn = np.empty(len(ids), np.float32)
        look = np.empty(len(ids), np.float32)
        errors: list[str | None] = [None] * len(ids)
        done = 0
        bar = tqdm(total=len(ids), unit="rows", disable=not progress, desc="scoring")
        for result in stub.StreamScore(_chunks(ids, X, chunk_rows), timeout=timeout_s):
            start = result.chunk_id * chunk_rows
            n = len(result.customer_ids)
            churn[start:start + n] = np.frombuffer(result.churn_probability, "<f4")
            look[start:start + n] = np.frombuffer(result.lookalike_score, "<f4")
            for failure in result.failures:
                errors[start + failure.row] = f"{STATUS_NAMES.get(failure.error.code, failure.error.code)}: " \
                                              f"{failure.error.message}"
            done += n
            bar.update(n)
        bar.close()
    if done != len(ids):
        raise RuntimeError(f"the stream ended after {done} of {len(ids)} rows")
    out = pa.table({"customer_id": ids, "churn_probability": churn, "lookalike_score": look,
                    "error": pa.array(errors, pa.string())})
    pq.write_table(out, output_path)
    return ScoreFileReport(len(ids), sum(e is not None for e in errors), inline, -(-len(ids) // chunk_rows))
