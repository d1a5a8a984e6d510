"""Every per-customer prediction from the repository's ONNX models, vectorised over feature rows.

Shared by the scoring service (Predict), and the segmentation service (the re-scoring of the
whole base behind segments, audiences and profiles, and the 360-degree view). Models:

- churn and its tree contributions (reasons), the expected time to churn from the churn
  probability (tenure.reasons.expected_days_to_churn);
- clv (predicted spend over its horizon; historic = net spend to the cutoff, a feature);
- purchase_7d / purchase_30d / purchase_90d, and from them the next purchase date
  (tenure.timing);
- channel (data without a channel column has none);
- lookalike;
- uplift-treated and uplift-control: campaign uplift (a T-learner, training.uplift) and its group.

Only the feature snapshot is required: a shop's data may not support every model (no products,
no channels, a short history), and a model that fails its checks is not published. A model
without a version in the repository is missing: its part of the PredictionTable is None (the
purchase columns of missing horizons are NaN) and `Predictor.missing` names it. A broken newest
version falls back to the newest one that loads; a model none of whose versions loads is logged
once and reported missing like an absent one (services.core.runtime.load_present).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from services.core.runtime import WARMUP_ROWS, FusedModels, OnnxModel, column_index, load_present, load_snapshot
from tenure import sendtime
from tenure.attributes import AttributeTable
from tenure.errors import ArtifactError
from tenure.reasons import Reason, ReasonWriter, expected_days_to_churn
from tenure.settings import ServiceSettings
from tenure.store import SNAPSHOT_NAME, FeatureSnapshot
from tenure.timing import HORIZONS, average_gap_days, next_purchase_days

PURCHASE_MODELS = tuple(f"purchase_{h}d" for h in HORIZONS)
UPLIFT_MODELS = ("uplift-treated", "uplift-control")
"""Campaign uplift's T-learner (training.uplift): P(buy | treated) and P(buy | control)."""
UPLIFT_GROUPS = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
"""Uplift group names by code (training.uplift.GROUPS)."""
PREDICTION_MODELS = ("churn", "churn-contributions", "clv", *PURCHASE_MODELS, "channel", "lookalike", *UPLIFT_MODELS)
"""Every model a Predictor uses when the repository holds it, in the order they are reported."""
MODEL_NAMES = (SNAPSHOT_NAME, *PREDICTION_MODELS)
_MATRIX_MODELS = frozenset({"churn-contributions", "channel"})
"""Models whose whole output is used (not one score column)."""
BAND_LOW, BAND_MEDIUM, BAND_HIGH = 1, 2, 3
_EPS = 1e-9


def model_names(repo: Path) -> tuple[str, ...]:
    """The artifacts a Predictor may load (the Holder's key: one that appears later is loaded then)."""
    return MODEL_NAMES


def bands(p: np.ndarray, medium: float, high: float) -> np.ndarray:
    """1 low, 2 medium, 3 high (thresholds inclusive); 0 where p is NaN."""
    if len(p) == 1:  # per-request calls: scalar compares cost a fraction of the array ops
        v = float(p[0])
        return np.array([BAND_HIGH if v >= high else BAND_MEDIUM if v >= medium else BAND_LOW if v == v else 0])
    return np.where(np.isnan(p), 0, np.where(p >= high, BAND_HIGH, np.where(p >= medium, BAND_MEDIUM, BAND_LOW)))


