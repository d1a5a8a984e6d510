"""Partial model repositories (a shop whose data could not support every model): every service
starts, serves the models that exist and names the missing ones; only the feature snapshot is
required. Real servers on port 0, generated stubs, copies of the session's trained repository with
model directories removed (no retraining)."""
from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tenure.artifacts import Manifest, latest_valid
from tenure.data import NO_PRODUCT
from tenure.features import AffinityState
from tenure.store import Catalog, FeatureSnapshot
from tenure.v1 import (
    common_pb2,
    recommendation_pb2,
    recommendation_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    segmentation_pb2_grpc,
)
from tenure.v1 import segmentation_pb2 as spb

PREDICT_MODELS = ["churn", "churn-contributions", "clv", "purchase_7d", "purchase_30d", "purchase_90d", "channel",
                  "lookalike", "uplift-treated", "uplift-control"]
"""Every model Predict uses, in the order missing_models lists them."""
ALL_MODELS = [*PREDICT_MODELS, "propensity", "clusters"]
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
SERVING = health_pb2.HealthCheckResponse.SERVING


# -- helpers ----------------------------------------------------------------------------------------

def copy_without(trained: Path, dest: Path, *drop: str) -> Path:
    """A copy of the trained repository without the named model directories."""
    shutil.copytree(trained, dest)
    for name in drop:
        shutil.rmtree(dest / name)
    return dest


def publish(source: Path, repo: Path, name: str) -> None:
    """Put the source's newest version of a model into a live repository as training does: written
    aside under a hidden name, then renamed into place (a reader never sees half a version)."""
    vdir, _ = latest_valid(source, name)
    tmp = repo / name / f".tmp-{vdir.name}"
    shutil.copytree(vdir, tmp)
    os.replace(tmp, repo / name / vdir.name)


def with_catalog_of(repo: Path, n_products: int, product_id: str = "") -> None:
    """A newer feature snapshot whose catalogue keeps only its first n_products products (what an
    order log without products gives the services); product_id renames a one-product catalogue's
    product (tenure.data.NO_PRODUCT: the placeholder of an order log without a product column)."""
    import scipy.sparse as sp  # column slices: training's matrices (the services' CSR selects rows only)

    snap = FeatureSnapshot.load_latest(repo)
    a, c, keep = snap.affinity, snap.catalog, slice(0, n_products)
    hist, last, cond = (sp.csr_matrix((m.data, m.indices, m.indptr), shape=m.shape) for m in (a.hist, a.hist_last, a.cond))
    affinity = AffinityState(hist=hist[:, keep], hist_last=last[:, keep], cond=cond[keep, keep],
                             pop_90d=a.pop_90d[keep], pop_all=a.pop_all[keep], pop_in_cat=a.pop_in_cat[keep],
                             repeat_rate=a.repeat_rate[keep], price=a.price[keep], product_cat=a.product_cat[keep],
                             n_categories=a.n_categories)
    ids = np.array([product_id], dtype=object) if product_id else c.product_ids[keep]
    catalog = Catalog(ids, c.names[keep], c.categories[keep], c.price[keep])
    FeatureSnapshot(cutoff=snap.cutoff, space=snap.space, customer_ids=snap.customer_ids, X=snap.X, catalog=catalog,
                    affinity=affinity, anonymous=snap.anonymous).save(
        repo, Manifest(name="features", kind="feature-snapshot"))


def reference(repo: Path, name: str, X: np.ndarray) -> np.ndarray:
    """onnxruntime on the artifact itself (its manifest's features and first output), no Tenure code."""
    vdir, manifest = latest_valid(repo, name)
    names = FeatureSnapshot.load_latest(repo).feature_names
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    out = manifest.outputs[0]
    got = sess.run([out["name"]], {"features": X[:, [names.index(f) for f in manifest.features]].astype(np.float32)})[0]
    return got[:, out["use_column"]] if out.get("use_column") is not None else got.reshape(len(X), -1)[:, 0]


