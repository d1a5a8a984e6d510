"""ScoringService through a real server on port 0 and generated stubs."""
from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tenure.artifacts import latest_valid
from tenure.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc


def onnx_scores(repo: Path, name: str, X: np.ndarray) -> np.ndarray:
    """The in-process reference: onnxruntime on the artifact file, no Tenure code in between."""
    vdir, manifest = latest_valid(repo, name)
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"features": X.astype(np.float32)})[0][:, 1]


@pytest.fixture
def stub(scoring_server, channel_to) -> scoring_pb2_grpc.ScoringServiceStub:  # type: ignore[no-untyped-def]
    return scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server))


def by_id(*ids: str) -> scoring_pb2.ScoreRequest:
    return scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=i) for i in ids])


def test_health_is_serving_and_reflection_lists_the_service(scoring_server, channel_to) -> None:  # type: ignore[no-untyped-def]
    ch = channel_to(scoring_server)
    health = health_pb2_grpc.HealthStub(ch)
    for service in ("", "tenure.v1.ScoringService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(ch)
    [resp] = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in resp.list_services_response.service}
    assert {"tenure.v1.ScoringService", "grpc.health.v1.Health"} <= names


def test_score_by_id_matches_in_process_onnx(stub, snapshot, trained_repo) -> None:  # type: ignore[no-untyped-def]
    rows = np.arange(0, len(snapshot.customer_ids), max(1, len(snapshot.customer_ids) // 50))
    ids = [str(snapshot.customer_ids[r]) for r in rows]
    resp = stub.Score(by_id(*ids))
    assert [r.customer_id for r in resp.results] == ids
    churn = np.array([r.scores.churn_probability for r in resp.results])
    look = np.array([r.scores.lookalike_score for r in resp.results])
    assert ((churn >= 0) & (churn <= 1)).all() and ((look >= 0) & (look <= 1)).all()
    X = snapshot.X[rows]
    np.testing.assert_allclose(churn, onnx_scores(trained_repo, "churn", X), atol=1e-6)
    _, lm = latest_valid(trained_repo, "lookalike")
    cols = [snapshot.feature_names.index(f) for f in lm.features]
    np.testing.assert_allclose(look, onnx_scores(trained_repo, "lookalike", X[:, cols]), atol=1e-6)
    bands = {r.scores.churn_band for r in resp.results}
    assert bands <= {scoring_pb2.RISK_BAND_LOW, scoring_pb2.RISK_BAND_MEDIUM, scoring_pb2.RISK_BAND_HIGH}
    for r in resp.results:
        p, band = r.scores.churn_probability, r.scores.churn_band
        assert band == (scoring_pb2.RISK_BAND_HIGH if p >= 0.66 else scoring_pb2.RISK_BAND_MEDIUM if p >= 0.33
                        else scoring_pb2.RISK_BAND_LOW)
    assert {m.name for m in resp.models} == {"features", "churn", "lookalike"}


def test_inline_features_score_like_the_stored_row(stub, snapshot) -> None:  # type: ignore[no-untyped-def]
    cid = str(snapshot.customer_ids[3])
    inline = common_pb2.CustomerRef(inline=common_pb2.InlineFeatures(key="mine", values=snapshot.X[3].tolist()))
    resp = stub.Score(scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=cid), inline]))
    a, b = resp.results
    assert b.customer_id == "mine"
    assert a.scores.churn_probability == pytest.approx(b.scores.churn_probability, abs=1e-7)
    assert a.scores.lookalike_score == pytest.approx(b.scores.lookalike_score, abs=1e-7)


