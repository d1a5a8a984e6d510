"""SegmentationService through a real server on port 0 and generated stubs."""
from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from tenure.artifacts import latest_valid
from tenure.segments import DEFAULT_RFM_RULES
from tenure.store import FeatureSnapshot
from tenure.v1 import segmentation_pb2 as spb
from tenure.v1 import segmentation_pb2_grpc


@pytest.fixture(scope="module")
def snapshot(trained_repo: Path) -> FeatureSnapshot:
    return FeatureSnapshot.load_latest(trained_repo)


@pytest.fixture
def stub(segmentation_server, channel_to) -> segmentation_pb2_grpc.SegmentationServiceStub:  # type: ignore[no-untyped-def]
    return segmentation_pb2_grpc.SegmentationServiceStub(channel_to(segmentation_server))


def test_segments_for_known_and_unknown_customers(stub, snapshot) -> None:  # type: ignore[no-untyped-def]
    col = snapshot.feature_names.index
    recency = snapshot.X[:, col("recency_days")]
    fresh, stale = int(np.argmin(recency)), int(np.argmax(recency))
    ids = [str(snapshot.customer_ids[fresh]), "ghost", str(snapshot.customer_ids[stale])]
    resp = stub.GetSegments(spb.GetSegmentsRequest(customer_ids=ids))
    a, ghost, b = resp.results
    assert ghost.error.code == grpc.StatusCode.NOT_FOUND.value[0] and "ghost" in ghost.error.message
    names = {r.name for r in DEFAULT_RFM_RULES}
    for r in (a, b):
        s = r.segments
        assert all(1 <= v <= 5 for v in (s.rfm.recency, s.rfm.frequency, s.rfm.monetary))
        assert s.rfm_segment in names
        assert s.lifecycle_stage != spb.LIFECYCLE_STAGE_UNSPECIFIED
    assert a.segments.rfm.recency == 5 and b.segments.rfm.recency == 1
    assert b.segments.recency_days == pytest.approx(float(recency[stale]))
    if recency[stale] > 365:
        assert b.segments.lifecycle_stage == spb.LIFECYCLE_STAGE_LOST


def test_lookalike_audience_streams_best_first_without_the_seed(stub, trained_repo) -> None:  # type: ignore[no-untyped-def]
    members = list(stub.StreamLookalikeAudience(spb.LookalikeAudienceRequest(size=50)))
    assert len(members) == 50
    assert [m.rank for m in members] == list(range(1, 51))
    scores = [m.score for m in members]
    assert scores == sorted(scores, reverse=True)
    vdir, _ = latest_valid(trained_repo, "lookalike")
    seed = set((vdir / "seed_ids.txt").read_text().split())
    assert seed and not seed & {m.customer_id for m in members}
    with_seed = list(stub.StreamLookalikeAudience(spb.LookalikeAudienceRequest(size=50, include_seed=True)))
    assert with_seed[0].score >= members[0].score
    assert members[0].model.name == "lookalike" and members[0].model.version


def test_audience_bounds(stub) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        list(stub.StreamLookalikeAudience(spb.LookalikeAudienceRequest(size=0)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected 1..1000000" in err.value.details()
    floor = list(stub.StreamLookalikeAudience(spb.LookalikeAudienceRequest(size=1000, min_score=0.5)))
    assert all(m.score >= 0.5 for m in floor)
