"""What an attacker (or a careless client) sends, through real servers: every request gets a precise
status saying what was expected, never INTERNAL; feedback for made-up customers is refused and one
customer's impressions cannot empty their recommendations; bad training data ends the CLI with one
line and exit code 2, publishing nothing."""
from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
import pytest

from tenure.feedback import MAX_IMPRESSIONS_PER_CUSTOMER, MAX_RECENTLY_SHOWN, FeedbackStore
from tenure.store import FeatureSnapshot
from tenure.v1 import recommendation_pb2 as rpb
from tenure.v1 import recommendation_pb2_grpc, scoring_pb2, scoring_pb2_grpc, segmentation_pb2_grpc
from tenure.v1 import segmentation_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
C = pb.Condition


@pytest.fixture
def scoring(scoring_server: Any, channel_to: Any) -> scoring_pb2_grpc.ScoringServiceStub:
    return scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server))


@pytest.fixture
def segmentation(segmentation_server: Any, channel_to: Any) -> segmentation_pb2_grpc.SegmentationServiceStub:
    return segmentation_pb2_grpc.SegmentationServiceStub(channel_to(segmentation_server))


@pytest.fixture
def recommendation(own_recommendation_server: Any, channel_to: Any) -> recommendation_pb2_grpc.RecommendationServiceStub:
    return recommendation_pb2_grpc.RecommendationServiceStub(channel_to(own_recommendation_server))


def refused(call: Callable[[], Any], code: grpc.StatusCode, *needles: str) -> str:
    """The call fails with `code` and a message holding every needle; streams are read to the end."""
    with pytest.raises(grpc.RpcError) as err:
        out = call()
        if not hasattr(out, "ListFields"):  # a stream: the status comes while reading it
            list(out)
    assert err.value.code() == code, err.value.details()
    details = str(err.value.details())
    for needle in needles:
        assert needle in details, details
    return details


