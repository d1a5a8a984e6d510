"""RecommendationService: convert, rank, convert."""
from __future__ import annotations

import grpc

from services.core.runtime import Holder
from services.core.server import grpc_errors
from services.recommendation import convert
from services.recommendation.engine import Recommender
from tenure.v1 import recommendation_pb2, recommendation_pb2_grpc


class RecommendationServicer(recommendation_pb2_grpc.RecommendationServiceServicer):
    def __init__(self, holder: Holder[Recommender]) -> None:
        self.holder = holder

    @grpc_errors
    def Recommend(self, request: recommendation_pb2.RecommendRequest,
                  context: grpc.ServicerContext) -> recommendation_pb2.RecommendResponse:
        rec = self.holder.get()
        ranked = rec.recommend(request.customer_id, request.k,
                                         list(request.exclude_product_ids), request.category)
        return convert.response(ranked, rec.catalog, (rec.model.name, rec.model.version))

    @grpc_errors
    def RecommendForBasket(self, request: recommendation_pb2.RecommendForBasketRequest,
                           context: grpc.ServicerContext) -> recommendation_pb2.RecommendResponse:
        rec = self.holder.get()
        ranked = rec.recommend_for_basket(convert.basket_items(request),
                                         request.customer_id, request.k, list(request.exclude_product_ids))
        return convert.response(ranked, rec.catalog, (rec.model.name, rec.model.version))
