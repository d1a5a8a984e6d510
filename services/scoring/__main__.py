"""`python -m services.scoring` / `tenure serve scoring`: wiring only."""
from __future__ import annotations

import functools

from services.core.events import SERVICE_NAME as EVENTS_SERVICE
from services.core.events import EventServicer, OnlineHub
from services.core.models import ModelSet
from services.core.runtime import Holder, servable_models
from services.core.server import Service, build_service, run
from services.core.streaming import StreamSlots
from services.scoring.engine import MODELS, Scorer
from services.scoring.oip_servicer import InferenceServicer
from services.scoring.servicer import ScoringServicer
from tenure.settings import ServiceSettings, service_settings_or_exit
from tenure.v1 import events_pb2_grpc, inference_pb2, inference_pb2_grpc, scoring_pb2, scoring_pb2_grpc

SERVICE_NAME = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
OIP_SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


def make_service(settings: ServiceSettings, address: str) -> Service:
    hub = OnlineHub(settings)
    scorer: Holder[Scorer] = Holder(settings.models_dir, MODELS, functools.partial(Scorer.load, settings=settings,
                                                                                  hub=hub), describe=Scorer.describe)
    models: Holder[ModelSet] = Holder(settings.models_dir, servable_models,
                                      functools.partial(ModelSet.load, settings=settings), describe=ModelSet.describe)
    streams = StreamSlots(settings.max_streams, settings.stream_idle_timeout_s)  # shared by both services of this port
    service = build_service(address, [
        (scoring_pb2_grpc.add_ScoringServiceServicer_to_server,
         ScoringServicer(scorer, streams, settings.stream_window), SERVICE_NAME, scorer),
        (inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
         InferenceServicer(models, settings.max_batch_rows, streams), OIP_SERVICE_NAME, models),
        (events_pb2_grpc.add_EventServiceServicer_to_server, EventServicer(hub), EVENTS_SERVICE, scorer),
    ], settings)
    service.closers.append(hub.close)
    return service


def main(settings: ServiceSettings | None = None, port: int | None = None) -> None:
    settings = settings or service_settings_or_exit("python -m services.scoring")
    run(make_service, settings, f"{settings.host}:{port if port is not None else settings.scoring_port}", "scoring")


if __name__ == "__main__":
    main()
