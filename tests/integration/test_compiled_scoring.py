"""Score on compiled forests: churn and lookalike are exported compiled, several forests load side by side
in one process, and Score (the per-request path) gives StreamScore's bits."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from services.core.compiled import CompiledForest, declared, parity_rows
from services.core.runtime import load_present
from services.scoring.engine import Scorer
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot
from tenure.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc


def test_forests_loaded_side_by_side_each_run_their_own_model(trained_repo: Path) -> None:
    """Regression: glibc returns an already loaded library whose path matches, and every forest was
    loaded from the same reused /proc/self/fd/N: the second forest ran the first one's trees."""
    models = load_present(trained_repo, ["lookalike", "churn", "propensity"])
    assert {m.name: m.backend for m in models.values()} == dict.fromkeys(models, "compiled")
    forests = [CompiledForest(m.path.parent, declared(m.manifest.params) or {}, len(m.features))
               for m in models.values()]  # loaded again, after the models' own: every one must be its own
    for m, forest in zip(models.values(), forests):
        X = parity_rows(len(m.features))
        want = m.session.run([m.output], {m.input_name: X})[0][:, m.column]
        np.testing.assert_allclose(forest.predict(X), want, atol=1e-5, err_msg=m.name)
        np.testing.assert_array_equal(forest.predict(X), m.predict(X))


def test_per_request_score_runs_the_forests_and_matches_stream_score(
        trained_repo: Path, scoring_server, channel_to, snapshot: FeatureSnapshot) -> None:  # type: ignore[no-untyped-def]
    scorer = Scorer.load(trained_repo, ServiceSettings())
    assert scorer.compiled and scorer._batcher is None
    stub = scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server))
    ids = [str(c) for c in snapshot.customer_ids[:40]]
    one = [stub.Score(scoring_pb2.ScoreRequest(customers=[common_pb2.CustomerRef(customer_id=i)]), timeout=30)
           for i in ids]
    [chunk] = list(stub.StreamScore(iter([scoring_pb2.ScoreChunk(chunk_id=0, customer_ids=ids)]), timeout=30))
    churn = np.frombuffer(chunk.churn_probability, "<f4")
    look = np.frombuffer(chunk.lookalike_score, "<f4")
    # Bit for bit: both paths run the same compiled forests (not onnxruntime's float32 sums on one path).
    assert [r.results[0].scores.churn_probability for r in one] == churn.tolist()
    assert [r.results[0].scores.lookalike_score for r in one] == look.tolist()
    cols = [snapshot.feature_names.index(f) for f in scorer.models["lookalike"].features]
    np.testing.assert_array_equal(churn, scorer.models["churn"].predict(snapshot.X[:40]))
    np.testing.assert_array_equal(look, scorer.models["lookalike"].predict(np.ascontiguousarray(snapshot.X[:40, cols])))

    # Predict (its other models fused into one onnxruntime run) gives the same bits for the compiled ones.
    predicted = stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids[:8]), timeout=30).results
    assert [p.predictions.churn.probability for p in predicted] == churn[:8].tolist()
    assert [p.predictions.lookalike_score for p in predicted] == look[:8].tolist()
