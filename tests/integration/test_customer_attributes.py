"""Customer attributes through real servers: the 360 view, audiences on attributes, declared-interest
recommendations, consents in the channel ranking and profiles. Expected answers come from the synthetic
customers frame (small_shop.customers), computed here independently of the services."""
from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest

from tenure.v1 import recommendation_pb2 as rpb
from tenure.v1 import recommendation_pb2_grpc, scoring_pb2, scoring_pb2_grpc, segmentation_pb2_grpc
from tenure.v1 import segmentation_pb2 as spb


@pytest.fixture
def seg(segmentation_server, channel_to) -> segmentation_pb2_grpc.SegmentationServiceStub:  # type: ignore[no-untyped-def]
    return segmentation_pb2_grpc.SegmentationServiceStub(channel_to(segmentation_server))


@pytest.fixture
def frame(small_shop, snapshot) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """The customers frame, one row per snapshot customer, in snapshot order."""
    c = small_shop.customers.set_index("customer_id")
    return c.reindex(snapshot.customer_ids.astype(str))


def test_360_shows_the_customers_file(seg, frame) -> None:  # type: ignore[no-untyped-def]
    full = frame[(frame["interests:interests"] != "") & frame["number:household_size"].notna()
                 & frame["consent:consent_sms:sms"].notna()]
    cid = str(full.index[0])
    row = full.iloc[0]
    view = seg.GetCustomer360(spb.Customer360Request(customer_id=cid, recommendations=1))
    got = {a.name: a for a in view.attributes}
    assert set(got) == {"household_size", "interests", "newsletter", "consent_email", "consent_sms", "consent_push"}
    assert got["household_size"].kind == "number" and got["household_size"].number == row["number:household_size"]
    assert got["interests"].kind == "set" and list(got["interests"].values) == row["interests:interests"].split("|")
    assert got["newsletter"].text == row["text:newsletter"]
    sms = got["consent_sms"]
    assert sms.kind == "consent" and sms.channel == "sms" and sms.granted == bool(row["consent:consent_sms:sms"] == 1)


def _count(seg: Any, *conditions: spb.Condition) -> int:
    items = seg.ExportAudience(spb.AudienceQuery(conditions=list(conditions), limit=1))
    return int(next(iter(items)).header.count)


def _members(seg: Any, *conditions: spb.Condition) -> set[str]:
    return {i.member.customer_id for i in seg.ExportAudience(spb.AudienceQuery(conditions=list(conditions)))
            if i.HasField("member")}


def test_audiences_on_attributes_match_the_frame(seg, frame) -> None:  # type: ignore[no-untyped-def]
    C = spb.Condition
    interests = frame["interests:interests"].fillna("").str.split("|")
    has = lambda v: interests.map(lambda vs: v in vs)  # noqa: E731
    household = frame["number:household_size"]
    sms = frame["consent:consent_sms:sms"]
    cases = [
        (C(field="interests", op=spb.CONDITION_OP_EQ, values=["Coffee"]), has("Coffee")),
        (C(field="interests", op=spb.CONDITION_OP_IN, values=["Coffee", "Tea"]), has("Coffee") | has("Tea")),
        (C(field="interests", op=spb.CONDITION_OP_NOT_IN, values=["Coffee"]), ~has("Coffee")),
        (C(field="household_size", op=spb.CONDITION_OP_BETWEEN, value=2, value_max=3), household.between(2, 3)),
        (C(field="household_size", op=spb.CONDITION_OP_EQ, value=1), household == 1),
        (C(field="newsletter", op=spb.CONDITION_OP_NOT_IN, values=["weekly", "none"]),
         ~frame["text:newsletter"].isin(["weekly", "none"])),
        (C(field="consent_sms", op=spb.CONDITION_OP_EQ, values=["no"]), sms == 0),
        (C(field="consent_sms", op=spb.CONDITION_OP_EQ, values=["unknown"]), sms.isna()),
    ]
    for condition, expected in cases:
        want = set(frame.index[expected.to_numpy(bool)])
        assert 0 < len(want) < len(frame), condition
        assert _members(seg, condition) == want, condition
    # AND with a numeric field's new ops
    both = _count(seg, cases[0][0], C(field="orders_total", op=spb.CONDITION_OP_BETWEEN, value=2, value_max=5))
    assert 0 < both < len(set(frame.index[cases[0][1].to_numpy(bool)]))
    for condition, needle in (
            (C(field="interests", op=spb.CONDITION_OP_GE, value=1), "takes op EQ, IN or NOT_IN"),
            (C(field="interests", op=spb.CONDITION_OP_EQ, values=["Cofee"]), "unknown value 'Cofee'"),
            (C(field="household_size", op=spb.CONDITION_OP_BETWEEN, value=3, value_max=2), "value <= value_max"),
            (C(field="rfm_segment", op=spb.CONDITION_OP_GE, value=1), "segment fields take op IN, EQ or NOT_IN")):
        with pytest.raises(grpc.RpcError) as err:
            _count(seg, condition)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.value.details()


