"""Best channel: which channel a customer's next conversion comes through, as a LightGBM multiclass.

Label at cutoff T: the channel of the customer's first purchase order in [T, T + H) (H default
90 days). Only customers with a purchase before T (they have features) and an order in the window
are labelled; orders whose channel is unknown (the canonical "unknown" stand-in, or a channel
outside the feature space's kept levels) leave that customer unlabelled. The classes are the
feature space's channels minus "unknown" that occur in the training labels, in the space's
(alphabetical) order; the ONNX output "probabilities" has one column per class in that order.

Time split as in training/churn.py: the holdout cutoff is end - H (its window ends with the
data); training cutoffs step back from holdout - H, so no training label window overlaps the
holdout window. Early stopping uses a customer split of the training rows only.

Baselines on the same holdout rows, their probabilities estimated on the training rows only:

* majority: the training label distribution (top-1 = the most common channel);
* frequent: the customer's most frequent past channel; probabilities = past order counts per
  channel + alpha * prior (alpha chosen on the training rows), ties broken by the prior;
* last: the customer's last channel before the cutoff; probabilities = P(next | last channel)
  from the training rows (add-one smoothing); ranking = last channel first, then by those.

Data without channels (CDNOW) has no channel column, so the feature space has no channel levels:
:func:`channel_classes` raises DataError and :func:`train_channel` returns None.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import pandas as pd

from tenure.artifacts import load_manifest, write_artifact
from tenure.data import UNKNOWN, Shop
from tenure.errors import ArtifactError, DataError
from tenure.features import FeatureSpace, TxArrays, to_days
from training.evaluation import evaluation_file
from training.export import INPUT_NAME, PARITY_TOLERANCE, PROBA_OUTPUT, lightgbm_manifest, lightgbm_to_onnx
from training.lgbm import fit_classifier
from training.windows import History, NotEnoughHistory

log = logging.getLogger(__name__)

_ALPHAS = (0.25, 0.5, 1.0, 2.0, 4.0)
_EPS = 1e-15


def channel_classes(space: FeatureSpace) -> tuple[str, ...]:
    """The channels a model can predict: the space's levels minus 'unknown'. DataError if < 2."""
    if not space.channels:
        raise DataError("channel model: the data has no channel column (e.g. CDNOW); nothing to predict")
    known = tuple(c for c in space.channels if c != UNKNOWN and c != "")
    if len(known) < 2:
        raise DataError(f"channel model: need at least two known channels, the data has {list(known)}")
    return known


def has_channels(space: FeatureSpace) -> bool:
    try:
        channel_classes(space)
    except DataError:
        return False
    return True


@dataclass
class ChannelSet:
    """Labelled rows at one cutoff: customer codes, features, class index, and baseline inputs."""

    codes: np.ndarray
    X: np.ndarray
    y: np.ndarray
    past_counts: np.ndarray
    """Past purchase orders per class channel, [n, n_classes]."""
    last: np.ndarray
    """Class index of the last order's channel before the cutoff, -1 if unknown."""
    cutoff: pd.Timestamp


def _space_to_class(space: FeatureSpace, classes: tuple[str, ...]) -> np.ndarray:
    """Channel code in the feature space -> class index (-1: not a class)."""
    pos = {c: i for i, c in enumerate(classes)}
    return np.array([pos.get(c, -1) for c in space.channels] + [-1], dtype=np.int64)  # code -1 -> last entry


