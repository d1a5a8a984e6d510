"""Client helpers for batch jobs: stream a Parquet file of customers through StreamScore, resumably, with
tenure.client.ScoringClient (TLS and token from the TENURE_* environment, the retry policy).

open_channel, RETRY_SERVICE_CONFIG, RETRY_OPTIONS and MESSAGE_OPTIONS live in tenure.client.channel and are
re-exported here.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from tenure.client import NO_DEADLINE, ScoringClient, TenureRpcError
from tenure.client.channel import MESSAGE_OPTIONS as MESSAGE_OPTIONS
from tenure.client.channel import RETRY_OPTIONS as RETRY_OPTIONS
from tenure.client.channel import RETRY_SERVICE_CONFIG as RETRY_SERVICE_CONFIG
from tenure.client.channel import open_channel as open_channel
from tenure.client.core import chunk_columns, chunk_plan, score_chunks
from tenure.errors import ModelUnavailable


class ScoreFileInterrupted(ModelUnavailable):
    """The scoring service failed or went away during score_file; the finished parts are kept (UNAVAILABLE:
    run the same command again to resume)."""


@dataclass
class ScoreFileReport:
    rows: int
    failed: int
    inline_features: bool
    chunks: int
    parts: int = 0
    resumed_parts: int = 0
    """Parts found finished from an earlier run (not scored again)."""


MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


def parts_dir_for(output_path: Path) -> Path:
    """Where score_file keeps the finished parts of `output_path` until the output is complete."""
    return output_path.with_name(output_path.name + ".parts")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """write(temp) next to path, flushed to disk, then renamed over path: path is whole or absent."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1), encoding="utf-8"))


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


class _Parts:
    """The parts directory of one score_file run: manifest.json plus part-NNNNN.parquet files.

    The manifest names the input (path, size, sha256), the arguments that decide the parts and their
    contents, and the finished parts; a part is listed only once its file is complete (written to a
    temporary file, renamed, then the manifest rewritten the same way)."""

    def __init__(self, directory: Path, key: dict[str, Any], notice: Callable[[str], None]) -> None:
        self.dir = directory
        self.key = key
        self.path = directory / MANIFEST
        self.done: dict[int, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}
        stale = None
        if self.path.exists():
            try:
                manifest = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                manifest, stale = None, "its manifest is unreadable"
            if manifest is not None and manifest.get("key") == key:
                self.meta = manifest.get("meta", {})
                for number, info in manifest.get("parts", {}).items():
                    if (directory / info["file"]).is_file():
                        self.done[int(number)] = info
            elif manifest is not None:
                stale = "they were written for a different input or different arguments"
        elif directory.exists() and any(directory.iterdir()):
            stale = "there is no manifest"
        if stale:
            notice(f"score-file: starting over: the parts in {directory.name}/ cannot be resumed ({stale})")
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in directory.glob(".*.tmp-*"):  # a run killed while writing
            leftover.unlink(missing_ok=True)
        if not self.path.exists():
            self._save()

    def _save(self) -> None:
        _write_json(self.path, {"format": MANIFEST_FORMAT, "key": self.key, "meta": self.meta,
                                "parts": {str(k): v for k, v in sorted(self.done.items())}})

    def set_meta(self, **meta: Any) -> None:
        self.meta.update(meta)
        self._save()

    def finish(self, number: int, table: pa.Table, failed: int) -> None:
        name = f"part-{number:05d}.parquet"
        _write_atomically(self.dir / name, lambda tmp: pq.write_table(table, tmp))
        self.done[number] = {"file": name, "rows": table.num_rows, "failed": failed}
        self._save()


