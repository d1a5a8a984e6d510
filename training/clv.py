"""Customer lifetime value: historic net spend + LightGBM-predicted net spend over a horizon.

CLV of a customer at a cutoff = historic (net spend before the cutoff, the ``spend_total`` feature)
+ predicted (expected net spend over the next ``horizon_days``). The predictor is a LightGBM
Poisson regression on the churn model's point-in-time customer features
(:meth:`tenure.features.FeatureSpace.customer_features`), so serving feeds it the snapshot row.
Poisson is chosen for its canonical log link: boosting keeps the sum of the fitted values close to
the sum of the labels, which an aggregate spend forecast needs (Tweedie's log link is not its
canonical link and its totals come out low on zero-heavy spend).

Time split (nothing after the holdout cutoff ``end - horizon`` is used for fitting or tuning):

* Label windows are ``label_days = min(horizon, 91)`` long and tile the last year (``season_days``)
  of the calibration period: training cutoffs ``holdout - label_days * k`` (k = 1, 2, ...), each
  with at least ``min_history_days`` of history, every label window ending by the holdout cutoff.
  Short windows keep the training cutoffs close to the holdout cutoff, so the customers' recency
  and tenure at the holdout stay inside the range the trees saw. (With one full-horizon window a
  horizon before the holdout, customers dormant longer than the shop's age at that cutoff get the
  prediction of the most dormant customers seen, and the forecast drifts up.) Tiling a year
  averages seasonality out of the stacked rate.
* Short histories (training.windows): the label window shrinks until two of them and the features'
  history fit, and the holdout window covers what is left (at most the horizon). A horizon longer
  than the holdout (e.g. 365 days from 9 months of orders) is forecast at the same daily rate; the
  holdout metrics compare the forecast's share of the holdout window (``holdout_days``).
* Target: net spend in the label window per day x ``horizon_days`` (negative windows, i.e. more
  returned than bought, count as 0), so the raw model output is the horizon's spend at the label
  window's rate.
* Horizon decay factor ``D``: spend rates fall over a long horizon as customers drop out. ``D`` =
  realised net spend over a full horizon / the model's constant-rate forecast, both for the
  customers at ``holdout - horizon`` (needs that cutoff to have ``min_history_days`` of history;
  the whole window is inside calibration). When no such cutoff exists (CDNOW: 39-week
  calibration, 39-week horizon) ``D = 1``: the rate is assumed constant over the horizon.
  Predictions are ``D x`` the LightGBM output; the ONNX export multiplies by ``D`` in the graph.
* Early stopping (the only tuned hyperparameter) uses whole customers held out from the training
  rows, as in :mod:`training.lgbm`. No discounting is applied anywhere.

Blend: when the feature space carries the point-in-time BG/NBD x Gamma-Gamma forecast over the
model's horizon (``FeatureSpace.btyd_horizons``, column ``bgnbd_gg_spend_{H}d``), the served
forecast is (1 - BTYD_WEIGHT) x the LightGBM forecast + BTYD_WEIGHT x that column (LightGBM itself
is trained without the column); the ONNX graph computes the same. Without the column: LightGBM only.

Baseline on the same holdout rows: BG/NBD x Gamma-Gamma fitted by :mod:`training.btyd` on the RFM
summary at the holdout cutoff (days; maximum likelihood as in the papers): conditional expected
purchases over the horizon x conditional expected average spend, undiscounted. It models gross
spend (returns are not in the RFM summary); the model and the actual values are net of returns.

Metrics: per-customer MAE and RMSE, Spearman rank correlation, and the aggregate error of the
holdout total (sum predicted vs sum actual, % of actual). MAE is minimised by the conditional
*median*, which is 0 for most customers, so it rewards forecasts that are biased low: the
evaluation also reports the MAE of predicting 0 for everyone and the MAE of the baseline rescaled
to the model's total (uses predictions only), which compares the two at an equal total.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import helper, numpy_helper
from onnxmltools import convert_lightgbm
from onnxmltools.convert.common.data_types import FloatTensorType
from scipy.stats import spearmanr

from tenure.artifacts import write_artifact
from tenure.data import Shop
from tenure.errors import ArtifactError
from tenure.features import FeatureSpace, TxArrays, btyd_spend_name, to_days, without_btyd
from training.btyd import BetaGeoFitter, GammaGammaFitter, rfm_summary
from training.contrib import snap_onnx_thresholds
from training.evaluation import evaluation_file, spend_deciles
from training.export import INPUT_NAME, lightgbm_manifest
from training.lgbm import fit_regressor
from training.windows import History, NotEnoughHistory

log = logging.getLogger(__name__)

HISTORIC_FEATURE = "spend_total"
"""The customer feature that is net spend (purchases minus returns) before the cutoff."""
SPEND_OUTPUT = "spend"
BTYD_WEIGHT = 0.5
"""Weight of the point-in-time BG/NBD x Gamma-Gamma forecast (the `bgnbd_gg_spend_{H}d` feature, when
the feature space has the model's horizon) in the served forecast: (1 - w) x LightGBM + w x BG/NBD x GG.
Chosen on validation splits before the holdout cutoff (CDNOW: 91-day forecast at 1997-07-02; The
Complete Journey: 90 days at 2017-07-06): RMSE fell from w = 0 to 0.3 to 0.5 on both (42.5 / 41.5 /
41.1 and 493 / 393 / 335). The two forecasts err differently (BG/NBD x GG extrapolates each customer's
own rate, LightGBM pools look-alike customers), so the average has the lower squared error."""
PARITY_RTOL = 1e-4
"""Max |ONNX - LightGBM| / max(1, |LightGBM|) allowed on the check rows (float32 vs float64 sums)."""


def spend_between(arrays: TxArrays, start_day: float, end_day: float) -> np.ndarray:
    """Net spend (all lines, returns negative) per customer code with start_day <= t < end_day."""
    m = (arrays.t >= start_day) & (arrays.t < end_day)
    return np.bincount(arrays.cust[m], weights=arrays.amount[m], minlength=arrays.n_customers)


def historic_clv(X: np.ndarray, feature_names: list[str]) -> np.ndarray:
    """Historic CLV per feature row: net spend before the row's cutoff (the spend_total column)."""
    return np.asarray(X[:, feature_names.index(HISTORIC_FEATURE)], dtype=np.float64)


def customer_groups(arrays: TxArrays, codes: np.ndarray) -> np.ndarray:
    """Early-stopping group per training row: the rank of its customer id among the rows' customers.

    Unlike the customer code, this does not change when later transactions add new customers, so
    the validation split (and the model) depends on the training rows only."""
    return np.unique(arrays.customer_ids[codes], return_inverse=True)[1].ravel()


def bgnbd_gg_spend(transactions: pd.DataFrame, cutoff: pd.Timestamp, customer_ids: np.ndarray,
                   horizon_days: float, penalizer: float = 0.0) -> tuple[np.ndarray, dict[str, float]]:
    """BG/NBD x Gamma-Gamma expected spend over the horizon (undiscounted) for `customer_ids`,
    fitted on the RFM summary (days) of the transactions before `cutoff`. Returns (spend, params)."""
    summary = rfm_summary(transactions, cutoff)
    bgf = BetaGeoFitter(penalizer_coef=penalizer).fit(summary["frequency"], summary["recency"], summary["T"])
    ggf = GammaGammaFitter(penalizer_coef=penalizer).fit(summary["frequency"], summary["monetary_value"])
    s = summary.reindex(customer_ids)
    if s.isna().any().any():
        raise ValueError("some customers have no purchase before the cutoff in the RFM summary")
    spend = ggf.customer_lifetime_value(bgf, s["frequency"].to_numpy(), s["recency"].to_numpy(), s["T"].to_numpy(),
                                        s["monetary_value"].to_numpy(), time=float(horizon_days))
    params = {**{f"bgnbd_{k}": v for k, v in bgf.params_.items()}, **{f"gg_{k}": v for k, v in ggf.params_.items()}}
    return np.asarray(spend, dtype=np.float64), params


@dataclass
class SpendSet:
    """Features at a cutoff and the net spend of the following `days` days."""

    codes: np.ndarray
    X: np.ndarray
    spend: np.ndarray
    cutoff: pd.Timestamp
    days: int


def spend_set(space: FeatureSpace, arrays: TxArrays, customers: pd.DataFrame | None,
              cutoff: pd.Timestamp, days: int) -> SpendSet:
    """Every customer with a purchase before `cutoff`, with net spend in [cutoff, cutoff + days)."""
    codes, X = space.customer_features(arrays, cutoff, customers)
    T = to_days(cutoff)
    return SpendSet(codes, X, spend_between(arrays, T, T + days)[codes], cutoff, days)


class ClvModel:
    """Predicted net spend over `horizon_days` (see the module docstring for the time split)."""

    def __init__(self, horizon_days: int = 365, label_days: int = 91, season_days: int = 364,
                 min_history_days: int = 60, max_windows: int = 12, seed: int = 7, threads: int = 1,
                 baseline_penalizer: float = 0.0) -> None:
        self.horizon_days = horizon_days
        self.label_days = self.asked_label_days = min(label_days, horizon_days)
        self.holdout_days_ = horizon_days
        self.season_days = season_days
        self.min_history_days = min_history_days
        self.max_windows = max_windows
        self.seed = seed
        self.threads = threads
        self.baseline_penalizer = baseline_penalizer

    short_label_days: int = 28
    short_step_days: int = 7
    short_holdout_share: float = 0.5

    def plan(self, history: History | None) -> tuple[int, int, int]:
        """(label window, holdout window, step between training cutoffs) in days.

        When the history covers the holdout horizon, a label window and one more window before it:
        the asked label window, cutoffs tiling the last year. Otherwise (a short history) the holdout
        covers what is left after the features' history and one label window, and the training
        cutoffs are `short_step_days` apart with `short_label_days` labels, so that they span the
        customers' recency and tenure at the holdout cutoff (one early cutoff of a 365-day log gave
        +103% on The Complete Journey's 215-day holdout total)."""
        if history is None:
            return self.asked_label_days, self.horizon_days, self.asked_label_days
        if history.days - history.feature_days >= self.horizon_days + 2 * self.asked_label_days:
            return self.asked_label_days, self.horizon_days, self.asked_label_days
        label = history.label_days(min(self.asked_label_days, self.short_label_days), "clv")
        holdout = int(min(self.horizon_days, (history.days - history.feature_days - label) * self.short_holdout_share))
        return label, holdout, min(label, self.short_step_days)

    def cutoffs(self, end: pd.Timestamp, history: History | None = None
                ) -> tuple[list[pd.Timestamp], pd.Timestamp, pd.Timestamp]:
        """(training cutoffs newest first, holdout cutoff, decay cutoff), before the history filter."""
        label, holdout_days, step = self.plan(history)
        holdout = end - pd.Timedelta(days=holdout_days)
        n = min(self.max_windows, max(1, self.season_days // step))
        train = [holdout - pd.Timedelta(days=label + step * k) for k in range(n)]
        return train, holdout, holdout - pd.Timedelta(days=self.horizon_days)

    def fit(self, shop: Shop, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp) -> "ClvModel":
        history = History.of(shop.transactions)
        self.label_days, self.holdout_days_, _step = self.plan(history)
        train_cutoffs, holdout_cutoff, decay_cutoff = self.cutoffs(pd.Timestamp(end), history)
        first = to_days(history.first)
        min_history = min(self.min_history_days, history.feature_days)
        has_history = [to_days(c) - first >= min_history for c in (*train_cutoffs, decay_cutoff)]
        sets = [spend_set(space, arrays, shop.customers, c, self.label_days)
                for c, ok in zip(train_cutoffs, has_history) if ok]
        if not sets:
            raise NotEnoughHistory(f"clv: not enough history for a {self.label_days}-day label window: "
                                   f"{history.describe()}")
        per_day_to_horizon = self.horizon_days / self.label_days
        X = np.concatenate([s.X for s in sets])
        y = np.concatenate([np.maximum(s.spend, 0.0) * per_day_to_horizon for s in sets])
        groups = customer_groups(arrays, np.concatenate([s.codes for s in sets]))
        self.model_: lgb.LGBMRegressor = fit_regressor(without_btyd(X, space.names), y, groups, seed=self.seed,
                                                       threads=self.threads)  # BG/NBD x GG enters by the blend
        self.feature_names_ = space.names
        self.train_cutoffs_ = [s.cutoff for s in sets]
        self.holdout_cutoff_ = holdout_cutoff
        self.train_rows_ = int(len(y))
        self.decay_factor_ = 1.0
        self.decay_cutoff_: pd.Timestamp | None = None
        if has_history[-1]:
            d = spend_set(space, arrays, shop.customers, decay_cutoff, self.horizon_days)
            forecast = float(np.sum(self.model_.predict(d.X)))
            ratio = float(d.spend.sum()) / forecast if forecast > 0 else math.nan
            if math.isfinite(ratio) and ratio > 0:
                self.decay_factor_, self.decay_cutoff_ = ratio, decay_cutoff
            else:
                log.warning("clv: decay factor undefined at %s (ratio %s); using 1", decay_cutoff.date(), ratio)
        self.holdout_ = spend_set(space, arrays, shop.customers, holdout_cutoff, self.holdout_days_)
        log.info("clv: %d rows from cutoffs %s, label %d days, decay factor %.3f", self.train_rows_,
                 [str(c.date()) for c in self.train_cutoffs_], self.label_days, self.decay_factor_)
        return self

    btyd_weight: float = BTYD_WEIGHT

    def blend(self) -> tuple[int | None, float]:
        """(column of the BG/NBD x GG forecast over the horizon in the features, its weight); (None, 0)
        when the feature space has no such column (FeatureSpace.btyd_horizons without the horizon)."""
        name = btyd_spend_name(self.horizon_days)
        if self.btyd_weight <= 0 or name not in self.feature_names_:
            return None, 0.0
        return self.feature_names_.index(name), float(self.btyd_weight)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected net spend over the horizon per feature row."""
        return blended_spend(np.asarray(self.model_.predict(X), dtype=np.float64), X, self.decay_factor_,
                             *self.blend())

    def predict_lightgbm(self, X: np.ndarray) -> np.ndarray:
        """The LightGBM part alone (decay factor applied, no BG/NBD x GG blend)."""
        return self.decay_factor_ * np.asarray(self.model_.predict(X), dtype=np.float64)

    def clv(self, X: np.ndarray) -> pd.DataFrame:
        """historic (net spend so far), predicted (next horizon) and total = historic + predicted."""
        historic = historic_clv(X, self.feature_names_)
        predicted = self.predict(X)
        return pd.DataFrame({"historic": historic, "predicted": predicted, "total": historic + predicted})

    def evaluate(self, shop: Shop, arrays: TxArrays) -> dict[str, Any]:
        """Holdout metrics of the model next to BG/NBD x Gamma-Gamma (flat, JSON-able)."""
        h = self.holdout_
        actual = h.spend
        # a holdout shorter than the horizon (short history) is compared with the forecast's share of it
        pred = self.predict(h.X) * (self.holdout_days_ / self.horizon_days)
        base, base_params = bgnbd_gg_spend(shop.transactions, h.cutoff, arrays.customer_ids[h.codes],
                                           self.holdout_days_, self.baseline_penalizer)
        total = float(actual.sum())
        rescaled = base * (pred.sum() / base.sum()) if base.sum() > 0 else base
        column, weight = self.blend()
        alone = self.predict_lightgbm(h.X) * (self.holdout_days_ / self.horizon_days)
        self.evaluation_: dict[str, Any] = {
            "kind": "regression", "rows": int(len(actual)), "holdout_days": self.holdout_days_,
            "spend_deciles": spend_deciles(pred, actual, base), "baseline": "BG/NBD + Gamma-Gamma"}
        return {
            "btyd_weight": weight,
            "btyd_feature": self.feature_names_[column] if column is not None else None,
            "lightgbm_only_rmse": _rmse(alone, actual),
            "lightgbm_only_spearman": _spearman(alone, actual),
            "lightgbm_only_aggregate_error_pct": _pct(alone.sum(), total),
            "holdout_cutoff": str(h.cutoff.date()),
            "holdout_end": str((h.cutoff + pd.Timedelta(days=self.holdout_days_)).date()),
            "holdout_days": self.holdout_days_,
            "note": (f"holdout covers {self.holdout_days_} of the {self.horizon_days} days (history too short); "
                     "the forecast beyond is the same daily rate" if self.holdout_days_ < self.horizon_days else ""),
            "holdout_rows": int(len(actual)),
            "horizon_days": self.horizon_days,
            "label_days": self.label_days,
            "train_cutoffs": ",".join(str(c.date()) for c in self.train_cutoffs_),
            "train_rows": self.train_rows_,
            "decay_factor": self.decay_factor_,
            "decay_cutoff": str(self.decay_cutoff_.date()) if self.decay_cutoff_ is not None else None,
            "actual_total": total,
            "predicted_total": float(pred.sum()),
            "mae": _mae(pred, actual),
            "rmse": _rmse(pred, actual),
            "spearman": _spearman(pred, actual),
            "aggregate_error_pct": _pct(pred.sum(), total),
            "baseline_bgnbd_gg_total": float(base.sum()),
            "baseline_bgnbd_gg_mae": _mae(base, actual),
            "baseline_bgnbd_gg_rmse": _rmse(base, actual),
            "baseline_bgnbd_gg_spearman": _spearman(base, actual),
            "baseline_aggregate_error_pct": _pct(base.sum(), total),
            "baseline_bgnbd_gg_mae_at_model_total": _mae(rescaled, actual),
            "baseline_zero_mae": _mae(np.zeros_like(actual), actual),
            **{f"baseline_{k}": float(v) for k, v in base_params.items()},
        }


def _mae(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - actual)))


def _rmse(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(pred - actual))))


def _spearman(pred: np.ndarray, actual: np.ndarray) -> float:
    return float(spearmanr(pred, actual).statistic)


def _pct(predicted: float, actual: float) -> float:
    return float(100.0 * (predicted - actual) / actual) if actual else math.nan


# --------------------------------------------------------------------------- ONNX export


def blended_spend(raw: np.ndarray, X: np.ndarray, scale: float, column: int | None, weight: float) -> np.ndarray:
    """(1 - weight) x scale x raw + weight x max(X[:, column], 0); scale x raw without a column."""
    if column is None or weight <= 0:
        return scale * raw
    btyd = np.maximum(np.asarray(X[:, column], dtype=np.float64), 0.0)  # UNKNOWN (-1): no forecast
    return (1.0 - weight) * scale * raw + weight * btyd


def regressor_to_onnx(model: lgb.LGBMRegressor, n_features: int, scale: float = 1.0,
                      blend_column: int | None = None, blend_weight: float = 0.0) -> bytes:
    """ONNX graph `features` float32 [N, n_features] -> `spend` float32 [N, 1] = scale x prediction,
    or with a blend column (1 - w) x scale x prediction + w x max(features[:, column], 0)."""
    onx = convert_lightgbm(model, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))])
    # the same exact-split snapping as the classifiers (training.contrib): without it a value equal to a
    # rounded-up threshold goes the wrong way (5e-3 relative on real data)
    onx = onnx.load_from_string(snap_onnx_thresholds(onx.SerializeToString(), model))
    graph = onx.graph
    raw = graph.output[0].name
    blend = blend_column is not None and blend_weight > 0
    blend_column = blend_column if blend_column is not None else -1
    model_scale = (1.0 - blend_weight) * scale if blend else scale
    graph.initializer.append(numpy_helper.from_array(np.array([model_scale], dtype=np.float32), "spend_scale"))
    scaled = "scaled_spend" if blend else SPEND_OUTPUT
    graph.node.append(helper.make_node("Mul", [raw, "spend_scale"], [scaled], name="apply_spend_scale"))
    if blend:
        graph.initializer.append(numpy_helper.from_array(np.array([int(blend_column)], dtype=np.int64), "btyd_column"))
        graph.initializer.append(numpy_helper.from_array(np.array([blend_weight], dtype=np.float32), "btyd_weight"))
        graph.node.append(helper.make_node("Gather", [INPUT_NAME, "btyd_column"], ["btyd_raw"], axis=1, name="btyd_take"))
        graph.node.append(helper.make_node("Relu", ["btyd_raw"], ["btyd_spend"], name="btyd_known"))
        graph.node.append(helper.make_node("Mul", ["btyd_spend", "btyd_weight"], ["btyd_part"], name="btyd_weigh"))
        graph.node.append(helper.make_node("Add", [scaled, "btyd_part"], [SPEND_OUTPUT], name="blend_btyd"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(SPEND_OUTPUT, onnx.TensorProto.FLOAT, [None, 1]))
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def onnx_spend(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    """Run the exported graph: float32 [N, 1]."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    return sess.run([SPEND_OUTPUT], {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})[0]


def regressor_parity(model: lgb.LGBMRegressor, onnx_bytes: bytes, X: np.ndarray, scale: float = 1.0,
                     blend_column: int | None = None, blend_weight: float = 0.0) -> float:
    """Max |ONNX - expected| / max(1, |expected|) on the given rows, expected = `blended_spend`
    of the LightGBM prediction (scale x prediction without a blend column)."""
    if not len(X):
        return 0.0
    X = np.ascontiguousarray(X, dtype=np.float32)
    expected = blended_spend(np.asarray(model.predict(X), dtype=np.float64), X, scale, blend_column, blend_weight)
    got = onnx_spend(onnx_bytes, X)[:, 0].astype(np.float64)
    return float(np.max(np.abs(expected - got) / np.maximum(1.0, np.abs(expected))))


def export_regressor(
    repo: Path,
    name: str,
    model: lgb.LGBMRegressor,
    feature_names: list[str],
    X_check: np.ndarray,
    *,
    metrics: dict[str, Any],
    training_window: dict[str, str],
    params: dict[str, Any] | None = None,
    data_fingerprint: str = "",
    scale: float = 1.0,
    blend_column: int | None = None,
    blend_weight: float = 0.0,
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """Convert (output `spend` = scale x LightGBM prediction, blended with a feature column as in
    `blended_spend` when blend_column is given), check parity on X_check (held-out rows), write
    models/<name>/<version>/ with kind "lightgbm-regression"."""
    onnx_bytes = regressor_to_onnx(model, len(feature_names), scale, blend_column, blend_weight)
    if blend_column is None:
        diff = regressor_parity(model, onnx_bytes, X_check, scale)
    else:
        diff = regressor_parity(model, onnx_bytes, X_check, scale, blend_column, blend_weight)
    if not diff <= PARITY_RTOL:
        raise ArtifactError(f"{name}: ONNX differs from LightGBM by {diff:.2e} relative (> {PARITY_RTOL})",
                            model=name)
    metrics = {**metrics, "onnx_parity_max_rel_diff": diff, "onnx_parity_rows": int(len(X_check))}
    manifest = lightgbm_manifest(
        name, "lightgbm-regression", model, feature_names,
        [{"name": SPEND_OUTPUT, "dtype": "float32", "shape": [-1, 1], "use_column": 0}],
        metrics=metrics, training_window=training_window, params={"output_scale": scale, "btyd_weight": blend_weight if blend_column is not None else 0.0,
                                                **(params or {})},
        data_fingerprint=data_fingerprint)
    files: dict[str, bytes | Path] = {"model.onnx": onnx_bytes, **evaluation_file(model, feature_names, evaluation)}
    path = write_artifact(repo, manifest, files)
    log.info("exported %s -> %s (parity %.1e on %d rows)", name, path, diff, len(X_check))
    return path


def train_clv(shop: Shop, repo: Path, space: FeatureSpace, arrays: TxArrays, end: pd.Timestamp, *,
              horizon_days: int = 365, seed: int = 7, threads: int = 1, name: str = "clv",
              data_fingerprint: str = "") -> dict[str, Any]:
    """Fit, evaluate and export the CLV model; {"name", "path", "metrics"} like the pipeline's entries."""
    model = ClvModel(horizon_days=horizon_days, seed=seed, threads=threads).fit(shop, space, arrays, end)
    metrics = model.evaluate(shop, arrays)
    blend_column, blend_weight = model.blend()
    path = export_regressor(
        repo, name, model.model_, space.names, model.holdout_.X[:5_000],
        metrics=metrics,
        training_window={"data_start": str(shop.transactions["ts"].min().date()),
                         "train_cutoffs": ",".join(str(c.date()) for c in model.train_cutoffs_),
                         "holdout_cutoff": str(model.holdout_cutoff_.date()), "holdout_label_end": str(end.date())},
        params={"horizon_days": horizon_days, "label_days": model.label_days, "holdout_days": model.holdout_days_,
                "decay_factor": model.decay_factor_,
                "historic_feature": HISTORIC_FEATURE, "dataset": shop.name},
        data_fingerprint=data_fingerprint,
        scale=model.decay_factor_,
        blend_column=blend_column,
        blend_weight=blend_weight,
        evaluation=model.evaluation_,
    )
    return {"name": name, "path": str(path), "metrics": metrics}
