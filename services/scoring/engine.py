"""Scoring logic without gRPC: look up or validate feature rows, run churn and lookalike."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from services.core.batching import Batcher
from services.core.predictions import Predictor, bands, model_names
from services.core.runtime import FusedModels, OnnxModel, column_index
from tenure.errors import InvalidInput, ModelUnavailable, TenureError, UnknownCustomer
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot

MODELS = model_names
"""Score needs features, churn and lookalike; Predict every model of services.core.predictions."""
SCORES = frozenset({"churn", "lookalike"})
BATCHED_MAX_ROWS = 64
"""Requests up to this many rows (without failed rows) go through the batcher of the fused models."""


@dataclass
class RowScores:
    churn: np.ndarray
    lookalike: np.ndarray
    errors: dict[int, TenureError]
    """Row index -> why it failed; failed rows hold NaN scores."""


class Scorer:
    def __init__(self, snapshot: FeatureSnapshot, churn: OnnxModel, lookalike: OnnxModel,
                 settings: ServiceSettings, predictor: Predictor | None = None) -> None:
        self.snapshot = snapshot
        self.predictor = predictor
        self.churn = churn
        self.lookalike = lookalike
        self.features = snapshot.feature_names
        self.n_features = len(self.features)
        self.churn_cols = column_index(self.features, churn.features, churn.name)
        self.lookalike_cols = column_index(self.features, lookalike.features, lookalike.name)
        self.identity_churn = bool(np.array_equal(self.churn_cols, np.arange(self.n_features)))
        self.horizon_days = int(churn.manifest.params.get("horizon_days", 0))
        self.thresholds = (settings.churn_band_medium, settings.churn_band_high)
        self.max_rows = settings.max_batch_rows
        # Per-request calls from concurrent callers coalesce into one run of churn and lookalike
        # fused into one graph (bulk chunks run the two models directly, several chunks at once).
        batcher = functools.partial(Batcher, max_batch_rows=settings.max_batch_rows_per_run,
                                    max_queue_delay_us=settings.max_queue_delay_us,
                                    max_queue_rows=settings.max_queue_rows)
        self._fused = FusedModels([churn, lookalike], [None if self.identity_churn else self.churn_cols,
                                                       self.lookalike_cols], self.n_features, settings.ort_threads)
        self._batcher = batcher(self._fused.run)

    @classmethod
    def load(cls, repo: Path, settings: ServiceSettings) -> "Scorer":
        predictor = Predictor.load(repo, settings)
        return cls(predictor.snapshot, predictor.models["churn"], predictor.models["lookalike"], settings, predictor)

    def lookup(self, ids: list[str]) -> tuple[np.ndarray, dict[int, TenureError]]:
        """Feature rows for ids (zeros where unknown) and the unknown rows' errors."""
        if len(ids) == 1:  # per-request calls: a view of the stored row, no index arrays
            row = self.snapshot.index.get(ids[0])
            if row is not None:
                return self.snapshot.X[row:row + 1], {}
        rows = self.snapshot.rows(ids)
        missing = np.flatnonzero(rows < 0)
        errors: dict[int, TenureError] = {
            int(i): UnknownCustomer(f"customer {ids[i][:100]!r} is not in the feature store "
                                    f"(snapshot {self.snapshot.version}); send inline features instead")
            for i in missing
        }
        X = self.snapshot.X[np.maximum(rows, 0)]
        return X, errors

    def check_matrix(self, X: np.ndarray, rows: list[int] | None = None) -> dict[int, TenureError]:
        """Rows with NaN or infinite values fail on their own; keys (and messages) use `rows`
        (the rows' positions in the request) when X is a subset."""
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        errors: dict[int, TenureError] = {}
        for i in bad:
            col = int(np.flatnonzero(~np.isfinite(X[i]))[0])
            row = rows[i] if rows is not None else int(i)
            errors[row] = InvalidInput(f"row {row}: feature {col} ({self.features[col]}) is {X[i, col]}; "
                                       f"all {self.n_features} features must be finite numbers")
        return errors

    def score(self, X: np.ndarray, errors: dict[int, TenureError], wanted: frozenset[str] = SCORES,
              deadline: float | None = None, alive: Callable[[], bool] | None = None) -> RowScores:
        """Score the rows that have no error yet (only the `wanted` scores); failed rows get NaN.
        deadline (time.monotonic()) and alive apply to the batched per-request path."""
        n = len(X)
        if not errors and n <= BATCHED_MAX_ROWS and wanted == SCORES:  # a per-request call: every row scores
            churn, look = self._batcher.submit(X, deadline, alive)
            return RowScores(churn, look, errors)
        if not errors:
            return RowScores(
                self.churn.predict(X if self.identity_churn else np.ascontiguousarray(X[:, self.churn_cols]))
                if "churn" in wanted else np.zeros(0, np.float32),
                self.lookalike.predict(np.ascontiguousarray(X[:, self.lookalike_cols]))
                if "lookalike" in wanted else np.zeros(0, np.float32),
                errors)
        ok = np.ones(n, bool)
        if errors:
            ok[list(errors)] = False
        churn = np.full(n if "churn" in wanted else 0, np.nan, np.float32)
        look = np.full(n if "lookalike" in wanted else 0, np.nan, np.float32)
        if ok.any():
            Xok = X if ok.all() else X[ok]
            if len(churn):
                churn[ok] = self.churn.predict(np.ascontiguousarray(Xok if self.identity_churn else Xok[:, self.churn_cols]))
            if len(look):
                look[ok] = self.lookalike.predict(np.ascontiguousarray(Xok[:, self.lookalike_cols]))
        return RowScores(churn, look, errors)

    @staticmethod
    def wanted(names: list[str]) -> frozenset[str]:
        """The scores a bulk chunk asks for (empty = all)."""
        unknown = [n for n in names if n not in SCORES]
        if unknown:
            raise InvalidInput(f"unknown score {unknown[0][:64]!r}; expected some of: {', '.join(sorted(SCORES))}")
        return frozenset(names) or SCORES

    def bands(self, p: np.ndarray) -> np.ndarray:
        return bands(p, *self.thresholds)

    def versions(self) -> list[tuple[str, str]]:
        return [("features", self.snapshot.version), (self.churn.name, self.churn.version),
                (self.lookalike.name, self.lookalike.version)]

    def predictions(self) -> Predictor:
        if self.predictor is None:
            raise ModelUnavailable("Predict needs the CLV, purchase and churn-contributions models; not loaded")
        return self.predictor
