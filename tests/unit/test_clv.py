"""CLV model: time split, no leakage, ONNX export parity, quality vs BG/NBD x Gamma-Gamma, CDNOW."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from tenure.artifacts import latest_valid
from tenure.data import Shop
from tenure.errors import ArtifactError
from tenure.features import FeatureSpace, TxArrays
from training import clv
from training.clv import ClvModel, export_regressor, historic_clv, onnx_spend, spend_set, train_clv

REPO_ROOT = Path(__file__).resolve().parents[2]


def _end(shop: Shop) -> pd.Timestamp:
    return shop.transactions["ts"].max().normalize() + pd.Timedelta(days=1)


def _before(shop: Shop, cutoff: pd.Timestamp) -> Shop:
    return replace(shop, transactions=shop.transactions[shop.transactions["ts"] < cutoff].reset_index(drop=True))


@pytest.fixture(scope="module")
def encoded(small_shop: Shop) -> tuple[FeatureSpace, TxArrays]:
    space = FeatureSpace.fit(small_shop)
    return space, space.encode(small_shop)


@pytest.fixture(scope="module")
def fitted(small_shop: Shop, encoded: tuple[FeatureSpace, TxArrays]) -> ClvModel:
    space, arrays = encoded
    return ClvModel(horizon_days=365, threads=1).fit(small_shop, space, arrays, _end(small_shop))


def test_cutoffs_keep_every_label_window_inside_calibration(small_shop: Shop, fitted: ClvModel) -> None:
    end = _end(small_shop)
    train, holdout, decay = fitted.cutoffs(end)
    assert holdout == end - pd.Timedelta(days=365)
    assert fitted.label_days == 91 and len(train) == 4  # quarterly windows tiling the last year
    assert all(c + pd.Timedelta(days=fitted.label_days) <= holdout for c in train)
    assert decay + pd.Timedelta(days=365) == holdout
    assert fitted.train_cutoffs_ == train  # the synthetic shop has 2 years of history before them
    assert fitted.decay_cutoff_ == decay and 0.2 < fitted.decay_factor_ < 1.5
    assert ClvModel(horizon_days=30).label_days == 30


def test_features_at_cutoff_ignore_later_transactions(small_shop: Shop, encoded: tuple[FeatureSpace, TxArrays],
                                                      fitted: ClvModel) -> None:
    space, arrays = encoded
    cutoff = fitted.holdout_cutoff_
    past = _before(small_shop, cutoff)
    past_arrays = space.encode(past)
    full = spend_set(space, arrays, small_shop.customers, cutoff, 365)
    cut = spend_set(space, past_arrays, past.customers, cutoff, 365)
    assert np.array_equal(arrays.customer_ids[full.codes], past_arrays.customer_ids[cut.codes])
    np.testing.assert_array_equal(full.X, cut.X)
    assert cut.spend.sum() == 0 and full.spend.sum() > 0


def test_model_does_not_depend_on_data_after_the_holdout_cutoff(
        small_shop: Shop, encoded: tuple[FeatureSpace, TxArrays], fitted: ClvModel) -> None:
    space, _ = encoded
    past = _before(small_shop, fitted.holdout_cutoff_)
    refit = ClvModel(horizon_days=365, threads=1).fit(past, space, space.encode(past), _end(small_shop))
    assert refit.decay_factor_ == pytest.approx(fitted.decay_factor_, rel=1e-12)
    np.testing.assert_allclose(refit.predict(fitted.holdout_.X), fitted.predict(fitted.holdout_.X), rtol=1e-9)


def test_clv_is_historic_net_spend_plus_prediction(small_shop: Shop, encoded: tuple[FeatureSpace, TxArrays],
                                                  fitted: ClvModel) -> None:
    h = fitted.holdout_
    table = fitted.clv(h.X)
    assert list(table.columns) == ["historic", "predicted", "total"] and len(table) == len(h.X)
    tx = small_shop.transactions
    net = tx[tx["ts"] < h.cutoff].groupby("customer_id")["amount"].sum()
    ids = encoded[1].customer_ids[h.codes]
    np.testing.assert_allclose(table["historic"], net.reindex(ids).to_numpy(), rtol=1e-5, atol=0.01)
    np.testing.assert_allclose(historic_clv(h.X, fitted.feature_names_), table["historic"])
    assert (table["predicted"] >= 0).all()
    np.testing.assert_allclose(table["total"], table["historic"] + table["predicted"])


def test_quality_on_small_synthetic_shop(small_shop: Shop, encoded: tuple[FeatureSpace, TxArrays],
                                         fitted: ClvModel) -> None:
    m = fitted.evaluate(small_shop, encoded[1])
    json.dumps(m)
    assert m["holdout_rows"] == len(fitted.holdout_.X) > 2_000
    # ranks customers by future value better than BG/NBD x GG (0.58 vs 0.53 on this shop) ...
    assert m["spearman"] > m["baseline_bgnbd_gg_spearman"] + 0.02
    # ... and the total stays in range (MAE/total vs the baseline swing with the seed on 4k customers)
    assert abs(m["aggregate_error_pct"]) < 25
    assert m["mae"] < 1.1 * m["baseline_bgnbd_gg_mae"]


def test_export_regressor_onnx_matches_lightgbm(small_shop: Shop, encoded: tuple[FeatureSpace, TxArrays],
                                                fitted: ClvModel, tmp_path: Path) -> None:
    space, arrays = encoded
    result = train_clv(small_shop, tmp_path, space, arrays, _end(small_shop), threads=1)
    vdir, manifest = latest_valid(tmp_path, "clv")
    assert manifest.kind == "lightgbm-regression" and manifest.features == space.names
    assert manifest.outputs == [{"name": "spend", "dtype": "float32", "shape": [-1, 1], "use_column": 0}]
    assert manifest.metrics["onnx_parity_max_rel_diff"] <= clv.PARITY_RTOL
    assert manifest.params["output_scale"] == manifest.params["decay_factor"] != 1.0
    assert result["metrics"]["holdout_rows"] == manifest.metrics["holdout_rows"]

    X = fitted.holdout_.X[:500]  # train_clv fits the same (deterministic) model
    got = onnx_spend((vdir / "model.onnx").read_bytes(), X)
    assert got.shape == (500, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got[:, 0], fitted.predict(X), rtol=1e-4, atol=1e-3)


def test_export_refuses_a_parity_failure(fitted: ClvModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clv, "regressor_parity", lambda *args: 0.5)
    with pytest.raises(ArtifactError, match="differs"):
        export_regressor(tmp_path, "clv", fitted.model_, fitted.feature_names_, fitted.holdout_.X[:10],
                         metrics={}, training_window={})
    assert not (tmp_path / "clv").exists()


# --------------------------------------------------------------------------- CDNOW (BG/NBD paper split)


@pytest.fixture(scope="module")
def cdnow_metrics(real_data_or_skip: Callable[..., Shop]) -> dict[str, object]:
    from tenure.data import load_cdnow

    shop = real_data_or_skip(lambda: load_cdnow(cache_dir=REPO_ROOT / "data"), "CDNOW master log")
    space = FeatureSpace.fit(shop)
    arrays = space.encode(shop)
    # 39-week calibration 1997-01-01..1997-09-30, 39-week holdout to 1998-06-30
    model = ClvModel(horizon_days=273, threads=1).fit(shop, space, arrays, pd.Timestamp("1998-07-01"))
    return model.evaluate(shop, arrays)


@pytest.mark.slow
def test_cdnow_aggregate_forecast_within_5pct(cdnow_metrics: dict[str, float]) -> None:
    m = cdnow_metrics
    assert m["holdout_cutoff"] == "1997-10-01" and m["holdout_end"] == "1998-07-01"
    assert m["holdout_rows"] == 23_570
    assert m["train_cutoffs"] == "1997-07-02,1997-04-02" and m["decay_factor"] == 1.0
    assert abs(m["aggregate_error_pct"]) < 5.0
    assert m["baseline_aggregate_error_pct"] < -10.0  # BG/NBD x GG under-forecasts (-17% here)
    assert m["spearman"] > m["baseline_bgnbd_gg_spearman"]
    # at an equal total the per-customer error matches BG/NBD x GG's
    assert m["mae"] < 1.01 * m["baseline_bgnbd_gg_mae_at_model_total"]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "MAE rewards forecasts biased low (predicting 0 for all scores 32.96, BG/NBD x GG 32.68 at -17%); "
    "even LightGBM models cross-fitted on the holdout itself reach only ~33.1 at -7% and ~34.4 at 0%, "
    "so MAE below BG/NBD's together with a total within 5% is not attainable on CDNOW"))
def test_cdnow_mae_below_bgnbd(cdnow_metrics: dict[str, float]) -> None:
    assert cdnow_metrics["mae"] < cdnow_metrics["baseline_bgnbd_gg_mae"]


# --------------------------------------------------------------------------- BG/NBD x Gamma-Gamma blend


def test_blend_with_the_point_in_time_bgnbd_gg_feature_exports_with_parity(small_shop: Shop, tmp_path: Path) -> None:
    from tenure.features import btyd_spend_name

    space = FeatureSpace.fit(small_shop, btyd_horizons=(90, 365))
    arrays = space.encode(small_shop)
    end = _end(small_shop)
    model = ClvModel(horizon_days=365, threads=1).fit(small_shop, space, arrays, end)
    column, weight = model.blend()
    assert column == space.names.index(btyd_spend_name(365)) and weight == clv.BTYD_WEIGHT
    # LightGBM never splits on the BG/NBD x GG columns: they enter by the blend only
    used = set(np.flatnonzero(model.model_.feature_importances_))
    assert not used & {space.names.index(btyd_spend_name(h)) for h in (90, 365)}
    X = model.holdout_.X
    expected = (1 - weight) * model.predict_lightgbm(X) + weight * np.maximum(X[:, column], 0)
    np.testing.assert_allclose(model.predict(X), expected)
    # the blended part is the BG/NBD x GG baseline of the evaluation (same fit, same customers)
    base, _ = clv.bgnbd_gg_spend(small_shop.transactions, model.holdout_cutoff_,
                                 arrays.customer_ids[model.holdout_.codes], 365)
    np.testing.assert_allclose(X[:, column], base, rtol=1e-4, atol=1e-2)
    m = model.evaluate(small_shop, arrays)
    assert m["btyd_weight"] == weight and m["btyd_feature"] == btyd_spend_name(365)
    assert {"lightgbm_only_rmse", "lightgbm_only_spearman", "lightgbm_only_aggregate_error_pct"} <= set(m)

    train_clv(small_shop, tmp_path, space, arrays, end, threads=1)
    vdir, manifest = latest_valid(tmp_path, "clv")
    assert manifest.params["btyd_weight"] == weight and manifest.features == space.names
    assert manifest.metrics["onnx_parity_max_rel_diff"] <= clv.PARITY_RTOL
    got = onnx_spend((vdir / "model.onnx").read_bytes(), X[:500])[:, 0]
    np.testing.assert_allclose(got, model.predict(X[:500]), rtol=1e-4, atol=1e-3)


def test_no_blend_without_the_horizon_column(small_shop: Shop, fitted: ClvModel) -> None:
    assert fitted.blend() == (None, 0.0)
    X = fitted.holdout_.X[:100]
    np.testing.assert_allclose(fitted.predict(X), fitted.predict_lightgbm(X))
