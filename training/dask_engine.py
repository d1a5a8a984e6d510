"""Beyond one machine: churn training and batch scoring on Dask (`tenure train --engine dask`,
`tenure score-file --engine dask`).

The transactions are a Parquet dataset (a directory of files, possibly larger than memory) read with
dask.dataframe. Customers are independent, so the per-customer features are computed partition-wise:
the lines are shuffled by customer (each customer's lines in one partition) and the existing numpy
code (tenure.features: TxArrays, FeatureSpace.customer_features; training.churn.churn_set) runs on
each partition's customers. The global pieces are small reductions computed first and passed to every
partition: the data span (cutoffs), the feature space's vocabularies (top categories by spend, top
channels; regions/genders from the customers table) and the data fingerprint. Within a partition the
lines are put back in the order the pandas path sees them (ts, order_id, then file order), so sums add
up in the same order and the features equal the pandas path's bit for bit.

The churn model is LightGBM's distributed `DaskLGBMClassifier` with ChurnModel's settings; early
stopping is done after the fact (LightGBM's Dask interface has no early stopping): the validation
loss is recorded every round on a customer split of the training rows and the model keeps the
iteration that lgb.early_stopping(50) would have kept. Export (ONNX, parity check, compiled forest,
contributions) reuses training.export / training.contrib.

What it does not do (use the pandas engine for these): the other models (CLV, purchase, propensity,
channel, lookalike, clusters), the BG/NBD baselines and curves of the churn metrics, the feature
snapshot (its product-affinity part needs the whole table), the BG/NBD x Gamma-Gamma feature columns,
and column mappings (the Parquet files must have the canonical columns of tenure.data).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pandas as pd

from tenure.data import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, Shop
from tenure.errors import DataError
from tenure.features import FeatureSpace, TxArrays, _top_levels, btyd_rfm, to_days
from tenure.settings import TrainSettings
from training import evaluation as E
from training import metrics as M
from training.btyd import BetaGeoFitter
from training.churn import CHURN_TREE_PARAMS, ChurnModel, bgnbd_no_purchase_baseline, churn_set
from training.windows import History, label_plan

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

log = logging.getLogger(__name__)

N_WORKERS = 2
WORKER_MEMORY = os.environ.get("TENURE_DASK_WORKER_MEMORY", "4GiB")
"""Memory limit of each LocalCluster worker (the nanny restarts a worker above it; spills before)."""
VALID_FRACTION = 0.15
EARLY_STOPPING_ROUNDS = 50
ROW_KEY = "_row"
SET_COLUMN = "_set"
LABEL_COLUMN = "_label"
RFM_SET = -1
"""SET_COLUMN of the rows holding a customer's BG/NBD summary at the holdout cutoff (RFM_COLUMNS)."""
RFM_COLUMNS = ("_frequency", "_recency", "_age")


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int = N_WORKERS,
                memory_limit: str = WORKER_MEMORY) -> Iterator[Client]:
    """A Client of the scheduler at `scheduler`, else of a LocalCluster (processes, `n_workers` workers of
    one thread each) that is closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, memory_limit=memory_limit,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


# -- reading ---------------------------------------------------------------------------------------

def read_transactions(path: str | Path) -> dd.DataFrame:
    """The canonical transactions of a Parquet dataset (a directory, a file or a glob), typed as tenure.data
    types them, with a row key in file order (partition << 40 | row) for the pandas path's line order."""
    import dask.dataframe as dd

    ddf = dd.read_parquet(str(path))
    missing = [c for c in REQUIRED_COLUMNS if c not in ddf.columns]
    if missing:
        raise DataError(f"{path}: the dask engine reads canonical transactions; columns {missing} are missing "
                        f"(columns: {list(ddf.columns)[:20]})")
    columns = [*REQUIRED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in ddf.columns and c != "store")]
    meta = _typed(ddf._meta[columns].copy())
    meta[ROW_KEY] = np.zeros(0, np.int64)
    return ddf[columns].map_partitions(_typed_with_key, meta=meta)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for c in ("customer_id", "order_id", "product_id", "category", "channel"):
        if c in frame:
            frame[c] = frame[c].astype(str)
    frame["ts"] = pd.to_datetime(frame["ts"])
    frame["quantity"] = frame["quantity"].astype(np.float64)
    frame["amount"] = frame["amount"].astype(np.float64)
    frame["is_return"] = frame["is_return"].astype(bool)
    return frame


