"""The dynamic batcher: coalescing, splitting, deadlines, cancellation, failures, bounds, threads.

No test depends on how fast this box is: a test reads what a thread produced only after joining it
(its future's result), and deadlines and queue delays run on a fake clock the test advances. The
timeouts below only turn a hang into a failure."""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import pytest

from services.core import batching
from services.core.batching import Batcher
from tenure.errors import Cancelled, DeadlineExpired, TooLarge

HANG_S = 60.0
"""How long a wait may take before the test calls it a hang (never reached when the code works)."""


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
            assert self.gate.wait(HANG_S), "the test never opened the gate"
        if self.fail:
            raise RuntimeError("model broke")
        return [x * 2, x.sum(axis=1)]


def rows(i: int, n: int = 1) -> np.ndarray:
    return np.full((n, 3), float(i), np.float32)


def wait_for(condition: Callable[[], bool], timeout: float = HANG_S) -> None:
    """Poll until condition() (e.g. all requests queued: the batcher signals nothing when one is)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


class FakeClock:
    """The batcher's clock (deadlines, queue delay) frozen until the test advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    @staticmethod
    def perf_counter() -> float:  # compute time for the stats only
        return time.perf_counter()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(batching, "time", fake)
    return fake


def wake(batcher: Batcher) -> None:
    """Wake a caller waiting out the queue delay, as a timed-out wait would, to look at the clock."""
    with batcher._cond:
        batcher._cond.notify_all()


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(max_workers=64) as executor:
        yield executor


def busy(pool: ThreadPoolExecutor, batcher: Batcher, model: Model, n: int = 1) -> Future[list[np.ndarray]]:
    """Start a request that holds the model at its gate."""
    first = pool.submit(batcher.submit, rows(0, n))
    assert model.running.wait(HANG_S)
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
    assert (big.result(HANG_S)[0] == 0).all()
    # The first caller returns once it has handed the model to the queued batch; that batch runs on
    # the thread of one of its callers: every caller must have returned before the runs are counted.
    for i, fut in small.items():
        doubled, summed = fut.result(HANG_S)
        assert doubled.shape == (sizes[i], 3) and (doubled == 2 * i).all()
        assert (summed == 3 * i).all()
    assert model.calls == [10, sum(sizes.values())]  # one run for all 50 queued calls
    assert batcher.stats.batches == 2 and batcher.stats.requests == 51
    assert not batcher._busy and not batcher._queue


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
    first.result(HANG_S)
    assert [q.result(HANG_S)[0].shape[0] for q in queued] == [30] * 7  # all callers returned: all runs done
    assert model.calls[1:] == [90, 90, 30]  # three whole requests fit, the fourth waits for the next batch
    assert batcher.stats.rows == 211


def test_expired_requests_are_dropped_before_compute(pool: ThreadPoolExecutor, clock: FakeClock) -> None:
    gate = threading.Event()
    model = Model(gate=gate)
    batcher = Batcher(model)
    first = busy(pool, batcher, model)
    live = pool.submit(batcher.submit, rows(1))
    dead = pool.submit(batcher.submit, rows(2, 5), clock.now + 5)
    wait_for(lambda: batcher._queued_rows == 6)
    clock.now += 10  # the second request's deadline passes while it waits
    gate.set()
    first.result(HANG_S)
    assert (live.result(HANG_S)[0] == 2).all()
    with pytest.raises(DeadlineExpired, match="while the request was queued"):
        dead.result(HANG_S)
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
    first.result(HANG_S)
    assert stays.result(HANG_S)[0].shape == (2, 3)  # it ran the second batch on its own thread
    with pytest.raises(Cancelled):
        gone.result(HANG_S)
    assert model.calls == [1, 2] and batcher.stats.cancelled == 1


def test_a_failed_batch_fails_each_caller(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    model = Model(fail=True, gate=gate)
    batcher = Batcher(model)
    first = busy(pool, batcher, model)
    queued = [pool.submit(batcher.submit, rows(i)) for i in range(3)]
    wait_for(lambda: batcher._queued_rows == 3)
    gate.set()
    for fut in [first, *queued]:  # every caller, the one that ran the second batch included
        with pytest.raises(RuntimeError, match="model broke"):
            fut.result(HANG_S)
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
    first.result(HANG_S)
    assert queued.result(HANG_S)[0].shape == (8, 3)
    assert model.calls == [1, 8] and batcher.stats.requests == 2  # the refused one is not counted


def test_queue_delay_waits_for_more_rows_when_idle_batches_are_small(pool: ThreadPoolExecutor,
                                                                    clock: FakeClock) -> None:
    # No delay: an idle batcher runs a lone row at once, on the caller's thread, with nobody else coming.
    model = Model()
    batcher = Batcher(model)
    assert (batcher.submit(rows(1))[0] == 2).all() and model.calls == [1]

    # A delay: the first row waits, a second comes a little later, both go together once it is over.
    model = Model()
    batcher = Batcher(model, max_queue_delay_us=2_000_000)
    first = pool.submit(batcher.submit, rows(1))
    wait_for(lambda: batcher._queued_rows == 1)
    second = pool.submit(batcher.submit, rows(2))
    wait_for(lambda: batcher._queued_rows == 2)
    assert model.calls == [] and not first.done()  # still waiting: the delay is not over
    clock.now += 2.5
    wake(batcher)
    assert (first.result(HANG_S)[0] == 2).all() and (second.result(HANG_S)[0] == 4).all()
    assert model.calls == [2]


def test_a_full_batch_does_not_wait_out_the_delay(pool: ThreadPoolExecutor, clock: FakeClock) -> None:
    # The clock never moves: had the batcher waited out the delay, the callers would never return.
    model = Model()
    batcher = Batcher(model, max_batch_rows=4, max_queue_delay_us=30_000_000)
    got = [pool.submit(batcher.submit, rows(i, 2)) for i in range(2)]
    for fut in got:
        fut.result(HANG_S)
    assert model.calls == [4]


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
