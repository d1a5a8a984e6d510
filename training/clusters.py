"""Behavioural clusters: KMeans over a transformed subset of the customer features, served from ONNX.

Features (:func:`cluster_features`; only those present in the feature space are used, so CDNOW,
which has no categories or channels, works too). Behaviour only: demographics (age, gender,
region, signup) are left out, so clusters say how people buy, and a profile of a cluster can
still show its demographics afterwards.

* recency_days, tenure_days: when they last bought / since when they buy (log1p: days are heavy-tailed);
* orders_total, spend_total, avg_order_value, items_per_order, avg_unit_price, distinct_categories:
  frequency, monetary value, basket size, price level, breadth (log1p: counts and money are
  heavy-tailed, a customer with 200 orders would otherwise be a cluster of their own);
* gap_mean_days, gap_cv: rhythm and regularity of purchases (log1p). Their -1 "unknown" (one or
  two orders) is replaced by the mean of the known transformed values, i.e. 0 after scaling, so a
  missing gap adds no distance; orders_total already separates those customers;
* spend_trend (already in [-1, 1]) and return_value_share (log1p): fading spend and returns,
  both churn drivers;
* chan_share_* and cat_share_*: channel and category mix. Each block is down-weighted so that it
  counts as :data:`BLOCK_WEIGHT` standardized features in total (each of its m columns gets weight
  sqrt(BLOCK_WEIGHT / m)); unweighted, 20 category columns would outvote everything else and the
  clusters would be taste groups, not behaviour groups.

Transform: select -> fill sentinels -> log1p(max(x, 0)) where flagged -> StandardScaler (whose
scale_ is divided by the column weights) -> KMeans. The ONNX model takes the full customer
feature row [N, n_features] float32 (the snapshot row as is): a small hand-written prelude
(Gather, Cast to double, Log, Where) does the selection, fill and log1p, followed by the skl2onnx
conversion of the StandardScaler + KMeans pipeline in double precision. Outputs: ``label`` int64
[N] and ``scores`` float32 [N, k] (Euclidean distance to each centroid in the weighted space).

k: fixed (default 6), or ``k=None`` to pick the k in ``k_range`` with the best silhouette on a
sample of the training rows. Clusters are renumbered by decreasing mean transformed spend, so
cluster 0 is the most valuable one. Names and descriptions come from each cluster's profile
against the whole base (:func:`describe_clusters`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from tenure.artifacts import Manifest, load_manifest, write_artifact
from tenure.errors import ArtifactError
from tenure.profile import SENTINEL, BaseStats, profile

log = logging.getLogger(__name__)

INPUT_NAME = "features"
LABEL_OUTPUT = "label"
SCORES_OUTPUT = "scores"
SCORE_TOLERANCE = 1e-3
"""Max |ONNX - sklearn| distance allowed on held-out rows (ONNX computes in double, returns float32)."""
TARGET_OPSET = 17
BLOCK_WEIGHT = 2.0
"""Total weight of the channel-mix block and of the category-mix block, in standardized features."""

# (feature, log1p, -1 means unknown)
NUMERIC_FEATURES: tuple[tuple[str, bool, bool], ...] = (
    ("recency_days", True, False),
    ("tenure_days", True, False),
    ("orders_total", True, False),
    ("spend_total", True, False),
    ("avg_order_value", True, False),
    ("items_per_order", True, False),
    ("avg_unit_price", True, False),
    ("distinct_categories", True, False),
    ("gap_mean_days", True, True),
    ("gap_cv", True, True),
    ("spend_trend", False, False),
    ("return_value_share", True, False),
)
BLOCK_PREFIXES: tuple[str, ...] = ("chan_share_", "cat_share_")


@dataclass(frozen=True)
class ClusterFeature:
    name: str
    column: int
    """Index in the full customer feature row."""
    log1p: bool
    sentinel: bool
    weight: float


def cluster_features(names: list[str]) -> list[ClusterFeature]:
    """The behaviour features of the module docstring that this feature space has, in a fixed order."""
    idx = {n: i for i, n in enumerate(names)}
    out = [ClusterFeature(n, idx[n], lg, sent, 1.0) for n, lg, sent in NUMERIC_FEATURES if n in idx]
    for prefix in BLOCK_PREFIXES:
        block = [n for n in names if n.startswith(prefix)]
        w = float(np.sqrt(BLOCK_WEIGHT / len(block))) if block else 1.0
        out += [ClusterFeature(n, idx[n], False, False, w) for n in block]
    if len(out) < 2:
        raise ValueError("clusters: the feature space has fewer than two behaviour features")
    return out


@dataclass
class ClusterInfo:
    """What serving returns about a cluster."""

    id: int
    name: str
    description: str
    size: int
    share: float
    traits: list[str] = field(default_factory=list)
    medians: dict[str, float] = field(default_factory=dict)
    top_features: list[dict[str, Any]] = field(default_factory=list)
    """The most distinctive rows of the cluster's profile (tenure.profile.ProfileRow dicts)."""


