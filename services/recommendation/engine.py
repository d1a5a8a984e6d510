"""Recommendation logic without gRPC: candidates, pair features, one ONNX run, top-k.

Without a propensity model in the repository (the training data had no products, so
recommendations were skipped; or the model was not published), or with fewer than two products in
the snapshot's catalogue, the Recommender still loads (feedback is recorded against its catalogue)
and Recommend / RecommendForBasket fail with ModelMissing (FAILED_PRECONDITION) saying why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, TypeAlias

import numpy as np

from services.core.errors import ModelMissing
from services.core.events import OnlineHub
from services.core.runtime import OnnxModel, inventory, load_present, load_snapshot
from services.recommendation.candidates import CandidateIndex
from tenure.attributes import AttributeTable
from tenure.data import NO_PRODUCT
from tenure.errors import ArtifactError, FeatureOff, InvalidInput, TooLarge, UnknownCustomer, UnknownProduct
from tenure.features import PAIR_FEATURES, SOURCE_CO_PURCHASE
from tenure.online import OnlineFeatures
from tenure.settings import ServiceSettings
from tenure.sparse import column_sums
from tenure.store import Catalog, FeatureSnapshot

MODELS = ("features", "propensity")
PROPENSITY = "propensity"
MIN_PRODUCTS = 2
"""With fewer products there is nothing to choose between: no recommendations."""
MAX_K = 100
MAX_EXCLUDE_IDS = 10_000
"""Product ids in one request's exclude_product_ids."""
MAX_BASKET_ITEMS = 1_000
"""Items in one basket."""
BASKET_WEIGHT = 2.0
"""Co-purchase weight of a basket item, vs log1p(count) for an item bought before."""


@dataclass
class CatalogLists:
    """The catalogue's columns as Python lists, made once per snapshot: responses read them per item
    without converting numpy scalars."""

    product_ids: list[str]
    names: list[str]
    categories: list[str]
    prices: list[float]

    @classmethod
    def of(cls, catalog: Catalog) -> "CatalogLists":
        return cls([str(p) for p in catalog.product_ids.tolist()], [str(n) for n in catalog.names.tolist()],
                   [str(c) for c in catalog.categories.tolist()], [float(p) for p in catalog.price.tolist()])


@dataclass
class Ranked:
    products: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    candidates_scored: int
    excluded_recently_shown: int = 0
    """Products left out because the customer was shown them recently without a click."""


@dataclass
class OnlineCustomer:
    """A customer of the online store (events since the snapshot): `CandidateIndex.candidates_of`'s inputs."""

    hist: np.ndarray
    """Purchase-line counts per product (snapshot history and events), dense."""
    last: np.ndarray
    """Days between the product's last purchase and the online row's as-of day, + 1 (0: never bought)."""
    features: np.ndarray
    """The online feature row (snapshot.feature_names' order)."""


Customer: TypeAlias = int | OnlineCustomer
"""A snapshot row, or the online store's state of a customer who had events since the snapshot."""


