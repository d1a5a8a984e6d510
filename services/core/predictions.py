"""Every per-customer prediction from the repository's ONNX models, vectorised over feature rows.

Shared by the scoring service (Predict), and the segmentation service (the re-scoring of the
whole base behind segments, audiences and profiles, and the 360-degree view). Models:

- churn and its tree contributions (reasons), the expected time to churn from the churn
  probability (tenure.reasons.expected_days_to_churn);
- clv (predicted spend over its horizon; historic = net spend to the cutoff, a feature);
- purchase_7d / purchase_30d / purchase_90d, and from them the next purchase date
  (tenure.timing);
- channel (optional: data without a channel column has none);
- lookalike.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from services.core.runtime import OnnxModel, column_index
from tenure.artifacts import versions
from tenure.errors import ArtifactError
from tenure.reasons import Reason, ReasonWriter, expected_days_to_churn
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot
from tenure.timing import HORIZONS, average_gap_days, next_purchase_days

REQUIRED = ("features", "churn", "churn-contributions", "clv", "purchase_7d", "purchase_30d", "purchase_90d",
            "lookalike")
OPTIONAL = ("channel",)
BAND_LOW, BAND_MEDIUM, BAND_HIGH = 1, 2, 3


def model_names(repo: Path) -> tuple[str, ...]:
    """The models a Predictor loads from this repository (the optional ones when present)."""
    return REQUIRED + tuple(n for n in OPTIONAL if versions(repo, n))


def bands(p: np.ndarray, medium: float, high: float) -> np.ndarray:
    """1 low, 2 medium, 3 high (thresholds inclusive); 0 where p is NaN."""
    if len(p) == 1:  # per-request calls: scalar compares cost a fraction of the array ops
        v = float(p[0])
        return np.array([BAND_HIGH if v >= high else BAND_MEDIUM if v >= medium else BAND_LOW if v == v else 0])
    return np.where(np.isnan(p), 0, np.where(p >= high, BAND_HIGH, np.where(p >= medium, BAND_MEDIUM, BAND_LOW)))


@dataclass
class PredictionTable:
    """Predictions for rows of feature vectors (arrays of the same length)."""

    churn: np.ndarray
    churn_band: np.ndarray
    days_to_churn: np.ndarray
    clv_historic: np.ndarray
    clv_predicted: np.ndarray
    purchase: np.ndarray
    """(n, 3): P(purchase within 7, 30, 90 days)."""
    next_purchase_days: np.ndarray
    avg_gap_days: np.ndarray
    channels: np.ndarray | None
    """(n, n_channels) probabilities in `Predictor.channel_names` order; None without a channel model."""
    lookalike: np.ndarray


class Predictor:
    def __init__(self, snapshot: FeatureSnapshot, models: dict[str, OnnxModel], settings: ServiceSettings) -> None:
        self.snapshot = snapshot
        self.models = models
        self.features = snapshot.feature_names
        self.cutoff = snapshot.cutoff
        self._cols = {name: self._columns(m) for name, m in models.items()}
        churn = models["churn"]
        self.churn_horizon_days = int(churn.manifest.params.get("horizon_days", 90))
        self.clv_horizon_days = int(models["clv"].manifest.params.get("horizon_days", 365))
        self.thresholds = (settings.churn_band_medium, settings.churn_band_high)
        contributions = models["churn-contributions"]
        if contributions.manifest.params.get("explains") not in (None, "churn"):
            raise ArtifactError("churn-contributions explains another model", model=contributions.name)
        self.writer = ReasonWriter(contributions.features)
        channel = models.get("channel")
        self.channel_names: list[str] = list(channel.manifest.params.get("classes", [])) if channel else []
        col = {n: i for i, n in enumerate(self.features)}
        self._recency, self._gap, self._spend = col["recency_days"], col["gap_mean_days"], col["spend_total"]

    def _columns(self, model: OnnxModel) -> np.ndarray | None:
        """None when the model takes the snapshot's feature vector as it is."""
        cols = column_index(self.features, model.features, model.name)
        return None if np.array_equal(cols, np.arange(len(self.features))) else cols

    @classmethod
    def load(cls, repo: Path, settings: ServiceSettings, snapshot: FeatureSnapshot | None = None) -> "Predictor":
        snapshot = snapshot or FeatureSnapshot.load_latest(repo)
        names = [n for n in model_names(repo) if n != "features"]
        return cls(snapshot, {n: OnnxModel.load_latest(repo, n, settings.ort_threads) for n in names}, settings)

    def _input(self, name: str, X: np.ndarray) -> np.ndarray:
        cols = self._cols[name]
        return X if cols is None else np.ascontiguousarray(X[:, cols])

    def score(self, name: str, X: np.ndarray) -> np.ndarray:
        return self.models[name].predict(self._input(name, X))

    def predict(self, X: np.ndarray) -> PredictionTable:
        """Every prediction for rows of the snapshot's feature layout (float32, finite)."""
        churn = self.score("churn", X)
        P = np.column_stack([self.score(f"purchase_{h}d", X) for h in HORIZONS]) if len(X) else np.zeros((0, 3))
        recency, gap = X[:, self._recency].astype(np.float64), X[:, self._gap].astype(np.float64)
        channel = self.models.get("channel")
        return PredictionTable(
            churn=churn,
            churn_band=bands(churn, *self.thresholds),
            days_to_churn=expected_days_to_churn(churn, self.churn_horizon_days, recency, gap)
            if len(X) else np.zeros(0),
            clv_historic=X[:, self._spend].astype(np.float64),
            clv_predicted=np.maximum(self.score("clv", X).astype(np.float64), 0.0),
            purchase=P,
            next_purchase_days=next_purchase_days(P[:, 0], P[:, 1], P[:, 2]) if len(X) else np.zeros(0),
            avg_gap_days=average_gap_days(gap, P[:, 2], HORIZONS[-1]) if len(X) else np.zeros(0),
            channels=channel.matrix(self._input("channel", X)) if channel is not None else None,
            lookalike=self.score("lookalike", X),
        )

    def reasons(self, X: np.ndarray, k: int = 3) -> list[list[Reason]]:
        """The top k churn reasons per row, from the churn model's own tree contributions."""
        contributions = self.models["churn-contributions"].matrix(self._input("churn-contributions", X))
        return self.writer.explain(contributions, self._input("churn-contributions", X), k)

    def next_purchase_date(self, days: float) -> str:
        return (self.cutoff + pd.Timedelta(days=float(days))).date().isoformat()

    def versions(self) -> list[tuple[str, str]]:
        return [("features", self.snapshot.version)] + [(m.name, m.version) for m in self.models.values()]