class ClusterModel:
    """Transform + StandardScaler + KMeans over the customer feature rows."""

    def __init__(self, k: int | None = 6, k_range: tuple[int, int] = (4, 8), seed: int = 7,
                 holdout_fraction: float = 0.2, silhouette_sample: int = 3_000, n_init: int = 4,
                 threads: int = 1) -> None:
        self.k = k
        self.k_range = k_range
        self.seed = seed
        self.holdout_fraction = holdout_fraction
        self.silhouette_sample = silhouette_sample
        self.n_init = n_init
        self.threads = threads

    # ---- fit -----------------------------------------------------------------------------
    def fit(self, names: list[str], X: np.ndarray) -> "ClusterModel":
        """Fit on a random (1 - holdout_fraction) of the rows; the rest is kept for checks."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(names):
            raise ValueError(f"clusters: X has shape {X.shape}, expected (n, {len(names)})")
        self.names_ = list(names)
        self.features_ = cluster_features(self.names_)
        rng = np.random.default_rng(self.seed)
        holdout = rng.random(len(X)) < self.holdout_fraction
        train = np.flatnonzero(~holdout)
        min_rows = max(self.k or self.k_range[1], 2) * 5
        if len(train) < min_rows:
            raise ValueError(f"clusters: {len(train)} training rows; need at least {min_rows}")
        self.holdout_rows_ = np.flatnonzero(holdout)

        cols = np.array([f.column for f in self.features_])
        is_log = np.array([f.log1p for f in self.features_])
        is_sent = np.array([f.sentinel for f in self.features_])
        T = _log_part(X[train][:, cols].astype(np.float64), is_log)
        unknown = is_sent[None, :] & (X[train][:, cols] == SENTINEL)
        known_n = (~unknown).sum(axis=0)
        fill = np.where(known_n > 0, np.where(unknown, 0.0, T).sum(axis=0) / np.maximum(known_n, 1), 0.0)
        self.columns_, self.is_log_, self.is_sentinel_, self.fill_ = cols, is_log, is_sent, fill
        T = np.where(unknown, fill[None, :], T)

        scaler = StandardScaler().fit(T)
        scaler.scale_ = scaler.scale_ / np.array([f.weight for f in self.features_])
        Z = scaler.transform(T)
        with threadpool_limits(limits=self.threads):
            ks = [self.k] if self.k is not None else list(range(self.k_range[0], self.k_range[1] + 1))
            fits = {k: KMeans(k, n_init=self.n_init, random_state=self.seed).fit(Z) for k in ks}
            sample = rng.choice(len(Z), size=min(self.silhouette_sample, len(Z)), replace=False)
            self.silhouettes_ = {k: float(silhouette_score(Z[sample], km.labels_[sample])) for k, km in fits.items()}
        best = max(self.silhouettes_, key=lambda k: self.silhouettes_[k]) if self.k is None else self.k
        km = fits[best]
        # Renumber: cluster 0 has the highest mean (transformed) spend.
        spend_col = next((j for j, f in enumerate(self.features_) if f.name == "spend_total"), 0)
        order = np.argsort(-km.cluster_centers_[:, spend_col], kind="stable")
        km.cluster_centers_ = km.cluster_centers_[order]
        km.labels_ = np.argsort(order)[km.labels_].astype(km.labels_.dtype)
        self.k_ = int(best)
        self.pipeline_ = Pipeline([("scale", scaler), ("kmeans", km)])
        self.train_rows_ = train
        return self

    # ---- inference -----------------------------------------------------------------------
    def transform_rows(self, X: np.ndarray) -> np.ndarray:
        """Full feature rows -> the selected, filled, log1p'd columns (float64), as the ONNX prelude does."""
        sel = np.asarray(X, dtype=np.float32)[:, self.columns_]
        T = _log_part(sel.astype(np.float64), self.is_log_)
        return np.where(self.is_sentinel_[None, :] & (sel == SENTINEL), self.fill_[None, :], T)

    def predict(self, X: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=self.threads):
            return np.asarray(self.pipeline_.predict(self.transform_rows(X)), dtype=np.int64)

    def distances(self, X: np.ndarray) -> np.ndarray:
        with threadpool_limits(limits=self.threads):
            return np.asarray(self.pipeline_.transform(self.transform_rows(X)), dtype=np.float64)

    def evaluate(self, X: np.ndarray) -> dict[str, Any]:
        """Silhouette on a holdout sample, inertia per row, cluster sizes on all rows (flat, JSON-able)."""
        labels = self.predict(X)
        h = self.holdout_rows_
        out: dict[str, Any] = {"k": self.k_, "rows": int(len(X)), "train_rows": int(len(self.train_rows_)),
                               "holdout_rows": int(len(h))}
        if len(h) > self.k_:
            rng = np.random.default_rng(self.seed + 1)
            sample = rng.choice(h, size=min(self.silhouette_sample, len(h)), replace=False)
            Z = self.pipeline_.named_steps["scale"].transform(self.transform_rows(X[sample]))
            with threadpool_limits(limits=self.threads):
                ok = len(np.unique(labels[sample])) > 1
                out["holdout_silhouette"] = float(silhouette_score(Z, labels[sample])) if ok else None
            out["holdout_inertia_per_row"] = float(np.mean(np.min(self.distances(X[h]), axis=1) ** 2))
        for k, s in sorted(self.silhouettes_.items()):
            out[f"train_silhouette_k{k}"] = s
        sizes = np.bincount(labels, minlength=self.k_)
        for c in range(self.k_):
            out[f"cluster_{c}_share"] = float(sizes[c] / max(len(X), 1))
        return out

    def describe(self, X: np.ndarray) -> list[ClusterInfo]:
        """Name and description of every cluster, from its profile against all rows of X."""
        return describe_clusters(self, X, self.predict(X))