def next_purchase(P: np.ndarray, horizons: tuple[int, ...]) -> np.ndarray | None:
    """Median days to the next order (tenure.timing.next_purchase_days) from the purchase horizons
    present; P is (n, len(HORIZONS)), its columns of missing horizons are ignored.

    next_purchase_days conditions on an order within the last horizon (90 days): without that
    model the quantity is not defined (None). A missing shorter horizon is filled in the way the
    constant-hazard model sees it between the horizons present (log-survival linear in t, from
    S(0) = 1), so the answer is exactly the piecewise-constant-hazard median on the coarser grid.
    """
    if HORIZONS[-1] not in horizons:
        return None
    if len(P) == 0:
        return np.zeros(0)
    if len(horizons) == len(HORIZONS):
        return next_purchase_days(P[:, 0], P[:, 1], P[:, 2])
    known = np.array([0.0, *horizons])
    present = np.clip(P[:, [HORIZONS.index(h) for h in horizons]].astype(np.float64), _EPS, 1.0 - _EPS)
    log_s = np.column_stack([np.zeros(len(P)), np.log1p(-np.maximum.accumulate(present, axis=1))])
    full = np.empty((len(P), len(HORIZONS)))
    for k, h in enumerate(HORIZONS):
        j = int(np.searchsorted(known, h))  # known[j - 1] < h <= known[j]; the last horizon is known
        if known[j] == h:
            full[:, k] = log_s[:, j]
        else:
            full[:, k] = log_s[:, j - 1] + (log_s[:, j] - log_s[:, j - 1]) * (h - known[j - 1]) / (known[j] - known[j - 1])
    filled = -np.expm1(full)
    return next_purchase_days(filled[:, 0], filled[:, 1], filled[:, 2])


def days_to_churn_one(p: float, horizon_days: float, recency_days: float, gap_mean_days: float,
                      overdue_factor: float = 2.0) -> float:
    """tenure.reasons.expected_days_to_churn of one row (with its overdue floor), the same operations
    in scalar arithmetic: a per-request call costs a few microseconds instead of numpy's ~50."""
    if p != p:
        return math.nan
    q = min(max(p, 0.0), 1.0)
    rate = -math.log1p(-q) / horizon_days if q < 1.0 else math.inf
    d0 = max(overdue_factor * gap_mean_days - recency_days, 0.0) if gap_mean_days > 0 else 0.0
    tail = 0.0 if rate == math.inf else math.exp(-rate * d0) / rate if rate > 0 else math.inf
    return min(d0 + tail, 10.0 * horizon_days)


def _clip_probability(p: float) -> float:
    return min(max(p, _EPS), 1.0 - _EPS)


def next_purchase_one(p7: float, p30: float, p90: float) -> float:
    """tenure.timing.next_purchase_days of one row (every horizon present), in scalar arithmetic;
    NaN when a probability is NaN (callers then use the vectorised form)."""
    if p7 != p7 or p30 != p30 or p90 != p90:
        return math.nan
    a = _clip_probability(p7)
    b = max(a, _clip_probability(p30))
    c = max(b, _clip_probability(p90))
    S = (1.0, 1.0 - a, 1.0 - b, 1.0 - c)
    target = 1.0 - 0.5 * c
    k = next((j for j in range(len(HORIZONS)) if S[j + 1] <= target), 0)
    edges = (0.0, *map(float, HORIZONS))
    start, width = edges[k], edges[k + 1] - edges[k]
    hazard = math.log(S[k] / S[k + 1]) / width
    if not hazard > 0:
        return math.nan
    return start + min(max(math.log(S[k] / target) / hazard, 0.0), width)


def average_gap_one(gap_mean_days: float, p90: float, horizon_days: int) -> float:
    """tenure.timing.average_gap_days of one row, in scalar arithmetic."""
    if gap_mean_days >= 0:
        return gap_mean_days
    return horizon_days / -math.log1p(-_clip_probability(p90))


@dataclass
class PredictionTable:
    """Predictions for rows of feature vectors (arrays of the same length); None where the model
    is not in the repository."""

    churn: np.ndarray | None
    churn_band: np.ndarray | None
    days_to_churn: np.ndarray | None
    clv_historic: np.ndarray
    """Net spend to the cutoff: a feature, there with or without the clv model."""
    clv_predicted: np.ndarray | None
    purchase: np.ndarray
    """(n, 3): P(purchase within 7, 30, 90 days); NaN in the columns of missing horizons."""
    next_purchase_days: np.ndarray | None
    """None without purchase_90d (see `next_purchase`)."""
    avg_gap_days: np.ndarray
    """NaN where undefined (fewer than two orders and no purchase_90d)."""
    channels: np.ndarray | None
    """(n, n_channels) probabilities in `Predictor.channel_names` order."""
    lookalike: np.ndarray | None
    uplift: np.ndarray | None = None
    """P(buy | treated) - P(buy | control) within the uplift window (None without the uplift models)."""
    uplift_p_treated: np.ndarray | None = None
    uplift_p_control: np.ndarray | None = None
    uplift_group: np.ndarray | None = None
    """Codes into UPLIFT_GROUPS."""


