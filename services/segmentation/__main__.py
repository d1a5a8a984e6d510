"""`python -m services.segmentation` / `tenure serve segmentation`: wiring only."""
from __future__ import annotations

import functools

from services.core.events import SERVICE_NAME as EVENTS_SERVICE
from services.core.events import EventServicer, OnlineHub
from services.core.runtime import Holder
from services.core.server import Service, build_service, run
from services.core.streaming import StreamSlots
from services.core.tracing import service_name, start_tracing
from services.segmentation.changes import SegmentLog
from services.segmentation.engine import MODELS, OnlineMoves, Segmenter
from services.segmentation.servicer import SegmentationServicer
from tenure.settings import ServiceSettings, service_settings_or_exit
from tenure.v1 import events_pb2_grpc, segmentation_pb2, segmentation_pb2_grpc

SERVICE_NAME = segmentation_pb2.DESCRIPTOR.services_by_name["SegmentationService"].full_name


def make_service(settings: ServiceSettings, address: str) -> Service:
    log = SegmentLog(settings.state_dir / "segments.sqlite")
    hub = OnlineHub(settings)
    holder: Holder[Segmenter] = Holder(settings.models_dir, MODELS,
                                       functools.partial(Segmenter.load, settings=settings, log=log, hub=hub),
                                       describe=Segmenter.describe)
    tracing = start_tracing(settings, service_name(SERVICE_NAME))  # None unless settings.otlp_endpoint
    servicer = SegmentationServicer(holder, settings, log, StreamSlots(settings.max_streams), tracing)
    moves = OnlineMoves(lambda: holder.current, log)  # real-time segment moves
    hub.listen(moves)
    service = build_service(address, [
        (segmentation_pb2_grpc.add_SegmentationServiceServicer_to_server, servicer, SERVICE_NAME, holder),
        (events_pb2_grpc.add_EventServiceServicer_to_server, EventServicer(hub), EVENTS_SERVICE, holder),
    ], settings, tracing=tracing)
    service.closers.append(moves.close)
    service.closers.append(hub.close)
    return service


def main(settings: ServiceSettings | None = None, port: int | None = None) -> None:
    settings = settings or service_settings_or_exit("python -m services.segmentation")
    run(make_service, settings, f"{settings.host}:{port if port is not None else settings.segmentation_port}",
        "segmentation")


if __name__ == "__main__":
    main()
