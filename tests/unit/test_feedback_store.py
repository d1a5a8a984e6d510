"""Feedback events: checks, the SQLite store and its recently-shown index, the position report,
and the labels and pair features training makes of them."""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tenure.errors import InvalidInput, UnknownProduct
from tenure.features import PAIR_FEATURES, AffinityState, FeatureSpace, customer_columns, product_table
from tenure.feedback import (
    CLICK,
    IMPRESSION,
    PURCHASE,
    FeedbackEvent,
    FeedbackStore,
    PositionStats,
    check_event,
    position_report,
)
from training.propensity import feedback_labels, pair_features

NOW = float(int(time.time()))  # the index is built relative to the real clock
DAY = 86_400.0


def ev(cid: str, pid: str, kind: int, position: int = 1, ts: float = NOW, rid: str = "r") -> FeedbackEvent:
    return FeedbackEvent(cid, pid, kind, position, rid, ts)


# -- checks ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("event", "error", "needle"), [
    (ev("", "p1", IMPRESSION), InvalidInput, "customer_id is empty"),
    (ev("c" * 201, "p1", IMPRESSION), InvalidInput, "at most 200"),
    (ev("c1", "", IMPRESSION), InvalidInput, "product_id is empty"),
    (ev("c1", "nope", IMPRESSION), UnknownProduct, "nope"),
    (ev("c1", "p1", 0), InvalidInput, "kind 0"),
    (ev("c1", "p1", 7), InvalidInput, "kind 7"),
    (ev("c1", "p1", CLICK, position=1001), InvalidInput, "position 1001"),
    (ev("c1", "p1", CLICK, ts=-1.0), InvalidInput, "timestamp"),
    (ev("c1", "p1", CLICK, ts=math.nan), InvalidInput, "timestamp"),
    (ev("c1", "p1", CLICK, ts=math.inf), InvalidInput, "timestamp"),
    (ev("c1", "p1", CLICK, ts=NOW + 2 * DAY), InvalidInput, "in the future"),
    (ev("c1", "p1", CLICK, rid="x" * 300), InvalidInput, "request_id"),
])
def test_bad_events_say_what_is_wrong(event: FeedbackEvent, error: type, needle: str) -> None:
    with pytest.raises(error, match=needle):
        check_event(event, NOW, {"p1"})


def test_good_events_pass_and_timestamp_zero_means_now() -> None:
    assert check_event(ev("c1", "p1", PURCHASE, position=0, ts=NOW - 5), NOW, {"p1"}).timestamp == NOW - 5
    assert check_event(ev("c1", "p1", CLICK, position=1000, ts=0.0), NOW, {"p1"}).timestamp == NOW
    assert check_event(ev("c1", "anything", CLICK), NOW).product_id == "anything"  # no catalogue: not checked


# -- report ----------------------------------------------------------------------------------------

def test_position_report_by_hand() -> None:
    events = pd.DataFrame({"position": [1, 1, 1, 1, 2, 2, 2, 0, 3],
                           "kind": [1, 1, 1, 2, 1, 1, 3, 2, 1]})
    report = position_report(events)
    assert report.positions == [PositionStats(0, 0, 1, 0), PositionStats(1, 3, 1, 0), PositionStats(2, 2, 0, 1),
                                PositionStats(3, 1, 0, 0)]
    assert report.total == PositionStats(0, 6, 2, 1)
    assert report.positions[1].click_through_rate == pytest.approx(1 / 3)
    assert report.positions[2].conversion_rate == pytest.approx(0.5)
    assert report.positions[0].click_through_rate == 0.0  # no impressions: 0, not a division by zero
    frame = report.to_frame()
    assert frame["position"].tolist() == ["0", "1", "2", "3", "total"]
    assert frame["impressions"].tolist() == [0, 3, 2, 1, 6]
    assert "total" in report.to_text()
    assert position_report(events.iloc[:0]).total == PositionStats(0, 0, 0, 0)


# -- store -----------------------------------------------------------------------------------------

