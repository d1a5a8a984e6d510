"""Pure conversions between recommendation protobuf messages and engine results."""
from __future__ import annotations

from services.recommendation.engine import Ranked
from tenure.store import Catalog
from tenure.v1 import common_pb2, recommendation_pb2


def product(catalog: Catalog, idx: int) -> common_pb2.Product:
    return common_pb2.Product(product_id=catalog.product_ids[idx], name=catalog.names[idx],
                              category=catalog.categories[idx], price=float(catalog.price[idx]))


def response(ranked: Ranked, catalog: Catalog, model: tuple[str, str]) -> recommendation_pb2.RecommendResponse:
    return recommendation_pb2.RecommendResponse(
        items=[recommendation_pb2.Recommendation(product=product(catalog, int(p)), score=float(s), rank=r + 1,
                                                 source=recommendation_pb2.CandidateSource.ValueType(int(src)))
               for r, (p, s, src) in enumerate(zip(ranked.products, ranked.scores, ranked.sources))],
        model=common_pb2.ModelVersion(name=model[0], version=model[1]),
        candidates_scored=ranked.candidates_scored,
    )


def basket_items(request: recommendation_pb2.RecommendForBasketRequest) -> list[tuple[str, int]]:
    return [(item.product_id, item.quantity) for item in request.items]