def cursor_of(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


# -- scoring -----------------------------------------------------------------------------------------

def test_predict_with_only_unknown_or_empty_ids_fails_per_row(scoring: Any, snapshot: FeatureSnapshot) -> None:
    known = str(snapshot.customer_ids[0])
    resp = scoring.Predict(scoring_pb2.PredictRequest(customer_ids=["ghost-1", "ghost-2"]))
    assert [r.error.code for r in resp.results] == [grpc.StatusCode.NOT_FOUND.value[0]] * 2
    assert "ghost-1" in resp.results[0].error.message
    resp = scoring.Predict(scoring_pb2.PredictRequest(customer_ids=["", known]))
    assert resp.results[0].error.code == INVALID.value[0] and "customer_id is empty" in resp.results[0].error.message
    assert resp.results[1].WhichOneof("outcome") == "predictions" and resp.results[1].predictions.churn.probability > 0
    assert list(scoring.Predict(scoring_pb2.PredictRequest()).results) == []


def test_model_infer_refuses_non_finite_floats(scoring_server: Any, channel_to: Any,
                                               snapshot: FeatureSnapshot) -> None:
    from tenure.v1 import inference_pb2 as ipb
    from tenure.v1 import inference_pb2_grpc

    stub = inference_pb2_grpc.GRPCInferenceServiceStub(channel_to(scoring_server))
    n = len(snapshot.feature_names)
    tensor = ipb.ModelInferRequest.InferInputTensor
    for bad in (math.nan, math.inf, -math.inf):
        row = snapshot.X[0].astype("<f4")
        row[3] = bad
        raw = ipb.ModelInferRequest(model_name="churn", inputs=[tensor(name="features", datatype="FP32", shape=[1, n])],
                                    raw_input_contents=[row.tobytes()])
        refused(lambda r=raw: stub.ModelInfer(r), INVALID, "element 3 (flat index)", "expected finite numbers")
        typed = ipb.ModelInferRequest(model_name="churn", inputs=[tensor(
            name="features", datatype="FP32", shape=[1, n], contents=ipb.InferTensorContents(fp32_contents=row))])
        refused(lambda r=typed: stub.ModelInfer(r), INVALID, "expected finite numbers")
    ok = ipb.ModelInferRequest(model_name="churn", inputs=[tensor(name="features", datatype="FP32", shape=[1, n])],
                               raw_input_contents=[snapshot.X[0].astype("<f4").tobytes()])
    assert stub.ModelInfer(ok).outputs


# -- segmentation ------------------------------------------------------------------------------------

def test_segment_changes_refuse_sequences_beyond_int64_and_unknown_families(segmentation: Any) -> None:
    for after in (2**63, 2**64 - 1):
        refused(lambda a=after: segmentation.StreamSegmentChanges(pb.SegmentChangesRequest(after_sequence=a)),
                INVALID, f"after_sequence={after}", f"expected 0..{2**63 - 1}")
    assert list(segmentation.StreamSegmentChanges(pb.SegmentChangesRequest(after_sequence=2**63 - 1))) == []
    refused(lambda: segmentation.StreamSegmentChanges(pb.SegmentChangesRequest(families=[1, 99])),
            INVALID, "99 is not a segment family", "SEGMENT_FAMILY_RFM (1)", "SEGMENT_FAMILY_GRID (4)")


def test_audience_cursors_are_parsed_defensively(segmentation: Any) -> None:
    query = pb.AudienceQuery(conditions=[C(field="lifecycle", op=pb.CONDITION_OP_IN, values=["active"])], limit=3)
    items = list(segmentation.ExportAudience(query))
    real = items[-1].member.cursor
    nested = base64.urlsafe_b64encode(("[" * 100_000 + "]" * 100_000).encode()).decode()
    shallow = cursor_of(json.loads("[" * 60 + "]" * 60))
    bad = [nested, shallow, cursor_of({"r": 1, "q": "x", "p": math.inf}), cursor_of({"r": True, "q": "x", "p": 1}),
           cursor_of({"r": 1, "q": "x", "p": 1, "extra": 0}), cursor_of([1, 2, 3]), "@@@", real + "x" * 300,
           base64.urlsafe_b64encode(b"\xff\xfe\x00").decode()]
    for cursor in bad:
        query.cursor = cursor
        refused(lambda: segmentation.ExportAudience(query), INVALID, "is not a cursor this service issued")
    query.cursor = real  # the real one still resumes where the first call stopped
    resumed = list(segmentation.ExportAudience(query))
    assert resumed[0].header.skipped == 3 and resumed[1].member.position == 4


def test_numeric_in_uses_its_values(segmentation: Any, snapshot: FeatureSnapshot) -> None:
    orders = snapshot.X[:, snapshot.feature_names.index("orders_total")]

    def count(condition: pb.Condition) -> int:
        items = segmentation.ExportAudience(pb.AudienceQuery(conditions=[condition], limit=1))
        return int(next(iter(items)).header.count)

    want = int(np.isin(orders, np.asarray([1, 2], orders.dtype)).sum())
    assert 0 < want < len(orders)
    assert count(C(field="orders_total", op=pb.CONDITION_OP_IN, values=["1", "2"])) == want
    assert count(C(field="orders_total", op=pb.CONDITION_OP_IN, value=1)) == int((orders == 1).sum())
    for condition, needle in (
            (C(field="orders_total", op=pb.CONDITION_OP_IN, values=["1", "two"]), "values[1] 'two' is not a number"),
            (C(field="orders_total", op=pb.CONDITION_OP_IN, values=["nan"]), "not a finite number"),
            (C(field="orders_total", op=pb.CONDITION_OP_IN, value=3, values=["1"]), "not both"),
            (C(field="orders_total", op=pb.CONDITION_OP_GE, values=["1"]), "values are for op IN"),
            (C(field="churn", op=pb.CONDITION_OP_GE, value=math.nan), "not a finite number")):
        refused(lambda c=condition: segmentation.ExportAudience(pb.AudienceQuery(conditions=[c])), INVALID, needle)
    many = [C(field="churn", op=pb.CONDITION_OP_GE, value=0)] * 65
    refused(lambda: segmentation.ExportAudience(pb.AudienceQuery(conditions=many)), EXHAUSTED, "at most 64")
    refused(lambda: segmentation.ProfileGroup(pb.ProfileRequest(audience=pb.AudienceQuery(conditions=many))),
            EXHAUSTED, "at most 64")


def test_lookalike_min_score_must_be_a_number_in_0_1(segmentation: Any) -> None:
    for bad in (math.nan, math.inf, -math.inf, 1.5, -0.1):
        refused(lambda b=bad: segmentation.StreamLookalikeAudience(pb.LookalikeAudienceRequest(size=5, min_score=b)),
                INVALID, "min_score=", "expected a number in [0, 1]")
    members = list(segmentation.StreamLookalikeAudience(pb.LookalikeAudienceRequest(size=5, min_score=0.0)))
    assert len(members) == 5


def test_job_name_with_a_newline_is_refused(segmentation: Any, trained_repo: Path, snapshot: FeatureSnapshot) -> None:
    seed = [str(c) for c in snapshot.customer_ids[:30]]
    for name in ("lookalike-x\n", "x\n", "../x", ""):
        refused(lambda n=name: segmentation.StartLookalikeJob(pb.LookalikeJobRequest(name=n, seed_customer_ids=seed)),
                INVALID, "expected 1-")
    assert not [p for p in trained_repo.iterdir() if "\n" in p.name or p.name.startswith("lookalike-x")]


def test_single_customer_calls_refuse_an_empty_id(segmentation: Any, recommendation: Any) -> None:
    refused(lambda: segmentation.GetCustomer360(pb.Customer360Request()), INVALID, "customer_id is empty")
    refused(lambda: recommendation.Recommend(rpb.RecommendRequest()), INVALID, "customer_id is empty")
    rows = segmentation.GetSegments(pb.GetSegmentsRequest(customer_ids=["", "ghost"])).results
    assert [r.error.code for r in rows] == [INVALID.value[0], grpc.StatusCode.NOT_FOUND.value[0]]


# -- recommendation ----------------------------------------------------------------------------------

def test_recommendation_lists_are_bounded(recommendation: Any, snapshot: FeatureSnapshot) -> None:
    cid, pid = str(snapshot.customer_ids[0]), str(snapshot.catalog.product_ids[0])
    refused(lambda: recommendation.Recommend(rpb.RecommendRequest(customer_id=cid, exclude_product_ids=[pid] * 10_001)),
            EXHAUSTED, "exclude_product_ids; at most 10,000")
    refused(lambda: recommendation.RecommendForBasket(rpb.RecommendForBasketRequest(
        items=[rpb.BasketItem(product_id=pid)] * 1_001)), EXHAUSTED, "basket items; at most 1,000")
    refused(lambda: recommendation.Recommend(rpb.RecommendRequest(customer_id=cid, k=2**32 - 1)), INVALID,
            "expected 1..100")


def test_feedback_for_unknown_customers_is_refused_and_not_stored(recommendation: Any, snapshot: FeatureSnapshot,
                                                                 feedback_state: Path) -> None:
    pid = str(snapshot.catalog.product_ids[0])
    events = [rpb.FeedbackEvent(customer_id=f"ghost-{i}", product_id=pid, kind=rpb.FEEDBACK_KIND_IMPRESSION)
              for i in range(2_000)]
    resp = recommendation.RecordFeedback(rpb.RecordFeedbackRequest(events=events))
    assert resp.recorded == 0 and len(resp.failures) == 2_000
    assert {f.error.code for f in resp.failures} == {grpc.StatusCode.NOT_FOUND.value[0]}
    assert "ghost-0" in resp.failures[0].error.message and "known customers only" in resp.failures[0].error.message
    stored = FeedbackStore(feedback_state / "feedback.sqlite", index_days=0).read_events()
    assert not stored["customer_id"].str.startswith("ghost-").any()


def test_impressions_cannot_empty_a_customers_recommendations(recommendation: Any,
                                                             snapshot: FeatureSnapshot) -> None:
    cid = str(snapshot.customer_ids[1])
    products = [str(p) for p in snapshot.catalog.product_ids]
    assert len(products) >= 250
    # One call with an impression of every product (the attack that emptied Recommend for 7 days).
    events = [rpb.FeedbackEvent(customer_id=cid, product_id=p, kind=rpb.FEEDBACK_KIND_IMPRESSION, position=1)
              for p in products]
    resp = recommendation.RecordFeedback(rpb.RecordFeedbackRequest(events=events))
    assert resp.recorded == MAX_IMPRESSIONS_PER_CUSTOMER
    assert [f.row for f in resp.failures] == list(range(MAX_IMPRESSIONS_PER_CUSTOMER, len(products)))
    assert {f.error.code for f in resp.failures} == {EXHAUSTED.value[0]}
    assert f"at most {MAX_IMPRESSIONS_PER_CUSTOMER}" in resp.failures[0].error.message
    # The rest in more calls of 100: every product has been shown, none clicked.
    for start in range(MAX_IMPRESSIONS_PER_CUSTOMER, len(products), MAX_IMPRESSIONS_PER_CUSTOMER):
        part = events[start:start + MAX_IMPRESSIONS_PER_CUSTOMER]
        assert recommendation.RecordFeedback(rpb.RecordFeedbackRequest(events=part)).recorded == len(part)
    answer = recommendation.Recommend(rpb.RecommendRequest(customer_id=cid, k=100))
    assert answer.excluded_recently_shown == MAX_RECENTLY_SHOWN
    assert len(answer.items) == 100
    assert recommendation.Recommend(rpb.RecommendRequest(customer_id=cid, k=10)).items


# -- bad training data, through the CLI ----------------------------------------------------------------

def _train(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TENURE_")}
    return subprocess.run([sys.executable, "-m", "tenure.cli", "train", *args], capture_output=True, text=True,
                          timeout=600, env=clean)


def _failed_cleanly(proc: subprocess.CompletedProcess[str], models: Path, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tenure train: error: ")
    assert [line for line in proc.stderr.splitlines() if line.startswith("tenure train: error: ")] == [last]
    for needle in needles:
        assert needle in last, last
    published = [p for p in models.glob("*/*")] if models.exists() else []
    assert published == [], published  # nothing written to the repository
    assert not list(models.parent.glob(f".{models.name}.staging-*"))  # no staging left behind


def test_header_only_data_is_one_line_and_exit_2(small_shop: Any, tmp_path: Path) -> None:
    from tenure.data import Shop, write_shop

    tx = small_shop.transactions
    write_shop(Shop(name="empty", transactions=tx.iloc[:0], customers=None, products=None), tmp_path / "shop")
    models = tmp_path / "models"
    _failed_cleanly(_train("--shop", str(tmp_path / "shop"), "--models", str(models)), models,
                    "no transactions to train on")
    tx.iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    _failed_cleanly(_train("--transactions", str(tmp_path / "empty.csv"), "--models", str(models)), models,
                    "no transactions to train on")


def test_a_byte_that_is_not_utf8_names_the_line_and_the_encoding_setting(small_shop: Any, tmp_path: Path) -> None:
    tx = small_shop.transactions.iloc[:500].copy()
    tx["category"] = tx["category"].astype(object)
    tx.loc[tx.index[300], "category"] = "Caf\u00e9"
    text = tx.to_csv(index=False).encode("utf-8").replace("Caf\u00e9".encode(), "Caf\u00e9".encode("latin-1"))
    (tmp_path / "export.csv").write_bytes(text)
    line = text[: text.index(b"Caf\xe9")].count(b"\n") + 1
    models = tmp_path / "models"
    _failed_cleanly(_train("--transactions", str(tmp_path / "export.csv"), "--models", str(models)), models,
                    "export.csv: ", f"line {line} (byte offset {text.index(b'Caf') + 3:,}): byte 0xe9",
                    "is not valid utf-8", "--encoding")


@pytest.mark.slow
def test_thirty_customers_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from tenure.data import write_shop
    from tenure.synthetic import generate_shop

    write_shop(generate_shop(n_customers=30, seed=2), tmp_path / "shop")
    models = tmp_path / "models"
    _failed_cleanly(_train("--shop", str(tmp_path / "shop"), "--models", str(models)), models,
                    "no model could be trained on this data, nothing was published")
