"""Pure conversions between recommendation protobuf messages and engine results."""
from __future__ import annotations

from dataclasses import replace

from services.core.convert import row_error
from services.recommendation.engine import CatalogLists, Ranked
from tenure.errors import TenureError
from tenure.feedback import FeedbackEvent, FeedbackReport, PositionStats
from tenure.online import Event
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


def feedback_from_event(event: Event) -> tuple[FeedbackEvent, str]:
    """An EventService feedback event (payload: the FeedbackEvent message) as the feedback store's event, and
    what is wrong with its envelope ("" if nothing): the envelope's customer_id and timestamp fill the payload's
    when it leaves them empty, and must agree with them when both are set."""
    payload = event.payload
    if not isinstance(payload, recommendation_pb2.FeedbackEvent):
        return FeedbackEvent(event.customer_id, "", 0), "the feedback event has no FeedbackEvent payload"
    fb = feedback_event(payload)
    if fb.customer_id and fb.customer_id != event.customer_id:
        return fb, (f"customer_id {event.customer_id[:100]!r} of the event and {fb.customer_id[:100]!r} of its "
                    "feedback differ; expected the same customer (or the feedback's left empty)")
    if fb.timestamp and fb.timestamp != event.timestamp:
        return fb, (f"timestamp {event.timestamp:.0f} of the event and {fb.timestamp:.0f} of its feedback differ; "
                    "expected the same time (or the feedback's left 0)")
    return replace(fb, customer_id=event.customer_id, timestamp=event.timestamp), ""


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
