"""The demo client: asks the three running services about example customers and prints the answers."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tenure.store import FeatureSnapshot
from tenure.v1 import (
    common_pb2,
    recommendation_pb2,
    recommendation_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    segmentation_pb2,
    segmentation_pb2_grpc,
)

BANDS = {0: "-", 1: "low", 2: "medium", 3: "high"}
STAGES = {v.number: v.name.removeprefix("LIFECYCLE_STAGE_").lower()
          for v in segmentation_pb2.LifecycleStage.DESCRIPTOR.values}
SOURCES = {v.number: v.name.removeprefix("CANDIDATE_SOURCE_").lower().replace("_", " ")
           for v in recommendation_pb2.CandidateSource.DESCRIPTOR.values}


def wait_serving(target: str, timeout_s: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until the server's overall health is SERVING (models loaded and warm)."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the service at {target} exited with {proc.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{target} not SERVING after {timeout_s:.0f}s")


def example_customers(models: Path) -> list[tuple[str, str]]:
    """Three customers worth looking at: a top spender, one overdue, one who just arrived."""
    snap = FeatureSnapshot.load_latest(models)
    col = {n: i for i, n in enumerate(snap.feature_names)}
    X, ids = snap.X, snap.customer_ids
    spend, recency, orders, tenure = (X[:, col[c]] for c in ("spend_total", "recency_days", "orders_total", "tenure_days"))
    top = int(np.argmax(np.where(recency < 30, spend, -1)))
    overdue = int(np.argmax(np.where((recency > 120) & (recency < 300), orders, -1)))
    new = int(np.argmax(np.where(tenure < 30, spend, -1)))
    return [(str(ids[top]), "recent top spender"), (str(ids[overdue]), "frequent buyer gone quiet"),
            (str(ids[new]), "new customer")]


def run_demo(scoring: str, recommendation: str, segmentation: str, models: Path) -> None:
    examples = example_customers(models)
    with grpc.insecure_channel(scoring) as sc, grpc.insecure_channel(recommendation) as rc, \
            grpc.insecure_channel(segmentation) as gc:
        score_stub = scoring_pb2_grpc.ScoringServiceStub(sc)
        rec_stub = recommendation_pb2_grpc.RecommendationServiceStub(rc)
        seg_stub = segmentation_pb2_grpc.SegmentationServiceStub(gc)

        ids = [cid for cid, _ in examples]
        scores = score_stub.Score(scoring_pb2.ScoreRequest(
            customers=[common_pb2.CustomerRef(customer_id=c) for c in ids]), timeout=10)
        segments = seg_stub.GetSegments(segmentation_pb2.GetSegmentsRequest(customer_ids=ids), timeout=10)
        print("\n=== Tenure demo: answers from the running services ===")
        print("models: " + ", ".join(f"{m.name}@{m.version}" for m in scores.models))
        for (cid, why), sres, gres in zip(examples, scores.results, segments.results):
            s, g = sres.scores, gres.segments
            print(f"\nCustomer {cid} ({why})")
            print(f"  churn {s.churn_probability:.2f} ({BANDS[s.churn_band]} risk, next {s.churn_horizon_days} days)"
                  f"   lookalike {s.lookalike_score:.2f}")
            print(f"  RFM {g.rfm.recency}-{g.rfm.frequency}-{g.rfm.monetary} '{g.rfm_segment}', lifecycle "
                  f"{STAGES[g.lifecycle_stage]}; {g.orders} orders, {g.monetary:,.2f} spent, last {g.recency_days:.0f} days ago")
            recs = rec_stub.Recommend(recommendation_pb2.RecommendRequest(customer_id=cid, k=5), timeout=10)
            print(f"  top-5 of {recs.candidates_scored} candidates:")
            for item in recs.items:
                print(f"    {item.rank}. {item.product.name} [{item.product.category}] "
                      f"p={item.score:.3f} ({SOURCES[item.source]})")

        first = rec_stub.Recommend(recommendation_pb2.RecommendRequest(customer_id=ids[0], k=2), timeout=10)
        basket = [recommendation_pb2.BasketItem(product_id=i.product.product_id, quantity=1) for i in first.items]
        print("\nCheckout basket (guest): " + "; ".join(f"{i.product.name} [{i.product.category}]" for i in first.items))
        suggestions = rec_stub.RecommendForBasket(recommendation_pb2.RecommendForBasketRequest(items=basket, k=5),
                                                  timeout=10)
        for item in suggestions.items:
            print(f"    {item.rank}. {item.product.name} [{item.product.category}] p={item.score:.3f} "
                  f"({SOURCES[item.source]})")

        audience = list(seg_stub.StreamLookalikeAudience(segmentation_pb2.LookalikeAudienceRequest(size=5), timeout=10))
        print("\nLookalike audience (top 5 beyond the seed): " +
              ", ".join(f"{m.customer_id} {m.score:.2f}" for m in audience))
        print()
