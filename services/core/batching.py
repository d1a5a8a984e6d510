"""Dynamic batching: requests from concurrent calls coalesce into one onnxruntime run.

A list in, a list out: every caller gets its own future, a failed batch fails each caller, and
a request whose deadline passed (or whose caller went away) is dropped before compute.

With max_queue_delay_us = 0 (Triton's semantics for a zero queue delay): a small request that
finds the model idle runs at once, inline on the event loop (a one-row onnxruntime call costs
microseconds, less than a future and a turn of the loop); requests that arrive while the model
is busy (a large batch running in a worker thread, so the loop keeps accepting calls) queue and
coalesce into the next run. With a delay > 0, a non-full batch waits up to that long for more.
Measured here: coalescing one-row requests does not raise a Python server's req/s (the gRPC call
costs ~50x the model), so the idle path is what keeps small calls cheap.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tenure.errors import DeadlineExpired, TooLarge

RunFn = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class BatcherStats:
    """Counters for the metrics endpoint (sums, so rates and means come from deltas)."""

    requests: int = 0
    rows: int = 0
    batches: int = 0
    expired: int = 0
    rejected: int = 0
    queue_seconds: float = 0.0
    compute_seconds: float = 0.0
    batch_rows_histogram: dict[int, int] = field(default_factory=dict)
    """Upper bound (power of two) -> number of batches with at most that many rows."""

    def record_batch(self, rows: int, seconds: float) -> None:
        self.batches += 1
        self.compute_seconds += seconds
        bucket = 1 << max(0, (rows - 1).bit_length())
        self.batch_rows_histogram[bucket] = self.batch_rows_histogram.get(bucket, 0) + 1


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future[list[np.ndarray]]
    deadline: float | None
    enqueued: float


class Batcher:
    """Coalesces rows for one model. Create it (or first use it) on the serving event loop."""

    def __init__(self, run: RunFn, *, max_batch_rows: int = 1024, max_queue_delay_us: int = 0,
                 max_queue_rows: int = 100_000, inline_max_rows: int = 64) -> None:
        self._run = run
        self.max_batch_rows = max_batch_rows
        self.max_queue_delay_s = max_queue_delay_us / 1e6
        self.max_queue_rows = max_queue_rows
        self.inline_max_rows = inline_max_rows
        self.stats = BatcherStats()
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._flush_scheduled = False
        self._busy = False

    async def submit(self, x: np.ndarray, deadline: float | None = None) -> list[np.ndarray]:
        """Rows of x -> the model's outputs for those rows. deadline: time.monotonic() seconds."""
        if self._queued_rows + len(x) > self.max_queue_rows:
            self.stats.rejected += 1
            raise TooLarge(f"the model's queue is full ({self._queued_rows} rows waiting, at most "
                           f"{self.max_queue_rows}); retry later")
        self.stats.requests += 1
        self.stats.rows += len(x)
        if deadline is not None and deadline <= time.monotonic():
            self.stats.expired += 1
            raise DeadlineExpired("the deadline had passed when the request reached the model")
        if not self._queue and not self._busy and len(x) <= self.inline_max_rows and self.max_queue_delay_s == 0:
            # Idle and small: nothing to coalesce with, so run now rather than pay for a future
            # and a turn of the loop. Concurrent arrivals still batch while a large run is busy.
            outputs, error = self._compute_rows(x)
            if error is not None:
                raise error
            assert outputs is not None
            return outputs
        loop = asyncio.get_running_loop()
        item = _Item(x, loop.create_future(), deadline, time.monotonic())
        self._queue.append(item)
        self._queued_rows += len(x)
        if not self._flush_scheduled and not self._busy:
            self._flush_scheduled = True
            if self.max_queue_delay_s > 0 and self._queued_rows < self.max_batch_rows:
                loop.call_later(self.max_queue_delay_s, self._flush)
            else:
                loop.call_soon(self._flush)
        return await item.future

    def _take(self) -> list[_Item]:
        """The next batch: queued items up to max_batch_rows, minus expired or abandoned ones."""
        batch: list[_Item] = []
        rows = 0
        now = time.monotonic()
        while self._queue and (not batch or rows + len(self._queue[0].x) <= self.max_batch_rows):
            item = self._queue.popleft()
            self._queued_rows -= len(item.x)
            if item.future.done():  # the caller was cancelled
                continue
            if item.deadline is not None and item.deadline <= now:
                self.stats.expired += 1
                item.future.set_exception(DeadlineExpired("the deadline passed while the request was queued"))
                continue
            self.stats.queue_seconds += now - item.enqueued
            batch.append(item)
            rows += len(item.x)
        return batch

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch = self._take()
        if not batch:
            return
        rows = sum(len(i.x) for i in batch)
        if rows <= self.inline_max_rows:
            self._complete(batch, *self._compute(batch))
            if self._queue:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._busy = True
            asyncio.get_running_loop().create_task(self._flush_in_thread(batch))

    async def _flush_in_thread(self, batch: list[_Item]) -> None:
        try:
            outputs, error = await asyncio.to_thread(self._compute, batch)
            self._complete(batch, outputs, error)
        finally:
            self._busy = False
            if self._queue and not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    def _compute(self, batch: list[_Item]) -> tuple[list[np.ndarray] | None, BaseException | None]:
        return self._compute_rows(batch[0].x if len(batch) == 1 else np.concatenate([i.x for i in batch]))

    def _compute_rows(self, x: np.ndarray) -> tuple[list[np.ndarray] | None, BaseException | None]:
        start = time.perf_counter()
        try:
            outputs = self._run(x)
        except Exception as err:  # a failed batch fails each of its callers
            return None, err
        self.stats.record_batch(len(x), time.perf_counter() - start)
        return outputs, None

    @staticmethod
    def _complete(batch: list[_Item], outputs: list[np.ndarray] | None, error: BaseException | None) -> None:
        offset = 0
        for item in batch:
            n = len(item.x)
            if item.future.done():
                offset += n
                continue
            if error is not None:
                item.future.set_exception(error)
            else:
                assert outputs is not None
                item.future.set_result([o[offset:offset + n] for o in outputs])
            offset += n
