"""Send-time estimate (tenure.sendtime): recovery, shrinkage, time zones, data without times, the served table."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tenure import sendtime
from tenure.data import Shop
from tenure.errors import DataError


def _rhythm(peak: float, kappa: float = 3.0) -> np.ndarray:
    angle = 2 * np.pi * ((np.arange(24) + 0.5) - peak) / 24.0
    p = np.exp(kappa * (np.cos(angle) - 1.0))
    return p / p.sum()


def _counts(n_customers: int, n_events: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Customers of two rhythm types (peaks 8:00 and 20:00, personal +-1 h), n_events each."""
    rng = np.random.default_rng(seed)
    peaks = np.where(rng.random(n_customers) < 0.5, 8.0, 20.0) + rng.normal(0, 0.5, n_customers)
    counts = np.array([rng.multinomial(n_events, _rhythm(p)) for p in peaks], np.float64)
    return counts, peaks


def _circular_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % 24
    return np.minimum(d, 24 - d)


def test_recovers_a_known_rhythm() -> None:
    counts, peaks = _counts(1_500, 12)
    fit = sendtime.fit_rhythm(counts, k=4)
    P, own = fit.posterior(counts)
    assert np.allclose(P.sum(axis=1), 1.0)
    best = np.argmax(P, axis=1) + 0.5
    assert np.mean(_circular_distance(best, peaks) <= 1.5) > 0.85
    # a segment per type: the segments' peaks include both
    seg_peaks = np.argmax(fit.segments, axis=1)
    assert (_circular_distance(seg_peaks + 0.5, 8.0) <= 2).any() and (_circular_distance(seg_peaks + 0.5, 20.0) <= 2).any()
    assert 0.0 < own.min() and own.max() < 1.0


def test_shrinkage_one_event_is_near_the_segment_many_near_their_own() -> None:
    counts, _ = _counts(1_500, 10)
    fit = sendtime.fit_rhythm(counts, k=1)  # one segment: the shop's pattern
    one = np.zeros((1, 24))
    one[0, 3] = 1.0  # a single order at 03:00
    many = np.zeros((1, 24))
    many[0, 3] = 200.0  # 200 at 03:00
    P1, w1 = fit.posterior(one)
    P200, w200 = fit.posterior(many)
    assert w1[0] < 0.3 and w200[0] > 0.8
    assert np.abs(P1[0] - fit.segments[0]).sum() < 0.6  # near the segment's (here the shop's) pattern
    assert P200[0, 3] > 0.8 and np.argmax(P200[0]) == 3
    assert np.argmax(P1[0]) != 3  # one 3 a.m. order does not make 3 a.m. their best hour
    # no events: exactly the segment's pattern, weight 0
    P0, w0 = fit.posterior(np.zeros((1, 24)))
    assert w0[0] == 0 and np.allclose(P0[0], fit.segments[0])


def test_concentration_follows_the_data() -> None:
    """The marginal likelihood wants more shrinkage when customers are alike than when they differ."""
    rng = np.random.default_rng(1)
    alike = np.array([rng.multinomial(8, _rhythm(14.0)) for _ in range(800)], np.float64)
    differ, _ = _counts(800, 8, seed=2)
    a_alike = sendtime.fit_rhythm(alike, k=1).concentration
    a_differ = sendtime.fit_rhythm(differ, k=1).concentration
    assert a_alike > 5 * a_differ


def test_time_zone_conversion_is_dst_correct() -> None:
    # the shop in London; the US moves its clocks on 2025-03-09, the UK on 2025-03-30
    ts = pd.to_datetime(["2025-01-15 12:00", "2025-03-15 12:00", "2025-04-15 12:00", "2025-01-15 12:00"]).to_numpy()
    zones = np.array(["America/New_York"] * 3 + ["Europe/London"], dtype=object)
    hour, weekday = sendtime.local_parts(ts, zones, "Europe/London")
    assert hour.tolist() == [7, 8, 7, 12]  # 5 h behind, 4 h between the two changes, 5 h again
    assert weekday.tolist() == [2, 5, 1, 2]  # Wednesday, Saturday, Tuesday, Wednesday
    # late evening in London is the same day in New York; 02:00 London is the previous evening there
    hour, weekday = sendtime.local_parts(pd.to_datetime(["2025-01-16 02:00"]).to_numpy(),
                                         np.array(["America/New_York"], dtype=object), "Europe/London")
    assert hour.tolist() == [21] and weekday.tolist() == [2]


def test_customer_zones_from_the_customers_file() -> None:
    customers = pd.DataFrame({"customer_id": ["a", "b", "c", "d"],
                              "timezone": ["Asia/Tokyo", "", None, "Mars/Olympus"]})
    zones = sendtime.customer_zones(customers, np.array(["a", "b", "c", "d", "e"]), "Europe/Berlin")
    assert zones.tolist() == ["Asia/Tokyo", "Europe/Berlin", "Europe/Berlin", "Europe/Berlin", "Europe/Berlin"]
    assert sendtime.customer_zones(None, np.array(["a"]), "UTC").tolist() == ["UTC"]


def _tiny_shop(ts: pd.Series, customers: pd.DataFrame | None = None, zone: str = "UTC") -> Shop:
    n = len(ts)
    tx = pd.DataFrame({"customer_id": [f"c{i % 50}" for i in range(n)], "order_id": [f"o{i}" for i in range(n)],
                       "ts": ts.to_numpy(), "product_id": "p", "quantity": 1.0, "amount": 1.0, "is_return": False})
    return Shop("tiny", tx, customers, None, timezone=zone)


