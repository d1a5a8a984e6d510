"""The online store's rules: idempotency, time order, bad events, new customers, and concurrent writers on Redis."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tenure.artifacts import load_manifest
from tenure.data import Shop
from tenure.features import FeatureSpace, to_days
from tenure.online import BEFORE_SNAPSHOT, DUPLICATE, REJECTED, SEED_FILE, EmbeddedStore, Event, Line, OnlineFeatures
from tenure.store import FeatureSnapshot
from training.pipeline import write_snapshot


@pytest.fixture(scope="module")
def snap(small_shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> tuple[FeatureSnapshot, Path]:
    cutoff = small_shop.transactions["ts"].max().normalize() + pd.Timedelta(days=1)
    _, vdir = write_snapshot(small_shop, tmp_path_factory.mktemp("online-store"), cutoff,
                             space=FeatureSpace.fit(small_shop, btyd_horizons=(365,)))
    return FeatureSnapshot.load(vdir, load_manifest(vdir)), vdir


def order(eid: str, cid: str, t: float, *lines: tuple[str, float], channel: str = "") -> Event:
    return Event(eid, cid, t, "order", [Line(p, "", 1.0, a) for p, a in lines], channel=channel)


def test_events_apply_once_in_time_order_and_bad_ones_fail_alone(snap: tuple[FeatureSnapshot, Path]) -> None:
    snapshot, vdir = snap
    online = OnlineFeatures.open(snapshot, vdir, "", 3600)
    c0 = snapshot.cutoff.timestamp()
    cid = str(snapshot.customer_ids[0])
    pid = str(snapshot.catalog.product_ids[0])
    before = snapshot.X[0].copy()
    summary = online.ingest([
        order("a", cid, c0 + 86_400, (pid, 30.0)),
        order("a", cid, c0 + 86_400, (pid, 30.0)),  # the same id again in the batch
        order("b", cid, c0 - 10, (pid, 30.0)),  # before the snapshot: training counted it
        order("c", cid, c0 + 3_600, (pid, 30.0)),  # older than "a"
        Event("d", cid, c0 + 90_000, "order", [Line(pid, "", 1.0, float("nan"))]),
        Event("", cid, c0 + 90_000, "order", [Line(pid, "", 1.0, 1.0)]),
        Event("f", cid, c0 + 90_000, "order", []),
        Event("g", cid, c0 + 90_000, "feedback"),
        order("h", cid, c0 + 2 * 86_400, (pid, 10.0)),
    ])
    outcomes = {o.index: o for o in summary.outcomes}
    assert summary.received == 9 and summary.applied == 2
    assert (summary.duplicates, summary.before_snapshot, summary.rejected) == (1, 1, 5)
    assert outcomes[1].outcome == DUPLICATE and outcomes[2].outcome == BEFORE_SNAPSHOT
    assert outcomes[3].outcome == REJECTED and "older than" in outcomes[3].error
    assert "amount=nan" in outcomes[4].error and "event_id is empty" in outcomes[5].error
    assert "no lines" in outcomes[6].error and "recommendation service" in outcomes[7].error
    row = online.vector(cid)
    assert row is not None
    names = snapshot.feature_names
    col = {n: i for i, n in enumerate(names)}
    assert row[col["orders_total"]] == before[col["orders_total"]] + 2
    assert row[col["recency_days"]] == pytest.approx(1 / 86_400, abs=1e-6)  # as of a second after the last order
    assert row[col["spend_total"]] == pytest.approx(before[col["spend_total"]] + 40.0, rel=1e-6)
    found = online.entry(cid)
    assert found is not None
    np.testing.assert_array_equal(found[0], row)
    assert found[1] == pytest.approx(c0 + 2 * 86_400 + 1)
    assert found[2][pid][0] >= 2
    again = online.ingest([order("h", cid, c0 + 2 * 86_400, (pid, 10.0))])
    assert again.duplicates == 1 and again.applied == 0
    np.testing.assert_array_equal(online.vector(cid), row)


def test_a_new_customer_gets_a_row_at_the_first_order_and_a_return_alone_gives_none(
        snap: tuple[FeatureSnapshot, Path]) -> None:
    snapshot, vdir = snap
    online = OnlineFeatures.open(snapshot, vdir, "", 3600)
    c0 = snapshot.cutoff.timestamp()
    s = online.ingest([Event("r1", "ghost", c0 + 10, "return", [Line("p", "", 1.0, 5.0)]),
                       order("n1", "newbie", c0 + 20, ("p-unknown-to-the-catalogue", 12.5), channel="web")])
    assert s.applied == 2 and s.rejected == 0
    assert online.vector("ghost") is None  # no order: not a customer the models score
    row = online.vector("newbie")
    assert row is not None
    col = {n: i for i, n in enumerate(snapshot.feature_names)}
    assert row[col["orders_total"]] == 1 and row[col["distinct_products"]] == 1
    assert row[col["gap_mean_days"]] == -1 and row[col["tenure_days"]] == pytest.approx(1 / 86_400, abs=1e-6)
    if "age" in col:
        assert row[col["age"]] == -1  # demographics unknown until the next training


def test_the_embedded_store_remembers_the_newest_event_ids() -> None:
    store = EmbeddedStore(max_event_ids=2)
    for e in ("a", "b", "c"):
        store.transact([], [e], lambda states, seen, e=e: ({}, [e], []))  # type: ignore[misc]
    seen: list[bool] = []
    store.transact([], ["a", "b", "c"], lambda states, s: (seen.extend(s), ({}, [], []))[1])  # type: ignore[func-returns-value]
    assert seen == [False, True, True]


def test_concurrent_writers_on_redis_lose_no_update(snap: tuple[FeatureSnapshot, Path], redis_url: str) -> None:
    """Two replicas (two OnlineFeatures on one Redis) add orders to the same customers at once: every order counts."""
    import redis

    snapshot, vdir = snap
    redis.Redis.from_url(redis_url).flushall()
    replicas = [OnlineFeatures.open(snapshot, vdir, redis_url, 3600) for _ in range(2)]
    assert (vdir / SEED_FILE).exists()
    c0 = snapshot.cutoff.timestamp()
    customers = [str(c) for c in snapshot.customer_ids[:5]]
    pid = str(snapshot.catalog.product_ids[1])
    n = 40
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            for i in range(n):
                replicas[k].ingest([order(f"{k}-{i}-{c}", c, c0 + 100, (pid, 1.0)) for c in customers])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    col = snapshot.feature_names.index("orders_total")
    for j, c in enumerate(customers):
        for replica in replicas:
            row = replica.vector(c)
            assert row is not None and row[col] == snapshot.X[j, col] + 2 * n
    names, X = replicas[0].vectors_at(customers, to_days(pd.Timestamp(snapshot.cutoff)) + 1)
    assert names == customers and (X[:, col] == snapshot.X[:5, col] + 2 * n).all()
    for r in replicas:
        assert r.ingest([order("0-0-" + customers[0], customers[0], c0 + 100, (pid, 1.0))]).duplicates == 1
        r.close()