def _log_part(A: np.ndarray, is_log: np.ndarray) -> np.ndarray:
    return np.where(is_log[None, :], np.log(np.maximum(A, 0.0) + 1.0), A)


# ---- names and descriptions -------------------------------------------------------------------

STRONG_TRAIT = 1.5
"""A trait outside the name slots this strong (z-score or distinctiveness) is appended to the name."""


@dataclass
class _Trait:
    key: str
    strength: float
    phrase: str
    label: str = ""
    """Short form used to tell apart two clusters with the same name."""


_NAME_TRAITS = frozenset({"new", "recent", "cooling", "lapsed", "high_spend", "low_spend", "one_time", "frequent",
                          "regular", "repeat", "occasional"})


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:.1f}"


def describe_clusters(model: ClusterModel, X: np.ndarray, labels: np.ndarray) -> list[ClusterInfo]:
    """Human names ("Lapsed low-value one-time buyers") and descriptions for each cluster.

    The strength of a numeric trait is the cluster's mean z-score in the transformed space (log
    scale for money and counts, so a few whales do not make a cluster "high spending"); channel
    and category traits use the cluster's profile (share and index vs the base). The name is
    "<status> [<value>] <buyer type>": status from the median recency / tenure (new: first order
    <= 180 and last <= 90 days ago; active: last order <= 90 days ago; cooling: <= 365; lapsed:
    longer), value
    from the spend z-score (+-0.5), buyer type from the one-order share and the frequency and
    regularity z-scores. The strongest other trait is appended when it reaches STRONG_TRAIT, and
    clusters that would still share a name get it appended anyway. The description lists every trait found, strongest first.
    """
    names = model.names_
    col = {n: i for i, n in enumerate(names)}
    base = BaseStats.compute(X, names)
    scaler = model.pipeline_.named_steps["scale"]
    weights = np.array([f.weight for f in model.features_])
    Zu = scaler.transform(model.transform_rows(X)) * weights[None, :]  # unweighted z-scores
    fpos = {f.name: j for j, f in enumerate(model.features_)}
    med_features: list[str] = [n for n in ("recency_days", "tenure_days", "orders_total", "spend_total") if n in col]
    base_med = {n: float(np.median(X[:, col[n]])) for n in med_features}
    infos: list[ClusterInfo] = []
    traits_by_id: dict[int, list[_Trait]] = {}
    for c in range(model.k_):
        rows = labels == c
        size = int(rows.sum())
        if size == 0:
            infos.append(ClusterInfo(c, f"Cluster {c}", "No customer in this cluster on this data.", 0, 0.0))
            traits_by_id[c] = []
            continue
        z = {n: float(Zu[rows, j].mean()) for n, j in fpos.items()}
        med = {n: float(np.median(X[rows, col[n]])) for n in med_features}
        one_time = float(np.mean(X[rows, col["orders_total"]] <= 1)) if "orders_total" in col else 0.0
        prof = profile(X, names, rows, base=base)
        status, value, kind, traits = _traits(z, med, base_med, one_time, prof)
        traits.sort(key=lambda t: -t.strength)
        traits_by_id[c] = traits
        name = " ".join(w for w in (status, value, kind) if w)
        lead = next((t for t in traits if t.key not in _NAME_TRAITS and t.label), None)
        if lead is not None and lead.strength >= STRONG_TRAIT:
            name = f"{name}, {lead.label}"
        desc = ", ".join(t.phrase for t in traits)
        infos.append(ClusterInfo(
            id=c, name=name[0].upper() + name[1:], description=desc[0].upper() + desc[1:] + ".",
            size=size, share=size / len(X), traits=[t.key for t in traits],
            medians={**med, "one_time_share": one_time},
            top_features=[r.to_dict() for r in prof[:8]],
        ))
    _make_unique(infos, traits_by_id)
    return infos


