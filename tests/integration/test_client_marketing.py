"""tenure.client's view of issue 13 against real servers: the predictions frame's uplift and send-time
columns, the consent-aware top channel, the new audience ops (==, not in, between) and Recommend with
declared interests only. Expected values come from the servers' own messages and the shop's frames."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tenure.client import RecommendationClient, ScoringClient, SegmentationClient, where
from tenure.store import FeatureSnapshot
from tenure.v1 import scoring_pb2, scoring_pb2_grpc


@pytest.fixture
def frame(small_shop, snapshot: FeatureSnapshot) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """The customers frame, one row per snapshot customer, in snapshot order."""
    return small_shop.customers.set_index("customer_id").reindex(snapshot.customer_ids.astype(str))


def test_predict_frame_has_uplift_send_time_and_the_allowed_top_channel(scoring_server, channel_to,  # type: ignore[no-untyped-def]
                                                                       frame) -> None:
    refused_sms = [str(i) for i in frame.index[(frame["consent:consent_sms:sms"] == 0).to_numpy()][:40]]
    ids = refused_sms + [str(i) for i in frame.index[:10]]
    raw = scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server)).Predict(
        scoring_pb2.PredictRequest(customer_ids=ids), timeout=30)
    with ScoringClient(scoring_server.target) as client:
        got = client.predict(ids)
    assert got["customer_id"].tolist() == ids and got["error"].isna().all()
    for row, r in zip(got.itertuples(), raw.results):
        p = r.predictions
        assert row.uplift == pytest.approx(p.uplift.uplift) and row.uplift_group == p.uplift.group
        assert row.uplift_group in ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
        assert (row.best_hour, row.best_weekday, row.send_timezone) == (
            p.send_time.best_hour, p.send_time.best_weekday, p.send_time.timezone)
        allowed = [c.channel for c in p.channels if not c.opted_out]
        assert row.top_channel == (allowed[0] if allowed else None)
    # the sms refusers never get sms as their top channel, whatever its probability
    assert "sms" not in got["top_channel"].iloc[:len(refused_sms)].tolist()


def test_where_eq_not_in_between_select_what_the_frame_says(segmentation_server, frame) -> None:  # type: ignore[no-untyped-def]
    household = frame["number:household_size"].to_numpy()
    interests = frame["interests:interests"].fillna("").str.split("|")
    sms = frame["consent:consent_sms:sms"].to_numpy()
    want = set(frame.index[(household >= 2) & (household <= 4)
                           & interests.map(lambda v: "Coffee" in v).to_numpy()
                           & ~(sms == 0)])  # "not in [no]": allowed or unknown
    with SegmentationClient(segmentation_server.target) as seg:
        got = seg.export_audience(where("household_size", "between", (2, 4)), where("interests", "==", "Coffee"),
                                  ("consent_sms", "not in", ["no"]))
    assert set(got["customer_id"]) == want and len(want) > 0 and got.attrs["count"] == len(want)
    with pytest.raises(ValueError, match="expected one of"):
        where("churn", "~", 1)
    assert np.isfinite(got["best_hour"].astype(float)).all()  # members carry their best hour


def test_recommend_declared_interests_only(recommendation_server, frame) -> None:  # type: ignore[no-untyped-def]
    declared = frame[frame["interests:interests"].fillna("") != ""]
    cid, text = next(iter(declared["interests:interests"].items()))
    with RecommendationClient(recommendation_server.target) as rec:
        answer = rec.recommend(str(cid), 10, declared_interests_only=True)
    want = set(text.split("|"))
    assert set(answer.categories_applied) == want
    assert answer.items and {i.product.category for i in answer.items} <= want
