"""ScoringService.Predict through a real server: every prediction matches onnxruntime on the artifacts."""
from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from tenure.artifacts import latest_valid
from tenure.store import FeatureSnapshot
from tenure.v1 import scoring_pb2, scoring_pb2_grpc


def onnx_output(repo: Path, name: str, X: np.ndarray) -> tuple[np.ndarray, dict]:  # type: ignore[type-arg]
    """The in-process reference: onnxruntime on the artifact (fed the features its manifest lists),
    first output of the manifest."""
    vdir, manifest = latest_valid(repo, name)
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    names = FeatureSnapshot.load_latest(repo).feature_names
    X = X[:, [names.index(f) for f in manifest.features]]
    out = manifest.outputs[0]
    got = sess.run([out["name"]], {"features": X.astype(np.float32)})[0]
    if out.get("use_column") is not None:
        got = got[:, out["use_column"]]
    return got, manifest.params


@pytest.fixture
def stub(scoring_server, channel_to) -> scoring_pb2_grpc.ScoringServiceStub:  # type: ignore[no-untyped-def]
    return scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server))


def test_predict_matches_the_models_and_an_unknown_id_fails_alone(stub, snapshot, trained_repo) -> None:  # type: ignore[no-untyped-def]
    rows = np.arange(0, len(snapshot.X), len(snapshot.X) // 40)[:40]
    ids = [str(snapshot.customer_ids[r]) for r in rows]
    res = stub.Predict(scoring_pb2.PredictRequest(customer_ids=[*ids[:20], "nobody", *ids[20:]]), timeout=30)
    assert [r.customer_id for r in res.results] == [*ids[:20], "nobody", *ids[20:]]
    bad = res.results[20]
    assert bad.WhichOneof("outcome") == "error" and bad.error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "nobody" in bad.error.message
    got = [r.predictions for r in res.results if r.WhichOneof("outcome") == "predictions"]
    assert len(got) == 40
    X = snapshot.X[rows]
    churn, churn_params = onnx_output(trained_repo, "churn", X)
    clv, clv_params = onnx_output(trained_repo, "clv", X)
    purchase = np.column_stack([onnx_output(trained_repo, f"purchase_{h}d", X)[0] for h in (7, 30, 90)])
    look, _ = onnx_output(trained_repo, "lookalike", X)
    channel, channel_params = onnx_output(trained_repo, "channel", X)
    spend = X[:, snapshot.feature_names.index("spend_total")]
    cutoff = pd.Timestamp(res.snapshot_cutoff)
    for i, p in enumerate(got):
        assert p.churn.probability == pytest.approx(churn[i], abs=1e-6)
        assert p.churn.horizon_days == churn_params["horizon_days"] and p.churn.expected_days_to_churn > 0
        assert p.churn.band == (3 if churn[i] >= 0.66 else 2 if churn[i] >= 0.33 else 1)
        assert p.clv.predicted == pytest.approx(max(float(np.ravel(clv[i])[0]), 0.0), rel=1e-5, abs=1e-3)
        assert p.clv.historic == pytest.approx(spend[i], rel=1e-6)
        assert p.clv.total == pytest.approx(p.clv.historic + p.clv.predicted, rel=1e-9)
        assert p.clv.horizon_days == clv_params["horizon_days"]
        np.testing.assert_allclose([p.purchase.probability_7d, p.purchase.probability_30d, p.purchase.probability_90d],
                                   purchase[i], atol=1e-6)
        assert 0 < p.purchase.expected_days_to_next <= 90
        date = pd.Timestamp(p.purchase.next_purchase_date)
        assert date == (cutoff + pd.Timedelta(days=p.purchase.expected_days_to_next)).normalize()
        assert p.lookalike_score == pytest.approx(look[i], abs=1e-6)
        names = [c.channel for c in p.channels]
        probs = [c.probability for c in p.channels]
        # by probability, except that channels the customer refused (consents) come last, flagged opted_out
        allowed = [c.probability for c in p.channels if not c.opted_out]
        refused = [c.probability for c in p.channels if c.opted_out]
        flags = [c.opted_out for c in p.channels]
        assert sorted(names) == sorted(channel_params["classes"]) and flags == sorted(flags)
        assert allowed == sorted(allowed, reverse=True) and refused == sorted(refused, reverse=True)
        assert probs == allowed + refused
        expected = dict(zip(channel_params["classes"], channel[i]))
        assert all(c.probability == pytest.approx(expected[c.channel], abs=1e-6) for c in p.channels)
    assert {m.name for m in res.models} >= {"features", "churn", "churn-contributions", "clv", "purchase_7d",
                                            "purchase_30d", "purchase_90d", "lookalike", "channel"}


def test_reasons_are_the_largest_contributions_of_the_served_model(stub, snapshot, trained_repo) -> None:  # type: ignore[no-untyped-def]
    rows = np.arange(0, len(snapshot.X), 7)[:200]
    ids = [str(snapshot.customer_ids[r]) for r in rows]
    res = stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids, reasons=5), timeout=30)
    contributions, _ = onnx_output(trained_repo, "churn-contributions", snapshot.X[rows])
    names = snapshot.feature_names
    with_reasons = 0
    for i, r in enumerate(res.results):
        c = contributions[i, :len(names)]
        order = [j for j in np.argsort(-c, kind="stable") if c[j] > 0][:5]
        reasons = r.predictions.churn.reasons
        assert [x.feature for x in reasons] == [names[j] for j in order]
        for x, j in zip(reasons, order):
            assert x.contribution == pytest.approx(c[j], abs=1e-6) and x.value == pytest.approx(snapshot.X[rows[i], j])
            assert x.text
        with_reasons += bool(reasons)
        # the contributions and the bias add up to the churn model's log-odds
        p = r.predictions.churn.probability
        assert contributions[i].sum() == pytest.approx(np.log(p / (1 - p)), abs=1e-4)
    assert with_reasons > 150


def test_predict_refuses_what_it_cannot_answer(stub) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(scoring_pb2.PredictRequest(customer_ids=["a"], reasons=11), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "0..10" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(scoring_pb2.PredictRequest(customer_ids=["a"] * 10_001), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

