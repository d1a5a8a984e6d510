"""Train every model of a shop, export them to ONNX and write the serving feature snapshot."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from tenure.artifacts import Manifest
from tenure.data import Shop
from tenure.errors import DataError
from tenure.features import PAIR_FEATURES, AffinityState, FeatureSpace, TxArrays, product_table
from tenure.settings import TrainSettings
from tenure.store import Catalog, FeatureSnapshot
from training.channel import train_channel
from training.churn import ChurnModel
from training.clusters import train_clusters
from training.clv import train_clv
from training.contrib import export_contributions
from training.export import export_binary
from training.lookalike import VALUE_FEATURES, LookalikeModel, default_seed
from training.propensity import PropensityModel
from training.purchase import train_purchase

log = logging.getLogger(__name__)


def data_end(shop: Shop) -> pd.Timestamp:
    """The day after the last transaction: the cutoff of the serving snapshot."""
    return shop.transactions["ts"].max().normalize() + pd.Timedelta(days=1)


def fingerprint(shop: Shop) -> str:
    tx = shop.transactions
    h = pd.util.hash_pandas_object(tx[["customer_id", "order_id", "ts", "product_id", "amount"]], index=False)
    return f"{len(tx)}-{int(h.to_numpy().sum(dtype=np.uint64)):016x}"


def _window(start: pd.Timestamp, cutoff: pd.Timestamp, label_end: pd.Timestamp) -> dict[str, str]:
    return {"data_start": str(start.date()), "cutoff": str(cutoff.date()), "label_end": str(label_end.date())}


def train_churn(shop: Shop, repo: Path, settings: TrainSettings, name: str = "churn",
                space: FeatureSpace | None = None) -> dict[str, Any]:
    space = space or FeatureSpace.fit(shop)
    arrays = space.encode(shop)
    end = data_end(shop)
    start = shop.transactions["ts"].min()
    t0 = time.perf_counter()
    model = ChurnModel(settings.churn_horizon_days, settings.active_window_days, seed=settings.seed,
                       threads=settings.lgbm_threads).fit(shop, space, arrays, end)
    metrics = model.evaluate(shop, arrays)
    metrics["train_rows"] = model.train_rows_
    metrics["train_seconds"] = round(time.perf_counter() - t0, 1)
    path = export_binary(
        repo, name, model.model_, space.names, model.holdout_.X[:5_000],
        metrics=metrics,
        training_window={**_window(start, model.train_cutoffs_[0], model.train_cutoffs_[0] + pd.Timedelta(days=settings.churn_horizon_days)),
                         "train_cutoffs": ",".join(str(c.date()) for c in model.train_cutoffs_),
                         "holdout_cutoff": str(model.holdout_cutoff_.date()), "holdout_label_end": str(end.date())},
        params={"horizon_days": settings.churn_horizon_days, "active_window_days": settings.active_window_days,
                "dataset": shop.name},
        data_fingerprint=fingerprint(shop),
    )
    # The churn model's own tree contributions, for the reasons the services give.
    export_contributions(repo, f"{name}-contributions", model.model_, space.names, model.holdout_.X[:5_000],
                         explains=name, training_window={"holdout_cutoff": str(model.holdout_cutoff_.date())},
                         data_fingerprint=fingerprint(shop))
    return {"name": name, "path": str(path), "metrics": metrics}


CDNOW_CALIBRATION_END = pd.Timestamp("1997-10-01")
"""The BG/NBD paper's split of CDNOW: 39 weeks of calibration, 39 weeks of holdout."""


def train_cdnow(shop: Shop, repo: Path, settings: TrainSettings) -> list[dict[str, Any]]:
    """The real-data check: churn and CLV on CDNOW (an order log: no products, channels, demographics).

    CLV uses the paper's split (calibration to 1997-09-30, holdout the following 39 weeks)."""
    space = FeatureSpace.fit(shop)
    arrays = space.encode(shop)
    end = data_end(shop)
    horizon = int((end - CDNOW_CALIBRATION_END).days)
    return [train_churn(shop, repo, settings, name="churn-cdnow", space=space),
            train_clv(shop, repo, space, arrays, end, horizon_days=horizon, seed=settings.seed,
                      threads=settings.lgbm_threads, name="clv-cdnow", data_fingerprint=fingerprint(shop))]


