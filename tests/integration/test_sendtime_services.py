"""Send-time optimisation through the real services (Predict, GetCustomer360, ExportAudience) and its holdout
quality on the synthetic shop, against the shop-wide window and the last order's hour."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from tenure import sendtime
from tenure.data import Shop
from tenure.store import FeatureSnapshot
from tenure.v1 import scoring_pb2, scoring_pb2_grpc, segmentation_pb2_grpc
from tenure.v1 import segmentation_pb2 as pb


def _customer_in(snapshot: FeatureSnapshot, shop: Shop, zone: str) -> str:
    assert shop.customers is not None
    ids = shop.customers.loc[shop.customers["timezone"] == zone, "customer_id"].astype(str)
    return next(c for c in ids if c in snapshot.index)


def _orders(shop: Shop, cid: str) -> int:
    tx = shop.transactions
    return int(tx.loc[(tx["customer_id"] == cid) & ~tx["is_return"], "order_id"].nunique())


def _check(st: scoring_pb2.SendTime) -> None:
    hours, days = np.array(st.hour_distribution), np.array(st.weekday_distribution)
    assert len(hours) == 24 and len(days) == 7
    assert hours.sum() == pytest.approx(1.0, abs=1e-4) and days.sum() == pytest.approx(1.0, abs=1e-4)
    assert (hours > 0).all() and (days > 0).all()
    assert st.best_hour == int(np.argmax(hours)) and st.best_weekday == int(np.argmax(days))
    window = [hours[(st.best_window_start_hour + j) % 24] for j in range(3)]
    assert sum(window) == pytest.approx(max(sum(hours[(s + j) % 24] for j in range(3)) for s in range(24)), abs=1e-6)


def test_predict_and_360_give_the_send_time(scoring_server, segmentation_server, channel_to, snapshot,  # type: ignore[no-untyped-def]
                                            small_shop) -> None:
    away, home = _customer_in(snapshot, small_shop, "America/New_York"), _customer_in(snapshot, small_shop, "")
    stub = scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server))
    res = stub.Predict(scoring_pb2.PredictRequest(customer_ids=[away, home]), timeout=30)
    sts = [r.predictions.send_time for r in res.results]
    for r, st in zip(res.results, sts):
        assert r.predictions.HasField("send_time")
        _check(st)
        assert st.events == _orders(small_shop, r.customer_id) >= 1
        assert 0.0 < st.own_weight < 1.0
    assert sts[0].timezone == "America/New_York"
    assert sts[1].timezone == small_shop.timezone == "Europe/London"  # zone unknown: the shop's
    seg = segmentation_pb2_grpc.SegmentationServiceStub(channel_to(segmentation_server))
    view = seg.GetCustomer360(pb.Customer360Request(customer_id=away), timeout=30)
    assert view.predictions.send_time == sts[0]


def test_export_audience_by_best_hour_with_next_send_at(segmentation_server, channel_to) -> None:  # type: ignore[no-untyped-def]
    stub = segmentation_pb2_grpc.SegmentationServiceStub(channel_to(segmentation_server))
    began = datetime.now(timezone.utc)
    query = pb.AudienceQuery(conditions=[
        pb.Condition(field="best_hour", op=pb.CONDITION_OP_GE, value=18),
        pb.Condition(field="best_weekday", op=pb.CONDITION_OP_IN, values=["5", "6"])], limit=40)
    items = list(stub.ExportAudience(query, timeout=60))
    header, members = items[0].header, [i.member for i in items[1:]]
    assert 0 < header.count < header.base and len(members) == min(40, header.count)
    zones = set()
    for m in members:
        assert m.HasField("best_hour") and m.best_hour >= 18 and m.best_weekday in (5, 6)
        zones.add(m.send_timezone)
        at = datetime.fromisoformat(m.next_send_at.replace("Z", "+00:00"))
        assert at.tzinfo is not None and at.utcoffset() == timedelta(0) and at.minute == 0
        assert began < at <= datetime.now(timezone.utc) + timedelta(hours=25)
        assert at.astimezone(ZoneInfo(m.send_timezone)).hour == m.best_hour
    assert zones <= {"Europe/London", "America/New_York"}


def test_beats_the_shop_window_and_the_last_order_on_the_synthetic_shop(small_shop) -> None:  # type: ignore[no-untyped-def]
    """What training's "send time" step reports (training.pipeline): time split, choices on a validation window."""
    m = sendtime.evaluate(small_shop)
    assert m["holdout_customers"] > 500
    assert m["window_hit_rate"] > m["baseline_shop_window_hit_rate"] + 0.05
    assert m["window_hit_rate"] > m["baseline_last_order_window_hit_rate"] + 0.02
    assert m["weekday_hit_rate"] > m["baseline_shop_weekday_hit_rate"] + 0.05
    assert m["hour_loglik"] > m["baseline_shop_hour_loglik"] + 0.05
    assert m["customers_other_zone"] > 0


def test_the_snapshot_carries_the_table(trained_repo) -> None:  # type: ignore[no-untyped-def]
    snap = FeatureSnapshot.load_latest(trained_repo)
    assert snap.version_dir is not None
    table = sendtime.for_snapshot(snap)
    assert table is not None and len(table.hour) == len(snap.customer_ids)
    assert sendtime.for_snapshot(snap) is table  # loaded once per version
