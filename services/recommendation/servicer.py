"""RecommendationService: convert, rank, convert; feedback in and the click-through report out."""
from __future__ import annotations

import math
import time
import uuid

import grpc

from services.core import metrics
from services.core.runtime import Holder
from services.recommendation import convert
from services.recommendation.engine import Recommender
from tenure.errors import InvalidInput, TooLarge
from tenure.feedback import KIND_NAMES, MAX_EVENTS_PER_CALL, FeedbackEvent, FeedbackStore, check_events
from tenure.online import Event
from tenure.v1 import recommendation_pb2, recommendation_pb2_grpc


class RecommendationServicer(recommendation_pb2_grpc.RecommendationServiceServicer):
    """feedback: outlives the Recommender (which the holder swaps when models change);
    exclude_days: Recommend leaves out products shown this recently without a click (0: never)."""

    def __init__(self, holder: Holder[Recommender], feedback: FeedbackStore, exclude_days: float = 7.0) -> None:
        self.holder = holder
        self.feedback = feedback
        self.exclude_days = exclude_days

    def Recommend(self, request: recommendation_pb2.RecommendRequest,
                  context: grpc.ServicerContext) -> recommendation_pb2.RecommendResponse:
        rec = self.holder.get()
        rec.require()  # before reading the feedback store: without a model there is nothing to rank
        recent: list[str] = []
        if not request.include_recently_shown and self.exclude_days > 0:
            recent = self.feedback.recently_shown(request.customer_id, time.time(), self.exclude_days)
        declared = rec.declared_categories(request.customer_id) if request.declared_interests_only else []
        ranked = rec.recommend(request.customer_id, request.k, list(request.exclude_product_ids), request.category,
                               recent, categories=declared)
        out = convert.response(ranked, rec.catalog_lists, rec.model_version(), uuid.uuid4().hex)
        out.categories_applied.extend(declared)
        return out

    def RecommendForBasket(self, request: recommendation_pb2.RecommendForBasketRequest,
                           context: grpc.ServicerContext) -> recommendation_pb2.RecommendResponse:
        rec = self.holder.get()
        ranked = rec.recommend_for_basket(convert.basket_items(request),
                                         request.customer_id, request.k, list(request.exclude_product_ids))
        return convert.response(ranked, rec.catalog_lists, rec.model_version(), uuid.uuid4().hex)

    def RecordFeedback(self, request: recommendation_pb2.RecordFeedbackRequest,
                       context: grpc.ServicerContext) -> recommendation_pb2.RecordFeedbackResponse:
        n = len(request.events)
        if n > MAX_EVENTS_PER_CALL:
            raise TooLarge(f"{n:,} feedback events in one call; at most {MAX_EVENTS_PER_CALL:,}")
        rec = self.holder.get()
        now = time.time()
        # Checked against the loaded snapshot: unknown products and customers are refused row by row,
        # so that nobody can fill the store (and the recently-shown index) with made-up ids.
        events = [convert.feedback_event(e) for e in request.events]
        good, failures = check_events(events, now, products=rec.catalog.index,
                                      customers=rec.known_customers(e.customer_id for e in events))
        recorded = self.feedback.record(good, now)
        _count_feedback([e.kind for e in good] if recorded else [], [request.events[i].kind for i in failures])
        return convert.record_response(recorded, failures)

    def record_events(self, events: list[Event]) -> list[str | None]:
        """Feedback events from EventService (kind "feedback", payload a FeedbackEvent), recorded with
        RecordFeedback's rules: a message per refused event, None per recorded one (OnlineHub's feedback)."""
        rec = self.holder.get()
        now = time.time()
        problems: list[str | None] = [None] * len(events)
        candidates: list[FeedbackEvent] = []
        where: list[int] = []
        refused: list[int] = []
        for i, event in enumerate(events):
            fb, problem = convert.feedback_from_event(event)
            if problem:
                problems[i] = problem
                refused.append(fb.kind)
            else:
                candidates.append(fb)
                where.append(i)
        good, failures = check_events(candidates, now, products=rec.catalog.index,
                                      customers=rec.known_customers(e.customer_id for e in candidates))
        for j, err in failures.items():
            problems[where[j]] = str(err)
        recorded = self.feedback.record(good, now)
        _count_feedback([e.kind for e in good] if recorded else [], refused + [candidates[j].kind for j in failures])
        return problems

    def GetFeedbackReport(self, request: recommendation_pb2.FeedbackReportRequest,
                          context: grpc.ServicerContext) -> recommendation_pb2.FeedbackReport:
        for name, value in (("since", request.since), ("until", request.until)):
            if not math.isfinite(value) or value < 0:
                raise InvalidInput(f"{name}={value}; expected Unix seconds >= 0 (0: unbounded)")
        since = request.since or None
        until = request.until or None  # "up to now": nothing recorded lies beyond now + clock skew
        if since is not None and until is not None and until <= since:
            raise InvalidInput(f"until={until} is not after since={since}")
        return convert.feedback_report(self.feedback.report(since, until))


def _count_feedback(recorded: list[int], refused: list[int]) -> None:
    """tenure_feedback_events_total by type ("unknown" for a kind outside the contract) and outcome."""
    for outcome, kinds in (("recorded", recorded), ("refused", refused)):
        counts: dict[str, int] = {}
        for kind in kinds:
            name = KIND_NAMES.get(int(kind), "unknown")
            counts[name] = counts.get(name, 0) + 1
        for name, n in counts.items():
            metrics.FEEDBACK.labels(name, outcome).inc(n)
