"""Train every model of a shop, export them to ONNX and write the serving feature snapshot."""
from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from tenure import sendtime
from tenure.artifacts import Manifest
from tenure.attributes import attribute_files
from tenure.data import Shop
from tenure.errors import ArtifactError, DataError
from tenure.features import PAIR_FEATURES, AffinityState, FeatureSpace, TxArrays, fit_btyd, product_table, to_days
from tenure.online import SEED_FILE, build_seed, seed_bytes
from tenure.settings import TrainSettings
from tenure.store import Catalog, FeatureSnapshot
from training.channel import has_channels, train_channel
from training.churn import ChurnModel
from training.clusters import train_clusters
from training.clv import train_clv
from training.contrib import export_contributions
from training.export import export_binary
from training.lookalike import VALUE_FEATURES, LookalikeModel, default_seed
from training.propensity import PropensityModel
from training.purchase import train_purchase
from training.windows import History

log = logging.getLogger(__name__)


def data_end(shop: Shop) -> pd.Timestamp:
    """The day after the last transaction: the cutoff of the serving snapshot."""
    return shop.transactions["ts"].max().normalize() + pd.Timedelta(days=1)


Progress = Callable[[int, int, str], None]
"""Told how a long job advances: steps done, of how many, and what runs now (the CLI draws a progress bar)."""
TRAIN_STEPS = ("encoding", "churn", "clv", "purchase", "propensity", "channel", "send time", "features", "lookalike",
               "clusters", "uplift")
"""The steps of train_all, in order; then "publishing"."""
CDNOW_STEPS = ("encoding", "churn-cdnow", "clv-cdnow")
SNAPSHOT_STEPS = ("feature space", "encoding", "customer features", "affinity", "saving")
"""The steps of write_snapshot on its own (`tenure snapshot`)."""


def _step(progress: Progress | None, steps: tuple[str, ...], name: str) -> None:
    """Tell `progress` that step `name` starts (the steps before it are done; a name not in `steps`: all are)."""
    if progress is not None:
        progress(steps.index(name) if name in steps else len(steps), len(steps), name)


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
    label = pd.Timedelta(days=model.label_days_)
    path = export_binary(
        repo, name, model.model_, space.names, model.holdout_.X[:5_000],
        metrics=metrics,
        training_window={**_window(start, model.train_cutoffs_[0], model.train_cutoffs_[0] + label),
                         "train_cutoffs": ",".join(str(c.date()) for c in model.train_cutoffs_),
                         "holdout_cutoff": str(model.holdout_cutoff_.date()), "holdout_label_end": str(end.date())},
        params={"horizon_days": settings.churn_horizon_days, "label_days": model.label_days_,
                "active_window_days": settings.active_window_days, "dataset": shop.name},
        data_fingerprint=fingerprint(shop),
        horizon_exponent=model.horizon_exponent_, positive_is_none=True, evaluation=model.evaluation_,
        compile_forest=True,  # StreamScore and Score run it on every chunk: the compiled forest is ~2x onnxruntime
    )
    # The churn model's own tree contributions, for the reasons the services give.
    contributions = export_contributions(
        repo, f"{name}-contributions", model.model_, space.names, model.holdout_.X[:5_000], explains=name,
        training_window={"holdout_cutoff": str(model.holdout_cutoff_.date())}, data_fingerprint=fingerprint(shop))
    return {"name": name, "path": str(path), "metrics": metrics, "extra_paths": [str(contributions)]}


CDNOW_CALIBRATION_END = pd.Timestamp("1997-10-01")
"""The BG/NBD paper's split of CDNOW: 39 weeks of calibration, 39 weeks of holdout."""


def train_cdnow(shop: Shop, repo: Path, settings: TrainSettings,
                progress: Progress | None = None) -> list[dict[str, Any]]:
    """The real-data check: churn and CLV on CDNOW (an order log: no products, channels, demographics).

    CLV uses the paper's split (calibration to 1997-09-30, holdout the following 39 weeks)."""
    _step(progress, CDNOW_STEPS, "encoding")
    end = data_end(shop)
    horizon = int((end - CDNOW_CALIBRATION_END).days)
    space = FeatureSpace.fit(shop, btyd_horizons=(horizon,))
    arrays = space.encode(shop)

    def train(stage: Path) -> list[dict[str, Any]]:
        _step(progress, CDNOW_STEPS, "churn-cdnow")
        churn = train_churn(shop, stage, settings, name="churn-cdnow", space=space)
        _step(progress, CDNOW_STEPS, "clv-cdnow")
        clv = train_clv(shop, stage, space, arrays, end, horizon_days=horizon, seed=settings.seed,
                        threads=settings.lgbm_threads, name="clv-cdnow", data_fingerprint=fingerprint(shop))
        _step(progress, CDNOW_STEPS, "publishing")
        return [churn, clv]

    return staged(repo, train)


