"""Conversions every service shares: domain errors to per-row errors, model versions."""
from __future__ import annotations

import numpy as np

from services.core.errors import status_for
from services.core.predictions import PredictionTable, Predictor
from tenure.errors import TenureError
from tenure.reasons import Reason
from tenure.v1 import common_pb2, scoring_pb2


def row_error(err: TenureError) -> common_pb2.RowError:
    code, message = status_for(err)
    return common_pb2.RowError(code=code.value[0], message=message)


def model_versions(pairs: list[tuple[str, str]]) -> list[common_pb2.ModelVersion]:
    return [common_pb2.ModelVersion(name=n, version=v) for n, v in pairs]


def predictions_message(pred: Predictor, table: PredictionTable, i: int, reasons: list[Reason],
                        X: np.ndarray) -> scoring_pb2.Predictions:
    """Row i of a PredictionTable (and its reasons; X the same rows' features) as the contract's message."""
    p7, p30, p90 = (float(v) for v in table.purchase[i])
    channels = []
    if table.channels is not None:
        order = np.argsort(-table.channels[i], kind="stable")
        channels = [scoring_pb2.ChannelAffinity(channel=pred.channel_names[j], probability=float(table.channels[i, j]))
                    for j in order]
    value_of = {name: j for j, name in enumerate(pred.writer.names)}
    return scoring_pb2.Predictions(
        churn=scoring_pb2.ChurnPrediction(
            probability=float(table.churn[i]), band=scoring_pb2.RiskBand.ValueType(int(table.churn_band[i])),
            expected_days_to_churn=float(table.days_to_churn[i]), horizon_days=pred.churn_horizon_days,
            reasons=[scoring_pb2.ChurnReason(feature=r.feature, contribution=float(r.contribution), text=r.text,
                                             value=float(X[i, value_of[r.feature]]))
                     for r in reasons]),
        clv=scoring_pb2.ClvPrediction(historic=float(table.clv_historic[i]), predicted=float(table.clv_predicted[i]),
                                      total=float(table.clv_historic[i] + table.clv_predicted[i]),
                                      horizon_days=pred.clv_horizon_days),
        purchase=scoring_pb2.PurchasePrediction(
            probability_7d=p7, probability_30d=p30, probability_90d=p90,
            expected_days_to_next=float(table.next_purchase_days[i]),
            next_purchase_date=pred.next_purchase_date(float(table.next_purchase_days[i])),
            avg_days_between_orders=float(table.avg_gap_days[i])),
        channels=channels,
        lookalike_score=float(table.lookalike[i]),
    )
