"""Recommendation feedback through a real server (its own state directory, real SQLite) and the
propensity training run that uses it."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest

from tenure.artifacts import latest_valid
from tenure.data import Shop
from tenure.feedback import FeedbackStore
from tenure.store import FeatureSnapshot
from tenure.v1 import recommendation_pb2 as rpb
from tenure.v1 import recommendation_pb2_grpc

IMP, CLICK, BUY = rpb.FEEDBACK_KIND_IMPRESSION, rpb.FEEDBACK_KIND_CLICK, rpb.FEEDBACK_KIND_PURCHASE
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.NOT_FOUND.value[0]


@pytest.fixture
def stub(own_recommendation_server: Any, channel_to: Any) -> recommendation_pb2_grpc.RecommendationServiceStub:
    return recommendation_pb2_grpc.RecommendationServiceStub(channel_to(own_recommendation_server))


def customers_by_orders(snapshot: FeatureSnapshot) -> list[str]:
    orders = snapshot.X[:, snapshot.feature_names.index("orders_total")]
    return [str(c) for c in snapshot.customer_ids[np.argsort(-orders, kind="stable")]]


def event(cid: str, pid: str, kind: int, position: int, ts: float = 0.0, rid: str = "") -> rpb.FeedbackEvent:
    return rpb.FeedbackEvent(customer_id=cid, product_id=pid, kind=rpb.FeedbackKind.ValueType(kind), position=position,
                             timestamp=ts,
                             request_id=rid)


def test_record_feedback_and_the_report(stub: Any, snapshot: FeatureSnapshot) -> None:
    cid = customers_by_orders(snapshot)[5]
    pids = [str(p) for p in snapshot.catalog.product_ids[:5]]
    t0 = float(int(time.time()) - 3 * 86_400)  # a window of its own: other tests record at "now"
    good = [event(cid, pid, IMP, pos, t0 + pos) for pos, pid in enumerate(pids, 1)]  # positions 1..5
    good += [event(cid, pid, IMP, pos, t0 + 10 + pos) for pos, pid in enumerate(pids[:3], 1)]  # 1..3 again
    good += [event(cid, pids[0], CLICK, 1, t0 + 20), event(cid, pids[1], CLICK, 2, t0 + 21),
             event(cid, pids[0], CLICK, 1, t0 + 22), event(cid, pids[0], BUY, 1, t0 + 23),
             event(cid, pids[3], BUY, 4, t0 + 24), event(cid, pids[4], CLICK, 0, t0 + 25)]
    bad = {
        2: (event("", pids[0], IMP, 1, t0), INVALID),
        5: (event(cid, "P-nope", IMP, 1, t0), NOT_FOUND),
        7: (event(cid, pids[0], rpb.FEEDBACK_KIND_UNSPECIFIED, 1, t0), INVALID),
        8: (event(cid, pids[0], IMP, 1, -5.0), INVALID),
        11: (event(cid, pids[0], IMP, 1, math.nan), INVALID),
        12: (event(cid, pids[0], IMP, 1001, t0), INVALID),
        13: (event(cid, pids[0], IMP, 1, time.time() + 10 * 86_400), INVALID),
    }
    events = list(good)
    for i in sorted(bad):
        events.insert(i, bad[i][0])
    resp = stub.RecordFeedback(rpb.RecordFeedbackRequest(events=events))
    assert resp.recorded == len(good)
    assert [(f.row, f.error.code) for f in resp.failures] == [(i, code) for i, (_, code) in sorted(bad.items())]
    assert "P-nope" in resp.failures[1].error.message and "kind 0" in resp.failures[2].error.message

    report = stub.GetFeedbackReport(rpb.FeedbackReportRequest(since=t0, until=t0 + 100))
    # By hand: impressions 2,2,2,1,1 at positions 1..5; clicks 2 at 1, 1 at 2, 1 at position 0;
    # purchases 1 at 1 and 1 at 4.
    want = {0: (0, 1, 0), 1: (2, 2, 1), 2: (2, 1, 0), 3: (2, 0, 0), 4: (1, 0, 1), 5: (1, 0, 0)}
    assert [s.position for s in report.positions] == sorted(want)
    for s in report.positions:
        imp, clicks, buys = want[s.position]
        assert (s.impressions, s.clicks, s.purchases) == (imp, clicks, buys)
        assert s.click_through_rate == pytest.approx(clicks / imp if imp else 0.0)
        assert s.conversion_rate == pytest.approx(buys / imp if imp else 0.0)
    t = report.total
    assert (t.position, t.impressions, t.clicks, t.purchases) == (0, 8, 4, 2)
    assert t.click_through_rate == pytest.approx(0.5) and t.conversion_rate == pytest.approx(0.25)
    assert stub.GetFeedbackReport(rpb.FeedbackReportRequest(since=t0 + 21, until=t0 + 23)).total.clicks == 2

    for request, needle in ((rpb.FeedbackReportRequest(since=-1), "since"),
                            (rpb.FeedbackReportRequest(since=t0 + 5, until=t0), "not after")):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetFeedbackReport(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.value.details()


def test_too_many_events(stub: Any, snapshot: FeatureSnapshot) -> None:
    one = event("c", str(snapshot.catalog.product_ids[0]), IMP, 1)
    with pytest.raises(grpc.RpcError) as err:
        stub.RecordFeedback(rpb.RecordFeedbackRequest(events=[one] * 10_001))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "10,000" in err.value.details()
    assert stub.RecordFeedback(rpb.RecordFeedbackRequest()).recorded == 0


def test_recommend_leaves_out_what_was_shown_without_a_click(stub: Any, snapshot: FeatureSnapshot) -> None:
    cid = customers_by_orders(snapshot)[0]
    first = stub.Recommend(rpb.RecommendRequest(customer_id=cid, k=20))
    assert first.excluded_recently_shown == 0
    pids = [i.product.product_id for i in first.items]
    shown = [event(cid, pid, IMP, pos, rid=first.request_id) for pos, pid in enumerate(pids[:5], 1)]
    engaged = [event(cid, pids[0], CLICK, 1, rid=first.request_id), event(cid, pids[1], BUY, 2, rid=first.request_id)]
    assert stub.RecordFeedback(rpb.RecordFeedbackRequest(events=shown + engaged)).recorded == 7

    again = stub.Recommend(rpb.RecommendRequest(customer_id=cid, k=10))
    left_out = set(pids[2:5])
    assert again.excluded_recently_shown == 3
    got = [i.product.product_id for i in again.items]
    assert got == [p for p in pids if p not in left_out][:10]  # the clicked and bought ones stay
    assert [i.rank for i in again.items] == list(range(1, 11))

    everything = stub.Recommend(rpb.RecommendRequest(customer_id=cid, k=10, include_recently_shown=True))
    assert [i.product.product_id for i in everything.items] == pids[:10]
    assert everything.excluded_recently_shown == 0
    # Already excluded by the request: not counted again.
    explicit = stub.Recommend(rpb.RecommendRequest(customer_id=cid, k=10, exclude_product_ids=[pids[2]]))
    assert explicit.excluded_recently_shown == 2 and pids[2] not in {i.product.product_id for i in explicit.items}

    # Another customer is not affected.
    other = customers_by_orders(snapshot)[1]
    assert stub.Recommend(rpb.RecommendRequest(customer_id=other, k=10)).excluded_recently_shown == 0

    basket = stub.RecommendForBasket(rpb.RecommendForBasketRequest(items=[rpb.BasketItem(product_id=pids[0])], k=3))
    ids = [r.request_id for r in (first, again, everything, explicit, basket)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and len(set(ids)) == len(ids)


def test_propensity_training_uses_feedback(small_shop: Shop, tmp_path: Path) -> None:
    from tenure.features import FeatureSpace, product_table
    from training.export import PARITY_TOLERANCE, export_binary
    from training.pipeline import data_end
    from training.propensity import PropensityModel

    space = FeatureSpace.fit(small_shop)
    arrays = space.encode(small_shop)
    products = product_table(small_shop, arrays, space)
    end = data_end(small_shop)
    cutoff = end - pd.Timedelta(days=60)  # the training cutoff of a 30-day horizon
    tx = small_shop.transactions
    known = np.sort(tx.loc[tx["ts"] < cutoff, "customer_id"].unique())[:200]
    rng = np.random.default_rng(1)
    now = float(int(time.time()))
    events = []
    for c in known:
        for pos, p in enumerate(rng.choice(arrays.product_ids, 3, replace=False), 1):
            events.append(event(c, p, IMP, pos, now - 3600))
            if rng.random() < 0.2:
                events.append(event(c, p, CLICK, pos, now - 3000))
    skipped = [event("nobody", str(arrays.product_ids[0]), IMP, 1, now), event(known[0], "P-nope", IMP, 1, now)]
    # Training reads what the service recorded: through the store's SQLite file.
    from services.recommendation.convert import feedback_event

    store = FeedbackStore(tmp_path / "feedback.sqlite", index_days=0)
    store.record([feedback_event(e) for e in events + skipped])
    feedback = store.read_events()
    positives = sum(e.kind == CLICK for e in events)

    model = PropensityModel(30, n_candidates_train=50, n_candidates_eval=100, train_customers=1_000,
                            eval_customers=1_000, seed=7, threads=2).fit(small_shop, space, arrays, products, end,
                                                                         feedback=feedback)
    metrics = model.evaluate(small_shop, space, arrays, products)
    assert metrics["feedback_rows"] == 600 and metrics["feedback_positive_rows"] == positives
    assert metrics["feedback_skipped_pairs"] == 2 and metrics["feedback_events"] == len(events) + 2
    assert metrics["holdout_customers"] > 0 and 0 < metrics["recall_at_10"] <= 1
    path = export_binary(tmp_path / "models", "propensity", model.model_, [f"f{i}" for i in range(15)],
                         model.check_rows_, metrics=metrics, training_window={})
    _, manifest = latest_valid(tmp_path / "models", "propensity")
    assert path.exists() and manifest.metrics["feedback_rows"] == 600
    assert manifest.metrics["onnx_parity_max_abs_diff"] <= PARITY_TOLERANCE