def read_feedback(state_dir: Path) -> pd.DataFrame | None:
    """The recommendation feedback recorded under a service's state directory (None: nothing there)."""
    from tenure.feedback import FeedbackStore

    path = Path(state_dir) / "feedback.sqlite"
    if not path.exists():
        log.warning("no recommendation feedback under %s (%s does not exist)", state_dir, path.name)
        return None
    return FeedbackStore(path, index_days=0).read_events()


SNAPSHOT_RESULTS = ("attributes", "send-time")
"""Results of train_all that are measurements rather than models: kept in the feature snapshot's manifest
metrics under their names (tenure.report shows them)."""
CORE_MODELS = ("churn", "clv", "purchase_")
"""A run publishes nothing unless at least one of these passed its checks."""
MIN_TRAIN_ROWS = 100
"""A model trained on fewer labelled rows is not published."""
MIN_HOLDOUT_ROWS = 30
MIN_AUC = 0.55
"""A classifier whose holdout AUC is below this (at chance, or constant predictions) is not published."""


def sanity_problem(result: dict[str, Any]) -> str | None:
    """Why a trained model must not be published (None: it may). Reads the metrics it reported."""
    name, m = result["name"], result.get("metrics", {})
    rows = m.get("train_rows")
    if isinstance(rows, int) and rows < MIN_TRAIN_ROWS:
        return f"too few training rows ({rows:,} < {MIN_TRAIN_ROWS})"
    holdout = m.get("holdout_rows")
    if isinstance(holdout, int) and holdout < MIN_HOLDOUT_ROWS:
        return f"too few holdout rows ({holdout:,} < {MIN_HOLDOUT_ROWS})"
    if name.startswith("churn") or name == "lookalike":
        auc = float(m.get("auc", math.nan))
    elif name.startswith("purchase_"):
        auc = float(m.get(f"auc_{m.get('label_days')}d", math.nan))
    elif name.startswith("clv"):
        rho = float(m.get("spearman", math.nan))
        return None if rho > 0 else f"predictions do not rank the holdout spend (Spearman {rho:.3f})"
    elif name.startswith("uplift-"):
        from training.uplift import sanity_problem as uplift_problem

        return uplift_problem(m)
    else:
        return None
    if not auc >= MIN_AUC:  # also NaN: one class in the holdout, or constant predictions
        return f"holdout AUC {auc:.3f} is at chance (< {MIN_AUC})"
    return None


def _attempt(results: list[dict[str, Any]], names: list[str], train: Callable[[], Any]) -> Any:
    """Run one model's training; a DataError (not enough history, one channel, ...) or any other
    failure skips the named models with its message instead of failing the run (TENURE_DEBUG=1, set
    by `tenure ... --debug`, raises instead)."""
    try:
        out = train()
    except DataError as exc:
        log.info("%s not trained: %s", ", ".join(names), exc)
        results.extend({"name": n, "skipped": str(exc)} for n in names)
        return None
    except Exception as exc:  # noqa: BLE001 - one model's failure must not take the others down
        if os.environ.get("TENURE_DEBUG"):
            raise
        log.debug("%s failed", ", ".join(names), exc_info=True)
        reason = f"training failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        results.extend({"name": n, "skipped": reason} for n in names)
        return None
    results.extend(out if isinstance(out, list) else [out])
    return out