def test_bad_rows_fail_alone(stub, snapshot) -> None:  # type: ignore[no-untyped-def]
    good = str(snapshot.customer_ids[0])
    width = len(snapshot.feature_names)
    nan_row = snapshot.X[1].tolist()
    nan_row[2] = float("nan")
    resp = stub.Score(scoring_pb2.ScoreRequest(customers=[
        common_pb2.CustomerRef(customer_id="no-such-customer"),
        common_pb2.CustomerRef(customer_id=good),
        common_pb2.CustomerRef(inline=common_pb2.InlineFeatures(key="short", values=[1.0, 2.0])),
        common_pb2.CustomerRef(inline=common_pb2.InlineFeatures(key="nan", values=nan_row)),
    ]))
    unknown, ok, short, nan = resp.results
    assert unknown.WhichOneof("outcome") == "error"
    assert unknown.error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "no-such-customer" in unknown.error.message
    assert ok.WhichOneof("outcome") == "scores" and 0 <= ok.scores.churn_probability <= 1
    assert short.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert f"expected {width}" in short.error.message
    assert nan.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "nan" in nan.error.message.lower() and snapshot.feature_names[2] in nan.error.message


def test_oversized_request_is_refused(stub) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(by_id(*[f"c{i}" for i in range(10_001)]))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 10000" in err.value.details()


def test_model_info_describes_the_feature_order(stub, snapshot) -> None:  # type: ignore[no-untyped-def]
    info = stub.GetModelInfo(scoring_pb2.GetModelInfoRequest())
    assert list(info.customer_features) == snapshot.feature_names
    assert info.churn_horizon_days == 90
    assert info.max_batch_rows == 10_000


def test_stream_of_100k_rows_returns_every_row_once_in_order(stub, snapshot, trained_repo) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    n, chunk = 100_000, 5_000
    rows = rng.integers(0, len(snapshot.customer_ids), n)
    ids = [str(snapshot.customer_ids[r]) for r in rows]
    ids[12_345] = "unknown-customer"  # one bad row fails alone

    def chunks():  # type: ignore[no-untyped-def]
        for c, start in enumerate(range(0, n, chunk)):
            yield scoring_pb2.ScoreChunk(chunk_id=c, customer_ids=ids[start:start + chunk])

    got_ids: list[str] = []
    churn_parts = []
    failures = []
    for res in stub.StreamScore(chunks()):
        assert res.chunk_id == len(churn_parts)
        got_ids.extend(res.customer_ids)
        churn_parts.append(np.frombuffer(res.churn_probability, "<f4"))
        failures.extend((res.chunk_id * chunk + f.row, f.error.code) for f in res.failures)
    churn = np.concatenate(churn_parts)
    assert got_ids == ids and len(churn) == n
    assert failures == [(12_345, grpc.StatusCode.NOT_FOUND.value[0])]
    assert np.isnan(churn[12_345]) and np.isfinite(np.delete(churn, 12_345)).all()
    sample = rng.choice(np.delete(np.arange(n), 12_345), 2_000, replace=False)
    np.testing.assert_allclose(churn[sample], onnx_scores(trained_repo, "churn", snapshot.X[rows[sample]]), atol=1e-6)


def test_stream_with_inline_packed_features(stub, snapshot) -> None:  # type: ignore[no-untyped-def]
    X = snapshot.X[:64]
    matrix = common_pb2.FeatureMatrix(rows=64, cols=X.shape[1], float32_le=X.astype("<f4").tobytes())
    [res] = list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=7, customer_ids=[f"k{i}" for i in range(64)],
                                                                 features=matrix)])))
    by_id_resp = stub.Score(by_id(*[str(c) for c in snapshot.customer_ids[:64]]))
    np.testing.assert_allclose(np.frombuffer(res.churn_probability, "<f4"),
                               [r.scores.churn_probability for r in by_id_resp.results], atol=1e-7)


def test_stream_chunk_with_wrong_byte_length_is_refused(stub, snapshot) -> None:  # type: ignore[no-untyped-def]
    width = len(snapshot.feature_names)
    bad = common_pb2.FeatureMatrix(rows=2, cols=width, float32_le=b"\0" * (2 * width * 4 - 4))
    with pytest.raises(grpc.RpcError) as err:
        list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=3, customer_ids=["a", "b"], features=bad)])))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk 3" in err.value.details() and "expected rows*cols*4" in err.value.details()