def _traits(z: dict[str, float], med: dict[str, float], base_med: dict[str, float], one_time: float,
            prof: list[Any]) -> tuple[str, str, str, list[_Trait]]:
    """(status, value, buyer type, traits) of one cluster; see describe_clusters."""
    traits: list[_Trait] = []
    rec, ten = med.get("recency_days", 0.0), med.get("tenure_days", float("inf"))
    if ten <= 180 and rec <= 90:
        status = "new"
        traits.append(_Trait("new", 2.0, f"new and active (first order a median {_fmt(ten)} days ago, "
                                         f"last one {_fmt(rec)} days ago)"))
    elif rec <= 90:
        status = "active"
        traits.append(_Trait("recent", 1.0 + max(-z.get("recency_days", 0.0), 0.0),
                             f"recently active (last order a median {_fmt(rec)} days ago)"))
    elif rec <= 365:
        status = "cooling"
        traits.append(_Trait("cooling", 0.8, f"cooling off (last order a median {_fmt(rec)} days ago)"))
    else:
        status = "lapsed"
        traits.append(_Trait("lapsed", 1.0 + max(z.get("recency_days", 0.0), 0.0),
                             f"lapsed (no order for a median {_fmt(rec)} days)"))

    zs = z.get("spend_total", 0.0)
    value = ""
    spend_note = f"median spend {_fmt(med.get('spend_total', 0.0))} vs {_fmt(base_med.get('spend_total', 0.0))} overall"
    if zs >= 0.5:
        value = "high-value"
        traits.append(_Trait("high_spend", zs, f"high spenders ({spend_note})"))
    elif zs <= -0.5:
        value = "low-value"
        traits.append(_Trait("low_spend", -zs, f"low spenders ({spend_note})"))

    zo, zcv = z.get("orders_total", 0.0), z.get("gap_cv", 0.0)
    orders_note = f"median {_fmt(med.get('orders_total', 0.0))} orders vs {_fmt(base_med.get('orders_total', 0.0))}"
    if one_time >= 0.5:
        kind = "one-time buyers"
        traits.append(_Trait("one_time", 1.0 + one_time, f"{one_time:.0%} bought only once"))
    elif zo >= 0.8:
        kind = "frequent buyers"
        traits.append(_Trait("frequent", zo, f"frequent ({orders_note})"))
    elif zcv <= -0.5 and one_time < 0.3:
        kind = "regular buyers"
        traits.append(_Trait("regular", -zcv, "regular purchase rhythm"))
    elif one_time < 0.3 and zo > -0.3:
        kind = "repeat buyers"
        traits.append(_Trait("repeat", max(zo, 0.3), f"repeat buyers ({orders_note})"))
    else:
        kind = "occasional buyers"
        traits.append(_Trait("occasional", 0.3, f"occasional buyers ({orders_note})"))
    if kind != "regular buyers" and zcv <= -0.7:
        traits.append(_Trait("regular", -zcv, "regular purchase rhythm", "regular"))

    for key, feat, lo, hi, low_txt, high_txt, low_label, high_label in (
        ("trend", "spend_trend", -0.6, 0.6 if status != "new" else np.inf, "spending less than in the half-year "
         "before", "spending more than in the half-year before", "fading", "growing"),
        ("returns", "return_value_share", -np.inf, 0.8, "", f"return a lot ({_mean_vs_base(prof, 'return_value_share')}"
         " of spend returned)", "", "returners"),
        ("aov", "avg_order_value", -0.8, 0.8, "small orders", "big orders", "small orders", "big orders"),
        ("price", "avg_unit_price", -0.8, 0.8, "budget products", "premium products", "budget", "premium"),
        ("breadth", "distinct_categories", -0.8, 0.8, "few categories", "many categories", "narrow mix", "broad mix"),
    ):
        v = z.get(feat, 0.0)
        if v >= hi:
            traits.append(_Trait(f"{key}_high", v, high_txt, high_label))
        elif v <= lo:
            traits.append(_Trait(f"{key}_low", -v, low_txt, low_label))

    for prefix, what in (("chan_share_", "orders"), ("cat_share_", "spend")):
        rows = [r for r in prof if r.feature.startswith(prefix) and r.group_mean is not None and r.index is not None]
        if rows:
            top = max(rows, key=lambda r: r.group_mean)
            level = top.feature[len(prefix):]
            if top.group_mean >= 0.4 and top.index >= 130:
                traits.append(_Trait(f"{prefix}{level}", top.distinctiveness,
                                     f"mostly {level} ({top.group_mean:.0%} of {what} vs {top.base_mean:.0%})",
                                     f"mostly {level}"))
    return status, value, kind, traits