def staged(repo: Path, train: Callable[[Path], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Train into a staging repository beside `repo`, drop the models that fail their sanity checks,
    then publish the rest by renaming each version into `repo` (the feature snapshot last). If
    training raises, nothing is published and the previous versions keep serving."""
    repo = Path(repo)
    repo.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{repo.name}.staging-", dir=repo.parent))
    try:
        results = train(stage)
        for r in results:
            if "path" not in r or "skipped" in r:
                continue
            problem = sanity_problem(r)
            if problem is not None:
                log.info("%s not published: %s", r["name"], problem)
                r["skipped"] = problem
                for path in (r["path"], *r.get("extra_paths", ())):
                    shutil.rmtree(path, ignore_errors=True)
        if not any("path" in r and "skipped" not in r for r in results if r["name"].startswith(CORE_MODELS)):
            reasons = "; ".join(f"{r['name']}: {r['skipped']}" for r in results if "skipped" in r)
            raise DataError(f"no model could be trained on this data, nothing was published ({reasons})")
        versions = sorted((p for p in stage.glob("*/*") if p.is_dir() and not p.name.startswith(".")),
                          key=lambda p: (p.parent.name == "features", p.parent.name))
        for vdir in versions:
            target = repo / vdir.parent.name / vdir.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(vdir, target)
        for r in results:
            for key in ("path",):
                if key in r and "skipped" not in r:
                    r[key] = str(repo / Path(r[key]).parent.name / Path(r[key]).name)
        return results
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def train_all(shop: Shop, repo: Path, settings: TrainSettings | None = None,
              feedback: pd.DataFrame | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Every model plus the feature snapshot, staged and published into `repo` together (`staged`).

    A model the data cannot support (too short a history for even the shortest label window, no
    products, no channels) or that fails its sanity checks is skipped with the reason in its entry
    ({"name", "skipped"}); the others are published.
    feedback: recorded recommendation feedback (`read_feedback`); its observed outcomes become
    extra rows of the propensity training set (never of its holdout; see training.propensity).
    progress: told each step of TRAIN_STEPS as it starts."""
    settings = settings or TrainSettings()
    return staged(Path(repo), lambda stage: _train_all(shop, stage, settings, feedback, progress))


def _train_all(shop: Shop, repo: Path, settings: TrainSettings, feedback: pd.DataFrame | None,
               progress: Progress | None = None) -> list[dict[str, Any]]:
    def step(name: str) -> None:
        _step(progress, TRAIN_STEPS, name)

    step("encoding")
    t0 = time.perf_counter()
    # the point-in-time BG/NBD x Gamma-Gamma forecast over the CLV horizon is a column of the features:
    # the CLV model blends it with LightGBM (training.clv)
    space = FeatureSpace.fit(shop, btyd_horizons=(settings.clv_horizon_days,))
    arrays = space.encode(shop)
    end = data_end(shop)
    start = shop.transactions["ts"].min()
    fp = fingerprint(shop)
    history = History.of(shop.transactions)
    log.info("encoded %s: %d customers, %d products, %d features, %d days (%.1fs)", shop.name, arrays.n_customers,
             arrays.n_products, len(space.names), history.days, time.perf_counter() - t0)
    results: list[dict[str, Any]] = []
    # customers-file attributes join the features only when they help churn on validation (training.attributes)
    space = _with_attributes(shop, space, arrays, end, settings, results)
    step("churn")
    _attempt(results, ["churn"], lambda: train_churn(shop, repo, settings, space=space))
    step("clv")
    _attempt(results, ["clv"], lambda: train_clv(shop, repo, space, arrays, end, horizon_days=settings.clv_horizon_days,
                                                seed=settings.seed, threads=settings.lgbm_threads, data_fingerprint=fp))
    step("purchase")
    _attempt(results, [f"purchase_{h}d" for h in settings.purchase_horizons],
             lambda: train_purchase(shop, repo, space, arrays, end, horizons=settings.purchase_horizons,
                                    seed=settings.seed, threads=settings.lgbm_threads, data_fingerprint=fp))

    step("propensity")
    products = product_table(shop, arrays, space)
    if arrays.n_products < 2:
        results.append({"name": "propensity", "skipped": f"{arrays.n_products} product in the data (no product column?): "
                                                         "recommendations skipped"})
    else:
        _attempt(results, ["propensity"], lambda: train_propensity(shop, repo, settings, space, arrays, products, end,
                                                                   feedback, fp, history))
    step("channel")
    if has_channels(space):
        _attempt(results, ["channel"], lambda: train_channel(
            shop, repo, space, arrays, end, seed=settings.seed, threads=settings.lgbm_threads, data_fingerprint=fp,
            horizon_days=history.label_days(settings.channel_horizon_days, "channel")))
    else:
        results.append({"name": "channel", "skipped": "no channel column: best channel skipped"})

    step("send time")  # holdout metrics of the best hours; the table itself is in the snapshot (write_snapshot)
    _attempt(results, ["send-time"], lambda: {"name": "send-time", "metrics": sendtime.evaluate(
        shop, feedback, seed=settings.seed)})

    # Serving snapshot at the end of the data: the features every service reads. Its manifest keeps the
    # measurements that are not models of their own (the report shows them).
    step("features")
    measured = {r["name"]: r["metrics"] for r in results if r["name"] in SNAPSHOT_RESULTS and "metrics" in r}
    snapshot, spath = write_snapshot(shop, repo, end, space, arrays, products, fp, start, feedback=feedback,
                                     metrics=measured)
    results.append({"name": "features", "path": str(spath), "metrics": {"customers": int(len(snapshot.X)),
                                                                      "features": len(space.names)}})

    step("lookalike")
    _attempt(results, ["lookalike"], lambda: train_lookalike(repo, settings, snapshot=snapshot))
    step("clusters")
    _attempt(results, ["clusters"], lambda: train_clusters(
        repo, snapshot.feature_names, snapshot.X, seed=settings.seed, threads=settings.lgbm_threads,
        training_window={"cutoff": str(end.date())}, data_fingerprint=fp))
    step("uplift")
    _train_uplift_step(shop, repo, settings, space, arrays, fp, results)
    log.info("trained %s in %.1fs", shop.name, time.perf_counter() - t0)
    step("publishing")
    return results


def _with_attributes(shop: Shop, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp, settings: TrainSettings,
                     results: list[dict[str, Any]]) -> FeatureSpace:
    """training.attributes' choice of feature space, its entry added to `results`; a measurement that cannot
    run (too short a history, ...) skips the attributes with the reason and keeps `space`."""
    from training.attributes import RESULT_NAME, choose_attribute_features

    try:
        chosen, entry = choose_attribute_features(shop, space, arrays, end, settings)
    except DataError as exc:
        results.append({"name": RESULT_NAME, "skipped": f"not measured: {exc}"})
        return space
    except Exception as exc:  # noqa: BLE001 - the attributes are optional: the models train without them
        if os.environ.get("TENURE_DEBUG"):
            raise
        results.append({"name": RESULT_NAME, "skipped": f"measurement failed: {type(exc).__name__}: {exc}"})
        return space
    results.append(entry)
    return chosen


def _train_uplift_step(shop: Shop, repo: Path, settings: TrainSettings, space: FeatureSpace, arrays: TxArrays,
                       fp: str, results: list[dict[str, Any]]) -> None:
    """Campaign uplift (training.uplift) when the shop has a campaign log; else both entries skipped with why."""
    from training.uplift import UPLIFT_MODELS, skip_reason, train_uplift

    reason = skip_reason(shop)
    if reason is not None:
        results.extend({"name": n, "skipped": reason} for n in UPLIFT_MODELS)
        return
    _attempt(results, list(UPLIFT_MODELS), lambda: train_uplift(
        shop, repo, space, arrays, window_days=settings.uplift_window_days, seed=settings.seed,
        threads=settings.lgbm_threads, data_fingerprint=fp))


def train_propensity(shop: Shop, repo: Path, settings: TrainSettings, space: FeatureSpace, arrays: TxArrays,
                     products: pd.DataFrame, end: pd.Timestamp, feedback: pd.DataFrame | None, fp: str,
                     history: History) -> dict[str, Any]:
    t1 = time.perf_counter()
    horizon = history.label_days(settings.propensity_horizon_days, "recommendations")
    prop = PropensityModel(horizon, settings.n_candidates_train, settings.n_candidates_eval,
                           settings.propensity_train_customers, seed=settings.seed,
                           threads=settings.lgbm_threads).fit(shop, space, arrays, products, end, feedback=feedback)
    pm = prop.evaluate(shop, space, arrays, products)
    pm["train_rows"] = prop.train_rows_
    pm["horizon_days"] = horizon
    pm["train_seconds"] = round(time.perf_counter() - t1, 1)
    path = export_binary(
        repo, "propensity", prop.model_, list(PAIR_FEATURES), prop.check_rows_, metrics=pm,
        training_window=_window(history.first, prop.train_cutoff_, prop.holdout_cutoff_) | {"holdout_label_end": str(end.date())},
        params={"horizon_days": horizon, "n_candidates": settings.n_candidates_eval},
        data_fingerprint=fp,
        compile_forest=True,  # Recommend scores every candidate (200+ rows) on each call: ~5x onnxruntime there
    )
    return {"name": "propensity", "path": str(path), "metrics": pm}


def write_snapshot(shop: Shop, repo: Path, cutoff: pd.Timestamp, space: FeatureSpace | None = None,
                   arrays: TxArrays | None = None, products: pd.DataFrame | None = None, fp: str = "",
                   start: pd.Timestamp | None = None, progress: Progress | None = None,
                   feedback: pd.DataFrame | None = None, metrics: dict[str, Any] | None = None
                   ) -> tuple[FeatureSnapshot, Path]:
    """The features every service reads, at `cutoff`, as a new version of the "features" artifact.

    Also on its own (`tenure snapshot`): a daily feature refresh for the same models; the services
    re-score the base with it, and the segmentation service records who moved. progress: told each
    step of SNAPSHOT_STEPS as it starts. metrics: measurements of train_all kept in the manifest (SNAPSHOT_RESULTS
    by name)."""
    def step(name: str) -> None:
        _step(progress, SNAPSHOT_STEPS, name)

    step("feature space")
    if space is None:
        # a refresh for the same models: the feature space they were trained on (same levels, same
        # BG/NBD x GG columns), else a new one as training would fit it
        try:
            space = FeatureSnapshot.load_latest(repo).space
        except (ArtifactError, DataError, OSError):
            space = FeatureSpace.fit(shop, btyd_horizons=(TrainSettings().clv_horizon_days,))
    step("encoding")
    arrays = arrays if arrays is not None else space.encode(shop)
    products = products if products is not None else product_table(shop, arrays, space)
    start = start if start is not None else shop.transactions["ts"].min()
    step("customer features")
    T = to_days(pd.Timestamp(cutoff))
    params = fit_btyd(arrays, T) if space.btyd_horizons else None
    codes, X = space.customer_features(arrays, cutoff, shop.customers, btyd_params=params)
    seed = build_seed(space, arrays, T, shop.customers, codes, params)  # the online store's start (tenure.online)
    step("affinity")
    affinity = AffinityState.build(arrays, cutoff, product_cat=products["cat_code"].to_numpy(np.int64),
                                   price=products["price"].to_numpy(np.float64)).select_rows(codes)
    catalog = Catalog(arrays.product_ids, products["name"].to_numpy(object), products["category"].to_numpy(object),
                      products["price"].to_numpy(np.float64))
    snapshot = FeatureSnapshot(cutoff=cutoff, space=space, customer_ids=arrays.customer_ids[codes], X=X,
                               catalog=catalog, affinity=affinity, anonymous=np.median(X, axis=0).astype(np.float32))
    step("saving")
    extra = {SEED_FILE: seed_bytes(seed)}  # files beside snapshot.npz, one row per snapshot customer where per customer
    extra.update(attribute_files(shop.customers, snapshot.customer_ids))  # the customers file's attributes (serving)
    extra.update(sendtime.snapshot_files(shop, cutoff, snapshot.customer_ids, feedback))  # best hours ({} if none)
    path = snapshot.save(repo, extra=extra, manifest=Manifest(
        name="features", kind="feature-snapshot", data_fingerprint=fp or fingerprint(shop), metrics=dict(metrics or {}),
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
        evaluation=look.evaluation_,
        compile_forest=True,  # with churn's, Score runs both forests directly: ~10% less server CPU per call
    )
    return {"name": name, "path": str(path), "metrics": metrics}


def results_last_purchase(results: list[dict[str, Any]]) -> str:
    return ([r["name"] for r in results if r["name"].startswith("purchase_") and "skipped" not in r] or [""])[-1]


def _model_label(name: str, m: dict[str, Any]) -> str:
    """'churn (90 d)', 'churn (90 d; labels 28 d)', 'clv (365 d; holdout 122 d)'."""
    horizon, label, holdout = m.get("horizon_days"), m.get("label_days"), m.get("holdout_days")
    if horizon is None:
        return name
    extra = ""
    if label is not None and label < horizon and not name.startswith("clv"):
        extra = f"; labels {label} d"
    if holdout is not None and holdout < horizon:
        extra = f"; holdout {holdout} d"
    return f"{name} ({horizon} d{extra})"


def metrics_table(results: list[dict[str, Any]], dataset: str) -> str:
    """Markdown: each model's holdout metric next to its baselines; skipped models with the reason."""
    rows = ["| dataset | model | metric | model | baseline | baseline value |", "|---|---|---|---|---|---|"]
    for r in results:
        m, name = r.get("metrics", {}), r["name"]
        if "skipped" in r:
            rows.append(f"| {dataset} | {name} | not published | {r['skipped']} | | |")
            continue
        label = _model_label(name, m)
        if name.startswith("churn"):
            for metric in ("auc", "lift_at_10pct"):
                for base in ("recency", "bgnbd"):
                    rows.append(f"| {dataset} | {label} | {metric} | {m[metric]:.3f} | {base} | {m[f'baseline_{base}_{metric}']:.3f} |")
            if "baseline_bgnbd_p_none_auc" in m:
                rows.append(f"| {dataset} | {label} | auc | {m['auc']:.3f} | BG/NBD P(no order in the window) | {m['baseline_bgnbd_p_none_auc']:.3f} |")
            rows.append(f"| {dataset} | {label} | brier / ece | {m['brier']:.3f} / {m['ece']:.3f} | | |")
        elif name == "propensity":
            label = f"recommendations ({m['horizon_days']} d)" if "horizon_days" in m else "recommendations"
            for metric in ("recall_at_10", "ndcg_at_10"):
                for base in ("popularity", "repeat"):
                    rows.append(f"| {dataset} | {label} | {metric} | {m[metric]:.3f} | {base} | {m[f'baseline_{base}_{metric}']:.3f} |")
            rows.append(f"| {dataset} | {label} | candidate_recall | {m['candidate_recall']:.3f} | | |")
            if m.get("feedback_rows"):
                rows.append(f"| {dataset} | {label} | feedback rows in training | {m['feedback_rows']:,} | | |")
        elif name == "lookalike":
            for metric in ("auc", "lift_at_10pct"):
                rows.append(f"| {dataset} | lookalike | {metric} | {m[metric]:.3f} | centroid cosine | {m[f'baseline_centroid_cosine_{metric}']:.3f} |")
        elif name.startswith("clv"):
            base = "BG/NBD + Gamma-Gamma"
            rows.append(f"| {dataset} | {label} | RMSE per customer | {m['rmse']:.2f} | {base} | {m['baseline_bgnbd_gg_rmse']:.2f} |")
            rows.append(f"| {dataset} | {label} | aggregate error % | {m['aggregate_error_pct']:+.1f} | {base} | {m['baseline_aggregate_error_pct']:+.1f} |")
            rows.append(f"| {dataset} | {label} | Spearman | {m['spearman']:.3f} | {base} | {m['baseline_bgnbd_gg_spearman']:.3f} |")
            rows.append(f"| {dataset} | {label} | MAE per customer | {m['mae']:.2f} | {base} | {m['baseline_bgnbd_gg_mae']:.2f} |")
        elif name.startswith("purchase_"):
            h = f"{m.get('label_days', name.rsplit('_', 1)[1].rstrip('d'))}d"
            for base in ("bgnbd", "recency"):
                rows.append(f"| {dataset} | {label} | auc | {m[f'auc_{h}']:.3f} | {base} | {m[f'baseline_{base}_auc_{h}']:.3f} |")
            if name == results_last_purchase(results) and "next_purchase_mae_days" in m:
                rows.append(f"| {dataset} | next purchase | MAE days | {m['next_purchase_mae_days']:.1f} | last order + average gap | {m['baseline_naive_next_purchase_mae_days']:.1f} |")
        elif name == "channel":
            for metric in ("top1_accuracy", "log_loss"):
                for base in ("frequent", "last", "majority"):
                    rows.append(f"| {dataset} | best channel | {metric} | {m[metric]:.3f} | {base} channel | {m[f'baseline_{base}_{metric}']:.3f} |")
        elif name == "attributes":
            from training.attributes import metrics_rows

            rows += metrics_rows(m, dataset)
        elif name == "uplift-treated":  # the pair shares its metrics: one set of rows
            from training.uplift import metrics_rows as uplift_rows

            rows += uplift_rows(m, dataset)
        elif name == "clusters":
            sil = m.get("holdout_silhouette")
            rows.append(f"| {dataset} | clusters (k={m['k']}) | holdout silhouette | {'-' if sil is None else f'{sil:.3f}'} | | |")
        elif name == "send-time":
            rows.extend(sendtime.metrics_rows(m, dataset))
        if m.get("note"):
            rows.append(f"| {dataset} | {label} | note | {m['note']} | | |")
    return "\n".join(rows)