def score_file(target: str, input_path: Path, output_path: Path, *, id_column: str = "customer_id",
               chunk_rows: int = 10_000, part_chunks: int = 10, progress: bool = True,
               timeout_s: float | None = None, notice: Callable[[str], None] | None = None) -> ScoreFileReport:
    """Score every row of a Parquet file; the output has one row per input row, in order.

    When the file has every column of the service's customer feature list, the rows are sent
    as packed features; otherwise only ids are sent and the service looks them up.
    Output columns: customer_id, churn_probability, lookalike_score, error (null when scored).

    Resumable: results are written as parts (part_chunks chunks of chunk_rows rows each) into
    OUTPUT.parts/ with a manifest; a run that stops (the service went away: ScoreFileInterrupted, or
    the job was killed) keeps its finished parts, and the same command run again scores only the
    rest. At the end the parts are joined into the output (a temporary file renamed) and removed.
    Parts written for a different input (its sha256) or different arguments are discarded (notice
    says so). The service's model versions are checked too: parts scored by other versions are not
    mixed into one output.
    """
    say = notice or (lambda _message: None)
    if chunk_rows < 1 or part_chunks < 1:
        raise ValueError(f"chunk_rows and part_chunks must be at least 1, got {chunk_rows} and {part_chunks}")
    table = pq.read_table(input_path)
    if id_column not in table.column_names:
        raise ValueError(f"{input_path}: no column {id_column!r}; columns are {table.column_names[:20]}")
    ids = [str(v) for v in table.column(id_column).to_pylist()]
    part_rows = chunk_rows * part_chunks
    n_parts = -(-len(ids) // part_rows)
    key = {"input": {"path": str(Path(input_path).resolve()), "size": Path(input_path).stat().st_size,
                     "sha256": file_sha256(Path(input_path))},
           "rows": len(ids), "id_column": id_column, "chunk_rows": chunk_rows, "part_chunks": part_chunks}
    parts = _Parts(parts_dir_for(Path(output_path)), key, say)
    resumed = len(parts.done)
    if resumed:
        say(f"score-file: resuming: {resumed} of {n_parts} parts already scored")
    todo = [k for k in range(n_parts) if k not in parts.done]
    sent_chunks = 0
    if todo:
        try:
            sent_chunks = _score_parts(target, table, ids, parts, todo, chunk_rows, part_rows, progress,
                                       timeout_s, say)
        except TenureRpcError as err:
            raise ScoreFileInterrupted(
                f"{err.code.name}: {_one_line(err.details)} (the scoring service at {target}); {len(parts.done)} of "
                f"{n_parts} parts are saved in {parts.dir.name}/: run the same command again to resume") from None
    failed = _join_parts(parts, n_parts, Path(output_path))
    return ScoreFileReport(len(ids), failed, bool(parts.meta.get("inline")), sent_chunks, n_parts, resumed)


def _score_parts(target: str, table: pa.Table, ids: list[str], parts: _Parts, todo: list[int], chunk_rows: int,
                 part_rows: int, progress: bool, timeout_s: float | None, say: Callable[[str], None]) -> int:
    """Stream the chunks of the parts in `todo` through one StreamScore call, saving each part once its
    last chunk is answered. Returns the chunks sent."""
    bulk = NO_DEADLINE if timeout_s is None else timeout_s
    with ScoringClient.from_env(target, timeout=30, bulk_timeout=bulk) as client:
        info = client.model_info()
        versions = sorted(f"{m.name}/{m.version}" for m in info.models)
        if parts.done and parts.meta.get("models") not in (None, versions):
            say(f"score-file: starting over: the service now serves other model versions ({', '.join(versions)}) "
                f"than the finished parts were scored with")
            for info_ in parts.done.values():
                (parts.dir / info_["file"]).unlink(missing_ok=True)
            parts.done.clear()
            todo = list(range(-(-len(ids) // part_rows)))
        features = list(info.customer_features)
        inline = all(f in table.column_names for f in features)
        parts.set_meta(models=versions, inline=inline)
        X = np.column_stack([table.column(f).to_numpy().astype(np.float32) for f in features]) if inline else None
        step = min(chunk_rows, info.max_batch_rows)
        plan: list[tuple[int, int]] = []
        owner: list[int] = []
        for k in todo:
            begin, end = k * part_rows, min((k + 1) * part_rows, len(ids))
            for span in chunk_plan(begin, end, step):
                plan.append(span)
                owner.append(k)
        rows_left = {k: min((k + 1) * part_rows, len(ids)) - k * part_rows for k in todo}
        churn = {k: np.empty(n, np.float32) for k, n in rows_left.items()}
        look = {k: np.empty(n, np.float32) for k, n in rows_left.items()}
        errors: dict[int, list[str | None]] = {k: [None] * n for k, n in rows_left.items()}
        bar = tqdm(total=sum(rows_left.values()), unit="rows", disable=not progress, desc="scoring")
        for result in client.stream_score(score_chunks(ids, X, plan)):
            k = owner[result.chunk_id]
            start, stop = plan[result.chunk_id]
            n = len(result.customer_ids)
            if n != stop - start:
                raise RuntimeError(f"chunk {result.chunk_id}: {n} results for {stop - start} rows")
            at = start - k * part_rows
            churn[k][at:at + n], look[k][at:at + n], errors[k][at:at + n] = chunk_columns(result)
            bar.update(n)
            rows_left[k] -= n
            if rows_left[k] == 0:
                begin = k * part_rows
                out = pa.table({"customer_id": ids[begin:begin + len(churn[k])], "churn_probability": churn.pop(k),
                                "lookalike_score": look.pop(k), "error": pa.array(errors[k], pa.string())})
                parts.finish(k, out, sum(e is not None for e in errors.pop(k)))
        bar.close()
    missing = [k for k in todo if k not in parts.done]
    if missing:
        raise RuntimeError(f"the stream ended before parts {missing[:5]} were answered")
    return len(plan)


def _join_parts(parts: _Parts, n_parts: int, output_path: Path) -> int:
    """Concatenate the parts in order into output_path (a temporary file renamed); remove the parts.
    Returns the rows that failed."""
    expected = parts.key["rows"]
    rows = failed = 0

    def write(tmp: Path) -> None:
        nonlocal rows, failed
        writer: pq.ParquetWriter | None = None
        try:
            for k in range(n_parts):
                info = parts.done[k]
                part = pq.read_table(parts.dir / info["file"])
                if part.num_rows != info["rows"]:
                    raise RuntimeError(f"part {k} has {part.num_rows} rows, its manifest says {info['rows']}")
                if writer is None:
                    writer = pq.ParquetWriter(tmp, part.schema)
                writer.write_table(part)
                rows += part.num_rows
                failed += int(info["failed"])
            if writer is None:  # an empty input: an empty output with the same columns
                pq.write_table(pa.table({"customer_id": pa.array([], pa.string()),
                                         "churn_probability": pa.array([], pa.float32()),
                                         "lookalike_score": pa.array([], pa.float32()),
                                         "error": pa.array([], pa.string())}), tmp)
        finally:
            if writer is not None:
                writer.close()
        if rows != expected:
            raise RuntimeError(f"the parts hold {rows} rows, the input {expected}")

    _write_atomically(output_path, write)
    shutil.rmtree(parts.dir)
    return failed
