"""The dynamic batcher: coalescing, splitting, deadlines, cancellation, failures, bounds, threads."""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import pytest

from services.core.batching import Batcher
from tenure.errors import Cancelled, DeadlineExpired, TooLarge


class Model:
    """Doubles its input and records the batch sizes it was called with; the first call can be held
    at a gate so that the test can queue requests behind a busy model."""

    def __init__(self, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.calls: list[int] = []
        self.fail = fail
        self.gate = gate
        self.running = threading.Event()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.calls.append(len(x))
        self.running.set()
        if self.gate is not None and len(self.calls) == 1:
            assert self.gate.wait(10), "the test never opened the gate"
        if self.fail:
            raise RuntimeError("model broke")
        return [x * 2, x.sum(axis=1)]


def rows(i: int, n: int = 1) -> np.ndarray:
    return np.full((n, 3), float(i), np.float32)


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(max_workers=64) as executor:
        yield executor


def busy(pool: ThreadPoolExecutor, batcher: Batcher, model: Model, n: int = 1) -> Future[list[np.ndarray]]:
    """Start a request that holds the model at its gate."""
    first = pool.submit(batcher.submit, rows(0, n))
    assert model.running.wait(10)
    return first


def test_requests_queued_behind_a_busy_model_coalesce_and_each_gets_its_rows(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    model = Model(gate=gate)
    batcher = Batcher(model, max_batch_rows=1024)
    big = busy(pool, batcher, model, 10)
    sizes = {i: 1 + i % 3 for i in range(1, 51)}
    small = {i: pool.submit(batcher.submit, rows(i, n)) for i, n in sizes.items()}
    wait_for(lambda: batcher._queued_rows == sum(sizes.values()))  # all 50 wait behind the busy model
    gate.set()
    assert (big.result(10)[0] == 0).all()
    assert model.calls == [10, sum(sizes.values())]  # one run for all 50 queued calls
    for i, fut in small.items():
        doubled, summed = fut.result(10)
        assert doubled.shape == (sizes[i], 3) and (doubled == 2 * i).all()
        assert (summed == 3 * i).all()
    assert batcher.stats.batches == 2 and batcher.stats.requests == 51


def test_a_request_that_finds_the_model_idle_runs_at_once() -> None:
    model = Model()
    batcher = Batcher(model)
    for i in range(3):
        assert (batcher.submit(rows(i))[0] == 2 * i).all()
    assert model.calls == [1, 1, 1]
    assert batcher.stats.batches == 3 and batcher.stats.requests == 3 and not batcher._busy


def test_batches_respect_max_rows(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    model = Model(gate=gate)
    batcher = Batcher(model, max_batch_rows=100)
    first = busy(pool, batcher, model)
    queued = [pool.submit(batcher.submit, rows(i, 30)) for i in range(7)]
    wait_for(lambda: batcher._queued_rows == 210)
    gate.set()
    first.result(10)
    assert [q.result(10)[0].shape[0] for q in queued] == [30] * 7
    assert model.calls[1:] == [90, 90, 30]  # three whole requests fit, the fourth waits for the next batch
    assert batcher.stats.rows == 211


def test_expired_requests_are_dropped_before_compute(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    model = Model(gate=gate)
    batcher = Batcher(model)
    first = busy(pool, batcher, model)
    live = pool.submit(batcher.submit, rows(1))
    dead = pool.submit(batcher.submit, rows(2, 5), time.monotonic() + 0.05)
    wait_for(lambda: batcher._queued_rows == 6)
    time.sleep(0.1)  # the second request's deadline passes while it waits
    gate.set()
    first.result(10)
    assert (live.result(10)[0] == 2).all()
    with pytest.raises(DeadlineExpired, match="while the request was queued"):
        dead.result(10)
    assert model.calls == [1, 1]  # only the live row was computed
    assert batcher.stats.expired == 1


def test_requests_of_callers_that_went_away_are_skipped(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    model = Model(gate=gate)
    batcher = Batcher(model)
    first = busy(pool, batcher, model)
    here = threading.Event()
    here.set()
    gone = pool.submit(batcher.submit, rows(1, 5), None, here.is_set)
    stays = pool.submit(batcher.submit, rows(2, 2), None, lambda: True)
    wait_for(lambda: batcher._queued_rows == 7)
    here.clear()  # the first caller cancels
    gate.set()
    first.result(10)
    assert stays.result(10)[0].shape == (2, 3)
    with pytest.raises(Cancelled):
        gone.result(10)
    assert model.calls == [1, 2] and batcher.stats.cancelled == 1


def test_a_failed_batch_fails_each_caller(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    model = Model(fail=True, gate=gate)
    batcher = Batcher(model)
    first = busy(pool, batcher, model)
    queued = [pool.submit(batcher.submit, rows(i)) for i in range(3)]
    wait_for(lambda: batcher._queued_rows == 3)
    gate.set()
    for fut in [first, *queued]:
        with pytest.raises(RuntimeError, match="model broke"):
            fut.result(10)
    assert model.calls == [1, 3]
    assert not batcher._busy  # the model is free again


def test_bounded_queue_refuses_instead_of_growing(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    model = Model(gate=gate)
    batcher = Batcher(model, max_queue_rows=10)
    first = busy(pool, batcher, model)
    queued = pool.submit(batcher.submit, rows(1, 8))
    wait_for(lambda: batcher._queued_rows == 8)
    with pytest.raises(TooLarge, match="queue is full"):
        batcher.submit(rows(2, 8))
    assert batcher.stats.rejected == 1
    gate.set()
    first.result(10)
    assert queued.result(10)[0].shape == (8, 3)


def test_queue_delay_waits_for_more_rows_when_idle_batches_are_small(pool: ThreadPoolExecutor) -> None:
    def run(delay_us: int) -> list[int]:
        model = Model()
        batcher = Batcher(model, max_queue_delay_us=delay_us)
        first = pool.submit(batcher.submit, rows(1))
        time.sleep(0.05)  # a second request comes a little later
        second = pool.submit(batcher.submit, rows(2))
        first.result(10), second.result(10)
        return model.calls

    assert run(0) == [1, 1]  # no delay: the idle batcher ran the first row at once
    assert run(2_000_000) == [2]  # a delay: it waited and both rows went together


def test_a_full_batch_does_not_wait_out_the_delay(pool: ThreadPoolExecutor) -> None:
    model = Model()
    batcher = Batcher(model, max_batch_rows=4, max_queue_delay_us=30_000_000)
    t0 = time.monotonic()
    got = [pool.submit(batcher.submit, rows(i, 2)) for i in range(2)]
    for fut in got:
        fut.result(10)
    assert model.calls == [4] and time.monotonic() - t0 < 10


def test_a_request_past_its_deadline_is_refused_even_when_idle() -> None:
    model = Model()
    with pytest.raises(DeadlineExpired):
        Batcher(model).submit(rows(1), deadline=time.monotonic() - 1)
    assert model.calls == []


def test_many_threads_each_get_exactly_their_rows(pool: ThreadPoolExecutor) -> None:
    model = Model()
    batcher = Batcher(model, max_batch_rows=64)

    def caller(t: int) -> None:
        rng = np.random.default_rng(t)
        for k in range(200):
            n = int(rng.integers(1, 9))
            x = rng.random((n, 3)).astype(np.float32) + t * 1000 + k
            doubled, summed = batcher.submit(x)
            np.testing.assert_array_equal(doubled, x * 2)
            np.testing.assert_allclose(summed, x.sum(axis=1), rtol=1e-6)

    for fut in [pool.submit(caller, t) for t in range(32)]:
        fut.result(60)
    assert sum(model.calls) == batcher.stats.rows and batcher.stats.requests == 32 * 200
    assert max(model.calls) <= 64 and not batcher._busy and not batcher._queue
