"""Conversions every service shares: domain errors to per-row errors, model versions."""
from __future__ import annotations

from typing import Any

import numpy as np

from services.core.errors import status_for
from services.core.predictions import UPLIFT_GROUPS, PredictionTable, Predictor
from tenure.errors import TenureError
from tenure.reasons import Reason
from tenure.timing import HORIZONS
from tenure.v1 import common_pb2, scoring_pb2


def row_error(err: TenureError) -> common_pb2.RowError:
    code, message = status_for(err)
    return common_pb2.RowError(code=code.value[0], message=message)


def model_versions(pairs: list[tuple[str, str]]) -> list[common_pb2.ModelVersion]:
    return [common_pb2.ModelVersion(name=n, version=v) for n, v in pairs]


def predictions_message(pred: Predictor, table: PredictionTable, i: int, reasons: list[Reason],
                        X: np.ndarray, refused: frozenset[str] = frozenset(),
                        customer_id: str | None = None) -> scoring_pb2.Predictions:
    """Row i of a PredictionTable (and its reasons; X the same rows' features) as the contract's
    message; the parts whose model is missing are left unset (pred.missing names them)."""
    return scoring_pb2.Predictions(**predictions_fields(pred, table, i, reasons, X, refused, customer_id))


def predictions_fields(pred: Predictor, table: PredictionTable, i: int, reasons: list[Reason],
                       X: np.ndarray, refused: frozenset[str] = frozenset(),
                       customer_id: str | None = None) -> dict[str, Any]:
    """`predictions_message` as the plain dict of its fields (a message field takes it as it is):
    one constructor call for the whole tree costs half of one message object per part.
    refused: channels (lower case) the customer refused (Predictor.refused): ranked after every other
    channel, with opted_out set; their probabilities are unchanged.
    customer_id: whose send time to add (the snapshot's table, tenure.sendtime; the shop's pattern for a
    customer it lacks; unset when the snapshot has no table or no id is given)."""
    parts: dict[str, Any] = {}
    if table.churn is not None and table.churn_band is not None and table.days_to_churn is not None:
        column, row = pred.column, X[i]
        parts["churn"] = {
            "probability": float(table.churn[i]), "band": int(table.churn_band[i]),
            "expected_days_to_churn": float(table.days_to_churn[i]), "horizon_days": pred.churn_horizon_days,
            "reasons": [{"feature": r.feature, "contribution": float(r.contribution), "text": r.text,
                         "value": float(row[column[r.feature]])} for r in reasons]}
    if table.clv_predicted is not None:
        historic, predicted = float(table.clv_historic[i]), float(table.clv_predicted[i])
        parts["clv"] = {"historic": historic, "predicted": predicted, "total": historic + predicted,
                        "horizon_days": pred.clv_horizon_days}
    if pred.horizons:
        P = table.purchase[i].tolist()
        purchase: dict[str, Any] = {f"probability_{h}d": P[k] for k, h in enumerate(HORIZONS) if h in pred.horizons}
        if table.next_purchase_days is not None:
            days = float(table.next_purchase_days[i])
            purchase.update(expected_days_to_next=days, next_purchase_date=pred.next_purchase_date(days))
        gap = float(table.avg_gap_days[i])
        if gap == gap:  # not NaN
            purchase["avg_days_between_orders"] = gap
        parts["purchase"] = purchase
    if table.channels is not None:
        c = table.channels[i].tolist()
        # most likely first, ties in class order (numpy's stable argsort of -p; it also places NaN)
        order = (sorted(range(len(c)), key=lambda j: -c[j]) if all(v == v for v in c)
                 else np.argsort(-table.channels[i], kind="stable").tolist())
        names = pred.channel_names
        if refused:  # a channel the customer refused is never first (stable: the others keep their order)
            out = [j for j in order if names[j].lower() not in refused]
            parts["channels"] = ([{"channel": names[j], "probability": c[j]} for j in out]
                                 + [{"channel": names[j], "probability": c[j], "opted_out": True}
                                    for j in order if names[j].lower() in refused])
        else:
            parts["channels"] = [{"channel": names[j], "probability": c[j]} for j in order]
    if table.lookalike is not None:
        parts["lookalike_score"] = float(table.lookalike[i])
    if table.uplift is not None and table.uplift_p_treated is not None and table.uplift_p_control is not None \
            and table.uplift_group is not None:
        parts["uplift"] = {"uplift": float(table.uplift[i]), "p_treated": float(table.uplift_p_treated[i]),
                           "p_control": float(table.uplift_p_control[i]),
                           "group": UPLIFT_GROUPS[int(table.uplift_group[i])], "window_days": pred.uplift_window_days}
    if customer_id is not None and pred.send_times is not None:
        parts["send_time"] = pred.send_times.fields(pred.snapshot.index.get(customer_id, -1))
    return parts