def read_feedback(state_dir: Path) -> pd.DataFrame | None:
    """The recommendation feedback recorded under a service's state directory (None: nothing there)."""
    from tenure.feedback import FeedbackStore

    path = Path(state_dir) / "feedback.sqlite"
    if not path.exists():
        log.warning("no recommendation feedback under %s (%s does not exist)", state_dir, path.name)
        return None
    return FeedbackStore(path, index_days=0).read_events()


def train_all(shop: Shop, repo: Path, settings: TrainSettings | None = None,
              feedback: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Churn, propensity and lookalike models plus the feature snapshot, all into `repo`.

    feedback: recorded recommendation feedback (`read_feedback`); its observed outcomes become
    extra rows of the propensity training set (never of its holdout; see training.propensity)."""
    settings = settings or TrainSettings()
    repo = Path(repo)
    t0 = time.perf_counter()
    space = FeatureSpace.fit(shop)
    arrays = space.encode(shop)
    end = data_end(shop)
    start = shop.transactions["ts"].min()
    fp = fingerprint(shop)
    log.info("encoded %s: %d customers, %d products, %d features (%.1fs)", shop.name, arrays.n_customers,
             arrays.n_products, len(space.names), time.perf_counter() - t0)
    results = [train_churn(shop, repo, settings, space=space)]
    results.append(train_clv(shop, repo, space, arrays, end, horizon_days=settings.clv_horizon_days,
                             seed=settings.seed, threads=settings.lgbm_threads, data_fingerprint=fp))
    results += train_purchase(shop, repo, space, arrays, end, seed=settings.seed, threads=settings.lgbm_threads,
                              data_fingerprint=fp)

    products = product_table(shop, arrays, space)
    t1 = time.perf_counter()
    prop = PropensityModel(settings.propensity_horizon_days, settings.n_candidates_train, settings.n_candidates_eval,
                           settings.propensity_train_customers, seed=settings.seed,
                           threads=settings.lgbm_threads).fit(shop, space, arrays, products, end, feedback=feedback)
    pm = prop.evaluate(shop, space, arrays, products)
    pm["train_rows"] = prop.train_rows_
    pm["train_seconds"] = round(time.perf_counter() - t1, 1)
    path = export_binary(
        repo, "propensity", prop.model_, list(PAIR_FEATURES), prop.check_rows_, metrics=pm,
        training_window=_window(start, prop.train_cutoff_, prop.holdout_cutoff_) | {"holdout_label_end": str(end.date())},
        params={"horizon_days": settings.propensity_horizon_days, "n_candidates": settings.n_candidates_eval},
        data_fingerprint=fp,
    )
    results.append({"name": "propensity", "path": str(path), "metrics": pm})
    channel = train_channel(shop, repo, space, arrays, end, seed=settings.seed, threads=settings.lgbm_threads,
                            data_fingerprint=fp)
    if channel is not None:
        results.append(channel)

    # Serving snapshot at the end of the data: the features every service reads.
    snapshot, spath = write_snapshot(shop, repo, end, space, arrays, products, fp, start)
    results.append({"name": "features", "path": str(spath), "metrics": {"customers": int(len(snapshot.X)),
                                                                      "features": len(space.names)}})

    results.append(train_lookalike(repo, settings, snapshot=snapshot))
    results.append(train_clusters(repo, snapshot.feature_names, snapshot.X, seed=settings.seed,
                                  threads=settings.lgbm_threads, training_window={"cutoff": str(end.date())},
                                  data_fingerprint=fp))
    log.info("trained %s in %.1fs", shop.name, time.perf_counter() - t0)
    return results


def write_snapshot(shop: Shop, repo: Path, cutoff: pd.Timestamp, space: FeatureSpace | None = None,
                   arrays: TxArrays | None = None, products: pd.DataFrame | None = None, fp: str = "",
                   start: pd.Timestamp | None = None) -> tuple[FeatureSnapshot, Path]:
    """The features every service reads, at `cutoff`, as a new version of the "features" artifact.

    Also on its own (`tenure snapshot`): a daily feature refresh for the same models; the services
    re-score the base with it, and the segmentation service records who moved."""
    space = space or FeatureSpace.fit(shop)
    arrays = arrays if arrays is not None else space.encode(shop)
    products = products if products is not None else product_table(shop, arrays, space)
    start = start if start is not None else shop.transactions["ts"].min()
    codes, X = space.customer_features(arrays, cutoff, shop.customers)
    affinity = AffinityState.build(arrays, cutoff, product_cat=products["cat_code"].to_numpy(np.int64),
                                   price=products["price"].to_numpy(np.float64)).select_rows(codes)
    catalog = Catalog(arrays.product_ids, products["name"].to_numpy(object), products["category"].to_numpy(object),
                      products["price"].to_numpy(np.float64))
    snapshot = FeatureSnapshot(cutoff=cutoff, space=space, customer_ids=arrays.customer_ids[codes], X=X,
                               catalog=catalog, affinity=affinity, anonymous=np.median(X, axis=0).astype(np.float32))
    path = snapshot.save(repo, Manifest(name="features", kind="feature-snapshot", data_fingerprint=fp or fingerprint(shop),
                                        training_window={"data_start": str(start.date()), "cutoff": str(cutoff.date())}))
    return snapshot, path


def train_lookalike(repo: Path, settings: TrainSettings, seed_ids: list[str] | None = None,
                    name: str = "lookalike", snapshot: FeatureSnapshot | None = None,
                    progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Seed-vs-rest lookalike on the serving snapshot's features.

    seed_ids None: the top decile by spend, with the spend columns left out. Otherwise any list of
    known customer ids; unknown ids are an error that names how many and a few of them.
    progress(fraction, what) is called as the work advances (for jobs that are watched).
    """
    def step(fraction: float, what: str) -> None:
        if progress is not None:
            progress(fraction, what)

    snapshot = snapshot or FeatureSnapshot.load_latest(repo)
    names, X = snapshot.feature_names, snapshot.X
    t0 = time.perf_counter()
    exclude: tuple[str, ...]
    if seed_ids is None:
        seed_rows, exclude, described = default_seed(names, X), VALUE_FEATURES, "top 10% by spend_total"
    else:
        rows = snapshot.rows(seed_ids)
        unknown = [i for i, r in zip(seed_ids, rows) if r < 0]
        if unknown:
            raise DataError(f"lookalike seed: {len(unknown)} of {len(seed_ids)} ids are not in the feature store, "
                            f"e.g. {unknown[:5]}")
        seed_rows, exclude, described = np.unique(rows), (), f"{len(set(seed_ids))} given customer ids"
        if not 0 < len(seed_rows) < len(X):
            raise DataError(f"lookalike seed: {len(seed_rows)} customers; need at least one and fewer than all")
    step(0.05, f"seed: {described}; training on {len(X):,} customers")
    look = LookalikeModel(seed=settings.seed, threads=settings.lgbm_threads).fit(
        names, X, seed_rows, exclude=exclude, progress=lambda f: step(0.05 + 0.8 * f, "training"))
    step(0.85, "evaluating on the holdout customers")
    metrics = look.evaluate()
    step(0.9, "exporting to ONNX")
    metrics["train_seconds"] = round(time.perf_counter() - t0, 1)
    seed_text = "\n".join(snapshot.customer_ids[seed_rows].tolist()) + "\n"
    path = export_binary(
        repo, name, look.model_, look.features_, look.X_[look.holdout_rows_[:5_000]], metrics=metrics,
        training_window={"cutoff": str(snapshot.cutoff.date()), "features_version": snapshot.version},
        params={"seed": described, "seed_size": int(len(seed_rows)), "excluded_features": list(exclude)},
        extra_files={"seed_ids.txt": seed_text.encode()},
    )
    return {"name": name, "path": str(path), "metrics": metrics}


def results_last_purchase(results: list[dict[str, Any]]) -> str:
    return [r["name"] for r in results if r["name"].startswith("purchase_")][-1]


def metrics_table(results: list[dict[str, Any]], dataset: str) -> str:
    """Markdown: each model's holdout metric next to its baselines."""
    rows = ["| dataset | model | metric | model | baseline | baseline value |", "|---|---|---|---|---|---|"]
    for r in results:
        m, name = r["metrics"], r["name"]
        if name.startswith("churn"):
            for metric in ("auc", "lift_at_10pct"):
                for base in ("recency", "bgnbd"):
                    rows.append(f"| {dataset} | {name} | {metric} | {m[metric]:.3f} | {base} | {m[f'baseline_{base}_{metric}']:.3f} |")
            rows.append(f"| {dataset} | {name} | brier / ece | {m['brier']:.3f} / {m['ece']:.3f} | | |")
        elif name == "propensity":
            for metric in ("recall_at_10", "ndcg_at_10"):
                for base in ("popularity", "repeat"):
                    rows.append(f"| {dataset} | recommendations | {metric} | {m[metric]:.3f} | {base} | {m[f'baseline_{base}_{metric}']:.3f} |")
            rows.append(f"| {dataset} | recommendations | candidate_recall | {m['candidate_recall']:.3f} | | |")
            if m.get("feedback_rows"):
                rows.append(f"| {dataset} | recommendations | feedback rows in training | {m['feedback_rows']:,} | | |")
        elif name == "lookalike":
            for metric in ("auc", "lift_at_10pct"):
                rows.append(f"| {dataset} | lookalike | {metric} | {m[metric]:.3f} | centroid cosine | {m[f'baseline_centroid_cosine_{metric}']:.3f} |")
        elif name.startswith("clv"):
            rows.append(f"| {dataset} | {name} ({m['horizon_days']} d) | MAE per customer | {m['mae']:.2f} | BG/NBD + Gamma-Gamma | {m['baseline_bgnbd_gg_mae']:.2f} |")
            rows.append(f"| {dataset} | {name} ({m['horizon_days']} d) | aggregate error % | {m['aggregate_error_pct']:+.1f} | BG/NBD + Gamma-Gamma | {m['baseline_aggregate_error_pct']:+.1f} |")
            rows.append(f"| {dataset} | {name} ({m['horizon_days']} d) | Spearman | {m['spearman']:.3f} | BG/NBD + Gamma-Gamma | {m['baseline_bgnbd_gg_spearman']:.3f} |")
        elif name.startswith("purchase_"):
            h = name.rsplit("_", 1)[1]  # "7d", "30d", "90d"; every entry carries all horizons' metrics
            for base in ("bgnbd", "recency"):
                rows.append(f"| {dataset} | purchase within {h} | auc | {m[f'auc_{h}']:.3f} | {base} | {m[f'baseline_{base}_auc_{h}']:.3f} |")
            if name == results_last_purchase(results):
                rows.append(f"| {dataset} | next purchase | MAE days | {m['next_purchase_mae_days']:.1f} | last order + average gap | {m['baseline_naive_next_purchase_mae_days']:.1f} |")
        elif name == "channel":
            for metric in ("top1_accuracy", "log_loss"):
                for base in ("frequent", "last", "majority"):
                    rows.append(f"| {dataset} | best channel | {metric} | {m[metric]:.3f} | {base} channel | {m[f'baseline_{base}_{metric}']:.3f} |")
        elif name == "clusters":
            sil = m.get("holdout_silhouette")
            rows.append(f"| {dataset} | clusters (k={m['k']}) | holdout silhouette | {'-' if sil is None else f'{sil:.3f}'} | | |")
    return "\n".join(rows)
