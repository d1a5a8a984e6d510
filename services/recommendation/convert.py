"""Pure conversions between recommendation protobuf messages and engine results."""
from __future__ import annotations

from services.core.convert import row_error
from services.recommendation.engine import CatalogLists, Ranked
from tenure.errors import TenureError
from tenure.feedback import FeedbackEvent, FeedbackReport, PositionStats
from tenure.v1 import common_pb2, recommendation_pb2


def response(ranked: Ranked, catalog: CatalogLists, model: tuple[str, str],
             request_id: str = "") -> recommendation_pb2.RecommendResponse:
    """The ranked products with their catalogue entries (filled in place: fewer message copies)."""
    out = recommendation_pb2.RecommendResponse(
        model=common_pb2.ModelVersion(name=model[0], version=model[1]),
        candidates_scored=ranked.candidates_scored,
        request_id=request_id,
        excluded_recently_shown=ranked.excluded_recently_shown,
    )
    ids, names, categories, prices = catalog.product_ids, catalog.names, catalog.categories, catalog.prices
    items = out.items
    for r, (p, s, src) in enumerate(zip(ranked.products.tolist(), ranked.scores.tolist(), ranked.sources.tolist())):
        item = items.add(score=s, rank=r + 1, source=src)
        prod = item.product
        prod.product_id, prod.name, prod.category, prod.price = ids[p], names[p], categories[p], prices[p]
    return out


def basket_items(request: recommendation_pb2.RecommendForBasketRequest) -> list[tuple[str, int]]:
    return [(item.product_id, item.quantity) for item in request.items]


def feedback_event(event: recommendation_pb2.FeedbackEvent) -> FeedbackEvent:
    """As sent, not checked yet (tenure.feedback.check_event)."""
    return FeedbackEvent(customer_id=event.customer_id, product_id=event.product_id, kind=int(event.kind),
                         position=int(event.position), request_id=event.request_id, timestamp=float(event.timestamp))


def record_response(recorded: int, failures: dict[int, TenureError]) -> recommendation_pb2.RecordFeedbackResponse:
    return recommendation_pb2.RecordFeedbackResponse(
        recorded=recorded,
        failures=[common_pb2.RowFailure(row=i, error=row_error(err)) for i, err in sorted(failures.items())],
    )


def position_stats(stats: PositionStats) -> recommendation_pb2.PositionStats:
    return recommendation_pb2.PositionStats(
        position=stats.position, impressions=stats.impressions, clicks=stats.clicks, purchases=stats.purchases,
        click_through_rate=stats.click_through_rate, conversion_rate=stats.conversion_rate)


def feedback_report(report: FeedbackReport) -> recommendation_pb2.FeedbackReport:
    return recommendation_pb2.FeedbackReport(positions=[position_stats(s) for s in report.positions],
                                             total=position_stats(report.total))
