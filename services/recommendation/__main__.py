"""`python -m services.recommendation` / `tenure serve recommendation`: wiring only."""
from __future__ import annotations

import functools

from services.core.events import SERVICE_NAME as EVENTS_SERVICE
from services.core.events import EventServicer, OnlineHub
from services.core.runtime import Holder
from services.core.server import Service, build_service, run
from services.recommendation.engine import MODELS, Recommender
from services.recommendation.servicer import RecommendationServicer
from tenure.feedback import FeedbackStore
from tenure.settings import ServiceSettings, service_settings_or_exit
from tenure.v1 import events_pb2_grpc, recommendation_pb2, recommendation_pb2_grpc

SERVICE_NAME = recommendation_pb2.DESCRIPTOR.services_by_name["RecommendationService"].full_name


def make_service(settings: ServiceSettings, address: str) -> Service:
    # The feedback store outlives the Recommender, which the holder rebuilds when the models change.
    feedback = FeedbackStore(settings.state_dir / "feedback.sqlite", index_days=settings.feedback_exclude_days,
                             max_entries=settings.feedback_index_max_entries)
    # EventService feedback events are recorded like RecordFeedback's (the servicer is made below, once the holder is)
    hub = OnlineHub(settings, feedback=lambda events: servicer.record_events(events))
    holder: Holder[Recommender] = Holder(settings.models_dir, MODELS, functools.partial(Recommender.load, settings=settings,
                                                                                        hub=hub),
                                         describe=Recommender.describe)
    servicer = RecommendationServicer(holder, feedback, settings.feedback_exclude_days)
    service = build_service(address, [
        (recommendation_pb2_grpc.add_RecommendationServiceServicer_to_server, servicer, SERVICE_NAME, holder),
        (events_pb2_grpc.add_EventServiceServicer_to_server, EventServicer(hub), EVENTS_SERVICE, holder),
    ], settings)
    service.closers.append(hub.close)
    return service


def main(settings: ServiceSettings | None = None, port: int | None = None) -> None:
    settings = settings or service_settings_or_exit("python -m services.recommendation")
    run(make_service, settings, f"{settings.host}:{port if port is not None else settings.recommendation_port}",
        "recommendation")


if __name__ == "__main__":
    main()