def test_store_records_reports_and_reads(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    events = [ev("c1", "p1", IMPRESSION, 1, NOW - 100), ev("c1", "p2", IMPRESSION, 2, NOW - 100),
              ev("c1", "p1", CLICK, 1, NOW - 50), ev("c2", "p1", IMPRESSION, 1, NOW - 10 * DAY),
              ev("c2", "p1", PURCHASE, 1, 0.0)]
    assert store.record(events, now=NOW) == 5
    with pytest.raises(InvalidInput):
        store.record([ev("c1", "p1", IMPRESSION), ev("", "p1", IMPRESSION)], now=NOW)  # all or nothing
    frame = store.read_events()
    assert frame.columns.tolist() == ["customer_id", "product_id", "kind", "position", "request_id", "timestamp"]
    assert len(frame) == 5 and frame["timestamp"].iloc[-1] == NOW
    assert len(store.read_events(since=NOW - DAY)) == 4
    report = store.report()
    assert report.total == PositionStats(0, 3, 1, 1)
    assert [(s.position, s.impressions, s.clicks, s.purchases) for s in report.positions] == [(1, 2, 1, 1),
                                                                                              (2, 1, 0, 0)]
    assert store.report(since=NOW - DAY, until=NOW).total == PositionStats(0, 2, 1, 0)
    assert store.report().positions == position_report(frame).positions  # SQL and DataFrame agree


def test_recently_shown(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.sqlite", index_days=7)
    store.record([
        ev("c1", "shown", IMPRESSION, ts=NOW - DAY),
        ev("c1", "clicked", IMPRESSION, ts=NOW - DAY), ev("c1", "clicked", CLICK, ts=NOW - DAY + 60),
        ev("c1", "bought", IMPRESSION, ts=NOW - DAY), ev("c1", "bought", PURCHASE, ts=NOW - 60),
        ev("c1", "old", IMPRESSION, ts=NOW - 8 * DAY),
        # Shown again after a click: the latest impression has no click after it.
        ev("c1", "again", IMPRESSION, ts=NOW - 3 * DAY), ev("c1", "again", CLICK, ts=NOW - 3 * DAY),
        ev("c1", "again", IMPRESSION, ts=NOW - DAY),
        ev("c2", "other", IMPRESSION, ts=NOW - DAY),
    ], now=NOW)
    # A click that arrives late, with a timestamp after the impression: it counts.
    store.record([ev("c1", "late", CLICK, ts=NOW - 100)], now=NOW)
    store.record([ev("c1", "late", IMPRESSION, ts=NOW - 200)], now=NOW)
    assert sorted(store.recently_shown("c1", NOW, 7)) == ["again", "shown"]
    assert store.recently_shown("c1", NOW, 0.5) == []
    assert store.recently_shown("c1", NOW, 0) == []
    assert store.recently_shown("nobody", NOW, 7) == []
    assert store.recently_shown("c2", NOW, 7) == ["other"]

    # A new store on the same file (a restart) rebuilds the same index from the last index_days.
    again = FeedbackStore(tmp_path / "f.sqlite", index_days=7, sync_interval_s=3600)
    assert sorted(again.recently_shown("c1", NOW, 7)) == ["again", "shown"]
    # ... and events another process records show up once it syncs; its own it never reads back.
    store.record([ev("c3", "p9", IMPRESSION, ts=NOW - 10)], now=NOW)
    assert again.recently_shown("c3", NOW, 7) == []
    assert again.sync() == 1 and store.sync() == 0
    assert again.recently_shown("c3", NOW, 7) == ["p9"]
    # Old entries are pruned from memory, not from the file.
    entries = store.index_size()[1]
    assert entries == 7  # "old" never entered the index: older than index_days when recorded
    assert store.prune(NOW + 30 * DAY) == entries
    assert store.index_size() == (0, 0) and len(store.read_events()) == 13


def test_events_of_another_process_arrive_in_the_background(tmp_path: Path) -> None:
    reader = FeedbackStore(tmp_path / "f.sqlite", sync_interval_s=0.0)
    writer = FeedbackStore(tmp_path / "f.sqlite")
    writer.record([ev("c1", "p1", IMPRESSION, ts=NOW - 10)])
    reader.recently_shown("c1", NOW, 7)  # a sync is due (interval 0): this call starts one on its own thread
    # Wait for that sync to end, however long it takes (60 s only turns a hang into a failure); a sync
    # thread is listed from its start() (before the call above returned) until it has read the file.
    for t in [t for t in threading.enumerate() if t.name == "feedback-sync"]:
        t.join(60)
        assert not t.is_alive()
    assert reader.recently_shown("c1", NOW, 7) == ["p1"]  # later calls see what it read


def test_store_without_index_and_concurrent_writers(tmp_path: Path) -> None:
    reader = FeedbackStore(tmp_path / "f.sqlite", index_days=0)
    assert reader.recently_shown("c1", NOW, 7) == [] and reader.read_events().empty
    store = FeedbackStore(tmp_path / "f.sqlite", index_days=7)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(20):
                store.record([ev(f"c{t}", f"p{i}", IMPRESSION, ts=NOW - 10)], now=NOW)
                store.recently_shown(f"c{t}", NOW, 7)
        except BaseException as err:  # noqa: B036 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(reader.read_events()) == 120
    assert all(len(store.recently_shown(f"c{t}", NOW, 7)) == 20 for t in range(6))


# -- training --------------------------------------------------------------------------------------

def test_feedback_labels() -> None:
    H = 30
    events = pd.DataFrame([
        ("a", "p1", IMPRESSION, NOW), ("a", "p1", CLICK, NOW + DAY),             # clicked within H -> 1
        ("a", "p2", IMPRESSION, NOW), ("a", "p2", PURCHASE, NOW + 40 * DAY),     # too late -> 0
        ("a", "p3", IMPRESSION, NOW), ("a", "p3", CLICK, NOW - DAY),             # before the impression -> 0
        ("a", "p4", IMPRESSION, NOW), ("a", "p4", IMPRESSION, NOW + 35 * DAY),   # second one clicked -> 1
        ("a", "p4", CLICK, NOW + 36 * DAY),
        ("b", "p1", IMPRESSION, NOW),                                             # nothing -> 0
        ("b", "p2", PURCHASE, NOW),                                               # bought, shown implied -> 1
    ], columns=["customer_id", "product_id", "kind", "timestamp"])
    labels = feedback_labels(events, H)
    got = {(c, p): y for c, p, y in labels.itertuples(index=False)}
    assert got == {("a", "p1"): 1, ("a", "p2"): 0, ("a", "p3"): 0, ("a", "p4"): 1, ("b", "p1"): 0, ("b", "p2"): 1}
    assert feedback_labels(events.iloc[:0], H).empty


def test_pair_features_match_the_candidates_code() -> None:
    from tenure.synthetic import generate_shop

    shop = generate_shop(n_customers=600, seed=3, n_products=80)
    space = FeatureSpace.fit(shop)
    arrays = space.encode(shop)
    products = product_table(shop, arrays, space)
    cutoff = shop.transactions["ts"].max().normalize() - pd.Timedelta(days=30)
    codes, Xc = space.customer_features(arrays, cutoff, shop.customers)
    state = AffinityState.build(arrays, cutoff, product_cat=products["cat_code"].to_numpy(np.int64),
                                price=products["price"].to_numpy(np.float64))
    rows = np.arange(0, len(codes), 7)[:60]
    cust = customer_columns(space.names, Xc[rows], space.categories)
    cand, _src, X = state.candidates(state.hist[codes[rows]].toarray(), state.hist_last[codes[rows]].toarray(), cust, 40)
    valid = (cand >= 0).ravel()
    pair_rows = np.repeat(rows, cand.shape[1])[valid]
    got = pair_features(state, codes[pair_rows], cand.ravel()[valid],
                        customer_columns(space.names, Xc[pair_rows], space.categories))
    assert got.shape == (int(valid.sum()), len(PAIR_FEATURES)) and got.dtype == np.float32
    np.testing.assert_allclose(got, X[valid], rtol=1e-5, atol=1e-6)
    assert pair_features(state, codes[:0], np.zeros(0, np.int64), customer_columns(space.names, Xc[:0],
                                                                                   space.categories)).shape == (0, 15)