def channel_set(space: FeatureSpace, arrays: TxArrays, customers: pd.DataFrame | None, cutoff: pd.Timestamp,
                horizon_days: int, classes: tuple[str, ...]) -> ChannelSet:
    """Features at the cutoff for customers whose next order (in the window) has a class channel."""
    codes, X = space.customer_features(arrays, cutoff, customers)
    T = to_days(pd.Timestamp(cutoff))
    to_class = _space_to_class(space, classes)
    in_win = (arrays.o_t >= T) & (arrays.o_t < T + horizon_days)
    wc, wch = arrays.o_cust[in_win], arrays.o_chan[in_win]
    first_cust, first_idx = np.unique(wc, return_index=True)  # orders sorted by (customer, t): first = earliest
    next_class = np.full(arrays.n_customers, -1, np.int64)
    next_class[first_cust] = to_class[wch[first_idx]]

    before = arrays.o_t < T
    bc, bch = arrays.o_cust[before], arrays.o_chan[before]
    last_class = np.full(arrays.n_customers, -1, np.int64)
    if len(bc):
        ends = np.r_[np.flatnonzero(bc[1:] != bc[:-1]), len(bc) - 1]
        last_class[bc[ends]] = to_class[bch[ends]]
    K = len(classes)
    cls = to_class[bch]
    ok = cls >= 0
    counts = np.bincount(bc[ok] * K + cls[ok], minlength=arrays.n_customers * K).reshape(arrays.n_customers, K)

    y = next_class[codes]
    keep = y >= 0
    c = codes[keep]
    return ChannelSet(c, X[keep], y[keep], counts[c].astype(np.float64), last_class[c], pd.Timestamp(cutoff))


def log_loss(y: np.ndarray, P: np.ndarray) -> float:
    """Mean -log P[y] (probabilities clipped at 1e-15)."""
    return float(-np.mean(np.log(np.clip(P[np.arange(len(y)), y], _EPS, 1.0))))