class _FusedPredictions(FusedModels):
    """Every prediction model in one onnxruntime session (services.core.runtime.FusedModels): a
    per-request Predict pays for one run instead of one per model."""

    def outputs(self, X: np.ndarray) -> list[np.ndarray]:
        """float32 (n, n_features) -> each model's first output whole, (n, k), in model order."""
        got = self.session.run(self._outputs, {"features": X})
        for rows in self._rows:
            rows.inc(len(X))
        return [g.reshape(len(X), -1) for g in got]

    def warm_up(self, n_features: int) -> None:
        """Run the usual batch sizes once (not counted in tenure_rows_scored_total)."""
        for n in WARMUP_ROWS:
            self.session.run(self._outputs, {"features": np.zeros((n, n_features), np.float32)})


class Predictor:
    def __init__(self, snapshot: FeatureSnapshot, models: dict[str, OnnxModel], settings: ServiceSettings,
                 fused: bool = False) -> None:
        """fused: also build one session of every model for `predict_with_reasons` (the scoring
        service's per-request Predict; a few MB more)."""
        self.snapshot = snapshot
        self.models = models
        self.features = snapshot.feature_names
        self.cutoff = snapshot.cutoff
        self.missing = tuple(n for n in PREDICTION_MODELS if n not in models)
        """Models a Predictor would use that the repository does not hold."""
        self.horizons = tuple(h for h, n in zip(HORIZONS, PURCHASE_MODELS) if n in models)
        self._cols = {name: self._columns(m) for name, m in models.items()}
        churn, clv = models.get("churn"), models.get("clv")
        self.churn_horizon_days = int(churn.manifest.params.get("horizon_days", 90)) if churn else 0
        self.clv_horizon_days = int(clv.manifest.params.get("horizon_days", 365)) if clv else 0
        self.thresholds = (settings.churn_band_medium, settings.churn_band_high)
        contributions = models.get("churn-contributions")
        if contributions is not None and contributions.manifest.params.get("explains") not in (None, "churn"):
            raise ArtifactError("churn-contributions explains another model", model=contributions.name)
        self.writer = ReasonWriter(contributions.features) if contributions is not None else None
        channel = models.get("channel")
        self.channel_names: list[str] = list(channel.manifest.params.get("classes", [])) if channel else []
        uplift = models.get("uplift-treated")
        up = uplift.manifest.params if uplift is not None else {}
        self.uplift_window_days = int(up.get("window_days", 0))
        self.uplift_thresholds = (float(up.get("u_pos", 0.02)), float(up.get("u_neg", -0.02)),
                                  float(up.get("p_sure", 0.5)))
        """(u_pos, u_neg, p_sure) of the groups, chosen in training (training.uplift)."""
        self.column = {n: i for i, n in enumerate(self.features)}
        self.attributes = AttributeTable.for_snapshot(snapshot)
        """The customers file's attributes of the snapshot's customers (None: the shop has none)."""
        self.send_times = sendtime.for_snapshot(snapshot)
        """Best hours and weekdays of the snapshot's customers (tenure.sendtime; None: the snapshot has none)."""
        self._recency, self._gap, self._spend = (self.column["recency_days"], self.column["gap_mean_days"],
                                                 self.column["spend_total"])
        c = self.cutoff
        self._cutoff_ordinal = c.date().toordinal()
        self._cutoff_day_ns = (((c.hour * 60 + c.minute) * 60 + c.second) * 1_000_000 + c.microsecond) * 1000 \
            + int(getattr(c, "nanosecond", 0))
        # A model with a compiled forest runs it here too, so that Predict, Score, StreamScore and the
        # segmentation service give the same bits for it; the fused session holds the others.
        self._compiled_names = [n for n in PREDICTION_MODELS
                                if n in models and n not in _MATRIX_MODELS and models[n].forest is not None]
        self._fused_names = [n for n in PREDICTION_MODELS if n in models and n not in self._compiled_names]
        self._fused: _FusedPredictions | None = None
        if fused and self._fused_names:
            self._fused = _FusedPredictions([models[n] for n in self._fused_names],
                                            [self._cols[n] for n in self._fused_names], len(self.features),
                                            settings.ort_threads)
            self._fused.warm_up(len(self.features))

    def _columns(self, model: OnnxModel) -> np.ndarray | None:
        """None when the model takes the snapshot's feature vector as it is."""
        cols = column_index(self.features, model.features, model.name)
        return None if np.array_equal(cols, np.arange(len(self.features))) else cols

    @classmethod
    def load(cls, repo: Path, settings: ServiceSettings, snapshot: FeatureSnapshot | None = None,
             fused: bool = False) -> "Predictor":
        snapshot = snapshot or load_snapshot(repo)
        return cls(snapshot, load_present(repo, PREDICTION_MODELS, settings.ort_threads), settings, fused)

    def has(self, name: str) -> bool:
        return name in self.models

    def refused(self, customer_id: str) -> frozenset[str]:
        """Channels (lower case) the customer refused in the customers file (consent attributes): ranked last
        in Predictions.channels. None for a customer only the online store knows (no attributes)."""
        if self.attributes is None:
            return frozenset()
        return self.attributes.refused(self.snapshot.index.get(customer_id, -1))

    def _input(self, name: str, X: np.ndarray) -> np.ndarray:
        cols = self._cols[name]
        return X if cols is None else np.ascontiguousarray(X[:, cols])

    def score(self, name: str, X: np.ndarray) -> np.ndarray:
        return self.models[name].predict(self._input(name, X))

    def predict(self, X: np.ndarray) -> PredictionTable:
        """Every prediction the repository's models make, for rows of the snapshot's feature layout
        (float32, finite)."""
        scores = {name: self.score(name, X) for name in PREDICTION_MODELS if name not in _MATRIX_MODELS and self.has(name)}
        channel = self.models.get("channel")
        return self._table(X, scores, channel.matrix(self._input("channel", X)) if channel is not None else None)

    def predict_with_reasons(self, X: np.ndarray, k: int = 3) -> tuple[PredictionTable, list[list[Reason]]]:
        """`predict` and `reasons` together, from one run of the fused session (the same answers)."""
        if self._fused is None or len(X) == 0:
            return self.predict(X), self.reasons(X, k)
        outputs = dict(zip(self._fused_names, self._fused.outputs(X)))
        scores = {name: self.score(name, X) for name in self._compiled_names}
        for name, out in outputs.items():
            if name in _MATRIX_MODELS:
                continue
            column = self.models[name].column
            scores[name] = out[:, column] if column is not None else out.reshape(len(X))
        table = self._table(X, scores, outputs.get("channel"))
        contributions = outputs.get("churn-contributions")
        if self.writer is None or contributions is None or not self.has("churn"):
            return table, [[] for _ in range(len(X))]
        Xc = self._input("churn-contributions", X)
        if len(X) == 1:
            return table, [self.writer.explain_values(contributions[0].tolist(), Xc[0].tolist(), k)]
        return table, self.writer.explain(contributions, Xc, k)

    def _table(self, X: np.ndarray, scores: dict[str, np.ndarray], channels: np.ndarray | None) -> PredictionTable:
        """The PredictionTable from the models' score columns (name -> (n,)) and the channel matrix."""
        n = len(X)
        churn = scores.get("churn")
        P = np.full((n, len(HORIZONS)), np.nan, np.float32)
        for k, name in enumerate(PURCHASE_MODELS):
            if name in scores:
                P[:, k] = scores[name]
        clv = scores.get("clv")
        days_to_churn = next_days = avg_gap = None
        if n == 1:  # per-request calls: scalar arithmetic, the same operations as the vectorised forms
            x = X[0]
            recency, gap = float(x[self._recency]), float(x[self._gap])
            if churn is not None:
                days_to_churn = np.array([days_to_churn_one(float(churn[0]), self.churn_horizon_days, recency, gap)])
            if len(self.horizons) == len(HORIZONS):
                p = P[0].tolist()
                one = next_purchase_one(p[0], p[1], p[2])
                next_days = np.array([one]) if one == one else None
                avg_gap = np.array([average_gap_one(gap, p[-1], HORIZONS[-1])])
            elif HORIZONS[-1] not in self.horizons:
                avg_gap = np.array([gap if gap >= 0 else math.nan])
        if days_to_churn is None and churn is not None:
            recency_days, gap_days = X[:, self._recency].astype(np.float64), X[:, self._gap].astype(np.float64)
            days_to_churn = (expected_days_to_churn(churn, self.churn_horizon_days, recency_days, gap_days)
                             if n else np.zeros(0))
        if next_days is None:
            next_days = next_purchase(P, self.horizons)
        if avg_gap is None:
            gap_days = X[:, self._gap].astype(np.float64)
            if HORIZONS[-1] in self.horizons:
                avg_gap = average_gap_days(gap_days, P[:, -1], HORIZONS[-1]) if n else np.zeros(0)
            else:  # the observed mean gap (two orders or more) needs no model
                avg_gap = np.where(gap_days >= 0, gap_days, np.nan)
        return PredictionTable(
            churn=churn,
            churn_band=bands(churn, *self.thresholds) if churn is not None else None,
            days_to_churn=days_to_churn,
            clv_historic=X[:, self._spend].astype(np.float64),
            clv_predicted=np.maximum(clv.astype(np.float64), 0.0) if clv is not None else None,
            purchase=P,
            next_purchase_days=next_days,
            avg_gap_days=avg_gap,
            channels=channels,
            lookalike=scores.get("lookalike"),
            **self._uplift(scores),
        )

    def _uplift(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The uplift fields of a PredictionTable: both T-learner models or none."""
        treated, control = scores.get("uplift-treated"), scores.get("uplift-control")
        if treated is None or control is None:
            return {}
        pt, pc = treated.astype(np.float32), control.astype(np.float32)
        uplift = pt - pc
        u_pos, u_neg, p_sure = self.uplift_thresholds
        group = np.where(uplift >= u_pos, 0, np.where(uplift <= u_neg, 3, np.where(pc >= p_sure, 1, 2)))
        return {"uplift": uplift, "uplift_p_treated": pt, "uplift_p_control": pc, "uplift_group": group}

    def reasons(self, X: np.ndarray, k: int = 3) -> list[list[Reason]]:
        """The top k churn reasons per row, from the churn model's own tree contributions (none
        without the churn model or its contributions)."""
        if self.writer is None or not self.has("churn"):
            return [[] for _ in range(len(X))]
        contributions = self.models["churn-contributions"].matrix(self._input("churn-contributions", X))
        return self.writer.explain(contributions, self._input("churn-contributions", X), k)

    def next_purchase_date(self, days: float) -> str:
        """The date `days` after the cutoff, as pandas' `(cutoff + Timedelta(days=days)).date()` gives
        it, in integer nanoseconds (no pandas per call)."""
        if self.cutoff.tzinfo is not None or not math.isfinite(days):
            import pandas as pd  # time zones (DST) and NaN: pandas' own arithmetic; not the usual case

            return (pd.Timestamp(self.cutoff) + pd.Timedelta(days=float(days))).date().isoformat()
        ns = self._cutoff_day_ns + round(days * 86_400e9)
        return date.fromordinal(self._cutoff_ordinal + ns // 86_400_000_000_000).isoformat()

    def versions(self) -> list[tuple[str, str]]:
        return [(SNAPSHOT_NAME, self.snapshot.version)] + [(m.name, m.version) for m in self.models.values()]
