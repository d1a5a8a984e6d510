"""Predict's per-request path (one fused onnxruntime run, scalar arithmetic for one row, reasons
without numpy) gives exactly the answers of the plain batched computation."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.core import runtime
from services.core.convert import predictions_message
from services.core.predictions import (
    Predictor,
    average_gap_one,
    days_to_churn_one,
    next_purchase_one,
)
from tenure.reasons import ReasonWriter, expected_days_to_churn
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot
from tenure.timing import average_gap_days, next_purchase_days
from tenure.v1 import scoring_pb2, scoring_pb2_grpc


def test_one_row_predictions_equal_the_batched_ones(trained_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "TREE_BACKEND", "onnxruntime", raising=False)  # the fused graph is onnxruntime's
    plain = Predictor.load(trained_repo, ServiceSettings(ort_threads=1))
    fast = Predictor.load(trained_repo, ServiceSettings(ort_threads=1), fused=True)
    X = plain.snapshot.X[:: max(1, len(plain.snapshot.X) // 300)]
    for k in (1, 3, 10):
        table, reasons = plain.predict(X), plain.reasons(X, k)
        batched, batched_reasons = fast.predict_with_reasons(X, k)
        for i in range(len(X)):
            one, one_reasons = fast.predict_with_reasons(X[i:i + 1], k)
            want = predictions_message(fast, batched, i, batched_reasons[i], X)
            assert predictions_message(fast, one, 0, one_reasons[0], X[i:i + 1]) == want, i
            # the per-model sessions (or a compiled forest) agree within float32 rounding
            plain_i = predictions_message(plain, table, i, reasons[i], X)
            assert plain_i.churn.probability == pytest.approx(want.churn.probability, abs=1e-6)
            assert [r.feature for r in plain_i.churn.reasons] == [r.feature for r in want.churn.reasons]
            assert plain_i.lookalike_score == pytest.approx(want.lookalike_score, abs=1e-6)


def test_served_single_customer_calls_equal_one_batched_call(scoring_server, channel_to,  # type: ignore[no-untyped-def]
                                                             snapshot: FeatureSnapshot) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(channel_to(scoring_server))
    ids = [str(c) for c in snapshot.customer_ids[:40]]
    batch = stub.Predict(scoring_pb2.PredictRequest(customer_ids=ids, reasons=4), timeout=30)
    for cid, want in zip(ids, batch.results):
        got = stub.Predict(scoring_pb2.PredictRequest(customer_ids=[cid], reasons=4), timeout=30)
        assert got.results[0] == want
        assert list(got.models) == list(batch.models) and got.snapshot_cutoff == batch.snapshot_cutoff


@pytest.mark.parametrize("p", [0.0, 1e-12, 0.2, 0.5, 0.97, 1.0 - 1e-9, 1.0, math.nan])
@pytest.mark.parametrize("recency, gap", [(10.0, -1.0), (5.0, 30.0), (80.0, 30.0), (0.0, 0.0)])
def test_scalar_days_to_churn_and_gap_equal_the_vectorised_forms(p: float, recency: float, gap: float) -> None:
    want = expected_days_to_churn(np.array([p]), 90, np.array([recency]), np.array([gap]))[0]
    got = days_to_churn_one(p, 90, recency, gap)
    assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-12)
    if p == p:
        want_gap = average_gap_days(np.array([gap]), np.array([p]), 90)[0]
        assert average_gap_one(gap, p, 90) == pytest.approx(want_gap, rel=1e-12)


def test_scalar_next_purchase_equals_the_vectorised_form() -> None:
    rng = np.random.default_rng(7)
    edge = np.array([[0, 0, 0], [1, 1, 1], [0.9, 0.1, 0.5], [0, 0, 1e-12]], np.float64)
    P: np.ndarray = np.vstack([rng.uniform(0, 1, (300, 3)), edge])
    want = next_purchase_days(P[:, 0], P[:, 1], P[:, 2])
    for row, w in zip(P.tolist(), want):
        assert next_purchase_one(*row) == pytest.approx(w, rel=1e-12)
    assert math.isnan(next_purchase_one(math.nan, 0.5, 0.5))


def test_reasons_of_one_row_equal_the_numpy_selection() -> None:
    writer = ReasonWriter(["recency_days", "gap_mean_days", "orders_total", "spend_total"])
    X = np.array([[40, 20, 3, 100.0]] * 6)
    C = np.array([[0.5, 0.5, 0.1, -1], [0, 0, 0, 0], [math.nan, 2, 2, 1], [-1, -2, 0.3, 0.3],
                  [1, 2, 3, 4], [0.25, 0.75, 0.5, 1.0]], np.float32)
    for k in (0, 1, 3, 10):
        want = writer.explain(C, X, k)
        for i in range(len(X)):
            assert writer.explain_values(C[i].tolist(), X[i].tolist(), k) == want[i]


def test_next_purchase_date_is_pandas_date_arithmetic(trained_repo: Path) -> None:
    pred = Predictor.load(trained_repo, ServiceSettings(ort_threads=1))
    cutoff = pd.Timestamp(pred.cutoff)
    day = 1 - (cutoff - cutoff.normalize()) / pd.Timedelta(days=1)  # days to the first midnight after it
    for days in (0.0, 0.5, 1.0, 6.9999, day, day - 1e-12, day + 1e-12, 29.5, 89.99999999, 365.25):
        assert pred.next_purchase_date(days) == (cutoff + pd.Timedelta(days=days)).date().isoformat(), days