def _mean_vs_base(prof: list[Any], feature: str) -> str:
    row = next((r for r in prof if r.feature == feature), None)
    if row is None or row.group_mean is None or row.base_mean is None:
        return "?"
    return f"{row.group_mean:.0%} vs {row.base_mean:.0%}"


def _make_unique(infos: list[ClusterInfo], traits_by_id: dict[int, list[_Trait]]) -> None:
    """Clusters that share a name get their strongest trait not already in the name appended."""
    counts: dict[str, int] = {}
    for info in infos:
        counts[info.name] = counts.get(info.name, 0) + 1
    for info in infos:
        if counts[info.name] > 1:
            extra = next((t for t in traits_by_id[info.id] if t.key not in _NAME_TRAITS and t.label), None)
            if extra is not None:
                info.name = f"{info.name}, {extra.label}"
    seen: dict[str, int] = {}
    for info in infos:
        seen[info.name] = seen.get(info.name, 0) + 1
        if seen[info.name] > 1:
            info.name = f"{info.name} ({info.id})"


# ---- ONNX -----------------------------------------------------------------------------------

def kmeans_to_onnx(model: ClusterModel) -> bytes:
    """Prelude (select, log1p, fill) + skl2onnx StandardScaler/KMeans in double -> label, scores float32."""
    d, n_all = len(model.features_), len(model.names_)
    core = convert_sklearn(model.pipeline_, initial_types=[("transformed", DoubleTensorType([None, d]))],
                           target_opset=TARGET_OPSET)
    g = core.graph
    for node in g.node:  # the core's double "scores" becomes an intermediate, cast to float32 at the end
        node.output[:] = ["scores_double" if o == SCORES_OUTPUT else o for o in node.output]
    consts = [
        numpy_helper.from_array(model.columns_.astype(np.int64), "prelude_columns"),
        numpy_helper.from_array(np.array(0.0), "prelude_zero"),
        numpy_helper.from_array(np.array(1.0), "prelude_one"),
        numpy_helper.from_array(np.array(SENTINEL, dtype=np.float64), "prelude_sentinel"),
        numpy_helper.from_array(model.is_log_.reshape(1, d), "prelude_is_log"),
        numpy_helper.from_array(model.is_sentinel_.reshape(1, d), "prelude_has_sentinel"),
        numpy_helper.from_array(model.fill_.reshape(1, d).astype(np.float64), "prelude_fill"),
    ]
    prelude = [
        helper.make_node("Gather", [INPUT_NAME, "prelude_columns"], ["prelude_sel"], axis=1, name="prelude_gather"),
        helper.make_node("Cast", ["prelude_sel"], ["prelude_x"], to=TensorProto.DOUBLE, name="prelude_cast"),
        helper.make_node("Max", ["prelude_x", "prelude_zero"], ["prelude_pos"], name="prelude_max"),
        helper.make_node("Add", ["prelude_pos", "prelude_one"], ["prelude_pos1"], name="prelude_add"),
        helper.make_node("Log", ["prelude_pos1"], ["prelude_log1p"], name="prelude_log"),
        helper.make_node("Where", ["prelude_is_log", "prelude_log1p", "prelude_x"], ["prelude_t"], name="prelude_where_log"),
        helper.make_node("Equal", ["prelude_x", "prelude_sentinel"], ["prelude_is_m1"], name="prelude_equal"),
        helper.make_node("And", ["prelude_is_m1", "prelude_has_sentinel"], ["prelude_unknown"], name="prelude_and"),
        helper.make_node("Where", ["prelude_unknown", "prelude_fill", "prelude_t"], ["transformed"],
                         name="prelude_where_fill"),
    ]
    cast = helper.make_node("Cast", ["scores_double"], [SCORES_OUTPUT], to=TensorProto.FLOAT, name="scores_cast")
    graph = helper.make_graph(
        prelude + list(g.node) + [cast], "tenure_clusters",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_all])],
        outputs=[helper.make_tensor_value_info(LABEL_OUTPUT, TensorProto.INT64, [None]),
                 helper.make_tensor_value_info(SCORES_OUTPUT, TensorProto.FLOAT, [None, model.k_])],
        initializer=consts + list(g.initializer),
    )
    out = helper.make_model(graph, opset_imports=list(core.opset_import), producer_name="tenure")
    out.ir_version = core.ir_version
    onnx.checker.check_model(out, full_check=True)
    return out.SerializeToString()


