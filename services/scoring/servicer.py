"""ScoringService: convert, score in a worker thread, convert."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

import grpc

from services.core.convert import model_versions
from services.core.runtime import Holder
from services.core.server import grpc_errors
from services.scoring import convert
from services.scoring.engine import Scorer
from tenure.errors import TooLarge
from tenure.v1 import scoring_pb2, scoring_pb2_grpc


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, holder: Holder[Scorer]) -> None:
        self.holder = holder

    @grpc_errors
    async def Score(self, request: scoring_pb2.ScoreRequest, context: grpc.aio.ServicerContext) -> scoring_pb2.ScoreResponse:
        scorer = self.holder.get()
        if len(request.customers) > scorer.max_rows:
            raise TooLarge(f"{len(request.customers)} customers in one Score call; at most {scorer.max_rows} "
                           "(use StreamScore for bulk jobs)")
        keys, X, errors = convert.refs_to_matrix(list(request.customers), scorer.n_features, scorer.lookup)
        errors.update({i: e for i, e in scorer.check_matrix(X).items() if i not in errors})
        scores = await asyncio.to_thread(scorer.score, X, errors)
        return convert.score_response(keys, scores.churn, scores.lookalike, scorer.bands(scores.churn),
                                      scores.errors, scorer.horizon_days, scorer.versions())

    @grpc_errors
    async def StreamScore(self, request_iterator: AsyncIterator[scoring_pb2.ScoreChunk],
                          context: grpc.aio.ServicerContext) -> AsyncIterator[scoring_pb2.ScoreChunkResult]:
        async for chunk in request_iterator:
            scorer = self.holder.get()
            n = len(chunk.customer_ids)
            if n > scorer.max_rows:
                raise TooLarge(f"chunk {chunk.chunk_id}: {n} rows; at most {scorer.max_rows} per chunk")
            X = convert.chunk_matrix(chunk, scorer.n_features)
            if X is None:
                X, errors = scorer.lookup(list(chunk.customer_ids))
            else:
                errors = scorer.check_matrix(X)
            scores = await asyncio.to_thread(scorer.score, X, errors)
            yield convert.chunk_result(chunk, scores.churn, scores.lookalike, scores.errors)

    @grpc_errors
    async def GetModelInfo(self, request: scoring_pb2.GetModelInfoRequest,
                           context: grpc.aio.ServicerContext) -> scoring_pb2.ModelInfo:
        scorer = self.holder.get()
        return scoring_pb2.ModelInfo(
            customer_features=scorer.features,
            models=model_versions(scorer.versions()),
            churn_horizon_days=scorer.horizon_days,
            snapshot_cutoff=scorer.snapshot.cutoff.isoformat(),
            max_batch_rows=scorer.max_rows,
        )