def median_next_purchase(probs: dict[int, np.ndarray]) -> np.ndarray:
    """Independent reference of the next purchase: survival S(0) = 1 and S(h) = 1 - P(h) at the
    horizons given, a constant hazard between them; the median time to the next order given one
    within the last horizon."""
    hs = sorted(probs)
    P = np.maximum.accumulate(np.clip(np.column_stack([probs[h] for h in hs]).astype(np.float64), 1e-9, 1 - 1e-9),
                              axis=1)
    edges = [0, *hs]
    out = []
    for row in P:
        S, target = [1.0, *(1 - row)], 1 - row[-1] / 2
        k = next(k for k in range(len(hs)) if S[k + 1] <= target)
        hazard = np.log(S[k] / S[k + 1]) / (edges[k + 1] - edges[k])
        out.append(edges[k] + np.log(S[k] / target) / hazard)
    return np.array(out)


def by_id(*ids: str, scores: tuple[str, ...] = ()) -> scoring_pb2.ScoreRequest:
    return scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=i) for i in ids], scores=scores)


def fails(call: Callable[[], Any], code: grpc.StatusCode, *texts: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code, err.value.details()
    for text in texts:
        assert text in err.value.details()


def healthy(channel: grpc.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", service):
        assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == SERVING


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def served_lines(caplog: pytest.LogCaptureFixture, prefix: str) -> list[str]:
    """The holders' "serving ..." log lines of one service kind."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"serving {prefix}")]


# -- scoring ----------------------------------------------------------------------------------------

def test_scoring_serves_what_exists_and_names_what_is_missing(trained_repo, tmp_path, serve, snapshot,  # type: ignore[no-untyped-def]
                                                             caplog) -> None:
    caplog.set_level(logging.INFO, logger="services.core.runtime")
    drop = ("clv", "purchase_90d", "lookalike", "channel", "churn-contributions")
    repo = copy_without(trained_repo, tmp_path / "models", *drop)
    ch = serve("scoring", repo, reload_interval_s=0.2)
    healthy(ch, "tenure.v1.ScoringService")
    stub = scoring_pb2_grpc.ScoringServiceStub(ch)
    missing = ["churn-contributions", "clv", "purchase_90d", "channel", "lookalike"]

    info = stub.GetModelInfo(scoring_pb2.GetModelInfoRequest(), timeout=10)
    assert list(info.missing_models) == missing
    assert {m.name: m.version for m in info.models} == {
        n: latest_valid(repo, n)[1].version for n in ("features", "churn", "purchase_7d", "purchase_30d",
                                                      "uplift-treated", "uplift-control")}
    assert info.churn_horizon_days == latest_valid(repo, "churn")[1].params["horizon_days"]

    # Predict answers every customer of the snapshot with the parts that exist.
    ids = [str(c) for c in snapshot.customer_ids]
    res = stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids), timeout=120)
    assert [r.customer_id for r in res.results] == ids and list(res.missing_models) == missing
    assert all(r.WhichOneof("outcome") == "predictions" for r in res.results)
    X = snapshot.X
    gap = X[:, snapshot.feature_names.index("gap_mean_days")]
    for i, r in enumerate(res.results):
        p, u = r.predictions, r.predictions.purchase
        assert p.HasField("churn") and not p.churn.reasons  # no churn-contributions: no reasons
        assert not p.HasField("clv") and not p.channels and not p.HasField("lookalike_score")
        assert u.HasField("probability_7d") and u.HasField("probability_30d") and not u.HasField("probability_90d")
        assert not u.HasField("expected_days_to_next") and not u.HasField("next_purchase_date")
        assert u.HasField("avg_days_between_orders") == bool(gap[i] >= 0)  # the observed gap needs no model
    np.testing.assert_allclose([r.predictions.churn.probability for r in res.results],
                               reference(repo, "churn", X), atol=1e-6)
    np.testing.assert_allclose([r.predictions.purchase.probability_30d for r in res.results],
                               reference(repo, "purchase_30d", X), atol=1e-6)

    # Score: churn, no lookalike; asking for the lookalike is a failed precondition naming it.
    for request in (by_id(ids[0]), by_id(*ids[:100]), by_id(*ids[:100], scores=("churn",))):
        got = stub.Score(request, timeout=10)
        assert list(got.missing_models) == ["lookalike"] and {m.name for m in got.models} == {"features", "churn"}
        assert all(r.scores.HasField("churn_probability") and not r.scores.HasField("lookalike_score")
                   and r.scores.churn_band != scoring_pb2.RISK_BAND_UNSPECIFIED for r in got.results)
        np.testing.assert_allclose([r.scores.churn_probability for r in got.results],
                                   reference(repo, "churn", X[:len(got.results)]), atol=1e-6)
    fails(lambda: stub.Score(by_id(ids[0], scores=("lookalike",)), timeout=10), FAILED_PRECONDITION,
          "'lookalike'", "not in the repository")

    # StreamScore: the missing score is NaN for every row when all are asked for, refused by name.
    [chunk] = list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=0, customer_ids=ids[:100])]), timeout=30))
    assert np.isfinite(np.frombuffer(chunk.churn_probability, "<f4")).all()
    look = np.frombuffer(chunk.lookalike_score, "<f4")
    assert len(look) == 100 and np.isnan(look).all() and list(chunk.missing_models) == ["lookalike"]
    fails(lambda: list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=0, customer_ids=ids[:5],
                                                                     scores=["lookalike"])]), timeout=10)),
          FAILED_PRECONDITION, "'lookalike'", "not in the repository")

    # One startup line lists the loaded models and the missing ones, not repeated at each reload poll.
    time.sleep(0.6)
    lines = [line for line in served_lines(caplog, "scoring:") if line.endswith("not in the repository: "
                                                                               + ", ".join(missing))]
    assert len(lines) == 1 and f"churn@{latest_valid(repo, 'churn')[1].version}" in lines[0]


@pytest.mark.parametrize("drop", [(), ("purchase_30d",), ("purchase_7d",), ("purchase_7d", "purchase_30d")])
def test_next_purchase_from_the_purchase_horizons_present(trained_repo, tmp_path, serve, snapshot, drop) -> None:  # type: ignore[no-untyped-def]
    repo = copy_without(trained_repo, tmp_path / "models", *drop)
    stub = scoring_pb2_grpc.ScoringServiceStub(serve("scoring", repo))
    rows = np.arange(0, len(snapshot.X), 13)
    res = stub.Predict(scoring_pb2.PredictRequest(customer_ids=[str(snapshot.customer_ids[r]) for r in rows]),
                       timeout=60)
    assert list(res.missing_models) == list(drop)
    horizons = [h for h in (7, 30, 90) if f"purchase_{h}d" not in drop]
    probs = {h: reference(repo, f"purchase_{h}d", snapshot.X[rows]) for h in horizons}
    expected = median_next_purchase(probs)
    cutoff = pd.Timestamp(res.snapshot_cutoff)
    for i, r in enumerate(res.results):
        u = r.predictions.purchase
        for h in (7, 30, 90):
            assert u.HasField(f"probability_{h}d") == (h in horizons)
            if h in horizons:
                assert getattr(u, f"probability_{h}d") == pytest.approx(probs[h][i], abs=1e-6)
        assert u.expected_days_to_next == pytest.approx(expected[i], rel=1e-4, abs=1e-3)
        assert 0 < u.expected_days_to_next <= 90
        assert pd.Timestamp(u.next_purchase_date) == (cutoff + pd.Timedelta(days=u.expected_days_to_next)).normalize()


def test_without_churn_score_and_predict_answer_the_other_models(trained_repo, tmp_path, serve, snapshot) -> None:  # type: ignore[no-untyped-def]
    repo = copy_without(trained_repo, tmp_path / "models", "churn")  # its contributions stay: unused
    stub = scoring_pb2_grpc.ScoringServiceStub(serve("scoring", repo))
    ids = [str(c) for c in snapshot.customer_ids[:40]]
    X = snapshot.X[:40]
    for request in (by_id(ids[0]), by_id(*ids)):
        got = stub.Score(request, timeout=10)
        assert list(got.missing_models) == ["churn"]
        for r in got.results:
            s = r.scores
            assert not s.HasField("churn_probability") and s.churn_band == scoring_pb2.RISK_BAND_UNSPECIFIED
            assert s.churn_horizon_days == 0 and s.HasField("lookalike_score")
        np.testing.assert_allclose([r.scores.lookalike_score for r in got.results],
                                   reference(repo, "lookalike", X[:len(got.results)]), atol=1e-6)
    fails(lambda: stub.Score(by_id(ids[0], scores=("churn",)), timeout=10), FAILED_PRECONDITION, "'churn'")
    [chunk] = list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=0, customer_ids=ids)]), timeout=30))
    assert np.isnan(np.frombuffer(chunk.churn_probability, "<f4")).all() and len(chunk.churn_probability) == 160
    assert np.isfinite(np.frombuffer(chunk.lookalike_score, "<f4")).all()

    res = stub.Predict(scoring_pb2.PredictRequest(customer_ids=[*ids, "nobody"], reasons=5), timeout=30)
    assert list(res.missing_models) == ["churn"]
    assert res.results[-1].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    for r, clv in zip(res.results, reference(repo, "clv", X)):
        p = r.predictions
        assert not p.HasField("churn") and p.HasField("clv") and p.HasField("purchase") and p.channels
        assert p.HasField("lookalike_score") and p.purchase.HasField("expected_days_to_next")
        assert p.clv.predicted == pytest.approx(max(float(clv), 0.0), rel=1e-5, abs=1e-3)
    info = stub.GetModelInfo(scoring_pb2.GetModelInfoRequest(), timeout=10)
    assert info.churn_horizon_days == 0 and list(info.missing_models) == ["churn"]
    assert "churn-contributions" in {m.name for m in info.models}


def test_hot_reload_picks_up_models_that_appear_later(trained_repo, tmp_path, serve, snapshot, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="services.core.runtime")
    repo = copy_without(trained_repo, tmp_path / "models", "clv", "lookalike")
    stub = scoring_pb2_grpc.ScoringServiceStub(serve("scoring", repo, reload_interval_s=0.2))
    ids = [str(c) for c in snapshot.customer_ids[:20]]

    def missing() -> list[str]:
        return list(stub.GetModelInfo(scoring_pb2.GetModelInfoRequest(), timeout=10).missing_models)

    assert missing() == ["clv", "lookalike"]
    assert not stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids), timeout=10).results[0].predictions.HasField("clv")
    publish(trained_repo, repo, "clv")
    wait_for(lambda: missing() == ["lookalike"], "clv was not picked up")
    res = stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids), timeout=10)
    assert list(res.missing_models) == ["lookalike"]
    np.testing.assert_allclose([r.predictions.clv.predicted for r in res.results],
                               np.maximum(reference(repo, "clv", snapshot.X[:20]), 0), rtol=1e-5, atol=1e-3)
    publish(trained_repo, repo, "lookalike")
    wait_for(lambda: missing() == [], "lookalike was not picked up")
    one = stub.Score(by_id(ids[0]), timeout=10)  # the per-request path: churn and lookalike fused again
    assert not one.missing_models and one.results[0].scores.lookalike_score == pytest.approx(
        float(reference(repo, "lookalike", snapshot.X[:1])[0]), abs=1e-6)
    time.sleep(0.6)
    lines = served_lines(caplog, "scoring:")
    assert [line.rsplit("; ", 1)[-1] for line in lines[-3:]] == [
        "not in the repository: clv, lookalike", "not in the repository: lookalike", "none missing"]


def test_without_the_feature_snapshot_the_service_is_not_serving_and_says_why(trained_repo, tmp_path, serve,  # type: ignore[no-untyped-def]
                                                                             caplog) -> None:
    caplog.set_level(logging.INFO, logger="services.core.runtime")
    repo = copy_without(trained_repo, tmp_path / "models", "features")
    ch = serve("scoring", repo, wait=False, reload_interval_s=0.1)
    time.sleep(1.0)  # several polls of the repository
    status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    fails(lambda: scoring_pb2_grpc.ScoringServiceStub(ch).Score(by_id("x"), timeout=5), grpc.StatusCode.UNAVAILABLE,
          "feature snapshot 'features' is not in the repository")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and str(repo) in r.getMessage()
              and "feature snapshot 'features' is not in the repository" in r.getMessage()]
    assert len(errors) == 1  # logged once, not at every poll


# -- everything missing but the features ------------------------------------------------------------

def test_with_only_the_features_every_service_starts_and_answers_what_it_can(trained_repo, tmp_path, serve,  # type: ignore[no-untyped-def]
                                                                            snapshot) -> None:
    repo = copy_without(trained_repo, tmp_path / "models", *ALL_MODELS)
    assert sorted(p.name for p in repo.iterdir()) == ["features"]
    sc, rc = serve("scoring", repo), serve("recommendation", repo)
    gc = serve("segmentation", repo, recommendation_target=rc.target)
    for ch, name in ((sc, "ScoringService"), (rc, "RecommendationService"), (gc, "SegmentationService")):
        healthy(ch, f"tenure.v1.{name}")

    scoring = scoring_pb2_grpc.ScoringServiceStub(sc)
    info = scoring.GetModelInfo(scoring_pb2.GetModelInfoRequest(), timeout=10)
    assert [m.name for m in info.models] == ["features"] and list(info.missing_models) == PREDICT_MODELS
    assert list(info.customer_features) == snapshot.feature_names
    ids = [str(c) for c in snapshot.customer_ids]
    res = scoring.Predict(scoring_pb2.PredictRequest(customer_ids=ids), timeout=60)
    assert len(res.results) == len(ids) and list(res.missing_models) == PREDICT_MODELS
    # only the send time, which travels in the feature snapshot (tenure.sendtime), not in a model
    assert all(r.WhichOneof("outcome") == "predictions" and [f.name for f, _ in r.predictions.ListFields()]
               == ["send_time"] and len(r.predictions.send_time.hour_distribution) == 24 for r in res.results)
    score = scoring.Score(by_id(*ids[:3]), timeout=10)
    assert list(score.missing_models) == ["churn", "lookalike"]
    assert all(r.WhichOneof("outcome") == "scores" and not r.scores.ListFields() for r in score.results)

    seg = segmentation_pb2_grpc.SegmentationServiceStub(gc)
    got = seg.GetSegments(spb.GetSegmentsRequest(customer_ids=ids[:50]), timeout=10)
    assert list(got.missing_models) == ["clusters", "churn", "purchase_30d"]
    for r in got.results:
        s = r.segments
        assert s.rfm_segment and s.lifecycle_stage != spb.LIFECYCLE_STAGE_UNSPECIFIED and 1 <= s.rfm.recency <= 5
        assert not s.HasField("cluster") and not s.HasField("grid")
    catalog = seg.DescribeSegments(spb.DescribeSegmentsRequest(), timeout=10)
    assert sum(c.customers for c in catalog.rfm_segments) == len(ids) and catalog.rescoring.id >= 1
    assert not catalog.clusters and not catalog.cluster_counts and not catalog.grid_cells
    assert list(catalog.missing_models) == [*PREDICT_MODELS, "clusters"]
    recent = list(seg.ExportAudience(spb.AudienceQuery(
        conditions=[spb.Condition(field="recency_days", op=spb.CONDITION_OP_LE, value=30)], order_by="monetary"),
        timeout=30))
    members = [i.member for i in recent[1:]]
    assert recent[0].header.count == len(members) > 0
    assert all(not m.HasField("churn") and not m.HasField("clv_predicted") and not m.HasField("purchase_30d")
               and m.rfm_segment for m in members)
    view = seg.GetCustomer360(spb.Customer360Request(customer_id=ids[0]), timeout=30)
    assert [f.name for f, _ in view.predictions.ListFields()] == ["send_time"]
    assert view.segments.rfm_segment and len(view.features) == len(
        snapshot.feature_names)
    assert "FAILED_PRECONDITION" in view.recommendations_error and "no recommendation model" in view.recommendations_error
    assert [m.name for m in view.models] == ["features"] and "clusters" in view.missing_models

    rec = recommendation_pb2_grpc.RecommendationServiceStub(rc)
    fails(lambda: rec.Recommend(recommendation_pb2.RecommendRequest(customer_id=ids[0]), timeout=10),
          FAILED_PRECONDITION, "no recommendation model ('propensity') in the repository")
    product = str(snapshot.catalog.product_ids[0])
    ack = rec.RecordFeedback(recommendation_pb2.RecordFeedbackRequest(events=[recommendation_pb2.FeedbackEvent(
        customer_id=ids[0], product_id=product, kind=recommendation_pb2.FEEDBACK_KIND_IMPRESSION, position=1)]),
        timeout=10)
    assert ack.recorded == 1 and not ack.failures
    assert rec.GetFeedbackReport(recommendation_pb2.FeedbackReportRequest(), timeout=10).total.impressions == 1


# -- segmentation -----------------------------------------------------------------------------------

def test_segmentation_serves_the_parts_that_exist_and_rescores_when_a_model_appears(  # type: ignore[no-untyped-def]
        trained_repo, tmp_path, serve, snapshot) -> None:
    repo = copy_without(trained_repo, tmp_path / "models", "clusters", "purchase_30d", "clv", "lookalike")
    rc = serve("recommendation", repo)
    gc = serve("segmentation", repo, recommendation_target=rc.target, reload_interval_s=0.2)
    healthy(gc, "tenure.v1.SegmentationService")
    stub = segmentation_pb2_grpc.SegmentationServiceStub(gc)
    ids = [str(c) for c in snapshot.customer_ids[:200]]

    got = stub.GetSegments(spb.GetSegmentsRequest(customer_ids=[*ids, "ghost"]), timeout=10)
    assert list(got.missing_models) == ["clusters", "purchase_30d"]
    assert got.results[-1].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert all(r.segments.rfm_segment and not r.segments.HasField("cluster") and not r.segments.HasField("grid")
               for r in got.results[:-1])
    catalog = stub.DescribeSegments(spb.DescribeSegmentsRequest(), timeout=10)
    assert list(catalog.missing_models) == ["clv", "purchase_30d", "lookalike", "clusters"]
    assert not catalog.cluster_counts and not catalog.grid_cells and catalog.lifecycle_stages
    before = catalog.rescoring.id
    assert {m.name for m in catalog.rescoring.models} == {"features", "churn", "churn-contributions", "purchase_7d",
                                                          "purchase_90d", "channel", "uplift-treated",
                                                          "uplift-control"}

    # Audiences over the fields that exist; a field (or order) of a missing model names the model.
    churn = reference(repo, "churn", snapshot.X)
    items = list(stub.ExportAudience(spb.AudienceQuery(
        conditions=[spb.Condition(field="churn", op=spb.CONDITION_OP_GE, value=0.5)], order_by="purchase_90d"),
        timeout=30))
    members = [i.member for i in items[1:]]
    assert items[0].header.count == int((churn >= 0.5).sum()) == len(members) > 0
    assert all(m.HasField("churn") and not m.HasField("clv_predicted") and not m.HasField("purchase_30d")
               for m in members)
    for query, model in [
        (spb.AudienceQuery(conditions=[spb.Condition(field="clv", op=spb.CONDITION_OP_TOP_PERCENT, value=10)]), "clv"),
        (spb.AudienceQuery(conditions=[spb.Condition(field="purchase_30d", op=spb.CONDITION_OP_GE, value=0.2)]),
         "purchase_30d"),
        (spb.AudienceQuery(conditions=[spb.Condition(field="cluster", op=spb.CONDITION_OP_IN, values=["x"])]),
         "clusters"),
        (spb.AudienceQuery(conditions=[spb.Condition(field="grid", op=spb.CONDITION_OP_IN, values=["x"])]),
         "purchase_30d"),
        (spb.AudienceQuery(order_by="clv_predicted"), "clv"),
    ]:
        fails(lambda q=query: list(stub.ExportAudience(q, timeout=10)), FAILED_PRECONDITION, f"'{model}'",
              "not in the repository")
    fails(lambda: stub.ProfileGroup(spb.ProfileRequest(cluster=0), timeout=10), FAILED_PRECONDITION, "'clusters'")
    fails(lambda: list(stub.StreamLookalikeAudience(spb.LookalikeAudienceRequest(size=5), timeout=10)),
          FAILED_PRECONDITION, "'lookalike'", "not in the repository")
    assert stub.ProfileGroup(spb.ProfileRequest(lifecycle="lost"), timeout=10).group_size > 0

    # The 360-degree view: the parts that exist, recommendations from the recommendation service.
    view = stub.GetCustomer360(spb.Customer360Request(customer_id=ids[0], recommendations=3), timeout=30)
    p = view.predictions
    assert p.HasField("churn") and not p.HasField("clv")
    assert not p.HasField("lookalike_score") and p.purchase.HasField("probability_90d")
    assert not p.purchase.HasField("probability_30d") and p.purchase.HasField("expected_days_to_next")
    assert not view.segments.HasField("cluster") and not view.segments.HasField("grid")
    assert len(view.recommendations) == 3 and not view.recommendations_error
    assert list(view.missing_models) == ["clv", "purchase_30d", "lookalike", "clusters"]

    # The models appear: the service re-scores with them.
    for name in ("clusters", "purchase_30d"):
        publish(trained_repo, repo, name)
    wait_for(lambda: list(stub.DescribeSegments(spb.DescribeSegmentsRequest(), timeout=10).missing_models)
             == ["clv", "lookalike"], "the new models were not picked up")
    catalog = stub.DescribeSegments(spb.DescribeSegmentsRequest(), timeout=10)
    assert list(catalog.missing_models) == ["clv", "lookalike"] and catalog.rescoring.id > before
    assert catalog.cluster_counts and catalog.grid_cells
    labels = reference(repo, "clusters", snapshot.X[:200]).astype(int)
    got = stub.GetSegments(spb.GetSegmentsRequest(customer_ids=ids), timeout=10)
    assert not got.missing_models
    assert [r.segments.cluster.id for r in got.results] == labels.tolist()
    assert all(r.segments.HasField("grid") for r in got.results)


# -- recommendation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n_products,product_id,text", [
    (0, "", "had no products"), (1, NO_PRODUCT, "had no products"), (1, "", "had only one product")])
def test_recommendation_without_products_refuses_to_recommend_and_keeps_feedback(  # type: ignore[no-untyped-def]
        trained_repo, tmp_path, serve, snapshot, n_products, product_id, text) -> None:
    repo = copy_without(trained_repo, tmp_path / "models", "propensity")
    with_catalog_of(repo, n_products, product_id)
    ch = serve("recommendation", repo)
    healthy(ch, "tenure.v1.RecommendationService")
    stub = recommendation_pb2_grpc.RecommendationServiceStub(ch)
    cid = str(snapshot.customer_ids[0])
    expected = f"no recommendation model in the repository: the training data {text} (recommendations were skipped)"
    fails(lambda: stub.Recommend(recommendation_pb2.RecommendRequest(customer_id=cid), timeout=10),
          FAILED_PRECONDITION, expected)
    basket = [recommendation_pb2.BasketItem(product_id=str(snapshot.catalog.product_ids[0]), quantity=1)]
    for customer in ("", cid):
        fails(lambda c=customer: stub.RecommendForBasket(recommendation_pb2.RecommendForBasketRequest(
            items=basket, customer_id=c), timeout=10), FAILED_PRECONDITION, expected)
    # Feedback is still recorded against the snapshot's catalogue; an unknown product fails alone.
    products = [str(p) for p in FeatureSnapshot.load_latest(repo).catalog.product_ids] + ["not-a-product"]
    events = [recommendation_pb2.FeedbackEvent(customer_id=cid, product_id=pid,
                                               kind=recommendation_pb2.FEEDBACK_KIND_IMPRESSION, position=1)
              for pid in products]
    ack = stub.RecordFeedback(recommendation_pb2.RecordFeedbackRequest(events=events), timeout=10)
    assert ack.recorded == n_products
    assert [(f.row, f.error.code) for f in ack.failures] == [(n_products, grpc.StatusCode.NOT_FOUND.value[0])]
    assert stub.GetFeedbackReport(recommendation_pb2.FeedbackReportRequest(), timeout=10).total.impressions == n_products


def test_recommendation_without_propensity_then_with_it(trained_repo, tmp_path, serve, snapshot) -> None:  # type: ignore[no-untyped-def]
    repo = copy_without(trained_repo, tmp_path / "models", "propensity")
    ch = serve("recommendation", repo, reload_interval_s=0.2)
    healthy(ch, "tenure.v1.RecommendationService")
    stub = recommendation_pb2_grpc.RecommendationServiceStub(ch)
    request = recommendation_pb2.RecommendRequest(customer_id=str(snapshot.customer_ids[0]), k=5)
    fails(lambda: stub.Recommend(request, timeout=10), FAILED_PRECONDITION,
          "no recommendation model ('propensity') in the repository",
          f"the catalogue has {len(snapshot.catalog.product_ids)} products")
    publish(trained_repo, repo, "propensity")

    def recommends() -> bool:
        try:
            return len(stub.Recommend(request, timeout=10).items) == 5
        except grpc.RpcError as err:
            assert err.code() == FAILED_PRECONDITION
            return False

    wait_for(recommends, "the propensity model was not picked up")
    got = stub.Recommend(request, timeout=10)
    assert got.model.name == "propensity" and got.model.version == latest_valid(repo, "propensity")[1].version
