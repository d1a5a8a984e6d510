"""The embedded online feature store: a snapshot written by training, read by the services.

One artifact named "features" in the model repository (models/features/<version>/) holding
snapshot.npz (plain arrays, no pickle) and a manifest with the feature names and the cutoff.
The affinity matrices load as tenure.sparse.CSR (numpy only: the services do not load SciPy).
Loading 40k customers takes well under a second; lookups are a dict from id to row.
"""
from __future__ import annotations

import datetime
import io
import mmap
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tenure.artifacts import Manifest, latest_valid, write_artifact
from tenure.features import AffinityState, FeatureSpace
from tenure.sparse import CSR

SNAPSHOT_NAME = "features"
MAPPED_MEMBERS = ("hist_data", "last_data", "hist_indptr")
"""Product-history arrays mapped from snapshot.npz (copy-on-write), not read: a service pages in the rows it
uses (the segmentation service none), so a million customers' history costs no memory until read."""


def _mapped(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The members `names` of an uncompressed .npz, as arrays over a private mapping of the file; a
    compressed or missing member is left out (read as usual)."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        stored = {i.filename: i for i in archive.infolist() if i.compress_type == zipfile.ZIP_STORED}
        if not any(n + ".npy" in stored for n in names):
            return out
        whole = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        for name in names:
            info = stored.get(name + ".npy")
            if info is None:
                continue
            f.seek(info.header_offset + 26)  # the local header: name and extra field lengths, then the data
            name_len, extra_len = struct.unpack("<HH", f.read(4))
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                continue
            shape, fortran, dtype = read[version](f)
            if fortran or dtype.hasobject:
                continue
            count = int(np.prod(shape, dtype=np.int64))
            out[name] = np.frombuffer(whole, dtype, count, f.tell()).reshape(shape)
    return out


class Cutoff(datetime.datetime):
    """A snapshot's as-of time, read without pandas: naive means UTC (as a pandas Timestamp reads it)."""

    def timestamp(self) -> float:
        aware = self.replace(tzinfo=datetime.timezone.utc) if self.tzinfo is None else self
        return datetime.datetime.timestamp(aware)


def parse_cutoff(text: str) -> datetime.datetime:
    """The cutoff a manifest holds (pandas' isoformat): a Cutoff, or a pandas Timestamp for what datetime
    cannot hold (nanoseconds)."""
    try:
        if re.search(r"\.\d{7}", text):
            raise ValueError("below a microsecond")
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        import pandas as pd

        return pd.Timestamp(text)
    return Cutoff(t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond, t.tzinfo, fold=t.fold)


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

    cutoff: datetime.datetime
    """A pandas Timestamp in training; loaded: a Cutoff (the services do not import pandas)."""
    space: FeatureSpace
    customer_ids: np.ndarray
    X: np.ndarray
    catalog: Catalog
    affinity: AffinityState
    anonymous: np.ndarray
    """Feature row used for a guest checkout (the base's median customer)."""
    version: str = ""
    version_dir: Path | None = None
    """Where it was loaded from (the online store's seed, online.npz, is beside it)."""

    def __post_init__(self) -> None:
        self.feature_names = self.space.names
        self.index = {cid: i for i, cid in enumerate(self.customer_ids.tolist())}

    def rows(self, ids: list[str]) -> np.ndarray:
        """Row per id, -1 where the id is unknown."""
        get = self.index.get
        return np.fromiter((get(i, -1) for i in ids), dtype=np.int64, count=len(ids))

    def save(self, repo: Path, manifest: Manifest, extra: dict[str, bytes] | None = None) -> Path:
        """A new version of the artifact: snapshot.npz and the `extra` files (the online store's seed)."""
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
        return write_artifact(repo, manifest, {"snapshot.npz": buf.getvalue(), **(extra or {})})

    @classmethod
    def load(cls, version_dir: Path, manifest: Manifest) -> "FeatureSnapshot":
        path = Path(version_dir) / "snapshot.npz"
        mapped = _mapped(path, MAPPED_MEMBERS)
        with np.load(path, allow_pickle=False) as npz:
            # each read once (NpzFile reads again at every access); the mapped ones not at all
            z = {name: mapped[name] if name in mapped else npz[name] for name in npz.files}
        C, P = len(z["customer_ids"]), len(z["product_ids"])
        hist = CSR(z["hist_data"], z["hist_indices"], z["hist_indptr"], (C, P))
        last = CSR(z["last_data"], z["hist_indices"], z["hist_indptr"], (C, P))  # the same index arrays
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
            cutoff=parse_cutoff(manifest.params["cutoff"]), space=space,
            customer_ids=z.pop("customer_ids").astype(object), X=z["X"], catalog=catalog,
            affinity=affinity, anonymous=z["anonymous"], version=manifest.version, version_dir=Path(version_dir),
        )
        if snap.feature_names != manifest.features:
            raise ValueError("snapshot feature names differ from its manifest")
        return snap

    @classmethod
    def load_latest(cls, repo: Path) -> "FeatureSnapshot":
        vdir, manifest = latest_valid(repo, SNAPSHOT_NAME)
        return cls.load(vdir, manifest)
