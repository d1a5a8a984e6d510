"""ScoringService: convert, score, convert."""
from __future__ import annotations

from typing import Any, Iterator

import grpc

from services.core.convert import model_versions, predictions_fields, row_error
from services.core.handlers import chunks
from services.core.predictions import Predictor
from services.core.runtime import Holder
from services.core.server import deadline_of
from services.core.streaming import StreamSlots, ordered_map
from services.scoring import convert
from services.scoring.engine import Scorer
from tenure.errors import InvalidInput, TooLarge
from tenure.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc

MAX_REASONS = 10
PREDICT_CHUNK_ROWS = 500
"""Predict computes this many customers at a time and stops between them once the caller is gone."""


def _dated(fields: dict[str, Any], pred: Predictor, shift: float | None) -> dict[str, Any]:
    """An online row's predictions: its next purchase date counts from the time the row is as of (`shift` days
    after the snapshot cutoff), not from the cutoff."""
    purchase = fields.get("purchase")
    if shift is not None and purchase is not None and "expected_days_to_next" in purchase:
        purchase["next_purchase_date"] = pred.next_purchase_date(purchase["expected_days_to_next"] + shift)
    return fields


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, holder: Holder[Scorer], streams: StreamSlots, stream_window: int = 4) -> None:
        self.holder = holder
        self.streams = streams
        self.stream_window = stream_window
        self._version_cache: tuple[Scorer | None, list[common_pb2.ModelVersion]] = (None, [])
        self._tail_cache: tuple[Scorer | None, bytes] = (None, b"")
        self._predict_cache: tuple[Scorer | None, list[common_pb2.ModelVersion], str] = (None, [], "")

    def Score(self, request: scoring_pb2.ScoreRequest,
              context: grpc.ServicerContext) -> scoring_pb2.ScoreResponse | bytes:
        scorer = self.holder.get()
        if len(request.customers) > scorer.max_rows:
            raise TooLarge(f"{len(request.customers)} customers in one Score call; at most {scorer.max_rows} "
                           "(use StreamScore for bulk jobs)")
        keys, X, errors, inline_rows = convert.refs_to_matrix(list(request.customers), scorer.n_features,
                                                              scorer.lookup)
        wanted = scorer.wanted(list(request.scores))
        if inline_rows:
            errors.update(scorer.check_matrix(X[inline_rows], inline_rows))
        scores = scorer.score(X, errors, wanted, deadline_of(context), context.is_active)
        bands = scorer.bands(scores.churn) if scores.churn is not None else None
        wire = convert.score_response_bytes(keys, scores, bands, scorer.horizon_days, self._score_tail(scorer))
        if wire is not None:  # sent as it is (services.core.handlers)
            return wire
        return convert.score_response(keys, scores, bands, scorer.horizon_days, self._versions(scorer),
                                      scorer.missing)

    def _score_tail(self, scorer: Scorer) -> bytes:
        """The serialised models and missing_models of the loaded scorer's ScoreResponse, built once per
        loaded version (one tuple read and replaced whole, as in `_versions`)."""
        cached_for, tail = self._tail_cache
        if cached_for is not scorer:
            tail = convert.score_response_tail(self._versions(scorer), scorer.missing)
            self._tail_cache = (scorer, tail)
        return tail

    def _versions(self, scorer: Scorer) -> list[common_pb2.ModelVersion]:
        """The ModelVersion messages of the loaded scorer, built once per loaded version. One tuple,
        read and replaced whole: during a hot swap, calls on the old and the new scorer run at once,
        and each must get its own scorer's versions."""
        cached_for, messages = self._version_cache
        if cached_for is not scorer:
            messages = model_versions(scorer.versions())
            self._version_cache = (scorer, messages)
        return messages

    def StreamScore(self, request_iterator: Iterator[scoring_pb2.ScoreChunk],
                    context: grpc.ServicerContext) -> Iterator[scoring_pb2.ScoreChunkResult]:
        def one(chunk: scoring_pb2.ScoreChunk) -> scoring_pb2.ScoreChunkResult:
            scorer = self.holder.get()
            n = len(chunk.customer_ids)
            if n > scorer.max_rows:
                raise TooLarge(f"chunk {chunk.chunk_id}: {n} rows; at most {scorer.max_rows} per chunk")
            wanted = scorer.wanted(list(chunk.scores))
            X = convert.chunk_matrix(chunk, scorer.n_features)
            if X is None:
                X, errors = scorer.lookup(list(chunk.customer_ids))
            else:
                errors = scorer.check_matrix(X)
            scores = scorer.score(X, errors, wanted)
            return convert.chunk_result(chunk, scores, n, scorer.missing, nan_for_missing=not chunk.scores)

        with self.streams.hold():
            yield from ordered_map(request_iterator, one, self.stream_window, self.streams.idle_timeout_s)

    def Predict(self, request: scoring_pb2.PredictRequest, context: grpc.ServicerContext) -> scoring_pb2.PredictResponse:
        scorer = self.holder.get()
        pred = scorer.predictor
        ids = list(request.customer_ids)
        if len(ids) > scorer.max_rows:
            raise TooLarge(f"{len(ids)} customers in one Predict call; at most {scorer.max_rows}")
        k = request.reasons or 3
        if k > MAX_REASONS:
            raise InvalidInput(f"reasons={k}; expected 0..{MAX_REASONS} (0 means 3)")
        X, errors, shift = scorer.lookup_dated(ids)  # the online rows (and their as-of times) over the snapshot's
        results: list[scoring_pb2.CustomerPredictions | dict[str, Any]] = []  # a dict: the message's fields
        for part in chunks(context, len(ids), PREDICT_CHUNK_ROWS):  # stops once the caller is gone
            ok = [i for i in part if i not in errors]
            if not ok:  # only unknown ids here: every row is its own error, no model runs on zero rows
                results.extend(scoring_pb2.CustomerPredictions(customer_id=ids[i], error=row_error(errors[i]))
                               for i in part)
                continue
            Xok = X[ok] if errors or len(part) < len(ids) else X
            table, reasons = pred.predict_with_reasons(Xok, k)
            position = {row: j for j, row in enumerate(ok)}
            results.extend(scoring_pb2.CustomerPredictions(customer_id=ids[i], error=row_error(errors[i]))
                           if i in errors else {"customer_id": ids[i], "predictions": _dated(predictions_fields(
                               pred, table, position[i], reasons[position[i]], Xok, pred.refused(ids[i]), ids[i]), pred,
                               shift.get(i))}
                           for i in part)
        versions, cutoff = self._predict_constants(scorer)
        response = scoring_pb2.PredictResponse(models=versions, snapshot_cutoff=cutoff, missing_models=pred.missing)
        # One message per C call: building 10,000 of them in one constructor call would hold the GIL for ~100 ms,
        # and every other call of the process (a one-customer Score, health) would wait that long.
        add, append = response.results.add, response.results.append
        for r in results:
            if type(r) is dict:
                add(**r)
            else:
                append(r)
        return response

    def _predict_constants(self, scorer: Scorer) -> tuple[list[common_pb2.ModelVersion], str]:
        """Predict's ModelVersion messages and snapshot cutoff, built once per loaded version (one
        tuple read and replaced whole, as in `_versions`)."""
        cached_for, versions, cutoff = self._predict_cache
        if cached_for is not scorer:
            pred = scorer.predictor
            versions, cutoff = model_versions(pred.versions()), pred.cutoff.isoformat()
            self._predict_cache = (scorer, versions, cutoff)
        return versions, cutoff

    def GetModelInfo(self, request: scoring_pb2.GetModelInfoRequest,
                     context: grpc.ServicerContext) -> scoring_pb2.ModelInfo:
        scorer = self.holder.get()
        return scoring_pb2.ModelInfo(
            customer_features=scorer.features,
            models=model_versions(scorer.predictor.versions()),
            churn_horizon_days=scorer.horizon_days,
            snapshot_cutoff=scorer.snapshot.cutoff.isoformat(),
            max_batch_rows=scorer.max_rows,
            missing_models=scorer.predictor.missing,
        )