class Recommender:
    def __init__(self, snapshot: FeatureSnapshot, propensity: OnnxModel | None, n_candidates: int = 200) -> None:
        if propensity is not None and propensity.features != list(PAIR_FEATURES):
            raise ArtifactError(f"propensity expects features {propensity.features[:3]}..., this build computes "
                                f"{list(PAIR_FEATURES)[:3]}...", model=propensity.name)
        self.snapshot = snapshot
        self.online: OnlineFeatures | None = None
        """The online store's rows and products (events since the snapshot), attached by load."""
        self.exclude_bought_days = 1.0
        """Recommend leaves out what a customer with events bought this recently (ServiceSettings)."""
        self.model = propensity
        self.n_candidates = n_candidates
        self.catalog = snapshot.catalog
        self.categories = sorted(set(self.catalog.categories.tolist()) - {""})
        self._category_masks = {c: self.catalog.categories != c for c in self.categories}
        self.index = CandidateIndex(snapshot)
        self.attributes = AttributeTable.for_snapshot(snapshot)
        """The customers file's attributes (declared interests: declared_interests_only); None: none."""
        self.catalog_lists = CatalogLists.of(self.catalog)
        """Per-snapshot arrays: each request computes only its own customer's candidates."""
        self.unavailable = self._unavailable()
        """Why recommendations cannot be made ("" when they can)."""

    def _unavailable(self) -> str:
        n = len(self.catalog.product_ids)
        placeholder = n == 1 and self.catalog.product_ids[0] == NO_PRODUCT  # an order log without products
        products = "no products" if n == 0 or placeholder else "only one product" if n == 1 else f"{n} products"
        if self.model is None and n < MIN_PRODUCTS:
            return (f"no recommendation model in the repository: the training data had {products} "
                    "(recommendations were skipped)")
        if self.model is None:
            return (f"no recommendation model ({PROPENSITY!r}) in the repository: it was not trained or not "
                    f"published (the catalogue has {products})")
        if n < MIN_PRODUCTS:
            return (f"nothing to recommend: the catalogue of the feature snapshot {self.snapshot.version} has "
                    f"{products}")
        return ""

    @classmethod
    def load(cls, repo: Path, settings: ServiceSettings, hub: OnlineHub | None = None) -> "Recommender":
        snapshot = load_snapshot(repo)
        model = load_present(repo, [PROPENSITY], settings.ort_threads).get(PROPENSITY)
        n_candidates = int(model.manifest.params.get("n_candidates", 200)) if model is not None else 200
        rec = cls(snapshot, model, n_candidates)
        rec.online = hub.attach(snapshot) if hub is not None else None
        rec.exclude_bought_days = settings.recommend_exclude_bought_days
        return rec

    def require(self) -> OnnxModel:
        """The propensity model, or ModelMissing (FAILED_PRECONDITION) saying why there is none."""
        if self.unavailable or self.model is None:
            raise ModelMissing(self.unavailable, PROPENSITY)
        return self.model

    def model_version(self) -> tuple[str, str]:
        model = self.require()
        return model.name, model.version

    @property
    def missing(self) -> tuple[str, ...]:
        return () if self.model is not None else (PROPENSITY,)

    def describe(self) -> str:
        """The one log line of a loaded recommender."""
        loaded = [("features", self.snapshot.version)] + ([(self.model.name, self.model.version)] if self.model else [])
        text = "recommendation: " + inventory(loaded, self.missing)
        return f"{text}; Recommend and RecommendForBasket refused: {self.unavailable}" if self.unavailable else text

    def _customer_row(self, customer_id: str) -> int:
        if not customer_id:
            raise InvalidInput("customer_id is empty; expected a customer id of the feature store")
        row = self.snapshot.index.get(customer_id, -1)
        if row < 0:
            raise UnknownCustomer(f"customer {customer_id[:100]!r} is not in the feature store (snapshot {self.snapshot.version})")
        return row

    def online_customer(self, customer_id: str) -> OnlineCustomer | None:
        """The customer as the online store has them (feature row, and purchase history up to the row's as-of
        time), None without events since the snapshot (or with the online store off)."""
        online = self.online
        if online is None or not customer_id:
            return None
        found = online.entry(customer_id)  # row, as-of time and products of one moment (one read)
        if found is None:
            return None
        features, as_of, products = found
        hist, last = self.index.online_history(products, as_of / 86_400.0, self.catalog.index)
        return OnlineCustomer(hist, last, features)

    def _customer(self, customer_id: str) -> Customer:
        """The online state of a customer with events since the snapshot, else their snapshot row
        (UnknownCustomer when neither holds them)."""
        found = self.online_customer(customer_id)
        return found if found is not None else self._customer_row(customer_id)

    def known_customers(self, customer_ids: Iterable[str]) -> set[str]:
        """The ids among customer_ids that the snapshot or the online store holds (feedback is recorded for
        those only)."""
        ids = set(customer_ids)
        known = {c for c in ids if c in self.snapshot.index}
        rest = sorted(ids - known)
        if rest and self.online is not None:
            known.update(rest[i] for i in self.online.vectors(rest))
        return known

    def _k(self, k: int, default: int) -> int:
        k = k or default
        if not 1 <= k <= MAX_K:
            raise InvalidInput(f"k={k}; expected 1..{MAX_K}")
        return k

    def _exclusions(self, exclude_ids: list[str], category: str) -> np.ndarray:
        if len(exclude_ids) > MAX_EXCLUDE_IDS:
            raise TooLarge(f"{len(exclude_ids):,} exclude_product_ids; at most {MAX_EXCLUDE_IDS:,}")
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

    def _rank(self, who: Customer, exclude: np.ndarray, k: int, boost: np.ndarray | None = None) -> Ranked:
        """The k best of the candidates of a snapshot row or an online customer (AffinityState.candidates,
        computed by CandidateIndex), every valid candidate scored by the propensity model."""
        if isinstance(who, OnlineCustomer):
            cand, source, X = self.index.candidates_of(who.hist, who.last, who.features, self.n_candidates, exclude,
                                                       boost)
        else:
            cand, source, X = self.index.candidates(who, self.n_candidates, exclude, boost)
        valid = cand >= 0
        n_valid = int(np.count_nonzero(valid))
        if n_valid < len(cand):
            cand, source, X = cand[valid], source[valid], X[valid]
        scores = self.require().predict(X)
        order = np.argsort(-scores, kind="stable")[:k]
        return Ranked(cand[order], scores[order], source[order], n_valid)

    def declared_categories(self, customer_id: str) -> list[str]:
        """The catalogue categories the customer declared an interest in (the customers file's interest
        attribute, matched case-insensitively); [] when they declared none or only the online store knows them.
        FeatureOff (FAILED_PRECONDITION) when the shop has no interest attribute."""
        table = self.attributes
        if table is None or table.interest is None:
            raise FeatureOff("declared_interests_only needs the customers file's declared interests (a set attribute "
                             "named by \"interests\" in the customers mapping); this shop's feature snapshot "
                             f"{self.snapshot.version} has none")
        declared = {v.casefold() for v in table.interests(self.snapshot.index.get(customer_id, -1))}
        return [c for c in self.categories if c.casefold() in declared]

    def recommend(self, customer_id: str, k: int, exclude_ids: list[str], category: str,
                  recently_shown: Iterable[str] = (), categories: list[str] | None = None) -> Ranked:
        """Top k for a known customer. recently_shown: products shown to the customer lately without
        a click or purchase (tenure.feedback.FeedbackStore.recently_shown); they are left out
        through the same mask as exclude_ids and counted in Ranked.excluded_recently_shown.
        A customer with events since the snapshot is ranked from the online store's feature row and
        purchase history, leaving out what they bought within exclude_bought_days of their latest event;
        else from the snapshot's row. A customer only the online store holds is ranked too."""
        self.require()
        k = self._k(k, 10)
        exclude = self._exclusions(exclude_ids, category)
        if categories:  # only these categories (declared interests)
            exclude |= ~np.isin(self.catalog.categories, categories)
        who = self._customer(customer_id)
        n_recent = self._exclude_recent(exclude, recently_shown)
        if isinstance(who, OnlineCustomer) and self.exclude_bought_days > 0:
            # just bought (at the checkout a moment ago, say): not pushed again; `last` is days since + 1
            exclude |= (who.last > 0) & (who.last <= self.exclude_bought_days + 1)
        ranked = self._rank(who, exclude, k)
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
        self.require()
        if not items:
            raise InvalidInput("the basket is empty; send at least one item")
        if len(items) > MAX_BASKET_ITEMS:
            raise TooLarge(f"{len(items):,} basket items; at most {MAX_BASKET_ITEMS:,}")
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
        miss = column_sums(cond, np.log1p(-cond.data))
        co = np.where(exclude, 0.0, -np.expm1(miss))
        cand = np.flatnonzero(co > 0)
        cand = cand[np.argsort(-co[cand], kind="stable")][: self.n_candidates]
        score = co[cand]
        source = np.full(len(cand), SOURCE_CO_PURCHASE)
        if customer_id and len(cand):
            who = self._customer(customer_id)
            only = np.ones(P, bool)
            only[cand] = False
            personal = self._rank(who, only, len(cand), boost=BASKET_WEIGHT * in_basket)
            p = np.zeros(P, np.float32)
            p[personal.products] = personal.scores
            score = 1 - (1 - score) * (1 - p[cand])
        elif customer_id:
            self._customer(customer_id)
        order = np.argsort(-score, kind="stable")[:k]
        return Ranked(cand[order], score[order].astype(np.float32), source[order], int(len(cand)))