def test_dates_without_a_time_of_day_are_skipped_with_a_reason() -> None:
    days = pd.Series(pd.date_range("2024-01-01", periods=600, freq="D"))
    with pytest.raises(DataError, match="no time of day"):
        sendtime.build_events(_tiny_shop(days))
    with pytest.raises(DataError, match="orders; at least"):
        sendtime.build_events(_tiny_shop(days[:20] + pd.Timedelta(hours=9)))
    short = pd.Series(pd.date_range("2024-01-01", periods=600, freq="50min"))  # 3 weeks of history
    with pytest.raises(DataError, match="not enough history"):
        sendtime.evaluate(_tiny_shop(short))


def test_clicks_count_in_the_customers_zone() -> None:
    ts = pd.Series(pd.date_range("2024-01-01 09:00", periods=400, freq="37h"))
    customers = pd.DataFrame({"customer_id": ["c1"], "timezone": ["Asia/Tokyo"]})
    utc = datetime(2024, 6, 1, 3, 0, tzinfo=timezone.utc).timestamp()  # 12:00 in Tokyo
    feedback = pd.DataFrame({"customer_id": ["c1", "c1"], "product_id": ["p", "p"], "kind": [2, 1],
                             "position": [0, 0], "request_id": ["r", "r"], "timestamp": [utc, utc]})
    ev = sendtime.build_events(_tiny_shop(ts, customers), feedback)
    clicks = ~ev.is_order
    assert clicks.sum() == 1  # the impression (kind 1) is not an action
    assert ev.hour[clicks].tolist() == [12] and ev.weight[clicks].tolist() == [sendtime.CLICK_WEIGHT]
    assert ev.customer_ids[ev.customer[clicks]].tolist() == ["c1"]


def test_next_start_of_the_best_hour() -> None:
    now = datetime(2025, 6, 10, 12, 30, tzinfo=timezone.utc)
    assert sendtime.next_start(9, "Europe/London", now) == "2025-06-11T08:00:00Z"  # 09:00 BST tomorrow
    assert sendtime.next_start(14, "Europe/London", now) == "2025-06-10T13:00:00Z"  # later today
    assert sendtime.next_start(9, "America/New_York", now) == "2025-06-10T13:00:00Z"  # 09:00 EDT today
    # 01:00 does not exist in London on 2025-03-30 (clocks go 01:00 -> 02:00): the next day's
    assert sendtime.next_start(1, "Europe/London", datetime(2025, 3, 29, 12, tzinfo=timezone.utc)) \
        == "2025-03-31T00:00:00Z"


def test_served_table_round_trip(tmp_path: Path) -> None:
    from tenure.synthetic import generate_shop

    shop = generate_shop(1_500, seed=3, n_products=100, campaigns=False)
    ids = np.array([*shop.customers["customer_id"].astype(str)[:300], "never-seen"], dtype=object)
    end = shop.transactions["ts"].max().normalize() + pd.Timedelta(days=1)
    (tmp_path / sendtime.SENDTIME_FILE).write_bytes(sendtime.table_bytes(shop, end, ids))
    table = sendtime.SendTimes(tmp_path / sendtime.SENDTIME_FILE, len(ids))
    assert np.allclose(table.hour.sum(axis=1), 1, atol=1e-5) and np.allclose(table.weekday.sum(axis=1), 1, atol=1e-5)
    zones = dict(zip(shop.customers["customer_id"].astype(str), shop.customers["timezone"].astype(str)))
    for row in range(300):
        f = table.fields(row)
        assert f["timezone"] == (zones[ids[row]] or shop.timezone)
        assert len(f["hour_distribution"]) == 24 and len(f["weekday_distribution"]) == 7
        assert f["best_hour"] == int(np.argmax(f["hour_distribution"]))
        assert (f["best_window_start_hour"] - f["best_hour"]) % 24 in (22, 23, 0)
        assert 0.0 <= f["own_weight"] < 1.0
    last = table.fields(len(ids) - 1)  # no events: the shop's pattern (as for an online-only customer)
    assert last["events"] == 0 and last["own_weight"] == 0 and last["timezone"] == "Europe/London"
    shop_fields = table.fields(-1)
    assert shop_fields["events"] == 0 and shop_fields["hour_distribution"] == pytest.approx(last["hour_distribution"],
                                                                                            abs=2e-3)
    with pytest.raises(ValueError, match="rows"):
        sendtime.SendTimes(tmp_path / sendtime.SENDTIME_FILE, len(ids) + 1)


def test_metrics_rows_and_skip_reason_in_the_table() -> None:
    from training.pipeline import metrics_table

    m = {"holdout_days": 90, "holdout_customers": 900, "window_hit_rate": 0.33, "baseline_shop_window_hit_rate": 0.23,
         "baseline_last_order_window_hit_rate": 0.27, "weekday_hit_rate": 0.3, "baseline_shop_weekday_hit_rate": 0.18,
         "baseline_last_order_weekday_hit_rate": 0.26, "hour_loglik": -2.8, "baseline_shop_hour_loglik": -3.0}
    table = metrics_table([{"name": "send-time", "metrics": m}], "shop")
    assert "| shop | send time (90 d, 900 customers) | best 3-h window hit rate | 0.330 | shop-wide best window | 0.230 |" \
        in table
    skipped = metrics_table([{"name": "send-time", "skipped": "send time: the timestamps carry no time of day"}], "cdnow")
    assert "| cdnow | send-time | not published | send time: the timestamps carry no time of day" in skipped
