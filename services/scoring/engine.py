"""Scoring logic without gRPC: look up or validate feature rows, run churn and lookalike."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from services.core.batching import Batcher
from services.core.errors import ModelMissing
from services.core.events import OnlineHub
from services.core.predictions import Predictor, bands, model_names
from services.core.runtime import FusedModels, column_index, inventory
from tenure.errors import DeadlineExpired, InvalidInput, StoreUnavailable, TenureError, UnknownCustomer
from tenure.online import OnlineFeatures
from tenure.settings import ServiceSettings

MODELS = model_names
"""Score uses features, churn and lookalike; Predict every model of services.core.predictions. Only
the features are required: the service answers with the models the repository holds."""
SCORES = frozenset({"churn", "lookalike"})
SCORE_ORDER = ("churn", "lookalike")
BATCHED_MAX_ROWS = 64
"""Requests up to this many rows (without failed rows) go through the batcher of the fused models."""


@dataclass
class RowScores:
    churn: np.ndarray | None
    lookalike: np.ndarray | None
    """None: not computed (not asked for, or the model is missing)."""
    errors: dict[int, TenureError]
    """Row index -> why it failed; failed rows hold NaN scores."""


def store_unavailable(exc: Exception) -> Exception:
    """A failed online store read as the error the caller gets: the store unreachable (Redis down, a timeout) is
    a StoreUnavailable (UNAVAILABLE, retry), not a silent fall back to the snapshot's older rows; anything else
    as it is."""
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or type(exc).__module__.startswith("redis"):
        return StoreUnavailable(f"the online feature store cannot be reached ({type(exc).__name__}: "
                                f"{str(exc)[:200]}); retry, or run with TENURE_ONLINE_STORE=off to serve the "
                                "snapshot only")
    return exc


class Scorer:
    def __init__(self, predictor: Predictor, settings: ServiceSettings) -> None:
        self.predictor = predictor
        self.snapshot = snapshot = predictor.snapshot
        self.online: OnlineFeatures | None = None
        """The online store's rows (events since the snapshot), attached by load (services.core.events)."""
        self.features = snapshot.feature_names
        self.n_features = len(self.features)
        self.models = {name: predictor.models[name] for name in SCORE_ORDER if predictor.has(name)}
        self.available = frozenset(self.models)
        self.missing = tuple(name for name in SCORE_ORDER if name not in self.models)
        """Score models the repository does not hold."""
        self._cols: dict[str, np.ndarray | None] = {}
        for name, model in self.models.items():
            cols = column_index(self.features, model.features, model.name)
            self._cols[name] = None if np.array_equal(cols, np.arange(self.n_features)) else cols
        self.horizon_days = predictor.churn_horizon_days
        self.thresholds = (settings.churn_band_medium, settings.churn_band_high)
        self.max_rows = settings.max_batch_rows
        # Per-request calls from concurrent callers coalesce into one run of churn and lookalike
        # fused into one graph (bulk chunks run the models directly, several chunks at once). When every
        # Score model runs its compiled forest (services.core.compiled), per-request calls run the forests
        # directly instead: a few microseconds each, holding the GIL, no queue, no thread hand-off; and
        # Score, StreamScore and bulk Score then give the same bits.
        self.compiled = bool(self.models) and all(m.backend == "compiled" for m in self.models.values())
        self._fused_names = list(self.models)
        self._batcher: Batcher | None = None
        if self.models and not self.compiled:
            fused = FusedModels(list(self.models.values()), [self._cols[n] for n in self._fused_names],
                                self.n_features, settings.ort_threads)
            self._batcher = Batcher(fused.run, name="+".join(self._fused_names), max_batch_rows=settings.max_batch_rows_per_run,
                                    max_queue_delay_us=settings.max_queue_delay_us,
                                    max_queue_rows=settings.max_queue_rows)

    @classmethod
    def load(cls, repo: Path, settings: ServiceSettings, hub: OnlineHub | None = None) -> "Scorer":
        scorer = cls(Predictor.load(repo, settings, fused=True), settings)
        scorer.online = hub.attach(scorer.snapshot) if hub is not None else None
        return scorer

    def lookup(self, ids: list[str]) -> tuple[np.ndarray, dict[int, TenureError]]:
        """Feature rows for ids (zeros where unknown) and the unknown rows' errors. A customer with an online
        row (an event since the snapshot, services.core.events) is scored on it: one store read per call (one
        round trip with Redis), then the snapshot's rows; the store unreachable is a StoreUnavailable."""
        online = self.online
        if len(ids) == 1:  # per-request calls: a view of the stored row, no index arrays
            key = ids[0]
            if online is not None and key:
                try:
                    vec = online.vector(key)
                except Exception as exc:
                    raise store_unavailable(exc) from exc
                if vec is not None:
                    return vec.reshape(1, self.n_features), {}
                online = None  # read: not again below
            row = self.snapshot.index.get(key)
            if row is not None:
                return self.snapshot.X[row:row + 1], {}
        fresh: dict[int, np.ndarray] = {}
        if online is not None:
            try:
                fresh = online.vectors(ids)
            except Exception as exc:
                raise store_unavailable(exc) from exc
        return self._overlay(ids, fresh)

    def lookup_dated(self, ids: list[str]) -> tuple[np.ndarray, dict[int, TenureError], dict[int, float]]:
        """`lookup` (in one store read) and {row: days from the snapshot cutoff to the row's as-of time} for the
        online rows: Predict dates the next purchase from the time its row is as of."""
        online = self.online
        if online is None:
            return (*self.lookup(ids), {})
        try:
            dated = online.dated(ids)
        except Exception as exc:
            raise store_unavailable(exc) from exc
        fresh = {i: row for i, (row, _) in dated.items()}
        shift = {i: (as_of - online.cutoff_s) / 86_400.0 for i, (_, as_of) in dated.items()}
        X, errors = self._overlay(ids, fresh)
        return X, errors, shift

    def _overlay(self, ids: list[str], fresh: dict[int, np.ndarray]) -> tuple[np.ndarray, dict[int, TenureError]]:
        """The snapshot's rows of ids with the online rows `fresh` (position -> row) over them."""
        rows = self.snapshot.rows(ids)
        missing = [int(i) for i in np.flatnonzero(rows < 0) if int(i) not in fresh]
        errors: dict[int, TenureError] = {
            i: UnknownCustomer(f"customer {ids[i][:100]!r} is not in the feature store "
                               f"(snapshot {self.snapshot.version}); send inline features instead")
            if ids[i] else InvalidInput(f"row {i}: customer_id is empty; expected a customer id of the feature store")
            for i in missing
        }
        X = self.snapshot.X[np.maximum(rows, 0)]
        for i, vec in fresh.items():
            X[i] = vec
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

    def _predict(self, name: str, X: np.ndarray) -> np.ndarray:
        cols = self._cols[name]
        return self.models[name].predict(X if cols is None else np.ascontiguousarray(X[:, cols]))

    def score(self, X: np.ndarray, errors: dict[int, TenureError], wanted: frozenset[str],
              deadline: float | None = None, alive: Callable[[], bool] | None = None) -> RowScores:
        """Score the rows that have no error yet (only the `wanted` scores, each of them available:
        see `wanted`); failed rows get NaN. deadline (time.monotonic()) and alive apply to the
        batched per-request path."""
        names = [name for name in SCORE_ORDER if name in wanted]
        n = len(X)
        if not names:
            return RowScores(None, None, errors)
        if not errors and n <= BATCHED_MAX_ROWS and wanted == self.available and self._batcher is not None:
            out = dict(zip(self._fused_names, self._batcher.submit(X, deadline, alive)))  # a per-request call
        elif not errors:
            if deadline is not None and n <= BATCHED_MAX_ROWS and deadline <= time.monotonic():
                # the compiled per-request path: what an idle batcher would refuse (it runs at once)
                raise DeadlineExpired("the deadline had passed when the request reached the model")
            out = {name: self._predict(name, X) for name in names}
        else:
            ok = np.ones(n, bool)
            ok[list(errors)] = False
            out = {name: np.full(n, np.nan, np.float32) for name in names}
            if ok.any():
                Xok = X if ok.all() else X[ok]
                for name in names:
                    out[name][ok] = self._predict(name, Xok)
        return RowScores(out.get("churn"), out.get("lookalike"), errors)

    def wanted(self, names: list[str]) -> frozenset[str]:
        """The scores a request asks for: empty = every score whose model the repository holds;
        naming one whose model is missing is a ModelMissing (FAILED_PRECONDITION)."""
        unknown = [n for n in names if n not in SCORES]
        if unknown:
            raise InvalidInput(f"unknown score {unknown[0][:64]!r}; expected some of: {', '.join(sorted(SCORES))}")
        missing = [n for n in names if n not in self.available]
        if missing:
            raise ModelMissing.named(missing[0], f"the {missing[0]} score was asked for")
        return frozenset(names) or self.available

    def bands(self, p: np.ndarray) -> np.ndarray:
        return bands(p, *self.thresholds)

    def versions(self) -> list[tuple[str, str]]:
        """The snapshot and the Score models."""
        return [("features", self.snapshot.version)] + [(m.name, m.version) for m in self.models.values()]

    def describe(self) -> str:
        """The one log line of a loaded scorer: every model Score and Predict use, and the missing ones."""
        return "scoring: " + inventory(self.predictor.versions(), self.predictor.missing)
