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


def onnx_first_output(repo: Path, name: str, snapshot: FeatureSnapshot) -> np.ndarray:
    """The in-process reference over the whole snapshot: onnxruntime on the artifact."""
    import onnxruntime as ort

    vdir, manifest = latest_valid(repo, name)
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    X = snapshot.X[:, [snapshot.feature_names.index(f) for f in manifest.features]]
    out = manifest.outputs[0]
    got = sess.run([out["name"]], {"features": X.astype(np.float32)})[0]
    return got[:, out["use_column"]] if out.get("use_column") is not None else got.reshape(len(X), -1)[:, 0]


def test_segments_carry_cluster_and_grid_and_the_catalog_counts_them(stub, snapshot, trained_repo) -> None:  # type: ignore[no-untyped-def]
    catalog = stub.DescribeSegments(spb.DescribeSegmentsRequest())
    n = len(snapshot.customer_ids)
    assert catalog.customers == n and catalog.rescoring.id >= 1
    assert [(r.segment, r.recency_min, r.recency_max) for r in catalog.rfm_rules] == \
        [(r.name, r.r_min, r.r_max) for r in DEFAULT_RFM_RULES]
    for counts in (catalog.rfm_segments, catalog.lifecycle_stages, catalog.cluster_counts, catalog.grid_cells):
        assert sum(c.customers for c in counts) == n and sum(c.share for c in counts) == pytest.approx(1.0)
    clusters = {c.id: c for c in catalog.clusters}
    assert len(clusters) >= 2 and all(c.name and c.description for c in clusters.values())
    labels = onnx_first_output(trained_repo, "clusters", snapshot).astype(int)
    churn = onnx_first_output(trained_repo, "churn", snapshot)
    p30 = onnx_first_output(trained_repo, "purchase_30d", snapshot)
    rows = list(range(0, n, n // 25))
    resp = stub.GetSegments(spb.GetSegmentsRequest(customer_ids=[str(snapshot.customer_ids[r]) for r in rows]))
    band = {1: "low", 2: "medium", 3: "high"}
    for r, res in zip(rows, resp.results):
        s = res.segments
        assert s.cluster.id == labels[r] and s.cluster.name == clusters[labels[r]].name
        want_churn = 3 if churn[r] >= 0.66 else 2 if churn[r] >= 0.33 else 1
        want_purchase = 3 if p30[r] >= 0.5 else 2 if p30[r] >= 0.2 else 1
        assert (s.grid.churn, s.grid.purchase) == (want_churn, want_purchase)
        assert s.grid.name == f"{band[want_churn]} churn / {band[want_purchase]} purchase"


def export(stub, query: spb.AudienceQuery) -> tuple[spb.AudienceHeader, list[spb.AudienceMemberRow]]:  # type: ignore[no-untyped-def]
    items = list(stub.ExportAudience(query, timeout=30))
    assert items[0].WhichOneof("item") == "header"
    return items[0].header, [i.member for i in items[1:]]


def test_audience_export_matches_the_conditions_in_a_stable_order_and_resumes(stub, snapshot, trained_repo) -> None:  # type: ignore[no-untyped-def]
    churn = onnx_first_output(trained_repo, "churn", snapshot)
    clv = onnx_first_output(trained_repo, "clv", snapshot)
    conditions = [spb.Condition(field="churn", op=spb.CONDITION_OP_GE, value=0.3),
                  spb.Condition(field="clv_predicted", op=spb.CONDITION_OP_TOP_PERCENT, value=50)]
    query = spb.AudienceQuery(conditions=conditions, order_by="churn")
    header, members = export(stub, query)
    clv_pos = np.maximum(clv.astype(np.float64), 0)
    expected = (churn >= 0.3) & (clv_pos >= np.quantile(clv_pos, 0.5))
    assert header.count == int(expected.sum()) == len(members) > 20 and header.base == len(snapshot.customer_ids)
    assert {m.customer_id for m in members} == set(snapshot.customer_ids[expected].astype(str))
    assert [m.position for m in members] == list(range(1, len(members) + 1))
    assert [m.churn for m in members] == sorted((m.churn for m in members), reverse=True)
    # The resume test: stop after a page, resume from the cursor, get exactly the rest.
    first_header, page = export(stub, spb.AudienceQuery(conditions=conditions, order_by="churn", limit=7))
    assert first_header.count == header.count and len(page) == 7
    rest_header, rest = export(stub, spb.AudienceQuery(conditions=conditions, order_by="churn", cursor=page[-1].cursor))
    assert rest_header.skipped == 7 and rest_header.count == header.count
    assert [m.customer_id for m in page + rest] == [m.customer_id for m in members]
    assert export(stub, query)[1] == members  # the same query again: the same order
    # Segment conditions, and the mistakes a caller can make.
    segment = members[0].rfm_segment
    _, same_segment = export(stub, spb.AudienceQuery(conditions=[
        *conditions, spb.Condition(field="rfm_segment", op=spb.CONDITION_OP_IN, values=[segment])]))
    assert same_segment and all(m.rfm_segment == segment for m in same_segment)
    for bad, code, text in [
        (spb.AudienceQuery(conditions=[spb.Condition(field="nope", op=spb.CONDITION_OP_GE)]), "INVALID_ARGUMENT", "unknown field"),
        (spb.AudienceQuery(conditions=[spb.Condition(field="rfm_segment", op=spb.CONDITION_OP_IN, values=["Kings"])]),
         "INVALID_ARGUMENT", "Champions"),
        (spb.AudienceQuery(conditions=[spb.Condition(field="churn", op=spb.CONDITION_OP_TOP_PERCENT, value=0)]),
         "INVALID_ARGUMENT", "percent"),
        (spb.AudienceQuery(conditions=conditions, cursor=page[-1].cursor), "INVALID_ARGUMENT", "another query"),
        (spb.AudienceQuery(cursor="garbage"), "INVALID_ARGUMENT", "not a cursor"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            export(stub, bad)
        assert err.value.code().name == code and text in err.value.details()


def test_profile_of_lost_customers_against_the_base(stub, snapshot) -> None:  # type: ignore[no-untyped-def]
    catalog = stub.DescribeSegments(spb.DescribeSegmentsRequest())
    lost = next(c.customers for c in catalog.lifecycle_stages if c.segment == "lost")
    report = stub.ProfileGroup(spb.ProfileRequest(lifecycle="lost"))
    assert report.group_size == lost and report.base_size == len(snapshot.customer_ids)
    scores = [f.distinctiveness for f in report.features]
    assert scores == sorted(scores, reverse=True)
    # every feature, and the customers file's attributes (kind "attribute", tests/integration/test_customer_attributes)
    assert len([f for f in report.features if f.kind != "attribute"]) == len(snapshot.feature_names)
    recency = next(f for f in report.features if f.feature == "recency_days")
    assert recency.group_value > recency.base_value and recency.index == pytest.approx(
        100 * recency.group_value / recency.base_value)
    top = stub.ProfileGroup(spb.ProfileRequest(audience=spb.AudienceQuery(conditions=[
        spb.Condition(field="churn", op=spb.CONDITION_OP_GE, value=0.5)]), top=5))
    assert len(top.features) == 5
    with pytest.raises(grpc.RpcError) as err:
        stub.ProfileGroup(spb.ProfileRequest(rfm_segment="Kings"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "Champions" in err.value.details()


def test_customer_360_assembles_every_service(stub, snapshot, scoring_server, recommendation_server,  # type: ignore[no-untyped-def]
                                              channel_to) -> None:
    from tenure.v1 import recommendation_pb2, recommendation_pb2_grpc, scoring_pb2, scoring_pb2_grpc

    cid = str(snapshot.customer_ids[3])
    view = stub.GetCustomer360(spb.Customer360Request(customer_id=cid, recommendations=4))
    predicted = scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server)).Predict(
        scoring_pb2.PredictRequest(customer_ids=[cid])).results[0].predictions
    assert view.predictions == predicted
    assert view.segments == stub.GetSegments(spb.GetSegmentsRequest(customer_ids=[cid])).results[0].segments
    recommended = recommendation_pb2_grpc.RecommendationServiceStub(channel_to(recommendation_server)).Recommend(
        recommendation_pb2.RecommendRequest(customer_id=cid, k=4))
    assert [r.product.product_id for r in view.recommendations] == [r.product.product_id for r in recommended.items]
    assert not view.recommendations_error
    assert [f.name for f in view.features] == snapshot.feature_names
    assert {f.name for f in view.key_features} >= {"recency_days", "spend_total"}
    assert {m.name for m in view.models} >= {"features", "churn", "clv", "clusters", "propensity"}
    with pytest.raises(grpc.RpcError) as err:
        stub.GetCustomer360(spb.Customer360Request(customer_id="ghost"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_360_without_the_recommendation_service_says_why(trained_repo, start_server, channel_to, snapshot,  # type: ignore[no-untyped-def]
                                                          closed_port) -> None:
    from services.segmentation.__main__ import make_service

    server = start_server(make_service, trained_repo, recommendation_target=f"127.0.0.1:{closed_port}")
    view = segmentation_pb2_grpc.SegmentationServiceStub(channel_to(server)).GetCustomer360(
        spb.Customer360Request(customer_id=str(snapshot.customer_ids[0])))
    assert not view.recommendations and "UNAVAILABLE" in view.recommendations_error
    assert view.predictions.churn.probability > 0


def test_lookalike_job_trains_a_served_model_and_its_progress_can_be_watched(trained_repo, tmp_path, start_server,  # type: ignore[no-untyped-def]
                                                                             channel_to, snapshot) -> None:
    import shutil

    from services.segmentation.__main__ import make_service

    repo = tmp_path / "models"
    shutil.copytree(trained_repo, repo)
    stub = segmentation_pb2_grpc.SegmentationServiceStub(channel_to(start_server(make_service, repo)))
    orders = snapshot.X[:, snapshot.feature_names.index("orders_total")]
    seed = [str(c) for c in snapshot.customer_ids[np.argsort(-orders, kind="stable")[:60]]]  # the most loyal
    job = stub.StartLookalikeJob(spb.LookalikeJobRequest(name="vip", seed_customer_ids=[*seed, "ghost"]))
    assert job.job_id and job.seed_found == 60 and job.seed_unknown == 1
    updates = list(stub.WatchJob(spb.WatchJobRequest(job_id=job.job_id), timeout=120))
    assert updates[-1].state == spb.JOB_STATE_SUCCEEDED, updates[-1].message
    progress = [u.progress for u in updates]
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(updates) >= 3
    assert updates[-1].model.name == "lookalike-vip" and updates[-1].metrics["auc"] > 0.8
    members = list(stub.StreamLookalikeAudience(spb.LookalikeAudienceRequest(size=20, model="vip")))
    assert len(members) == 20 and members[0].model == updates[-1].model
    assert not set(seed) & {m.customer_id for m in members}
    for bad, text in [(spb.LookalikeJobRequest(name="no spaces", seed_customer_ids=seed), "letters"),
                      (spb.LookalikeJobRequest(name="few", seed_customer_ids=seed[:5]), "at least 20")]:
        with pytest.raises(grpc.RpcError) as err:
            stub.StartLookalikeJob(bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        list(stub.WatchJob(spb.WatchJobRequest(job_id="nope")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_rescoring_records_who_moved_and_streams_it(trained_repo, tmp_path, small_shop, start_server,  # type: ignore[no-untyped-def]
                                                      channel_to) -> None:
    import queue
    import shutil
    import threading

    import pandas as pd

    from services.segmentation.__main__ import make_service
    from training.pipeline import data_end, write_snapshot

    repo = tmp_path / "models"
    shutil.copytree(trained_repo, repo)
    server = start_server(make_service, repo, reload_interval_s=0.3)
    stub = segmentation_pb2_grpc.SegmentationServiceStub(channel_to(server))
    before = stub.DescribeSegments(spb.DescribeSegmentsRequest()).rescoring.id
    assert list(stub.StreamSegmentChanges(spb.SegmentChangesRequest())) == []  # the first re-scoring moves nobody
    ids = [str(c) for c in FeatureSnapshot.load_latest(repo).customer_ids[:400]]
    old = stub.GetSegments(spb.GetSegmentsRequest(customer_ids=ids)).results
    got: queue.Queue[spb.SegmentChange] = queue.Queue()
    follow = stub.StreamSegmentChanges(spb.SegmentChangesRequest(follow=True, families=[spb.SEGMENT_FAMILY_LIFECYCLE]))
    def listen() -> None:
        try:
            for m in follow:
                got.put(m)
        except grpc.RpcError as err:  # the test cancels the subscription once it has heard
            assert err.code() == grpc.StatusCode.CANCELLED

    threading.Thread(target=listen, daemon=True).start()
    # Two months pass without a purchase: a new feature snapshot, the same models.
    write_snapshot(small_shop, repo, data_end(small_shop) + pd.Timedelta(days=60))
    first = got.get(timeout=60)  # the subscriber hears of it as it happens
    follow.cancel()
    assert first.family == spb.SEGMENT_FAMILY_LIFECYCLE and first.rescoring_id > before
    moves = list(stub.StreamSegmentChanges(spb.SegmentChangesRequest()))
    assert moves and [m.sequence for m in moves] == sorted(m.sequence for m in moves)
    new = stub.GetSegments(spb.GetSegmentsRequest(customer_ids=ids)).results
    stage = {v: k for k, v in {"new": 1, "active": 2, "at_risk": 3, "lapsed": 4, "lost": 5}.items()}
    moved = {(m.customer_id, m.family): m for m in moves}
    for cid, a, b in zip(ids, old, new):
        lifecycle = moved.get((cid, spb.SEGMENT_FAMILY_LIFECYCLE))
        if a.segments.lifecycle_stage != b.segments.lifecycle_stage:
            assert lifecycle and (lifecycle.from_segment, lifecycle.to_segment) == (
                stage[a.segments.lifecycle_stage], stage[b.segments.lifecycle_stage])
        else:
            assert lifecycle is None
        rfm = moved.get((cid, spb.SEGMENT_FAMILY_RFM))
        assert (rfm is not None) == (a.segments.rfm_segment != b.segments.rfm_segment)
    resumed = list(stub.StreamSegmentChanges(spb.SegmentChangesRequest(after_sequence=moves[9].sequence)))
    assert resumed == moves[10:]
