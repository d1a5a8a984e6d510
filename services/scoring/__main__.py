"""`python -m services.scoring` / `tenure serve scoring`: wiring only."""
from __future__ import annotations

import functools

from services.core.runtime import Holder
from services.core.server import Service, build_service, run
from services.scoring.engine import MODELS, Scorer
from services.scoring.servicer import ScoringServicer
from tenure.settings import ServiceSettings
from tenure.v1 import scoring_pb2, scoring_pb2_grpc

SERVICE_NAME = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name


def make_service(settings: ServiceSettings, address: str) -> Service:
    holder: Holder[Scorer] = Holder(settings.models_dir, MODELS, functools.partial(Scorer.load, settings=settings))
    servicer = ScoringServicer(holder)
    return build_service(address, [(scoring_pb2_grpc.add_ScoringServiceServicer_to_server, servicer)],
                         [SERVICE_NAME], holder, settings)


def main(settings: ServiceSettings | None = None, port: int | None = None) -> None:
    settings = settings or ServiceSettings.from_env()
    run(make_service, settings, f"{settings.host}:{port if port is not None else settings.scoring_port}", "scoring")


if __name__ == "__main__":
    main()
