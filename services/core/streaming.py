"""Ordered pipelining for bidirectional streams, with flow control."""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from tenure.errors import DeadlineExpired, TooLarge

T = TypeVar("T")
R = TypeVar("R")

_END = object()


def ordered_map(source: Iterator[T], fn: Callable[[T], R], window: int,
                idle_timeout_s: float | None = None) -> Iterator[R]:
    """fn over a stream with up to `window` items in flight; results in input order.

    A reader thread takes requests and starts fn on them in a small pool while this generator
    answers, so a client that waits for each answer before sending more never deadlocks, and one
    that sends fast is held back after `window` unanswered items: the reader stops reading, and
    HTTP/2 flow control pushes back on the client instead of the server buffering without bound.
    A failure while reading the stream surfaces after the answers to everything read before it.
    A client that sends nothing for idle_timeout_s while nothing of its stream is being answered
    ends the stream (DeadlineExpired): an idle stream must not hold its slot and thread for ever.
    Once the answers stop (the client cancelled, or the stream failed), nothing more is started:
    the items already running finish, the others are dropped.
    """
    slots = threading.Semaphore(window)
    last_read = [time.monotonic()]
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
                last_read[0] = time.monotonic()
                started.put(pool.submit(run, item))
        except BaseException as err:  # the stream broke (e.g. the client cancelled): report it in order
            started.put(err)
        finally:
            started.put(_END)

    def run(item: T) -> R:
        if stop.is_set():  # the stream ended while this item waited for a thread
            raise DeadlineExpired("the stream ended before this request was started")
        return fn(item)

    def next_started() -> Future[R] | BaseException | object:
        while True:
            try:
                return started.get(timeout=None if idle_timeout_s is None else max(0.01, idle_timeout_s / 4))
            except queue.Empty:
                assert idle_timeout_s is not None
                idle = time.monotonic() - last_read[0]
                if idle >= idle_timeout_s and started.empty():
                    raise DeadlineExpired(f"no request for {idle:.1f} s on this stream (at most {idle_timeout_s:g} "
                                          "s idle, TENURE_STREAM_IDLE_TIMEOUT_S); it was closed to free its slot; "
                                          "open a new stream to send more") from None

    reader = threading.Thread(target=read, name="stream-reader", daemon=True)
    reader.start()
    try:
        while (got := next_started()) is not _END:
            if isinstance(got, BaseException):
                raise got
            assert isinstance(got, Future)
            try:
                yield got.result()
            finally:
                slots.release()
                last_read[0] = max(last_read[0], time.monotonic())  # idle counts from the last answer too
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


class StreamSlots:
    """At most `limit` streaming calls at once on a worker: each holds a handler thread for its whole
    length, and the threads must stay available to short calls (and health checks)."""

    def __init__(self, limit: int, idle_timeout_s: float | None = None) -> None:
        self.limit = max(1, limit)
        self.idle_timeout_s = idle_timeout_s
        """For ordered_map: a request stream idle for this long is closed (None: never)."""
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
