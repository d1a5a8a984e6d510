"""Campaign uplift through real servers (port 0, generated stubs) on the session's trained repository,
whose synthetic shop carries randomised campaigns: Predict, the 360 view and audience exports, and a
repository without the uplift models."""
from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from tenure.artifacts import latest_valid
from tenure.store import FeatureSnapshot
from tenure.v1 import scoring_pb2, scoring_pb2_grpc, segmentation_pb2_grpc
from tenure.v1 import segmentation_pb2 as spb
from training.uplift import GROUPS, UPLIFT_MODELS, groups

NOT_WANTED = ["sure_thing", "sleeping_dog"]


def onnx_p(repo: Path, name: str, snapshot: FeatureSnapshot) -> np.ndarray:
    """P(buy) of an uplift model on every snapshot row, from onnxruntime on the artifact."""
    vdir, manifest = latest_valid(repo, name)
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    cols = [snapshot.feature_names.index(f) for f in manifest.features]
    return sess.run(["probabilities"], {"features": snapshot.X[:, cols].astype(np.float32)})[0][:, 1]


@pytest.fixture(scope="module")
def reference(trained_repo: Path) -> dict:  # type: ignore[type-arg]
    snapshot = FeatureSnapshot.load_latest(trained_repo)
    pt, pc = onnx_p(trained_repo, "uplift-treated", snapshot), onnx_p(trained_repo, "uplift-control", snapshot)
    params = latest_valid(trained_repo, "uplift-treated")[1].params
    uplift = (pt - pc).astype(np.float32)
    group = groups(uplift, pc, params["u_pos"], params["u_neg"], params["p_sure"])
    return {"ids": snapshot.customer_ids.astype(str), "pt": pt, "pc": pc, "uplift": uplift,
            "group": np.asarray(GROUPS)[group], "params": params}


def test_both_models_are_published_with_their_holdout_metrics(trained_repo) -> None:  # type: ignore[no-untyped-def]
    for name in UPLIFT_MODELS:
        _, manifest = latest_valid(trained_repo, name)
        assert manifest.params["window_days"] == 14 and manifest.params["learner"] == "T"
        assert manifest.metrics["design"] == "randomised control group"
        assert manifest.metrics["onnx_parity_max_abs_diff"] <= 1e-4


def test_predict_returns_uplift_as_the_difference_of_the_two_models(scoring_server, channel_to, reference) -> None:  # type: ignore[no-untyped-def]
    stub = scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server))
    rows = np.arange(0, len(reference["ids"]), len(reference["ids"]) // 50)[:50]
    ids = [str(reference["ids"][r]) for r in rows]
    res = stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids), timeout=30)
    assert not set(UPLIFT_MODELS) & set(res.missing_models)
    seen = set()
    for r, row in zip(res.results, rows, strict=True):
        u = r.predictions.uplift
        assert r.predictions.HasField("uplift")
        assert u.p_treated - u.p_control == pytest.approx(u.uplift, abs=1e-6)
        assert u.p_treated == pytest.approx(reference["pt"][row], abs=1e-6)
        assert u.p_control == pytest.approx(reference["pc"][row], abs=1e-6)
        assert u.group == reference["group"][row] and u.group in GROUPS and u.window_days == 14
        seen.add(u.group)
    assert len(seen) >= 2
    one = stub.Predict(scoring_pb2.PredictRequest(customer_ids=[ids[0]]), timeout=30).results[0].predictions.uplift
    assert one == res.results[0].predictions.uplift  # the per-request path gives the same answer


def test_audience_top_uplift_without_sure_things_and_sleeping_dogs(segmentation_server, channel_to, reference) -> None:  # type: ignore[no-untyped-def]
    stub = segmentation_pb2_grpc.SegmentationServiceStub(channel_to(segmentation_server))
    top = spb.Condition(field="uplift", op=spb.CONDITION_OP_TOP_PERCENT, value=20)
    exclude = spb.Condition(field="uplift_group", op=spb.CONDITION_OP_NOT_IN, values=NOT_WANTED)
    items = list(stub.ExportAudience(spb.AudienceQuery(conditions=[top, exclude], order_by="uplift"), timeout=30))
    header, members = items[0].header, [i.member for i in items[1:]]
    uplift, group = reference["uplift"], reference["group"]
    expected = (uplift >= np.quantile(uplift, 0.8)) & ~np.isin(group, NOT_WANTED)
    assert header.count == len(members) == int(expected.sum()) > 20
    assert {m.customer_id for m in members} == set(reference["ids"][expected])
    assert [m.uplift for m in members] == sorted((m.uplift for m in members), reverse=True)
    index = {c: i for i, c in enumerate(reference["ids"])}
    for m in members:
        assert m.HasField("uplift") and m.uplift == pytest.approx(uplift[index[m.customer_id]], abs=1e-6)
        assert group[index[m.customer_id]] not in NOT_WANTED
    # the top 20% by uplift holds mostly persuadables; IN names the groups wanted instead
    only = spb.Condition(field="uplift_group", op=spb.CONDITION_OP_IN, values=["persuadable"])
    persuadable = list(stub.ExportAudience(spb.AudienceQuery(conditions=[top, only]), timeout=30))[0].header.count
    assert persuadable >= 0.5 * header.count
    with pytest.raises(grpc.RpcError) as err:
        list(stub.ExportAudience(spb.AudienceQuery(conditions=[
            spb.Condition(field="uplift_group", op=spb.CONDITION_OP_IN, values=["believers"])]), timeout=30))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sleeping_dog" in err.value.details()


def test_360_view_carries_the_uplift(segmentation_server, channel_to, reference) -> None:  # type: ignore[no-untyped-def]
    stub = segmentation_pb2_grpc.SegmentationServiceStub(channel_to(segmentation_server))
    cid = str(reference["ids"][7])
    view = stub.GetCustomer360(spb.Customer360Request(customer_id=cid), timeout=30)
    assert view.predictions.uplift.uplift == pytest.approx(reference["uplift"][7], abs=1e-6)
    assert view.predictions.uplift.group == reference["group"][7]


def test_a_repository_without_campaigns_answers_with_uplift_unset(trained_repo, tmp_path, serve, reference) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "models"
    shutil.copytree(trained_repo, repo)
    for name in UPLIFT_MODELS:
        shutil.rmtree(repo / name)
    ids = [str(c) for c in reference["ids"][:5]]
    scoring = scoring_pb2_grpc.ScoringServiceStub(serve("scoring", repo))
    res = scoring.Predict(scoring_pb2.PredictRequest(customer_ids=ids), timeout=30)
    assert set(UPLIFT_MODELS) <= set(res.missing_models)
    assert all(not r.predictions.HasField("uplift") and r.predictions.HasField("churn") for r in res.results)
    seg = segmentation_pb2_grpc.SegmentationServiceStub(serve("segmentation", repo))
    with pytest.raises(grpc.RpcError) as err:
        list(seg.ExportAudience(spb.AudienceQuery(conditions=[
            spb.Condition(field="uplift", op=spb.CONDITION_OP_TOP_PERCENT, value=20)]), timeout=30))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "uplift-treated" in err.value.details()
    items = list(seg.ExportAudience(spb.AudienceQuery(limit=3), timeout=30))
    assert all(not i.member.HasField("uplift") for i in items[1:])