def test_missing_models_mean_not_serving_and_unavailable(tmp_path, start_server, channel_to) -> None:  # type: ignore[no-untyped-def]
    from services.scoring.__main__ import make_service

    server = start_server(make_service, tmp_path, wait=False)
    ch = channel_to(server)
    status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as err:
        scoring_pb2_grpc.ScoringServiceStub(ch).Score(by_id("x"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "features" in err.value.details() and "not loaded" in err.value.details()


def test_score_file_streams_a_parquet_through_the_service(scoring_server, snapshot, tmp_path, stub) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.parquet as pq

    from services.client import score_file

    rng = np.random.default_rng(1)
    rows = rng.integers(0, len(snapshot.customer_ids), 25_000)
    ids = [str(snapshot.customer_ids[r]) for r in rows]
    ids[7] = "who-is-this"
    pq.write_table(pa.table({"customer_id": ids}), tmp_path / "in.parquet")
    report = score_file(scoring_server.target, tmp_path / "in.parquet", tmp_path / "out.parquet",
                        chunk_rows=4_000, progress=False)
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert report.rows == 25_000 and report.failed == 1 and not report.inline_features and report.chunks == 7
    assert out["customer_id"].tolist() == ids
    assert out["error"].notna().sum() == 1 and out["error"][7].startswith("NOT_FOUND") and "who-is-this" in out["error"][7]
    sample = [0, 1, 24_999]
    expected = stub.Score(by_id(*[ids[i] for i in sample]))
    np.testing.assert_allclose(out["churn_probability"][sample], [r.scores.churn_probability for r in expected.results])

    # A file that carries the features is sent as packed rows instead.
    cols = {"customer_id": [f"x{i}" for i in range(1_000)]}
    cols.update({name: snapshot.X[:1_000, j] for j, name in enumerate(snapshot.feature_names)})
    pq.write_table(pa.table(cols), tmp_path / "inline.parquet")
    report = score_file(scoring_server.target, tmp_path / "inline.parquet", tmp_path / "inline-out.parquet", progress=False)
    inline_out = pq.read_table(tmp_path / "inline-out.parquet").to_pandas()
    assert report.inline_features and report.failed == 0
    by_id_scores = stub.Score(by_id(*[str(c) for c in snapshot.customer_ids[:5]]))
    np.testing.assert_allclose(inline_out["churn_probability"][:5], [r.scores.churn_probability for r in by_id_scores.results])


def test_stream_computes_only_the_scores_asked_for(stub, snapshot) -> None:  # type: ignore[no-untyped-def]
    ids = [str(c) for c in snapshot.customer_ids[:100]]
    [res] = list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=0, customer_ids=ids, scores=["churn"])])))
    assert len(np.frombuffer(res.churn_probability, "<f4")) == 100 and res.lookalike_score == b""
    with pytest.raises(grpc.RpcError) as err:
        list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=0, customer_ids=ids, scores=["clv"])])))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "expected some of: churn, lookalike" in err.value.details()


def test_streams_beyond_the_limit_are_refused_and_short_calls_keep_a_thread(trained_repo, start_server,
                                                                           channel_to, snapshot) -> None:  # type: ignore[no-untyped-def]
    import queue

    from services.scoring.__main__ import make_service

    server = start_server(make_service, trained_repo, server_threads=3, max_streams=2)
    stub = scoring_pb2_grpc.ScoringServiceStub(channel_to(server))
    ids = [str(c) for c in snapshot.customer_ids[:4]]
    feeds: list[queue.Queue[scoring_pb2.ScoreChunk | None]] = [queue.Queue() for _ in range(2)]
    open_streams = [stub.StreamScore(iter(feed.get, None)) for feed in feeds]
    for i, (feed, call) in enumerate(zip(feeds, open_streams)):  # two streams open, each holding a thread
        feed.put(scoring_pb2.ScoreChunk(chunk_id=i, customer_ids=ids))
        assert next(call).chunk_id == i
    with pytest.raises(grpc.RpcError) as err:
        list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=9, customer_ids=ids)]), timeout=10))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "2 streams" in err.value.details()
    assert len(stub.Score(by_id(*ids), timeout=10).results) == 4  # the third thread still serves short calls
    for feed, call in zip(feeds, open_streams):
        feed.put(None)
        assert list(call) == []
    [again] = list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=5, customer_ids=ids)]), timeout=10))
    assert again.chunk_id == 5  # the slots are free again once the streams ended
