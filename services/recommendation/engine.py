"""Recommendation logic without gRPC: candidates, pair features, one ONNX run, top-k."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from services.core.runtime import OnnxModel
from tenure.errors import ArtifactError, InvalidInput, UnknownCustomer, UnknownProduct
from tenure.features import PAIR_FEATURES, SOURCE_CO_PURCHASE, customer_columns
from tenure.settings import ServiceSettings
from tenure.store import FeatureSnapshot

MODELS = ("features", "propensity")
MAX_K = 100
BASKET_WEIGHT = 2.0
"""Co-purchase weight of a basket item, vs log1p(count) for an item bought before."""


@dataclass
class Ranked:
    products: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    candidates_scored: int
    excluded_recently_shown: int = 0
    """Products left out because the customer was shown them recently without a click."""


class Recommender:
    def __init__(self, snapshot: FeatureSnapshot, propensity: OnnxModel, n_candidates: int = 200) -> None:
        if propensity.features != list(PAIR_FEATURES):
            raise ArtifactError(f"propensity expects features {propensity.features[:3]}..., this build computes "
                                f"{list(PAIR_FEATURES)[:3]}...", model=propensity.name)
        self.snapshot = snapshot
        self.model = propensity
        self.n_candidates = n_candidates
        self.catalog = snapshot.catalog
        self.categories = sorted(set(self.catalog.categories.tolist()) - {""})
        self._category_masks = {c: self.catalog.categories != c for c in self.categories}

    @classmethod
    def load(cls, repo: Path, settings: ServiceSettings) -> "Recommender":
        snapshot = FeatureSnapshot.load_latest(repo)
        model = OnnxModel.load_latest(repo, "propensity", settings.ort_threads)
        return cls(snapshot, model, int(model.manifest.params.get("n_candidates", 200)))

    def _customer_row(self, customer_id: str) -> int:
        row = self.snapshot.index.get(customer_id, -1)
        if row < 0:
            raise UnknownCustomer(f"customer {customer_id[:100]!r} is not in the feature store (snapshot {self.snapshot.version})")
        return row

    def _k(self, k: int, default: int) -> int:
        k = k or default
        if not 1 <= k <= MAX_K:
            raise InvalidInput(f"k={k}; expected 1..{MAX_K}")
        return k

    def _exclusions(self, exclude_ids: list[str], category: str) -> np.ndarray:
        P = len(self.catalog.product_ids)
        if category:
            if category not in self._category_masks:
                raise InvalidInput(f"unknown category {category[:100]!r}; known: {', '.join(self.categories)[:600]}")
            mask = self._category_masks[category].copy()
        else:
            mask = np.zeros(P, bool)
        idx = [self.catalog.index[p] for p in exclude_ids if p in self.catalog.index]  # unknown ids exclude nothing
        mask[idx] = True
        return mask

    def _exclude_recent(self, mask: np.ndarray, product_ids: Iterable[str]) -> int:
        """Add products shown recently to the exclusion mask; how many it newly left out (ids not in
        the catalogue, or already excluded by the request or its category, do not count)."""
        index = self.catalog.index
        idx = np.fromiter((index[p] for p in product_ids if p in index), dtype=np.intp)
        if not len(idx):
            return 0
        new = int(np.count_nonzero(~mask[idx]))
        mask[idx] = True
        return new

    def _rank(self, row_features: np.ndarray, hist: np.ndarray, last: np.ndarray, exclude: np.ndarray,
              k: int, boost: np.ndarray | None = None) -> Ranked:
        cust = customer_columns(self.snapshot.feature_names, row_features[None, :], self.snapshot.space.categories)
        cand, source, X = self.snapshot.affinity.candidates(
            hist[None, :], last[None, :], cust, self.n_candidates, exclude[None, :],
            None if boost is None else boost[None, :])
        cand, source = cand[0], source[0]
        valid = cand >= 0
        scores = self.model.predict(X[valid])
        order = np.argsort(-scores, kind="stable")[:k]
        return Ranked(cand[valid][order], scores[order], source[valid][order], int(valid.sum()))

    def recommend(self, customer_id: str, k: int, exclude_ids: list[str], category: str,
                  recently_shown: Iterable[str] = ()) -> Ranked:
        """Top k for a known customer. recently_shown: products shown to the customer lately without
        a click or purchase (tenure.feedback.FeedbackStore.recently_shown); they are left out
        through the same mask as exclude_ids and counted in Ranked.excluded_recently_shown."""
        k = self._k(k, 10)
        exclude = self._exclusions(exclude_ids, category)
        row = self._customer_row(customer_id)
        n_recent = self._exclude_recent(exclude, recently_shown)
        aff = self.snapshot.affinity
        ranked = self._rank(self.snapshot.X[row], aff.hist[row].toarray()[0], aff.hist_last[row].toarray()[0],
                            exclude, k)
        ranked.excluded_recently_shown = n_recent
        return ranked

    def recommend_for_basket(self, items: list[tuple[str, int]], customer_id: str, k: int,
                             exclude_ids: list[str]) -> Ranked:
        """Complements of a basket.

        Score = P(bought in the same order as at least one basket item), from the co-purchase
        table, assuming items act independently. For a known customer it is combined with their
        propensity p for the product: 1 - (1 - co)(1 - p), so their own habits lift products they
        are likely to buy anyway. A guest gets the co-purchase score alone: a 30-day propensity of
        an average customer says nothing about this basket.
        """
        if not items:
            raise InvalidInput("the basket is empty; send at least one item")
        k = self._k(k, 5)
        exclude = self._exclusions(exclude_ids, "")
        P = len(self.catalog.product_ids)
        in_basket = np.zeros(P, np.float32)
        for pid, _qty in items:
            idx = self.catalog.index.get(pid)
            if idx is None:
                raise UnknownProduct(f"basket product {pid[:100]!r} is not in the catalogue")
            in_basket[idx] = 1.0
        exclude |= in_basket > 0
        cond = self.snapshot.affinity.cond[np.flatnonzero(in_basket)]
        # log of P(not co-bought) summed over basket items = log(1 - cond) on the sparse entries.
        miss = np.asarray(cond.multiply(-1).log1p().sum(axis=0) if cond.nnz else np.zeros((1, P))).ravel()
        co = np.where(exclude, 0.0, -np.expm1(miss))
        cand = np.flatnonzero(co > 0)
        cand = cand[np.argsort(-co[cand], kind="stable")][: self.n_candidates]
        score = co[cand]
        source = np.full(len(cand), SOURCE_CO_PURCHASE)
        if customer_id and len(cand):
            row = self._customer_row(customer_id)
            only = np.ones(P, bool)
            only[cand] = False
            personal = self._rank(self.snapshot.X[row], self.snapshot.affinity.hist[row].toarray()[0],
                                  self.snapshot.affinity.hist_last[row].toarray()[0], only, len(cand),
                                  boost=BASKET_WEIGHT * in_basket)
            p = np.zeros(P, np.float32)
            p[personal.products] = personal.scores
            score = 1 - (1 - score) * (1 - p[cand])
        elif customer_id:
            self._customer_row(customer_id)
        order = np.argsort(-score, kind="stable")[:k]
        return Ranked(cand[order], score[order].astype(np.float32), source[order], int(len(cand)))
