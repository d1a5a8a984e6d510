"""The embedded online feature store: a snapshot written by training, read by the services.

One artifact named "features" in the model repository (models/features/<version>/) holding
snapshot.npz (plain arrays, no pickle) and a manifest with the feature names and the cutoff.
The affinity matrices load as tenure.sparse.CSR (numpy only: the services do not load SciPy).
Loading 40k customers takes well under a second; lookups are a dict from id to row.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tenure.artifacts import Manifest, latest_valid, write_artifact
from tenure.features import AffinityState, FeatureSpace
from tenure.sparse import CSR

SNAPSHOT_NAME = "features"


@dataclass
class Catalog:
    """Products by index (the column order of the affinity matrices)."""

    product_ids: np.ndarray
    names: np.ndarray
    categories: np.ndarray
    price: np.ndarray

    def __post_init__(self) -> None:
        self.index = {pid: i for i, pid in enumerate(self.product_ids.tolist())}


@dataclass
class FeatureSnapshot:
    """Customer features and product affinities at one cutoff, for serving."""

    cutoff: pd.Timestamp
    space: FeatureSpace
    customer_ids: np.ndarray
    X: np.ndarray
    catalog: Catalog
    affinity: AffinityState
    anonymous: np.ndarray
    """Feature row used for a guest checkout (the base's median customer)."""
    version: str = ""

    def __post_init__(self) -> None:
        self.feature_names = self.space.names
        self.index = {cid: i for i, cid in enumerate(self.customer_ids.tolist())}

    def rows(self, ids: list[str]) -> np.ndarray:
        """Row per id, -1 where the id is unknown."""
        get = self.index.get
        return np.fromiter((get(i, -1) for i in ids), dtype=np.int64, count=len(ids))

    def save(self, repo: Path, manifest: Manifest) -> Path:
        buf = io.BytesIO()
        a = self.affinity
        np.savez(
            buf,
            customer_ids=self.customer_ids.astype(str), X=self.X, anonymous=self.anonymous,
            product_ids=self.catalog.product_ids.astype(str), product_names=self.catalog.names.astype(str),
            product_categories=self.catalog.categories.astype(str), catalog_price=self.catalog.price,
            hist_indptr=a.hist.indptr, hist_indices=a.hist.indices, hist_data=a.hist.data,
            last_data=a.hist_last.data,
            cond_indptr=a.cond.indptr, cond_indices=a.cond.indices, cond_data=a.cond.data,
            pop_90d=a.pop_90d, pop_all=a.pop_all, pop_in_cat=a.pop_in_cat, repeat_rate=a.repeat_rate,
            price=a.price, product_cat=a.product_cat,
        )
        manifest.kind = "feature-snapshot"
        manifest.features = self.feature_names
        manifest.params.update({"space": self.space.to_dict(), "cutoff": self.cutoff.isoformat(),
                                "n_customers": int(len(self.customer_ids)),
                                "n_products": int(len(self.catalog.product_ids)),
                                "n_categories": a.n_categories})
        return write_artifact(repo, manifest, {"snapshot.npz": buf.getvalue()})

    @classmethod
    def load(cls, version_dir: Path, manifest: Manifest) -> "FeatureSnapshot":
        z = np.load(Path(version_dir) / "snapshot.npz", allow_pickle=False)
        C, P = len(z["customer_ids"]), len(z["product_ids"])
        hist = CSR(z["hist_data"], z["hist_indices"], z["hist_indptr"], (C, P))
        last = CSR(z["last_data"], z["hist_indices"], z["hist_indptr"], (C, P))
        cond = CSR(z["cond_data"], z["cond_indices"], z["cond_indptr"], (P, P))
        affinity = AffinityState(
            hist=hist, hist_last=last, cond=cond, pop_90d=z["pop_90d"], pop_all=z["pop_all"],
            pop_in_cat=z["pop_in_cat"], repeat_rate=z["repeat_rate"], price=z["price"],
            product_cat=z["product_cat"], n_categories=int(manifest.params["n_categories"]),
        )
        catalog = Catalog(z["product_ids"].astype(object), z["product_names"].astype(object),
                          z["product_categories"].astype(object), z["catalog_price"])
        space = FeatureSpace.from_dict(manifest.params["space"])
        snap = cls(
            cutoff=pd.Timestamp(manifest.params["cutoff"]), space=space,
            customer_ids=z["customer_ids"].astype(object), X=z["X"], catalog=catalog,
            affinity=affinity, anonymous=z["anonymous"], version=manifest.version,
        )
        if snap.feature_names != manifest.features:
            raise ValueError("snapshot feature names differ from its manifest")
        return snap

    @classmethod
    def load_latest(cls, repo: Path) -> "FeatureSnapshot":
        vdir, manifest = latest_valid(repo, SNAPSHOT_NAME)
        return cls.load(vdir, manifest)
