"""Dynamic batching: requests from concurrent calls coalesce into one onnxruntime run.

The servers are grpcio's threaded servers: every call runs on its own handler thread and calls
`submit`, which blocks until its rows are scored. One batch runs at a time per model (like a
Triton model with one instance); there is no batching thread. Instead the batcher hands the
model from caller to caller:

- a caller that finds the model idle runs its own rows at once, on its own thread (with the
  default max_queue_delay_us = 0, Triton's semantics: never wait when idle);
- callers that arrive while a batch runs queue up;
- when a run ends, the queued requests (up to max_batch_rows) become the next batch, and the
  first of their callers is woken to run it for all of them.

A failed batch fails each of its callers; a request whose deadline passed, or whose caller
went away, is dropped before compute; the queue is bounded (TooLarge beyond max_queue_rows).
With max_queue_delay_us > 0, a caller that finds the model idle waits up to that long for
more rows before running a batch that is not yet full.
Measured here: coalescing one-row requests does not raise a Python server's req/s (the gRPC call
costs ~50x the model); what batching buys is fewer, fuller runs when the model is the bottleneck.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from services.core import metrics
from tenure.errors import Cancelled, DeadlineExpired, TooLarge

RunFn = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class BatcherStats:
    """Counters for the metrics endpoint (sums, so rates and means come from deltas)."""

    requests: int = 0
    rows: int = 0
    batches: int = 0
    expired: int = 0
    cancelled: int = 0
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


class _Item:
    __slots__ = ("x", "deadline", "alive", "enqueued", "done", "outputs", "error", "batch")

    def __init__(self, x: np.ndarray, deadline: float | None, alive: Callable[[], bool] | None,
                 enqueued: float) -> None:
        self.x = x
        self.deadline = deadline
        self.alive = alive
        self.enqueued = enqueued
        self.done = threading.Lock()
        """Held until the request is answered or its caller is woken to lead a batch: a bare lock rather
        than an Event (whose wait and set are Python code), released exactly once per wake-up."""
        self.done.acquire()
        self.outputs: list[np.ndarray] | None = None
        self.error: BaseException | None = None
        self.batch: list[_Item] | None = None
        """Set when this caller is woken to run a batch (its own request first) for everyone in it."""


class Batcher:
    """Coalesces rows for one model; thread-safe, called from the server's handler threads."""

    def __init__(self, run: RunFn, *, name: str = "", max_batch_rows: int = 1024, max_queue_delay_us: int = 0,
                 max_queue_rows: int = 100_000) -> None:
        """name: the model(s) it runs, the `model` label of tenure_batch_rows / tenure_batch_queue_seconds."""
        self._run = run
        self._batch_rows = metrics.fast_observe(metrics.BATCH_ROWS.labels(name or "unnamed"))
        self._queue_seconds = metrics.fast_observe(metrics.BATCH_QUEUE.labels(name or "unnamed"))
        self.max_batch_rows = max_batch_rows
        self.max_queue_delay_s = max_queue_delay_us / 1e6
        self.max_queue_rows = max_queue_rows
        self.stats = BatcherStats()
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._busy = False

    def submit(self, x: np.ndarray, deadline: float | None = None,
               alive: Callable[[], bool] | None = None) -> list[np.ndarray]:
        """Rows of x -> the model's outputs for those rows; blocks until they are scored.

        deadline: time.monotonic() seconds; alive: False once the caller has gone away.
        """
        with self._cond:
            if self._queued_rows + len(x) > self.max_queue_rows:
                self.stats.rejected += 1
                raise TooLarge(f"the model's queue is full ({self._queued_rows} rows waiting, at most "
                               f"{self.max_queue_rows}); retry later")
            self.stats.requests += 1
            self.stats.rows += len(x)
            now = time.monotonic()
            if deadline is not None and deadline <= now:
                self.stats.expired += 1
                raise DeadlineExpired("the deadline had passed when the request reached the model")
            if not self._busy and self.max_queue_delay_s == 0:  # idle (the queue is empty whenever idle)
                self._busy = True
                item = None
            else:
                item = _Item(x, deadline, alive, now)
                self._queue.append(item)
                self._queued_rows += len(x)
                if self._busy:
                    if self.max_queue_delay_s > 0 and self._queued_rows >= self.max_batch_rows:
                        self._cond.notify_all()  # a waiting idle-arrival may stop waiting: the batch is full
                    batch = None
                else:
                    self._busy = True
                    end = now + self.max_queue_delay_s
                    while self._queued_rows < self.max_batch_rows and (left := end - time.monotonic()) > 0:
                        self._cond.wait(left)
                    batch = self._take()
        if item is None:  # a lightly loaded model: run now, on this thread, nothing to wait on
            try:
                start = time.perf_counter()
                outputs = self._run(x)
                self.stats.record_batch(len(x), time.perf_counter() - start)
                self._batch_rows(len(x))
                self._queue_seconds(0.0)
                return outputs
            finally:
                self._hand_over()
        if batch is None:
            item.done.acquire()  # released by _finish or _hand_over
            batch, item.batch = item.batch, None
        if batch:
            self._lead(batch)
        if item.error is not None:
            raise item.error
        assert item.outputs is not None
        return item.outputs

    def _take(self) -> list[_Item]:
        """The next batch (lock held): queued items up to max_batch_rows, minus expired or abandoned
        ones. Empty means the model is idle again."""
        batch: list[_Item] = []
        rows = 0
        now = time.monotonic()
        while self._queue and (not batch or rows + len(self._queue[0].x) <= self.max_batch_rows):
            item = self._queue.popleft()
            self._queued_rows -= len(item.x)
            if item.deadline is not None and item.deadline <= now:
                self.stats.expired += 1
                self._finish(item, error=DeadlineExpired("the deadline passed while the request was queued"))
                continue
            if item.alive is not None and not item.alive():
                self.stats.cancelled += 1
                self._finish(item, error=Cancelled("the caller went away while the request was queued"))
                continue
            self.stats.queue_seconds += now - item.enqueued
            self._queue_seconds(now - item.enqueued)
            batch.append(item)
            rows += len(item.x)
        self._busy = bool(batch)
        return batch

    def _lead(self, batch: list[_Item]) -> None:
        """Run one batch on this thread, answer its callers, then hand the model to the next batch."""
        x = batch[0].x if len(batch) == 1 else np.concatenate([i.x for i in batch])
        start = time.perf_counter()
        try:
            outputs = self._run(x)
        except Exception as err:  # a failed batch fails each of its callers
            for item in batch:
                self._finish(item, error=err)
        else:
            self.stats.record_batch(len(x), time.perf_counter() - start)
            self._batch_rows(len(x))
            offset = 0
            for item in batch:
                n = len(item.x)
                self._finish(item, outputs=outputs if len(batch) == 1 else [o[offset:offset + n] for o in outputs])
                offset += n
        self._hand_over()

    def _hand_over(self) -> None:
        """The model is free: the requests queued meanwhile become the next batch, run by the first
        of their callers (woken here); with none queued, the model is idle again."""
        with self._cond:
            following = self._take()
            if following:
                following[0].batch = following
                following[0].done.release()

    @staticmethod
    def _finish(item: _Item, outputs: list[np.ndarray] | None = None, error: BaseException | None = None) -> None:
        item.outputs, item.error = outputs, error
        item.done.release()
