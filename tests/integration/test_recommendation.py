"""RecommendationService through a real server on port 0 and generated stubs."""
from __future__ import annotations

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from tenure.artifacts import latest_valid
from tenure.features import customer_columns
from tenure.store import FeatureSnapshot
from tenure.v1 import recommendation_pb2 as rpb
from tenure.v1 import recommendation_pb2_grpc


@pytest.fixture
def stub(recommendation_server, channel_to) -> recommendation_pb2_grpc.RecommendationServiceStub:  # type: ignore[no-untyped-def]
    return recommendation_pb2_grpc.RecommendationServiceStub(channel_to(recommendation_server))


def busy_customer(snapshot: FeatureSnapshot) -> str:
    orders = snapshot.X[:, snapshot.feature_names.index("orders_total")]
    return str(snapshot.customer_ids[int(np.argmax(orders))])


def test_recommend_ranks_candidates_with_the_onnx_model(stub, snapshot, trained_repo) -> None:  # type: ignore[no-untyped-def]
    cid = busy_customer(snapshot)
    resp = stub.Recommend(rpb.RecommendRequest(customer_id=cid, k=10))
    assert len(resp.items) == 10
    assert [i.rank for i in resp.items] == list(range(1, 11))
    pids = [i.product.product_id for i in resp.items]
    assert len(set(pids)) == 10
    scores = [i.score for i in resp.items]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert all(i.product.name and i.product.category for i in resp.items)
    assert resp.candidates_scored == 200 and resp.model.name == "propensity"

    # Same candidates and pair features in-process, scored by onnxruntime directly.
    row = snapshot.index[cid]
    aff = snapshot.affinity
    cust = customer_columns(snapshot.feature_names, snapshot.X[row:row + 1], snapshot.space.categories)
    cand, _src, X = aff.candidates(aff.hist[row].toarray(), aff.hist_last[row].toarray(), cust, 200)
    vdir, _ = latest_valid(trained_repo, "propensity")
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    p = sess.run(["probabilities"], {"features": X})[0][:, 1]
    expected = snapshot.catalog.product_ids[cand[0][np.argsort(-p, kind="stable")[:10]]].tolist()
    assert pids == expected
    np.testing.assert_allclose(scores, np.sort(p)[::-1][:10], atol=1e-6)


def test_exclusions_and_category_filter(stub, snapshot) -> None:  # type: ignore[no-untyped-def]
    cid = busy_customer(snapshot)
    first = stub.Recommend(rpb.RecommendRequest(customer_id=cid, k=5))
    excluded = [i.product.product_id for i in first.items[:3]]
    again = stub.Recommend(rpb.RecommendRequest(customer_id=cid, k=5, exclude_product_ids=excluded + ["no-such"]))
    assert not set(excluded) & {i.product.product_id for i in again.items}
    category = first.items[0].product.category
    only = stub.Recommend(rpb.RecommendRequest(customer_id=cid, k=5, category=category))
    assert only.items and {i.product.category for i in only.items} == {category}


def test_basket_complements(stub, snapshot) -> None:  # type: ignore[no-untyped-def]
    cond = snapshot.affinity.cond
    anchor = int(np.argmax(np.diff(cond.indptr)))  # the product with the most co-purchase neighbours
    pid = str(snapshot.catalog.product_ids[anchor])
    resp = stub.RecommendForBasket(rpb.RecommendForBasketRequest(items=[rpb.BasketItem(product_id=pid, quantity=1)], k=5))
    assert 1 <= len(resp.items) <= 5
    got = [snapshot.catalog.index[i.product.product_id] for i in resp.items]
    assert anchor not in got
    row = cond[anchor].toarray()[0]
    best = np.argsort(-row, kind="stable")[: len(got)]
    assert got == best.tolist()  # a one-item guest basket ranks by P(co-bought)
    np.testing.assert_allclose([i.score for i in resp.items], row[best], atol=1e-6)
    assert all(i.source == rpb.CANDIDATE_SOURCE_CO_PURCHASE for i in resp.items)

    personal = stub.RecommendForBasket(rpb.RecommendForBasketRequest(
        items=[rpb.BasketItem(product_id=pid)], customer_id=busy_customer(snapshot), k=5))
    assert len(personal.items) == 5 and anchor not in [snapshot.catalog.index[i.product.product_id] for i in personal.items]


@pytest.mark.parametrize(
    ("request_", "code", "needle"),
    [
        (rpb.RecommendRequest(customer_id="nobody", k=5), grpc.StatusCode.NOT_FOUND, "nobody"),
        (rpb.RecommendRequest(customer_id="C000001", k=1000), grpc.StatusCode.INVALID_ARGUMENT, "expected 1..100"),
        (rpb.RecommendRequest(customer_id="C000001", k=5, category="Spaceships"), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown category"),
    ],
)
def test_recommend_errors(stub, snapshot, request_, code, needle) -> None:  # type: ignore[no-untyped-def]
    if request_.customer_id == "C000001":
        request_.customer_id = busy_customer(snapshot)
    with pytest.raises(grpc.RpcError) as err:
        stub.Recommend(request_)
    assert err.value.code() == code and needle in err.value.details()


def test_basket_errors(stub) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendForBasket(rpb.RecommendForBasketRequest(items=[rpb.BasketItem(product_id="P-nope")]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "P-nope" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.RecommendForBasket(rpb.RecommendForBasketRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in err.value.details()