def _typed_with_key(frame: pd.DataFrame, partition_info: dict[str, Any] | None = None) -> pd.DataFrame:
    number = int(partition_info["number"]) if partition_info else 0
    frame = _typed(frame.copy())
    frame[ROW_KEY] = (np.int64(number) << np.int64(40)) + np.arange(len(frame), dtype=np.int64)
    return frame


# -- the global pieces -----------------------------------------------------------------------------

@dataclass
class Globals:
    history: History
    space: FeatureSpace
    rows: int
    fingerprint: str


def _partition_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One partition's share of the global reductions, as a small frame of (kind, key, value)."""
    buys = frame[~frame["is_return"]]
    parts = [pd.DataFrame({"kind": ["rows", "ts_min", "ts_max", "hash"], "key": ["", "", "", ""],
                           "value": [float(len(frame)),
                                     float(frame["ts"].min().value) if len(frame) else np.inf,
                                     float(frame["ts"].max().value) if len(frame) else -np.inf, 0.0]})]
    h = pd.util.hash_pandas_object(frame[["customer_id", "order_id", "ts", "product_id", "amount"]], index=False)
    hsum = int(h.to_numpy().sum(dtype=np.uint64))
    parts.append(pd.DataFrame({"kind": ["hash_hi", "hash_lo"], "key": ["", ""],
                               "value": [float(hsum >> 32), float(hsum & 0xFFFFFFFF)]}))
    if "category" in frame:
        s = buys.groupby(buys["category"].astype(str))["amount"].sum()
        parts.append(pd.DataFrame({"kind": "category", "key": s.index.astype(str), "value": s.to_numpy()}))
    if "channel" in frame:
        s = buys.groupby(buys["channel"].astype(str)).size().astype(np.float64)
        parts.append(pd.DataFrame({"kind": "channel", "key": s.index.astype(str), "value": s.to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def compute_globals(ddf: dd.DataFrame, customers: pd.DataFrame | None) -> Globals:
    """Data span, feature space (vocabularies as FeatureSpace.fit picks them) and fingerprint (as
    training.pipeline.fingerprint computes it), in one pass over the lines."""
    meta = pd.DataFrame({"kind": pd.Series(dtype=object), "key": pd.Series(dtype=object),
                         "value": pd.Series(dtype=np.float64)})
    parts = [p for p in ddf.map_partitions(_partition_summary, meta=meta).to_delayed()]
    import dask

    frames = dask.compute(*parts)
    summary = pd.concat(frames, ignore_index=True)
    by = summary.groupby("kind")
    rows = int(by.get_group("rows")["value"].sum())
    if rows == 0:
        raise DataError("the transactions dataset has no rows")
    first = pd.Timestamp(int(by.get_group("ts_min")["value"].min()))
    last = pd.Timestamp(int(by.get_group("ts_max")["value"].max()))
    hsum = 0
    for hi, lo in zip(by.get_group("hash_hi")["value"], by.get_group("hash_lo")["value"]):
        hsum = (hsum + (int(hi) << 32) + int(lo)) % (1 << 64)

    def levels(kind: str) -> tuple[str, ...]:
        if kind not in by.groups:
            return ()
        s = by.get_group(kind).groupby("key")["value"].sum()
        return _top_levels(pd.Series(s.index.astype(str)), pd.Series(s.to_numpy()))

    has = set(ddf.columns)
    space = FeatureSpace(
        categories=levels("category") if "category" in has else (),
        channels=levels("channel") if "channel" in has else (),
        regions=_top_levels(customers["region"]) if customers is not None and "region" in customers else (),
        genders=_top_levels(customers["gender"]) if customers is not None and "gender" in customers else (),
        has_age=customers is not None and "age" in customers,
        has_signup=customers is not None and "signup_date" in customers,
    )
    history = History(first.normalize(), last.normalize() + pd.Timedelta(days=1))
    return Globals(history, space, rows, f"{rows}-{hsum:016x}")


# -- per-partition features --------------------------------------------------------------------------

def partition_arrays(frame: pd.DataFrame, space: FeatureSpace) -> TxArrays:
    """The partition's lines encoded as the pandas path encodes the whole table (same line order)."""
    frame = frame.sort_values(["ts", "order_id", ROW_KEY], kind="stable").drop(columns=[ROW_KEY])
    shop = Shop("partition", frame.reset_index(drop=True), None, None)
    return TxArrays.from_shop(shop, space.categories, space.channels)


def labelled_partition(frame: pd.DataFrame, space: FeatureSpace, customers: pd.DataFrame | None,
                       cutoffs: list[pd.Timestamp], label_days: int, active_window_days: int,
                       snapshot_at: pd.Timestamp | None, rfm_at: pd.Timestamp | None = None) -> pd.DataFrame:
    """The churn labelled rows of the partition's customers at each cutoff (SET_COLUMN = the cutoff's
    index; LABEL_COLUMN = churned), with snapshot_at all its customers' features at that cutoff
    (SET_COLUMN = len(cutoffs), label -1), and with rfm_at their BG/NBD summary at that cutoff
    (SET_COLUMN = RFM_SET, RFM_COLUMNS as tenure.features.btyd_rfm computes them; features 0)."""
    names = space.names
    out = [_empty_labelled(names)]
    if len(frame):
        arrays = partition_arrays(frame, space)
        cust = customers[customers["customer_id"].isin(arrays.customer_ids)] if customers is not None else None
        for k, cutoff in enumerate(cutoffs):
            s = churn_set(space, arrays, cust, cutoff, label_days, active_window_days)
            out.append(_labelled_frame(names, arrays.customer_ids[s.codes], s.X, k, s.y))
        if snapshot_at is not None:
            codes, X = space.customer_features(arrays, snapshot_at, cust)
            out.append(_labelled_frame(names, arrays.customer_ids[codes], X, len(cutoffs), np.full(len(codes), -1)))
        if rfm_at is not None:
            present, frequency, recency, age, _ = btyd_rfm(arrays, to_days(rfm_at))
            rows = np.flatnonzero(present)
            frame_rfm = _labelled_frame(names, arrays.customer_ids[rows], np.zeros((len(rows), len(names)), np.float32),
                                        RFM_SET, np.full(len(rows), -1))
            for column, values in zip(RFM_COLUMNS, (frequency, recency, age)):
                frame_rfm[column] = values[rows]
            out.append(frame_rfm)
    return pd.concat(out, ignore_index=True)


def _labelled_frame(names: list[str], ids: np.ndarray, X: np.ndarray, k: int, y: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(X, columns=names)
    frame.insert(0, "customer_id", np.asarray(ids, dtype=object))
    frame[SET_COLUMN] = np.int16(k)
    frame[LABEL_COLUMN] = np.asarray(y, np.int32)
    for column in RFM_COLUMNS:
        frame[column] = np.nan
    return frame


def _empty_labelled(names: list[str]) -> pd.DataFrame:
    return _labelled_frame(names, np.zeros(0, object), np.zeros((0, len(names)), np.float32), 0, np.zeros(0))


def labelled_sets(ddf: dd.DataFrame, space: FeatureSpace, customers: pd.DataFrame | None,
                  cutoffs: list[pd.Timestamp], label_days: int, active_window_days: int,
                  snapshot_at: pd.Timestamp | None = None, npartitions: int | None = None,
                  rfm_at: pd.Timestamp | None = None) -> dd.DataFrame:
    """Shuffle the lines by customer, then labelled_partition on every partition (lazy)."""
    import dask

    shuffled = ddf.shuffle("customer_id", npartitions=npartitions or ddf.npartitions)
    cust = dask.delayed(customers) if customers is not None else None
    return shuffled.map_partitions(labelled_partition, space, cust, cutoffs, label_days, active_window_days,
                                   snapshot_at, rfm_at, meta=_empty_labelled(space.names), align_dataframes=False)


def collect_sorted(part: dd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer ids, float32 X, labels) of a dask labelled frame, in customer id order (the pandas path's)."""
    frame = part.compute().sort_values("customer_id", kind="stable")
    return (frame["customer_id"].to_numpy(object), frame[names].to_numpy(np.float32),
            frame[LABEL_COLUMN].to_numpy(np.int32))


# -- training ----------------------------------------------------------------------------------------

def _is_valid(ids: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """A deterministic customer split (whole customers), independent of partitioning."""
    salt = f"{seed}:".encode()
    return np.fromiter((zlib.crc32(salt + str(i).encode()) % 10_000 < fraction * 10_000 for i in ids),
                       dtype=bool, count=len(ids))


def _leaf_values(booster: Any) -> np.ndarray:
    """(trees, max leaves) leaf outputs of a booster (the first tree's include the initial score)."""
    info = booster.dump_model()["tree_info"]
    width = max(int(t.get("num_leaves", 1)) for t in info)
    out = np.zeros((len(info), width))
    for i, tree in enumerate(info):
        for j in range(int(tree.get("num_leaves", 1))):
            out[i, j] = booster.get_leaf_output(i, j)
    return out


def _valid_losses(frame: pd.DataFrame, model: Any, names: list[str], leaf_values: np.ndarray,
                  chunk: int = 20_000) -> np.ndarray:
    """Summed binary log loss of the rows after each boosting iteration (length: trees)."""
    total = np.zeros(len(leaf_values))
    trees = np.arange(len(leaf_values))
    for start in range(0, len(frame), chunk):
        part = frame.iloc[start:start + chunk]
        leaves = model.booster_.predict(part[names].to_numpy(np.float32), pred_leaf=True).reshape(len(part), -1)
        raw = np.cumsum(leaf_values[trees[None, :], leaves], axis=1)
        y = part[LABEL_COLUMN].to_numpy(np.float64)[:, None]
        total += np.sum(np.logaddexp(0.0, raw) - y * raw, axis=0)  # -log p(y) of a logistic raw score
    return total


def best_iteration(losses: list[float], rounds: int = EARLY_STOPPING_ROUNDS) -> int:
    """The iteration (1-based) lgb.early_stopping(rounds) keeps for this validation loss curve."""
    best, best_i = np.inf, 0
    for i, loss in enumerate(losses):
        if loss < best:
            best, best_i = loss, i
        elif i - best_i >= rounds:
            break
    return best_i + 1


def _predict_partition(frame: pd.DataFrame, model: Any, names: list[str]) -> pd.DataFrame:
    p = model.predict_proba(frame[names].to_numpy(np.float32))[:, 1] if len(frame) else np.zeros(0)
    return pd.DataFrame({"customer_id": frame["customer_id"].to_numpy(object),
                         "y": frame[LABEL_COLUMN].to_numpy(np.int32), "p": p,
                         "recency": frame["recency_days"].to_numpy(np.float64)})


def bgnbd_baselines(summary: pd.DataFrame, ids: np.ndarray, y: np.ndarray, label_days: int) -> dict[str, Any]:
    """ChurnModel.evaluate's BG/NBD baselines from the per-customer summary at the holdout cutoff (every
    customer with a purchase before it; index customer_id): the fitter as it fits there. "_expected": the
    holdout rows' expected purchases (for the curves)."""
    bgf = BetaGeoFitter(penalizer_coef=0.001).fit(summary["frequency"], summary["recency"], summary["T"])
    s = summary.reindex(ids)
    expected = np.asarray(bgf.conditional_expected_number_of_purchases_up_to_time(
        label_days, s["frequency"].to_numpy(), s["recency"].to_numpy(), s["T"].to_numpy()), np.float64)
    return {"baseline_bgnbd_auc": M.roc_auc(y, -expected), "baseline_bgnbd_lift_at_10pct": M.lift_at(y, -expected, 0.1),
            **bgnbd_no_purchase_baseline(bgf, s, y, label_days),
            "bgnbd_params": {k: float(v) for k, v in bgf.params_.items()}, "_expected": expected.tolist()}


def train_churn_dask(client: Client, transactions: str | Path, repo: Path, settings: TrainSettings, *,
                     customers: pd.DataFrame | None = None, name: str = "churn", dataset: str = "",
                     npartitions: int | None = None) -> dict[str, Any]:
    """Train the churn model on the workers of `client` and export it into `repo` (not staged: see
    train_dask). Returns the pipeline's result dict (name, path, metrics, extra_paths)."""
    import dask
    import lightgbm as lgb
    from lightgbm.dask import DaskLGBMClassifier

    from training.contrib import export_contributions
    from training.export import export_binary
    from training.lgbm import params

    t0 = time.perf_counter()
    ddf = read_transactions(transactions)
    g = compute_globals(ddf, customers)
    space, history, end = g.space, g.history, g.history.end
    churn = ChurnModel(settings.churn_horizon_days, settings.active_window_days, seed=settings.seed,
                       threads=settings.lgbm_threads)
    plan = label_plan(history, churn.horizon_days, "churn", churn.cutoff_step_days, churn.n_train_cutoffs)
    if plan.label_days < churn.horizon_days:
        raise DataError(f"churn: {history.describe()}: too short for {churn.horizon_days}-day labels; the dask engine "
                        f"does not extend shorter label windows (use --engine pandas)")
    train_cutoffs, holdout_cutoff = churn.cutoffs(end, plan)
    train_cutoffs = [c for c in train_cutoffs if history.has_features(c)]
    if not train_cutoffs:
        raise DataError(f"churn: not enough history for a {plan.label_days}-day label window: {history.describe()}")
    names = space.names
    labelled = labelled_sets(ddf, space, customers, [*train_cutoffs, holdout_cutoff], plan.label_days,
                             churn.active_window_days, npartitions=npartitions, rfm_at=holdout_cutoff).persist()
    train = labelled[(labelled[SET_COLUMN] >= 0) & (labelled[SET_COLUMN] < len(train_cutoffs))]
    holdout = labelled[labelled[SET_COLUMN] == len(train_cutoffs)]
    valid_meta = pd.Series(np.zeros(0, bool))
    is_valid = train["customer_id"].map_partitions(_is_valid, VALID_FRACTION, settings.seed, meta=valid_meta)
    train = train.assign(_valid=is_valid)
    fit_rows, valid_rows = train[~train["_valid"]], train[train["_valid"]]
    n_train = int(len(train))
    min_leaf = int(np.clip(n_train // 20, 20, CHURN_TREE_PARAMS["min_child_samples"]))
    model = DaskLGBMClassifier(client=client, **params(
        seed=settings.seed, threads=1, n_estimators=600, learning_rate=0.05,
        num_leaves=CHURN_TREE_PARAMS["num_leaves"], min_child_samples=min_leaf))
    model.fit(fit_rows[names].to_dask_array(lengths=True), fit_rows[LABEL_COLUMN].to_dask_array(lengths=True))
    local = model.to_local()
    # the validation loss of every iteration, summed over the validation partitions on the workers (each
    # worker's own evals_result_ covers only the validation rows it holds)
    leaf_values = _leaf_values(local.booster_)
    losses = np.sum(dask.compute(*[dask.delayed(_valid_losses)(part, local, names, leaf_values)
                                   for part in valid_rows.to_delayed()]), axis=0)
    best = best_iteration(list(losses))
    # as lgb.train leaves an early-stopped booster: only the kept iterations, best_iteration set
    booster = lgb.Booster(model_str=local.booster_.model_to_string(num_iteration=best))
    booster.best_iteration = best
    local._Booster = booster
    local._best_iteration = best
    train_seconds = round(time.perf_counter() - t0, 1)

    scored = holdout.map_partitions(_predict_partition, local, names, meta=pd.DataFrame(
        {"customer_id": pd.Series(dtype=object), "y": np.zeros(0, np.int32), "p": np.zeros(0),
         "recency": np.zeros(0)})).compute().sort_values("customer_id", kind="stable")
    y, p, recency = scored["y"].to_numpy(), scored["p"].to_numpy(), scored["recency"].to_numpy()
    rfm = labelled[labelled[SET_COLUMN] == RFM_SET][["customer_id", *RFM_COLUMNS]].compute()
    summary = rfm.set_index("customer_id").sort_index().rename(
        columns=dict(zip(RFM_COLUMNS, ("frequency", "recency", "T"))))
    X_check = holdout[names].head(5_000, npartitions=-1).to_numpy(np.float32)
    del labelled, train, holdout  # the workers drop the persisted rows
    metrics: dict[str, Any] = {
        "engine": "dask", "horizon_days": churn.horizon_days, "label_days": plan.label_days, "horizon_exponent": 1.0,
        "holdout_cutoff": str(holdout_cutoff.date()), "holdout_rows": int(len(y)),
        "holdout_churn_rate": float(y.mean()) if len(y) else float("nan"),
        "auc": M.roc_auc(y, p), "lift_at_10pct": M.lift_at(y, p, 0.1), "brier": M.brier(y, p),
        "ece": M.expected_calibration_error(y, p),
        "baseline_recency_auc": M.roc_auc(y, recency), "baseline_recency_lift_at_10pct": M.lift_at(y, recency, 0.1),
        **bgnbd_baselines(summary, scored["customer_id"].to_numpy(object), y, plan.label_days),
        "train_rows": n_train, "best_iteration": best, "train_seconds": train_seconds,
        "dask_workers": len(client.scheduler_info().get("workers", {})),
    }
    evaluation = {**E.binary_evaluation(y, {"model": p, "recency": recency,
                                             "BG/NBD": -np.asarray(metrics.pop("_expected"))}, {"model": p}),
                  "positive": "no purchase in the label window (churned)", "label_days": plan.label_days}
    label = pd.Timedelta(days=plan.label_days)
    window = {"data_start": str(history.first.date()), "cutoff": str(train_cutoffs[0].date()),
              "label_end": str((train_cutoffs[0] + label).date()),
              "train_cutoffs": ",".join(str(c.date()) for c in train_cutoffs),
              "holdout_cutoff": str(holdout_cutoff.date()), "holdout_label_end": str(end.date())}
    path = export_binary(repo, name, local, names, X_check, metrics=metrics, training_window=window,
                         params={"horizon_days": churn.horizon_days, "label_days": plan.label_days,
                                 "active_window_days": churn.active_window_days, "dataset": dataset,
                                 "engine": "dask"},
                         data_fingerprint=g.fingerprint, positive_is_none=True, evaluation=evaluation,
                         compile_forest=True)
    contributions = export_contributions(
        repo, f"{name}-contributions", local, names, X_check, explains=name,
        training_window={"holdout_cutoff": str(holdout_cutoff.date())}, data_fingerprint=g.fingerprint)
    return {"name": name, "path": str(path), "metrics": metrics, "extra_paths": [str(contributions)]}


def train_dask(transactions: str | Path, repo: Path, settings: TrainSettings | None = None, *,
               scheduler: str | None = None, customers: pd.DataFrame | None = None,
               dataset: str = "") -> list[dict[str, Any]]:
    """`tenure train --engine dask`: churn trained on Dask and published like train_all publishes (staged)."""
    from training.pipeline import staged

    settings = settings or TrainSettings()
    with dask_client(scheduler) as client:
        return staged(Path(repo), lambda stage: [train_churn_dask(client, transactions, stage, settings,
                                                                  customers=customers, dataset=dataset)])


# -- batch scoring -------------------------------------------------------------------------------------

_loaded: dict[str, tuple[Any, dict[str, Any], dict[str, np.ndarray]]] = {}
"""Per worker process: repository -> (snapshot, models by name, their columns in the snapshot)."""

SCORE_MODELS = ("churn", "lookalike")


def _repository(repo: str) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
    """The repository's feature snapshot and churn / lookalike models, loaded once per worker process with
    the services' loaders."""
    if repo not in _loaded:
        from services.core.runtime import column_index, load_present, load_snapshot

        snapshot = load_snapshot(Path(repo))
        models = load_present(Path(repo), SCORE_MODELS)
        if "churn" not in models:
            raise DataError(f"{repo}: no loadable churn model")
        cols = {n: column_index(snapshot.feature_names, m.features, n) for n, m in models.items()}
        _loaded[repo] = (snapshot, models, cols)
    return _loaded[repo]


def _loaded_versions(repo: str) -> list[str]:
    snapshot, models, _ = _repository(repo)
    return [f"features/{snapshot.version}", *(f"{n}/{m.version}" for n, m in models.items())]


def score_partition(frame: pd.DataFrame, repo: str, id_column: str) -> pd.DataFrame:
    """One partition of ids -> customer_id, churn_probability, lookalike_score (NaN without a lookalike
    model), error (None when scored), one row per input row in order."""
    snapshot, models, cols = _repository(repo)
    ids = [str(i) for i in frame[id_column].tolist()]
    rows = snapshot.rows(ids)
    known = rows >= 0
    X = snapshot.X[rows[known]]
    out = {}
    for name, column in (("churn", "churn_probability"), ("lookalike", "lookalike_score")):
        values = np.full(len(ids), np.nan, np.float32)
        if name in models and known.any():
            values[known] = models[name].predict(np.ascontiguousarray(X[:, cols[name]]))
        out[column] = values
    errors = [None if k else (f"customer {i[:100]!r} is not in the feature store (snapshot {snapshot.version})"
                              if i else "customer_id is empty") for i, k in zip(ids, known)]
    return pd.DataFrame({"customer_id": pd.Series(ids, dtype=object), **out,
                         "error": pd.Series(errors, dtype=object)})


@dataclass
class DaskScoreReport:
    rows: int
    scored: int
    unknown: int
    parts: int


def score_file_dask(repo: Path, input_path: str | Path, output_dir: Path, *, scheduler: str | None = None,
                    id_column: str = "customer_id") -> DaskScoreReport:
    """Score a Parquet dataset of customer ids partition by partition on the workers: one output part per
    input partition (OUTPUT_DIR/part.N.parquet), every row kept (unknown ids get an error)."""
    import dask.dataframe as dd
    import pyarrow as pa

    ddf = dd.read_parquet(str(input_path), columns=[id_column])
    meta = pd.DataFrame({"customer_id": pd.Series(dtype=object), "churn_probability": np.zeros(0, np.float32),
                         "lookalike_score": np.zeros(0, np.float32), "error": pd.Series(dtype=object)})
    with dask_client(scheduler) as client:
        # a missing model or snapshot fails here, once, with its message
        client.submit(_loaded_versions, str(Path(repo).resolve()), pure=False).result()
        scored = ddf.map_partitions(score_partition, str(Path(repo).resolve()), id_column, meta=meta)
        schema = pa.schema([("customer_id", pa.string()), ("churn_probability", pa.float32()),
                            ("lookalike_score", pa.float32()), ("error", pa.string())])
        dd.to_parquet(scored, str(output_dir), write_index=False, overwrite=True, schema=schema)
        written = dd.read_parquet(str(output_dir), columns=["error"])
        counts = written.map_partitions(
            lambda f: pd.DataFrame({"rows": [len(f)], "unknown": [int(f["error"].notna().sum())]}),
            meta=pd.DataFrame({"rows": np.zeros(0, np.int64), "unknown": np.zeros(0, np.int64)})).compute()
        rows_in = int(ddf.map_partitions(len).compute().sum())
    rows, unknown = int(counts["rows"].sum()), int(counts["unknown"].sum())
    if rows != rows_in:
        raise RuntimeError(f"{output_dir} holds {rows} rows, the input {rows_in}")
    return DaskScoreReport(rows_in, rows - unknown, unknown, ddf.npartitions)
