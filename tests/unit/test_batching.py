"""The dynamic batcher: coalescing, splitting, deadlines, failures, bounds."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from services.core.batching import Batcher
from tenure.errors import DeadlineExpired, TooLarge


class Model:
    """Doubles its input and records the batch sizes it was called with."""

    def __init__(self, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.calls: list[int] = []
        self.fail = fail
        self.gate = gate

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.calls.append(len(x))
        if self.gate is not None and len(self.calls) == 1:
            assert self.gate.wait(10), "the test never opened the gate"
        if self.fail:
            raise RuntimeError("model broke")
        return [x * 2, x.sum(axis=1)]


def rows(i: int, n: int = 1) -> np.ndarray:
    return np.full((n, 3), float(i), np.float32)


def test_requests_queued_behind_a_busy_model_coalesce_and_each_gets_its_rows() -> None:
    gate = threading.Event()
    model = Model(gate=gate)

    async def main() -> list[list[np.ndarray]]:
        batcher = Batcher(model, max_batch_rows=1024, inline_max_rows=4)
        big = asyncio.ensure_future(batcher.submit(rows(0, 10)))  # > inline_max_rows: a worker thread
        while not batcher._busy:
            await asyncio.sleep(0)
        small = [asyncio.ensure_future(batcher.submit(rows(i, 1 + i % 3))) for i in range(1, 51)]
        await asyncio.sleep(0)  # all 50 are queued behind the busy model
        gate.set()
        await big
        return await asyncio.gather(*small)

    results = asyncio.run(main())
    assert model.calls == [10, sum(1 + i % 3 for i in range(1, 51))]  # one run for all 50 queued calls
    for i, (doubled, summed) in enumerate(results, start=1):
        assert doubled.shape == (1 + i % 3, 3) and (doubled == 2 * i).all()
        assert (summed == 3 * i).all()


def test_a_small_request_that_finds_the_model_idle_runs_at_once() -> None:
    model = Model()

    async def main() -> None:
        batcher = Batcher(model)
        for i in range(3):
            assert ((await batcher.submit(rows(i)))[0] == 2 * i).all()
        assert batcher.stats.batches == 3 and batcher.stats.requests == 3

    asyncio.run(main())
    assert model.calls == [1, 1, 1]


def test_batches_respect_max_rows_and_large_batches_run_off_the_loop() -> None:
    model = Model()

    async def main() -> None:
        batcher = Batcher(model, max_batch_rows=100, inline_max_rows=10)
        out = await asyncio.gather(*(batcher.submit(rows(i, 30)) for i in range(7)))
        assert [o[0].shape[0] for o in out] == [30] * 7
        assert batcher.stats.batches == len(model.calls) and batcher.stats.rows == 210

    asyncio.run(main())
    assert all(n <= 100 for n in model.calls) and sum(model.calls) == 210
    assert model.calls[0] == 90  # three whole requests fit, the fourth waits for the next batch


def test_expired_requests_are_dropped_before_compute() -> None:
    model = Model()

    async def main() -> None:
        batcher = Batcher(model, inline_max_rows=0)  # every request queues
        live = batcher.submit(rows(1))
        dead = batcher.submit(rows(2), deadline=time.monotonic() - 0.001)
        got = await asyncio.gather(live, dead, return_exceptions=True)
        assert isinstance(got[1], DeadlineExpired)
        assert (got[0][0] == 2).all()
        assert batcher.stats.expired == 1

    asyncio.run(main())
    assert model.calls == [1]  # only the live row was computed


def test_a_failed_batch_fails_each_caller() -> None:
    async def main() -> None:
        batcher = Batcher(Model(fail=True))
        got = await asyncio.gather(*(batcher.submit(rows(i)) for i in range(3)), return_exceptions=True)
        assert all(isinstance(g, RuntimeError) and "model broke" in str(g) for g in got)

    asyncio.run(main())


def test_bounded_queue_refuses_instead_of_growing() -> None:
    async def main() -> None:
        batcher = Batcher(Model(), max_queue_rows=10, inline_max_rows=0)  # every request queues
        first = asyncio.ensure_future(batcher.submit(rows(1, 8)))
        await asyncio.sleep(0)  # the first request is queued; its flush has not run yet
        assert batcher._queued_rows == 8
        with pytest.raises(TooLarge, match="queue is full"):
            await batcher.submit(rows(2, 8))
        assert batcher.stats.rejected == 1
        assert (await first)[0].shape == (8, 3)

    asyncio.run(main())


def test_cancelled_callers_are_skipped() -> None:
    model = Model()

    async def main() -> None:
        batcher = Batcher(model, inline_max_rows=0)  # every request queues
        gone = asyncio.ensure_future(batcher.submit(rows(1, 5)))
        stays = asyncio.ensure_future(batcher.submit(rows(2, 2)))
        await asyncio.sleep(0)
        gone.cancel()
        assert (await stays)[0].shape == (2, 3)

    asyncio.run(main())
    assert model.calls == [2]


def test_queue_delay_waits_for_more_rows_when_idle_batches_are_small() -> None:
    async def run(delay_us: int) -> list[int]:
        model = Model()
        batcher = Batcher(model, max_queue_delay_us=delay_us)
        first = asyncio.ensure_future(batcher.submit(rows(1)))
        for _ in range(3):  # a few loop iterations later (not the same one), a second request comes
            await asyncio.sleep(0)
        await asyncio.gather(first, batcher.submit(rows(2)))
        return model.calls

    assert asyncio.run(run(0)) == [1, 1]  # no delay: the idle batcher ran the first row at once
    assert asyncio.run(run(500_000)) == [2]  # a delay: it waited and both rows went together


def test_a_request_past_its_deadline_is_refused_even_when_idle() -> None:
    model = Model()

    async def main() -> None:
        with pytest.raises(DeadlineExpired):
            await Batcher(model).submit(rows(1), deadline=time.monotonic() - 1)

    asyncio.run(main())
    assert model.calls == []