def onnx_clusters(onnx_bytes: bytes, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label int64 [N], scores float32 [N, k]) from the exported model."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    label, scores = sess.run([LABEL_OUTPUT, SCORES_OUTPUT], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})
    return np.asarray(label), np.asarray(scores)


def parity(model: ClusterModel, onnx_bytes: bytes, X: np.ndarray) -> tuple[int, float]:
    """(label mismatches, max |distance difference|) between ONNX and sklearn on the given rows."""
    if not len(X):
        return 0, 0.0
    label, scores = onnx_clusters(onnx_bytes, X)
    return int(np.sum(label != model.predict(X))), float(np.max(np.abs(scores - model.distances(X))))


def export_kmeans(repo: Path, name: str, model: ClusterModel, X_check: np.ndarray, *, clusters: list[ClusterInfo],
                  metrics: dict[str, Any], training_window: dict[str, str] | None = None,
                  params: dict[str, Any] | None = None, data_fingerprint: str = "") -> Path:
    """Convert, check parity on X_check (held-out rows), write models/<name>/<version>/.

    The cluster names and descriptions go into the manifest params ("clusters", by label) and
    into clusters.json next to the model.
    """
    onnx_bytes = kmeans_to_onnx(model)
    mismatches, diff = parity(model, onnx_bytes, X_check)
    if mismatches or not diff <= SCORE_TOLERANCE:
        raise ArtifactError(f"{name}: ONNX differs from sklearn on {mismatches} labels, distances by {diff:.2e} "
                            f"(> {SCORE_TOLERANCE})", model=name)
    metrics = {**metrics, "onnx_parity_max_abs_diff": diff, "onnx_parity_label_mismatches": mismatches,
               "onnx_parity_rows": int(len(X_check))}
    cluster_dicts = [asdict(c) for c in clusters]
    features = [{**asdict(f), "fill": float(model.fill_[j])} for j, f in enumerate(model.features_)]
    manifest = Manifest(
        name=name,
        kind="sklearn-kmeans",
        features=list(model.names_),
        inputs=[{"name": INPUT_NAME, "dtype": "float32", "shape": [-1, len(model.names_)]}],
        outputs=[{"name": LABEL_OUTPUT, "dtype": "int64", "shape": [-1]},
                 {"name": SCORES_OUTPUT, "dtype": "float32", "shape": [-1, model.k_], "meaning": "distance"}],
        training_window=training_window or {},
        metrics=metrics,
        params={"k": model.k_, "seed": model.seed, "cluster_features": features, "clusters": cluster_dicts,
                **(params or {})},
        data_fingerprint=data_fingerprint,
    )
    files: dict[str, bytes | Path] = {"model.onnx": onnx_bytes,
                                      "clusters.json": json.dumps(cluster_dicts, indent=2).encode()}
    path = write_artifact(repo, manifest, files)
    log.info("exported %s -> %s (k=%d, parity %.1e on %d rows)", name, path, model.k_, diff, len(X_check))
    return path


def train_clusters(repo: Path, names: list[str], X: np.ndarray, *, name: str = "clusters", k: int | None = 6,
                   seed: int = 7, threads: int = 1, training_window: dict[str, str] | None = None,
                   data_fingerprint: str = "") -> dict[str, Any]:
    """Fit on the serving snapshot's rows, describe, export; returns {name, path, metrics, clusters}."""
    model = ClusterModel(k=k, seed=seed, threads=threads).fit(names, X)
    metrics = model.evaluate(X)
    clusters = model.describe(X)
    path = export_kmeans(repo, name, model, X[model.holdout_rows_[:5_000]], clusters=clusters, metrics=metrics,
                         training_window=training_window, data_fingerprint=data_fingerprint)
    return {"name": name, "path": str(path), "metrics": load_manifest(path).metrics,
            "clusters": [asdict(c) for c in clusters]}
