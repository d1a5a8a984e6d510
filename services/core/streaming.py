"""Ordered pipelining for bidirectional streams, with flow control."""
from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from tenure.errors import TooLarge

T = TypeVar("T")
R = TypeVar("R")

_END = object()


def ordered_map(source: Iterator[T], fn: Callable[[T], R], window: int) -> Iterator[R]:
    """fn over a stream with up to `window` items in flight; results in input order.

    A reader thread takes requests and starts fn on them in a small pool while this generator
    answers, so a client that waits for each answer before sending more never deadlocks, and one
    that sends fast is held back after `window` unanswered items: the reader stops reading, and
    HTTP/2 flow control pushes back on the client instead of the server buffering without bound.
    A failure while reading the stream surfaces after the answers to everything read before it.
    """
    slots = threading.Semaphore(window)
    started: queue.Queue[Future[R] | BaseException | object] = queue.Queue()
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=window, thread_name_prefix="stream")

    def read() -> None:
        try:
            for item in source:
                while not slots.acquire(timeout=0.25):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                started.put(pool.submit(fn, item))
        except BaseException as err:  # the stream broke (e.g. the client cancelled): report it in order
            started.put(err)
        finally:
            started.put(_END)

    reader = threading.Thread(target=read, name="stream-reader", daemon=True)
    reader.start()
    try:
        while (got := started.get()) is not _END:
            if isinstance(got, BaseException):
                raise got
            assert isinstance(got, Future)
            try:
                yield got.result()
            finally:
                slots.release()
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


class StreamSlots:
    """At most `limit` streaming calls at once on a worker: each holds a handler thread for its whole
    length, and the threads must stay available to short calls (and health checks)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._free = threading.BoundedSemaphore(self.limit)

    @contextmanager
    def hold(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            raise TooLarge(f"{self.limit} streams are already running on this worker (at most {self.limit}, "
                           "TENURE_MAX_STREAMS); retry later")
        try:
            yield
        finally:
            self._free.release()
