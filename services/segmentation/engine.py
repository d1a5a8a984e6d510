"""Segmentation logic without gRPC: RFM, lifecycle, lookalike audiences over the snapshot."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from services.core.runtime import OnnxModel, column_index
from tenure.artifacts import latest_valid
from tenure.errors import InvalidInput, TenureError, UnknownCustomer
from tenure.segments import (
    DEFAULT_RFM_RULES,
    RfmRule,
    lifecycle_stage,
    percentile_scores,
    rfm_segment,
)
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot

MODELS = ("features", "lookalike")
MAX_AUDIENCE = 1_000_000
SCORE_BATCH = 50_000


@dataclass
class SegmentRows:
    r: np.ndarray
    f: np.ndarray
    m: np.ndarray
    segment: np.ndarray
    stage: np.ndarray
    recency: np.ndarray
    orders: np.ndarray
    monetary: np.ndarray
    errors: dict[int, TenureError]


class Segmenter:
    def __init__(self, snapshot: FeatureSnapshot, lookalike: OnnxModel, seed_ids: set[str],
                 rules: tuple[RfmRule, ...] = DEFAULT_RFM_RULES) -> None:
        self.snapshot = snapshot
        self.lookalike = lookalike
        self.rules = rules
        names = snapshot.feature_names
        X = snapshot.X
        col = {n: i for i, n in enumerate(names)}
        self._recency, self._orders, self._spend = (X[:, col["recency_days"]], X[:, col["orders_total"]],
                                                    X[:, col["spend_total"]])
        self._tenure, self._gap = X[:, col["tenure_days"]], X[:, col["gap_mean_days"]]
        gaps = self._gap[self._gap > 0]
        self.base_gap = float(np.median(gaps)) if len(gaps) else 30.0
        # Scores of the whole base, computed once per loaded version: audiences are a sort away.
        cols = column_index(names, lookalike.features, lookalike.name)
        self.scores = np.concatenate([lookalike.predict(np.ascontiguousarray(X[s:s + SCORE_BATCH][:, cols]))
                                      for s in range(0, len(X), SCORE_BATCH)]) if len(X) else np.zeros(0, np.float32)
        self.is_seed = np.isin(snapshot.customer_ids.astype(str), np.array(sorted(seed_ids), dtype=str))
        self.order = np.argsort(-self.scores, kind="stable")

    @classmethod
    def load(cls, repo: Path, settings: ServiceSettings) -> "Segmenter":
        snapshot = FeatureSnapshot.load_latest(repo)
        model = OnnxModel.load_latest(repo, "lookalike", settings.ort_threads)
        vdir, _ = latest_valid(repo, "lookalike")
        seed_file = vdir / "seed_ids.txt"
        seed = set(seed_file.read_text().split()) if seed_file.exists() else set()
        return cls(snapshot, model, seed)

    def segments(self, ids: list[str]) -> SegmentRows:
        rows = self.snapshot.rows(ids)
        errors: dict[int, TenureError] = {
            int(i): UnknownCustomer(f"customer {ids[i][:100]!r} is not in the feature store (snapshot {self.snapshot.version})")
            for i in np.flatnonzero(rows < 0)
        }
        safe = np.maximum(rows, 0)
        rec, orders, spend = self._recency[safe], self._orders[safe], self._spend[safe]
        r = percentile_scores(self._recency, rec, higher_is_better=False)
        f = percentile_scores(self._orders, orders)
        m = percentile_scores(self._spend, spend)
        return SegmentRows(r, f, m, rfm_segment(r, f, m, self.rules),
                           lifecycle_stage(rec, self._tenure[safe], self._gap[safe], self.base_gap),
                           rec, orders, spend, errors)

    def audience(self, size: int, include_seed: bool, min_score: float) -> Iterator[tuple[str, float, int]]:
        """(customer id, score, rank) best first."""
        if not 1 <= size <= MAX_AUDIENCE:
            raise InvalidInput(f"size={size}; expected 1..{MAX_AUDIENCE}")
        rank = 0
        ids = self.snapshot.customer_ids
        for row in self.order:
            if self.scores[row] < min_score:
                return
            if not include_seed and self.is_seed[row]:
                continue
            rank += 1
            yield str(ids[row]), float(self.scores[row]), rank
            if rank >= size:
                return