def top_k_accuracy(y: np.ndarray, ranking: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the first k columns of `ranking` (class indices, best first)."""
    return float(np.mean(np.any(ranking[:, :k] == y[:, None], axis=1)))


def _rank(P: np.ndarray) -> np.ndarray:
    return np.argsort(-P, axis=1, kind="stable")


class ChannelModel:
    """LightGBM multiclass over the customer features: P(next conversion's channel)."""

    def __init__(self, horizon_days: int = 90, n_train_cutoffs: int = 6, cutoff_step_days: int = 30,
                 seed: int = 7, threads: int = 1, num_leaves: int = 7, min_child_samples: int = 200) -> None:
        self.horizon_days = horizon_days
        self.n_train_cutoffs = n_train_cutoffs
        self.cutoff_step_days = cutoff_step_days
        self.seed = seed
        self.threads = threads
        # The label is noisy (a customer's channel varies from order to order): small, well-populated
        # leaves generalise better than the binary models' 31 leaves / 50 rows (tried on the default shop).
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples

    def cutoffs(self, end: pd.Timestamp) -> tuple[list[pd.Timestamp], pd.Timestamp]:
        H = pd.Timedelta(days=self.horizon_days)
        holdout = pd.Timestamp(end) - H
        train = [holdout - H - pd.Timedelta(days=self.cutoff_step_days * k) for k in range(self.n_train_cutoffs)]
        return train, holdout

    def fit(self, shop: Shop, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp) -> "ChannelModel":
        classes = channel_classes(space)
        train_cutoffs, holdout_cutoff = self.cutoffs(end)
        history = History.of(shop.transactions)
        sets = [channel_set(space, arrays, shop.customers, c, self.horizon_days, classes)
                for c in train_cutoffs if history.has_features(c)]
        sets = [s for s in sets if len(s.y)]
        if not sets:
            raise NotEnoughHistory(f"channel model: not enough history for a {self.horizon_days}-day horizon: "
                                   f"{history.describe()}")
        y_all = np.concatenate([s.y for s in sets])
        present = np.flatnonzero(np.bincount(y_all, minlength=len(classes)) > 0)
        if len(present) < 2:
            raise DataError(f"channel model: the training labels hold {len(present)} channel(s); need two or more")
        remap = np.full(len(classes), -1, np.int64)
        remap[present] = np.arange(len(present))
        self.classes_ = tuple(classes[i] for i in present)
        sets = [_remap(s, remap, present) for s in sets]

        X = np.concatenate([s.X for s in sets])
        y = np.concatenate([s.y for s in sets])
        groups = np.concatenate([s.codes for s in sets])
        self.model_: lgb.LGBMClassifier = fit_classifier(X, y, groups, seed=self.seed, threads=self.threads,
                                                             num_leaves=self.num_leaves,
                                                             min_child_samples=self.min_child_samples,
                                                             multiclass=True)
        self.feature_names_ = space.names
        self.train_cutoffs_ = [s.cutoff for s in sets]
        self.holdout_cutoff_ = holdout_cutoff
        self.train_rows_ = int(len(y))
        self._fit_baselines(sets)
        holdout = channel_set(space, arrays, shop.customers, holdout_cutoff, self.horizon_days, classes)
        self.holdout_ = _remap(holdout, remap, present)
        return self

    def _fit_baselines(self, sets: list[ChannelSet]) -> None:
        K = len(self.classes_)
        y = np.concatenate([s.y for s in sets])
        counts = np.concatenate([s.past_counts for s in sets])
        last = np.concatenate([s.last for s in sets])
        self.prior_ = np.bincount(y, minlength=K).astype(np.float64) / len(y)
        self.alpha_ = min(_ALPHAS, key=lambda a: log_loss(y, self._frequent_proba(counts, a)))
        trans = np.ones((K, K))
        np.add.at(trans, (last[last >= 0], y[last >= 0]), 1.0)
        self.transition_ = trans / trans.sum(axis=1, keepdims=True)

    def _frequent_proba(self, counts: np.ndarray, alpha: float) -> np.ndarray:
        P = counts + alpha * self.prior_[None, :]
        return P / P.sum(axis=1, keepdims=True)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """[N, n_classes] in `classes_` order."""
        return np.asarray(self.model_.predict_proba(np.asarray(X, dtype=np.float32)), dtype=np.float64)

    def evaluate(self) -> dict[str, Any]:
        """Holdout top-1 (= accuracy) / top-2 accuracy and log loss of the model and the baselines."""
        h = self.holdout_
        if not len(h.y):
            raise DataError("channel model: no labelled customer at the holdout cutoff")
        K = len(self.classes_)
        out: dict[str, Any] = {
            "holdout_cutoff": str(h.cutoff.date()), "holdout_rows": int(len(h.y)), "train_rows": self.train_rows_,
            "n_classes": K, "channels": ",".join(self.classes_), "frequent_alpha": self.alpha_,
        }
        for i, c in enumerate(self.classes_):
            out[f"holdout_share_{c}"] = float(np.mean(h.y == i))
        P = self.predict_proba(h.X)
        prior = np.broadcast_to(self.prior_, (len(h.y), K))
        freq = self._frequent_proba(h.past_counts, self.alpha_)
        trans = np.where(h.last[:, None] >= 0, self.transition_[np.maximum(h.last, 0)], prior)
        # the last channel first, then the others by P(next | last)
        boost = np.zeros_like(trans)
        boost[np.flatnonzero(h.last >= 0), h.last[h.last >= 0]] = 2.0
        ranks = {"": _rank(P), "baseline_majority_": _rank(prior), "baseline_frequent_": _rank(freq),
                 "baseline_last_": _rank(trans + boost)}
        probs = {"": P, "baseline_majority_": prior, "baseline_frequent_": freq, "baseline_last_": trans}
        for prefix, R in ranks.items():
            out[f"{prefix}top1_accuracy"] = top_k_accuracy(h.y, R, 1)
            out[f"{prefix}top2_accuracy"] = top_k_accuracy(h.y, R, 2)
            out[f"{prefix}log_loss"] = log_loss(h.y, probs[prefix])
        out["accuracy"] = out["top1_accuracy"]
        return out


def _remap(s: ChannelSet, remap: np.ndarray, present: np.ndarray) -> ChannelSet:
    """Keep rows whose class occurs in training, re-indexed to the kept classes."""
    y = remap[s.y]
    keep = y >= 0
    last = np.where(s.last >= 0, remap[np.maximum(s.last, 0)], -1)
    return ChannelSet(s.codes[keep], s.X[keep], y[keep], s.past_counts[keep][:, present], last[keep], s.cutoff)


# ---- ONNX export ------------------------------------------------------------------------------

def onnx_proba(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run([PROBA_OUTPUT], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})[0])


def multiclass_parity(model: lgb.LGBMClassifier, onnx_bytes: bytes, X: np.ndarray) -> float:
    """Max abs difference between ONNX and LightGBM probabilities (all classes) on the given rows."""
    if not len(X):
        return 0.0
    X = np.ascontiguousarray(X, dtype=np.float32)
    return float(np.max(np.abs(np.asarray(model.predict_proba(X)) - onnx_proba(onnx_bytes, X))))


def export_multiclass(repo: Path, name: str, model: lgb.LGBMClassifier, feature_names: list[str],
                      class_names: list[str], X_check: np.ndarray, *, metrics: dict[str, Any],
                      training_window: dict[str, str], params: dict[str, Any] | None = None,
                      data_fingerprint: str = "") -> Path:
    """Convert (zipmap off), check parity on X_check, write models/<name>/<version>/ (kind lightgbm-multiclass).

    The manifest lists the class names in output column order (params "classes" and the output's
    "classes").
    """
    if len(class_names) != len(model.classes_):
        raise ArtifactError(f"{name}: {len(class_names)} class names for {len(model.classes_)} classes", model=name)
    onnx_bytes = lightgbm_to_onnx(model, len(feature_names))
    diff = multiclass_parity(model, onnx_bytes, X_check)
    if not diff <= PARITY_TOLERANCE:
        raise ArtifactError(f"{name}: ONNX differs from LightGBM by {diff:.2e} (> {PARITY_TOLERANCE})", model=name)
    metrics = {**metrics, "onnx_parity_max_abs_diff": diff, "onnx_parity_rows": int(len(X_check))}
    K = len(class_names)
    manifest = lightgbm_manifest(
        name, "lightgbm-multiclass", model, feature_names,
        [{"name": PROBA_OUTPUT, "dtype": "float32", "shape": [-1, K], "classes": list(class_names)}],
        metrics=metrics, training_window=training_window, params={"classes": list(class_names), **(params or {})},
        data_fingerprint=data_fingerprint)
    path = write_artifact(repo, manifest, {"model.onnx": onnx_bytes, **evaluation_file(model, feature_names, None)})
    log.info("exported %s -> %s (%d classes, parity %.1e on %d rows)", name, path, K, diff, len(X_check))
    return path


def train_channel(shop: Shop, repo: Path, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp, *,
                  name: str = "channel", horizon_days: int = 90, seed: int = 7, threads: int = 1,
                  data_fingerprint: str = "") -> dict[str, Any] | None:
    """Fit, evaluate and export; None (logged) when the data has no usable channel column."""
    if not has_channels(space):
        log.info("%s: no channel column, channel model skipped", shop.name)
        return None
    model = ChannelModel(horizon_days=horizon_days, seed=seed, threads=threads).fit(shop, space, arrays, end)
    metrics = model.evaluate()
    H = pd.Timedelta(days=horizon_days)
    window = {"data_start": str(shop.transactions["ts"].min().date()),
              "train_cutoffs": ",".join(str(c.date()) for c in model.train_cutoffs_),
              "holdout_cutoff": str(model.holdout_cutoff_.date()),
              "holdout_label_end": str((model.holdout_cutoff_ + H).date())}
    path = export_multiclass(repo, name, model.model_, model.feature_names_, list(model.classes_),
                             model.holdout_.X[:5_000], metrics=metrics, training_window=window,
                             params={"horizon_days": horizon_days, "dataset": shop.name},
                             data_fingerprint=data_fingerprint)
    return {"name": name, "path": str(path), "metrics": load_manifest(path).metrics}
