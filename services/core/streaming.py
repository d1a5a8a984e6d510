"""Ordered pipelining for bidirectional streams, with flow control."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator, Awaitable, Callable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


async def ordered_map(source: AsyncIterator[T], fn: Callable[[T], Awaitable[R]], window: int) -> AsyncIterator[R]:
    """fn over a stream with up to `window` items in flight; results in input order.

    Reading and answering run concurrently, so a client that waits for each answer before
    sending more never deadlocks, and one that sends fast is held back after `window` unanswered
    items: the server stops reading, and HTTP/2 flow control pushes back on the client instead
    of the server buffering without bound.
    """
    slots = asyncio.Semaphore(window)
    started: asyncio.Queue[asyncio.Future[R] | None] = asyncio.Queue()

    async def read() -> None:
        try:
            async for item in source:
                await slots.acquire()
                await started.put(asyncio.ensure_future(fn(item)))
        finally:
            await started.put(None)

    reader = asyncio.create_task(read())
    pending: list[asyncio.Future[R]] = []
    try:
        while (task := await started.get()) is not None:
            pending.append(task)
            try:
                yield await task
            finally:
                pending.remove(task)
                slots.release()
        await reader  # a failure while reading the stream surfaces here
    finally:
        reader.cancel()
        while not started.empty():
            leftover = started.get_nowait()
            if leftover is not None:
                leftover.cancel()
        for task in pending:
            task.cancel()