def test_profile_lists_attribute_features(seg) -> None:  # type: ignore[no-untyped-def]
    group = spb.AudienceQuery(conditions=[spb.Condition(field="interests", op=spb.CONDITION_OP_EQ, values=["Coffee"])])
    report = seg.ProfileGroup(spb.ProfileRequest(audience=group))
    rows = {f.feature: f for f in report.features if f.kind == "attribute"}
    assert rows["interests=Coffee"].group_value == pytest.approx(1.0)
    assert rows["interests=Coffee"].base_value < 0.5
    assert {"household_size", "consent_sms=no", "newsletter=weekly"} <= set(rows)


def test_recommend_declared_interests_only(recommendation_server, channel_to, frame) -> None:  # type: ignore[no-untyped-def]
    stub = recommendation_pb2_grpc.RecommendationServiceStub(channel_to(recommendation_server))
    declared = frame[frame["interests:interests"] != ""]
    for cid, text in declared["interests:interests"].head(5).items():
        want = set(text.split("|"))
        out = stub.Recommend(rpb.RecommendRequest(customer_id=str(cid), k=10, declared_interests_only=True))
        assert set(out.categories_applied) == want
        assert out.items and {i.product.category for i in out.items} <= want
    silent = str(frame.index[frame["interests:interests"] == ""][0])
    out = stub.Recommend(rpb.RecommendRequest(customer_id=silent, k=5, declared_interests_only=True))
    assert out.items and not out.categories_applied  # declared none: not limited


def test_a_refused_channel_is_never_first(scoring_server, segmentation_server, channel_to, frame, seg) -> None:  # type: ignore[no-untyped-def]
    score = scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server))
    refused = {ch: frame.index[(frame[f"consent:consent_{ch}:{ch}"] == 0).to_numpy()] for ch in ("email", "sms", "push")}
    found = None
    for ch, ids in refused.items():
        answer = score.Predict(scoring_pb2.PredictRequest(customer_ids=[str(i) for i in ids[:400]]))
        for r in answer.results:
            chans = list(r.predictions.channels)
            top = max(chans, key=lambda c: c.probability)
            if top.channel == ch:
                found = (r.customer_id, ch, chans)
                break
        if found:
            break
    assert found is not None, "some customer refused the channel the model ranks first (synthetic: 5% do)"
    cid, ch, chans = found
    flags = [c.opted_out for c in chans]
    assert chans[0].channel != ch and not chans[0].opted_out
    assert flags == sorted(flags)  # every allowed channel before every refused one
    assert next(c for c in chans if c.channel == ch).opted_out
    allowed = [c.probability for c in chans if not c.opted_out]
    assert allowed == sorted(allowed, reverse=True)
    view = seg.GetCustomer360(spb.Customer360Request(customer_id=cid, recommendations=1))
    assert [(c.channel, c.opted_out) for c in view.predictions.channels] == [(c.channel, c.opted_out) for c in chans]
    np.testing.assert_allclose(sorted(c.probability for c in view.predictions.channels),
                               sorted(c.probability for c in chans), rtol=1e-6)


def test_complete_journey_demographics_are_attributes(real_data_or_skip) -> None:  # type: ignore[no-untyped-def]
    """The Complete Journey's demographics load as attributes (the with/without measurement is in the README)."""
    from pathlib import Path

    from tenure.attributes import attribute_specs
    from tenure.datasets import load_completejourney

    shop = real_data_or_skip(lambda: load_completejourney(cache_dir=Path(__file__).parents[2] / "data"),
                             "The Complete Journey")
    specs = {s.name: s.kind for s in attribute_specs(shop.customers)}
    assert specs == {"income": "text", "household_size": "number", "household_comp": "text", "kids_count": "number",
                     "marital_status": "text", "home_ownership": "text"}
    sizes = shop.customers["number:household_size"].dropna()
    assert len(sizes) > 500 and sizes.between(1, 5).all()
